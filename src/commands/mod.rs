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

use crate::delivery::Store;

pub use crate::text::field;

/// Prints a delivery's summary on stderr (in a quiet run only when
/// something went wrong) and turns the run into its final error (`store`,
/// `fetch --store`).
pub fn finish_delivery(store: Store<'_>, outcome: Result<()>, quiet: bool, input_errors: usize) -> Result<()> {
    let summary = store.into_summary();
    let error = summary.error();
    let failed = error.is_some() || outcome.is_err() || input_errors > 0;
    if !quiet || failed {
        eprint!("{summary}");
        if summary.studies.is_empty() && outcome.is_ok() {
            eprintln!("  nothing to deliver: no study asked for, and none complete in the cache");
        }
    }
    outcome?;
    match (error, input_errors) {
        (None, 0) => Ok(()),
        (None, n) => bail!(
            "{n} line{} of standard input named no study",
            if n == 1 { "" } else { "s" }
        ),
        (Some(e), 0) => bail!("{e}"),
        (Some(e), n) => bail!(
            "{e}; {n} line{} of standard input named no study",
            if n == 1 { "" } else { "s" }
        ),
    }
}
