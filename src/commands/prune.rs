//! `retriever prune`: expire the cache (rules in [`crate::prune`]). One line
//! per removed study on stdout, what was kept and why on stderr.

use std::io::Write;
use std::time::SystemTime;

use anyhow::{Result, bail};
use serde_json::json;

use crate::cache::{Cache, Leftover};
use crate::cli::PruneArgs;
use crate::config::Settings;
use crate::dimse::Destination;
use crate::prune::{Kept, PruneOptions, Reason, Removed, Sink, Study, Summary, prune};

pub fn run(settings: &Settings, args: &PruneArgs) -> Result<()> {
    let destination = settings.destination_if_given()?.cloned();
    let opts = PruneOptions {
        older_than: settings.retention,
        max_age: settings.max_age,
        include_undelivered: args.include_undelivered,
        destination,
        dry_run: args.dry_run,
        now: SystemTime::now(),
    };
    let cache = Cache::open(&settings.cache_root)?;
    // Two prunes at once (a slow run and the next scheduled one) would
    // only get in each other's way.
    let Some(_lock) = cache.try_lock_prune()? else {
        eprintln!(
            "another prune is running on the cache `{}`; nothing to do",
            cache.root().display()
        );
        return Ok(());
    };
    let mut printer = Printer {
        out: std::io::stdout().lock(),
        json: args.json,
        quiet: settings.quiet,
        opts: &opts,
        write_error: None,
    };
    let summary = prune(&cache, &opts, &mut printer)?;
    if let Some(e) = printer.write_error {
        return Err(anyhow::Error::new(e).context("failed to write to standard output"));
    }
    let error = summary.error();
    if !settings.quiet || error.is_some() {
        eprint!("{}", describe(&summary, &opts));
    }
    match error {
        None => Ok(()),
        Some(e) => bail!("{e}"),
    }
}

struct Printer<'a, W: Write> {
    out: W,
    json: bool,
    quiet: bool,
    opts: &'a PruneOptions,
    write_error: Option<std::io::Error>,
}

impl<W: Write> Sink for Printer<'_, W> {
    fn removed(&mut self, removed: &Removed) {
        let study = &removed.study;
        if removed.reason == Reason::MaxAge && study.delivered_to.is_none() {
            eprintln!(
                "warning: {} study {} ({}) although it was never delivered{}: it is older than the maximum age of {}",
                if self.opts.dry_run { "would remove" } else { "removed" },
                study.uid,
                accession(study),
                self.to_destination(),
                crate::format::two_units(self.opts.max_age),
            );
        }
        let line = if self.json {
            json!({
                "study_uid": study.uid.as_str(),
                "accession": study.accession,
                "age_seconds": study.age.as_secs(),
                "bytes": removed.freed,
                "delivered_to": study.delivered_to.as_deref().map(Destination::label_of_key),
                "reason": match removed.reason {
                    Reason::Expired => "expired",
                    Reason::Undelivered => "undelivered",
                    Reason::MaxAge => "max_age",
                },
                "dry_run": self.opts.dry_run,
            })
            .to_string()
        } else {
            let state = match (&study.delivered_to, removed.reason) {
                (Some(key), _) => format!("delivered to {}", Destination::label_of_key(key)),
                (None, Reason::MaxAge) => format!(
                    "not delivered, older than {}",
                    crate::format::two_units(self.opts.max_age)
                ),
                (None, _) => "not delivered".to_string(),
            };
            format!(
                "{}\t{}\t{}\t{}\t{state}",
                study.uid,
                accession(study),
                crate::format::two_units(study.age),
                crate::format::bytes(removed.freed),
            )
        };
        if self.write_error.is_none()
            && let Err(e) = writeln!(self.out, "{line}").and_then(|()| self.out.flush())
        {
            self.write_error = Some(e);
        }
    }

    fn kept(&mut self, study: &Study, why: &Kept) {
        if self.quiet {
            return;
        }
        let label = format!(
            "{} ({}, {} old)",
            study.uid,
            accession(study),
            crate::format::two_units(study.age)
        );
        match why {
            Kept::NotDelivered => eprintln!(
                "kept {label}: not delivered{}; --include-undelivered removes it",
                self.to_destination()
            ),
            Kept::Busy => eprintln!(
                "skipped {label}: in use by another retriever process (fetch, store or watch); a later prune tries again"
            ),
            Kept::InUse(e) => {
                eprintln!("skipped {label}: a file of it is open in another program ({e:#}); a later prune tries again")
            }
        }
    }

    fn leftover(&mut self, leftover: &Leftover) {
        if !self.quiet {
            eprintln!(
                "{} {} `{}` ({})",
                if self.opts.dry_run { "would delete" } else { "deleted" },
                leftover.kind,
                leftover.path.display(),
                crate::format::bytes(leftover.bytes)
            );
        }
    }

    fn failed(&mut self, error: &anyhow::Error) {
        eprintln!("error: {error:#}");
    }

    fn note(&mut self, message: &str) {
        if !self.quiet {
            eprintln!("note: {message}");
        }
    }
}

impl<W: Write> Printer<'_, W> {
    /// ` to PACS@10.0.0.5:104`, or ` to any destination` with none configured.
    fn to_destination(&self) -> String {
        match &self.opts.destination {
            Some(d) => format!(" to {d}"),
            None => " to any destination".to_string(),
        }
    }
}

fn accession(study: &Study) -> String {
    super::field(study.accession.as_deref())
}

/// The closing summary, for stderr.
fn describe(s: &Summary, opts: &PruneOptions) -> String {
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut text = String::new();
    let undelivered = match s.removed_undelivered {
        0 => String::new(),
        n => format!(" ({n} not delivered)"),
    };
    let leftovers = match s.leftovers {
        0 => String::new(),
        n => format!(
            " and {}",
            plural(n, "leftover of an interrupted run", "leftovers of interrupted runs")
        ),
    };
    let freed = crate::format::bytes(s.freed);
    if opts.dry_run {
        text += &format!(
            "dry run: would remove {}{undelivered}{leftovers}, freeing {freed} ({} bytes); nothing was removed\n",
            plural(s.removed, "study", "studies"),
            s.freed
        );
    } else {
        text += &format!(
            "removed {}{undelivered}{leftovers}, freed {freed} ({} bytes)\n",
            plural(s.removed, "study", "studies"),
            s.freed
        );
    }
    if s.kept_undelivered > 0 {
        text += &format!(
            "kept {} older than {} but not delivered{} (--include-undelivered removes them; past {} they go anyway)\n",
            plural(s.kept_undelivered, "study", "studies"),
            crate::format::two_units(opts.older_than),
            match &opts.destination {
                Some(d) => format!(" to {d}"),
                None => String::new(),
            },
            crate::format::two_units(opts.max_age),
        );
    }
    if s.busy + s.in_use > 0 {
        text += &format!(
            "skipped {} in use; a later prune tries again\n",
            plural(s.busy + s.in_use, "study", "studies")
        );
    }
    if !s.failures.is_empty() {
        text += &format!("failed: {}\n", s.failures.len());
    }
    text
}
