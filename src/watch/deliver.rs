//! The destination side of `watch`: one thread that sends instances while
//! their study is still downloading, then finishes each study with a
//! `store` pass once its fetch is done.
//!
//! Streaming is the fast path. Told by the fetch that an instance of a study
//! landed in the cache, it sends what is there and not yet delivered over one
//! association (proposing the SOP classes and transfer syntaxes seen so far,
//! reopened when a new one appears), and records each success or warning in
//! the study's delivery journal. Everything else it leaves alone: an instance
//! the destination refused, answered with a failure status, or did not answer
//! is sent again by the closing pass, which is [`Store::deliver`] itself with
//! its conversions, retries and reasons. So a study is delivered by the same
//! code as `retriever store`, and streaming only makes most of it arrive
//! earlier.
//!
//! One association at a time, released before each closing pass: DCMTK's
//! `storescp` (and many PACS) serve one association at a time, and a second
//! one would wait for the first.
//!
//! When the destination cannot be reached, streaming stops and the closing
//! passes wait, with backoff; the fetches go on, so nothing is fetched twice
//! and everything is ready to go when the destination is back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Msg;
use super::record::retry_delay;
use crate::cache::{Cache, Delivery, DeliveryState, Journal, now_rfc3339};
use crate::dicomweb::ClientOptions;
use crate::dimse::{
    InstanceMeta, MAX_CONTEXTS, ScuError, StatusClass, StoreAssociation, StoreOutcome, StoreStatus, proposals_for,
};
use crate::interrupt::{self, Interrupted};
use crate::report::{Reporter, WatchEvent};
use crate::store::{Asked, Stalls, Store, StoreOptions, StudyState};
use crate::uid::Uid;

/// An association with nothing to send for this long is released.
const IDLE_RELEASE: Duration = Duration::from_secs(2);
/// The first wait after the destination could not be reached; doubled up to [`DOWN_MAX`].
const DOWN_FIRST: Duration = Duration::from_secs(1);
const DOWN_MAX: Duration = Duration::from_secs(60);
/// A study another process is fetching is tried again after this.
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// What the fetch side tells the deliverer.
pub(super) enum ToDeliverer {
    /// Our fetch holds this study (locked) and wrote its manifest.
    Begin(Uid),
    /// The study's instances are listed in its manifest now.
    Listed(Uid),
    /// This instance of the study was stored in the cache.
    Stored {
        study: Uid,
        sop: String,
        path: PathBuf,
        bytes: u64,
    },
    /// The fetch of a current study and its priors returned: finish them.
    Finish(Box<Fetched>),
}

/// A current study and its priors, as their fetch left them.
pub(super) struct Fetched {
    pub current: Uid,
    pub label: String,
    /// Every study the fetch took up (its streams end now).
    pub all: Vec<Uid>,
    /// The studies complete in the cache, current first.
    pub complete: Vec<GroupStudy>,
    /// What could not be fetched, and why.
    pub failures: Vec<String>,
    /// The current study's size, when it was fetched complete.
    pub instances: Option<usize>,
}

/// A study of a group.
#[derive(Debug, Clone)]
pub(super) struct GroupStudy {
    pub uid: Uid,
    pub label: String,
    pub accession: Option<String>,
    /// `current`, or `prior of UID`.
    pub role: String,
}

/// How the delivery of a group ended.
pub(super) struct GroupOutcome {
    pub current: Uid,
    pub label: String,
    pub instances: Option<usize>,
    pub delivered: Vec<DeliveredStudy>,
    /// Why the group is not all delivered.
    pub error: Option<String>,
}

/// A study now entirely at the destination.
#[derive(Debug, Clone)]
pub struct DeliveredStudy {
    pub study: Uid,
    pub accession: Option<String>,
    /// `current`, or `prior of UID`.
    pub role: String,
    pub instances: usize,
    /// Sent by this run (the rest was there before).
    pub sent: usize,
    pub warnings: usize,
}

/// A study whose instances are streamed while it downloads.
#[derive(Default)]
struct Stream {
    /// The instances its manifest lists, once the fetch has listed them.
    /// Until then every instance that lands is the study's (the fetch lists
    /// first when some of the study was in the cache already).
    expected: Option<HashSet<String>>,
    /// The journal was read: `seen` holds what was delivered before.
    journal_read: bool,
    /// Delivered before, queued or sent: never queued again by this stream.
    seen: HashSet<String>,
    journal: Option<Journal>,
    sent: usize,
    /// The cache is to be looked at for what it held before the fetch.
    scan: bool,
    /// The manifest is to be read again for `expected`.
    reread: bool,
    /// Instances the fetch stored, not looked at yet.
    landed: Vec<Item>,
    /// Something failed (the manifest, the journal), or the destination
    /// stopped answering: the closing pass does it all.
    given_up: bool,
    /// The destination's unanswered requests for this study.
    stalls: Stalls,
}

impl Stream {
    /// There is something for [`Deliverer::refill`] to look at.
    fn has_news(&self) -> bool {
        !self.given_up && (self.scan || self.reread || !self.landed.is_empty())
    }
}

struct Item {
    study: Uid,
    sop: String,
    path: PathBuf,
    bytes: u64,
}

/// The open association and the (SOP class, transfer syntax) pairs it proposed.
struct Open {
    assoc: StoreAssociation,
    pairs: Vec<(String, String)>,
}

/// A group waiting for its closing pass.
struct Pending {
    not_before: Instant,
    group: Box<Fetched>,
    /// Instances streamed per study.
    streamed: HashMap<Uid, usize>,
    /// "Waiting for the destination" was shown.
    waiting_shown: bool,
}

struct Down {
    until: Instant,
    attempts: u32,
}

pub(super) struct Deliverer {
    cache: Cache,
    opts: StoreOptions,
    /// For instances the destination takes only in another syntax.
    cloud: ClientOptions,
    view: Arc<dyn Reporter>,
    dest_key: String,
    /// `--once`: a closing pass is made once, whatever the destination's state.
    once: bool,
    inbox: Receiver<ToDeliverer>,
    outbox: Sender<Msg>,
    streams: HashMap<Uid, Stream>,
    queue: VecDeque<Item>,
    assoc: Option<Open>,
    /// Pairs the destination does not take as they are: the closing pass deals with them.
    refused: HashSet<(String, String)>,
    last_send: Instant,
    pending: Vec<Pending>,
    down: Option<Down>,
}

impl Deliverer {
    pub(super) fn new(
        cache: Cache,
        opts: StoreOptions,
        cloud: ClientOptions,
        view: Arc<dyn Reporter>,
        once: bool,
        inbox: Receiver<ToDeliverer>,
        outbox: Sender<Msg>,
    ) -> Deliverer {
        Deliverer {
            dest_key: opts.scu.destination.key(),
            cache,
            opts,
            cloud,
            view,
            once,
            inbox,
            outbox,
            streams: HashMap::new(),
            queue: VecDeque::new(),
            assoc: None,
            refused: HashSet::new(),
            last_send: Instant::now(),
            pending: Vec::new(),
            down: None,
        }
    }

    /// Runs until the fetch side is gone and nothing is left to deliver, or Ctrl-C.
    pub(super) fn run(mut self) -> Result<()> {
        let result = self.work();
        self.release();
        for (_, stream) in self.streams.drain() {
            close(stream);
        }
        result
    }

    fn work(&mut self) -> Result<()> {
        let mut inbox_open = true;
        loop {
            if interrupt::requested() {
                return Err(Interrupted.into());
            }
            let wait = if self.can_send() {
                Duration::ZERO
            } else {
                Duration::from_millis(50)
            };
            if inbox_open {
                match self.inbox.recv_timeout(wait) {
                    Ok(m) => {
                        self.handle(m);
                        while let Ok(m) = self.inbox.try_recv() {
                            self.handle(m);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => inbox_open = false,
                }
            } else if self.pending.is_empty() {
                return Ok(());
            } else {
                // Err is Ctrl-C, seen at the top of the loop.
                let _ = interrupt::sleep(wait);
            }
            if let Some(at) = self.due() {
                let pending = self.pending.swap_remove(at);
                self.finish(pending)?;
                continue;
            }
            if !self.is_down() {
                self.refill();
                for _ in 0..16 {
                    if interrupt::requested() || !self.send_next() {
                        break;
                    }
                }
            }
            if self.queue.is_empty() && self.assoc.is_some() && self.last_send.elapsed() >= IDLE_RELEASE {
                self.release();
            }
        }
    }

    fn handle(&mut self, message: ToDeliverer) {
        match message {
            ToDeliverer::Begin(study) => {
                let stream = self.streams.entry(study).or_default();
                stream.scan = true;
                stream.reread = true;
            }
            ToDeliverer::Listed(study) => self.streams.entry(study).or_default().reread = true,
            ToDeliverer::Stored {
                study,
                sop,
                path,
                bytes,
            } => {
                let stream = self.streams.entry(study.clone()).or_default();
                stream.landed.push(Item {
                    study,
                    sop,
                    path,
                    bytes,
                });
            }
            ToDeliverer::Finish(group) => {
                // What was not streamed yet is the closing pass's to send.
                let mut streamed = HashMap::new();
                for uid in &group.all {
                    if let Some(stream) = self.streams.remove(uid) {
                        streamed.insert(uid.clone(), stream.sent);
                        close(stream);
                    }
                }
                self.queue.retain(|item| !group.all.contains(&item.study));
                self.pending.push(Pending {
                    not_before: Instant::now(),
                    group,
                    streamed,
                    waiting_shown: false,
                });
            }
        }
    }

    fn is_down(&self) -> bool {
        self.down.as_ref().is_some_and(|d| Instant::now() < d.until)
    }

    fn can_send(&self) -> bool {
        !self.is_down() && (!self.queue.is_empty() || self.streams.values().any(Stream::has_news))
    }

    /// The closing pass that may run now, if any.
    fn due(&self) -> Option<usize> {
        let now = Instant::now();
        let down = self.is_down() && !self.once;
        self.pending.iter().position(|p| p.not_before <= now && !down)
    }

    /// Queues the instances of the studies being fetched that are in the
    /// cache and not yet delivered: those the fetch reports as it stores
    /// them, and, once per study, those that were there before it began.
    fn refill(&mut self) {
        for (study, stream) in self.streams.iter_mut() {
            if !stream.has_news() {
                continue;
            }
            if stream.reread {
                stream.reread = false;
                let manifest = match self.cache.read_manifest(study) {
                    Ok(Some(m)) => m,
                    _ => {
                        stream.given_up = true;
                        continue;
                    }
                };
                if !manifest.expected.is_empty() {
                    stream.expected = Some(manifest.expected.into_keys().collect());
                }
            }
            if !stream.journal_read {
                let Ok(done) = self.cache.deliveries(study, &self.dest_key) else {
                    stream.given_up = true;
                    continue;
                };
                stream.journal_read = true;
                stream.seen = done
                    .into_values()
                    .filter(|d| d.state.is_delivered())
                    .map(|d| d.sop)
                    .collect();
                if !stream.seen.is_empty() {
                    self.view.watch(&WatchEvent::DeliveredBefore {
                        study: study.clone(),
                        sent: stream.seen.len() as u64,
                    });
                }
            }
            let mut found = std::mem::take(&mut stream.landed);
            if std::mem::take(&mut stream.scan)
                && let Ok(present) = self.cache.present(study)
            {
                found.extend(present.into_iter().map(|(sop, instance)| Item {
                    study: study.clone(),
                    sop,
                    path: instance.path,
                    bytes: instance.bytes,
                }));
            }
            for item in found {
                let listed = stream.expected.as_ref().is_none_or(|e| e.contains(&item.sop));
                if listed && stream.seen.insert(item.sop.clone()) {
                    self.queue.push_back(item);
                }
            }
        }
    }

    /// Sends the next queued instance; false when nothing more can be sent now.
    fn send_next(&mut self) -> bool {
        let Some(item) = self.queue.pop_front() else {
            return false;
        };
        if self.streams.get(&item.study).is_none_or(|s| s.given_up) {
            return true;
        }
        // An instance that cannot be read is the closing pass's to report.
        let Ok(meta) = InstanceMeta::read(&item.path) else {
            return true;
        };
        let pair = (meta.sop_class.clone(), meta.transfer_syntax.clone());
        if self.refused.contains(&pair) {
            return true;
        }
        match self.ensure_open(&pair) {
            Ready::Yes => {}
            Ready::Skip => return true,
            Ready::Down => {
                self.queue.push_front(item);
                return false;
            }
        }
        let open = self.assoc.as_mut().expect("opened above");
        let outcome = open.assoc.store_instance(&item.path, &meta);
        self.last_send = Instant::now();
        if let (Ok(StoreOutcome::Responded { .. }), Some(stream)) = (&outcome, self.streams.get(&item.study)) {
            stream.stalls.progress();
        }
        match outcome {
            Ok(StoreOutcome::Responded { status, .. }) if status.is_delivered() => self.record(&item, &status),
            Ok(StoreOutcome::SopClassNotAccepted { .. } | StoreOutcome::NeedsOtherSyntax { .. }) => {
                self.refused.insert(pair);
            }
            // A failure status: the closing pass sends it again and records why.
            Ok(_) => {}
            Err(e) => {
                // No answer, so not delivered: the closing pass sends it again.
                if !open.assoc.is_usable() {
                    self.assoc = None;
                }
                if !matches!(e, ScuError::File { .. }) {
                    self.view.info(&format!("instance {}: {e}", item.sop));
                }
                let destination = self.opts.scu.destination.to_string();
                let gave_up = self.streams.get_mut(&item.study).and_then(|s| {
                    let why = s.stalls.failed(&e, &destination)?;
                    s.given_up = true;
                    Some(why)
                });
                if let Some(why) = gave_up {
                    // Not streamed any more: each further try would wait out
                    // another timeout. The closing pass decides, once due.
                    self.set_down(why);
                }
            }
        }
        true
    }

    /// Makes sure the open association proposed `pair`, opening a new one
    /// (with every pair seen so far) if needed.
    fn ensure_open(&mut self, pair: &(String, String)) -> Ready {
        if let Some(open) = &self.assoc
            && open.pairs.contains(pair)
            && open.assoc.is_usable()
        {
            return Ready::Yes;
        }
        let mut pairs = self.assoc.as_ref().map(|o| o.pairs.clone()).unwrap_or_default();
        if !pairs.contains(pair) {
            pairs.push(pair.clone());
        }
        let proposals = proposals_for(pairs.iter().map(|(c, t)| (c.as_str(), t.as_str())));
        if proposals.len() > MAX_CONTEXTS {
            self.refused.insert(pair.clone());
            return Ready::Skip;
        }
        self.release();
        match StoreAssociation::open(&self.opts.scu, &proposals) {
            Ok(assoc) => {
                self.assoc = Some(Open { assoc, pairs });
                self.up();
                Ready::Yes
            }
            Err(ScuError::NoAcceptedContext { .. }) => {
                self.refused.extend(pairs);
                Ready::Skip
            }
            Err(e) => {
                self.set_down(e.to_string());
                Ready::Down
            }
        }
    }

    /// Records a delivered instance in its study's journal.
    fn record(&mut self, item: &Item, status: &StoreStatus) {
        let Some(stream) = self.streams.get_mut(&item.study) else {
            return;
        };
        if stream.journal.is_none() {
            match self.cache.open_journal(&item.study, &self.dest_key) {
                Ok(j) => stream.journal = Some(j),
                Err(e) => {
                    self.view.warn(&format!("{e:#}"));
                    stream.given_up = true;
                    return;
                }
            }
        }
        let warning = status.class != StatusClass::Success;
        let delivery = Delivery {
            sop: item.sop.clone(),
            state: if warning {
                DeliveryState::Warning
            } else {
                DeliveryState::Delivered
            },
            status: Some(status.code),
            detail: warning.then(|| status.to_string()),
            at: now_rfc3339(),
        };
        if let Err(e) = stream.journal.as_mut().expect("opened above").record(&delivery) {
            // Not recorded, so the closing pass sends it again: at worst a duplicate.
            self.view.warn(&format!("{e:#}"));
            stream.given_up = true;
            return;
        }
        stream.sent += 1;
        self.view.watch(&WatchEvent::Sent {
            study: item.study.clone(),
            bytes: item.bytes,
        });
    }

    /// The closing pass of a group: `store` on each study complete in the cache.
    fn finish(&mut self, mut pending: Pending) -> Result<()> {
        self.release();
        let side = StoreSide {
            view: Arc::clone(&self.view),
        };
        let mut store = Store::new(&self.cache, &self.opts, Some(self.cloud.clone()), &side);
        let mut results = Vec::new();
        for study in &pending.group.complete {
            // `Found`: a study another process is fetching is passed over
            // (and tried again) rather than waited for.
            results.push(store.deliver(&study.uid, Asked::Found)?);
        }
        let summary = store.into_summary();
        if let Some(why) = summary.stopped.clone().filter(|_| !self.once) {
            self.set_down(why);
            if !pending.waiting_shown {
                pending.waiting_shown = true;
                for (study, r) in pending.group.complete.iter().zip(&results) {
                    if r.state != StudyState::Delivered {
                        self.view.watch(&WatchEvent::StudyDone {
                            study: study.uid.clone(),
                            label: study.label.clone(),
                            ok: false,
                            summary: "in the cache, waiting for the destination".into(),
                        });
                    }
                }
            }
            pending.not_before = Instant::now();
            self.pending.push(pending);
            return Ok(());
        }
        if summary.delivered + summary.warnings.len() > 0 {
            self.up();
        }
        if results.iter().any(|r| r.state == StudyState::Busy) {
            pending.not_before = Instant::now() + BUSY_WAIT;
            self.pending.push(pending);
            return Ok(());
        }
        let group = pending.group;
        let mut errors = group.failures.clone();
        let mut delivered = Vec::new();
        for (study, r) in group.complete.iter().zip(&results) {
            let streamed = pending.streamed.get(&study.uid).copied().unwrap_or(0);
            let (ok, words) = match &r.state {
                StudyState::Delivered => {
                    delivered.push(DeliveredStudy {
                        study: study.uid.clone(),
                        accession: study.accession.clone(),
                        role: study.role.clone(),
                        instances: r.total,
                        sent: streamed + r.sent(),
                        warnings: r.warnings,
                    });
                    (true, format!("{} at the destination", instances(r.total)))
                }
                StudyState::NotDelivered => (
                    false,
                    format!(
                        "{} of {} not delivered",
                        r.total - r.skipped - r.sent(),
                        instances(r.total)
                    ),
                ),
                StudyState::Incomplete { have, total } => {
                    (false, format!("only {have} of {total} instances are in the cache"))
                }
                StudyState::NotInCache => (false, "no longer in the cache".into()),
                StudyState::Busy => (false, "being fetched by another process".into()),
                StudyState::Error(e) => (false, e.clone()),
            };
            if !ok {
                errors.push(format!("{}: {words}", study.label));
            }
            self.view.watch(&WatchEvent::StudyDone {
                study: study.uid.clone(),
                label: study.label.clone(),
                ok,
                summary: words,
            });
        }
        if let Some(why) = summary
            .error()
            .filter(|_| !summary.failed.is_empty() || summary.stopped.is_some())
        {
            errors.push(why);
        }
        let outcome = GroupOutcome {
            current: group.current.clone(),
            label: group.label.clone(),
            instances: group.instances,
            delivered,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        };
        let _ = self.outbox.send(Msg::Delivered(Box::new(outcome)));
        Ok(())
    }

    fn release(&mut self) {
        if let Some(open) = self.assoc.take()
            && open.assoc.is_usable()
            && let Err(e) = open.assoc.release()
        {
            self.view.info(&format!("{e}"));
        }
    }

    fn set_down(&mut self, why: String) {
        let attempts = self.down.as_ref().map_or(0, |d| d.attempts) + 1;
        let wait = retry_delay(DOWN_FIRST, attempts).min(DOWN_MAX);
        self.down = Some(Down {
            until: Instant::now() + wait,
            attempts,
        });
        self.view.watch(&WatchEvent::DestinationDown {
            error: why,
            retry_in: wait,
        });
    }

    fn up(&mut self) {
        if self.down.take().is_some() {
            self.view.watch(&WatchEvent::DestinationUp);
        }
    }
}

/// `1 instance`, `2 instances`.
fn instances(n: usize) -> String {
    if n == 1 {
        "1 instance".into()
    } else {
        format!("{n} instances")
    }
}

enum Ready {
    Yes,
    /// Not streamed: the closing pass takes care of it.
    Skip,
    /// The destination cannot be reached now.
    Down,
}

fn close(mut stream: Stream) {
    if let Some(journal) = stream.journal.as_mut() {
        let _ = journal.sync();
    }
}

/// What `store` reports during a closing pass, told to the watch view.
struct StoreSide {
    view: Arc<dyn Reporter>,
}

impl Reporter for StoreSide {
    fn study_started(&self, study: &Uid, label: &str, total: u64, done: u64) {
        self.view.watch(&WatchEvent::StudyStarted {
            study: study.clone(),
            label: label.to_string(),
            total,
            present: total,
        });
        self.view.watch(&WatchEvent::DeliveredBefore {
            study: study.clone(),
            sent: done,
        });
    }

    fn instance_done(&self, study: &Uid, bytes: u64) {
        self.view.watch(&WatchEvent::Sent {
            study: study.clone(),
            bytes,
        });
    }

    fn warn(&self, message: &str) {
        self.view.warn(message);
    }

    fn info(&self, message: &str) {
        self.view.info(message);
    }
}
