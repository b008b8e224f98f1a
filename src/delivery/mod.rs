//! The delivery gate: the one C-STORE engine, and the only writer of the
//! delivery journals.
//!
//! It owns everything between an instance in the cache and its record in
//! the study's journal for a destination: associations (opened for the
//! presentation contexts the instances need, reused, released or
//! aborted), sending an instance as it is, converted, or asked of the cloud
//! again in a syntax the destination takes, the classes of the
//! destination's answers, retries with backoff, the rule for a destination
//! that stopped answering ([`Stalls`]), and the journal records.
//!
//! Two callers decide *when*: `store` delivers whole studies now
//! ([`Store`]), and `watch` sends instances as they land ([`Streamer`])
//! and finishes each study with a [`Store`] pass. Neither opens an
//! association, reads a status or writes a journal line itself.

mod stream;
mod study;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Result;

use crate::cache::{Delivery, DeliveryState, Journal, now_rfc3339};
use crate::dimse::{Phase, ScuError, ScuOptions, StatusClass, StoreStatus};
use crate::uid::Uid;

pub use stream::{Attempt, Streamed, Streamer};
pub use study::{Asked, Problem, Store, StudyResult, StudyState, Summary, ts_name};

/// How to deliver.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub scu: ScuOptions,
    /// Associations in parallel, each taking instances from the same queue.
    pub associations: usize,
    /// Within one run: further attempts at an instance that got "out of
    /// resources" or no answer, and at opening an association the
    /// destination is too busy (or not there) to accept.
    pub retries: u32,
    /// The first wait before such a retry; doubled each time.
    pub backoff: Duration,
}

/// Associations opened in parallel unless told otherwise.
pub const DEFAULT_ASSOCIATIONS: u16 = 2;
/// Retries of an instance, or of an association, unless told otherwise.
pub const DEFAULT_RETRIES: u32 = 3;

impl StoreOptions {
    /// Two associations, three retries, half a second of first backoff.
    pub fn new(scu: ScuOptions) -> StoreOptions {
        StoreOptions {
            scu,
            associations: usize::from(DEFAULT_ASSOCIATIONS),
            retries: DEFAULT_RETRIES,
            backoff: Duration::from_millis(500),
        }
    }

    fn delay(&self, attempt: u32) -> Duration {
        crate::backoff::doubled(self.backoff, attempt.min(6), Duration::from_secs(30))
    }
}

/// Stalls in a row after which a study is given up.
pub const STALLS_TO_GIVE_UP: u32 = 2;

/// When to stop retrying a destination that stopped answering, for one
/// study: retries go on while the destination answers (any status is
/// progress), but each request it leaves unanswered costs a whole timeout,
/// so the second such stall in a row gives the study up. With the default
/// 60 s DIMSE timeout a dead destination ends a run in about two minutes
/// instead of one timeout per attempt per instance. Shared by the workers
/// of a study, and kept per study by the [`Streamer`].
#[derive(Debug, Default)]
pub struct Stalls(AtomicU32);

impl Stalls {
    /// The destination answered: it is alive, whatever it said.
    pub fn progress(&self) {
        self.0.store(0, Ordering::SeqCst);
    }

    /// Notes a failed attempt. `Some(why)` when it was the stall that gives
    /// the study up: `why` says what stalled and what to do.
    pub fn failed(&self, e: &ScuError, destination: &str) -> Option<String> {
        if !e.is_stall() {
            return None;
        }
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        (n >= STALLS_TO_GIVE_UP).then(|| gave_up(e, destination))
    }
}

/// The reason a study is given up after stalls.
fn gave_up(e: &ScuError, destination: &str) -> String {
    let (request, within, trickled) = match e {
        ScuError::Timeout { phase, after, .. } => (*phase, *after, false),
        ScuError::TooSlow { phase, within, .. } => (*phase, *within, true),
        _ => return e.to_string(),
    };
    let request = match request {
        Phase::Associate => "the association request",
        _ => "C-STORE",
    };
    let how = if trickled {
        "a trickle, not a whole answer"
    } else {
        "no answer"
    };
    format!(
        "{destination} stopped answering ({how} to {request} within {}, {STALLS_TO_GIVE_UP} times in a row); \
         check the destination and run `retriever store` again",
        crate::format::duration(within)
    )
}

/// Appends what became of one instance to its study's journal for the
/// destination: the one place a delivery record is made. `detail` says
/// why it failed, or how it was sent.
fn record(
    journal: &mut Journal,
    sop: &Uid,
    state: DeliveryState,
    status: Option<&StoreStatus>,
    detail: Option<String>,
) -> Result<()> {
    record_copy(journal, sop, state, status, detail, None)
}

/// [`record`], saying which coercion rules (by fingerprint) made the copy
/// that was delivered, if any.
fn record_copy(
    journal: &mut Journal,
    sop: &Uid,
    state: DeliveryState,
    status: Option<&StoreStatus>,
    detail: Option<String>,
    coerced: Option<&str>,
) -> Result<()> {
    journal.record(&Delivery {
        sop: sop.clone(),
        state,
        status: status.map(|s| s.code),
        detail,
        at: now_rfc3339(),
        coerced: coerced.map(str::to_string),
    })
}

/// Records an answer that says the instance is stored: a success (with
/// `note` on how it was sent, if anything) or a warning (with what it
/// means); `coerced`: the fingerprint of the rules its copy was made with.
fn record_stored(
    journal: &mut Journal,
    sop: &Uid,
    status: &StoreStatus,
    note: Option<String>,
    coerced: Option<&str>,
) -> Result<()> {
    if status.class == StatusClass::Success {
        record_copy(journal, sop, DeliveryState::Delivered, Some(status), note, coerced)
    } else {
        let detail = Some(status.to_string());
        record_copy(journal, sop, DeliveryState::Warning, Some(status), detail, coerced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_stall_in_a_row_gives_up_and_progress_resets() {
        let dest = "PACS@127.0.0.1:104";
        let stall = |phase| ScuError::Timeout {
            destination: dest.into(),
            phase,
            after: Duration::from_secs(60),
            outcome_unknown: true,
        };
        let lost = ScuError::ConnectionLost {
            destination: dest.into(),
            phase: Phase::Response,
            source: None,
            outcome_unknown: true,
        };
        let stalls = Stalls::default();
        assert_eq!(stalls.failed(&stall(Phase::Response), dest), None);
        stalls.progress();
        assert_eq!(stalls.failed(&stall(Phase::Response), dest), None);
        // Other failures are neither progress nor stalls.
        assert_eq!(stalls.failed(&lost, dest), None);
        // A slow release is no reason to give up a study.
        assert_eq!(stalls.failed(&stall(Phase::Release), dest), None);
        let why = stalls.failed(&stall(Phase::Send), dest).expect("second stall in a row");
        assert_eq!(
            why,
            "PACS@127.0.0.1:104 stopped answering (no answer to C-STORE within 1m, 2 times in a row); \
             check the destination and run `retriever store` again"
        );
        let trickle = ScuError::TooSlow {
            destination: dest.into(),
            phase: Phase::Response,
            within: Duration::from_secs(2),
            got: 3,
            outcome_unknown: true,
        };
        assert!(
            stalls
                .failed(&trickle, dest)
                .unwrap()
                .contains("a trickle, not a whole answer to C-STORE")
        );
    }

    #[test]
    fn the_journal_says_delivered_with_a_warning_or_failed_as_the_answer_did() {
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::cache::Cache::open(dir.path()).unwrap();
        let uid = |s: &str| Uid::parse(s).unwrap();
        let study = uid("1.2.3");
        let mut journal = cache.open_journal(&study, "PACS").unwrap();
        let ok = StoreStatus::new(0x0000, None);
        let warned = StoreStatus::new(0xB000, Some("as told".into()));
        let refused = StoreStatus::new(0xA700, None);
        record_stored(&mut journal, &uid("1.1"), &ok, Some("sent as X".into()), None).unwrap();
        record_stored(
            &mut journal,
            &uid("1.2"),
            &warned,
            Some("ignored".into()),
            Some("0123abcd"),
        )
        .unwrap();
        record(
            &mut journal,
            &uid("1.3"),
            DeliveryState::Failed,
            Some(&refused),
            Some("full".into()),
        )
        .unwrap();
        let read = journal.read().unwrap();
        assert_eq!(read["1.1"].state, DeliveryState::Delivered);
        assert_eq!(read["1.1"].detail.as_deref(), Some("sent as X"));
        assert_eq!(read["1.2"].state, DeliveryState::Warning);
        assert_eq!(read["1.2"].status, Some(0xB000));
        assert_eq!(read["1.2"].detail, Some(warned.to_string()));
        assert_eq!(read["1.3"].state, DeliveryState::Failed);
        assert_eq!(read["1.3"].status, Some(0xA700));
        // Which rules made the copy delivered, when any did.
        assert_eq!(read["1.1"].coerced, None);
        assert_eq!(read["1.2"].coerced.as_deref(), Some("0123abcd"));
    }
}
