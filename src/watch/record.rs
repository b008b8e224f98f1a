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
//! search and reaches the disk with the next change, or at the latest
//! [`REFRESH_EVERY`] after a search saw it, so that a restart forgets
//! nothing much earlier than [`FORGET_AFTER`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::uid::Uid;

/// A study the search has not found for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest the `last_seen` times on disk lag behind those in memory
/// while nothing else changes: a day, so that an idle record is rewritten
/// once a day whatever the size of the window.
pub const REFRESH_EVERY: Duration = Duration::from_secs(24 * 3600);

const VERSION: u32 = 1;

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
    /// A study's state changed since the record was last written.
    dirty: bool,
    /// Only `last_seen` times changed since then (see [`REFRESH_EVERY`]).
    seen_again: bool,
    /// When the record was last written or read.
    synced_at: Option<SystemTime>,
    /// How many studies [`Seen::is_failing`], kept as they change so that
    /// showing it costs nothing however large the window.
    failing: usize,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    destination: String,
    studies: BTreeMap<String, Seen>,
}

impl Record {
    /// Reads the record of `name` (a destination key); an empty record if
    /// there is none. A record this version cannot read is an error rather
    /// than a fresh start, which would send everything again.
    pub fn load(cache: &Cache, name: &str) -> Result<Record> {
        let Some(bytes) = cache.read_watch_record(name)? else {
            return Ok(Record::default());
        };
        let what = || {
            format!(
                "the watch record `{name}.json` in the cache is damaged or from another version; remove it to start afresh (studies in it may then be sent again)"
            )
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).with_context(what)?;
        if disk.version != VERSION {
            anyhow::bail!("{}", what());
        }
        let studies: BTreeMap<Uid, Seen> = disk
            .studies
            .into_iter()
            .filter_map(|(uid, seen)| Uid::parse(&uid).ok().map(|u| (u, seen)))
            .collect();
        let failing = studies.values().filter(|s| s.is_failing()).count();
        Ok(Record {
            studies,
            synced_at: Some(SystemTime::now()),
            failing,
            ..Record::default()
        })
    }

    pub fn save(&mut self, cache: &Cache, name: &str, destination: &str) -> Result<()> {
        let disk = OnDisk {
            version: VERSION,
            destination: destination.to_string(),
            studies: self
                .studies
                .iter()
                .map(|(uid, seen)| (uid.to_string(), seen.clone()))
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&disk).context("failed to encode the watch record")?;
        cache.write_watch_record(name, &bytes)?;
        self.dirty = false;
        self.seen_again = false;
        self.synced_at = Some(SystemTime::now());
        Ok(())
    }

    /// True when the record is to be written: a study's state changed, or
    /// the searches saw studies again and the disk has not been told for
    /// [`REFRESH_EVERY`].
    pub fn needs_save(&self, now: SystemTime) -> bool {
        self.dirty || (self.seen_again && self.synced_at.is_none_or(|t| age(t, now) >= REFRESH_EVERY))
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
            self.dirty = true;
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
            self.dirty = true;
        }
        if found.accession.is_some() && seen.accession != found.accession {
            seen.accession.clone_from(&found.accession);
            self.dirty = true;
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
            self.dirty = true;
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
            self.dirty = true;
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
        self.dirty = true;
        wait
    }

    /// Forgets the studies the search has not found for [`FORGET_AFTER`].
    pub fn forget_old(&mut self, now: SystemTime) {
        let before = self.studies.len();
        let mut failing = 0;
        self.studies.retain(|_, seen| {
            let keep = age(seen.last_seen, now) < FORGET_AFTER;
            failing += usize::from(keep && seen.is_failing());
            keep
        });
        self.failing = failing;
        self.dirty |= self.studies.len() != before;
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

    /// Writes the records that need it (`all`: every one); each failure is
    /// returned, the others are written all the same.
    pub fn save(&mut self, cache: &Cache, all: bool) -> Vec<anyhow::Error> {
        let now = SystemTime::now();
        let mut errors = Vec::new();
        for (key, destination, record) in &mut self.at {
            if (all || record.needs_save(now))
                && let Err(e) = record.save(cache, key, destination)
            {
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
        let text = String::from_utf8(cache.read_watch_record("PACS@h_104").unwrap().unwrap()).unwrap();
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
        let text = String::from_utf8(cache.read_watch_record("PACS@h_104").unwrap().unwrap()).unwrap();
        assert!(text.contains("\"first_seen\": \"2026-11-27T22:00:00Z\""), "{text}");
        assert!(Record::load(&cache, "nothing").unwrap().studies.is_empty());
        cache.write_watch_record("bad", b"{\"version\": 99}").unwrap();
        assert!(format!("{:#}", Record::load(&cache, "bad").unwrap_err()).contains("remove it"));
    }
}
