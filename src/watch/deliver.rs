//! The destination side of `watch`: one thread per destination that decides
//! when to send there, each with its own association, inbox and probe, so
//! that a destination down, slow or refusing holds up no other.
//! It hands instances to the delivery engine's [`Streamer`] while their
//! study is still downloading, then finishes each study with a [`Store`]
//! pass once its fetch is done.
//!
//! Streaming is the fast path. Told by the fetch that an instance of a study
//! landed in the cache, it queues what is there and not yet delivered for
//! the streamer. Everything the streamer leaves (an instance the
//! destination refused, answered with a failure status, or did not answer)
//! is sent again by the closing pass, [`Store::deliver`] itself, so a study
//! is delivered by the same code as `retriever store`, and streaming only
//! makes most of it arrive earlier.
//!
//! One association at a time, kept open across studies: the closing pass
//! of a study sends on the association the streaming used, and leaves it
//! open for the next study's instances, so a pass over many studies opens
//! one association (and another only for a SOP class or transfer syntax it
//! did not propose). DCMTK's `storescp` (and many PACS) serve one
//! association at a time, and a second one would wait for the first: the
//! closing pass releases the kept one before it opens any other. It is
//! released once idle for [`IDLE_RELEASE`], so that it holds up no other
//! sender (a technician's `retriever store`) for long.
//!
//! When the destination cannot be reached, streaming stops and the closing
//! passes wait; the fetches go on, so nothing is fetched twice and
//! everything is ready to go when the destination is back. Meanwhile a
//! C-ECHO every [`PROBE_EVERY`] asks whether it is back: cheaper for a PACS
//! than a C-STORE, and unlike a backoff it lets delivery resume within a
//! couple of seconds of the destination answering (with a backoff capped at
//! a minute, it resumed 20 s after). The probes say nothing: the
//! log says once that the destination is down, and once when it is back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Msg;
use crate::cache::{Cache, Role};
use crate::delivery::{Asked, Store, StoreOptions, Streamed, Streamer, StudyState};
use crate::dicomweb::ClientOptions;
use crate::dimse::{self, ScuError};
use crate::interrupt::{self, Interrupted};
use crate::report::{Reporter, WatchEvent};
use crate::uid::Uid;

/// An association with nothing to send for this long is released.
const IDLE_RELEASE: Duration = Duration::from_secs(2);
/// While the destination is down, it is asked this often whether it is back.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The longest a probe waits for the destination's TCP connection: on a
/// LAN a live destination answers in milliseconds.
const PROBE_CONNECT: Duration = Duration::from_secs(2);
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
        sop: Uid,
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
    pub role: Role,
}

/// How the delivery of a group ended.
pub(super) struct GroupOutcome {
    pub current: Uid,
    pub label: String,
    pub instances: Option<usize>,
    pub delivered: Vec<DeliveredStudy>,
    /// Why the group is not all delivered, each cause once, none naming the
    /// current study (the group's label says it); empty when it all is.
    pub causes: Vec<String>,
}

/// A study now entirely at a destination.
#[derive(Debug, Clone)]
pub struct DeliveredStudy {
    pub study: Uid,
    /// The destination's name (its `AE@HOST:PORT` when it has none).
    pub destination: String,
    pub accession: Option<String>,
    pub role: Role,
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
    expected: Option<HashSet<Uid>>,
    /// The journal was read: `seen` holds what was delivered before.
    journal_read: bool,
    /// Delivered before, queued or sent: never queued again by this stream.
    seen: HashSet<Uid>,
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
}

impl Stream {
    /// There is something for [`Deliverer::refill`] to look at.
    fn has_news(&self) -> bool {
        !self.given_up && (self.scan || self.reread || !self.landed.is_empty())
    }
}

struct Item {
    study: Uid,
    sop: Uid,
    path: PathBuf,
    bytes: u64,
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

/// The destination is down: since when, and when to probe it next.
struct Down {
    since: Instant,
    next_probe: Instant,
}

pub(super) struct Deliverer {
    /// Which of the watch's destinations this is, in its messages.
    at: usize,
    /// The destination's name.
    name: String,
    cache: Cache,
    opts: StoreOptions,
    /// For instances the destination takes only in another syntax.
    cloud: ClientOptions,
    /// The sending side's reporter, which hears the watch's events too.
    view: Arc<dyn Reporter>,
    dest_key: String,
    /// `--once`: a closing pass is made once, whatever the destination's state.
    once: bool,
    inbox: Receiver<ToDeliverer>,
    outbox: Sender<Msg>,
    streams: HashMap<Uid, Stream>,
    queue: VecDeque<Item>,
    streamer: Streamer,
    pending: Vec<Pending>,
    down: Option<Down>,
}

impl Deliverer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        at: usize,
        name: String,
        cache: Cache,
        opts: StoreOptions,
        cloud: ClientOptions,
        view: Arc<dyn Reporter>,
        once: bool,
        inbox: Receiver<ToDeliverer>,
        outbox: Sender<Msg>,
    ) -> Deliverer {
        Deliverer {
            at,
            name,
            dest_key: opts.scu.destination.key(),
            streamer: Streamer::new(cache.clone(), opts.scu.clone()),
            cache,
            opts,
            cloud,
            view,
            once,
            inbox,
            outbox,
            streams: HashMap::new(),
            queue: VecDeque::new(),
            pending: Vec::new(),
            down: None,
        }
    }

    /// Runs until the fetch side is gone and nothing is left to deliver, or Ctrl-C.
    pub(super) fn run(mut self) -> Result<()> {
        let result = self.work();
        self.release();
        self.streams.clear();
        self.streamer.finish_all();
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
            self.probe_if_due();
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
            if self.queue.is_empty() && self.streamer.is_open() && self.streamer.idle() >= IDLE_RELEASE {
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
                        self.streamer.finish_study(uid);
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
        self.down.is_some()
    }

    /// While the destination is down, asks it with a C-ECHO, when due,
    /// whether it answers again: if it does, delivery resumes at once.
    fn probe_if_due(&mut self) {
        if self.down.as_ref().is_none_or(|d| Instant::now() < d.next_probe) {
            return;
        }
        let mut scu = self.opts.scu.clone();
        scu.connect_timeout = scu.connect_timeout.min(PROBE_CONNECT);
        let answers = match dimse::echo(&scu) {
            // A destination that takes no C-ECHO but accepts the association answers.
            Ok(_) | Err(ScuError::NoAcceptedContext { .. }) => true,
            Err(_) => false,
        };
        if answers {
            self.up();
        } else if let Some(down) = &mut self.down {
            // From the end of this probe: one that waited out its timeout is not followed at once.
            down.next_probe = Instant::now() + PROBE_EVERY;
        }
    }

    fn can_send(&self) -> bool {
        !self.is_down() && (!self.queue.is_empty() || self.streams.values().any(Stream::has_news))
    }

    /// The closing pass that may run now, if any. A group of which nothing
    /// is to go here needs no destination: it is answered at once.
    fn due(&self) -> Option<usize> {
        let now = Instant::now();
        let down = self.is_down() && !self.once;
        self.pending
            .iter()
            .position(|p| p.not_before <= now && (!down || p.group.complete.is_empty()))
    }

    /// Queues the instances of the studies being fetched that are in the
    /// cache and not yet delivered: those the fetch reports as it stores
    /// them, and, once per study, those that were there before it began.
    fn refill(&mut self) {
        for (study, stream) in self.streams.iter_mut() {
            if !stream.has_news() {
                continue;
            }
            // One look at the study: its listing, what its journal says was
            // delivered before, and what it held before the fetch began.
            let status = if stream.reread || !stream.journal_read {
                match self.cache.study_status(study) {
                    Ok(Some(status)) => Some(status),
                    _ => {
                        stream.given_up = true;
                        continue;
                    }
                }
            } else {
                None
            };
            if std::mem::take(&mut stream.reread) {
                let status = status.as_ref().expect("read above");
                if status.total() > 0 {
                    stream.expected = Some(status.manifest.expected.keys().cloned().collect());
                }
            }
            if !stream.journal_read {
                let status = status.as_ref().expect("read above");
                stream.journal_read = true;
                stream.seen = status.delivered(&self.dest_key).cloned().collect();
                if !stream.seen.is_empty() {
                    self.view.watch(&WatchEvent::DeliveredBefore {
                        study: study.clone(),
                        sent: stream.seen.len() as u64,
                    });
                }
            }
            let mut found = std::mem::take(&mut stream.landed);
            if std::mem::take(&mut stream.scan) {
                let present = match status {
                    Some(status) => Ok(status.present),
                    None => self.cache.present(study),
                };
                if let Ok(present) = present {
                    found.extend(present.into_iter().map(|(sop, instance)| Item {
                        study: study.clone(),
                        sop,
                        path: instance.path,
                        bytes: instance.bytes,
                    }));
                }
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
        let attempt = self.streamer.send(&item.study, &item.sop, &item.path);
        for line in &attempt.info {
            self.view.info(line);
        }
        if attempt.opened {
            self.up();
        }
        match attempt.outcome {
            Streamed::Stored => {
                if let Some(stream) = self.streams.get_mut(&item.study) {
                    stream.sent += 1;
                }
                self.view.instance_done(&item.study, item.bytes);
            }
            Streamed::Left | Streamed::NoAnswer { gave_up: None } => {}
            Streamed::NoAnswer { gave_up: Some(why) } => {
                if let Some(stream) = self.streams.get_mut(&item.study) {
                    stream.given_up = true;
                }
                // Not streamed any more: each further try would wait out
                // another timeout. The closing pass decides, once due.
                self.set_down(why);
            }
            Streamed::Unreachable(why) => {
                self.set_down(why);
                self.queue.push_front(item);
                return false;
            }
            Streamed::NotRecorded(why) => {
                // Not recorded, so the closing pass sends it again: at worst a duplicate.
                self.view.warn(&why);
                if let Some(stream) = self.streams.get_mut(&item.study) {
                    stream.given_up = true;
                }
            }
        }
        true
    }

    /// The closing pass of a group: `store` on each study complete in the cache.
    fn finish(&mut self, mut pending: Pending) -> Result<()> {
        if pending.group.complete.is_empty() {
            let _ = self.outbox.send(Msg::Delivered(
                self.at,
                Box::new(GroupOutcome {
                    current: pending.group.current.clone(),
                    label: pending.group.label.clone(),
                    instances: pending.group.instances,
                    delivered: Vec::new(),
                    causes: pending.group.failures.clone(),
                }),
            ));
            return Ok(());
        }
        let mut store = Store::new(
            &self.cache,
            &self.opts,
            Some(self.cloud.clone().in_syntax()),
            &*self.view,
        );
        store.keep_association(self.streamer.take_association());
        let mut results = Vec::new();
        let mut interrupted = None;
        for study in &pending.group.complete {
            // `Found`: a study another process is fetching is passed over
            // (and tried again) rather than waited for.
            match store.deliver(&study.uid, Asked::Found) {
                Ok(r) => results.push(r),
                Err(e) => {
                    interrupted = Some(e);
                    break;
                }
            }
        }
        let kept = store.take_association();
        let summary = store.into_summary();
        self.adopt(kept);
        if let Some(e) = interrupted {
            // Ctrl-C: `run` releases the association on the way out.
            return Err(e);
        }
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
        let mut causes = group.failures.clone();
        let store_causes = summary.causes();
        let mut delivered = Vec::new();
        for (study, r) in group.complete.iter().zip(&results) {
            let streamed = pending.streamed.get(&study.uid).copied().unwrap_or(0);
            let (ok, words) = match &r.state {
                StudyState::Delivered => {
                    delivered.push(DeliveredStudy {
                        study: study.uid.clone(),
                        destination: self.name.clone(),
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
            // A study left unsent is explained by the delivery's causes,
            // added once below; any other state is a cause of its own.
            let explained = r.state == StudyState::NotDelivered && !store_causes.is_empty();
            if !ok && !explained {
                causes.push(if study.uid == group.current {
                    words.clone()
                } else {
                    format!("{}: {words}", study.label)
                });
            }
            self.view.watch(&WatchEvent::StudyDone {
                study: study.uid.clone(),
                label: study.label.clone(),
                ok,
                summary: words,
            });
        }
        if results.iter().any(|r| r.state == StudyState::NotDelivered) {
            causes.extend(store_causes);
        }
        let outcome = GroupOutcome {
            current: group.current.clone(),
            label: group.label.clone(),
            instances: group.instances,
            delivered,
            causes,
        };
        let _ = self.outbox.send(Msg::Delivered(self.at, Box::new(outcome)));
        Ok(())
    }

    /// Streams on what a closing pass left open.
    fn adopt(&mut self, assoc: Option<dimse::StoreAssociation>) {
        if let Err(e) = self.streamer.adopt(assoc) {
            self.view.info(&format!("{e}"));
        }
    }

    fn release(&mut self) {
        if let Err(e) = self.streamer.release() {
            self.view.info(&format!("{e}"));
        }
    }

    /// The destination cannot be reached, or refuses us: said once, until
    /// it is back; the probes take over from here.
    fn set_down(&mut self, why: String) {
        let now = Instant::now();
        let _ = self.outbox.send(Msg::DestinationDown(self.at, why.clone()));
        match &mut self.down {
            Some(down) => down.next_probe = now + PROBE_EVERY,
            None => {
                self.down = Some(Down {
                    since: now,
                    next_probe: now + PROBE_EVERY,
                });
                self.view.watch(&WatchEvent::DestinationDown {
                    error: why,
                    retry_in: PROBE_EVERY,
                });
            }
        }
    }

    fn up(&mut self) {
        if let Some(down) = self.down.take() {
            let _ = self.outbox.send(Msg::DestinationUp(self.at));
            self.view.watch(&WatchEvent::DestinationUp {
                after: down.since.elapsed(),
            });
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
