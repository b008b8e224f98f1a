//! `fetch`: find studies in the cloud, choose their priors, and pull every
//! instance into the cache, resuming with whatever is already complete.
//!
//! The work is done in three steps so that all downloads share one pool of
//! connections: plan (QIDO: which studies, which instances), download (all
//! missing instances of all studies, in parallel), and settle (which studies
//! are now complete). In the first round each study's downloads start as
//! soon as the study is prepared, while the next one is (see `first_round`). Downloads that fail transiently are retried in further
//! rounds that ask only for what is still missing, except that a study whose
//! downloads stalled twice is given up (see `MAX_STALLS`).
//!
//! Progress goes to the reporter; what a caller acts on (each instance as it
//! lands) goes to the callback in [`FetchOptions`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rayon::prelude::*;

use crate::cache::{
    BodyReadFailed, Cache, Commit, LockMode, Manifest, Role, Staged, StudyEntry, StudyInfo, copy_part, now_rfc3339,
};
use crate::dicomweb::{self, Client, DicomJson, PartHeaders, Target, tag_name};
use crate::intake::{self, Expectation, Note, Patient};
use crate::interrupt;
use crate::priors::{self, Decision, Rules};
use crate::report::Reporter;
use crate::uid::Uid;

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
    /// NumberOfStudyRelatedInstances, as the search gave it: the listing
    /// of the study's instances must reach it.
    pub instances: Option<u64>,
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

/// A study a search found.
#[derive(Debug, Clone)]
pub struct FoundStudy {
    pub uid: Uid,
    pub info: StudyInfo,
    /// NumberOfStudyRelatedInstances, when the cloud gives it.
    pub instances: Option<u64>,
}

/// What a study search found, and what it had to leave out (one line
/// each, to show as warnings).
#[derive(Debug, Default)]
pub struct StudySearch {
    pub studies: Vec<FoundStudy>,
    pub warnings: Vec<String>,
}

/// The one study-level search (fetch's, the priors', watch's): `params`
/// are the matching keys sent; every study in the answer must carry
/// exactly the values in `exact` (tag, value), or it is left out, since a
/// server may ignore a matching key it does not support. A study whose UID
/// is not a valid UID is left out too, so that one bad study in the cloud
/// does not stop the others. Each kind of leaving out makes one warning.
pub fn search_studies(client: &Client, params: &[(&str, &str)], exact: &[(u32, &str)]) -> Result<StudySearch> {
    let mut studies = Vec::new();
    let warnings = search_studies_each(client, params, exact, &mut |study| {
        studies.push(study);
        Ok(())
    })?;
    Ok(StudySearch { studies, warnings })
}

/// [`search_studies`], handing each study to `each` as its page is read
/// instead of collecting them: what the search holds at once is a page,
/// however many studies it finds (`watch` searches its whole window at every
/// interval). Returns the warnings.
pub fn search_studies_each(
    client: &Client,
    params: &[(&str, &str)],
    exact: &[(u32, &str)],
    each: &mut dyn FnMut(FoundStudy) -> Result<()>,
) -> Result<Vec<String>> {
    let mut query = params.to_vec();
    query.extend(STUDY_FIELDS.iter().map(|f| ("includefield", *f)));
    // What the routing rules read, asked for once each (Orthanc ignores a
    // comma-separated list: one parameter each).
    let extra: Vec<String> = client
        .study_fields()
        .iter()
        .map(|tag| format!("{tag:08X}"))
        .filter(|tag| !STUDY_FIELDS.contains(&tag.as_str()))
        .collect();
    query.extend(extra.iter().map(|f| ("includefield", f.as_str())));
    let mut warnings = Vec::new();
    let mut unmatched = 0usize;
    // The first few studies with a bad UID, to show, and how many there were.
    let mut invalid: Vec<String> = Vec::new();
    let mut invalids = 0usize;
    client.search_studies(&query, &mut |json| {
        if !exact.iter().all(|(tag, want)| has_value(&json, *tag, want)) {
            unmatched += 1;
            return Ok(());
        }
        match study_info(&json, client.study_fields()) {
            Ok(study) => each(study)?,
            Err(_) => {
                invalids += 1;
                if invalid.len() < 3 {
                    invalid.push(shown(&json.string(0x0020_000D).unwrap_or_default()));
                }
            }
        }
        Ok(())
    })?;
    let asked = || {
        params
            .iter()
            .map(|(k, v)| format!("{k}={}", shown(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    if unmatched > 0 {
        let keys: Vec<String> = exact
            .iter()
            .map(|(tag, want)| format!("{} `{}`", tag_name(*tag), shown(want)))
            .collect();
        warnings.push(format!(
            "the cloud answered the search `{}` with {unmatched} studies that do not have {}; it seems to \
             ignore the matching key, so they were left out",
            asked(),
            keys.join(" and ")
        ));
    }
    if !invalid.is_empty() {
        let more = match invalids {
            n if n > 3 => format!(" (and {} more)", n - 3),
            _ => String::new(),
        };
        warnings.push(format!(
            "the cloud answered the search `{}` with {} whose Study Instance UID is missing or not a valid \
             DICOM UID (`{}`{more}); skipped, as it cannot be fetched",
            asked(),
            match invalids {
                1 => "a study".to_string(),
                _ => "studies".to_string(),
            },
            invalid.join("`, `")
        ));
    }
    Ok(warnings)
}

/// Whether the attribute's value is `want`, ignoring DICOM's padding.
fn has_value(json: &DicomJson, tag: u32, want: &str) -> bool {
    let trim = |s: &str| s.trim_matches(['\0', ' ']).to_string();
    json.string(tag).is_some_and(|v| trim(&v) == trim(want))
}

/// A value from the network, made safe to print: at most 80 characters,
/// control and other unprintable characters escaped.
fn shown(raw: &str) -> String {
    raw.chars().take(80).collect::<String>().escape_debug().to_string()
}

/// The most values of one attribute kept for the routing rules, and the
/// longest value kept: what a rule matches is short (a name, a code), and a
/// manifest holds what the cloud says, bounded.
const MAX_ATTRIBUTE_VALUES: usize = 16;
const MAX_ATTRIBUTE_CHARS: usize = 256;

/// What the study search answered for a study: what retriever reads, and
/// the values of `fields` (the attributes the routing rules match on), at
/// most [`MAX_ATTRIBUTE_VALUES`] of each, a value longer than
/// [`MAX_ATTRIBUTE_CHARS`] left out (a rule then does not match it: fail closed).
fn study_info(json: &DicomJson, fields: &[u32]) -> Result<FoundStudy> {
    let uid = json.uid(0x0020_000D)?;
    let info = StudyInfo {
        study_uid: uid.clone(),
        accession: json.string(0x0008_0050),
        patient_id: json.string(0x0010_0020),
        issuer_of_patient_id: json.string(0x0010_0021),
        patient_name: json.string(0x0010_0010),
        study_date: json.string(0x0008_0020),
        study_description: json.string(0x0008_1030),
        modalities: json.strings(0x0008_0061),
        attributes: fields
            .iter()
            .filter_map(|tag| {
                let values: Vec<String> = json
                    .strings(*tag)
                    .into_iter()
                    .filter(|v| v.chars().count() <= MAX_ATTRIBUTE_CHARS)
                    .take(MAX_ATTRIBUTE_VALUES)
                    .collect();
                (!values.is_empty()).then(|| (format!("{tag:08X}"), values))
            })
            .collect(),
    };
    let instances = json.int(0x0020_1208).and_then(|n| u64::try_from(n).ok());
    Ok(FoundStudy { uid, info, instances })
}

/// A search on one key whose value every answer must carry; its warnings
/// go to the reporter.
fn search_by(client: &Client, key: &str, tag: u32, value: &str, reporter: &dyn Reporter) -> Result<Vec<FoundStudy>> {
    let found = search_studies(client, &[(key, value)], &[(tag, value)])?;
    for warning in &found.warnings {
        reporter.warn(warning);
    }
    Ok(found.studies)
}

/// Finds the studies an identifier names: a Study Instance UID, or else an
/// accession number.
fn resolve(client: &Client, id: &str, reporter: &dyn Reporter) -> Result<Vec<FoundStudy>> {
    if id.contains('.')
        && let Ok(uid) = Uid::parse(id)
    {
        let found = search_by(client, "StudyInstanceUID", 0x0020_000D, uid.as_str(), reporter)?;
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let found = search_by(client, "AccessionNumber", 0x0008_0050, id, reporter)?;
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
    // The clock of the timings starts with the work, if not before.
    crate::timings::enabled();
    let mut plan = Plan::default();
    let mut seen = BTreeSet::new();
    let today = priors::today();
    for id in ids {
        let found = match crate::timings::time(&"fetch plan", "study search", || resolve(client, id, reporter)) {
            Ok(found) => found,
            Err(e) => {
                plan.failures.push((id.clone(), e));
                continue;
            }
        };
        if found.len() > 1 {
            let patients: BTreeSet<_> = found
                .iter()
                .filter_map(|s| s.info.patient_id.as_deref())
                .map(shown)
                .collect();
            reporter.warn(&format!(
                "`{id}` matches {} studies (patients: {}); fetching all of them",
                found.len(),
                crate::text::escape(&patients.into_iter().collect::<Vec<_>>().join(", "))
            ));
        }
        for current in found {
            let FoundStudy { uid, info, instances } = current;
            if seen.insert(uid.clone()) {
                plan.studies.push(Planned {
                    info: info.clone(),
                    uid: uid.clone(),
                    role: Role::Current {
                        requested_as: id.clone(),
                    },
                    instances,
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
            let searched = crate::timings::time(&"fetch plan", "prior search", || {
                search_by(client, "PatientID", 0x0010_0020, &patient, reporter)
            });
            let candidates = match searched {
                Ok(c) => c,
                Err(e) => {
                    plan.failures.push((format!("priors of {id}"), e));
                    continue;
                }
            };
            let infos: Vec<StudyInfo> = candidates.iter().map(|s| s.info.clone()).collect();
            let decisions = priors::select(&info, &infos, rules, &today);
            for d in decisions.iter().filter(|d| d.chosen) {
                let Some(prior) = candidates.iter().find(|c| c.info.study_uid == d.study.study_uid) else {
                    continue;
                };
                if seen.insert(prior.uid.clone()) {
                    plan.studies.push(Planned {
                        info: d.study.clone(),
                        uid: prior.uid.clone(),
                        role: Role::Prior { of: uid.clone() },
                        instances: prior.instances,
                    });
                }
            }
            plan.priors.push(PriorReport {
                current: info,
                decisions,
            });
        }
    }
    crate::timings::print(&"fetch plan");
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
    /// Their NumberOfSeriesRelatedInstances, where the cloud gave it.
    series_counts: Vec<Option<u64>>,
    /// The instances the cloud lists (SOP Instance UID → Series Instance
    /// UID), once known. A study with nothing in the cache yet is listed
    /// while its series download, so the (on some servers slow) listing
    /// costs no time of its own.
    expected: OnceLock<BTreeMap<Uid, Uid>>,
    reused: usize,
    rejections: Mutex<Vec<String>>,
    /// The gate's notes already shown for this study (each once).
    notes: Mutex<BTreeSet<Note>>,
    error: Mutex<Option<anyhow::Error>>,
    transient_error: Mutex<Option<anyhow::Error>>,
}

impl Work {
    /// What its timings are kept under (see `timings`).
    fn subject(&self) -> String {
        format!("fetch of study {}", self.planned.uid)
    }
}

/// What the fetch tells its caller about the cache as it fills, for a
/// caller that acts on it at once (`watch` delivers while it downloads).
/// Unlike the reporter's progress, these are data: the caller may rely on
/// every one of them.
#[derive(Debug, Clone, Copy)]
pub enum Landed<'a> {
    /// Work on the study begins: its manifest is written, and when some of
    /// the study was in the cache already, its listing too.
    Begun { study: &'a Uid },
    /// The study's listing of instances is in its manifest now: what it is
    /// to hold is known exactly.
    Listed { study: &'a Uid },
    /// An instance was stored in the cache at `path`, checked by the intake
    /// gate. It is made durable with its batch (see `cache::durable`); a
    /// copy sent on before that was sent whole, and a power cut meanwhile
    /// only makes a resumed fetch check the file again.
    Stored {
        study: &'a Uid,
        sop: &'a Uid,
        path: &'a Path,
        bytes: u64,
    },
}

/// How to fetch, and where its outputs go besides the reporter.
#[derive(Clone, Copy)]
pub struct FetchOptions<'a> {
    /// Rounds without progress before a study is given up.
    pub retries: u32,
    /// Called as the cache fills (see [`Landed`]), on the download threads.
    pub on_landed: Option<&'a (dyn Fn(&Landed<'_>) + Sync)>,
}

impl FetchOptions<'_> {
    /// A fetch that tells nothing but its progress.
    pub fn new(retries: u32) -> FetchOptions<'static> {
        FetchOptions {
            retries,
            on_landed: None,
        }
    }

    fn landed(&self, event: Landed<'_>) {
        if let Some(on_landed) = self.on_landed {
            on_landed(&event);
        }
    }
}

/// Fetches every planned study into the cache. Calls `on_complete` for
/// each study as soon as it is complete (so callers can print it at once).
pub fn fetch(
    client: &Client,
    cache: &Cache,
    studies: Vec<Planned>,
    jobs: usize,
    opts: &FetchOptions,
    reporter: &dyn Reporter,
    on_complete: &mut dyn FnMut(&Fetched),
) -> Result<Outcome> {
    let pool = download_pool(jobs)?;
    fetch_in(&pool, client, cache, studies, opts, reporter, on_complete)
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
    opts: &FetchOptions,
    reporter: &dyn Reporter,
    on_complete: &mut dyn FnMut(&Fetched),
) -> Result<Outcome> {
    let retries = opts.retries;
    let mut outcome = Outcome::default();
    let (mut work, mut before) = first_round(pool, client, cache, studies, opts, reporter, &mut outcome)?;
    let mut round = 0u32;
    let mut quiet_rounds = 0u32;
    // Rounds in which a study's downloads stalled (see `MAX_STALLS`).
    let mut stalled_rounds: BTreeMap<Uid, u32> = BTreeMap::new();
    while !work.is_empty() {
        if round > 0 {
            let tasks: Vec<(usize, Task)> = work.iter().enumerate().flat_map(|(i, w)| tasks_for(i, w)).collect();
            before = work
                .iter()
                .map(|w| w.entry.present().map(|p| p.len()).unwrap_or(0))
                .sum();
            pool.install(|| {
                tasks
                    .par_iter()
                    .for_each(|(i, task)| run(client, &work[*i], task, opts, reporter))
            });
        }
        interrupt::check()?;
        let after: usize = work
            .iter()
            .map(|w| w.entry.present().map(|p| p.len()).unwrap_or(0))
            .sum();

        // Settle: complete studies are done, studies with a permanent error
        // have failed, the rest go to another round.
        let mut next = Vec::new();
        for w in work {
            let subject = w.subject();
            let settled = settle(&w);
            if !matches!(settled, Ok(None)) {
                crate::timings::print(&subject);
            }
            match settled {
                Ok(Some(fetched)) => {
                    let summary = format!("{} instances", fetched.instances);
                    reporter.study_finished(&w.planned.uid, true, &summary);
                    on_complete(&fetched);
                    outcome.fetched.push(fetched);
                }
                Ok(None) if w.error.lock().unwrap().is_none() && w.rejections.lock().unwrap().is_empty() => {
                    let stalled = w
                        .transient_error
                        .lock()
                        .unwrap()
                        .as_ref()
                        .is_some_and(dicomweb::is_stalled);
                    let stalls = stalled_rounds.entry(w.planned.uid.clone()).or_default();
                    *stalls += u32::from(stalled);
                    if *stalls >= MAX_STALLS {
                        let error = stall_error(&w, client.idle_timeout());
                        reporter.study_finished(&w.planned.uid, false, "failed");
                        outcome.failed.push((w.planned, error));
                    } else {
                        next.push(w)
                    }
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
        let delay = crate::backoff::doubled(Duration::from_millis(500), quiet_rounds.min(6), Duration::MAX);
        for w in &work {
            if let Some(e) = w.transient_error.lock().unwrap().take() {
                reporter.info(&format!(
                    "study {}: {e:#}; resuming with what is missing (round {})",
                    w.planned.uid,
                    round + 1
                ));
            }
        }
        interrupt::sleep(delay)?;
    }
    Ok(outcome)
}

/// The first round: each study is prepared on this thread (its searches,
/// its lock, its manifest; a wait for another process's lock never holds a
/// download thread), and its downloads start on the pool at once, while the
/// next study is prepared. So a study's start-up overlaps the transfer of
/// those before it. Returns the studies prepared, in the order planned, and
/// how many of their instances were in the cache before.
fn first_round(
    pool: &rayon::ThreadPool,
    client: &Client,
    cache: &Cache,
    studies: Vec<Planned>,
    opts: &FetchOptions,
    reporter: &dyn Reporter,
    outcome: &mut Outcome,
) -> Result<(Vec<Work>, usize)> {
    let slots: Vec<OnceLock<Work>> = studies.iter().map(|_| OnceLock::new()).collect();
    let mut before = 0;
    let mut stopped = None;
    pool.in_place_scope_fifo(|scope| {
        // Each study's first download goes first, its listing and further
        // downloads once every study has begun: so each study's first image
        // comes early (`watch` sends it on at once), not only the first
        // study's. The round ends when all are done, whatever their order.
        let mut later = Vec::new();
        for (planned, slot) in studies.into_iter().zip(&slots) {
            if let Err(e) = interrupt::check() {
                stopped = Some(e);
                break;
            }
            match prepare(client, cache, planned.clone(), opts, reporter) {
                Ok(w) => {
                    before += w.entry.present().map(|p| p.len()).unwrap_or(0);
                    let w = slot.get_or_init(|| w);
                    let mut tasks: Vec<Task> = tasks_for(0, w).into_iter().map(|(_, task)| task).collect();
                    if let Some(at) = tasks.iter().position(|t| matches!(t, Task::Get(_))) {
                        let first = tasks.remove(at);
                        scope.spawn_fifo(move |_| run(client, w, &first, opts, reporter));
                    }
                    later.extend(tasks.into_iter().map(|task| (w, task)));
                }
                Err(e) if interrupt::is_interrupted(&e) => {
                    stopped = Some(e);
                    break;
                }
                Err(e) => {
                    reporter.study_finished(&planned.uid, false, "failed");
                    outcome.failed.push((planned, e));
                }
            }
        }
        for (w, task) in later {
            scope.spawn_fifo(move |_| run(client, w, &task, opts, reporter));
        }
    });
    if let Some(e) = stopped {
        return Err(e);
    }
    Ok((slots.into_iter().filter_map(OnceLock::into_inner).collect(), before))
}

/// Does one task of a round, unless Ctrl-C was pressed.
fn run(client: &Client, w: &Work, task: &Task, opts: &FetchOptions, reporter: &dyn Reporter) {
    if interrupt::requested() {
        return;
    }
    match task {
        Task::List => list(client, w, opts, reporter),
        Task::Get(target) => download(client, w, target, opts, reporter),
    }
}

/// Rounds in which a study's downloads stalled (the cloud sent nothing for
/// the idle timeout) before the study is given up, progress or not (the
/// message in [`stall_error`] says "twice"). Each stall costs a whole idle
/// timeout, so this, not `--retries`, bounds the time a technician waits
/// for a cloud that stopped sending: about two idle timeouts (two minutes
/// with the defaults). Cut connections are not counted: they fail fast, and
/// resuming after them is what rounds are for.
const MAX_STALLS: u32 = 2;

/// The error to report for a study given up after [`MAX_STALLS`] stalls.
fn stall_error(w: &Work, idle_timeout: Duration) -> anyhow::Error {
    let study = &w.planned.uid;
    let missing = match missing_count(w) {
        0 => String::new(),
        n => format!(", {n} instances still missing"),
    };
    let message = format!(
        "the cloud stopped sending for {} (`--idle-timeout`) twice while downloading study `{study}`{missing}; \
         check the cloud and the network, then run the same command again to resume \
         (a longer `--idle-timeout` helps if the cloud is only slow)",
        crate::format::duration(idle_timeout)
    );
    match w.transient_error.lock().unwrap().take() {
        Some(last) => last.context(message),
        None => anyhow!(message),
    }
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
        Some(expected) => expected
            .keys()
            .filter(|sop| !present.contains_key(sop.as_str()))
            .count(),
        None => 0,
    }
}

/// Finds the study's series in the cloud, locks the study in the cache and
/// records the manifest. When part of the study is already in the cache,
/// its instances are listed at once, to know what is missing.
fn prepare(
    client: &Client,
    cache: &Cache,
    planned: Planned,
    opts: &FetchOptions,
    reporter: &dyn Reporter,
) -> Result<Work> {
    let uid = &planned.uid.clone();
    let subject = format!("fetch of study {uid}");
    crate::timings::at(&subject, "start");
    let (series, series_counts) = crate::timings::time(&subject, "series search", || list_series(client, uid))?;
    let announced: u64 = series_counts.iter().flatten().sum();
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
    recheck(&entry, &planned, &series, &manifest.expected, reporter)?;
    entry.begin_fetch(&manifest)?;
    let present = entry.present()?;
    let work = Work {
        planned,
        entry,
        series,
        series_counts,
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
        let expected = crate::timings::time(&subject, "instance listing", || list_instances(client, &work, reporter))?;
        record_expected(&work, expected)?;
        let expected = work.expected.get().expect("just set");
        let reused = expected.keys().filter(|sop| present.contains_key(sop.as_str())).count();
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
    opts.landed(Landed::Begun {
        study: &work.planned.uid,
    });
    Ok(Work { reused, ..work })
}

/// Checks again the instance files a fetch that was cut short (killed, a
/// power cut) left in place but had not marked durable, and removes those
/// that do not pass: they are downloaded again, never counted as complete.
fn recheck(
    entry: &StudyEntry,
    planned: &Planned,
    series: &[Uid],
    expected: &BTreeMap<Uid, Uid>,
    reporter: &dyn Reporter,
) -> Result<()> {
    let series_of = |sop: &Uid| expected.get(sop).cloned();
    for (sop, instance) in entry.unmarked()? {
        let want = Expectation {
            study: &planned.uid,
            patient: Patient {
                id: planned.info.patient_id.as_deref(),
                issuer: planned.info.issuer_of_patient_id.as_deref(),
            },
            series: Some(&instance.series),
            sop: Some(&sop),
            listed_series: Some(series),
            series_of: &series_of,
            max_inflated: entry.limits().max_instance_size,
        };
        if let Err(why) = intake::recheck(&instance.path, &want)? {
            reporter.info(&format!(
                "instance `{sop}` of study `{}` did not reach the disk whole before the last fetch stopped \
                 ({why}); downloading it again",
                planned.uid
            ));
            entry.discard(&instance)?;
        }
    }
    Ok(())
}

/// The study's series and the instance count the cloud announces for each.
/// A series listing that names another study is refused: nothing in it
/// can be trusted to belong to this one.
fn list_series(client: &Client, study: &Uid) -> Result<(Vec<Uid>, Vec<Option<u64>>)> {
    let mut series = Vec::new();
    let mut counts = Vec::new();
    client
        .search_series(
            study,
            &[("includefield", "0020000D"), ("includefield", "00201209")],
            &mut |json| {
                check_study(&json, study, "series")?;
                series.push(
                    json.uid(0x0020_000E)
                        .with_context(|| format!("the cloud listed a bad series in study `{study}`"))?,
                );
                counts.push(json.int(0x0020_1209).and_then(|n| u64::try_from(n).ok()));
                Ok(())
            },
        )
        .with_context(|| format!("failed to list the series of study `{study}`"))?;
    if series.is_empty() {
        bail!("the cloud lists no series for study `{study}`");
    }
    Ok((series, counts))
}

/// Refuses a listed series or instance that says it is in another study.
fn check_study(json: &DicomJson, study: &Uid, what: &str) -> Result<()> {
    match json.string(0x0020_000D) {
        Some(listed) if Uid::parse(&listed).ok().as_ref() != Some(study) => bail!(
            "asked for the {what} of study `{study}`, the cloud listed one of study `{}`; its listing cannot be \
             trusted, so the study is not fetched; report this to the cloud's administrators",
            shown(&listed)
        ),
        _ => Ok(()),
    }
}

/// Lists the study's instances, one paged listing per series, in parallel,
/// each result reduced at once to the two UIDs kept, and checks the
/// listing against the counts the cloud announced: a listing shorter than
/// its count is not a listing of the whole study, and completing the
/// study against it would deliver it short.
fn list_instances(client: &Client, w: &Work, reporter: &dyn Reporter) -> Result<BTreeMap<Uid, Uid>> {
    let study = &w.planned.uid;
    let lists: Vec<Result<Vec<(Uid, Uid)>>> = w
        .series
        .par_iter()
        .zip(w.series_counts.par_iter())
        .map(|(s, announced)| list_series_instances(client, study, s, *announced, reporter))
        .collect();
    let mut expected = BTreeMap::new();
    for list in lists {
        expected.extend(list?);
    }
    if expected.is_empty() {
        bail!("the cloud lists no instances for study `{study}`");
    }
    check_count(
        expected.len(),
        w.planned.instances,
        &format!("study `{study}`"),
        "NumberOfStudyRelatedInstances",
        reporter,
    )?;
    Ok(expected)
}

/// One series' instances (SOP Instance UID, Series Instance UID). Those of
/// other series are left out (a server may ignore SeriesInstanceUID; they
/// are listed with their own series); one of another study is refused.
fn list_series_instances(
    client: &Client,
    study: &Uid,
    series: &Uid,
    announced: Option<u64>,
    reporter: &dyn Reporter,
) -> Result<Vec<(Uid, Uid)>> {
    let mut out = Vec::new();
    let mut others = 0usize;
    client
        .search_instances(
            study,
            &[
                ("SeriesInstanceUID", series.as_str()),
                ("includefield", "0020000D"),
                ("includefield", "0020000E"),
            ],
            &mut |json| {
                check_study(&json, study, "instances")?;
                if let Some(listed) = json.string(0x0020_000E)
                    && Uid::parse(&listed).ok().as_ref() != Some(series)
                {
                    others += 1;
                    return Ok(());
                }
                let sop = json
                    .uid(0x0008_0018)
                    .with_context(|| format!("the cloud listed a bad instance in study `{study}`"))?;
                out.push((sop, series.clone()));
                Ok(())
            },
        )
        .with_context(|| format!("failed to list the instances of series `{series}` of study `{study}`"))?;
    if others > 0 {
        reporter.warn(&format!(
            "the cloud's listing of series `{series}` of study `{study}` included {others} instances of other \
             series; it seems to ignore SeriesInstanceUID, so they were left out of this series"
        ));
    }
    check_count(
        out.len(),
        announced,
        &format!("series `{series}` of study `{study}`"),
        "NumberOfSeriesRelatedInstances",
        reporter,
    )?;
    Ok(out)
}

/// Compares a listing with the count the cloud announced for it: short is
/// an error, since the study would be delivered short; longer is a study
/// that grew meanwhile, and what is listed is fetched.
fn check_count(
    listed: usize,
    announced: Option<u64>,
    what: &str,
    attribute: &str,
    reporter: &dyn Reporter,
) -> Result<()> {
    let Some(announced) = announced else {
        return Ok(());
    };
    let listed = listed as u64;
    if listed < announced {
        bail!(
            "the cloud's listing of {what} is short: {listed} instances listed, {announced} announced \
             ({attribute}); the study is not complete, try again later"
        );
    }
    if listed > announced {
        reporter.warn(&format!(
            "the cloud lists {listed} instances for {what}, more than the {announced} it announced \
             ({attribute}); the study may be growing, fetching all that is listed"
        ));
    }
    Ok(())
}

/// Keeps the listing and records it in the manifest.
fn record_expected(w: &Work, expected: BTreeMap<Uid, Uid>) -> Result<()> {
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
fn list(client: &Client, w: &Work, opts: &FetchOptions, reporter: &dyn Reporter) {
    let listed = crate::timings::time(&w.subject(), "instance listing", || list_instances(client, w, reporter));
    let result = listed.and_then(|expected| {
        let total = expected.len() as u64;
        record_expected(w, expected)?;
        reporter.study_total(&w.planned.uid, total);
        opts.landed(Landed::Listed { study: &w.planned.uid });
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
    let mut by_series: BTreeMap<&Uid, (usize, Vec<&Uid>)> = BTreeMap::new();
    for (sop, series) in expected {
        let slot = by_series.entry(series).or_default();
        slot.0 += 1;
        if !present.contains_key(sop.as_str()) {
            slot.1.push(sop);
        }
    }
    let study = &w.planned.uid;
    let mut targets = Vec::new();
    for (series, (total, missing)) in by_series {
        if missing.len() == total {
            targets.push(Target::Series(study.clone(), series.clone()));
        } else {
            for sop in missing {
                targets.push(Target::Instance(study.clone(), series.clone(), sop.clone()));
            }
        }
    }
    Ok(targets)
}

/// Downloads one target and accepts every good part into the cache.
///
/// Reading from the network and making parts durable overlap: this thread
/// writes each part to a temporary file and hands it to a second thread,
/// which checks it and moves it into place (made durable with its batch,
/// see `cache::durable`), so the connection never waits for the disk.
fn download(client: &Client, w: &Work, target: &Target, opts: &FetchOptions, reporter: &dyn Reporter) {
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
    let subject = w.subject();
    let started = std::time::Instant::now();
    let result = std::thread::scope(|scope| {
        let committer = scope.spawn(|| {
            for (part_no, staged) in parts {
                if let Err(e) = accept(w, target, staged, part_no, opts, reporter, &reject) {
                    w.error.lock().unwrap().get_or_insert(e);
                }
            }
        });
        let mut part_no = 0usize;
        let mut on_part = |_headers: &PartHeaders, body: &mut dyn Read| -> Result<()> {
            interrupt::check()?;
            if part_no == 0 {
                crate::timings::at(&subject, "first byte");
            }
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
    crate::timings::add(&subject, "transfer", started.elapsed());
    // A series' batch is made durable as it ends; single instances (a
    // resumed study) are left to the size, age and round-end rules, or
    // each would cost a sync.
    if !matches!(target, Target::Instance(..)) {
        w.entry.sync_soon();
    }
    if let Err(e) = result {
        let transient = e.transient || e.error.chain().any(|c| c.is::<BodyReadFailed>());
        let stalled = dicomweb::is_stalled(&e.error);
        let error = e
            .error
            .context(format!("failed to download {} of study `{study}`", describe(target)));
        if interrupt::is_interrupted(&error) {
            return;
        }
        if transient {
            // The round counts as stalled if any download of the study
            // stalled: a cut connection reported later does not hide it.
            let mut last = w.transient_error.lock().unwrap();
            if stalled || !last.as_ref().is_some_and(dicomweb::is_stalled) {
                *last = Some(error);
            }
        } else {
            w.error.lock().unwrap().get_or_insert(error);
        }
    }
}

/// Closes a downloaded part, has the intake gate check it and moves it into
/// place. An error is returned only when the cache itself failed (disk
/// full, permissions).
fn accept(
    w: &Work,
    target: &Target,
    mut staged: Staged,
    part_no: usize,
    opts: &FetchOptions,
    reporter: &dyn Reporter,
    reject: &dyn Fn(usize, String),
) -> Result<()> {
    staged.finish()?;
    let (series, sop) = match target {
        Target::Study(_) => (None, None),
        Target::Series(_, series) => (Some(series), None),
        Target::Instance(_, series, sop) => (Some(series), Some(sop)),
    };
    let series_of = |sop: &Uid| w.expected.get().and_then(|e| e.get(sop).cloned());
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
    let admitted = match crate::timings::time(&w.subject(), "intake", || intake::admit(staged.path(), &want))? {
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
        Commit::Stored { bytes, path } => {
            reporter.instance_done(&w.planned.uid, bytes);
            crate::timings::bytes(&w.subject(), bytes);
            opts.landed(Landed::Stored {
                study: &w.planned.uid,
                sop: &sop,
                path: &path,
                bytes,
            });
            w.entry.sync_due();
        }
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

/// Checks whether the study is complete; if so records it in the manifest.
fn settle(w: &Work) -> Result<Option<Fetched>> {
    // The round's last batch is made durable whether the study is complete or not.
    w.entry.sync_batch()?;
    let present = w.entry.present()?;
    let Some(expected) = w.expected.get() else {
        return Ok(None);
    };
    if expected.keys().any(|sop| !present.contains_key(sop.as_str())) {
        return Ok(None);
    }
    let mut manifest = w
        .entry
        .manifest()?
        .context("the study's manifest disappeared from the cache while it was being fetched")?;
    if manifest.completed_at.is_none() || w.entry.has_durable_marks()? {
        // Every batch was synced as its download ended; the names become
        // durable here too, before the study is recorded complete.
        manifest.completed_at = Some(now_rfc3339());
        w.entry.write_complete(&manifest)?;
    }
    let bytes = expected
        .keys()
        .filter_map(|sop| present.get(sop.as_str()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicomweb::testserver::{Step, TestServer, response};
    use crate::dicomweb::{Auth, ClientOptions};

    /// Collects warnings.
    #[derive(Default)]
    struct Warnings(Mutex<Vec<String>>);

    impl Reporter for Warnings {
        fn warn(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
    }

    fn study(uid: &str, accession: &str, patient: &str) -> String {
        format!(
            r#"{{"0020000D": {{"vr": "UI", "Value": ["{uid}"]}},
                "00080050": {{"vr": "SH", "Value": ["{accession}"]}},
                "00100020": {{"vr": "LO", "Value": ["{patient}"]}},
                "00080020": {{"vr": "DA", "Value": ["20240101"]}},
                "00201208": {{"vr": "IS", "Value": [4]}}}}"#
        )
    }

    /// A cloud that ignores every matching key and answers with these studies.
    fn cloud(studies: &[String]) -> (TestServer, Client) {
        let body = format!("[{}]", studies.join(","));
        let server = TestServer::start(move |_, _| answer(body.as_bytes()));
        let client = client_of(&server, Vec::new());
        (server, client)
    }

    /// A QIDO-RS answer of `body`.
    fn answer(body: &[u8]) -> Vec<Step> {
        vec![Step::Send(response(
            "200 OK",
            &[("Content-Type", "application/dicom+json")],
            body,
        ))]
    }

    /// A client of the test server, asking the study search for `study_fields` too, never retrying.
    fn client_of(server: &TestServer, study_fields: Vec<u32>) -> Client {
        let mut cfg = ClientOptions::new(server.url("/dicom-web"), Auth::None);
        cfg.retries = 0;
        cfg.study_fields = study_fields;
        Client::new(&cfg).unwrap()
    }

    #[test]
    fn the_study_search_asks_for_what_the_rules_read_and_keeps_it_bounded() {
        let many: Vec<String> = (0..40).map(|i| format!(r#""V{i}""#)).collect();
        let long = "X".repeat(MAX_ATTRIBUTE_CHARS + 1);
        let body = format!(
            r#"[{{"0020000D": {{"vr": "UI", "Value": ["1.2.3"]}},
                 "00080080": {{"vr": "LO", "Value": ["{long}", "NORTH HOSPITAL "]}},
                 "00081048": {{"vr": "PN", "Value": [{{"Alphabetic": "Doe^Jane"}}]}},
                 "00321032": {{"vr": "PN", "Value": [{}]}}}}]"#,
            many.join(",")
        );
        let server = TestServer::start(move |_, _| answer(body.as_bytes()));
        let client = client_of(
            &server,
            vec![0x0008_0080, 0x0008_1048, 0x0032_1032, 0x0008_0061, 0x0008_1040],
        );
        let found = search_studies(&client, &[("StudyInstanceUID", "1.2.3")], &[]).unwrap();
        let target = &server.requests()[0].target;
        for field in ["00080080", "00081048", "00321032", "00081040"] {
            assert!(target.contains(&format!("includefield={field}")), "{target}");
        }
        assert_eq!(target.matches("includefield=00080061").count(), 1, "{target}");
        let attributes = &found.studies[0].info.attributes;
        assert_eq!(
            attributes["00080080"],
            ["NORTH HOSPITAL "],
            "the over-long value is left out"
        );
        assert_eq!(attributes["00081048"], ["Doe^Jane"]);
        assert_eq!(attributes["00321032"].len(), MAX_ATTRIBUTE_VALUES);
        assert!(!attributes.contains_key("00081040"), "not answered: not kept");
    }

    /// Shows nothing at all.
    struct Silent;

    impl Reporter for Silent {}

    #[test]
    fn every_instance_that_lands_is_told_whatever_the_reporter() {
        use crate::dicomweb::testserver::{closing, head, multipart_content_type, part};
        use crate::intake::testfile::{EXPLICIT_LE, Ids, instance};
        const STUDY: &str = "1.2.3";
        const SERIES: &str = "1.2.3.4";
        const SOPS: [&str; 2] = ["1.2.3.4.1", "1.2.3.4.2"];
        let file = |sop: &str| instance(EXPLICIT_LE, &Ids::new(STUDY, SERIES, sop, Some("P1")));
        let server = TestServer::start(move |_, request| {
            let ui = |tag: &str, uid: &str| format!(r#""{tag}": {{"vr": "UI", "Value": ["{uid}"]}}"#);
            let json = |body: String| {
                vec![Step::Send(response(
                    "200 OK",
                    &[("Content-Type", "application/dicom+json")],
                    body.as_bytes(),
                ))]
            };
            match request.target.split('?').next().unwrap_or_default() {
                "/dicom-web/studies/1.2.3/series" => json(format!(
                    r#"[{{{}, {}, "00201209": {{"vr": "IS", "Value": [2]}}}}]"#,
                    ui("0020000D", STUDY),
                    ui("0020000E", SERIES)
                )),
                "/dicom-web/studies/1.2.3/instances" => {
                    let listed: Vec<String> = SOPS
                        .iter()
                        .map(|sop| {
                            format!(
                                "{{{}, {}, {}}}",
                                ui("0020000D", STUDY),
                                ui("0020000E", SERIES),
                                ui("00080018", sop)
                            )
                        })
                        .collect();
                    json(format!("[{}]", listed.join(",")))
                }
                "/dicom-web/studies/1.2.3/series/1.2.3.4" => {
                    let mut body = head("200 OK", &[("Content-Type", &multipart_content_type())]);
                    for sop in SOPS {
                        body.extend(part(&file(sop)));
                    }
                    body.extend(closing());
                    vec![Step::Send(body)]
                }
                _ => vec![Step::Send(response("404 Not Found", &[], b""))],
            }
        });
        let mut cfg = ClientOptions::new(server.url("/dicom-web"), Auth::None);
        cfg.retries = 0;
        let client = Client::new(&cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let uid = Uid::parse(STUDY).unwrap();
        let planned = Planned {
            info: StudyInfo {
                patient_id: Some("P1".into()),
                ..StudyInfo::new(uid.clone())
            },
            uid: uid.clone(),
            role: Role::Current {
                requested_as: STUDY.into(),
            },
            instances: Some(2),
        };
        let landed = Mutex::new(Vec::new());
        let on_landed = |l: &Landed| {
            landed.lock().unwrap().push(match *l {
                Landed::Begun { study } => format!("begun {study}"),
                Landed::Listed { study } => format!("listed {study}"),
                Landed::Stored {
                    study,
                    sop,
                    path,
                    bytes,
                } => {
                    assert_eq!(std::fs::read(path).unwrap(), file(sop.as_str()), "{sop}");
                    assert_eq!(bytes, file(sop.as_str()).len() as u64);
                    format!("stored {study} {sop}")
                }
            })
        };
        let opts = FetchOptions {
            retries: 0,
            on_landed: Some(&on_landed),
        };
        let outcome = fetch(&client, &cache, vec![planned], 2, &opts, &Silent, &mut |_| {}).unwrap();
        assert_eq!(outcome.fetched.len(), 1, "{:?}", outcome.failed);
        let mut landed = landed.into_inner().unwrap();
        assert_eq!(landed[0], "begun 1.2.3", "{landed:?}");
        landed.sort();
        assert_eq!(
            landed,
            [
                "begun 1.2.3",
                "listed 1.2.3",
                "stored 1.2.3 1.2.3.4.1",
                "stored 1.2.3 1.2.3.4.2"
            ]
        );
    }

    #[test]
    fn answers_that_do_not_match_the_key_are_left_out_with_one_warning() {
        let (_server, client) = cloud(&[
            study("1.1", "ACC1", "P1"),
            study("1.2", "ACC2", "P1"),
            study("1.3", "ACC3", "P2"),
            study("1.4", "ACC1 ", "P3"),
        ]);
        let warnings = Warnings::default();
        let found = search_by(&client, "AccessionNumber", 0x0008_0050, "ACC1", &warnings).unwrap();
        let uids: Vec<&str> = found.iter().map(|s| s.uid.as_str()).collect();
        assert_eq!(uids, ["1.1", "1.4"], "padding is not a difference");
        assert_eq!(found[0].instances, Some(4));
        let warnings = warnings.0.into_inner().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("with 2 studies that do not have AccessionNumber (0008,0050) `ACC1`"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("ignore the matching key"), "{warnings:?}");
    }

    #[test]
    fn an_invalid_uid_is_skipped_with_one_escaped_warning() {
        let (_server, client) = cloud(&[
            study("1.1", "A", "P1"),
            study("1.2/../x\\u001b[31m", "B", "P1"),
            study("1.3", "C", "P1"),
        ]);
        let warnings = Warnings::default();
        let found = search_by(&client, "PatientID", 0x0010_0020, "P1", &warnings).unwrap();
        let uids: Vec<&str> = found.iter().map(|s| s.uid.as_str()).collect();
        assert_eq!(uids, ["1.1", "1.3"]);
        let warnings = warnings.0.into_inner().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(r"`1.2/../x\u{1b}[31m`"), "{warnings:?}");
        assert!(!warnings[0].contains('\u{1b}'), "{warnings:?}");
    }

    #[test]
    fn a_study_uid_search_keeps_only_that_study() {
        let (_server, client) = cloud(&[study("1.1", "A", "P1"), study("1.2", "B", "P2")]);
        let warnings = Warnings::default();
        let found = resolve(&client, "1.2", &warnings).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].uid.as_str(), "1.2");
    }

    #[test]
    fn a_listing_short_of_its_count_is_refused_and_a_longer_one_warned_of() {
        let warnings = Warnings::default();
        let e = check_count(3, Some(5), "series `1.2`", "NumberOfSeriesRelatedInstances", &warnings).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("is short: 3 instances listed, 5 announced"), "{e}");
        assert!(e.contains("try again later"), "{e}");
        check_count(5, Some(5), "x", "y", &warnings).unwrap();
        check_count(5, None, "x", "y", &warnings).unwrap();
        assert!(warnings.0.lock().unwrap().is_empty());
        check_count(6, Some(5), "x", "y", &warnings).unwrap();
        assert!(warnings.0.lock().unwrap()[0].contains("more than the 5 it announced"));
    }

    /// What one study search of `watch` costs per study in its window, in a
    /// release build: the answers are pages of 200 studies shaped as Orthanc
    /// 1.10 sends them (tab-indented, with the attributes it adds to the ones
    /// asked for), searched through the watch's own path
    /// (`search_studies`: the pager, DICOM JSON, the study's record). Run with
    /// `cargo test --release --lib fetch::tests::cost -- --ignored --nocapture`.
    #[cfg(target_os = "linux")]
    mod cost {
        use std::time::Duration;

        use serde_json::{Value, json};

        use super::*;
        use crate::dicomweb::DicomJson;
        use crate::dicomweb::testserver::Recorded;

        fn study(n: usize) -> Value {
            let uid = format!("1.2.826.0.1.3680043.10.543.{n}");
            let text = |vr: &str, v: &str| json!({"Value": [v], "vr": vr});
            let name = |v: &str| json!({"Value": [{"Alphabetic": v}], "vr": "PN"});
            json!({
                "00080005": text("CS", "ISO_IR 100"),
                "00080020": text("DA", "20261123"),
                "00080030": text("TM", "093000"),
                "00080050": text("SH", &format!("ACC{n}")),
                "00080061": {"Value": ["CT", "SR"], "vr": "CS"},
                "00080090": name("REFERRER^ROBIN"),
                "00081030": text("LO", "CT CHEST WITH CONTRAST"),
                "00081190": text("UR", &format!("http://127.0.0.1:8042/dicom-web/studies/{uid}")),
                "00100010": name("ROE^JANE"),
                "00100020": text("LO", &format!("PAT{n}")),
                "00100021": text("LO", "HOSP_A"),
                "00100030": text("DA", "19710923"),
                "00100040": text("CS", "F"),
                "0020000D": text("UI", &uid),
                "00200010": text("SH", "7"),
                "00201206": {"Value": [3], "vr": "IS"},
                "00201208": {"Value": [412], "vr": "IS"},
            })
        }

        /// Pages of `n` studies, written as Orthanc writes them.
        fn pages(n: usize) -> Vec<Vec<u8>> {
            let studies: Vec<Value> = (0..n).map(study).collect();
            let mut pages: Vec<Vec<u8>> = studies
                .chunks(200)
                .map(|chunk| {
                    let mut out = Vec::new();
                    let tabs = serde_json::ser::PrettyFormatter::with_indent(b"\t");
                    let mut ser = serde_json::Serializer::with_formatter(&mut out, tabs);
                    serde::Serialize::serialize(chunk, &mut ser).unwrap();
                    out
                })
                .collect();
            pages.push(b"[]".to_vec());
            pages
        }

        /// The CPU time of this process (every thread: the client's readers
        /// and the test server's too, whose part is small), which a loaded
        /// machine disturbs less than the time on the clock.
        fn cpu_time() -> Duration {
            let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `t` is a valid timespec for the call to fill in.
            assert_eq!(
                unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) },
                0
            );
            Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
        }

        /// The least CPU time of a few runs, per study.
        fn per_study(n: usize, mut run: impl FnMut()) -> Duration {
            (0..7)
                .map(|_| {
                    let start = cpu_time();
                    run();
                    cpu_time() - start
                })
                .min()
                .unwrap()
                / n as u32
        }

        #[test]
        #[ignore]
        fn of_a_study_search_per_study() {
            for n in [100, 1000, 5000] {
                let pages = pages(n);
                let bytes: usize = pages.iter().map(Vec::len).sum();
                let parse = per_study(n, || {
                    let parsed: usize = pages
                        .iter()
                        .map(|p| serde_json::from_slice::<Vec<DicomJson>>(p).unwrap().len())
                        .sum();
                    assert_eq!(parsed, n);
                });
                let served = pages.clone();
                let server = TestServer::start(move |_, req: &Recorded| {
                    let offset: usize = req.param("offset").unwrap().parse().unwrap();
                    answer(&served[offset / 200])
                });
                let client = client_of(&server, Vec::new());
                let search = per_study(n, || {
                    let found = search_studies(&client, &[("StudyDate", "20261123-")], &[]).unwrap();
                    assert_eq!(found.studies.len(), n);
                });
                println!(
                    "{n:>5} studies ({} KiB of JSON): CPU {:>5.1} µs a study, of which parsing the JSON {:>5.1} µs",
                    bytes >> 10,
                    search.as_secs_f64() * 1e6,
                    parse.as_secs_f64() * 1e6,
                );
            }
        }
    }
}
