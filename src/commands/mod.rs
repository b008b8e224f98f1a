//! One thin module per subcommand: each turns the settings into options,
//! calls the core and prints. No command calls another; what two share
//! (the study lines on stdout, a delivery's closing summary) is here.

pub mod config;
pub mod echo;
pub mod fetch;
pub mod ls;
pub mod prune;
pub mod service;
pub mod status;
pub mod store;
mod study_line;
pub mod watch;

use anyhow::{Result, bail};

use crate::store::Routed;

pub use crate::text::field;

/// Prints each destination's summary on stderr (in a quiet run only when
/// something went wrong) and turns the run into its final error (`store`,
/// `fetch --store`), naming each destination that failed and why.
pub fn finish_delivery(routed: Routed, quiet: bool, input_errors: usize) -> Result<()> {
    let Routed {
        summaries,
        withheld,
        outcome,
    } = routed;
    let several = summaries.len() > 1;
    let errors: Vec<String> = summaries
        .iter()
        .filter_map(|summary| {
            let e = summary.error()?;
            // Most reasons name their destination already; with several,
            // the others are prefixed with it.
            Some(if several && !e.contains(&summary.destination) {
                format!("{}: {e}", summary.destination)
            } else {
                e
            })
        })
        .collect();
    let failed = !errors.is_empty() || outcome.is_err() || input_errors > 0 || withheld > 0;
    if !quiet || failed {
        for summary in &summaries {
            eprint!("{summary}");
            if summary.studies.is_empty() && outcome.is_ok() && withheld == 0 {
                eprintln!("  nothing to deliver: no study asked for, and none complete in the cache");
            }
        }
    }
    outcome?;
    let mut parts = errors;
    if withheld > 0 {
        parts.push(format!(
            "{withheld} stud{} named {} not for the destination chosen (see above)",
            if withheld == 1 { "y" } else { "ies" },
            if withheld == 1 { "is" } else { "are" },
        ));
    }
    if input_errors > 0 {
        parts.push(format!(
            "{input_errors} line{} of standard input named no study",
            if input_errors == 1 { "" } else { "s" }
        ));
    }
    if parts.is_empty() {
        Ok(())
    } else {
        bail!("{}", parts.join("; "))
    }
}
