//! `fetch`: find studies in the cloud, choose their priors, and pull every
//! instance into the cache, resuming with whatever is already complete.
//!
//! The work is done in three steps so that all downloads share one pool of
//! connections: plan (QIDO: which studies, which instances), download (all
//! missing instances of all studies, in parallel), and settle (which studies
//! are now complete). Downloads that fail transiently are retried in further
//! rounds that ask only for what is still missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rayon::prelude::*;

use crate::cache::{
    Cache, Commit, LockMode, Manifest, Role, Staged, StudyEntry, StudyInfo, TooLarge, now_rfc3339, show_size,
};
use crate::dicomweb::{Client, DicomJson, PartHeaders, Target};
use crate::intake::{self, Expectation, Note, Patient};
use crate::priors::{self, Decision, Rules};
use crate::report::Reporter;
use crate::uid::Uid;

/// Set by the Ctrl-C handler: stop taking new work.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The run was stopped by Ctrl-C; `main` turns this into exit status 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; what was complete is kept in the cache, run the same command again to resume")
    }
}

impl std::error::Error for Interrupted {}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Interrupted.into())
    } else {
        Ok(())
    }
}

/// The study attributes asked of every study-level search (fetch's and watch's).
pub const STUDY_FIELDS: [&str; 9] = [
    "00080020", // StudyDate
    "00080050", // AccessionNumber
    "00080061", // ModalitiesInStudy
    "00081030", // StudyDescription
    "00100010", // PatientName
    "00100020", // PatientID
    "00100021", // IssuerOfPatientID
    "0020000D", // StudyInstanceUID
    "00201208", // NumberOfStudyRelatedInstances
];

/// A study the run will fetch, and why.
#[derive(Debug, Clone)]
pub struct Planned {
    pub info: StudyInfo,
    pub uid: Uid,
    pub role: Role,
}

/// The verdicts on the priors of one current study (for `--dry-run`).
#[derive(Debug, Clone)]
pub struct PriorReport {
    pub current: StudyInfo,
    pub decisions: Vec<Decision>,
}

/// What `plan` found: the studies to fetch in order (each current study
/// followed by its priors, no study twice), and what could not be resolved.
#[derive(Debug, Default)]
pub struct Plan {
    pub studies: Vec<Planned>,
    pub priors: Vec<PriorReport>,
    pub failures: Vec<(String, anyhow::Error)>,
}

fn study_info(json: &DicomJson) -> Result<(Uid, StudyInfo)> {
    let uid = json.uid(0x0020_000D)?;
    let info = StudyInfo {
        study_uid: uid.to_string(),
        accession: json.string(0x0008_0050),
        patient_id: json.string(0x0010_0020),
        issuer_of_patient_id: json.string(0x0010_0021),
        patient_name: json.string(0x0010_0010),
        study_date: json.string(0x0008_0020),
        study_description: json.string(0x0008_1030),
        modalities: json.strings(0x0008_0061),
    };
    Ok((uid, info))
}

fn search_studies(client: &Client, key: &str, value: &str) -> Result<Vec<(Uid, StudyInfo)>> {
    let mut params: Vec<(&str, &str)> = vec![(key, value)];
    params.extend(STUDY_FIELDS.iter().map(|f| ("includefield", *f)));
    client
        .search_studies(&params)?
        .iter()
        .map(study_info)
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("the cloud's answer to the search {key}={value} is not usable"))
}

/// Finds the studies an identifier names: a Study Instance UID, or else an
/// accession number.
fn resolve(client: &Client, id: &str) -> Result<Vec<(Uid, StudyInfo)>> {
    if id.contains('.') && Uid::parse(id).is_ok() {
        let found = search_studies(client, "StudyInstanceUID", id)?;
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let found = search_studies(client, "AccessionNumber", id)?;
    if found.is_empty() {
        bail!(
            "no study with accession number or Study Instance UID `{id}` in the cloud at `{}`; check the number",
            client.base()
        );
    }
    Ok(found)
}

/// Resolves every identifier and chooses the priors of each study found.
pub fn plan(client: &Client, ids: &[String], rules: &Rules, reporter: &dyn Reporter) -> Plan {
    let mut plan = Plan::default();
    let mut seen = BTreeSet::new();
    let today = priors::today();
    for id in ids {
        let found = match resolve(client, id) {
            Ok(found) => found,
            Err(e) => {
                plan.failures.push((id.clone(), e));
                continue;
            }
        };
        if found.len() > 1 {
            let patients: BTreeSet<_> = found.iter().filter_map(|(_, s)| s.patient_id.clone()).collect();
            reporter.warn(&format!(
                "`{id}` matches {} studies (patients: {}); fetching all of them",
                found.len(),
                patients.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        for (uid, info) in found {
            if seen.insert(uid.clone()) {
                plan.studies.push(Planned {
                    info: info.clone(),
                    uid: uid.clone(),
                    role: Role::Current {
                        requested_as: id.clone(),
                    },
                });
            }
            if rules.count == 0 {
                continue;
            }
            let Some(patient) = info.patient_id.clone() else {
                reporter.warn(&format!(
                    "study `{uid}` has no Patient ID, so no priors can be found for it"
                ));
                continue;
            };
            let candidates = match search_studies(client, "PatientID", &patient) {
                Ok(c) => c,
                Err(e) => {
                    plan.failures.push((format!("priors of {id}"), e));
                    continue;
                }
            };
            let infos: Vec<StudyInfo> = candidates.into_iter().map(|(_, s)| s).collect();
            let decisions = priors::select(&info, &infos, rules, &today);
            for d in decisions.iter().filter(|d| d.chosen) {
                let prior_uid = Uid::parse(&d.study.study_uid).expect("checked by study_info");
                if seen.insert(prior_uid.clone()) {
                    plan.studies.push(Planned {
                        info: d.study.clone(),
                        uid: prior_uid,
                        role: Role::Prior { of: uid.to_string() },
                    });
                }
            }
            plan.priors.push(PriorReport {
                current: info,
                decisions,
            });
        }
    }
    plan
}

/// A study that is now complete in the cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub planned: Planned,
    pub instances: usize,
    pub bytes: u64,
    pub path: std::path::PathBuf,
    /// Instances that were already in the cache before this run.
    pub reused: usize,
}

/// How the whole run went.
#[derive(Debug, Default)]
pub struct Outcome {
    pub fetched: Vec<Fetched>,
    pub failed: Vec<(Planned, anyhow::Error)>,
}

/// One study being fetched.
struct Work {
    planned: Planned,
    entry: StudyEntry,
    /// The study's series, as the cloud listed them.
    series: Vec<Uid>,
    /// The instances the cloud lists (SOP Instance UID → Series Instance
    /// UID), once known. A study with nothing in the cache yet is listed
    /// while its series download, so the (on some servers slow) listing
    /// costs no time of its own.
    expected: OnceLock<BTreeMap<String, String>>,
    reused: usize,
    rejections: Mutex<Vec<String>>,
    /// The gate's notes already shown for this study (each once).
    notes: Mutex<BTreeSet<Note>>,
    error: Mutex<Option<anyhow::Error>>,
    transient_error: Mutex<Option<anyhow::Error>>,
}

/// Fetches every planned study into the cache. Calls `on_complete` for
/// each study as soon as it is complete (so callers can print it at once).
pub fn fetch(
    client: &Client,
    cache: &Cache,
    studies: Vec<Planned>,
    jobs: usize,
    retries: u32,
    reporter: &dyn Reporter,
    on_complete: &mut dyn FnMut(&Fetched),
) -> Result<Outcome> {
    let pool = download_pool(jobs)?;
    fetch_in(&pool, client, cache, studies, retries, reporter, on_complete)
}

/// The threads [`fetch`] downloads with: `jobs` requests at once.
pub fn download_pool(jobs: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .thread_name(|i| format!("fetch-{i}"))
        .build()
        .context("failed to start the download threads")
}

/// [`fetch`] with the caller's download threads, so that several fetches
/// running at once (`watch`) share one limit on parallel requests.
pub fn fetch_in(
    pool: &rayon::ThreadPool,
    client: &Client,
    cache: &Cache,
    studies: Vec<Planned>,
    retries: u32,
    reporter: &dyn Reporter,
    on_complete: &mut dyn FnMut(&Fetched),
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut work = Vec::new();
    for planned in studies {
        check_interrupted()?;
        match prepare(client, cache, planned.clone(), reporter) {
            Ok(w) => work.push(w),
            Err(e) if e.is::<Interrupted>() => return Err(e),
            Err(e) => {
                reporter.study_finished(&planned.uid, false, "failed");
                outcome.failed.push((planned, e));
            }
        }
    }
    let mut round = 0u32;
    let mut quiet_rounds = 0u32;
    while !work.is_empty() {
        let tasks: Vec<(usize, Task)> = work.iter().enumerate().flat_map(|(i, w)| tasks_for(i, w)).collect();
        let before: usize = work
            .iter()
            .map(|w| w.entry.present().map(|p| p.len()).unwrap_or(0))
            .sum();
        pool.install(|| {
            tasks.par_iter().for_each(|(i, task)| {
                if INTERRUPTED.load(Ordering::SeqCst) {
                    return;
                }
                match task {
                    Task::List => list(client, &work[*i], reporter),
                    Task::Get(target) => download(client, &work[*i], target, reporter),
                }
            })
        });
        check_interrupted()?;
        let after: usize = work
            .iter()
            .map(|w| w.entry.present().map(|p| p.len()).unwrap_or(0))
            .sum();

        // Settle: complete studies are done, studies with a permanent error
        // have failed, the rest go to another round.
        let mut next = Vec::new();
        for w in work {
            match settle(&w) {
                Ok(Some(fetched)) => {
                    let summary = format!("{} instances", fetched.instances);
                    reporter.study_finished(&w.planned.uid, true, &summary);
                    on_complete(&fetched);
                    outcome.fetched.push(fetched);
                }
                Ok(None) if w.error.lock().unwrap().is_none() && w.rejections.lock().unwrap().is_empty() => {
                    next.push(w)
                }
                Ok(None) => {
                    let error = study_error(&w);
                    reporter.study_finished(&w.planned.uid, false, "failed");
                    outcome.failed.push((w.planned, error));
                }
                Err(e) => {
                    reporter.study_finished(&w.planned.uid, false, "failed");
                    outcome.failed.push((w.planned, e));
                }
            }
        }
        work = next;
        if work.is_empty() {
            break;
        }
        if after > before {
            quiet_rounds = 0;
        } else {
            quiet_rounds += 1;
        }
        round += 1;
        if quiet_rounds > retries {
            for w in work.drain(..) {
                let error = study_error(&w);
                reporter.study_finished(&w.planned.uid, false, "failed");
                outcome.failed.push((w.planned, error));
            }
            break;
        }
        let delay = Duration::from_millis(500u64.saturating_mul(1 << quiet_rounds.min(6)));
        for w in &work {
            if let Some(e) = w.transient_error.lock().unwrap().take() {
                reporter.info(&format!(
                    "study {}: {e:#}; resuming with what is missing (round {})",
                    w.planned.uid,
                    round + 1
                ));
            }
        }
        sleep_unless_interrupted(delay)?;
    }
    Ok(outcome)
}

/// Sleeps for `delay`, or less if Ctrl-C comes first (then `Interrupted`).
pub(crate) fn sleep_unless_interrupted(delay: Duration) -> Result<()> {
    let until = std::time::Instant::now() + delay;
    loop {
        check_interrupted()?;
        let now = std::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// True when `e` is, or was caused by, Ctrl-C.
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Interrupted>())
}

/// The error to report for a study that did not complete.
fn study_error(w: &Work) -> anyhow::Error {
    if let Some(e) = w.error.lock().unwrap().take() {
        return e;
    }
    let rejections = w.rejections.lock().unwrap();
    if !rejections.is_empty() {
        let more = if rejections.len() > 1 {
            format!(" (and {} more)", rejections.len() - 1)
        } else {
            String::new()
        };
        return anyhow!("{}{more}", rejections[0]);
    }
    let missing = missing_count(w);
    let last = w.transient_error.lock().unwrap().take();
    match last {
        Some(e) => e.context(format!("{missing} instances are still missing")),
        None => anyhow!(
            "{missing} instances the cloud listed never arrived; the study may be changing in the cloud, try again later"
        ),
    }
}

fn missing_count(w: &Work) -> usize {
    let present = w.entry.present().unwrap_or_default();
    match w.expected.get() {
        Some(expected) => expected.keys().filter(|sop| !present.contains_key(*sop)).count(),
        None => 0,
    }
}

/// Finds the study's series in the cloud, locks the study in the cache and
/// records the manifest. When part of the study is already in the cache,
/// its instances are listed at once, to know what is missing.
fn prepare(client: &Client, cache: &Cache, planned: Planned, reporter: &dyn Reporter) -> Result<Work> {
    let uid = &planned.uid.clone();
    let listed = client
        .search_series(uid, &[("includefield", "00201209")])
        .with_context(|| format!("failed to list the series of study `{uid}`"))?;
    let mut series = Vec::new();
    let mut announced = 0u64;
    for json in &listed {
        series.push(
            json.uid(0x0020_000E)
                .with_context(|| format!("the cloud listed a bad series in study `{uid}`"))?,
        );
        announced += json.int(0x0020_1209).unwrap_or(0).max(0) as u64;
    }
    if series.is_empty() {
        bail!("the cloud lists no series for study `{uid}`");
    }
    let entry = cache.lock_study(uid, LockMode::Exclusive, || {
        reporter.info(&format!(
            "waiting for another retriever process that is using study {uid}"
        ))
    })?;
    entry.clean_tmp();
    let mut manifest = entry.manifest()?.unwrap_or_else(|| Manifest {
        version: Manifest::VERSION,
        study: planned.info.clone(),
        roles: Vec::new(),
        fetched_at: String::new(),
        completed_at: None,
        expected: BTreeMap::new(),
    });
    manifest.study = planned.info.clone();
    manifest.add_role(planned.role.clone());
    manifest.fetched_at = now_rfc3339();
    entry.write_manifest(&manifest)?;
    let present = entry.present()?;
    let work = Work {
        planned,
        entry,
        series,
        expected: OnceLock::new(),
        reused: 0,
        rejections: Mutex::new(Vec::new()),
        notes: Mutex::new(BTreeSet::new()),
        error: Mutex::new(None),
        transient_error: Mutex::new(None),
    };
    let (total, reused) = if present.is_empty() {
        (announced, 0)
    } else {
        let expected = list_instances(client, &work.planned.uid, &work.series)?;
        record_expected(&work, expected)?;
        let expected = work.expected.get().expect("just set");
        let reused = expected.keys().filter(|sop| present.contains_key(*sop)).count();
        (expected.len() as u64, reused)
    };
    let label = format!(
        "{} ({})",
        work.planned.info.accession.as_deref().unwrap_or(uid.as_str()),
        match work.planned.role {
            Role::Current { .. } => "current",
            Role::Prior { .. } => "prior",
        }
    );
    reporter.study_started(&work.planned.uid, &label, total, reused as u64);
    Ok(Work { reused, ..work })
}

/// Lists the study's instances, one request per series, in parallel. Pages
/// are asked for one at a time and reduced to the two UIDs at once, so the
/// memory used does not grow with the number of instances beyond those.
fn list_instances(client: &Client, study: &Uid, series: &[Uid]) -> Result<BTreeMap<String, String>> {
    const PAGE: usize = 200;
    let lists: Vec<Result<Vec<(String, String)>>> = series
        .par_iter()
        .map(|s| {
            let mut out = Vec::new();
            loop {
                let (limit, offset) = (PAGE.to_string(), out.len().to_string());
                let page = client
                    .search_instances(
                        study,
                        &[
                            ("SeriesInstanceUID", s.as_str()),
                            ("includefield", "0020000E"),
                            ("limit", &limit),
                            ("offset", &offset),
                        ],
                    )
                    .with_context(|| format!("failed to list the instances of series `{s}` of study `{study}`"))?;
                let full = page.len() == PAGE;
                for json in &page {
                    let sop = json
                        .uid(0x0008_0018)
                        .with_context(|| format!("the cloud listed a bad instance in study `{study}`"))?;
                    let in_series = json.uid(0x0020_000E).unwrap_or_else(|_| s.clone());
                    if &in_series != s {
                        bail!(
                            "asked for the instances of series `{s}` of study `{study}`, the cloud listed one of series `{in_series}`"
                        );
                    }
                    out.push((sop.to_string(), s.to_string()));
                }
                if !full {
                    return Ok(out);
                }
            }
        })
        .collect();
    let mut expected = BTreeMap::new();
    for list in lists {
        expected.extend(list?);
    }
    if expected.is_empty() {
        bail!("the cloud lists no instances for study `{study}`");
    }
    Ok(expected)
}

/// Keeps the listing and records it in the manifest.
fn record_expected(w: &Work, expected: BTreeMap<String, String>) -> Result<()> {
    let mut manifest = w
        .entry
        .manifest()?
        .context("the study's manifest disappeared from the cache while it was being fetched")?;
    if manifest.expected != expected {
        manifest.completed_at = None;
        manifest.expected = expected.clone();
        w.entry.write_manifest(&manifest)?;
    }
    let _ = w.expected.set(expected);
    Ok(())
}

/// Lists a study whose series are being downloaded meanwhile.
fn list(client: &Client, w: &Work, reporter: &dyn Reporter) {
    let result = list_instances(client, &w.planned.uid, &w.series).and_then(|expected| {
        let total = expected.len() as u64;
        record_expected(w, expected)?;
        reporter.study_total(&w.planned.uid, total);
        Ok(())
    });
    if let Err(e) = result {
        w.error.lock().unwrap().get_or_insert(e);
    }
}

/// One piece of work of a round.
enum Task {
    /// List the study's instances.
    List,
    /// Download this.
    Get(Target),
}

/// What a round does for a study: list it and download all its series when
/// nothing of it is here yet; else download what is missing.
fn tasks_for(i: usize, w: &Work) -> Vec<(usize, Task)> {
    if w.expected.get().is_none() {
        let study = &w.planned.uid;
        let mut tasks = vec![(i, Task::List)];
        tasks.extend(
            w.series
                .iter()
                .map(|s| (i, Task::Get(Target::Series(study.clone(), s.clone())))),
        );
        return tasks;
    }
    missing_targets(w)
        .unwrap_or_default()
        .into_iter()
        .map(|t| (i, Task::Get(t)))
        .collect()
}

/// What to ask the cloud for: whole series where nothing of them is here
/// yet, single instances where a series is partly here.
fn missing_targets(w: &Work) -> Result<Vec<Target>> {
    let present = w.entry.present()?;
    let Some(expected) = w.expected.get() else {
        return Ok(Vec::new());
    };
    let mut by_series: BTreeMap<&str, (usize, Vec<&str>)> = BTreeMap::new();
    for (sop, series) in expected {
        let slot = by_series.entry(series.as_str()).or_default();
        slot.0 += 1;
        if !present.contains_key(sop) {
            slot.1.push(sop.as_str());
        }
    }
    let study = &w.planned.uid;
    let mut targets = Vec::new();
    for (series, (total, missing)) in by_series {
        let series = Uid::parse(series)?;
        if missing.len() == total {
            targets.push(Target::Series(study.clone(), series));
        } else {
            for sop in missing {
                targets.push(Target::Instance(study.clone(), series.clone(), Uid::parse(sop)?));
            }
        }
    }
    Ok(targets)
}

/// A read from the cloud's response failed (cut connection, idle timeout):
/// transient, unlike an error writing to the cache.
#[derive(Debug)]
struct BodyReadFailed(io::Error);

impl std::fmt::Display for BodyReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the download was cut short: {}", self.0)
    }
}

impl std::error::Error for BodyReadFailed {}

/// Downloads one target and accepts every good part into the cache.
///
/// Reading from the network and making parts durable overlap: this thread
/// writes each part to a temporary file and hands it to a second thread,
/// which syncs it, checks it and moves it into place, so the connection
/// never waits for the disk.
fn download(client: &Client, w: &Work, target: &Target, reporter: &dyn Reporter) {
    let study = &w.planned.uid;
    let reject = |part_no: usize, why: String| {
        let message = format!(
            "rejected part {part_no} of {} for study `{study}`: {why}",
            describe(target)
        );
        reporter.warn(&message);
        w.rejections.lock().unwrap().push(message);
    };
    let (to_committer, parts) = std::sync::mpsc::sync_channel::<(usize, Staged)>(8);
    let result = std::thread::scope(|scope| {
        let committer = scope.spawn(|| {
            for (part_no, staged) in parts {
                if let Err(e) = accept(w, target, staged, part_no, reporter, &reject) {
                    w.error.lock().unwrap().get_or_insert(e);
                }
            }
        });
        let mut part_no = 0usize;
        let mut on_part = |_headers: &PartHeaders, body: &mut dyn Read| -> Result<()> {
            check_interrupted()?;
            part_no += 1;
            let mut staged = w.entry.stage()?;
            if let Some(why) = copy_part(body, &mut staged).with_context(|| format!("part {part_no}"))? {
                reject(part_no, why);
                return Ok(());
            }
            to_committer
                .send((part_no, staged))
                .map_err(|_| anyhow!("the thread writing to the cache stopped"))
        };
        let result = client.retrieve(target, &mut on_part);
        drop(to_committer);
        let _ = committer.join();
        result
    });
    if let Err(e) = result {
        let transient = e.transient || e.error.chain().any(|c| c.is::<BodyReadFailed>());
        let error = e
            .error
            .context(format!("failed to download {} of study `{study}`", describe(target)));
        if is_interrupted(&error) {
            return;
        }
        if transient {
            *w.transient_error.lock().unwrap() = Some(error);
        } else {
            w.error.lock().unwrap().get_or_insert(error);
        }
    }
}

/// Syncs a downloaded part, has the intake gate check it and moves it into
/// place. An error is returned only when the cache itself failed (disk
/// full, permissions).
fn accept(
    w: &Work,
    target: &Target,
    mut staged: Staged,
    part_no: usize,
    reporter: &dyn Reporter,
    reject: &dyn Fn(usize, String),
) -> Result<()> {
    staged.finish()?;
    let (series, sop) = match target {
        Target::Study(_) => (None, None),
        Target::Series(_, series) => (Some(series), None),
        Target::Instance(_, series, sop) => (Some(series), Some(sop)),
    };
    let series_of = |sop: &str| w.expected.get().and_then(|e| e.get(sop).cloned());
    let info = &w.planned.info;
    let want = Expectation {
        study: &w.planned.uid,
        patient: Patient {
            id: info.patient_id.as_deref(),
            issuer: info.issuer_of_patient_id.as_deref(),
        },
        series,
        sop,
        listed_series: Some(&w.series),
        series_of: &series_of,
        max_inflated: w.entry.limits().max_instance_size,
    };
    let admitted = match intake::admit(staged.path(), &want)? {
        Ok(admitted) => admitted,
        Err(refused) => {
            reject(part_no, refused.to_string());
            return Ok(());
        }
    };
    for note in admitted.notes() {
        if w.notes.lock().unwrap().insert(*note) {
            reporter.warn(&note.message(&w.planned.uid));
        }
    }
    let sop = admitted.header().sop_instance.clone();
    match w.entry.commit(staged, admitted)? {
        Commit::Stored { bytes, path } => reporter.instance_stored(&w.planned.uid, &sop, &path, bytes),
        Commit::AlreadyPresent => {}
        Commit::Conflict => reject(
            part_no,
            format!("instance `{sop}` is already in the cache with different bytes; the first copy was kept"),
        ),
    }
    Ok(())
}

fn describe(target: &Target) -> String {
    match target {
        Target::Study(_) => "the study".into(),
        Target::Series(_, series) => format!("series `{series}`"),
        Target::Instance(_, _, sop) => format!("instance `{sop}`"),
    }
}

/// Copies a part's body into the staged file, checking early that it is a
/// DICOM Part-10 file so that garbage is not written out in full. Returns
/// why the part is not acceptable, if it is not. A part larger than the
/// cache's maximum instance size is an error: the rest of the response is
/// not read, as an endless part would never end.
pub fn copy_part(body: &mut dyn Read, out: &mut Staged) -> Result<Option<String>> {
    let written = |e: io::Error, out: &Staged| match TooLarge::in_io(&e) {
        Some(TooLarge { limit }) => anyhow!(
            "the cloud sent more than the maximum instance size of {} for one instance, so the rest of this \
             download was not read; if the cloud holds instances this large, raise --max-instance-size \
             (`max_instance_size` in the config file), else report it to the cloud archive's administrators",
            show_size(limit)
        ),
        None => crate::cache::write_error(e, "write", out.path()),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = |buf: &mut [u8]| loop {
        match body.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map_err(BodyReadFailed),
        }
    };
    let mut filled = 0;
    while filled < 132 {
        let n = read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(Some(format!("it is not a DICOM Part-10 file (only {filled} bytes)")));
        }
        filled += n;
    }
    if &buf[128..132] != b"DICM" {
        return Ok(Some(
            "it is not a DICOM Part-10 file (no DICM marker at byte 128)".into(),
        ));
    }
    out.write_all(&buf[..filled]).map_err(|e| written(e, out))?;
    loop {
        let n = read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        out.write_all(&buf[..n]).map_err(|e| written(e, out))?;
    }
}

/// Checks whether the study is complete; if so records it in the manifest.
fn settle(w: &Work) -> Result<Option<Fetched>> {
    let present = w.entry.present()?;
    let Some(expected) = w.expected.get() else {
        return Ok(None);
    };
    if expected.keys().any(|sop| !present.contains_key(sop)) {
        return Ok(None);
    }
    let mut manifest = w
        .entry
        .manifest()?
        .context("the study's manifest disappeared from the cache while it was being fetched")?;
    if manifest.completed_at.is_none() {
        // The instance files were synced one by one; their names become
        // durable here, before the study is recorded complete.
        w.entry.sync_dirs();
        manifest.completed_at = Some(now_rfc3339());
        w.entry.write_manifest(&manifest)?;
    }
    let bytes = expected
        .keys()
        .filter_map(|sop| present.get(sop))
        .map(|i| i.bytes)
        .sum();
    Ok(Some(Fetched {
        planned: w.planned.clone(),
        instances: expected.len(),
        bytes,
        path: w.entry.dir().to_path_buf(),
        reused: w.reused,
    }))
}
