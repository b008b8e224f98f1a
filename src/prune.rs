//! Expiring the cache: which studies may go, and taking them out without
//! ever touching one that is in use or still needed.
//!
//! The rules:
//!
//! - A study's age counts from the later of its last fetch and its last
//!   delivery (to any destination); it expires after the retention
//!   (`--older-than`, the config file's `retention`, else 4 hours).
//! - A study locked by a running `fetch`, `store` or `watch` is never
//!   removed, whatever its age: it is skipped, and said.
//! - An expired study that is not delivered is kept, and said, unless
//!   `--include-undelivered`. "Delivered" means that the delivery journal of
//!   every configured destination the study is routed to (see
//!   [`crate::routing`]) holds every instance of the study as delivered
//!   (with or without a warning); a study the rules route nowhere has no
//!   destination to wait for, and counts as delivered. With no destination
//!   configured, a study counts as delivered when the journal of any
//!   destination holds all of it: a prune run by a scheduler often has no
//!   `--to`, and a study delivered in full somewhere has done its job. A
//!   study not complete in the cache is never delivered.
//! - Past the hard maximum age (config `max_age`, 7 days by default) a
//!   study goes even if it was never delivered, with a warning: patient
//!   data must not pile up on a disk because a destination is gone.
//! - What crashed runs left behind goes too (see [`crate::cache::Leftover`]).
//!
//! The removal itself, crash-safe and Windows-proof, is the cache's
//! business ([`Cache::remove_study`]); this module decides and reports.

use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::cache::{Cache, Journals, Manifest, StudyStatus, is_in_use};
use crate::dimse::Destination;
use crate::interrupt;
pub use crate::report::{Delivered, HeldBack, JudgedAgainst, Kept, PrunedStudy as Study, Reason, Removed};
use crate::report::{PruneEvent, Reporter};
use crate::routing::Routes;
use crate::uid::Uid;

/// The retention when neither `--older-than` nor the config file says.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(4 * 3600);
/// The hard maximum age when the config file does not say.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to remove.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The retention: a study last fetched or delivered this long ago expires.
    pub older_than: Duration,
    /// Past this age a study goes even if not delivered.
    pub max_age: Duration,
    /// Remove expired studies that are not delivered, too.
    pub include_undelivered: bool,
    /// Delivery is judged against the destinations each study is routed
    /// to; `None` (no destination configured): against any journal.
    pub routes: Option<Routes>,
    /// Say what would be removed; remove nothing.
    pub dry_run: bool,
    /// The time ages are measured at.
    pub now: SystemTime,
}

impl PruneOptions {
    /// The options of a plain run (tests).
    #[cfg(test)]
    pub fn new(older_than: Duration, now: SystemTime) -> PruneOptions {
        PruneOptions {
            older_than,
            max_age: DEFAULT_MAX_AGE,
            include_undelivered: false,
            routes: None,
            dry_run: false,
            now,
        }
    }
}

/// What is to become of a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Younger than the retention.
    Young,
    /// Expired but not delivered: kept.
    KeepUndelivered,
    Remove(Reason),
}

/// The rules, for a study of this age, delivered or not.
pub fn judge(delivered: bool, age: Duration, opts: &PruneOptions) -> Verdict {
    let expired = age >= opts.older_than;
    let past_max = age >= opts.max_age;
    match (delivered, expired, past_max) {
        (_, false, false) => Verdict::Young,
        (true, true, _) => Verdict::Remove(Reason::Expired),
        (_, _, true) => Verdict::Remove(Reason::MaxAge),
        (false, true, false) if opts.include_undelivered => Verdict::Remove(Reason::Undelivered),
        (false, true, false) => Verdict::KeepUndelivered,
    }
}

/// The later of the last fetch (its start, or its completion) and the last
/// delivery to any destination; `None` when no time in them can be read.
pub fn last_activity(manifest: &Manifest, journals: &Journals) -> Option<SystemTime> {
    let fetched = [Some(&manifest.fetched_at), manifest.completed_at.as_ref()];
    let delivered = journals
        .values()
        .flat_map(|records| records.values())
        .filter(|r| r.state.is_delivered())
        .map(|r| Some(&r.at));
    fetched
        .into_iter()
        .chain(delivered)
        .flatten()
        .filter_map(|t| humantime::parse_rfc3339_weak(t).ok())
        .max()
}

/// The run, counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub removed: usize,
    /// Of those, not delivered.
    pub removed_undelivered: usize,
    pub kept_undelivered: usize,
    pub busy: usize,
    pub in_use: usize,
    pub leftovers: usize,
    /// Bytes deleted in all, studies and leftovers.
    pub freed: u64,
    pub failures: Vec<String>,
}

impl Summary {
    /// The final error, when something failed.
    pub fn error(&self) -> Option<String> {
        match self.failures.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            [first, rest @ ..] => Some(format!("{first} (and {} more failures)", rest.len())),
        }
    }
}

/// Expires the cache, study by study; one failure is reported and the run
/// goes on. The caller holds the prune lock ([`Cache::try_lock_prune`]).
pub fn prune(cache: &Cache, opts: &PruneOptions, sink: &dyn Reporter) -> Result<Summary> {
    let mut summary = Summary::default();
    for uid in cache.studies()? {
        // Between studies: each removal is whole, so stopping here leaves
        // the cache consistent, and the next run goes on.
        interrupt::check()?;
        if let Err(e) = prune_study(cache, &uid, opts, sink, &mut summary) {
            fail(&mut summary, sink, e.context(format!("failed to prune study {uid}")));
        }
    }
    for leftover in cache.leftovers(opts.older_than, opts.now)? {
        interrupt::check()?;
        if opts.dry_run {
            sink.prune(&PruneEvent::Leftover(&leftover));
            summary.leftovers += 1;
            summary.freed += leftover.bytes;
            continue;
        }
        match cache.remove_leftover(&leftover) {
            Ok(true) => {
                sink.prune(&PruneEvent::Leftover(&leftover));
                summary.leftovers += 1;
                summary.freed += leftover.bytes;
            }
            // In use after all: next run.
            Ok(false) => {}
            Err(e) if is_in_use(&e) => sink.prune(&PruneEvent::Note(&format!(
                "{} `{}` is open in another program; a later prune deletes it",
                leftover.kind,
                leftover.path.display()
            ))),
            Err(e) => fail(&mut summary, sink, e),
        }
    }
    Ok(summary)
}

fn prune_study(
    cache: &Cache,
    uid: &Uid,
    opts: &PruneOptions,
    sink: &dyn Reporter,
    summary: &mut Summary,
) -> Result<()> {
    // A first look without the lock, so that studies that stay are never
    // locked (a fetch or store of them does not wait for us).
    let Some((study, verdict)) = look(cache, uid, opts)? else {
        return Ok(());
    };
    if verdict == Verdict::Young {
        return Ok(());
    }
    if verdict == Verdict::KeepUndelivered {
        summary.kept_undelivered += 1;
        sink.prune(&PruneEvent::Kept {
            study: &study,
            why: &Kept::NotDelivered,
        });
        return Ok(());
    }
    let Some(entry) = cache.try_lock_study(uid)? else {
        summary.busy += 1;
        sink.prune(&PruneEvent::Kept {
            study: &study,
            why: &Kept::Busy,
        });
        return Ok(());
    };
    // Again under the lock: a fetch or store may have changed the study
    // between the first look and the lock.
    let Some((study, verdict)) = look(cache, uid, opts)? else {
        return Ok(());
    };
    let Verdict::Remove(reason) = verdict else {
        drop(entry);
        if verdict == Verdict::KeepUndelivered {
            summary.kept_undelivered += 1;
            sink.prune(&PruneEvent::Kept {
                study: &study,
                why: &Kept::NotDelivered,
            });
        }
        return Ok(());
    };
    let freed = if opts.dry_run {
        let size = cache.study_size(uid);
        drop(entry);
        size
    } else {
        match cache.remove_study(entry) {
            Ok(removal) => {
                if let Some(left) = &removal.left {
                    let message = format!(
                        "study {uid} is out of the cache, but `{}` could not be deleted yet ({}); \
                         a later prune deletes it",
                        left.path.display(),
                        left.error
                    );
                    if crate::cache::io_error_in_use(&left.error) {
                        sink.prune(&PruneEvent::Note(&message));
                    } else {
                        summary.failures.push(message.clone());
                        sink.prune(&PruneEvent::Failed(&anyhow::anyhow!(message)));
                    }
                }
                removal.freed
            }
            Err(e) if is_in_use(&e) => {
                summary.in_use += 1;
                sink.prune(&PruneEvent::Kept {
                    study: &study,
                    why: &Kept::InUse(e),
                });
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    };
    summary.removed += 1;
    if !study.delivered.is_done() {
        summary.removed_undelivered += 1;
    }
    summary.freed += freed;
    sink.prune(&PruneEvent::Removed(&Removed { study, reason, freed }));
    Ok(())
}

fn fail(summary: &mut Summary, sink: &dyn Reporter, e: anyhow::Error) {
    sink.prune(&PruneEvent::Failed(&e));
    summary.failures.push(format!("{e:#}"));
}

/// Reads what decides a study's fate; `None` if it is gone.
fn look(cache: &Cache, uid: &Uid, opts: &PruneOptions) -> Result<Option<(Study, Verdict)>> {
    let Some(status) = cache.study_status(uid)? else {
        return Ok(None);
    };
    let delivered = delivered(&status, opts.routes.as_ref());
    let manifest = &status.manifest;
    // A manifest whose times cannot be read is as old as the file.
    let last = last_activity(manifest, &status.journals).or_else(|| cache.manifest_modified(uid));
    let age = last
        .and_then(|t| opts.now.duration_since(t).ok())
        .unwrap_or(Duration::ZERO);
    let verdict = judge(delivered.is_done(), age, opts);
    let study = Study {
        uid: uid.clone(),
        accession: manifest.study.accession.clone().filter(|a| !a.is_empty()),
        age,
        delivered,
    };
    Ok(Some((study, verdict)))
}

/// What delivery is judged against: a single `--to` is shown as before
/// routes existed; the config file's destinations by the rules of each.
pub fn judged_against(routes: Option<&Routes>) -> JudgedAgainst {
    match routes.map(|r| (r.is_configured(), r.iter().collect::<Vec<_>>())) {
        None => JudgedAgainst::Any,
        Some((false, one)) if one.len() == 1 => JudgedAgainst::One(one[0].to_string()),
        Some(_) => JudgedAgainst::Routed,
    }
}

/// Whether the study has reached every destination it is routed to (with
/// no routes, any destination), and if not, which hold it back.
pub fn delivered(status: &StudyStatus, routes: Option<&Routes>) -> Delivered {
    let Some(routes) = routes else {
        return match status.delivered_to(None) {
            Some(key) => Delivered::Yes(vec![Destination::label_of_key(&key)]),
            None => Delivered::No(Vec::new()),
        };
    };
    let manifest = &status.manifest;
    let decisions = routes.for_study(&manifest.study, &manifest.roles);
    let routed: Vec<_> = decisions.iter().filter(|(_, d)| d.routed).map(|(r, _)| *r).collect();
    // A fetch that never finished may not have listed every instance: no
    // journal can hold all of the study.
    let complete = manifest.is_complete();
    if routed.is_empty() {
        if complete {
            let why = decisions
                .iter()
                .map(|(r, d)| format!("{}: {}", r.name, d.why))
                .collect();
            return Delivered::RoutedNowhere(why);
        }
        return Delivered::No(Vec::new());
    }
    let held_back: Vec<HeldBack> = routed
        .iter()
        .map(|route| (route, status.counts(&route.key())))
        .filter(|(_, counts)| !complete || !counts.is_all_delivered())
        .map(|(route, counts)| HeldBack {
            name: route.name.clone(),
            to: route.store.scu.destination.to_string(),
            label: route.to_string(),
            delivered: counts.delivered,
            total: counts.total,
        })
        .collect();
    if held_back.is_empty() {
        Delivered::Yes(routed.iter().map(ToString::to_string).collect())
    } else {
        Delivered::No(held_back)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use std::sync::Mutex;

    use crate::cache::{Delivery, DeliveryState, LockMode, StudyInfo};
    use crate::delivery::StoreOptions;
    use crate::dimse::ScuOptions;
    use crate::routing::Route;

    const HOUR: Duration = Duration::from_secs(3600);

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    fn at(t: SystemTime) -> String {
        humantime::format_rfc3339_seconds(t).to_string()
    }

    fn pacs() -> Destination {
        Destination::parse("PACS@10.0.0.5:104").unwrap()
    }

    fn other() -> Destination {
        Destination::parse("VIEWER@10.0.0.6:11112").unwrap()
    }

    fn store_to(destination: Destination) -> StoreOptions {
        StoreOptions::new(ScuOptions::new(destination))
    }

    /// A destination called `name`, taking every study.
    fn named(name: &str, destination: Destination) -> Route {
        let mut route = Route::single(store_to(destination));
        route.name = name.to_string();
        route
    }

    /// A complete study of two instances in `cache`, fetched at `fetched`.
    fn add_study(cache: &Cache, study: &str, fetched: SystemTime) {
        let entry = cache.lock_study(&uid(study), LockMode::Exclusive, || {}).unwrap();
        let sops = [format!("{study}.1"), format!("{study}.2")];
        entry
            .write_manifest(&Manifest {
                version: Manifest::VERSION,
                study: StudyInfo {
                    accession: Some(format!("ACC{}", study.replace('.', ""))),
                    ..StudyInfo::new(uid(study))
                },
                roles: vec![],
                fetched_at: at(fetched),
                completed_at: Some(at(fetched)),
                expected: sops.iter().map(|s| (uid(s), uid(&format!("{study}.9")))).collect(),
            })
            .unwrap();
        for sop in &sops {
            entry
                .put_test_instance(&uid(&format!("{study}.9")), &uid(sop), 1)
                .unwrap();
        }
    }

    /// Records every instance of `study` as `state` for `dest` at `when`.
    fn deliver(cache: &Cache, study: &str, dest: &Destination, state: DeliveryState, when: SystemTime) {
        let entry = cache.lock_study(&uid(study), LockMode::Shared, || {}).unwrap();
        let mut journal = entry.journal(&dest.key()).unwrap();
        for sop in [format!("{study}.1"), format!("{study}.2")] {
            journal
                .record(&Delivery {
                    sop: uid(&sop),
                    state,
                    status: Some(0),
                    detail: None,
                    at: at(when),
                    coerced: None,
                })
                .unwrap();
        }
    }

    #[derive(Default)]
    struct Collected {
        removed: Vec<(String, Reason)>,
        kept: Vec<(String, &'static str)>,
        leftovers: usize,
        failed: Vec<String>,
    }

    /// Collects what prune reports.
    #[derive(Default)]
    struct Collect(Mutex<Collected>);

    impl Reporter for Collect {
        fn prune(&self, event: &PruneEvent) {
            let mut seen = self.0.lock().unwrap();
            match event {
                PruneEvent::Removed(removed) => seen.removed.push((removed.study.uid.to_string(), removed.reason)),
                PruneEvent::Kept { study, why } => {
                    let why = match why {
                        Kept::NotDelivered => "not delivered",
                        Kept::Busy => "busy",
                        Kept::InUse(_) => "in use",
                    };
                    seen.kept.push((study.uid.to_string(), why));
                }
                PruneEvent::Leftover(_) => seen.leftovers += 1,
                PruneEvent::Failed(error) => seen.failed.push(format!("{error:#}")),
                PruneEvent::Note(_) => {}
            }
        }
    }

    /// Runs prune, and what it reported.
    fn collect(cache: &Cache, opts: &PruneOptions) -> (Collected, Summary) {
        let seen = Collect::default();
        let summary = prune(cache, opts, &seen).unwrap();
        (seen.0.into_inner().unwrap(), summary)
    }

    #[test]
    fn the_rules() {
        let mut opts = PruneOptions::new(4 * HOUR, SystemTime::now());
        assert_eq!(judge(true, 3 * HOUR, &opts), Verdict::Young);
        assert_eq!(judge(false, 3 * HOUR, &opts), Verdict::Young);
        assert_eq!(judge(true, 4 * HOUR, &opts), Verdict::Remove(Reason::Expired));
        assert_eq!(judge(false, 5 * HOUR, &opts), Verdict::KeepUndelivered);
        assert_eq!(judge(false, 7 * 24 * HOUR, &opts), Verdict::Remove(Reason::MaxAge));
        opts.include_undelivered = true;
        assert_eq!(judge(false, 5 * HOUR, &opts), Verdict::Remove(Reason::Undelivered));
        assert_eq!(judge(false, 3 * HOUR, &opts), Verdict::Young);
        // A maximum age below the retention wins.
        opts.max_age = HOUR;
        opts.include_undelivered = false;
        assert_eq!(judge(false, 2 * HOUR, &opts), Verdict::Remove(Reason::MaxAge));
        assert_eq!(judge(true, 2 * HOUR, &opts), Verdict::Remove(Reason::MaxAge));
    }

    #[test]
    fn delivered_means_every_instance_and_the_last_activity_counts() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let now = SystemTime::now();
        add_study(&cache, "1.1", now - 10 * HOUR);
        deliver(&cache, "1.1", &pacs(), DeliveryState::Failed, now - 9 * HOUR);
        let status = |study: &str| cache.study_status(&uid(study)).unwrap().unwrap();
        let s = status("1.1");
        let manifest = &s.manifest;
        assert_eq!(s.delivered_to(None), None);
        // A failed attempt is no delivery, and no activity either.
        let last = last_activity(manifest, &s.journals).unwrap();
        assert_eq!(at(last), at(now - 10 * HOUR));

        deliver(&cache, "1.1", &other(), DeliveryState::Warning, now - 2 * HOUR);
        let s = status("1.1");
        assert_eq!(s.delivered_to(None), Some(other().key()));
        assert_eq!(s.delivered_to(Some(&pacs().key())), None);
        assert_eq!(s.delivered_to(Some(&other().key())), Some(other().key()));
        assert_eq!(at(last_activity(&s.manifest, &s.journals).unwrap()), at(now - 2 * HOUR));

        // Not complete: never delivered.
        let mut partial = s.clone();
        partial.manifest.completed_at = None;
        assert_eq!(partial.delivered_to(None), None);
        // An instance more than the journal knows: not delivered.
        let mut more = s.clone();
        more.manifest.expected.insert(uid("1.1.3"), uid("1.1.9"));
        assert_eq!(more.delivered_to(None), None);
        assert_eq!(Destination::label_of_key(&pacs().key()), "PACS@10.0.0.5:104");
    }

    #[test]
    fn prune_removes_what_expired_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let now = SystemTime::now();
        // Delivered to PACS long ago: goes.
        add_study(&cache, "1.1", now - 10 * HOUR);
        deliver(&cache, "1.1", &pacs(), DeliveryState::Delivered, now - 9 * HOUR);
        // Fetched long ago but delivered an hour ago: young.
        add_study(&cache, "1.2", now - 10 * HOUR);
        deliver(&cache, "1.2", &pacs(), DeliveryState::Delivered, now - HOUR);
        // Never delivered: kept.
        add_study(&cache, "1.3", now - 10 * HOUR);
        // Delivered, but to another destination only.
        add_study(&cache, "1.4", now - 10 * HOUR);
        deliver(&cache, "1.4", &other(), DeliveryState::Delivered, now - 9 * HOUR);
        // Never delivered and older than the maximum age: goes.
        add_study(&cache, "1.5", now - 8 * 24 * HOUR);
        // Delivered and expired, but in use: skipped.
        add_study(&cache, "1.6", now - 10 * HOUR);
        deliver(&cache, "1.6", &pacs(), DeliveryState::Delivered, now - 9 * HOUR);
        // A fetch that was killed: expired, never complete.
        add_study(&cache, "1.7", now - 10 * HOUR);
        {
            let entry = cache.lock_study(&uid("1.7"), LockMode::Exclusive, || {}).unwrap();
            let mut m = entry.manifest().unwrap().unwrap();
            m.completed_at = None;
            entry.write_manifest(&m).unwrap();
        }
        deliver(&cache, "1.7", &pacs(), DeliveryState::Delivered, now - 9 * HOUR);

        let mut opts = PruneOptions::new(4 * HOUR, now);
        opts.routes = Some(Routes::new(vec![Route::single(store_to(pacs()))]));
        let held = cache.lock_study(&uid("1.6"), LockMode::Shared, || {}).unwrap();

        // A dry run says the same and removes nothing.
        opts.dry_run = true;
        let (dry, dry_summary) = collect(&cache, &opts);
        assert_eq!(cache.studies().unwrap().len(), 7);

        opts.dry_run = false;
        let (seen, summary) = collect(&cache, &opts);
        assert_eq!(
            seen.removed,
            vec![("1.1".into(), Reason::Expired), ("1.5".into(), Reason::MaxAge)]
        );
        assert_eq!(
            seen.kept,
            vec![
                ("1.3".into(), "not delivered"),
                ("1.4".into(), "not delivered"),
                ("1.6".into(), "busy"),
                ("1.7".into(), "not delivered"),
            ]
        );
        assert!(seen.failed.is_empty(), "{:?}", seen.failed);
        assert_eq!(
            cache.studies().unwrap(),
            ["1.2", "1.3", "1.4", "1.6", "1.7"].map(uid).to_vec()
        );
        assert_eq!((summary.removed, summary.removed_undelivered), (2, 1));
        assert!(summary.freed >= 2000, "{summary:?}");
        assert_eq!(summary.error(), None);
        assert_eq!((dry.removed, dry.kept), (seen.removed, seen.kept));
        assert_eq!(
            (dry_summary.removed, dry_summary.freed),
            (summary.removed, summary.freed)
        );

        // Released, the study in use goes on the next run; with
        // --include-undelivered the undelivered ones go too; with no
        // destination configured, the one delivered elsewhere counts as delivered.
        drop(held);
        opts.routes = None;
        let (seen, _) = collect(&cache, &opts);
        assert_eq!(
            seen.removed,
            vec![("1.4".into(), Reason::Expired), ("1.6".into(), Reason::Expired)]
        );
        opts.include_undelivered = true;
        let (seen, _) = collect(&cache, &opts);
        assert_eq!(
            seen.removed,
            vec![("1.3".into(), Reason::Undelivered), ("1.7".into(), Reason::Undelivered)]
        );
        assert_eq!(cache.studies().unwrap(), vec![uid("1.2")]);
        // Nothing is left behind: no trash, no lock files of removed studies.
        assert_eq!(std::fs::read_dir(dir.path().join("trash")).unwrap().count(), 0);
        let locks: Vec<String> = std::fs::read_dir(dir.path().join("locks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(locks, vec!["1.2.lock".to_string()]);
    }

    #[test]
    fn a_study_routed_to_two_destinations_stays_until_both_hold_all_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let now = SystemTime::now();
        add_study(&cache, "1.1", now - 10 * HOUR);
        deliver(&cache, "1.1", &pacs(), DeliveryState::Delivered, now - 9 * HOUR);
        let routes = Routes::new(vec![named("pacs", pacs()), named("ws", other())]);
        let status = |study: &str| cache.study_status(&uid(study)).unwrap().unwrap();

        // Routed to both, delivered to one: held back by the other.
        let ws = HeldBack {
            name: "ws".into(),
            to: "VIEWER@10.0.0.6:11112".into(),
            label: "ws (VIEWER@10.0.0.6:11112)".into(),
            delivered: 0,
            total: 2,
        };
        assert_eq!(
            delivered(&status("1.1"), Some(&routes)),
            Delivered::No(vec![ws.clone()])
        );
        // With no destination configured, the one journal holding it all is enough.
        assert_eq!(
            delivered(&status("1.1"), None),
            Delivered::Yes(vec!["PACS@10.0.0.5:104".into()])
        );
        let mut opts = PruneOptions::new(4 * HOUR, now);
        opts.routes = Some(routes.clone());
        let (seen, summary) = collect(&cache, &opts);
        assert_eq!(seen.kept, vec![("1.1".into(), "not delivered")]);
        assert_eq!((summary.removed, summary.kept_undelivered), (0, 1));

        // Half of it at the second destination: still held back, and said how far it got.
        {
            let entry = cache.lock_study(&uid("1.1"), LockMode::Shared, || {}).unwrap();
            let mut journal = entry.journal(&other().key()).unwrap();
            journal
                .record(&Delivery {
                    sop: uid("1.1.1"),
                    state: DeliveryState::Delivered,
                    status: Some(0),
                    detail: None,
                    at: at(now - 9 * HOUR),
                    coerced: None,
                })
                .unwrap();
        }
        let half = HeldBack { delivered: 1, ..ws };
        assert_eq!(delivered(&status("1.1"), Some(&routes)), Delivered::No(vec![half]));

        // Delivered to both: it goes.
        deliver(&cache, "1.1", &other(), DeliveryState::Warning, now - 9 * HOUR);
        assert_eq!(
            delivered(&status("1.1"), Some(&routes)),
            Delivered::Yes(vec![
                "pacs (PACS@10.0.0.5:104)".into(),
                "ws (VIEWER@10.0.0.6:11112)".into()
            ])
        );
        let (seen, summary) = collect(&cache, &opts);
        assert_eq!(seen.removed, vec![("1.1".into(), Reason::Expired)]);
        assert_eq!((summary.removed, summary.removed_undelivered), (1, 0));
        assert!(cache.studies().unwrap().is_empty());
    }

    #[test]
    fn a_study_routed_to_one_destination_goes_once_that_one_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let now = SystemTime::now();
        add_study(&cache, "1.1", now - 10 * HOUR);
        {
            let entry = cache.lock_study(&uid("1.1"), LockMode::Exclusive, || {}).unwrap();
            let mut m = entry.manifest().unwrap().unwrap();
            m.study.modalities = vec!["CT".into()];
            entry.write_manifest(&m).unwrap();
        }
        deliver(&cache, "1.1", &pacs(), DeliveryState::Delivered, now - 9 * HOUR);
        let mut ws = named("ws", other());
        ws.when =
            crate::routing::When::parse(&serde_json::json!({ "modality": "MR" }), "destinations[ws].when").unwrap();
        let routes = Routes::configured(vec![named("pacs", pacs()), ws]);
        let status = cache.study_status(&uid("1.1")).unwrap().unwrap();
        assert_eq!(
            delivered(&status, Some(&routes)),
            Delivered::Yes(vec!["pacs (PACS@10.0.0.5:104)".into()])
        );
        let mut opts = PruneOptions::new(4 * HOUR, now);
        opts.routes = Some(routes);
        let (seen, _) = collect(&cache, &opts);
        assert_eq!(seen.removed, vec![("1.1".into(), Reason::Expired)]);
    }

    #[test]
    fn a_study_routed_nowhere_waits_for_no_destination_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let now = SystemTime::now();
        add_study(&cache, "1.1", now - 10 * HOUR);
        let nowhere = Routes::new(Vec::new());
        let status = cache.study_status(&uid("1.1")).unwrap().unwrap();
        assert!(matches!(
            delivered(&status, Some(&nowhere)),
            Delivered::RoutedNowhere(_)
        ));
        // A fetch that never finished is never delivered, routed or not.
        let mut partial = status.clone();
        partial.manifest.completed_at = None;
        assert_eq!(delivered(&partial, Some(&nowhere)), Delivered::No(Vec::new()));
        let mut opts = PruneOptions::new(4 * HOUR, now);
        opts.routes = Some(nowhere);
        let (seen, _) = collect(&cache, &opts);
        assert_eq!(seen.removed, vec![("1.1".into(), Reason::Expired)]);
    }

    #[test]
    fn leftovers_of_a_killed_prune_go_on_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let now = SystemTime::now();
        add_study(&cache, "1.1", now);
        std::fs::create_dir_all(dir.path().join("trash/1.2.1.5.removed/series/1.2.9")).unwrap();
        std::fs::write(
            dir.path().join("trash/1.2.1.5.removed/series/1.2.9/1.2.1.dcm"),
            [0u8; 100],
        )
        .unwrap();
        std::fs::write(dir.path().join("locks/1.2.lock"), b"").unwrap();

        let mut opts = PruneOptions::new(HOUR, now);
        opts.dry_run = true;
        let (seen, summary) = collect(&cache, &opts);
        assert_eq!((seen.leftovers, summary.freed), (2, 100));
        assert!(dir.path().join("trash/1.2.1.5.removed").exists());

        opts.dry_run = false;
        let (seen, summary) = collect(&cache, &opts);
        assert_eq!((seen.leftovers, summary.freed, summary.removed), (2, 100, 0));
        assert!(!dir.path().join("trash/1.2.1.5.removed").exists());
        assert!(!dir.path().join("locks/1.2.lock").exists());
        assert_eq!(cache.studies().unwrap(), vec![uid("1.1")]);
    }
}
