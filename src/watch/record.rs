//! What `watch` remembers of the studies its search found: which were
//! delivered (with their priors) at which size, which are still to do and
//! when to try them again. Kept in the cache (`watch/DEST.json`, one record
//! per destination), so that a restart, even after `kill -9`, picks up where
//! the last run was, and a study `prune` removed after delivery is not
//! fetched and sent again while the cloud still lists it.
//!
//! The record forgets a study the search has not found for [`FORGET_AFTER`],
//! so it stays the size of the search's window, however long `watch` runs.
//!
//! It is written only when a study's state changes (found for the first
//! time, taken up, delivered, failed, forgotten), never because a search
//! found the same studies again: a router at rest rewrote and synced its
//! whole record at every search (104 MB an hour with 280 studies in the
//! window). When a study was last seen is kept in memory at every
//! search and reaches the disk with the study's next change or the next
//! snapshot, at the latest [`REFRESH_EVERY`] after the last one, so that a
//! restart forgets nothing much earlier than [`FORGET_AFTER`].
//!
//! A write costs what changed: the record is a snapshot (`KEY.json`) and a
//! log of changes since (`KEY.log`), one JSON line per study whose state
//! changed, appended and synced in one go. Rewriting the whole record at
//! every change, up to every [`SAVE_EVERY`](super::SAVE_EVERY) while busy,
//! wrote megabytes a minute with a week of thousands of studies. The
//! snapshot is rewritten, and the log emptied, only once the log would
//! outgrow the snapshot (or [`LOG_BOUND`]), so the writes come to at most
//! about twice what changed. Each snapshot has a generation, which each
//! line of the log repeats: lines of an older generation, left by a crash
//! between the snapshot's rename and the log's emptying, are in the
//! snapshot already and are skipped. A last line a crash cut short is
//! ignored, and the next write starts with a snapshot so that no line is
//! appended to it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::uid::Uid;

/// A study the search has not found for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest the `last_seen` times on disk lag behind those in memory
/// while nothing else changes: a day, so that an idle record is rewritten
/// once a day whatever the size of the window.
pub const REFRESH_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Version 1 was the snapshot alone (no log, no generation); it is read
/// as a snapshot of generation 0, which no log line has.
const VERSION: u32 = 2;
/// The log may grow to the snapshot's size, or this much if that is more,
/// before the snapshot is rewritten.
const LOG_BOUND: u64 = if cfg!(test) { 16 << 10 } else { 1 << 20 };
/// The largest snapshot or log loaded: more than a window of 100 000
/// studies. A larger file is not one retriever wrote, and is not read.
const MAX_FILE: u64 = if cfg!(test) { 1 << 20 } else { 256 << 20 };
/// The longest line of the log, and the most lines: a change that would go
/// past either goes into a new snapshot instead.
const MAX_LINE: usize = 64 << 10;
const MAX_LINES: usize = 100_000;

/// One current study (a study the search found; its priors come with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub accession: Option<String>,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    /// Delivered, with its priors, at the size in `instances`.
    pub delivered: bool,
    /// The instance count the search reported when the study was last taken up.
    pub cloud_instances: Option<u64>,
    /// The instances the cloud listed when the study was last fetched.
    pub instances: Option<usize>,
    #[serde(with = "rfc3339")]
    pub first_seen: SystemTime,
    #[serde(with = "rfc3339")]
    pub last_seen: SystemTime,
    /// When its size last changed: it is settled once this is `stable_age` ago.
    #[serde(with = "rfc3339")]
    pub changed_at: SystemTime,
    #[serde(default, with = "rfc3339_opt")]
    pub delivered_at: Option<SystemTime>,
    /// Failed attempts in a row, and when to try again.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, with = "rfc3339_opt")]
    pub next_try: Option<SystemTime>,
    #[serde(default)]
    pub error: Option<String>,
    /// False when its last judgement routed none of it (nor its priors) to
    /// this destination: `delivered` then means nothing is owed here.
    /// Written only when false, so a record of one destination reads as before.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub routed: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

impl Seen {
    /// True when the study has something to fetch or deliver, given the
    /// instance count the search reports now (if the cloud gives one).
    pub fn needs_work(&self, reported: Option<u64>, now: SystemTime, stable_age: Duration) -> bool {
        if !self.delivered {
            return self.next_try.is_none_or(|t| t <= now);
        }
        let settled = self.is_settled(now, stable_age);
        match reported {
            // The count changed since the study was taken up: it grew (or shrank).
            Some(n) if Some(n) != self.cloud_instances => true,
            // The count is the same, but more than was fetched: look again until settled.
            Some(n) => usize::try_from(n).ok() != self.instances && !settled,
            // No count: the only way to see growth is to look, until settled.
            None => !settled,
        }
    }

    /// Its last attempt failed, and it is to be tried again.
    pub fn is_failing(&self) -> bool {
        !self.delivered && self.attempts > 0
    }

    /// Settled: delivered, and its size has not changed for `stable_age`.
    pub fn is_settled(&self, now: SystemTime, stable_age: Duration) -> bool {
        self.delivered && age(self.changed_at, now) >= stable_age
    }

    /// The patient, for running one fetch per patient at a time (their
    /// priors overlap).
    pub fn patient(&self) -> Option<(String, String)> {
        self.patient_id.as_ref().map(|p| {
            (
                p.trim().to_string(),
                self.issuer_of_patient_id.clone().unwrap_or_default().trim().to_string(),
            )
        })
    }
}

fn age(t: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(t).unwrap_or_default()
}

/// Facts the search gives about a study.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub accession: Option<String>,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    pub instances: Option<u64>,
}

/// The studies seen, by Study Instance UID.
#[derive(Debug, Default)]
pub struct Record {
    pub studies: BTreeMap<Uid, Seen>,
    /// The studies whose state changed (or that were forgotten) since the
    /// record was last written.
    changed: BTreeSet<Uid>,
    /// Only `last_seen` times changed since the last snapshot (see [`REFRESH_EVERY`]).
    seen_again: bool,
    /// When the snapshot was last written or read.
    synced_at: Option<SystemTime>,
    /// How many studies [`Seen::is_failing`], kept as they change so that
    /// showing it costs nothing however large the window.
    failing: usize,
    /// What the record's files hold.
    disk: Disk,
}

/// What a record's files hold, for choosing between appending to the log
/// and writing a snapshot.
#[derive(Debug, Default)]
struct Disk {
    /// The snapshot's generation: 0 when there is none of this version.
    generation: u64,
    /// Bytes of the snapshot.
    snapshot: u64,
    /// Bytes and lines of the log.
    log: u64,
    lines: usize,
    /// The log ends in a line cut short: the next write is a snapshot.
    torn: bool,
}

/// The snapshot.
#[derive(Deserialize)]
struct OnDisk {
    version: u32,
    #[serde(default)]
    generation: u64,
    studies: BTreeMap<String, Seen>,
}

/// The snapshot, as written (borrowing what it writes).
#[derive(Serialize)]
struct ToDisk<'a> {
    version: u32,
    destination: &'a str,
    generation: u64,
    studies: BTreeMap<&'a str, &'a Seen>,
}

/// A line of the log: `study`'s state (`None`: forgotten) after the
/// snapshot of generation `g`.
#[derive(Deserialize)]
struct Change {
    g: u64,
    study: String,
    seen: Option<Seen>,
}

/// A line of the log, as written.
#[derive(Serialize)]
struct ToLog<'a> {
    g: u64,
    study: &'a str,
    seen: Option<&'a Seen>,
}

impl Record {
    /// Reads the record of `name` (a destination key): its snapshot, then
    /// the changes logged since; an empty record if there is none. A
    /// record this version cannot read is an error rather than a fresh
    /// start, which would send everything again.
    pub fn load(cache: &Cache, name: &str) -> Result<Record> {
        let damaged = || {
            format!(
                "the watch record `{name}.json` in the cache is damaged or from another version; remove it and \
                 `{name}.log` to start afresh (studies in it may then be sent again)"
            )
        };
        let mut record = Record::default();
        let mut studies: BTreeMap<Uid, Seen> = BTreeMap::new();
        if let Some(bytes) = cache.read_watch_record(name, MAX_FILE)? {
            let disk: OnDisk = serde_json::from_slice(&bytes).with_context(damaged)?;
            match disk.version {
                1 => {}
                VERSION if disk.generation > 0 => record.disk.generation = disk.generation,
                _ => bail!("{}", damaged()),
            }
            record.disk.snapshot = bytes.len() as u64;
            studies = disk
                .studies
                .into_iter()
                .filter_map(|(uid, seen)| Uid::parse(&uid).ok().map(|u| (u, seen)))
                .collect();
        }
        if let Some(log) = cache.read_watch_log(name, MAX_FILE)? {
            record.disk.log = log.len() as u64;
            // What follows the last end of line was cut short by a crash.
            let whole = log.iter().rposition(|&b| b == b'\n').map_or(0, |end| end + 1);
            record.disk.torn = whole < log.len();
            let lines = log[..whole].strip_suffix(b"\n").map(|l| l.split(|&b| b == b'\n'));
            for (n, line) in lines.into_iter().flatten().enumerate() {
                let bad = |why: &str| {
                    anyhow::anyhow!(
                        "the watch record's log `{name}.log` in the cache is damaged (line {}: {why}); remove it to \
                         go back to the record's last snapshot (studies delivered since may then be sent again)",
                        n + 1
                    )
                };
                if n >= MAX_LINES {
                    return Err(bad(&format!("more than {MAX_LINES} lines")));
                }
                if line.len() > MAX_LINE {
                    return Err(bad(&format!("longer than {MAX_LINE} bytes")));
                }
                let change: Change = serde_json::from_slice(line).map_err(|e| bad(&e.to_string()))?;
                record.disk.lines += 1;
                if change.g != record.disk.generation || record.disk.generation == 0 {
                    continue;
                }
                let Ok(uid) = Uid::parse(&change.study) else { continue };
                match change.seen {
                    Some(seen) => studies.insert(uid, seen),
                    None => studies.remove(&uid),
                };
            }
        }
        record.failing = studies.values().filter(|s| s.is_failing()).count();
        record.studies = studies;
        record.synced_at = Some(SystemTime::now());
        Ok(record)
    }

    /// Writes what changed: appended to the log, or, when the log would
    /// outgrow its bound (or the last-seen times are due, see
    /// [`REFRESH_EVERY`]), as a new snapshot.
    pub fn save(&mut self, cache: &Cache, name: &str, destination: &str) -> Result<()> {
        let now = SystemTime::now();
        let refresh = self.seen_again && self.synced_at.is_none_or(|t| age(t, now) >= REFRESH_EVERY);
        if refresh || self.disk.generation == 0 || self.disk.torn {
            return self.snapshot(cache, name, destination);
        }
        let mut lines = Vec::new();
        for uid in &self.changed {
            let start = lines.len();
            let change = ToLog {
                g: self.disk.generation,
                study: uid.as_str(),
                seen: self.studies.get(uid),
            };
            serde_json::to_writer(&mut lines, &change).context("failed to encode the watch record")?;
            lines.push(b'\n');
            if lines.len() - start > MAX_LINE {
                return self.snapshot(cache, name, destination);
            }
        }
        let bound = self.disk.snapshot.clamp(LOG_BOUND, MAX_FILE);
        if self.disk.log + lines.len() as u64 > bound || self.disk.lines + self.changed.len() > MAX_LINES {
            return self.snapshot(cache, name, destination);
        }
        if !lines.is_empty() {
            cache.append_watch_log(name, &lines)?;
        }
        self.disk.log += lines.len() as u64;
        self.disk.lines += self.changed.len();
        self.changed.clear();
        Ok(())
    }

    /// Writes the whole record as a new snapshot, and empties the log.
    pub fn snapshot(&mut self, cache: &Cache, name: &str, destination: &str) -> Result<()> {
        let generation = self.disk.generation + 1;
        let disk = ToDisk {
            version: VERSION,
            destination,
            generation,
            studies: self.studies.iter().map(|(uid, seen)| (uid.as_str(), seen)).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&disk).context("failed to encode the watch record")?;
        cache.write_watch_record(name, &bytes)?;
        self.changed.clear();
        self.seen_again = false;
        self.synced_at = Some(SystemTime::now());
        self.disk = Disk {
            generation,
            snapshot: bytes.len() as u64,
            // Until it is emptied, the log's lines are of the last generation, and skipped.
            log: self.disk.log,
            lines: self.disk.lines,
            torn: self.disk.torn,
        };
        cache.clear_watch_log(name)?;
        self.disk.log = 0;
        self.disk.lines = 0;
        self.disk.torn = false;
        Ok(())
    }

    /// True when the record is to be written: a study's state changed, or
    /// the searches saw studies again and the disk has not been told for
    /// [`REFRESH_EVERY`].
    pub fn needs_save(&self, now: SystemTime) -> bool {
        !self.changed.is_empty() || (self.seen_again && self.synced_at.is_none_or(|t| age(t, now) >= REFRESH_EVERY))
    }

    /// How many studies failed their last attempt and are to be tried again.
    pub fn failing(&self) -> usize {
        self.failing
    }

    /// Notes that the search found `study` at `now`; true when it has
    /// something to fetch or deliver.
    ///
    /// A study found again as it was changes only its `last_seen`, in
    /// memory: this runs for every study of every search, so it allocates
    /// nothing then and marks nothing to be written.
    pub fn found(&mut self, study: &Uid, found: &Found, now: SystemTime, stable_age: Duration) -> bool {
        let Some(seen) = self.studies.get_mut(study) else {
            self.changed.insert(study.clone());
            let seen = Seen {
                accession: found.accession.clone(),
                patient_id: found.patient_id.clone(),
                issuer_of_patient_id: found.issuer_of_patient_id.clone(),
                delivered: false,
                cloud_instances: None,
                instances: None,
                first_seen: now,
                last_seen: now,
                changed_at: now,
                delivered_at: None,
                attempts: 0,
                next_try: None,
                error: None,
                routed: true,
            };
            let needs_work = seen.needs_work(found.instances, now, stable_age);
            self.studies.insert(study.clone(), seen);
            return needs_work;
        };
        if seen.last_seen < now {
            seen.last_seen = now;
            self.seen_again = true;
        }
        if found.patient_id.is_some()
            && (seen.patient_id != found.patient_id || seen.issuer_of_patient_id != found.issuer_of_patient_id)
        {
            seen.patient_id.clone_from(&found.patient_id);
            seen.issuer_of_patient_id.clone_from(&found.issuer_of_patient_id);
            self.changed.insert(study.clone());
        }
        if found.accession.is_some() && seen.accession != found.accession {
            seen.accession.clone_from(&found.accession);
            self.changed.insert(study.clone());
        }
        seen.needs_work(found.instances, now, stable_age)
    }

    /// Notes that work on `study` begins, with the count the search reported.
    pub fn taken_up(&mut self, study: &Uid, reported: Option<u64>, now: SystemTime) {
        if let Some(seen) = self.studies.get_mut(study)
            && reported.is_some()
            && reported != seen.cloud_instances
        {
            seen.changed_at = now;
            seen.cloud_instances = reported;
            self.changed.insert(study.clone());
        }
    }

    /// Notes that `study` and its priors are delivered; `instances` is the
    /// size it was fetched at.
    pub fn delivered(&mut self, study: &Uid, instances: Option<usize>, now: SystemTime) {
        if let Some(seen) = self.studies.get_mut(study) {
            if instances.is_some() && instances != seen.instances {
                seen.changed_at = now;
                seen.instances = instances;
            }
            if seen.is_failing() {
                self.failing -= 1;
            }
            seen.delivered = true;
            seen.routed = true;
            seen.delivered_at = Some(now);
            seen.attempts = 0;
            seen.next_try = None;
            seen.error = None;
            self.changed.insert(study.clone());
        }
    }

    /// Notes that the rules route none of `study` and its priors here: it
    /// is settled at this destination as if delivered, at that size.
    pub fn not_routed(&mut self, study: &Uid, instances: Option<usize>, now: SystemTime) {
        self.delivered(study, instances, now);
        if let Some(seen) = self.studies.get_mut(study) {
            seen.routed = false;
        }
    }

    /// Notes a failed attempt; returns when to try again.
    pub fn failed(&mut self, study: &Uid, error: &str, base: Duration, now: SystemTime) -> Duration {
        let Some(seen) = self.studies.get_mut(study) else {
            return base;
        };
        if !seen.is_failing() {
            self.failing += 1;
        }
        seen.delivered = false;
        seen.routed = true;
        seen.attempts = seen.attempts.saturating_add(1);
        let wait = retry_delay(base, seen.attempts);
        seen.next_try = Some(now + wait);
        seen.error = Some(error.to_string());
        self.changed.insert(study.clone());
        wait
    }

    /// Makes every failing study due at `now`, its count of attempts kept,
    /// and returns how many: once the cloud answers after an outage, a
    /// study whose fetch the outage failed is taken up by the search that
    /// found the cloud back, not after the backoff the outage earned it. A
    /// study that fails for a reason of its own gets one try more per
    /// outage, and backs off from where it was.
    pub fn due_now(&mut self, now: SystemTime) -> usize {
        if self.failing == 0 {
            return 0;
        }
        let mut due = 0;
        for (uid, seen) in self.studies.iter_mut() {
            if seen.is_failing() && seen.next_try.is_some_and(|t| t > now) {
                seen.next_try = Some(now);
                self.changed.insert(uid.clone());
                due += 1;
            }
        }
        due
    }

    /// Forgets the studies the search has not found for [`FORGET_AFTER`].
    pub fn forget_old(&mut self, now: SystemTime) {
        let mut failing = 0;
        let changed = &mut self.changed;
        self.studies.retain(|uid, seen| {
            let keep = age(seen.last_seen, now) < FORGET_AFTER;
            failing += usize::from(keep && seen.is_failing());
            if !keep {
                changed.insert(uid.clone());
            }
            keep
        });
        self.failing = failing;
    }

    /// Studies to take up at start: those the last run left undone.
    pub fn undone(&self) -> Vec<Uid> {
        self.studies
            .iter()
            .filter(|(_, s)| !s.delivered)
            .map(|(uid, _)| uid.clone())
            .collect()
    }
}

/// The wait after the `attempts`-th failure in a row: `base` doubled each
/// time, at most an hour.
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    crate::backoff::doubled(base, attempts.saturating_sub(1).min(16), Duration::from_secs(3600))
}

/// The records of a watch's destinations, one per destination in the
/// order of its routes, each in the file of that destination's key: the
/// state of a destination follows it into whichever watch delivers there
/// next (one of several, or alone), and a record written when a watch had
/// one destination is that destination's state.
#[derive(Debug)]
pub struct Records {
    /// Key (the file's name), destination as shown, record.
    at: Vec<(String, String, Record)>,
}

impl Records {
    /// Reads the record of each destination (`key`, shown as `destination`).
    pub fn load(cache: &Cache, destinations: &[(String, String)]) -> Result<Records> {
        let mut at = Vec::with_capacity(destinations.len());
        for (key, destination) in destinations {
            at.push((key.clone(), destination.clone(), Record::load(cache, key)?));
        }
        Ok(Records { at })
    }

    /// The record of the `i`-th destination.
    pub fn at(&mut self, i: usize) -> &mut Record {
        &mut self.at[i].2
    }

    /// What any destination's record knows of `study` (the facts the
    /// search gave are the same in each).
    pub fn seen(&self, study: &Uid) -> Option<&Seen> {
        self.at.iter().find_map(|(_, _, r)| r.studies.get(study))
    }

    /// [`Record::due_now`] in every record.
    pub fn due_now(&mut self, now: SystemTime) -> usize {
        self.at.iter_mut().map(|(_, _, r)| r.due_now(now)).sum()
    }

    /// Notes that the search found `study` (see [`Record::found`]) in every
    /// record; true when it has something to fetch or deliver anywhere.
    pub fn found(&mut self, study: &Uid, found: &Found, now: SystemTime, stable_age: Duration) -> bool {
        let mut needs_work = false;
        for (_, _, record) in &mut self.at {
            needs_work |= record.found(study, found, now, stable_age);
        }
        needs_work
    }

    /// The destinations (their indexes) where `study`, now taken up, is
    /// owed something: not known there yet, not delivered, or grown. A
    /// study settled at one destination is left alone there.
    pub fn wanted(&self, study: &Uid, reported: Option<u64>, now: SystemTime, stable_age: Duration) -> Vec<usize> {
        let owed = |r: &Record| {
            r.studies
                .get(study)
                .is_none_or(|s| !s.delivered || s.needs_work(reported, now, stable_age))
        };
        let wanted: Vec<usize> = (0..self.at.len()).filter(|&i| owed(&self.at[i].2)).collect();
        if wanted.is_empty() {
            (0..self.at.len()).collect()
        } else {
            wanted
        }
    }

    pub fn forget_old(&mut self, now: SystemTime) {
        for (_, _, record) in &mut self.at {
            record.forget_old(now);
        }
    }

    pub fn needs_save(&self, now: SystemTime) -> bool {
        self.at.iter().any(|(_, _, r)| r.needs_save(now))
    }

    /// Writes what changed in the records that need it (`all`: every one,
    /// each as a snapshot); each failure is returned, the others are written
    /// all the same.
    pub fn save(&mut self, cache: &Cache, all: bool) -> Vec<anyhow::Error> {
        let now = SystemTime::now();
        let mut errors = Vec::new();
        for (key, destination, record) in &mut self.at {
            let saved = match all {
                true => record.snapshot(cache, key, destination),
                false if record.needs_save(now) => record.save(cache, key, destination),
                false => Ok(()),
            };
            if let Err(e) = saved {
                errors.push(e);
            }
        }
        errors
    }

    /// How many current studies failed their last attempt at some destination.
    pub fn failing(&self) -> usize {
        match self.at.as_slice() {
            [(_, _, one)] => one.failing(),
            all if all.iter().all(|(_, _, r)| r.failing() == 0) => 0,
            all => {
                let failing: std::collections::BTreeSet<&Uid> = all
                    .iter()
                    .flat_map(|(_, _, r)| r.studies.iter().filter(|(_, s)| s.is_failing()).map(|(uid, _)| uid))
                    .collect();
                failing.len()
            }
        }
    }

    /// Studies to take up at start: those the last run left undone anywhere.
    pub fn undone(&self) -> Vec<Uid> {
        let undone: std::collections::BTreeSet<Uid> = self.at.iter().flat_map(|(_, _, r)| r.undone()).collect();
        undone.into_iter().collect()
    }
}

pub(super) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
    }
}

pub(super) mod rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    fn found(n: Option<u64>) -> Found {
        Found {
            accession: Some("ACC1".into()),
            patient_id: Some("P1".into()),
            issuer_of_patient_id: None,
            instances: n,
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn new_growing_settled_and_failing_studies() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_816_800);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Record::default();
        let s = uid("1.2.3");
        assert!(r.found(&s, &found(Some(3)), t0, MIN), "new");
        r.taken_up(&s, Some(3), t0);
        r.delivered(&s, Some(3), at(5));
        assert!(!r.found(&s, &found(Some(3)), at(30), MIN), "delivered at that size");
        assert!(r.found(&s, &found(Some(5)), at(40), MIN), "grew");
        r.taken_up(&s, Some(5), at(40));
        r.delivered(&s, Some(5), at(45));
        assert!(!r.found(&s, &found(Some(5)), at(50), MIN));
        assert!(!r.studies[&s].is_settled(at(50), MIN));
        assert!(r.studies[&s].is_settled(at(200), MIN));

        // Without counts, a study is looked at again until it is settled.
        let q = uid("1.2.4");
        assert!(r.found(&q, &found(None), t0, MIN));
        r.taken_up(&q, None, t0);
        r.delivered(&q, Some(2), at(1));
        assert!(r.found(&q, &found(None), at(30), MIN), "not settled yet");
        r.delivered(&q, Some(2), at(31));
        assert!(
            !r.found(&q, &found(None), at(100), MIN),
            "settled: same size for a minute"
        );
        // A count the listing has not caught up with: looked at again until settled.
        let c = uid("1.2.6");
        r.found(&c, &found(Some(4)), t0, MIN);
        r.taken_up(&c, Some(4), t0);
        r.delivered(&c, Some(3), at(1));
        assert!(r.found(&c, &found(Some(4)), at(30), MIN));
        assert!(!r.found(&c, &found(Some(4)), at(120), MIN));

        // Failures back off.
        let f = uid("1.2.5");
        r.found(&f, &found(Some(1)), t0, MIN);
        assert_eq!(
            r.failed(&f, "down", Duration::from_secs(30), t0),
            Duration::from_secs(30)
        );
        assert!(!r.found(&f, &found(Some(1)), at(10), MIN), "waiting");
        assert!(r.found(&f, &found(Some(1)), at(31), MIN), "due");
        assert_eq!(
            r.failed(&f, "down", Duration::from_secs(30), at(31)),
            Duration::from_secs(60)
        );
        assert_eq!(retry_delay(Duration::from_secs(30), 40), Duration::from_secs(3600));
        assert_eq!(r.undone(), vec![f.clone()]);

        // Forgotten when not found for a week.
        r.forget_old(at(3600));
        assert_eq!(r.studies.len(), 4);
        r.found(&s, &found(Some(5)), t0 + FORGET_AFTER, MIN);
        r.forget_old(t0 + FORGET_AFTER + Duration::from_secs(1000));
        assert_eq!(r.studies.keys().collect::<Vec<_>>(), vec![&s]);
    }

    /// After an outage of the cloud a failing study is due at once, its
    /// attempts kept, so that a failure of its own backs off from there;
    /// a delivered study is left as it is.
    #[test]
    fn due_now_ends_the_wait_of_failing_studies_only() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_816_800);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Record::default();
        let (ok, failing) = (uid("1.2.3"), uid("1.2.4"));
        for s in [&ok, &failing] {
            r.found(s, &found(Some(1)), t0, MIN);
            r.taken_up(s, Some(1), t0);
        }
        r.delivered(&ok, Some(1), at(1));
        assert_eq!(r.due_now(at(2)), 0, "nothing failing");
        r.failed(&failing, "down", Duration::from_secs(30), at(1));
        r.failed(&failing, "down", Duration::from_secs(30), at(2));
        assert!(!r.found(&failing, &found(Some(1)), at(3), MIN), "waiting");
        assert_eq!(r.due_now(at(3)), 1);
        assert!(r.needs_save(at(3)));
        assert!(r.found(&failing, &found(Some(1)), at(3), MIN), "due");
        assert!(!r.found(&ok, &found(Some(1)), at(3), MIN));
        assert_eq!(
            r.failed(&failing, "down", Duration::from_secs(30), at(4)),
            Duration::from_secs(120),
            "backs off from where it was"
        );
    }

    /// A search that finds the same studies again is the router at rest:
    /// nothing to write, and nothing allocated per study (the whole
    /// record used to be rewritten and synced at every search).
    #[test]
    fn finding_the_same_studies_again_writes_nothing_and_allocates_nothing() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_816_800);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut r = Record::default();
        let studies: Vec<Uid> = (0..300).map(|i| uid(&format!("1.2.3.{i}"))).collect();
        for s in &studies {
            assert!(r.found(s, &found(Some(3)), t0, MIN));
            r.taken_up(s, Some(3), t0);
            r.delivered(s, Some(3), at(1));
        }
        r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        let again = found(Some(3));
        for poll in 2..20 {
            let (needs, allocated) =
                crate::testalloc::measure(|| studies.iter().filter(|s| r.found(s, &again, at(poll * 5), MIN)).count());
            assert_eq!(needs, 0);
            assert_eq!(allocated.total, 0, "search {poll} allocated per study");
            assert!(!r.needs_save(at(poll * 5)), "search {poll} would rewrite the record");
            assert_eq!(r.failing(), 0);
        }
        // Taken up again at the size it had: still nothing to write.
        r.taken_up(&studies[0], Some(3), at(200));
        assert!(!r.needs_save(at(200)));
        // The times it was seen reach the disk once a day at the latest...
        let later = SystemTime::now() + REFRESH_EVERY;
        assert!(r.needs_save(later));
        // ...and with the next change at once, as a change of state does.
        r.found(&studies[1], &found(Some(3)), at(300), MIN);
        r.failed(&studies[1], "down", MIN, at(300));
        assert_eq!(r.failing(), 1);
        assert!(r.needs_save(at(300)));
        r.delivered(&studies[1], Some(3), at(310));
        assert_eq!(r.failing(), 0);
    }

    /// Each destination keeps its own record: one written with a single destination is that
    /// destination's state, a study settled at one destination and failing at another is
    /// owed only where it failed, and one routed nowhere here is settled without a delivery.
    #[test]
    fn each_destination_has_its_record_and_a_study_is_owed_only_where_it_failed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let now = SystemTime::now();
        let (s, t) = (uid("1.2.3"), uid("1.2.4"));
        // What a watch with one destination left.
        let mut old = Record::default();
        old.found(&s, &found(Some(3)), now, MIN);
        old.taken_up(&s, Some(3), now);
        old.delivered(&s, Some(3), now);
        old.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        let text = String::from_utf8(cache.read_watch_record("PACS@h_104", MAX_FILE).unwrap().unwrap()).unwrap();
        assert!(!text.contains("routed"), "written as before: {text}");

        let places = [
            ("PACS@h_104".to_string(), "PACS@h:104".to_string()),
            ("WS@h_105".to_string(), "WS@h:105".to_string()),
        ];
        let mut r = Records::load(&cache, &places).unwrap();
        assert!(r.found(&s, &found(Some(3)), now, MIN), "new at ws");
        assert_eq!(r.wanted(&s, Some(3), now, MIN), [1], "owed at ws only");
        r.at(1).taken_up(&s, Some(3), now);
        r.at(1).failed(&s, "ws is down", MIN, now);
        assert_eq!(r.failing(), 1);
        assert_eq!(r.undone(), std::slice::from_ref(&s));
        let later = now + MIN * 2;
        assert!(r.found(&s, &found(Some(3)), later, MIN), "due again");
        assert_eq!(r.wanted(&s, Some(3), later, MIN), [1], "still only at ws");
        // Grown: owed at both.
        assert_eq!(r.wanted(&s, Some(4), later, MIN), [0, 1]);

        // Routed nowhere at ws: settled there, and said so in its record.
        r.found(&t, &found(Some(2)), now, MIN);
        for at in r.wanted(&t, Some(2), now, MIN) {
            r.at(at).taken_up(&t, Some(2), now);
        }
        r.at(0).delivered(&t, Some(2), now);
        r.at(1).not_routed(&t, Some(2), now);
        assert!(!r.found(&t, &found(Some(2)), now + MIN * 2, MIN));
        assert!(r.save(&cache, false).is_empty());
        let ws = Record::load(&cache, "WS@h_105").unwrap();
        assert!(!ws.studies[&t].routed && ws.studies[&t].delivered);
        assert!(ws.studies[&s].routed && !ws.studies[&s].delivered);
        assert!(Record::load(&cache, "PACS@h_104").unwrap().studies[&s].routed);
    }

    #[test]
    fn saved_and_loaded_alike() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut r = Record::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_795_816_800);
        r.found(&uid("1.2.3"), &found(Some(3)), now, MIN);
        r.delivered(&uid("1.2.3"), Some(3), now);
        r.found(&uid("1.2.4"), &found(None), now, MIN);
        r.failed(&uid("1.2.4"), "the cloud is down", MIN, now);
        assert!(r.needs_save(now));
        r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        assert!(!r.needs_save(now));
        let back = Record::load(&cache, "PACS@h_104").unwrap();
        assert_eq!(back.studies, r.studies);
        let text = String::from_utf8(cache.read_watch_record("PACS@h_104", MAX_FILE).unwrap().unwrap()).unwrap();
        assert!(text.contains("\"first_seen\": \"2026-11-27T22:00:00Z\""), "{text}");
        assert!(Record::load(&cache, "nothing").unwrap().studies.is_empty());
        cache.write_watch_record("bad", b"{\"version\": 99}").unwrap();
        assert!(format!("{:#}", Record::load(&cache, "bad").unwrap_err()).contains("remove it"));
    }

    /// Now, as the record keeps times.
    fn whole_seconds() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    /// A window of `n` studies, delivered, written (as a snapshot).
    fn window(cache: &Cache, n: usize, t0: SystemTime) -> Record {
        let mut r = Record::default();
        for i in 0..n {
            let s = uid(&format!("1.2.3.{}", 100_000 + i));
            r.found(&s, &found(Some(3)), t0, MIN);
            r.taken_up(&s, Some(3), t0);
            r.delivered(&s, Some(3), t0);
        }
        r.save(cache, "PACS@h_104", "PACS@h:104").unwrap();
        r
    }

    /// The bytes the record's files took on disk since `before` (the
    /// snapshot's inode, its size, the log's size): a snapshot replaced
    /// counts whole, a log by what was appended.
    fn files(cache_dir: &std::path::Path) -> (u64, u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let dir = cache_dir.join("watch");
        let snapshot = std::fs::metadata(dir.join("PACS@h_104.json")).unwrap();
        let log = std::fs::metadata(dir.join("PACS@h_104.log")).map_or(0, |m| m.len());
        (snapshot.ino(), snapshot.len(), log)
    }

    fn written(before: (u64, u64, u64), after: (u64, u64, u64)) -> u64 {
        let snapshot = if before.0 == after.0 { 0 } else { after.1 };
        snapshot + after.2.saturating_sub(before.2)
    }

    /// While busy, a change of state costs its own line, whatever the
    /// size of the window: the whole record used to be rewritten and
    /// synced (here 400 times more for a window of 2000 studies).
    #[test]
    fn a_busy_write_costs_what_changed_not_the_window() {
        let t0 = whole_seconds() - Duration::from_secs(3600);
        let mut costs = Vec::new();
        for n in [20, 2000] {
            let dir = tempfile::tempdir().unwrap();
            let cache = Cache::open(dir.path()).unwrap();
            let mut r = window(&cache, n, t0);
            let mut cost = Vec::new();
            for i in 0..5 {
                let s = uid(&format!("1.2.3.{}", 100_000 + i));
                let before = files(dir.path());
                r.failed(&s, "the destination is down", MIN, t0);
                assert!(r.needs_save(t0));
                r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
                assert!(!r.needs_save(t0));
                cost.push(written(before, files(dir.path())));
            }
            assert_eq!(Record::load(&cache, "PACS@h_104").unwrap().studies, r.studies);
            costs.push(cost);
        }
        assert!(costs[0].iter().all(|&c| c > 0 && c < 1024), "{costs:?}");
        assert_eq!(costs[0], costs[1], "bytes written per change, with 20 and 2000 studies");
    }

    /// A power cut in the middle of an append leaves a last line cut short:
    /// it is ignored, and the next write is a snapshot, so that no line is
    /// appended to it.
    #[test]
    fn a_torn_last_line_is_ignored_and_the_next_write_is_a_snapshot() {
        let t0 = whole_seconds();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut r = window(&cache, 3, t0);
        let (a, b) = (uid("1.2.3.100000"), uid("1.2.3.100001"));
        r.failed(&a, "down", MIN, t0);
        r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        let logged = r.studies.clone();
        let log = dir.path().join("watch").join("PACS@h_104.log");
        let whole = std::fs::read(&log).unwrap();
        r.failed(&b, "down", MIN, t0);
        r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        let longer = std::fs::read(&log).unwrap();
        // The second line, cut in its middle.
        std::fs::write(&log, &longer[..whole.len() + (longer.len() - whole.len()) / 2]).unwrap();
        let mut back = Record::load(&cache, "PACS@h_104").unwrap();
        assert_eq!(back.studies, logged, "the first change kept, the torn one ignored");
        assert_eq!(back.failing(), 1);
        let before = files(dir.path());
        back.failed(&b, "down again", MIN, t0);
        back.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        assert_ne!(files(dir.path()).0, before.0, "a snapshot");
        assert_eq!(std::fs::read(&log).unwrap(), b"");
        assert_eq!(Record::load(&cache, "PACS@h_104").unwrap().studies, back.studies);
    }

    /// The log is folded into a new snapshot once it would outgrow the
    /// bound; lines of an older generation (a crash after the snapshot's
    /// rename, before the log was emptied) are skipped; and a study
    /// forgotten stays forgotten.
    #[test]
    fn the_log_is_folded_into_a_snapshot_once_it_outgrows_it() {
        let t0 = whole_seconds();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut r = window(&cache, 3, t0);
        let s = uid("1.2.3.100000");
        let log = dir.path().join("watch").join("PACS@h_104.log");
        let mut snapshots = 0;
        let mut largest = 0;
        for i in 0..200 {
            let before = files(dir.path());
            r.failed(&s, &format!("failure {i}"), MIN, t0);
            r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
            let after = files(dir.path());
            snapshots += usize::from(after.0 != before.0);
            largest = largest.max(after.2);
        }
        assert!(snapshots >= 2, "{snapshots} snapshots");
        assert!(largest <= LOG_BOUND, "the log grew to {largest} bytes");
        let back = Record::load(&cache, "PACS@h_104").unwrap();
        assert_eq!(back.studies, r.studies);
        assert_eq!(back.studies[&s].attempts, 200);

        // A crash between the snapshot and the emptying of the log.
        let stale = std::fs::read(&log).unwrap();
        r.failed(&s, "after the snapshot", MIN, t0);
        r.snapshot(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        std::fs::write(&log, &stale).unwrap();
        let back = Record::load(&cache, "PACS@h_104").unwrap();
        assert_eq!(back.studies[&s].error.as_deref(), Some("after the snapshot"));

        // Forgotten, in the log.
        let mut r = back;
        r.found(&uid("1.2.3.100001"), &found(Some(3)), t0 + FORGET_AFTER, MIN);
        r.forget_old(t0 + FORGET_AFTER + MIN);
        r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        let back = Record::load(&cache, "PACS@h_104").unwrap();
        assert_eq!(back.studies.keys().collect::<Vec<_>>(), vec![&uid("1.2.3.100001")]);
    }

    /// A record written by the version before the log (a snapshot alone,
    /// version 1) is read, and its next write is a snapshot of this version.
    #[test]
    fn a_record_of_the_previous_version_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let old = br#"{
  "version": 1,
  "destination": "PACS@h:104",
  "studies": {
    "1.2.3": {
      "accession": "ACC1", "patient_id": "P1", "issuer_of_patient_id": null, "delivered": true,
      "cloud_instances": 3, "instances": 3, "first_seen": "2026-11-27T22:00:00Z",
      "last_seen": "2026-11-27T22:05:00Z", "changed_at": "2026-11-27T22:00:00Z",
      "delivered_at": "2026-11-27T22:01:00Z", "attempts": 0, "next_try": null, "error": null
    },
    "1.2.4": {
      "accession": null, "patient_id": null, "issuer_of_patient_id": null, "delivered": false,
      "cloud_instances": null, "instances": null, "first_seen": "2026-11-27T22:00:00Z",
      "last_seen": "2026-11-27T22:00:00Z", "changed_at": "2026-11-27T22:00:00Z",
      "delivered_at": null, "attempts": 2, "next_try": "2026-11-27T22:02:00Z", "error": "the cloud is down"
    }
  }
}"#;
        cache.write_watch_record("PACS@h_104", old).unwrap();
        let mut r = Record::load(&cache, "PACS@h_104").unwrap();
        assert!(r.studies[&uid("1.2.3")].delivered);
        assert_eq!(r.studies[&uid("1.2.4")].error.as_deref(), Some("the cloud is down"));
        assert_eq!(r.failing(), 1);
        assert_eq!(r.undone(), vec![uid("1.2.4")]);
        let now = UNIX_EPOCH + Duration::from_secs(1_795_816_800);
        r.delivered(&uid("1.2.4"), Some(1), now);
        r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        let text = String::from_utf8(cache.read_watch_record("PACS@h_104", MAX_FILE).unwrap().unwrap()).unwrap();
        assert!(
            text.contains("\"version\": 2") && text.contains("\"generation\": 1"),
            "{text}"
        );
        let back = Record::load(&cache, "PACS@h_104").unwrap();
        assert_eq!(back.studies, r.studies);
        assert_eq!(back.failing(), 0);
    }

    /// A log damaged before its last line, or larger than retriever writes,
    /// is refused (fail closed: the studies it says were delivered would be
    /// sent again, those it says failed would not be), without reading it all.
    #[test]
    fn a_damaged_or_oversized_log_is_refused() {
        let t0 = whole_seconds();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut r = window(&cache, 2, t0);
        r.failed(&uid("1.2.3.100000"), "down", MIN, t0);
        r.save(&cache, "PACS@h_104", "PACS@h:104").unwrap();
        let log = dir.path().join("watch").join("PACS@h_104.log");
        let good = std::fs::read(&log).unwrap();

        let mut bad = b"{\"g\":1,\"study\":\x00\x00\x00\n".to_vec();
        bad.extend_from_slice(&good);
        std::fs::write(&log, &bad).unwrap();
        let e = format!("{:#}", Record::load(&cache, "PACS@h_104").unwrap_err());
        assert!(
            e.contains("`PACS@h_104.log`") && e.contains("line 1") && e.contains("remove it"),
            "{e}"
        );

        let mut long = vec![b' '; MAX_LINE + 1];
        long.push(b'\n');
        long.extend_from_slice(&good);
        std::fs::write(&log, &long).unwrap();
        let e = format!("{:#}", Record::load(&cache, "PACS@h_104").unwrap_err());
        assert!(e.contains("longer than"), "{e}");

        let file = std::fs::File::create(&log).unwrap();
        file.set_len(MAX_FILE + 1).unwrap();
        let (result, held) = crate::testalloc::measure(|| Record::load(&cache, "PACS@h_104"));
        let e = format!("{:#}", result.unwrap_err());
        assert!(e.contains("larger than") && e.contains("remove it"), "{e}");
        assert!(held.peak < 3 * MAX_FILE as usize, "held {} bytes", held.peak);
    }
}
