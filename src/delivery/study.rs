//! Delivering whole studies from the cache now, as `store` does and as
//! `watch` finishes each study: [`Store`].
//!
//! Per study: a shared lock (a fetch or prune cannot change it meanwhile),
//! the journal (locked, so two `store` runs to one destination never send
//! the same study at once), then the instances not yet delivered go out over
//! `associations` associations in parallel that take instances from one
//! queue. Only an answer counts: a success or warning status is recorded as
//! delivered, anything else as failed, and an instance whose association
//! died after its data set was sent is sent again (at most `retries` times),
//! so a crash or a kill resends at most what was in flight.
//!
//! An instance in a transfer syntax the destination does not take, and that
//! cannot be converted here without loss, is asked of the cloud again in a
//! syntax the destination accepted, staged in the study's tmp directory
//! (never in the cache as the instance), sent and deleted. Nothing is
//! skipped silently: every instance ends up delivered or failed with a
//! reason, which the summary shows.
//!
//! A destination that stops answering is not waited for again and again:
//! see [`Stalls`], the rule `watch` follows too.
//!
//! `watch` lends the association it streams on to its closing passes
//! ([`Store::keep_association`]) and takes it back after: the pass sends on
//! it when it proposed all the pass needs (else releases it before opening
//! another, so that a destination serving one association at a time is never
//! asked for two), and the last worker of a pass leaves its association open
//! for the caller instead of releasing it. Opening one costs a round trip,
//! and a destination that serves one at a time a hand-over.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::{STALLS_TO_GIVE_UP, Stalls, StoreOptions, record, record_stored};
use crate::cache::{Cache, DeliveryState, Journal, LockMode, Staged, StudyEntry, copy_part};
use crate::dicomweb::{Client, ClientFor, Target};
use crate::dimse::{
    EXPLICIT_VR_LE, IMPLICIT_VR_LE, InstanceMeta, Proposal, ScuError, StatusClass, StoreAssociation, StoreOutcome,
    StoreStatus, proposals_for, split_proposals,
};
use crate::intake::{self, Admitted, Expectation, Note, Patient};
use crate::interrupt::{self, Interrupted};
use crate::report::Reporter;
use crate::uid::Uid;

/// How a study came to be asked for, which decides what a study that is
/// not complete means: an error when named, a note when the run takes
/// "everything in the cache".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// Named on the command line, on stdin, or made complete by `fetch --store`.
    Named,
    /// Found in the cache by a run that names no study.
    Found,
}

/// Where a study stands after [`Store::deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StudyState {
    /// Every instance is delivered (some perhaps with a warning, or before this run).
    Delivered,
    /// Some instances were not delivered (see the summary for why).
    NotDelivered,
    /// Not in the cache.
    NotInCache,
    /// In the cache but not complete: `have` of `total` instances.
    Incomplete { have: usize, total: usize },
    /// Being fetched by another process right now (only for [`Asked::Found`]).
    Busy,
    /// The study could not be read or its journal written.
    Error(String),
}

/// What happened to one study.
#[derive(Debug, Clone)]
pub struct StudyResult {
    pub study: Uid,
    pub asked: Asked,
    pub accession: Option<String>,
    pub state: StudyState,
    /// Instances the study holds.
    pub total: usize,
    /// Delivered by this run, status success.
    pub delivered: usize,
    /// Delivered by this run, with a warning status.
    pub warnings: usize,
    /// Not delivered by this run: a failure status or another reason.
    pub failed: usize,
    /// Left unsent because the run stopped (a configuration error, Ctrl-C).
    pub not_sent: usize,
    /// Already delivered before this run.
    pub skipped: usize,
}

impl StudyResult {
    fn new(study: &Uid, asked: Asked, state: StudyState) -> StudyResult {
        StudyResult {
            study: study.clone(),
            asked,
            accession: None,
            state,
            total: 0,
            delivered: 0,
            warnings: 0,
            failed: 0,
            not_sent: 0,
            skipped: 0,
        }
    }

    /// Instances this run sent and the destination stored.
    pub fn sent(&self) -> usize {
        self.delivered + self.warnings
    }

    /// False when the study counts against the run: it was named but could
    /// not be delivered. A study found in the cache that is not complete, or
    /// is being fetched, is merely passed over.
    pub fn is_ok(&self) -> bool {
        match self.state {
            StudyState::Delivered => true,
            // A study found in the cache may be removed by `prune` before
            // its turn comes: nothing was asked of it, so nothing failed.
            StudyState::Incomplete { .. } | StudyState::Busy | StudyState::NotInCache => self.asked == Asked::Found,
            StudyState::NotDelivered | StudyState::Error(_) => false,
        }
    }
}

/// An instance not delivered, or delivered with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub study: Uid,
    pub sop: Uid,
    /// The destination's status, when it answered.
    pub status: Option<StoreStatus>,
    /// Why, in words, when there is no status (or besides it).
    pub reason: String,
}

impl Problem {
    /// What instances with the same problem share, for grouping.
    fn kind(&self) -> String {
        match &self.status {
            Some(s) => format!("status 0x{:04X} ({})", s.code, s.meaning()),
            None => self.reason.clone(),
        }
    }
}

/// Everything a run did, for the closing summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub destination: String,
    pub studies: Vec<StudyResult>,
    pub delivered: usize,
    pub bytes: u64,
    pub warnings: Vec<Problem>,
    pub failed: Vec<Problem>,
    pub skipped: usize,
    pub not_sent: usize,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    pub elapsed: Duration,
}

impl Summary {
    fn count(&self, pred: impl Fn(&StudyState) -> bool) -> usize {
        self.studies.iter().filter(|s| pred(&s.state)).count()
    }

    /// True when everything asked for was delivered (warnings included).
    pub fn all_delivered(&self) -> bool {
        self.stopped.is_none()
            && self.failed.is_empty()
            && self.not_sent == 0
            && self.studies.iter().all(StudyResult::is_ok)
    }

    /// Why instances were not delivered, one entry per cause and without
    /// counts of what was left unsent (a router names each cause once, and
    /// the counts per study separately): the run stopped, and the failures
    /// grouped by kind, largest first.
    pub fn causes(&self) -> Vec<String> {
        let mut causes = Vec::new();
        if let Some(why) = &self.stopped {
            causes.push(format!("delivery to {} stopped: {why}", self.destination));
        }
        for (kind, list) in group(&self.failed).iter().take(3) {
            causes.push(format!("{} × {kind}", list.len()));
        }
        causes
    }

    /// The one-line reason the run failed, or `None` if it did not.
    pub fn error(&self) -> Option<String> {
        if self.all_delivered() {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(why) = &self.stopped {
            parts.push(format!("delivery to {} stopped: {why}", self.destination));
        }
        if !self.failed.is_empty() {
            let kinds = group(&self.failed)
                .iter()
                .take(3)
                .map(|(kind, list)| format!("{} × {kind}", list.len()))
                .collect::<Vec<_>>()
                .join("; ");
            parts.push(format!(
                "{} instance{} not delivered to {} ({kinds}); run `retriever store` again to retry {}",
                self.failed.len(),
                plural(self.failed.len()),
                self.destination,
                if self.failed.len() == 1 { "it" } else { "them" },
            ));
        }
        if self.not_sent > 0 && self.stopped.is_some() {
            parts.push(format!("{} instance{} not sent", self.not_sent, plural(self.not_sent)));
        }
        let missing = self
            .studies
            .iter()
            .filter(|s| matches!(s.state, StudyState::NotInCache) && s.asked == Asked::Named)
            .count();
        let incomplete = self
            .studies
            .iter()
            .filter(|s| matches!(s.state, StudyState::Incomplete { .. }) && s.asked == Asked::Named)
            .count();
        if missing + incomplete > 0 {
            parts.push(format!(
                "{} stud{} not in the cache or not complete there; fetch {} first",
                missing + incomplete,
                if missing + incomplete == 1 { "y is" } else { "ies are" },
                if missing + incomplete == 1 { "it" } else { "them" }
            ));
        }
        let errors = self.count(|s| matches!(s, StudyState::Error(_)));
        if errors > 0 {
            parts.push(format!(
                "{errors} stud{} could not be read",
                if errors == 1 { "y" } else { "ies" }
            ));
        }
        if parts.is_empty() {
            parts.push("not everything was delivered".into());
        }
        Some(parts.join("; "))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Problems grouped by kind, largest group first.
fn group(problems: &[Problem]) -> Vec<(String, Vec<&Problem>)> {
    let mut by_kind: BTreeMap<String, Vec<&Problem>> = BTreeMap::new();
    for p in problems {
        by_kind.entry(p.kind()).or_default().push(p);
    }
    let mut groups: Vec<_> = by_kind.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    groups
}

impl fmt::Display for Summary {
    /// The closing summary, several lines, for stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let considered = self.studies.iter().filter(|s| s.total > 0).count();
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "store to {}: {considered} stud{} in {}",
            self.destination,
            if considered == 1 { "y" } else { "ies" },
            if secs < 10.0 {
                format!("{secs:.2} s")
            } else {
                format!("{secs:.0} s")
            }
        )?;
        let sent = self.delivered + self.warnings.len();
        let rate = if secs > 0.0 && sent > 0 {
            format!(
                "  ({}, {:.0} instances/s)",
                crate::format::bytes(self.bytes),
                sent as f64 / secs
            )
        } else {
            String::new()
        };
        writeln!(f, "  delivered:                  {:>5}{rate}", self.delivered)?;
        writeln!(f, "  delivered with a warning:   {:>5}", self.warnings.len())?;
        write_groups(f, &self.warnings)?;
        writeln!(f, "  failed:                     {:>5}", self.failed.len())?;
        write_groups(f, &self.failed)?;
        writeln!(f, "  skipped, already delivered: {:>5}", self.skipped)?;
        if self.not_sent > 0 {
            writeln!(f, "  not sent, run stopped:      {:>5}", self.not_sent)?;
        }
        for s in &self.studies {
            match &s.state {
                StudyState::NotInCache if s.asked == Asked::Found => {
                    writeln!(f, "  study {} left the cache (pruned) before its turn", s.study)?;
                }
                StudyState::NotInCache => {
                    writeln!(f, "  study {} is not in the cache; fetch it first", s.study)?;
                }
                StudyState::Incomplete { have, total } => {
                    let tail = if s.asked == Asked::Found {
                        "left out"
                    } else {
                        "fetch it first"
                    };
                    writeln!(
                        f,
                        "  study {} is not complete in the cache ({have}/{total}); {tail}",
                        s.study
                    )?;
                }
                StudyState::Busy => {
                    writeln!(f, "  study {} is being fetched by another process; left out", s.study)?;
                }
                StudyState::Error(e) => writeln!(f, "  study {}: {e}", s.study)?,
                StudyState::Delivered | StudyState::NotDelivered => {}
            }
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "  stopped: {why}")?;
        }
        Ok(())
    }
}

fn write_groups(f: &mut fmt::Formatter<'_>, problems: &[Problem]) -> fmt::Result {
    for (kind, list) in group(problems) {
        let mut line = format!("      {kind}: {} instance{}", list.len(), plural(list.len()));
        let comment = list
            .iter()
            .find_map(|p| p.status.as_ref().and_then(|s| s.comment.clone()));
        if let Some(c) = comment {
            let _ = write!(line, ", \"{}\"", crate::text::escape(&c));
        }
        let shown: Vec<&str> = list.iter().take(3).map(|p| p.sop.as_str()).collect();
        let more = if list.len() > 3 {
            format!(" and {} more", list.len() - 3)
        } else {
            String::new()
        };
        let _ = write!(line, " ({}{more})", shown.join(", "));
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// A run delivering studies to one destination.
pub struct Store<'a> {
    cache: &'a Cache,
    opts: &'a StoreOptions,
    cloud: Option<Box<ClientFor>>,
    reporter: &'a dyn Reporter,
    dest_key: String,
    clients: Mutex<HashMap<String, Client>>,
    summary: Summary,
    started: Instant,
    /// Set by [`Store::keep_association`]: an association is left open
    /// after the pass, in `warm`, rather than released.
    keep: bool,
    /// The association lent to the pass, or left open by it.
    warm: Mutex<Option<StoreAssociation>>,
}

impl<'a> Store<'a> {
    /// `cloud`, when given, is asked again for instances the destination
    /// takes only in another transfer syntax.
    pub fn new(
        cache: &'a Cache,
        opts: &'a StoreOptions,
        cloud: Option<Box<ClientFor>>,
        reporter: &'a dyn Reporter,
    ) -> Store<'a> {
        // The clock of the timings starts with the work, if not before.
        crate::timings::enabled();
        let dest = &opts.scu.destination;
        Store {
            cache,
            opts,
            cloud,
            reporter,
            dest_key: dest.key(),
            clients: Mutex::new(HashMap::new()),
            summary: Summary {
                destination: dest.to_string(),
                ..Summary::default()
            },
            started: Instant::now(),
            keep: false,
            warm: Mutex::new(None),
        }
    }

    /// Sends on `assoc` (when given) and leaves an association open after
    /// each pass rather than releasing it: [`Store::take_association`]
    /// hands it back. For a caller that sends to the destination again soon.
    pub fn keep_association(&mut self, assoc: Option<StoreAssociation>) {
        self.keep = true;
        *self.warm.get_mut().unwrap() = assoc.filter(StoreAssociation::is_usable);
    }

    /// The association left open (see [`Store::keep_association`]), if any
    /// is still usable.
    pub fn take_association(&mut self) -> Option<StoreAssociation> {
        self.warm.get_mut().unwrap().take().filter(StoreAssociation::is_usable)
    }

    /// Delivers one study. `Err` only for Ctrl-C; everything else is in
    /// the result and the summary.
    pub fn deliver(&mut self, study: &Uid, asked: Asked) -> Result<StudyResult> {
        if interrupt::requested() {
            return Err(Interrupted.into());
        }
        let result = match self.deliver_study(study, asked) {
            Ok(r) => r,
            Err(e) => StudyResult::new(study, asked, StudyState::Error(format!("{e:#}"))),
        };
        crate::timings::print(&self.subject(study));
        let s = &mut self.summary;
        s.skipped += result.skipped;
        s.not_sent += result.not_sent;
        s.studies.push(result.clone());
        s.elapsed = self.started.elapsed();
        if interrupt::requested() {
            return Err(Interrupted.into());
        }
        Ok(result)
    }

    pub fn into_summary(mut self) -> Summary {
        self.summary.elapsed = self.started.elapsed();
        self.summary
    }

    fn deliver_study(&mut self, study: &Uid, asked: Asked) -> Result<StudyResult> {
        let new = |state| StudyResult::new(study, asked, state);
        if self.cache.read_manifest(study)?.is_none() {
            return Ok(new(StudyState::NotInCache));
        }
        if self.summary.stopped.is_some() {
            // Not tried: count what is left to deliver, from the journal as it stands.
            let Some(status) = self.cache.study_status(study)? else {
                return Ok(new(StudyState::NotInCache));
            };
            let counts = status.counts(&self.dest_key);
            let mut r = new(StudyState::NotDelivered);
            r.total = counts.total;
            r.skipped = counts.delivered;
            r.not_sent = r.total - r.skipped;
            if r.not_sent == 0 {
                r.state = StudyState::Delivered;
            }
            return Ok(r);
        }
        if asked == Asked::Found && self.cache.is_busy(study)? {
            return Ok(new(StudyState::Busy));
        }
        let reporter = self.reporter;
        let entry = self.cache.lock_study(study, LockMode::Shared, || {
            reporter.info(&format!(
                "waiting for another retriever process that is changing study {study}"
            ))
        })?;
        let Some(mut status) = entry.status()? else {
            return Ok(new(StudyState::NotInCache));
        };
        let total = status.total();
        let mut result = new(StudyState::NotDelivered);
        result.total = total;
        result.accession = status.manifest.study.accession.clone();
        if !status.is_deliverable() {
            result.state = StudyState::Incomplete {
                have: status.have(),
                total,
            };
            return Ok(result);
        }

        let journal = entry.journal(&self.dest_key)?;
        // Read again now that it is locked: another run may have added to it.
        status.journals.insert(self.dest_key.clone(), journal.read()?);
        let mut items = Vec::new();
        for (sop, series) in &status.manifest.expected {
            if status.is_delivered(&self.dest_key, sop) {
                result.skipped += 1;
                continue;
            }
            let instance = &status.present[sop];
            items.push(Item {
                sop: sop.clone(),
                series: series.clone(),
                path: instance.path.clone(),
                bytes: instance.bytes,
                meta: None,
                attempts: 0,
            });
        }
        if items.is_empty() {
            result.state = StudyState::Delivered;
            return Ok(result);
        }
        items.sort_by(|a, b| (&a.series, &a.path).cmp(&(&b.series, &b.path)));

        let label = match &status.manifest.study.accession {
            Some(acc) if !acc.is_empty() => acc.clone(),
            _ => study.to_string(),
        };
        self.reporter
            .study_started(study, &label, total as u64, result.skipped as u64);

        let shared = Shared {
            study,
            entry: &entry,
            journal: Mutex::new(journal),
            tally: Mutex::new(Tally::default()),
            stop: AtomicBool::new(false),
            stopped: Mutex::new(None),
            stalls: Stalls::default(),
            notes: Mutex::new(BTreeSet::new()),
        };
        self.send_study(&shared, items);

        let mut journal = shared.journal.into_inner().unwrap();
        let sync = journal.sync();
        let tally = shared.tally.into_inner().unwrap();
        let stopped = shared.stopped.into_inner().unwrap();
        drop(entry);

        result.delivered = tally.delivered;
        result.warnings = tally.warnings.len();
        result.failed = tally.failed.len();
        result.not_sent = tally.not_sent;
        let s = &mut self.summary;
        s.delivered += tally.delivered;
        s.bytes += tally.bytes;
        s.warnings.extend(tally.warnings);
        s.failed.extend(tally.failed);
        if let Some(why) = stopped {
            s.stopped.get_or_insert(why);
        }
        sync?;
        let ok = result.sent() + result.skipped == total;
        if ok {
            result.state = StudyState::Delivered;
        }
        let mut words = format!("{} delivered", result.sent() + result.skipped);
        if result.warnings > 0 {
            let _ = write!(words, ", {} with a warning", result.warnings);
        }
        if result.failed > 0 {
            let _ = write!(words, ", {} failed", result.failed);
        }
        if result.not_sent > 0 {
            let _ = write!(words, ", {} not sent", result.not_sent);
        }
        // What failed, and why, is in the closing summary.
        self.reporter.study_finished(study, ok, &words);
        Ok(result)
    }

    /// Reads each instance's SOP class and transfer syntax, proposes what
    /// they need, and sends each group of at most 128 contexts over its own
    /// associations.
    fn send_study(&self, shared: &Shared<'_>, items: Vec<Item>) {
        let mut readable = Vec::with_capacity(items.len());
        for mut item in items {
            match InstanceMeta::read(&item.path) {
                Ok(meta) if meta.sop_instance == item.sop.as_str() => {
                    item.meta = Some(meta);
                    readable.push(item);
                }
                Ok(meta) => {
                    let why = format!(
                        "the cached file `{}` holds instance {} instead",
                        item.path.display(),
                        meta.sop_instance
                    );
                    self.fail(shared, &item, None, why);
                }
                Err(e) => self.fail(shared, &item, None, e.to_string()),
            }
        }
        let proposals = proposals_for(readable.iter().map(|i| {
            let m = i.meta.as_ref().expect("read above");
            (m.sop_class.as_str(), m.transfer_syntax.as_str())
        }));
        let groups = split_proposals(&proposals);
        let mut per_group: Vec<Vec<Item>> = vec![Vec::new(); groups.len()];
        for item in readable {
            let m = item.meta.as_ref().expect("read above");
            let proposes = |g: &Vec<Proposal>, exact: bool| {
                g.iter()
                    .any(|p| p.sop_class == m.sop_class && (!exact || p.transfer_syntaxes.contains(&m.transfer_syntax)))
            };
            let at = groups
                .iter()
                .position(|g| proposes(g, true))
                .or_else(|| groups.iter().position(|g| proposes(g, false)))
                .expect("every instance's SOP class is proposed");
            per_group[at].push(item);
        }
        for (group, items) in groups.iter().zip(per_group) {
            if items.is_empty() {
                continue;
            }
            if shared.stop.load(Ordering::SeqCst) || interrupt::requested() {
                shared.tally.lock().unwrap().not_sent += items.len();
                continue;
            }
            let workers = self.opts.associations.clamp(1, items.len());
            let lane = Lane {
                group,
                queue: Mutex::new(Queue {
                    ready: items.into(),
                    later: Vec::new(),
                    busy: 0,
                }),
                refused: Mutex::new(None),
                live: AtomicUsize::new(0),
            };
            // One association first, so that a destination that is down or
            // refuses us is found out once rather than by every worker at once.
            let first = match self.reuse(&lane) {
                Some(open) => Ok(open),
                None => self.open(shared, &lane),
            };
            let mut first = match first {
                Ok(open) => Some(open),
                Err(e @ ScuError::NoAcceptedContext { .. }) => {
                    *lane.refused.lock().unwrap() = Some(e.to_string());
                    None
                }
                Err(e) => {
                    shared.stop(describe_open_error(&e));
                    None
                }
            };
            let workers = if first.is_some() { workers } else { 1 };
            let lane_ref = &lane;
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    let open = first.take();
                    scope.spawn(move || self.worker(shared, lane_ref, open));
                }
            });
            let queue = lane.queue.lock().unwrap();
            shared.tally.lock().unwrap().not_sent += queue.ready.len() + queue.later.len();
        }
    }

    /// One association's worth of work: takes instances from the lane's
    /// queue until it is empty, (re)opening the association as needed.
    fn worker<'l>(&self, shared: &Shared<'_>, lane: &'l Lane<'_>, first: Option<Open<'l>>) {
        let mut assoc = first;
        while let Some(mut item) = lane.next(shared) {
            if assoc.as_ref().is_some_and(|a| !a.is_usable()) {
                assoc = None;
            }
            if assoc.is_none() {
                if let Some(why) = lane.refused.lock().unwrap().clone() {
                    self.fail(shared, &item, None, why);
                    lane.done();
                    continue;
                }
                match self.open(shared, lane) {
                    Ok(a) => assoc = Some(a),
                    Err(e @ ScuError::NoAcceptedContext { .. }) => {
                        let why = e.to_string();
                        *lane.refused.lock().unwrap() = Some(why.clone());
                        self.fail(shared, &item, None, why);
                        lane.done();
                        continue;
                    }
                    Err(e) if e.is_transient() && lane.live.load(Ordering::SeqCst) > 0 => {
                        // The destination takes fewer associations at once
                        // than we offered (DCMTK storescp without --fork
                        // serves one at a time): the open ones carry on.
                        self.reporter.info(&format!("{e}; going on with fewer associations"));
                        lane.requeue(item, None);
                        break;
                    }
                    Err(e) => {
                        shared.stop(describe_open_error(&e));
                        lane.requeue(item, None);
                        break;
                    }
                }
            }
            let a = assoc.as_mut().expect("opened above").get();
            let sent = self.send_one(shared, a, &item);
            self.settle(shared, lane, &mut item, sent);
        }
        if let Some(a) = assoc
            && a.is_usable()
            && let Some(a) = self.keep(lane, a)
            && let Err(e) = a.release()
        {
            self.reporter.info(&format!("{e}"));
        }
        if let Err(e) = shared.journal.lock().unwrap().sync() {
            shared.stop(format!("{e:#}"));
        }
    }

    /// The association lent to this pass, if it proposed all `lane` needs;
    /// one that did not is released here, before another is opened.
    fn reuse<'l>(&self, lane: &'l Lane<'_>) -> Option<Open<'l>> {
        let warm = self.warm.lock().unwrap().take()?;
        if warm.is_usable() && warm.proposes_all(lane.group) {
            lane.live.fetch_add(1, Ordering::SeqCst);
            return Some(Open {
                assoc: Some(warm),
                live: &lane.live,
            });
        }
        if warm.is_usable()
            && let Err(e) = warm.release()
        {
            self.reporter.info(&format!("{e}"));
        }
        None
    }

    /// Leaves `open` open for the caller when it asked for that (see
    /// [`Store::keep_association`]), nothing else is kept yet, and no other
    /// worker of `lane` holds an instance: that worker may be waiting to
    /// open its own association, which a destination serving one at a time
    /// accepts only once this one is released. Else gives it back to release.
    fn keep<'l>(&self, lane: &Lane<'_>, mut open: Open<'l>) -> Option<Open<'l>> {
        if !self.keep || lane.queue.lock().unwrap().busy > 0 {
            return Some(open);
        }
        let mut warm = self.warm.lock().unwrap();
        if warm.is_some() {
            return Some(open);
        }
        *warm = open.assoc.take();
        None
    }

    /// Opens an association, retrying with backoff while the failure is
    /// transient (busy, not listening, connection lost) and no other
    /// association of the lane is open.
    fn open<'l>(&self, shared: &Shared<'_>, lane: &'l Lane<'_>) -> Result<Open<'l>, ScuError> {
        let mut attempt = 0;
        let stalls = Stalls::default();
        loop {
            let opened = crate::timings::time(&self.subject(shared.study), "association open", || {
                StoreAssociation::open(&self.opts.scu, lane.group)
            });
            match opened {
                Ok(assoc) => {
                    lane.live.fetch_add(1, Ordering::SeqCst);
                    return Ok(Open {
                        assoc: Some(assoc),
                        live: &lane.live,
                    });
                }
                Err(e)
                    if e.is_transient()
                        && stalls.failed(&e, &self.summary.destination).is_none()
                        && attempt < self.opts.retries
                        && lane.live.load(Ordering::SeqCst) == 0
                        && !interrupt::requested() =>
                {
                    let delay = self.opts.delay(attempt);
                    self.reporter
                        .info(&format!("trying again in {}: {e}", crate::format::whole_ms(delay)));
                    // Err only says Ctrl-C cut the wait short; the guard above sees it next time.
                    let _ = interrupt::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends an instance; when the destination takes it only in a syntax we
    /// cannot make here, asks the cloud for it in one it takes and sends that.
    fn send_one(&self, shared: &Shared<'_>, assoc: &mut StoreAssociation, item: &Item) -> Sent {
        let meta = item
            .meta
            .as_ref()
            .expect("send_study read every queued instance's meta");
        let subject = self.subject(shared.study);
        let outcome = match crate::timings::time(&subject, "C-STORE", || assoc.store_instance(&item.path, meta)) {
            Ok(o) => o,
            Err(e) => return Sent::Error(e),
        };
        crate::timings::at(&subject, "first C-STORE answer");
        let StoreOutcome::NeedsOtherSyntax {
            file_syntax,
            accepted,
            why,
        } = outcome
        else {
            return Sent::Outcome(outcome, None);
        };
        let mut reason = format!(
            "the destination takes SOP class {} only in {}, not in {}",
            meta.sop_class,
            accepted.iter().map(|t| ts_name(t)).collect::<Vec<_>>().join(" or "),
            ts_name(&file_syntax),
        );
        if let Some(why) = why {
            let _ = write!(reason, " ({why})");
        }
        let Some(ts) = preferred(&accepted) else {
            return Sent::Failed(reason);
        };
        if self.cloud.is_none() {
            return Sent::Failed(format!(
                "{reason}; no cloud archive is configured (--cloud) to ask for it in {}",
                ts_name(ts)
            ));
        }
        self.reporter.info(&format!(
            "instance {}: asking the cloud for it in {} for {}",
            item.sop,
            ts_name(ts),
            self.summary.destination
        ));
        let staged = match self.retrieve_again(shared, item, ts) {
            Ok(s) => s,
            Err(e) => {
                return Sent::Failed(format!(
                    "{reason}; asking the cloud for it in {} failed: {e:#}",
                    ts_name(ts)
                ));
            }
        };
        let note = format!("sent as {} from the cloud", ts_name(ts));
        match assoc.store_file(staged.admitted.path()) {
            Ok(StoreOutcome::NeedsOtherSyntax { file_syntax, .. }) => Sent::Failed(format!(
                "{reason}; the cloud sent it in {}, which the destination does not take either",
                ts_name(&file_syntax)
            )),
            Ok(o) => Sent::Outcome(o, Some(note)),
            Err(e) => Sent::Error(e),
        }
    }

    /// What the timings of a study's delivery are kept under (see `timings`).
    fn subject(&self, study: &Uid) -> String {
        format!("delivery of study {study} to {}", self.summary.destination)
    }

    /// Retrieves one instance from the cloud in `ts` into the study's tmp
    /// directory, admitted by the intake gate against the same expectation
    /// as a fetch: the study, series and instance asked for, and the
    /// study's patient as its manifest records it.
    fn retrieve_again(&self, shared: &Shared<'_>, item: &Item, ts: &str) -> Result<Refetched> {
        let client = self.client_for(ts)?;
        let (series, sop) = (&item.series, &item.sop);
        let target = Target::Instance(shared.study.clone(), series.clone(), sop.clone());
        let mut staged: Option<Staged> = None;
        let mut not_dicom = None;
        client
            .retrieve(&target, &mut |_headers, body| {
                if staged.is_some() || not_dicom.is_some() {
                    anyhow::bail!("the cloud answered with more than the one instance asked for");
                }
                let mut part = shared.entry.stage()?;
                match copy_part(body, &mut part)? {
                    Some(why) => not_dicom = Some(why),
                    None => {
                        part.finish()?;
                        staged = Some(part);
                    }
                }
                Ok(())
            })
            .map_err(|e| anyhow!(e.error))?;
        if let Some(why) = not_dicom {
            anyhow::bail!("the cloud's answer was refused: {why}");
        }
        let staged = staged.context("the cloud answered with no instance")?;
        let manifest = shared
            .entry
            .manifest()?
            .context("the study's manifest disappeared from the cache")?;
        let series_of = |sop: &Uid| manifest.expected.get(sop).cloned();
        let want = Expectation {
            study: shared.study,
            patient: Patient {
                id: manifest.study.patient_id.as_deref(),
                issuer: manifest.study.issuer_of_patient_id.as_deref(),
            },
            series: Some(series),
            sop: Some(sop),
            listed_series: None,
            series_of: &series_of,
            max_inflated: shared.entry.limits().max_instance_size,
        };
        let admitted = intake::admit(staged.path(), &want)?
            .map_err(|refused| anyhow!("the cloud's answer was refused: {refused}"))?;
        for note in admitted.notes() {
            if shared.notes.lock().unwrap().insert(*note) {
                self.reporter.warn(&note.message(shared.study));
            }
        }
        Ok(Refetched {
            _staged: staged,
            admitted,
        })
    }

    fn client_for(&self, ts: &str) -> Result<Client> {
        let mut clients = self.clients.lock().unwrap();
        if let Some(c) = clients.get(ts) {
            return Ok(c.clone());
        }
        let client = (self.cloud.as_ref().context("no cloud archive is configured")?)(ts)?;
        clients.insert(ts.to_string(), client.clone());
        Ok(client)
    }

    /// Records what became of an attempt, or queues the instance again.
    fn settle(&self, shared: &Shared<'_>, lane: &Lane<'_>, item: &mut Item, sent: Sent) {
        match &sent {
            Sent::Outcome(StoreOutcome::Responded { .. }, _) => shared.stalls.progress(),
            Sent::Error(e) => {
                if let Some(why) = shared.stalls.failed(e, &self.summary.destination) {
                    // Not sent again: another attempt would wait out another timeout.
                    let reason = format!("{e}; given up after {STALLS_TO_GIVE_UP} stalls in a row");
                    self.fail(shared, item, None, reason);
                    lane.done();
                    shared.stop(why);
                    return;
                }
            }
            _ => {}
        }
        let coerced = self.opts.scu.coerce.fingerprint();
        match sent {
            Sent::Outcome(StoreOutcome::Responded { status, .. }, note) => match status.class {
                StatusClass::Success => {
                    let recorded =
                        record_stored(&mut shared.journal.lock().unwrap(), &item.sop, &status, note, coerced);
                    self.recorded(shared, recorded);
                    let mut t = shared.tally.lock().unwrap();
                    t.delivered += 1;
                    t.bytes += item.bytes;
                    drop(t);
                    self.reporter.instance_done(shared.study, item.bytes);
                    lane.done();
                }
                StatusClass::Warning => {
                    let recorded =
                        record_stored(&mut shared.journal.lock().unwrap(), &item.sop, &status, None, coerced);
                    self.recorded(shared, recorded);
                    let mut t = shared.tally.lock().unwrap();
                    t.bytes += item.bytes;
                    t.warnings.push(Problem {
                        study: shared.study.clone(),
                        sop: item.sop.clone(),
                        status: Some(status),
                        reason: String::new(),
                    });
                    drop(t);
                    self.reporter.instance_done(shared.study, item.bytes);
                    lane.done();
                }
                StatusClass::OutOfResources if item.attempts < self.opts.retries => {
                    let delay = self.opts.delay(item.attempts);
                    item.attempts += 1;
                    self.reporter.info(&format!(
                        "instance {}: {status}; trying again in {}",
                        item.sop,
                        crate::format::whole_ms(delay)
                    ));
                    lane.requeue(item.clone(), Some(delay));
                }
                StatusClass::OutOfResources | StatusClass::Failure => {
                    let reason = if status.class == StatusClass::OutOfResources {
                        format!("{status}, still after {} attempts; try again later", item.attempts + 1)
                    } else {
                        status.to_string()
                    };
                    self.fail(shared, item, Some(status), reason);
                    lane.done();
                }
            },
            Sent::Outcome(StoreOutcome::SopClassNotAccepted { sop_class }, _) => {
                let why = format!("the destination does not accept SOP class {sop_class}");
                self.fail(shared, item, None, why);
                lane.done();
            }
            Sent::Outcome(StoreOutcome::NotProposed { sop_class }, _) => {
                let why = format!("SOP class {sop_class} was not proposed on the association (a bug in retriever)");
                self.fail(shared, item, None, why);
                lane.done();
            }
            Sent::Outcome(StoreOutcome::NeedsOtherSyntax { .. }, _) => {
                unreachable!("handled in send_one")
            }
            Sent::Failed(why) => {
                self.fail(shared, item, None, why);
                lane.done();
            }
            Sent::Error(e @ ScuError::File { .. }) => {
                self.fail(shared, item, None, e.to_string());
                lane.done();
            }
            Sent::Error(e) if item.attempts < self.opts.retries && !interrupt::requested() => {
                // No answer: not delivered, whether or not the data set went
                // out. A fresh association sends it again.
                item.attempts += 1;
                self.reporter
                    .info(&format!("instance {}: {e}; sending it again", item.sop));
                let delay = (!e.outcome_unknown()).then(|| self.opts.delay(item.attempts - 1));
                lane.requeue(item.clone(), delay);
            }
            Sent::Error(e) => {
                let why = if interrupt::requested() {
                    e.to_string()
                } else {
                    format!("{e} (after {} attempts)", item.attempts + 1)
                };
                self.fail(shared, item, None, why);
                lane.done();
            }
        }
    }

    /// Records a failed instance in the journal and the tally.
    fn fail(&self, shared: &Shared<'_>, item: &Item, status: Option<StoreStatus>, reason: String) {
        self.record(
            shared,
            &item.sop,
            DeliveryState::Failed,
            status.as_ref(),
            Some(reason.clone()),
        );
        shared.tally.lock().unwrap().failed.push(Problem {
            study: shared.study.clone(),
            sop: item.sop.clone(),
            status,
            reason,
        });
    }

    fn record(
        &self,
        shared: &Shared<'_>,
        sop: &Uid,
        state: DeliveryState,
        status: Option<&StoreStatus>,
        detail: Option<String>,
    ) {
        let recorded = record(&mut shared.journal.lock().unwrap(), sop, state, status, detail);
        self.recorded(shared, recorded);
    }

    fn recorded(&self, shared: &Shared<'_>, recorded: Result<()>) {
        if let Err(e) = recorded {
            // Without its journal the run could report as delivered what a
            // rerun does not know about: stop.
            shared.stop(format!("{e:#}"));
        }
    }
}

/// An instance asked of the cloud again, admitted by the intake gate: the
/// only thing besides a cached file that is handed to C-STORE. The staged
/// file is deleted when this is dropped, after the send.
struct Refetched {
    _staged: Staged,
    admitted: Admitted,
}

/// The syntax to ask the cloud for, of those the destination accepted:
/// uncompressed first (every archive can produce it), explicit VR first.
fn preferred(accepted: &[String]) -> Option<&str> {
    [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
        .into_iter()
        .find(|t| accepted.iter().any(|a| a == t))
        .or_else(|| accepted.first().map(String::as_str))
}

/// A transfer syntax's name and UID, e.g. `RLE Lossless (1.2.840.10008.1.2.5)`.
pub fn ts_name(uid: &str) -> String {
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) => format!("{} ({uid})", ts.name()),
        None => uid.to_string(),
    }
}

/// Why the run stops when no association can be opened. A permanent
/// rejection is a configuration matter (the message names both AE titles).
fn describe_open_error(e: &ScuError) -> String {
    match e {
        ScuError::AssociationRejected { transient: false, .. } => format!("configuration error: {e}"),
        ScuError::AssociationRejected {
            destination,
            transient: true,
            reason,
            ..
        } => format!(
            "{destination} is busy: it rejected the association ({reason}) at every attempt; \
             run `retriever store` again later"
        ),
        _ => e.to_string(),
    }
}

/// One instance to deliver.
#[derive(Debug, Clone)]
struct Item {
    sop: Uid,
    series: Uid,
    path: PathBuf,
    bytes: u64,
    meta: Option<InstanceMeta>,
    /// Attempts made so far beyond the first.
    attempts: u32,
}

/// How one attempt went.
enum Sent {
    Outcome(StoreOutcome, Option<String>),
    Failed(String),
    Error(ScuError),
}

/// What the workers of one study share.
struct Shared<'s> {
    study: &'s Uid,
    entry: &'s StudyEntry,
    journal: Mutex<Journal>,
    tally: Mutex<Tally>,
    stop: AtomicBool,
    stopped: Mutex<Option<String>>,
    stalls: Stalls,
    /// The intake gate's notes already shown for this study (each once).
    notes: Mutex<BTreeSet<Note>>,
}

impl Shared<'_> {
    /// Stops the run: no worker takes another instance.
    fn stop(&self, why: String) {
        self.stopped.lock().unwrap().get_or_insert(why);
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Tally {
    delivered: usize,
    bytes: u64,
    warnings: Vec<Problem>,
    failed: Vec<Problem>,
    not_sent: usize,
}

/// The instances of one group of presentation contexts and the workers
/// (associations) taking from it.
struct Lane<'g> {
    group: &'g [Proposal],
    queue: Mutex<Queue>,
    /// Set when the destination accepted none of the group's contexts.
    refused: Mutex<Option<String>>,
    /// Associations open on this lane right now.
    live: AtomicUsize,
}

/// An open association, counted in its lane's `live` while it exists.
struct Open<'l> {
    assoc: Option<StoreAssociation>,
    live: &'l AtomicUsize,
}

impl Open<'_> {
    fn get(&mut self) -> &mut StoreAssociation {
        self.assoc.as_mut().expect("held until dropped")
    }

    fn is_usable(&self) -> bool {
        self.assoc.as_ref().is_some_and(StoreAssociation::is_usable)
    }

    fn release(mut self) -> Result<(), ScuError> {
        self.assoc.take().map_or(Ok(()), StoreAssociation::release)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Queue {
    ready: VecDeque<Item>,
    /// Instances to try again no sooner than the given time.
    later: Vec<(Instant, Item)>,
    /// Instances taken and not yet settled.
    busy: usize,
}

impl Lane<'_> {
    /// The next instance to send; `None` when there is none left to take
    /// (or the run stops). Waits while retries are pending. Instances other
    /// workers hold are not waited for: a worker that puts one back takes
    /// it again itself, so nobody keeps an association open for nothing.
    fn next(&self, shared: &Shared<'_>) -> Option<Item> {
        loop {
            if shared.stop.load(Ordering::SeqCst) || interrupt::requested() {
                return None;
            }
            let mut q = self.queue.lock().unwrap();
            if let Some(item) = q.ready.pop_front() {
                q.busy += 1;
                return Some(item);
            }
            let now = Instant::now();
            if let Some(pos) = q.later.iter().position(|(at, _)| *at <= now) {
                let (_, item) = q.later.swap_remove(pos);
                q.busy += 1;
                return Some(item);
            }
            if q.later.is_empty() {
                return None;
            }
            drop(q);
            // Err is Ctrl-C, seen at the top of the loop.
            let _ = interrupt::sleep(Duration::from_millis(20));
        }
    }

    fn done(&self) {
        self.queue.lock().unwrap().busy -= 1;
    }

    fn requeue(&self, item: Item, delay: Option<Duration>) {
        let mut q = self.queue.lock().unwrap();
        q.busy -= 1;
        match delay {
            Some(d) => q.later.push((Instant::now() + d, item)),
            None => q.ready.push_front(item),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    fn problem(sop: &str, code: Option<u16>, reason: &str) -> Problem {
        Problem {
            study: uid("1.2.3"),
            sop: uid(sop),
            status: code.map(|c| StoreStatus::new(c, Some("as told".into()))),
            reason: reason.into(),
        }
    }

    #[test]
    fn summary_groups_statuses_and_says_what_failed() {
        let mut s = Summary {
            destination: "PACS@127.0.0.1:104".into(),
            delivered: 7,
            skipped: 2,
            ..Summary::default()
        };
        s.studies.push(StudyResult {
            total: 12,
            ..StudyResult::new(&uid("1.2.3"), Asked::Named, StudyState::NotDelivered)
        });
        s.warnings.push(problem("1.9.1", Some(0xB000), ""));
        s.failed.push(problem("1.9.2", Some(0xC000), ""));
        s.failed.push(problem("1.9.3", Some(0xC000), ""));
        s.failed
            .push(problem("1.9.4", None, "the destination does not accept SOP class 1.2"));
        let text = s.to_string();
        assert!(
            text.contains("status 0xB000 (coercion of data elements): 1 instance, \"as told\" (1.9.1)"),
            "{text}"
        );
        assert!(
            text.contains("status 0xC000 (error: cannot understand): 2 instances"),
            "{text}"
        );
        assert!(text.contains("skipped, already delivered:     2"), "{text}");
        let error = s.error().unwrap();
        assert!(
            error.starts_with("3 instances not delivered to PACS@127.0.0.1:104 (2 × status 0xC000"),
            "{error}"
        );
        assert!(!error.contains('\n'));

        s.failed.clear();
        assert_eq!(s.error(), Some("not everything was delivered".into()));
        s.studies[0].state = StudyState::Delivered;
        assert_eq!(s.error(), None, "warnings count as delivered");
    }

    #[test]
    fn preferred_syntax_is_uncompressed_explicit_first() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(preferred(&v(&[IMPLICIT_VR_LE, EXPLICIT_VR_LE])), Some(EXPLICIT_VR_LE));
        assert_eq!(preferred(&v(&[IMPLICIT_VR_LE])), Some(IMPLICIT_VR_LE));
        assert_eq!(
            preferred(&v(&["1.2.840.10008.1.2.4.90"])),
            Some("1.2.840.10008.1.2.4.90")
        );
        assert_eq!(preferred(&[]), None);
        assert_eq!(
            ts_name(EXPLICIT_VR_LE),
            "Explicit VR Little Endian (1.2.840.10008.1.2.1)"
        );
    }
}
