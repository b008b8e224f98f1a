//! `watch`: the router. Searches the cloud every `interval` for the studies
//! of its worklist, fetches each new study with its priors, and delivers them
//! to each destination they are routed to while they download; a study that
//! grows is fetched and delivered again (only what is new) until it has been
//! stable for `stable_age`. A study is delivered when every destination it
//! is routed to has it.
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
//! - one deliverer per destination owns that destination (`deliver`): it
//!   sends each instance as it lands and closes each study with a `store`
//!   pass. The fetch tells each deliverer only of the studies the rules
//!   route there (judged on the study's manifest once it is written), so a
//!   destination down, slow or refusing holds up neither the others nor
//!   the fetches, and a study that failed at one destination is taken up
//!   again only there.
//!
//! Trouble never ends the loop: a cloud that does not answer the search is
//! searched again every [`CLOUD_PROBE_EVERY`] until it does (a refused
//! login, which waiting does not mend, with backoff), a study that failed
//! to fetch or deliver is taken up again with backoff (at once when the
//! cloud is back from an outage, which may have been why), and a destination
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
mod search;
pub mod status;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

pub use deliver::DeliveredStudy;
pub use filter::{Filter, default_filters, describe};

use crate::cache::{Cache, WatchLock};
use crate::dicomweb::Client;
use crate::dicomweb::ClientOptions;
use crate::fetch;
use crate::interrupt::{self, Interrupted};
use crate::priors::Rules;
use crate::report::{Reporter, WatchEvent, WatchReporters, WatchStatus};
use crate::routing::{Routes, When};
use crate::uid::Uid;
use deliver::{Deliverer, Fetched, GroupOutcome, GroupStudy, ToDeliverer};
use record::{Found, Records, retry_delay};
use search::{Polled, search};

/// Current studies (each with its priors) fetched at once. Two, so that one
/// study's slow tail (a retry, a big last series) does not hold up the next,
/// while most of `--jobs` goes to the study that arrived first.
pub const STUDIES_AT_ONCE: usize = 2;
/// The longest wait between two searches after the cloud refused the login.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(120);
/// While the cloud does not answer, it is searched again this often (or
/// every interval, if shorter), so that the watch resumes within a couple of
/// seconds of its return; with a backoff capped at two minutes it resumed
/// 16 s after. Of the first delivery after a return (1.2 to 1.3 s with a
/// window of 300 to 1000 studies on loopback, probing every second), the
/// wait for the next probe was most (0.97 s, the cloud back just after a
/// probe), the first page of the search 0.16 to 0.32 s, the fetch and the
/// delivery 0.04 s: half a second halves the longest wait, at two requests
/// a second to a cloud that is down. A search the cloud cannot answer is
/// one request (made without retries meanwhile), refused or failed at once;
/// the first that works is the search itself, with nothing to ask again. A cloud
/// that answered with a `Retry-After` is left alone that long. Only the
/// first failure of an outage is told.
const CLOUD_PROBE_EVERY: Duration = Duration::from_millis(500);
/// The longest the coordinator waits for news before it looks at the time
/// (Ctrl-C, saving, a search due, finished threads).
const TICK: Duration = Duration::from_millis(100);
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

/// Messages to the coordinator.
enum Msg {
    /// Studies the running search found, a page's worth: the search reads
    /// on once the coordinator answers on the sender, so that a search holds
    /// a page at a time however large its window.
    Found(Vec<(Uid, Found)>, SyncSender<()>),
    /// The running search ended.
    Polled(Result<Polled>),
    /// A group's fetch returned (its slot is free).
    Fetched(Uid),
    /// The `n`-th destination's deliverer is done with a group, for now.
    Delivered(usize, Box<GroupOutcome>),
    /// The `n`-th destination cannot be reached or refuses us: why.
    DestinationDown(usize, String),
    /// The `n`-th destination answers again.
    DestinationUp(usize),
}

/// Runs the router until Ctrl-C (or, with `once`, one pass), delivering to
/// every destination of `routes`. The fetches report to `view.fetching`,
/// the deliveries to `view.sending` (with several destinations, to each
/// one's of `view.destinations`). `on_delivered` is called for each study
/// that is now entirely at a destination, once per destination.
pub fn run(
    config: &WatchConfig,
    cloud: &ClientOptions,
    cache: &Cache,
    routes: &Routes,
    view: WatchReporters,
    on_delivered: &mut dyn FnMut(&DeliveredStudy),
) -> Result<Summary> {
    if routes.is_empty() {
        bail!("no destination to deliver to; give one with --to AE@HOST:PORT or in the config file");
    }
    let locks = lock_routes(cache, routes)?;
    let keys: Vec<(String, String)> = routes
        .iter()
        .map(|r| (r.key(), r.store.scu.destination.to_string()))
        .collect();
    let records = Records::load(cache, &keys)?;
    limit_arenas();
    // Searches give up sooner than downloads: the next search is the retry.
    let mut search_cloud = cloud.clone();
    search_cloud.retries = search_cloud.retries.min(1);
    let (tx, rx) = mpsc::channel();
    let mut to_deliverers = Vec::new();
    let mut deliverers = Vec::new();
    for (at, route) in routes.iter().enumerate() {
        let (to_deliverer, inbox) = mpsc::channel();
        let sending = view.destinations.get(at).unwrap_or(&view.sending);
        let deliverer = Deliverer::new(
            at,
            route.name.clone(),
            cache.clone(),
            route.store.clone(),
            cloud.clone(),
            Arc::clone(sending),
            config.once,
            inbox,
            tx.clone(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("deliver-{at}"))
            .spawn(move || deliverer.run())
            .with_context(|| format!("failed to start the delivery thread of {route}"))?;
        to_deliverers.push(to_deliverer);
        deliverers.push(Some(handle));
    }
    let places: Vec<status::Place> = routes
        .iter()
        .map(|r| status::Place {
            key: r.key(),
            name: r.name.clone(),
            to: r.store.scu.destination.to_string(),
        })
        .collect();
    let status = status::Keeper::with_destinations(
        &places,
        describe(&config.filters),
        config.interval,
        config.once,
        config.metrics_file.clone(),
    );
    let mut router = Router {
        config,
        cache: cache.clone(),
        routes: Arc::new(routes.clone()),
        _locks: locks,
        records,
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
        to_deliverers,
        deliverers,
        queue: VecDeque::new(),
        queued: HashSet::new(),
        reported: HashMap::new(),
        search_no: 0,
        search_queued: 0,
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

/// Takes the lock of every destination, in the order of their keys, so that
/// two watches never deliver to one destination from one cache, whatever
/// other destinations each has; names the one held, and by whom.
fn lock_routes(cache: &Cache, routes: &Routes) -> Result<Vec<WatchLock>> {
    let mut by_key: Vec<_> = routes.iter().collect();
    by_key.sort_by_key(|r| r.key());
    let mut locks = Vec::with_capacity(by_key.len());
    for route in by_key {
        let key = route.key();
        let Some(lock) = lock_watch(cache, &key)? else {
            // The status that watch keeps says which process it is.
            let holder = cache
                .read_watch_status(&key, status::MAX_BYTES)
                .ok()
                .flatten()
                .and_then(|bytes| status::Status::parse(&bytes, &key).ok())
                .map(|s| format!(" (pid {} on {})", s.pid, s.host))
                .unwrap_or_default();
            bail!(
                "another `retriever watch`{holder} is already delivering to {route} from the cache `{}`; stop it, \
                 or give this one other destinations",
                cache.root().display()
            );
        };
        locks.push(lock);
    }
    Ok(locks)
}

/// Takes a destination's lock, trying again for a moment while it is held (see [`LOCK_TRIES`]).
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
    /// The destinations (indexes) whose deliverers have yet to answer.
    awaiting: Vec<usize>,
    /// What those that answered said.
    outcomes: Vec<(usize, Box<GroupOutcome>)>,
}

struct Router<'a> {
    config: &'a WatchConfig,
    cache: Cache,
    /// The fetching side's reporter, which hears the watch's events too.
    view: Arc<dyn Reporter>,
    routes: Arc<Routes>,
    _locks: Vec<WatchLock>,
    /// One per route, in their order.
    records: Records,
    client: Client,
    search_client: Client,
    /// Searches while the cloud does not answer: one request, no retry (the next probe is one).
    probe_client: Client,
    pool: Arc<rayon::ThreadPool>,
    retries: u32,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    /// One per route; empty once the watch stops taking up work.
    to_deliverers: Vec<Sender<ToDeliverer>>,
    deliverers: Vec<Option<JoinHandle<Result<()>>>>,
    queue: VecDeque<Uid>,
    queued: HashSet<Uid>,
    /// The instance count the searches reported (if the cloud gives it) of
    /// the studies queued or to do, and the number of the search that last
    /// found each: only the last search's counts are kept.
    reported: HashMap<Uid, (Option<u64>, u64)>,
    /// The number of the running (or last) search, and what it queued so far.
    search_no: u64,
    search_queued: usize,
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
        let destinations: Vec<String> = self.routes.iter().map(ToString::to_string).collect();
        self.view.watch(&WatchEvent::Started {
            destination: destinations.join(", "),
            query: describe(&self.config.filters),
            interval: self.config.interval,
            once: self.config.once,
        });
        // What the last run left undone is taken up at once, found by the search or not.
        let undone = self.records.undone();
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
        self.save(true);
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

    /// The instances of `study` in the cache and not at the destinations
    /// where it is not delivered, as far as its manifest and journals tell
    /// (none when it is not in the cache).
    fn to_send(&self, study: &Uid) -> u64 {
        let Ok(Some(status)) = self.cache.study_status(study) else {
            return 0;
        };
        let owed = self
            .records
            .wanted(study, None, SystemTime::now(), self.config.stable_age);
        owed.iter()
            .filter_map(|&at| self.routes.iter().nth(at))
            .map(|route| {
                let delivered: HashSet<&Uid> = status.delivered(&route.key()).collect();
                status.present.keys().filter(|sop| !delivered.contains(sop)).count() as u64
            })
            .sum()
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
            // Woken for the next search when it is due, not at the tick after.
            let tick = match self.searching {
                None => self
                    .next_search
                    .checked_duration_since(Instant::now())
                    .map_or(TICK, |due| due.min(TICK)),
                Some(_) => TICK,
            };
            match self.rx.recv_timeout(tick) {
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
            if self.last_save.elapsed() >= SAVE_EVERY && self.records.needs_save(SystemTime::now()) {
                self.save(false);
            }
            if let Some(slot) = self
                .deliverers
                .iter_mut()
                .find(|d| d.as_ref().is_some_and(|d| d.is_finished()))
            {
                let result = slot.take().expect("checked").join();
                return match result {
                    Ok(Err(e)) => Err(e),
                    _ => bail!("a delivery thread stopped unexpectedly"),
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
        self.to_deliverers.clear();
        let deadline = Instant::now() + GRACE;
        loop {
            while let Ok(msg) = self.rx.try_recv() {
                self.handle(msg, on_delivered);
            }
            self.fetchers.retain(|(_, f)| !f.is_finished());
            let deliverers_done = self.deliverers.iter().flatten().all(JoinHandle::is_finished);
            if self.fetchers.is_empty() && deliverers_done {
                break;
            }
            if interrupt::requested() && Instant::now() >= deadline {
                // Abandoned: every write to the cache is atomic, so what
                // they leave is consistent, and the record is written below.
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut first = Ok(());
        for deliverer in self.deliverers.iter_mut().filter_map(Option::take) {
            let ended = match deliverer.join() {
                Ok(Err(e)) if !interrupt::requested() => Err(e),
                Err(_) => Err(anyhow::anyhow!("a delivery thread panicked")),
                _ => Ok(()),
            };
            if first.is_ok() {
                first = ended;
            }
        }
        first
    }

    /// Writes the records that changed (`all`: every one).
    fn save(&mut self, all: bool) {
        self.last_save = Instant::now();
        for e in self.records.save(&self.cache, all) {
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
            let mut hand_on = |batch| {
                let (answer, answered) = mpsc::sync_channel(1);
                tx.send(Msg::Found(batch, answer)).map_err(|_| Interrupted)?;
                // No answer: the watch stopped and dropped the batch.
                answered.recv().map_err(|_| Interrupted)?;
                Ok(())
            };
            let _ = tx.send(Msg::Polled(search(&client, &params, &mut hand_on)));
        });
        match spawned {
            Ok(handle) => {
                self.searching = Some((Instant::now(), handle));
                self.search_no += 1;
                self.search_queued = 0;
            }
            Err(e) => self.view.warn(&format!("failed to start a search: {e}")),
        }
    }

    fn handle(&mut self, msg: Msg, on_delivered: &mut dyn FnMut(&DeliveredStudy)) {
        let now = SystemTime::now();
        match msg {
            Msg::Found(studies, answer) => {
                // The cloud answers again: a study whose fetch its outage
                // failed is due now, so that this search takes it up.
                if self.cloud_down.is_some() {
                    self.records.due_now(now);
                }
                self.found(studies, now);
                let _ = answer.send(());
            }
            Msg::Polled(Ok(Polled { found: count, warnings })) => {
                for warning in &warnings {
                    self.view.warn(warning);
                }
                let started = self.searching.take().map_or_else(Instant::now, |(at, _)| at);
                self.searched = true;
                self.search_failures = 0;
                let back_after = self.cloud_down.take().map(|(since, _)| since.elapsed());
                self.next_search = started + self.config.interval;
                let search_no = self.search_no;
                self.reported.retain(|_, (_, by)| *by == search_no);
                let queued = self.search_queued;
                self.records.forget_old(now);
                if queued > 0 && self.records.needs_save(now) {
                    self.save(false);
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
                    // Never sooner than a cloud that said when to come back asked.
                    let asked = crate::dicomweb::retry_after(&e).unwrap_or_default();
                    CLOUD_PROBE_EVERY.min(self.config.interval).max(asked)
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
            Msg::Delivered(at, outcome) => self.delivered(at, outcome, now, on_delivered),
            Msg::DestinationDown(at, why) => self.status.destination_down(at, now, &why),
            Msg::DestinationUp(at) => self.status.destination_up(at),
        }
    }

    /// A batch of the running search's studies: each noted in the records,
    /// and queued if it has something to do. Per study found, and so per
    /// search at rest: nothing copied unless it is to do.
    fn found(&mut self, studies: Vec<(Uid, Found)>, now: SystemTime) {
        let mut queued = 0;
        for (uid, f) in studies {
            let to_do = self.records.found(&uid, &f, now, self.config.stable_age);
            if to_do && self.enqueue(uid.clone()) {
                queued += 1;
            }
            if to_do || self.queued.contains(&uid) {
                self.reported.insert(uid, (f.instances, self.search_no));
            }
        }
        self.search_queued += queued;
        // Written before any of it is taken up, so that a restart knows
        // what was in flight, however soon it was killed.
        if queued > 0 && self.records.needs_save(now) {
            self.save(false);
        }
    }

    /// The `at`-th destination's deliverer is done with a group: recorded
    /// there at once; once every destination the group was taken up for
    /// has answered, the group is delivered, or failed where it failed.
    fn delivered(
        &mut self,
        at: usize,
        outcome: Box<GroupOutcome>,
        now: SystemTime,
        on_delivered: &mut dyn FnMut(&DeliveredStudy),
    ) {
        let current = outcome.current.clone();
        for d in &outcome.delivered {
            on_delivered(d);
        }
        let record = self.records.at(at);
        if !outcome.causes.is_empty() {
            record.failed(&current, &outcome.causes.join("; "), self.config.interval, now);
        } else if outcome.delivered.is_empty() {
            record.not_routed(&current, outcome.instances, now);
        } else {
            record.delivered(&current, outcome.instances, now);
            self.status.delivered_to(at, now);
        }
        let Some(flight) = self.in_flight.get_mut(&current) else {
            return;
        };
        flight.awaiting.retain(|&a| a != at);
        flight.outcomes.push((at, outcome));
        if !flight.awaiting.is_empty() {
            return;
        }
        let flight = self.in_flight.remove(&current).expect("found above");
        if flight.fetching {
            self.fetching -= 1;
        }
        let several = self.routes.len() > 1;
        let mut causes = Vec::new();
        for (at, outcome) in &flight.outcomes {
            let name = self.routes.iter().nth(*at).map(|r| r.name.clone()).unwrap_or_default();
            causes.extend(outcome.causes.iter().map(|c| match several {
                true => format!("{name}: {c}"),
                false => c.clone(),
            }));
        }
        let label = flight
            .outcomes
            .first()
            .map(|(_, o)| o.label.clone())
            .unwrap_or_default();
        if !causes.is_empty() {
            let wait = flight
                .outcomes
                .iter()
                .filter(|(_, o)| !o.causes.is_empty())
                .filter_map(|(at, _)| self.records.at(*at).studies.get(&current)?.next_try)
                .min()
                .map_or(self.config.interval, |t| t.duration_since(now).unwrap_or_default());
            self.announce_failed(&current, &label, &causes, wait, now);
            return;
        }
        self.status.delivered(&current, now);
        self.summary.delivered += 1;
        // Each study once, however many destinations it went to.
        let mut studies: HashMap<&Uid, usize> = HashMap::new();
        let mut sent = 0;
        for d in flight.outcomes.iter().flat_map(|(_, o)| &o.delivered) {
            studies.insert(&d.study, d.instances);
            sent += d.sent;
        }
        if !studies.is_empty() {
            self.view.watch(&WatchEvent::Delivered {
                label,
                studies: studies.len(),
                instances: studies.values().sum(),
                sent,
            });
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
            let Some(flight) = self.in_flight.remove(&uid) else {
                continue;
            };
            self.fetching -= 1;
            let causes = ["the fetch stopped unexpectedly".to_string()];
            let error = causes.join("; ");
            let mut wait = self.config.interval;
            for at in flight.awaiting {
                wait = self.records.at(at).failed(&uid, &error, self.config.interval, now);
            }
            self.announce_failed(&uid, uid.as_str(), &causes, wait, now);
        }
    }

    /// A current study (with its priors) was not delivered (and is recorded
    /// so where it failed, for a retry after `wait`): shown, and with
    /// `--once` counted in the summary.
    fn announce_failed(&mut self, uid: &Uid, label: &str, causes: &[String], wait: Duration, now: SystemTime) {
        let error = causes.join("; ");
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
                let patient = self.records.seen(uid).and_then(|s| s.patient());
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
        let reported = self.reported.get(&uid).and_then(|&(n, _)| n);
        let wanted = self.records.wanted(&uid, reported, now, self.config.stable_age);
        for &at in &wanted {
            self.records.at(at).taken_up(&uid, reported, now);
        }
        let seen = self.records.seen(&uid);
        let patient = seen.and_then(|s| s.patient());
        let label = study_label(&seen.and_then(|s| s.accession.clone()), &uid);
        if self.to_deliverers.is_empty() {
            return;
        }
        let to: Vec<(usize, Sender<ToDeliverer>)> =
            wanted.iter().map(|&at| (at, self.to_deliverers[at].clone())).collect();
        let job = FetchJob {
            current: uid.clone(),
            label,
            client: self.client.clone(),
            cache: self.cache.clone(),
            pool: Arc::clone(&self.pool),
            rules: self.config.rules.clone(),
            retries: self.retries,
            view: Arc::clone(&self.view),
            routes: Arc::clone(&self.routes),
            to,
            routed: std::sync::Mutex::new(HashMap::new()),
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
                        awaiting: wanted,
                        outcomes: Vec::new(),
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
            failing: self.records.failing(),
            last_poll: self.last_poll,
        };
        self.status.figures(status.queued, status.in_flight, status.failing);
        if self.shown.as_ref() != Some(&status) {
            self.view.watch(&WatchEvent::Status(status.clone()));
            self.shown = Some(status);
        }
    }
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
    routes: Arc<Routes>,
    /// The deliverers of the destinations the group is taken up for, by
    /// the index of their route.
    to: Vec<(usize, Sender<ToDeliverer>)>,
    /// Where each study of the group streams to (indexes into `to`), judged
    /// once its manifest is written.
    routed: std::sync::Mutex<HashMap<Uid, Vec<usize>>>,
    tx: Sender<Msg>,
}

impl FetchJob {
    /// The deliverers (indexes into `to`) the rules route `study` to, as its
    /// manifest tells now; none when it cannot be read (the closing pass
    /// judges again, and fails if it still cannot).
    fn judge(&self, study: &Uid) -> Result<Vec<usize>> {
        let every = |&(at, _): &(usize, _)| self.routes.iter().nth(at).is_some_and(|r| r.when == When::default());
        if self.to.iter().all(every) {
            // No rules to read the manifest for (one `--to`, say).
            return Ok((0..self.to.len()).collect());
        }
        let manifest = self
            .cache
            .read_manifest(study)?
            .with_context(|| format!("the manifest of study {study} is not in the cache"))?;
        Ok((0..self.to.len())
            .filter(|&i| {
                self.routes
                    .iter()
                    .nth(self.to[i].0)
                    .is_some_and(|r| r.decide(&manifest.study, &manifest.roles).routed)
            })
            .collect())
    }

    /// Tells the deliverers `study` is routed to; judges it first when its
    /// manifest was (re)written.
    fn tell(&self, study: &Uid, judge: bool, message: impl Fn() -> ToDeliverer) {
        let mut routed = self.routed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if judge || !routed.contains_key(study) {
            routed.insert(study.clone(), self.judge(study).unwrap_or_default());
        }
        for &i in &routed[study] {
            let _ = self.to[i].1.send(message());
        }
    }

    fn run(self) {
        // Each instance goes to the deliverers as it lands, whatever the view.
        let on_landed = |landed: &fetch::Landed| match *landed {
            fetch::Landed::Begun { study } => self.tell(study, true, || ToDeliverer::Begin(study.clone())),
            fetch::Landed::Listed { study } => self.tell(study, false, || ToDeliverer::Listed(study.clone())),
            fetch::Landed::Stored {
                study,
                sop,
                path,
                bytes,
            } => self.tell(study, false, || ToDeliverer::Stored {
                study: study.clone(),
                sop: sop.clone(),
                path: path.to_path_buf(),
                bytes,
            }),
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
                let _ = self.tx.send(Msg::Fetched(self.current.clone()));
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
        // Each destination gets the studies routed there, judged on their
        // manifests as they are now; one that cannot be read fails the group.
        let mut routed_to: Vec<Vec<GroupStudy>> = vec![Vec::new(); self.to.len()];
        for study in complete {
            let routed = match self.judge(&study.uid) {
                Ok(routed) => routed,
                Err(e) => {
                    failures.push(format!("cannot tell where {} goes: {e:#}", study.label));
                    continue;
                }
            };
            if routed.is_empty() {
                self.view.watch(&WatchEvent::StudyDone {
                    study: study.uid.clone(),
                    label: study.label.clone(),
                    ok: true,
                    summary: self.nowhere(&study.uid),
                });
            }
            for i in routed {
                routed_to[i].push(study.clone());
            }
        }
        for ((_, to), complete) in self.to.iter().zip(routed_to) {
            let _ = to.send(ToDeliverer::Finish(Box::new(Fetched {
                current: self.current.clone(),
                label: self.label.clone(),
                all: all.clone(),
                complete,
                failures: failures.clone(),
                instances,
            })));
        }
        let _ = self.tx.send(Msg::Fetched(self.current));
    }

    /// Why a study goes to none of the destinations it was taken up for:
    /// it goes nowhere, or only where it was delivered before.
    fn nowhere(&self, study: &Uid) -> String {
        let Ok(Some(manifest)) = self.cache.read_manifest(study) else {
            return "routed to no destination".into();
        };
        let decisions = self.routes.for_study(&manifest.study, &manifest.roles);
        let settled: Vec<&str> = decisions
            .iter()
            .filter(|(_, d)| d.routed)
            .map(|(r, _)| r.name.as_str())
            .collect();
        if !settled.is_empty() {
            return format!("at {} already", settled.join(", "));
        }
        let why: Vec<String> = decisions
            .iter()
            .map(|(r, d)| format!("{}: {}", r.name, d.why))
            .collect();
        format!("routed to no destination ({})", why.join("; "))
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

/// Lets glibc's allocator keep two arenas for all the watch's threads, and
/// never grow them for a large block.
///
/// A router that starts a thread for each study it fetches hands out a new
/// arena to many of them (up to eight per core), and each keeps its free
/// memory in pieces that trimming cannot return: over 600 studies the
/// arenas grew to 46 MB for 3 MB in use, and the resident memory with them
/// by about 11 kB for each study delivered. With two they stay
/// at 13 MB, and the threads, which mostly wait on the network, hardly
/// ever wait for one another's allocations.
///
/// Left to itself glibc raises its mmap threshold to the size of each large
/// block freed (up to 32 MB), so that after the first search page (a
/// 512 kB buffer) such buffers grew the arenas; the record's entries,
/// allocated among them study after study, then kept that space from going
/// back, and the resident memory grew by about 2 kB for each study the
/// search found (a release build after 2000 one-instance studies: 17.2 to
/// 18.2 MB; malloc_info: 7.9 MB taken by the arenas, 3.6 MB of it free). With
/// a fixed threshold a block of [`LARGE_BLOCK`] or more is served from
/// free space an arena has, else mapped for itself and unmapped when freed.
/// The threshold sits above the buffers a transfer takes and frees all the
/// time (the HTTP answer's pieces and the cache's writer, 256 kB each): at
/// 64 kB those were mapped afresh every time, and `watch --once` of 480
/// instances took 150 000 page faults instead of 6 000 and a third more
/// CPU. At 384 kB: about 20 000 page faults, the same CPU, and 2000 studies
/// later 14.7 MB resident against 13.7 MB for a fresh watch holding the
/// same record (0.8 kB a study, half of it the study's entry in the record).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_arenas() {
    // SAFETY: mallopt(3) sets a tunable of the allocator under its own lock;
    // M_ARENA_MAX only bounds the arenas created from now on, and
    // M_MMAP_THRESHOLD applies to the allocations made from now on.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK as libc::c_int);
    }
}

/// Blocks this large or larger that no arena has room for are mapped for
/// themselves, and unmapped when freed (see [`limit_arenas`]); above the
/// 256 kB buffers of every transfer, below the search's 512 kB ones.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const LARGE_BLOCK: usize = 384 << 10;

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_arenas() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use std::hint::black_box;

    /// Once the watch set the allocator up, large buffers are mapped for
    /// themselves (and unmapped when freed) rather than grow an arena, even
    /// after a larger one was freed, which would otherwise have raised
    /// glibc's threshold past them: an arena grown for them stays grown,
    /// held by the record's entries allocated among them.
    #[test]
    fn large_buffers_do_not_grow_the_arenas_whatever_was_freed_before() {
        super::limit_arenas();
        drop(black_box(Vec::<u8>::with_capacity(8 << 20)));
        // 192 MB in all (reserved, never touched): more than the free space of any arena of this test
        // process, which serves what it can hold before anything is mapped.
        let buffers: Vec<Vec<u8>> = (0..256)
            .map(|_| black_box(Vec::with_capacity(2 * super::LARGE_BLOCK)))
            .collect();
        // A block mapped for itself begins right after its 16-byte header at
        // the start of a page; of blocks carved one after another from an
        // arena, one in 256 does.
        let mapped = buffers.iter().filter(|b| b.as_ptr() as usize % 4096 == 16).count();
        assert!(mapped >= 192, "{mapped} of 256 large buffers mapped for themselves");
    }
}
