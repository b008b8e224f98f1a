//! How a running `watch` is doing, told to the outside: a small status file
//! in the cache (`watch/DEST.status.json`, see `cache`) that the watch keeps
//! up to date ([`Keeper`]), and the verdict `retriever status` draws from it
//! ([`judge`]) for a monitoring system or a scheduled task.
//!
//! The file is rewritten at once when something that matters changes (the
//! search starts or stops working, the destination goes down or comes back,
//! the watch ends), at most every [`FIGURES_EVERY`] while the figures change,
//! and otherwise every [`HEARTBEAT_EVERY`], so that an idle router does not
//! write the disk on every search, and a hung one is seen by its old
//! heartbeat. Every text in it is cut to a bounded length, so the file
//! stays small however long the router runs.
//!
//! With `watch --metrics-file FILE` the same figures go to FILE too, at the
//! same moments, in the Prometheus text format (for node_exporter's textfile
//! collector), so that a monitoring system that scrapes can alert on them.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::record::{rfc3339, rfc3339_opt};
use crate::cache::Cache;
use crate::uid::Uid;

/// The version of the file's layout.
pub const VERSION: u32 = 1;
/// An idle watch rewrites its status (and so its heartbeat) this often.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);
/// Changed figures (queued, delivered, ...) are written at most this often.
const FIGURES_EVERY: Duration = Duration::from_secs(5);
/// A heartbeat older than this many [`HEARTBEAT_EVERY`]s: the watch is hung.
const HEARTBEATS_MISSED: u32 = 3;
/// Unless told otherwise, the search must have worked within this many intervals...
const INTERVALS: u32 = 3;
/// ...and never less than this.
const MIN_WINDOW: Duration = Duration::from_secs(60);
/// The largest status file read: what the watch writes is a few KiB.
pub const MAX_BYTES: u64 = 64 << 10;

/// What the status file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: u32,
    /// The version of retriever that runs the watch.
    pub retriever: String,
    pub pid: u32,
    pub host: String,
    /// Where it delivers: the destination, or the names of several.
    pub destination: String,
    /// The search it repeats.
    pub query: String,
    /// `watch --once`: one pass, then it ends.
    pub once: bool,
    #[serde(with = "rfc3339")]
    pub started_at: SystemTime,
    /// When the watch last wrote this file.
    #[serde(with = "rfc3339")]
    pub heartbeat_at: SystemTime,
    pub heartbeat_every_secs: u64,
    /// Time between two searches, in milliseconds.
    pub interval_ms: u64,
    pub search: Search,
    pub studies: Studies,
    /// Where it delivers, one entry per destination.
    pub destinations: Vec<DestinationStatus>,
    /// Set when the watch ended.
    pub ended: Option<Ended>,
}

/// The searches of the cloud.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Search {
    /// The last search that answered (at most [`HEARTBEAT_EVERY`] older than
    /// the truth while the searches keep working: an answer that changes
    /// nothing is not written at once).
    #[serde(with = "rfc3339_opt")]
    pub last_ok_at: Option<SystemTime>,
    /// How many studies it found.
    pub last_found: Option<usize>,
    pub last_failure: Option<TimedError>,
    /// Failed searches since the last one that answered.
    pub failures_in_a_row: u32,
}

/// Current studies (each with its priors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Studies {
    pub queued: usize,
    pub in_flight: usize,
    /// Whose last attempt failed, to be tried again.
    pub failing: usize,
    /// The day (UTC) the two counts below are of, `YYYY-MM-DD`.
    pub day: String,
    pub delivered_today: usize,
    /// Studies that failed at least once that day.
    pub failed_today: usize,
}

/// A destination the watch delivers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationStatus {
    /// The destination's name in the config file; its `AE@HOST:PORT` when
    /// it has none (and empty in a status written before names).
    #[serde(default)]
    pub name: String,
    /// `AE@HOST:PORT`.
    pub destination: String,
    /// It cannot be reached or refuses us, since then.
    #[serde(with = "rfc3339_opt")]
    pub down_since: Option<SystemTime>,
    /// The last study delivered there with its priors.
    #[serde(with = "rfc3339_opt")]
    pub last_delivery_at: Option<SystemTime>,
    pub last_error: Option<TimedError>,
}

impl DestinationStatus {
    /// `pacs (PACS@h:104)`, or `PACS@h:104` for a destination named by its address.
    pub fn shown(&self) -> String {
        if self.name.is_empty() || self.name == self.destination {
            self.destination.clone()
        } else {
            format!("{} ({})", self.name, self.destination)
        }
    }

    /// Its name, or its address when it has none.
    fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.destination
        } else {
            &self.name
        }
    }
}

/// An error, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedError {
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    pub error: String,
}

impl TimedError {
    fn new(at: SystemTime, error: &str) -> TimedError {
        TimedError {
            at,
            // Bounded, one line, nothing a terminal would obey.
            error: crate::text::escape(error),
        }
    }
}

/// How the watch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// `finished` (a `--once` pass), `interrupted` (Ctrl-C, a service
    /// stop) or `failed`.
    pub how: String,
    pub error: Option<String>,
}

impl Status {
    /// Reads a status file as `cache` gives it.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Status> {
        let status: Status = serde_json::from_slice(bytes).with_context(|| {
            format!(
                "the watch status `{name}.status.json` in the cache is damaged or from another version of retriever"
            )
        })?;
        anyhow::ensure!(
            status.version == VERSION,
            "the watch status `{name}.status.json` is of version {}, which this retriever cannot read; \
             run `retriever status` of the version that runs the watch",
            status.version
        );
        Ok(status)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The same, without what changes by itself while nothing happens.
    fn figures(&self) -> Status {
        let mut s = self.clone();
        s.heartbeat_at = UNIX_EPOCH;
        s.search.last_ok_at = s.search.last_ok_at.map(|_| UNIX_EPOCH);
        s
    }
}

/// Whether the router is running and working, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub ok: bool,
    /// Its lock is held: the process is alive.
    pub running: bool,
    /// Why it is not ok.
    pub reason: Option<String>,
}

/// The default of `status --stale-after`: [`INTERVALS`] search intervals,
/// at least [`MIN_WINDOW`].
pub fn default_window(interval: Duration) -> Duration {
    (interval * INTERVALS).max(MIN_WINDOW)
}

/// Judges `status`: `running` says whether its lock is held now; the search
/// must have worked within `window` (see [`default_window`]).
pub fn judge(status: &Status, running: bool, now: SystemTime, window: Option<Duration>) -> Verdict {
    let fail = |reason: String| Verdict {
        ok: false,
        running,
        reason: Some(reason),
    };
    let who = format!(
        "the `retriever watch` delivering to {} (pid {} on {})",
        status.destination, status.pid, status.host
    );
    let ago = |t: SystemTime| format!("{} ({} ago)", time(t), crate::format::two_units(age(t, now)));
    if !running {
        return fail(match &status.ended {
            Some(ended) if status.once && ended.how == "finished" => format!(
                "{who} is not running: it ended at {} after one pass (`watch --once`); start `retriever watch` \
                 to route continuously",
                ago(ended.at)
            ),
            Some(ended) => format!(
                "{who} is not running: it ended at {} ({}{}); start it again",
                ago(ended.at),
                ended.how,
                ended.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
            None => format!(
                "{who} is not running: it stopped without saying why (killed, or the machine went down) after \
                 its last heartbeat at {}; start it again (`retriever watch` or its service)",
                ago(status.heartbeat_at)
            ),
        });
    }
    let every = Duration::from_secs(status.heartbeat_every_secs.max(1));
    if age(status.heartbeat_at, now) > every * HEARTBEATS_MISSED {
        return fail(format!(
            "{who} is running but not responding: its last heartbeat was at {}; restart it",
            ago(status.heartbeat_at)
        ));
    }
    let window = window.unwrap_or_else(|| default_window(status.interval()));
    let search = &status.search;
    // While the searches fail, every failure is written at once, so the
    // last success in the file is exact; while they work, it may lag by a
    // heartbeat.
    let allowed = if search.failures_in_a_row > 0 {
        window
    } else {
        window + every
    };
    let since = search.last_ok_at.unwrap_or(status.started_at);
    if age(since, now) > allowed {
        let what = match search.last_ok_at {
            Some(t) => format!("no search of the cloud has worked since {}", ago(t)),
            None => format!("no search of the cloud has worked since it started at {}", ago(since)),
        };
        let last = match &search.last_failure {
            Some(f) if search.failures_in_a_row > 0 => format!(
                "; {} failed in a row, the last at {}: {}",
                search.failures_in_a_row,
                time(f.at),
                f.error
            ),
            _ => "; a search is still waiting for the cloud".to_string(),
        };
        return fail(format!("{who}: {what}{last}"));
    }
    // Every destination down for longer than the window, each named.
    let down: Vec<String> = status
        .destinations
        .iter()
        .filter_map(|d| {
            let since = d.down_since.filter(|t| age(*t, now) > window)?;
            let why = d
                .last_error
                .as_ref()
                .map(|e| format!(": {}", e.error))
                .unwrap_or_default();
            Some(format!(
                "the destination {} has not taken studies since {}{why}",
                d.shown(),
                ago(since)
            ))
        })
        .collect();
    if !down.is_empty() {
        return fail(format!("{who}: {}", down.join("; ")));
    }
    Verdict {
        ok: true,
        running,
        reason: None,
    }
}

/// The figures of `s` in the Prometheus text format (version 0.0.4).
/// Times are Unix seconds, 0 for never; no text from a peer goes in it.
///
/// Each figure has a `destination` label: with one destination, the
/// watch's; with several, one line per destination, named, its own figures
/// and the watch's alike (so an alert can be per destination).
pub fn metrics(s: &Status) -> String {
    let each: Vec<(String, [Figure; 15])> = match s.destinations.as_slice() {
        [] | [_] => vec![(s.destination.clone(), figures(s, s.destinations.first()))],
        several => several
            .iter()
            .map(|d| (d.label().to_string(), figures(s, Some(d))))
            .collect(),
    };
    let mut out = String::new();
    // A figure's lines, one per destination, follow its help and type together.
    for at in 0..15 {
        let (name, help, _) = each[0].1[at];
        let _ = writeln!(out, "# HELP retriever_watch_{name} {help}");
        let _ = writeln!(out, "# TYPE retriever_watch_{name} gauge");
        for (label, figures) in &each {
            let _ = writeln!(
                out,
                "retriever_watch_{name}{{destination=\"{}\"}} {}",
                label_value(label),
                figures[at].2
            );
        }
    }
    out
}

/// A gauge: its name, its help, its value.
type Figure = (&'static str, &'static str, u64);

/// The figures of the watch `s` and of its destination `dest`.
fn figures(s: &Status, dest: Option<&DestinationStatus>) -> [Figure; 15] {
    let secs = |t: Option<SystemTime>| t.map_or(0, |t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
    // All gauges: each is a state now, not a count since the start.
    [
        (
            "up",
            "1 while the watch runs, 0 once it ended",
            u64::from(s.ended.is_none()),
        ),
        ("start_time_seconds", "when the watch started", secs(Some(s.started_at))),
        (
            "heartbeat_time_seconds",
            "when the watch last wrote its status",
            secs(Some(s.heartbeat_at)),
        ),
        (
            "search_interval_seconds",
            "time between two searches of the cloud",
            s.interval().as_secs(),
        ),
        (
            "last_search_success_time_seconds",
            "the last search of the cloud that answered",
            secs(s.search.last_ok_at),
        ),
        (
            "last_search_failure_time_seconds",
            "the last search of the cloud that failed",
            secs(s.search.last_failure.as_ref().map(|f| f.at)),
        ),
        (
            "search_failures_in_a_row",
            "failed searches since the last that answered",
            u64::from(s.search.failures_in_a_row),
        ),
        (
            "studies_queued",
            "current studies waiting to be fetched or delivered",
            s.studies.queued as u64,
        ),
        (
            "studies_in_flight",
            "current studies being fetched or delivered",
            s.studies.in_flight as u64,
        ),
        (
            "studies_failing",
            "current studies whose last attempt failed",
            s.studies.failing as u64,
        ),
        (
            "studies_delivered_today",
            "current studies delivered with their priors today (UTC)",
            s.studies.delivered_today as u64,
        ),
        (
            "studies_failed_today",
            "current studies that failed at least once today (UTC)",
            s.studies.failed_today as u64,
        ),
        (
            "destination_down",
            "1 while the destination cannot be reached or refuses us",
            u64::from(dest.is_some_and(|d| d.down_since.is_some())),
        ),
        (
            "destination_down_since_seconds",
            "since when the destination is down, 0 if it is up",
            secs(dest.and_then(|d| d.down_since)),
        ),
        (
            "last_delivery_time_seconds",
            "the last study delivered with its priors",
            secs(dest.and_then(|d| d.last_delivery_at)),
        ),
    ]
}

/// A label value in the Prometheus text format: `\`, `"` and newlines escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A time as the status file writes it.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn age(t: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(t).unwrap_or_default()
}

/// `YYYY-MM-DD` of `t`, in UTC.
fn day_of(t: SystemTime) -> String {
    time(t)[..10].to_string()
}

/// This machine's name, as far as it can be told without asking the network.
fn host_name() -> String {
    let from_env = std::env::var("COMPUTERNAME").ok();
    let from_file = || {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
    };
    from_env
        .or_else(from_file)
        .map(|h| crate::text::escape(h.trim()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

/// A destination of the watch, as its status names it.
pub(super) struct Place {
    /// Its key in the cache (`Destination::key`).
    pub key: String,
    pub name: String,
    /// `AE@HOST:PORT`.
    pub to: String,
}

/// Keeps the status of a running watch, and writes it when due.
pub(super) struct Keeper {
    status: Status,
    /// The files it is written to: one per destination (its key), so that
    /// `retriever status` finds the watch by any of them.
    names: Vec<String>,
    /// Where the figures go for Prometheus too.
    metrics: Option<PathBuf>,
    /// When it was last written, and what.
    written: Option<(Instant, Status)>,
    /// Something that matters changed: write at once.
    urgent: bool,
    /// The studies counted today, each by a 64-bit hash of its UID rather
    /// than a copy of it: the copies, one more allocation per study made
    /// among the work of its delivery, came to 85 bytes a study (heaptrack:
    /// 170 kB after 2000), the hashes to about 20. Two UIDs of a day sharing
    /// a hash (one chance in 10^11 with 10 000 studies) would count as one.
    delivered_today: HashSet<u64>,
    failed_today: HashSet<u64>,
    ids: RandomState,
    /// The last write failed (warned once, not at every try).
    failing: bool,
}

impl Keeper {
    /// The keeper of a watch with one destination, `name` its key.
    #[cfg(test)]
    pub(super) fn new(
        name: &str,
        destination: &str,
        query: String,
        interval: Duration,
        once: bool,
        metrics: Option<PathBuf>,
    ) -> Keeper {
        let place = Place {
            key: name.to_string(),
            name: destination.to_string(),
            to: destination.to_string(),
        };
        Keeper::with_destinations(&[place], query, interval, once, metrics)
    }

    /// The keeper of a watch delivering to `places`, in the order of its routes.
    pub(super) fn with_destinations(
        places: &[Place],
        query: String,
        interval: Duration,
        once: bool,
        metrics: Option<PathBuf>,
    ) -> Keeper {
        let now = SystemTime::now();
        let destinations: Vec<DestinationStatus> = places
            .iter()
            .map(|p| DestinationStatus {
                name: p.name.clone(),
                destination: p.to.clone(),
                down_since: None,
                last_delivery_at: None,
                last_error: None,
            })
            .collect();
        let destination = match destinations.as_slice() {
            [one] => one.shown(),
            several => several
                .iter()
                .map(DestinationStatus::shown)
                .collect::<Vec<_>>()
                .join(", "),
        };
        Keeper {
            status: Status {
                version: VERSION,
                retriever: env!("CARGO_PKG_VERSION").to_string(),
                pid: std::process::id(),
                host: host_name(),
                destination,
                query: crate::text::escape(&query),
                once,
                started_at: now,
                heartbeat_at: now,
                heartbeat_every_secs: HEARTBEAT_EVERY.as_secs(),
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                search: Search::default(),
                studies: Studies {
                    day: day_of(now),
                    ..Studies::default()
                },
                destinations,
                ended: None,
            },
            names: places.iter().map(|p| p.key.clone()).collect(),
            metrics,
            written: None,
            urgent: true,
            delivered_today: HashSet::new(),
            failed_today: HashSet::new(),
            ids: RandomState::new(),
            failing: false,
        }
    }

    pub(super) fn searched(&mut self, now: SystemTime, found: usize) {
        let search = &mut self.status.search;
        self.urgent |= search.failures_in_a_row > 0 || search.last_ok_at.is_none();
        search.last_ok_at = Some(now);
        search.last_found = Some(found);
        search.failures_in_a_row = 0;
    }

    pub(super) fn search_failed(&mut self, now: SystemTime, error: &str, failures: u32) {
        let search = &mut self.status.search;
        // The first failure of a run is news; the next ones are figures.
        self.urgent |= search.failures_in_a_row == 0;
        search.last_failure = Some(TimedError::new(now, error));
        search.failures_in_a_row = failures;
    }

    /// A current study is at every destination it is routed to.
    pub(super) fn delivered(&mut self, study: &Uid, now: SystemTime) {
        self.new_day(now);
        self.delivered_today.insert(self.ids.hash_one(study));
        self.status.studies.delivered_today = self.delivered_today.len();
    }

    /// A current study (or a prior of it) was delivered to the `at`-th destination.
    pub(super) fn delivered_to(&mut self, at: usize, now: SystemTime) {
        if let Some(d) = self.status.destinations.get_mut(at) {
            d.last_delivery_at = Some(now);
        }
    }

    pub(super) fn failed(&mut self, study: &Uid, now: SystemTime) {
        self.new_day(now);
        self.failed_today.insert(self.ids.hash_one(study));
        self.status.studies.failed_today = self.failed_today.len();
    }

    pub(super) fn destination_down(&mut self, at: usize, now: SystemTime, error: &str) {
        if let Some(d) = self.status.destinations.get_mut(at) {
            if d.down_since.is_none() {
                d.down_since = Some(now);
                self.urgent = true;
            }
            d.last_error = Some(TimedError::new(now, error));
        }
    }

    pub(super) fn destination_up(&mut self, at: usize) {
        if let Some(d) = self.status.destinations.get_mut(at) {
            self.urgent |= d.down_since.take().is_some();
        }
    }

    pub(super) fn figures(&mut self, queued: usize, in_flight: usize, failing: usize) {
        let studies = &mut self.status.studies;
        (studies.queued, studies.in_flight, studies.failing) = (queued, in_flight, failing);
        self.new_day(SystemTime::now());
    }

    pub(super) fn ended(&mut self, how: &str, error: Option<String>) {
        self.status.studies.in_flight = 0;
        self.status.ended = Some(Ended {
            at: SystemTime::now(),
            how: how.to_string(),
            error: error.map(|e| crate::text::escape(&e)),
        });
        self.urgent = true;
    }

    /// The counts of the day start again at midnight (UTC).
    fn new_day(&mut self, now: SystemTime) {
        let day = day_of(now);
        if day != self.status.studies.day {
            self.delivered_today.clear();
            self.failed_today.clear();
            let studies = &mut self.status.studies;
            (studies.day, studies.delivered_today, studies.failed_today) = (day, 0, 0);
        }
    }

    /// Writes the status if it is due; the error of a failed write, the
    /// first time in a row it fails.
    pub(super) fn write_if_due(&mut self, cache: &Cache) -> Option<anyhow::Error> {
        let due = match &self.written {
            None => true,
            Some((at, before)) => {
                let since = at.elapsed();
                self.urgent
                    || since >= HEARTBEAT_EVERY
                    || (since >= FIGURES_EVERY && before.figures() != self.status.figures())
            }
        };
        if !due {
            return None;
        }
        self.status.heartbeat_at = SystemTime::now();
        let written = serde_json::to_vec_pretty(&self.status)
            .context("failed to encode the watch status")
            .and_then(|bytes| {
                self.names
                    .iter()
                    .try_for_each(|name| cache.write_watch_status(name, &bytes))
            })
            .and_then(|()| match &self.metrics {
                Some(path) => crate::cache::write_atomic_readable(path, metrics(&self.status).as_bytes())
                    .context("failed to write the metrics file (--metrics-file)"),
                None => Ok(()),
            });
        // Tried again at the next heartbeat, not at every turn of the loop.
        self.written = Some((Instant::now(), self.status.clone()));
        self.urgent = false;
        match written {
            Ok(()) => {
                self.failing = false;
                None
            }
            Err(e) => (!std::mem::replace(&mut self.failing, true)).then_some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_795_816_800;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn keeper() -> Keeper {
        Keeper::new(
            "PACS@h_104",
            "PACS@h:104",
            "StudyDate=today".into(),
            Duration::from_secs(30),
            false,
            None,
        )
    }

    fn status() -> Status {
        let mut k = keeper();
        k.status.started_at = at(0);
        k.status.heartbeat_at = at(0);
        k.status.host = "router1".into();
        k.status.pid = 42;
        k.status
    }

    fn reason(v: Verdict) -> String {
        assert!(!v.ok);
        v.reason.unwrap()
    }

    /// The day's counts take each study once and start again each day, and
    /// what they hold of a study is a few bytes, not a copy of its UID: a
    /// router delivers thousands a day, each counted among the work of its
    /// delivery.
    #[test]
    fn the_days_counts_take_each_study_once_and_hold_no_copy_of_it() {
        let mut k = keeper();
        let day = |d: u64| UNIX_EPOCH + Duration::from_secs(d * 86_400 + 3_600);
        let n = 10_000;
        // UIDs of 60 characters, as real ones are: their copies would weigh.
        let studies: Vec<Uid> = (0..n)
            .map(|i| {
                Uid::parse(&format!(
                    "1.2.826.0.1.3680043.10.543.77.20261203.1234567890.{}",
                    10_000_000 + i
                ))
                .unwrap()
            })
            .collect();
        let ((), held) = crate::testalloc::measure(|| {
            for study in &studies {
                k.delivered(study, day(20_000));
            }
        });
        assert_eq!(k.status.studies.delivered_today, n);
        // A table of n hashes peaks at about 40 bytes a study while it grows; a
        // copy of each UID (64 bytes with its table slot and allocation) is past it.
        assert!(held.peak < 40 * n, "{} bytes held for {n} studies", held.peak);
        k.delivered(&studies[0], day(20_000));
        k.failed(&studies[1], day(20_000));
        k.failed(&studies[1], day(20_000));
        assert_eq!(
            (k.status.studies.delivered_today, k.status.studies.failed_today),
            (n, 1)
        );
        k.delivered(&studies[0], day(20_001));
        assert_eq!(
            (k.status.studies.delivered_today, k.status.studies.failed_today),
            (1, 0)
        );
    }

    #[test]
    fn a_running_router_whose_search_works_is_ok() {
        let mut s = status();
        s.search.last_ok_at = Some(at(100));
        s.heartbeat_at = at(100);
        assert!(judge(&s, true, at(130), None).ok);
        // The last success may lag a heartbeat behind in the file.
        assert!(judge(&s, true, at(100 + 90 + 60), None).ok);
        assert!(reason(judge(&s, true, at(100 + 90 + 61), None)).contains("still waiting for the cloud"));
        // A just-started router is given the window to search.
        let fresh = status();
        assert!(judge(&fresh, true, at(20), None).ok);
    }

    #[test]
    fn each_way_of_not_working_says_why() {
        let s = status();
        let r = reason(judge(&s, false, at(10), None));
        assert!(
            r.contains("pid 42 on router1) is not running") && r.contains("stopped without saying why"),
            "{r}"
        );

        let mut ended = status();
        ended.once = true;
        ended.ended = Some(Ended {
            at: at(5),
            how: "finished".into(),
            error: None,
        });
        assert!(reason(judge(&ended, false, at(10), None)).contains("after one pass (`watch --once`)"));

        let mut hung = status();
        hung.search.last_ok_at = Some(at(0));
        let r = reason(judge(&hung, true, at(181), Some(Duration::from_secs(3600))));
        assert!(r.contains("not responding"), "{r}");

        let mut failing = status();
        failing.heartbeat_at = at(60);
        failing.search.failures_in_a_row = 4;
        failing.search.last_failure = Some(TimedError::new(at(59), "HTTP 503\nfrom the cloud"));
        assert!(judge(&failing, true, at(60), None).ok, "within the window");
        let r = reason(judge(&failing, true, at(91), Some(Duration::from_secs(90))));
        assert!(r.contains("since it started at 2026-11-27T22:00:00Z"), "{r}");
        assert!(
            r.contains("4 failed in a row, the last at 2026-11-27T22:00:59Z: HTTP 503\\nfrom"),
            "{r}"
        );

        let mut down = status();
        down.search.last_ok_at = Some(at(100));
        down.heartbeat_at = at(100);
        down.destinations[0].down_since = Some(at(20));
        down.destinations[0].last_error = Some(TimedError::new(at(90), "connection refused"));
        let r = reason(judge(&down, true, at(120), Some(Duration::from_secs(60))));
        assert!(
            r.contains("has not taken studies since") && r.contains("connection refused"),
            "{r}"
        );
    }

    #[test]
    fn metrics_are_prometheus_text_with_every_figure() {
        let mut s = status();
        s.destination = "PA\"CS@h:104".into();
        s.search.last_ok_at = Some(at(100));
        s.studies.delivered_today = 7;
        s.destinations[0].down_since = Some(at(50));
        let text = metrics(&s);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 15, "{text}");
        for line in &lines {
            let (name, value) = line.split_once("{destination=\"PA\\\"CS@h:104\"} ").expect(line);
            assert!(name.starts_with("retriever_watch_"), "{line}");
            assert!(value.parse::<u64>().is_ok(), "{line}");
            assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
        }
        assert!(lines.contains(&"retriever_watch_up{destination=\"PA\\\"CS@h:104\"} 1"));
        assert!(text.contains(&format!(
            "retriever_watch_last_search_success_time_seconds{{destination=\"PA\\\"CS@h:104\"}} {}\n",
            T0 + 100
        )));
        assert!(text.contains("retriever_watch_studies_delivered_today{destination=\"PA\\\"CS@h:104\"} 7\n"));
        assert!(text.contains("retriever_watch_destination_down{destination=\"PA\\\"CS@h:104\"} 1\n"));
        assert!(text.contains("retriever_watch_last_delivery_time_seconds{destination=\"PA\\\"CS@h:104\"} 0\n"));
    }

    fn two() -> Keeper {
        let place = |key: &str, name: &str, to: &str| Place {
            key: key.into(),
            name: name.into(),
            to: to.into(),
        };
        let places = [
            place("PACS@h_104", "pacs", "PACS@h:104"),
            place("WS@h_105", "ws", "WS@h:105"),
        ];
        let mut k = Keeper::with_destinations(&places, "q".into(), Duration::from_secs(30), false, None);
        k.status.started_at = at(0);
        k.status.heartbeat_at = at(100);
        k.status.search.last_ok_at = Some(at(100));
        k
    }

    /// With two destinations: one line per destination for each figure, under one help and
    /// type; the verdict names the destination that is down; the status goes under each
    /// destination's name.
    #[test]
    fn several_destinations_each_have_their_figures_and_verdict() {
        let mut k = two();
        assert_eq!(k.status.destination, "pacs (PACS@h:104), ws (WS@h:105)");
        k.destination_down(1, at(20), "connection refused");
        k.delivered_to(0, at(90));
        let text = metrics(&k.status);
        assert_eq!(text.matches("# TYPE retriever_watch_up gauge\n").count(), 1, "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 30, "{text}");
        assert!(text.contains(
            "retriever_watch_destination_down{destination=\"pacs\"} 0\nretriever_watch_destination_down{destination=\"ws\"} 1\n"
        ));
        assert!(text.contains(&format!(
            "retriever_watch_last_delivery_time_seconds{{destination=\"pacs\"}} {}\n",
            T0 + 90
        )));
        assert!(text.contains("retriever_watch_last_delivery_time_seconds{destination=\"ws\"} 0\n"));

        let r = reason(judge(&k.status, true, at(120), Some(Duration::from_secs(60))));
        assert!(
            r.contains("the destination ws (WS@h:105) has not taken studies since") && !r.contains("destination pacs"),
            "{r}"
        );
        k.destination_up(1);
        assert!(judge(&k.status, true, at(120), Some(Duration::from_secs(60))).ok);

        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert!(k.write_if_due(&cache).is_none());
        assert_eq!(cache.watch_statuses().unwrap(), ["PACS@h_104", "WS@h_105"]);
        let back = Status::parse(&cache.read_watch_status("WS@h_105", MAX_BYTES).unwrap().unwrap(), "x").unwrap();
        assert_eq!(back.destinations[1].shown(), "ws (WS@h:105)");
    }

    #[test]
    fn news_is_written_at_once_and_a_quiet_search_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut k = Keeper::new(
            "PACS@h_104",
            "PACS@h:104",
            "q".into(),
            Duration::from_secs(1),
            false,
            None,
        );
        let read = |cache: &Cache| {
            Status::parse(&cache.read_watch_status("PACS@h_104", MAX_BYTES).unwrap().unwrap(), "x").unwrap()
        };
        assert!(k.write_if_due(&cache).is_none());
        assert_eq!(read(&cache).search.last_ok_at, None);
        k.searched(SystemTime::now(), 3);
        k.write_if_due(&cache);
        assert_eq!(read(&cache).search.last_found, Some(3), "the first answer is news");
        let first = read(&cache).search.last_ok_at;
        k.searched(SystemTime::now() + Duration::from_secs(5), 3);
        k.write_if_due(&cache);
        assert_eq!(
            read(&cache).search.last_ok_at,
            first,
            "an answer that changes nothing waits"
        );
        k.search_failed(SystemTime::now(), "HTTP 503", 1);
        k.write_if_due(&cache);
        assert_eq!(read(&cache).search.failures_in_a_row, 1, "a failure is news");
        k.destination_down(0, SystemTime::now(), "refused");
        k.write_if_due(&cache);
        assert!(read(&cache).destinations[0].down_since.is_some());
        k.ended("finished", None);
        k.write_if_due(&cache);
        assert_eq!(read(&cache).ended.unwrap().how, "finished");
        let size = cache.read_watch_status("PACS@h_104", MAX_BYTES).unwrap().unwrap().len();
        k.search_failed(SystemTime::now(), &"x".repeat(100_000), 2);
        k.ended("failed", Some("y".repeat(100_000)));
        k.write_if_due(&cache);
        let bigger = cache.read_watch_status("PACS@h_104", MAX_BYTES).unwrap().unwrap().len();
        assert!(bigger < size + 2 * 1024, "bounded: {bigger} bytes");
    }
}
