//! What the core tells the person watching: a push-style observer, so that
//! progress bars, quiet runs and tests are implementations, and no core
//! signature mentions a terminal. One trait for every command, and the
//! events it carries (those of `watch` and `prune` included); what prints
//! them lives in `ui`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cache::Leftover;
use crate::uid::Uid;

/// Progress of a running command, for the person watching it. Every method
/// has a default that does nothing, and no code relies on being called: what
/// the core hands to other code (an instance that landed) goes through the
/// core's own options, so that any reporter, or none, can be given.
pub trait Reporter: Send + Sync {
    /// Work on a study begins: `total` instances, `done` of them already in place.
    fn study_started(&self, _study: &Uid, _label: &str, _total: u64, _done: u64) {}
    /// The number of instances of `study` is now known exactly (it was an
    /// estimate when the study started).
    fn study_total(&self, _study: &Uid, _total: u64) {}
    /// One more instance of `study` is in place (`bytes` long).
    fn instance_done(&self, _study: &Uid, _bytes: u64) {}
    /// Work on a study ended; `summary` says how, in a few words.
    fn study_finished(&self, _study: &Uid, _ok: bool, _summary: &str) {}
    /// Something the person should know about even in a quiet run: a
    /// rejected instance, a retry that gave up.
    fn warn(&self, _message: &str) {}
    /// A progress note (a retry, a wait for a lock); shown only with a terminal.
    fn info(&self, _message: &str) {}
    /// Runs `print`, which writes to stdout, with any progress display
    /// cleared meanwhile, so that both can share one terminal.
    fn suspend(&self, print: &mut dyn FnMut()) {
        print()
    }
    /// Something `watch` does (see [`WatchEvent`]).
    fn watch(&self, _event: &WatchEvent) {}
    /// Something `prune` does (see [`PruneEvent`]).
    fn prune(&self, _event: &PruneEvent) {}
}

/// What only `watch` knows, told to the person watching it: its searches of
/// the cloud, how each study and each group ended, the destination's state
/// and the state of the whole. The progress of its fetches and deliveries
/// goes through the [`Reporter`] methods, as in any other command (see
/// [`WatchReporters`]).
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The watch begins: where it delivers, and the search it repeats.
    Started {
        destination: String,
        query: String,
        interval: Duration,
        once: bool,
    },
    /// The watch takes up what the last run left undone: `studies` current
    /// studies, with `instances` of theirs in the cache and not at the
    /// destination yet.
    Resuming { studies: usize, instances: u64 },
    /// A search of the cloud answered: `found` studies match it, `queued`
    /// of them have something to fetch or deliver. `back_after`: the
    /// searches had been failing for that long.
    Polled {
        found: usize,
        queued: usize,
        back_after: Option<Duration>,
    },
    /// A search failed, `failures` times in a row; the next is in `retry_in`.
    /// `auth`: the cloud refused the credentials.
    PollFailed {
        error: String,
        auth: bool,
        failures: u32,
        retry_in: Duration,
    },
    /// Streaming a study to the destination while it downloads begins,
    /// and its journal says `sent` instances are there already. Only
    /// `watch` streams; a closing pass, as any delivery, says this with the
    /// sending side's [`Reporter::study_started`].
    DeliveredBefore { study: Uid, sent: u64 },
    /// Work on a study of a group ended for now, fetch and delivery
    /// together (a study whose fetch failed: the fetching side's
    /// [`Reporter::study_finished`] says so); `summary` says how.
    StudyDone {
        study: Uid,
        label: String,
        ok: bool,
        summary: String,
    },
    /// A current study and its priors are all at the destination; this
    /// run sent `sent` of their instances (none: all were there already,
    /// as after a restart that finds the last run's work done).
    Delivered {
        label: String,
        studies: usize,
        instances: usize,
        sent: usize,
    },
    /// A current study (or one of its priors) could not be fetched or
    /// delivered; it is tried again in `retry_in`. `error` never names the
    /// current study: `label` does.
    Failed {
        study: Uid,
        label: String,
        error: String,
        retry_in: Option<Duration>,
    },
    /// The destination cannot be reached or refuses us; it is checked
    /// again every `retry_in` until it answers.
    DestinationDown { error: String, retry_in: Duration },
    /// The destination answers again, after being down for `after`.
    DestinationUp { after: Duration },
    /// The state of the whole, after each change.
    Status(WatchStatus),
}

/// Whom `watch` reports to. It fetches and sends at the same time, and
/// both sides tell their progress in the same words (`study_started`,
/// `instance_done`, ...), so each side has a reporter of its own; the
/// watch's own events ([`WatchEvent`]), warnings and notes may go to either.
#[derive(Clone)]
pub struct WatchReporters {
    /// Hears the fetches: instances landing in the cache.
    pub fetching: Arc<dyn Reporter>,
    /// Hears the deliveries: instances arriving at the destination, streamed
    /// or sent by a closing pass (which sends only studies complete in the
    /// cache).
    pub sending: Arc<dyn Reporter>,
    /// With several destinations, the sending side of each, in the order
    /// of the routes, naming its destination; empty with one (`sending` is
    /// its).
    pub destinations: Vec<Arc<dyn Reporter>>,
}

/// The overall line of `watch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchStatus {
    /// Current studies delivered with their priors since the watch began.
    pub delivered: usize,
    /// Current studies waiting to be fetched or delivered.
    pub queued: usize,
    /// Current studies being fetched or delivered now.
    pub in_flight: usize,
    /// Current studies whose last attempt failed (tried again later).
    pub failing: usize,
    /// When the last search answered, and how many studies it found.
    pub last_poll: Option<(SystemTime, usize)>,
}

/// What `prune` tells the person watching it, study by study, as it goes.
#[derive(Debug)]
pub enum PruneEvent<'a> {
    /// A study removed, or in a dry run one that would be.
    Removed(&'a Removed),
    /// An expired study that stays, and why.
    Kept { study: &'a PrunedStudy, why: &'a Kept },
    /// A leftover of a crashed run, deleted (or in a dry run: to be).
    Leftover(&'a Leftover),
    /// Something that failed; the run goes on and ends in an error.
    Failed(&'a anyhow::Error),
    /// Something to know that is not a failure (remains that could not be
    /// deleted yet).
    Note(&'a str),
}

/// A study as prune sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedStudy {
    pub uid: Uid,
    pub accession: Option<String>,
    /// Since the later of the last fetch and the last delivery.
    pub age: Duration,
    /// Where it stands with the destinations that count.
    pub delivered: Delivered,
}

/// Whether a study has done its job, as prune judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Every destination that counts holds all of it: those destinations,
    /// as people know them (`pacs (PACS@h:104)`, or with no destination
    /// configured the `AE@HOST:PORT` of a journal that holds it all).
    Yes(Vec<String>),
    /// The rules send it to no destination, so none holds it back; why
    /// each destination does not take it.
    RoutedNowhere(Vec<String>),
    /// Not delivered: the destinations it waits for (none named when no
    /// destination is configured, or when the rules route it nowhere but
    /// its fetch never finished).
    No(Vec<HeldBack>),
}

impl Delivered {
    /// Nothing holds the study back.
    pub fn is_done(&self) -> bool {
        !matches!(self, Delivered::No(_))
    }
}

/// A destination a study is routed to that does not hold all of it yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// The destination's name (its `AE@HOST:PORT` when it has none).
    pub name: String,
    /// `AE@HOST:PORT`.
    pub to: String,
    /// How it shows itself: `workstation (WS@h:104)`.
    pub label: String,
    /// Instances of the study it holds as delivered.
    pub delivered: usize,
    /// Instances of the study.
    pub total: usize,
}

/// What a study must reach to count as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgedAgainst {
    /// No destination is configured: the journal of any destination.
    Any,
    /// The one destination of `--to` (`AE@HOST:PORT`), as before routes.
    One(String),
    /// Every destination each study is routed to (its rules decide).
    Routed,
}

impl JudgedAgainst {
    /// `any destination`, `PACS@h:104`, `every destination it is routed to`.
    pub fn describe(&self, many: bool) -> String {
        match (self, many) {
            (JudgedAgainst::Any, _) => "any destination".to_string(),
            (JudgedAgainst::One(d), _) => d.clone(),
            (JudgedAgainst::Routed, false) => "every destination it is routed to".to_string(),
            (JudgedAgainst::Routed, true) => "every destination they are routed to".to_string(),
        }
    }
}

/// Why a study goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Delivered, and older than the retention.
    Expired,
    /// Not delivered, older than the retention, and `--include-undelivered`.
    Undelivered,
    /// Older than the hard maximum age.
    MaxAge,
}

/// Why an expired study stays.
#[derive(Debug)]
pub enum Kept {
    /// Not delivered (see the rules in `prune`).
    NotDelivered,
    /// Locked by a running fetch, store or watch.
    Busy,
    /// A file of it is open in another program (Windows).
    InUse(anyhow::Error),
}

/// A study removed, or in a dry run one that would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub study: PrunedStudy,
    pub reason: Reason,
    /// Bytes deleted (in a dry run: that would be).
    pub freed: u64,
}
