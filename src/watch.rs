//! `watch`: the router. Searches the cloud every `interval` for the studies
//! of its worklist, fetches each new study with its priors, and delivers them
//! to the destination while they download; a study that grows is fetched and
//! delivered again (only what is new) until it has been stable for
//! `stable_age`.
//!
//! Threads, each with one job:
//! - the coordinator (the caller's thread) owns the record of what was seen
//!   and delivered (`record`), starts searches and fetches, and keeps the
//!   view up to date; nothing it does blocks on the network;
//! - a search runs on a thread of its own, so a cloud that hangs delays the
//!   next search but never Ctrl-C;
//! - each current study is fetched with its priors on a thread of its own
//!   ([`STUDIES_AT_ONCE`] at a time, all sharing one pool of `--jobs`
//!   downloads), one patient at a time since a patient's studies are each
//!   other's priors;
//! - one deliverer owns the destination side (`deliver`): it sends each
//!   instance as it lands and closes each study with a `store` pass.
//!
//! Trouble never ends the loop: a cloud that does not answer the search is
//! searched again every [`CLOUD_PROBE_EVERY`] until it does (a refused
//! login, which waiting does not mend, with backoff), a study that failed
//! to fetch or deliver is taken up again with backoff, and a destination
//! that is down holds the deliveries (not the fetches) until a probe finds
//! it answering again. Ctrl-C
//! stops taking up work, lets what is in flight stop at its next instance,
//! writes the record and returns [`Interrupted`].
//!
//! The coordinator also keeps the watch's status in the cache (`status`),
//! which `retriever status` reads to tell whether the router works.

mod deliver;
mod filter;
mod record;
pub mod status;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

pub use deliver::DeliveredStudy;
pub use filter::{Filter, default_filters, describe};

use crate::cache::{Cache, WatchLock};
use crate::delivery::StoreOptions;
use crate::dicomweb::Client;
use crate::dicomweb::ClientOptions;
use crate::fetch;
use crate::interrupt::{self, Interrupted};
use crate::priors::Rules;
use crate::report::{Reporter, WatchEvent, WatchReporters, WatchStatus};
use crate::uid::Uid;
use deliver::{Deliverer, Fetched, GroupOutcome, GroupStudy, ToDeliverer};
use record::{Found, Record, retry_delay};

/// Current studies (each with its priors) fetched at once. Two, so that one
/// study's slow tail (a retry, a big last series) does not hold up the next,
/// while most of `--jobs` goes to the study that arrived first.
pub const STUDIES_AT_ONCE: usize = 2;
/// The longest wait between two searches after the cloud refused the login.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(120);
/// While the cloud does not answer, it is searched again this often (or
/// every interval, if shorter), so that the watch resumes within a couple of
/// seconds of its return; with a backoff capped at two minutes it resumed
/// 16 s after. A search the cloud cannot answer is one request
/// (made without retries meanwhile), refused or failed at once; the first
/// that works is the search itself, with nothing to ask again. Only the
/// first failure of an outage is told.
const CLOUD_PROBE_EVERY: Duration = Duration::from_secs(1);
/// The record is written at most this often (and at the end).
const SAVE_EVERY: Duration = Duration::from_secs(2);
/// After Ctrl-C, how long in-flight work gets to stop by itself.
const GRACE: Duration = Duration::from_secs(5);
/// Tries at taking the watch's lock, [`LOCK_PAUSE`] apart, before another
/// watch is said to hold it: `retriever status` holds it for an instant to
/// see whether a watch runs.
const LOCK_TRIES: u32 = 10;
const LOCK_PAUSE: Duration = Duration::from_millis(100);

/// Time between two searches unless configured otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// As Orthanc's `StableAge`.
pub const DEFAULT_STABLE_AGE: Duration = Duration::from_secs(60);

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The search's matching keys (never empty: see [`default_filters`]).
    pub filters: Vec<Filter>,
    pub interval: Duration,
    pub stable_age: Duration,
    /// One pass: search once, fetch and deliver what it found, return.
    pub once: bool,
    pub rules: Rules,
    /// Where to keep the status's figures for Prometheus too (see `status`).
    pub metrics_file: Option<PathBuf>,
}

/// How a `--once` pass went (a watch that runs until Ctrl-C returns [`Interrupted`]).
#[derive(Debug, Default)]
pub struct Summary {
    /// Current studies delivered with their priors.
    pub delivered: usize,
    /// Current studies not delivered: label, and each cause once.
    pub failed: Vec<(String, Vec<String>)>,
    /// Why the search failed, if it did.
    pub search_error: Option<String>,
}

impl Summary {
    /// The one-line reason the pass failed, or `None`: how many studies
    /// failed and the first cause, short, since the log said each study and
    /// each cause already.
    pub fn error(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(e) = &self.search_error {
            parts.push(format!("the search of the cloud failed: {}", crate::text::escape(e)));
        }
        let mut causes: Vec<&str> = Vec::new();
        for cause in self.failed.iter().flat_map(|(_, c)| c) {
            if !causes.contains(&cause.as_str()) {
                causes.push(cause);
            }
        }
        let more = match causes.len() {
            0 | 1 => String::new(),
            2 => " (1 more cause in the log)".to_string(),
            n => format!(" ({} more causes in the log)", n - 1),
        };
        let first = causes.first().map(|c| format!(": {}", crate::text::escape(c)));
        match self.failed.as_slice() {
            [] => {}
            [(label, _)] => parts.push(format!(
                "study {label} was not delivered{}{more}",
                first.unwrap_or_default()
            )),
            many => parts.push(format!(
                "{} studies were not delivered{}{more}",
                many.len(),
                first.unwrap_or_default()
            )),
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// What one search found.
struct Polled {
    studies: Vec<(Uid, Found)>,
    warnings: Vec<String>,
}

/// Messages to the coordinator.
enum Msg {
    Polled(Result<Polled>),
    /// A group's fetch returned (its slot is free).
    Fetched(Uid),
    Delivered(Box<GroupOutcome>),
    /// The destination cannot be reached or refuses us: why.
    DestinationDown(String),
    /// The destination answers again.
    DestinationUp,
}

/// Runs the router until Ctrl-C (or, with `once`, one pass). The fetches
/// report to `view.fetching`, the deliveries to `view.sending`.
/// `on_delivered` is called for each study that is now entirely at the
/// destination.
pub fn run(
    config: &WatchConfig,
    cloud: &ClientOptions,
    cache: &Cache,
    store: &StoreOptions,
    view: WatchReporters,
    on_delivered: &mut dyn FnMut(&DeliveredStudy),
) -> Result<Summary> {
    let destination = store.scu.destination.to_string();
    let dest_key = store.scu.destination.key();
    let lock = lock_watch(cache, &dest_key)?.with_context(|| {
        format!(
            "another `retriever watch` is already delivering to {destination} from the cache `{}`",
            cache.root().display()
        )
    })?;
    let record = Record::load(cache, &dest_key)?;
    limit_arenas();
    // Searches give up sooner than downloads: the next search is the retry.
    let mut search_cloud = cloud.clone();
    search_cloud.retries = search_cloud.retries.min(1);
    let (tx, rx) = mpsc::channel();
    let (to_deliverer, deliverer_inbox) = mpsc::channel();
    let deliverer = Deliverer::new(
        cache.clone(),
        store.clone(),
        cloud.clone(),
        view.sending,
        config.once,
        deliverer_inbox,
        tx.clone(),
    );
    let deliverer = std::thread::Builder::new()
        .name("deliver".into())
        .spawn(move || deliverer.run())
        .context("failed to start the delivery thread")?;
    let status = status::Keeper::new(
        &dest_key,
        &destination,
        describe(&config.filters),
        config.interval,
        config.once,
        config.metrics_file.clone(),
    );
    let mut router = Router {
        config,
        cache: cache.clone(),
        destination,
        dest_key,
        _lock: lock,
        record,
        view: view.fetching,
        client: Client::new(cloud)?,
        search_client: Client::new(&search_cloud)?,
        probe_client: Client::new(&ClientOptions {
            retries: 0,
            ..search_cloud.clone()
        })?,
        pool: Arc::new(fetch::download_pool(cloud.jobs)?),
        retries: cloud.retries,
        tx,
        rx,
        to_deliverer: Some(to_deliverer),
        deliverer: Some(deliverer),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        reported: HashMap::new(),
        in_flight: HashMap::new(),
        fetching: 0,
        fetchers: Vec::new(),
        searching: None,
        next_search: Instant::now(),
        search_failures: 0,
        cloud_down: None,
        searched: false,
        last_poll: None,
        shown: None,
        last_save: Instant::now(),
        summary: Summary::default(),
        status,
    };
    router.run(on_delivered)
}

/// Takes the watch's lock, trying again for a moment while it is held (see [`LOCK_TRIES`]).
fn lock_watch(cache: &Cache, dest_key: &str) -> Result<Option<WatchLock>> {
    for _ in 1..LOCK_TRIES {
        if let Some(lock) = cache.try_lock_watch(dest_key)? {
            return Ok(Some(lock));
        }
        std::thread::sleep(LOCK_PAUSE);
    }
    cache.try_lock_watch(dest_key)
}

struct Flight {
    patient: Option<(String, String)>,
    fetching: bool,
}

struct Router<'a> {
    config: &'a WatchConfig,
    cache: Cache,
    /// The fetching side's reporter, which hears the watch's events too.
    view: Arc<dyn Reporter>,
    destination: String,
    dest_key: String,
    _lock: WatchLock,
    record: Record,
    client: Client,
    search_client: Client,
    /// Searches while the cloud does not answer: one request, no retry (the next probe is one).
    probe_client: Client,
    pool: Arc<rayon::ThreadPool>,
    retries: u32,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    to_deliverer: Option<Sender<ToDeliverer>>,
    deliverer: Option<JoinHandle<Result<()>>>,
    queue: VecDeque<Uid>,
    queued: HashSet<Uid>,
    /// The instance count of each study the last search found (if the cloud gives it).
    reported: HashMap<Uid, Option<u64>>,
    in_flight: HashMap<Uid, Flight>,
    fetching: usize,
    /// The fetch threads, by the current study they fetch.
    fetchers: Vec<(Uid, JoinHandle<()>)>,
    /// The search running, since when.
    searching: Option<(Instant, JoinHandle<()>)>,
    next_search: Instant,
    search_failures: u32,
    /// The searches fail since then; `true` while the cloud refuses the login.
    cloud_down: Option<(Instant, bool)>,
    searched: bool,
    last_poll: Option<(SystemTime, usize)>,
    shown: Option<WatchStatus>,
    last_save: Instant,
    summary: Summary,
    /// What `retriever status` reads.
    status: status::Keeper,
}

impl Router<'_> {
    fn run(&mut self, on_delivered: &mut dyn FnMut(&DeliveredStudy)) -> Result<Summary> {
        self.view.watch(&WatchEvent::Started {
            destination: self.destination.clone(),
            query: describe(&self.config.filters),
            interval: self.config.interval,
            once: self.config.once,
        });
        // What the last run left undone is taken up at once, found by the search or not.
        let undone = self.record.undone();
        if !undone.is_empty() {
            let instances = undone.iter().map(|uid| self.to_send(uid)).sum();
            self.view.watch(&WatchEvent::Resuming {
                studies: undone.len(),
                instances,
            });
        }
        for uid in undone {
            self.enqueue(uid);
        }
        self.write_status();
        let outcome = self.work(on_delivered);
        let stopped = self.stop(on_delivered);
        self.save();
        let ended = match (&outcome, &stopped) {
            (Err(e), _) | (_, Err(e)) if e.is::<Interrupted>() => ("interrupted", None),
            (Err(e), _) | (_, Err(e)) => ("failed", Some(format!("{e:#}"))),
            (Ok(()), Ok(())) => ("finished", self.summary.error()),
        };
        self.show_status();
        self.status.ended(ended.0, ended.1);
        self.write_status();
        outcome?;
        stopped?;
        Ok(std::mem::take(&mut self.summary))
    }

    /// The instances of `study` in the cache and not at the destination, as
    /// far as its manifest and journal tell (none when it is not in the cache).
    fn to_send(&self, study: &Uid) -> u64 {
        match self.cache.study_status(study) {
            Ok(Some(status)) => {
                let delivered: HashSet<&Uid> = status.delivered(&self.dest_key).collect();
                status.present.keys().filter(|sop| !delivered.contains(sop)).count() as u64
            }
            _ => 0,
        }
    }

    fn write_status(&mut self) {
        if let Some(e) = self.status.write_if_due(&self.cache) {
            self.view.warn(&format!(
                "{e:#} (`retriever status` cannot tell how this watch is doing until it is written again)"
            ));
        }
    }

    fn work(&mut self, on_delivered: &mut dyn FnMut(&DeliveredStudy)) -> Result<()> {
        loop {
            if interrupt::requested() {
                return Err(Interrupted.into());
            }
            self.maybe_search();
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(msg) => {
                    self.handle(msg, on_delivered);
                    while let Ok(msg) = self.rx.try_recv() {
                        self.handle(msg, on_delivered);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => bail!("the watch's threads stopped unexpectedly"),
            }
            self.reap(on_delivered);
            self.dispatch();
            self.show_status();
            self.write_status();
            if self.last_save.elapsed() >= SAVE_EVERY && self.record.needs_save(SystemTime::now()) {
                self.save();
            }
            if self.deliverer.as_ref().is_some_and(|d| d.is_finished()) {
                let result = self.deliverer.take().expect("checked").join();
                return match result {
                    Ok(Err(e)) => Err(e),
                    _ => bail!("the delivery thread stopped unexpectedly"),
                };
            }
            if self.config.once
                && self.searched
                && self.searching.is_none()
                && self.queue.is_empty()
                && self.in_flight.is_empty()
            {
                return Ok(());
            }
        }
    }

    /// Lets the threads end: at once after a normal pass; after Ctrl-C,
    /// for at most [`GRACE`], recording what ends meanwhile.
    fn stop(&mut self, on_delivered: &mut dyn FnMut(&DeliveredStudy)) -> Result<()> {
        self.to_deliverer = None;
        let deadline = Instant::now() + GRACE;
        loop {
            while let Ok(msg) = self.rx.try_recv() {
                self.handle(msg, on_delivered);
            }
            self.fetchers.retain(|(_, f)| !f.is_finished());
            let deliverer_done = self.deliverer.as_ref().is_none_or(|d| d.is_finished());
            if self.fetchers.is_empty() && deliverer_done {
                break;
            }
            if interrupt::requested() && Instant::now() >= deadline {
                // Abandoned: every write to the cache is atomic, so what
                // they leave is consistent, and the record is written below.
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match self.deliverer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) if !interrupt::requested() => Err(e),
            Some(Err(_)) => bail!("the delivery thread panicked"),
            _ => Ok(()),
        }
    }

    fn save(&mut self) {
        self.last_save = Instant::now();
        if let Err(e) = self.record.save(&self.cache, &self.dest_key, &self.destination) {
            self.view.warn(&format!("{e:#}"));
        }
    }

    fn maybe_search(&mut self) {
        if self.searching.is_some() || (self.config.once && self.searched) || Instant::now() < self.next_search {
            return;
        }
        let now = SystemTime::now();
        let params: Vec<(String, String)> = self
            .config
            .filters
            .iter()
            .map(|f| (f.key().to_string(), f.value_at(now)))
            .collect();
        let client = match self.cloud_down {
            Some((_, false)) => self.probe_client.clone(),
            _ => self.search_client.clone(),
        };
        let tx = self.tx.clone();
        // Not joined: a search stuck on a slow cloud must not hold up Ctrl-C.
        let spawned = std::thread::Builder::new().name("search".into()).spawn(move || {
            let _ = tx.send(Msg::Polled(search(&client, &params)));
        });
        match spawned {
            Ok(handle) => self.searching = Some((Instant::now(), handle)),
            Err(e) => self.view.warn(&format!("failed to start a search: {e}")),
        }
    }

    fn handle(&mut self, msg: Msg, on_delivered: &mut dyn FnMut(&DeliveredStudy)) {
        let now = SystemTime::now();
        match msg {
            Msg::Polled(Ok(Polled {
                studies: found,
                warnings,
            })) => {
                for warning in &warnings {
                    self.view.warn(warning);
                }
                let started = self.searching.take().map_or_else(Instant::now, |(at, _)| at);
                self.searched = true;
                self.search_failures = 0;
                let back_after = self.cloud_down.take().map(|(since, _)| since.elapsed());
                self.next_search = started + self.config.interval;
                self.reported.clear();
                let mut queued = 0;
                let count = found.len();
                // Per study found, and so per search at rest: nothing copied unless it is to do.
                for (uid, f) in found {
                    if self.record.found(&uid, &f, now, self.config.stable_age) && self.enqueue(uid.clone()) {
                        queued += 1;
                    }
                    self.reported.insert(uid, f.instances);
                }
                self.record.forget_old(now);
                // Written before any of it is taken up, so that a restart
                // knows what was in flight, however soon it was killed.
                if queued > 0 && self.record.needs_save(now) {
                    self.save();
                }
                trim_heap();
                self.view.watch(&WatchEvent::Polled {
                    found: count,
                    queued,
                    back_after,
                });
                self.last_poll = Some((now, count));
                self.status.searched(now, count);
            }
            // Ctrl-C ended the search: no news about the cloud.
            Msg::Polled(Err(e)) if e.chain().any(|c| c.is::<Interrupted>()) => self.searching = None,
            Msg::Polled(Err(e)) => {
                self.searching = None;
                self.searched = true;
                self.search_failures += 1;
                let auth = crate::dicomweb::is_login_refused(&e);
                let wait = if auth {
                    retry_delay(self.config.interval, self.search_failures)
                        .min(MAX_POLL_BACKOFF.max(self.config.interval))
                } else {
                    CLOUD_PROBE_EVERY.min(self.config.interval)
                };
                self.next_search = Instant::now() + wait;
                let error = format!("{e:#}");
                self.status.search_failed(now, &error, self.search_failures);
                // Told when an outage begins or changes its kind; a refused
                // login at each try, as those are few and need someone.
                let news = auth || self.cloud_down.is_none_or(|(_, was_auth)| was_auth);
                let since = self.cloud_down.map_or_else(Instant::now, |(since, _)| since);
                self.cloud_down = Some((since, auth));
                if news {
                    self.view.watch(&WatchEvent::PollFailed {
                        auth,
                        error: error.clone(),
                        failures: self.search_failures,
                        retry_in: wait,
                    });
                }
                if self.config.once {
                    self.summary.search_error = Some(error);
                }
            }
            Msg::Fetched(uid) => {
                if let Some(flight) = self.in_flight.get_mut(&uid)
                    && flight.fetching
                {
                    flight.fetching = false;
                    self.fetching -= 1;
                }
            }
            Msg::Delivered(outcome) => {
                if let Some(flight) = self.in_flight.remove(&outcome.current)
                    && flight.fetching
                {
                    self.fetching -= 1;
                }
                for d in &outcome.delivered {
                    on_delivered(d);
                }
                match outcome.causes.is_empty() {
                    true => {
                        self.record.delivered(&outcome.current, outcome.instances, now);
                        self.status.delivered(&outcome.current, now);
                        self.summary.delivered += 1;
                        self.view.watch(&WatchEvent::Delivered {
                            label: outcome.label.clone(),
                            studies: outcome.delivered.len(),
                            instances: outcome.delivered.iter().map(|d| d.instances).sum(),
                            sent: outcome.delivered.iter().map(|d| d.sent).sum(),
                        });
                    }
                    false => self.failed(&outcome.current, &outcome.label, &outcome.causes, now),
                }
            }
            Msg::DestinationDown(why) => self.status.destination_down(now, &why),
            Msg::DestinationUp => self.status.destination_up(),
        }
    }

    /// Finds threads that ended without saying how (a panic, which has
    /// printed itself): their work counts as failed, so that it is taken up
    /// again and a `--once` pass ends.
    fn reap(&mut self, on_delivered: &mut dyn FnMut(&DeliveredStudy)) {
        let search_died = self.searching.as_ref().is_some_and(|(_, h)| h.is_finished());
        let fetch_died = self
            .fetchers
            .iter()
            .any(|(uid, h)| h.is_finished() && self.in_flight.get(uid).is_some_and(|f| f.fetching));
        if !search_died && !fetch_died {
            return;
        }
        // What a thread sent before it ended is in the channel by now.
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg, on_delivered);
        }
        if self.searching.as_ref().is_some_and(|(_, h)| h.is_finished()) {
            let error = anyhow::anyhow!("the search stopped unexpectedly");
            self.handle(Msg::Polled(Err(error)), on_delivered);
        }
        let now = SystemTime::now();
        let died: Vec<Uid> = self
            .fetchers
            .iter()
            .filter(|(uid, h)| h.is_finished() && self.in_flight.get(uid).is_some_and(|f| f.fetching))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in died {
            self.in_flight.remove(&uid);
            self.fetching -= 1;
            let causes = ["the fetch stopped unexpectedly".to_string()];
            self.failed(&uid, uid.as_str(), &causes, now);
        }
    }

    /// A current study (with its priors) was not delivered: recorded for a
    /// retry after a backoff, shown, and with `--once` counted in the summary.
    fn failed(&mut self, uid: &Uid, label: &str, causes: &[String], now: SystemTime) {
        let error = causes.join("; ");
        let wait = self.record.failed(uid, &error, self.config.interval, now);
        self.status.failed(uid, now);
        self.view.watch(&WatchEvent::Failed {
            study: uid.clone(),
            label: label.to_string(),
            error,
            retry_in: (!self.config.once).then_some(wait),
        });
        if self.config.once {
            self.summary.failed.push((label.to_string(), causes.to_vec()));
        }
    }

    /// Queues a current study unless it is queued or in flight already.
    fn enqueue(&mut self, uid: Uid) -> bool {
        if self.in_flight.contains_key(&uid) || !self.queued.insert(uid.clone()) {
            return false;
        }
        self.queue.push_back(uid);
        true
    }

    /// Starts fetches while there is room, one patient at a time.
    fn dispatch(&mut self) {
        if interrupt::requested() {
            return;
        }
        while self.fetching < STUDIES_AT_ONCE {
            let busy: HashSet<&(String, String)> = self
                .in_flight
                .values()
                .filter(|f| f.fetching)
                .filter_map(|f| f.patient.as_ref())
                .collect();
            let free = self.queue.iter().position(|uid| {
                let patient = self.record.studies.get(uid).and_then(|s| s.patient());
                patient.is_none_or(|p| !busy.contains(&p))
            });
            let Some(at) = free else { return };
            let uid = self.queue.remove(at).expect("found above");
            self.queued.remove(&uid);
            self.start(uid);
        }
    }

    fn start(&mut self, uid: Uid) {
        let now = SystemTime::now();
        let reported = self.reported.get(&uid).copied().flatten();
        self.record.taken_up(&uid, reported, now);
        let seen = self.record.studies.get(&uid);
        let patient = seen.and_then(|s| s.patient());
        let label = study_label(&seen.and_then(|s| s.accession.clone()), &uid);
        let Some(to_deliverer) = self.to_deliverer.clone() else {
            return;
        };
        let job = FetchJob {
            current: uid.clone(),
            label,
            client: self.client.clone(),
            cache: self.cache.clone(),
            pool: Arc::clone(&self.pool),
            rules: self.config.rules.clone(),
            retries: self.retries,
            view: Arc::clone(&self.view),
            to_deliverer,
            tx: self.tx.clone(),
        };
        match std::thread::Builder::new()
            .name("fetch-study".into())
            .spawn(move || job.run())
        {
            Ok(handle) => {
                self.fetchers.retain(|(_, f)| !f.is_finished());
                self.fetchers.push((uid.clone(), handle));
                self.in_flight.insert(
                    uid,
                    Flight {
                        patient,
                        fetching: true,
                    },
                );
                self.fetching += 1;
            }
            Err(e) => {
                self.view.warn(&format!("failed to start a fetch: {e}"));
                self.enqueue(uid);
            }
        }
    }

    fn show_status(&mut self) {
        let status = WatchStatus {
            delivered: self.summary.delivered,
            queued: self.queue.len(),
            in_flight: self.in_flight.len(),
            failing: self.record.failing(),
            last_poll: self.last_poll,
        };
        self.status.figures(status.queued, status.in_flight, status.failing);
        if self.shown.as_ref() != Some(&status) {
            self.view.watch(&WatchEvent::Status(status.clone()));
            self.shown = Some(status);
        }
    }
}

/// One search of the cloud: the studies that match, with what the record
/// needs, and warnings about what the search left out.
fn search(client: &Client, params: &[(String, String)]) -> Result<Polled> {
    let query: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let found = fetch::search_studies(client, &query, &[])?;
    let studies = found
        .studies
        .into_iter()
        .map(|s| {
            let found = Found {
                accession: s.info.accession,
                patient_id: s.info.patient_id,
                issuer_of_patient_id: s.info.issuer_of_patient_id,
                instances: s.instances,
            };
            (s.uid, found)
        })
        .collect();
    Ok(Polled {
        studies,
        warnings: found.warnings,
    })
}

/// Fetching one current study with its priors, on a thread of its own.
struct FetchJob {
    current: Uid,
    label: String,
    client: Client,
    cache: Cache,
    pool: Arc<rayon::ThreadPool>,
    rules: Rules,
    retries: u32,
    view: Arc<dyn Reporter>,
    to_deliverer: Sender<ToDeliverer>,
    tx: Sender<Msg>,
}

impl FetchJob {
    fn run(self) {
        let deliverer = self.to_deliverer.clone();
        // Each instance goes to the deliverer as it lands, whatever the view.
        let on_landed = move |landed: &fetch::Landed| {
            let _ = deliverer.send(match *landed {
                fetch::Landed::Begun { study } => ToDeliverer::Begin(study.clone()),
                fetch::Landed::Listed { study } => ToDeliverer::Listed(study.clone()),
                fetch::Landed::Stored {
                    study,
                    sop,
                    path,
                    bytes,
                } => ToDeliverer::Stored {
                    study: study.clone(),
                    sop: sop.clone(),
                    path: path.to_path_buf(),
                    bytes,
                },
            });
        };
        let opts = fetch::FetchOptions {
            retries: self.retries,
            on_landed: Some(&on_landed),
        };
        let plan = fetch::plan(&self.client, &[self.current.to_string()], &self.rules, &*self.view);
        // The plan is of the current study alone, which the group's label names.
        let mut failures: Vec<String> = plan.failures.iter().map(|(_, e)| format!("{e:#}")).collect();
        if failures.is_empty() && !plan.studies.iter().any(|p| p.uid == self.current) {
            failures.push("the cloud no longer has it".into());
        }
        let all: Vec<Uid> = plan.studies.iter().map(|p| p.uid.clone()).collect();
        let outcome = fetch::fetch_in(
            &self.pool,
            &self.client,
            &self.cache,
            plan.studies,
            &opts,
            &*self.view,
            &mut |_| {},
        );
        let complete = match outcome {
            Ok(outcome) => {
                for (planned, e) in &outcome.failed {
                    failures.push(if planned.uid == self.current {
                        format!("{e:#}")
                    } else {
                        format!("{}: {e:#}", study_label(&planned.info.accession, &planned.uid))
                    });
                }
                outcome
                    .fetched
                    .iter()
                    .map(|f| GroupStudy {
                        uid: f.planned.uid.clone(),
                        label: study_label(&f.planned.info.accession, &f.planned.uid),
                        accession: f.planned.info.accession.clone(),
                        role: f.planned.role.clone(),
                    })
                    .collect()
            }
            Err(e) if e.is::<Interrupted>() => {
                let _ = self.tx.send(Msg::Fetched(self.current));
                return;
            }
            Err(e) => {
                failures.push(format!("{e:#}"));
                Vec::new()
            }
        };
        let instances = self
            .cache
            .study_status(&self.current)
            .ok()
            .flatten()
            .filter(|s| s.is_complete())
            .map(|s| s.total());
        let _ = self.to_deliverer.send(ToDeliverer::Finish(Box::new(Fetched {
            current: self.current.clone(),
            label: self.label,
            all,
            complete,
            failures,
            instances,
        })));
        let _ = self.tx.send(Msg::Fetched(self.current));
    }
}

fn study_label(accession: &Option<String>, uid: &Uid) -> String {
    accession
        .clone()
        .filter(|a| !a.trim().is_empty())
        .map_or_else(|| uid.to_string(), |a| crate::text::escape(&a))
}

/// Gives the memory freed since the last search back to the system.
///
/// glibc's allocator keeps what the threads free in per-thread arenas, for
/// them to reuse; a router that downloads and sends study after study on
/// many threads then sees its resident memory creep up for hours although
/// its heap stays the same size (heaptrack: an 11 MB peak and nothing leaked
/// over 600 studies, while RSS went from 22 MB to 54 MB, and to 98 MB in a
/// debug build over 1000). Trimming after each search keeps it flat (24 MB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim(3) takes a size, touches only the allocator's own
    // state (under its locks) and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// Lets glibc's allocator keep two arenas for all the watch's threads.
///
/// A router that starts a thread for each study it fetches hands out a new
/// arena to many of them (up to eight per core), and each keeps its free
/// memory in pieces that trimming cannot return: over 600 studies the
/// arenas grew to 46 MB for 3 MB in use, and the resident memory with them
/// by about 11 kB for each study delivered. With two they stay
/// at 13 MB, and the threads, which mostly wait on the network, hardly
/// ever wait for one another's allocations.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_arenas() {
    // SAFETY: mallopt(3) sets a tunable of the allocator under its own lock;
    // M_ARENA_MAX only bounds the arenas created from now on.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_arenas() {}
