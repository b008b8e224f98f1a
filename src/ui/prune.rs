//! What `prune` prints as it goes: one line per study removed on stdout
//! (tab-separated, or JSON with `--json`), what stays and why on stderr.
//! The lines on stdout are the command's output (a script reads them); the
//! rest is progress, hidden by `--quiet` except errors and warnings.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use crate::cache::Leftover;
use crate::format::{self, two_units};
use crate::report::{Delivered, HeldBack, JudgedAgainst, Kept, PruneEvent, PrunedStudy, Reason, Removed, Reporter};
use crate::text::field;

/// What the printer needs to know of the run.
#[derive(Debug, Clone)]
pub struct PruneView {
    /// JSON lines on stdout instead of tab-separated ones.
    pub json: bool,
    /// Nothing on stderr but warnings and errors.
    pub quiet: bool,
    /// Nothing is removed: say "would".
    pub dry_run: bool,
    /// Past this age a study goes even if not delivered.
    pub max_age: Duration,
    /// What delivery is judged against, for "not delivered to ...".
    pub judged_against: JudgedAgainst,
}

/// The reporter of `prune`.
pub struct PrunePrinter {
    out: Mutex<Box<dyn Write + Send>>,
    opts: PruneView,
    /// The first failure to write to `out`; after it nothing more is written.
    write_error: Mutex<Option<std::io::Error>>,
}

impl PrunePrinter {
    pub fn new(out: impl Write + Send + 'static, opts: PruneView) -> PrunePrinter {
        PrunePrinter {
            out: Mutex::new(Box::new(out)),
            opts,
            write_error: Mutex::new(None),
        }
    }

    /// Why the lines on stdout stopped, if they did.
    pub fn into_write_error(self) -> Option<std::io::Error> {
        self.write_error.into_inner().unwrap()
    }
}

impl Reporter for PrunePrinter {
    fn prune(&self, event: &PruneEvent) {
        match event {
            PruneEvent::Removed(removed) => self.removed(removed),
            PruneEvent::Kept { study, why } => self.kept(study, why),
            PruneEvent::Leftover(leftover) => self.leftover(leftover),
            PruneEvent::Failed(error) => self.failed(error),
            PruneEvent::Note(message) => self.note(message),
        }
    }
}

impl PrunePrinter {
    fn removed(&self, removed: &Removed) {
        let study = &removed.study;
        if removed.reason == Reason::MaxAge && !study.delivered.is_done() {
            eprintln!(
                "warning: {} study {} ({}) although it was never delivered{}: it is older than the maximum age of {}",
                if self.opts.dry_run { "would remove" } else { "removed" },
                study.uid,
                accession(study),
                self.to_destination(study),
                two_units(self.opts.max_age),
            );
        }
        let line = if self.opts.json {
            json!({
                "study_uid": study.uid.as_str(),
                "accession": study.accession,
                "age_seconds": study.age.as_secs(),
                "bytes": removed.freed,
                "delivered_to": match &study.delivered {
                    Delivered::Yes(to) => Some(to.join(", ")),
                    _ => None,
                },
                "held_back_by": held_back(&study.delivered).iter().map(|h| json!({
                    "destination": h.name,
                    "to": h.to,
                    "delivered": h.delivered,
                    "total": h.total,
                })).collect::<Vec<_>>(),
                "reason": match removed.reason {
                    Reason::Expired => "expired",
                    Reason::Undelivered => "undelivered",
                    Reason::MaxAge => "max_age",
                },
                "dry_run": self.opts.dry_run,
            })
            .to_string()
        } else {
            let state = match (&study.delivered, removed.reason) {
                (Delivered::Yes(to), _) => format!("delivered to {}", to.join(", ")),
                (Delivered::RoutedNowhere(why), _) => {
                    format!("routed to no destination ({})", why.join("; "))
                }
                (Delivered::No(_), Reason::MaxAge) => {
                    format!("not delivered, older than {}", two_units(self.opts.max_age))
                }
                (Delivered::No(_), _) => "not delivered".to_string(),
            };
            format!(
                "{}\t{}\t{}\t{}\t{state}",
                study.uid,
                accession(study),
                two_units(study.age),
                format::bytes(removed.freed),
            )
        };
        let mut write_error = self.write_error.lock().unwrap();
        if write_error.is_none() {
            let mut out = self.out.lock().unwrap();
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                *write_error = Some(e);
            }
        }
    }

    fn kept(&self, study: &PrunedStudy, why: &Kept) {
        if self.opts.quiet {
            return;
        }
        let label = format!("{} ({}, {} old)", study.uid, accession(study), two_units(study.age));
        match why {
            Kept::NotDelivered => match held_back(&study.delivered) {
                // Named routes: which of them the study waits for, and how far it got.
                behind if self.opts.judged_against == JudgedAgainst::Routed && !behind.is_empty() => eprintln!(
                    "kept {label}: not yet delivered to {}; --include-undelivered removes it",
                    behind
                        .iter()
                        .map(|h| format!("{}: {} of {} instances", h.label, h.delivered, h.total))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => eprintln!(
                    "kept {label}: not delivered{}; --include-undelivered removes it",
                    self.to_destination(study)
                ),
            },
            Kept::Busy => eprintln!(
                "skipped {label}: in use by another retriever process (fetch, store or watch); a later prune tries again"
            ),
            Kept::InUse(e) => {
                eprintln!("skipped {label}: a file of it is open in another program ({e:#}); a later prune tries again")
            }
        }
    }

    fn leftover(&self, leftover: &Leftover) {
        if !self.opts.quiet {
            eprintln!(
                "{} {} `{}` ({})",
                if self.opts.dry_run { "would delete" } else { "deleted" },
                leftover.kind,
                leftover.path.display(),
                format::bytes(leftover.bytes)
            );
        }
    }

    fn failed(&self, error: &anyhow::Error) {
        eprintln!("error: {error:#}");
    }

    fn note(&self, message: &str) {
        if !self.opts.quiet {
            eprintln!("note: {message}");
        }
    }

    /// ` to PACS@10.0.0.5:104`, ` to any destination` with none
    /// configured, or with routes the destinations holding `study` back.
    fn to_destination(&self, study: &PrunedStudy) -> String {
        match (&self.opts.judged_against, held_back(&study.delivered)) {
            (JudgedAgainst::Routed, behind) if !behind.is_empty() => format!(
                " to {}",
                behind.iter().map(|h| h.label.as_str()).collect::<Vec<_>>().join(", ")
            ),
            (against, _) => format!(" to {}", against.describe(false)),
        }
    }
}

/// The destinations a study waits for (none when it waits for none, or
/// when none is configured).
fn held_back(delivered: &Delivered) -> &[HeldBack] {
    match delivered {
        Delivered::No(behind) => behind,
        _ => &[],
    }
}

fn accession(study: &PrunedStudy) -> String {
    field(study.accession.as_deref())
}
