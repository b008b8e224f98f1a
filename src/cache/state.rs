//! The one answer to "what state is this study in": how many of its
//! expected instances the cache holds, whether it is complete, and where it
//! stands with each destination it was sent to. `ls`, `prune`, `store` and
//! `watch` read it here rather than each counting manifests, files and
//! journal lines its own way.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{DeliveryState, Instance, Journals, Manifest};
use crate::uid::Uid;

/// A study as its manifest, its instance files and its delivery journals
/// describe it at one moment.
#[derive(Debug, Clone)]
pub struct StudyStatus {
    pub manifest: Manifest,
    /// The instance files present, listed or not.
    pub present: BTreeMap<Uid, Instance>,
    /// Every delivery journal of the study.
    pub journals: Journals,
}

/// Where a study's expected instances stand with one destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Stored, with or without a warning.
    pub delivered: usize,
    /// Stored with a warning (also counted in `delivered`).
    pub warnings: usize,
    /// Last attempt failed.
    pub failed: usize,
    /// Never tried.
    pub pending: usize,
    /// Instances the study expects.
    pub total: usize,
}

impl DeliveryCounts {
    /// Every expected instance is at the destination (a study with none is not).
    pub fn is_all_delivered(&self) -> bool {
        self.total > 0 && self.delivered == self.total
    }
}

impl StudyStatus {
    pub(super) fn new(manifest: Manifest, present: BTreeMap<Uid, Instance>, journals: Journals) -> StudyStatus {
        StudyStatus {
            manifest,
            present,
            journals,
        }
    }

    /// Instances the manifest lists (zero until the fetch has listed them).
    pub fn total(&self) -> usize {
        self.manifest.expected.len()
    }

    /// Listed instances whose file is in the cache.
    pub fn have(&self) -> usize {
        self.manifest
            .expected
            .keys()
            .filter(|sop| self.present.contains_key(*sop))
            .count()
    }

    /// Bytes of the instance files present.
    pub fn bytes(&self) -> u64 {
        self.present.values().map(|i| i.bytes).sum()
    }

    /// The fetch finished it and every listed instance is here.
    pub fn is_complete(&self) -> bool {
        self.manifest.is_complete() && self.have() == self.total()
    }

    /// Complete, and has something to deliver.
    pub fn is_deliverable(&self) -> bool {
        self.is_complete() && self.total() > 0
    }

    /// The last journal record of each instance for `destination` (a destination key).
    pub fn records(&self, destination: &str) -> Option<&BTreeMap<Uid, super::Delivery>> {
        self.journals.get(destination)
    }

    /// Whether `sop` is recorded as delivered to `destination`.
    pub fn is_delivered(&self, destination: &str, sop: &Uid) -> bool {
        self.records(destination)
            .and_then(|r| r.get(sop))
            .is_some_and(|d| d.state.is_delivered())
    }

    /// The instances recorded as delivered to `destination`, listed or not
    /// (a study may grow: what was sent stays sent).
    pub fn delivered(&self, destination: &str) -> impl Iterator<Item = &Uid> + '_ {
        self.records(destination)
            .into_iter()
            .flatten()
            .filter(|(_, d)| d.state.is_delivered())
            .map(|(sop, _)| sop)
    }

    /// Where the expected instances stand with `destination`.
    pub fn counts(&self, destination: &str) -> DeliveryCounts {
        let mut c = DeliveryCounts {
            total: self.total(),
            ..DeliveryCounts::default()
        };
        let records = self.records(destination);
        for sop in self.manifest.expected.keys() {
            match records.and_then(|r| r.get(sop)).map(|d| d.state) {
                Some(DeliveryState::Delivered) => c.delivered += 1,
                Some(DeliveryState::Warning) => {
                    c.delivered += 1;
                    c.warnings += 1;
                }
                Some(DeliveryState::Failed) => c.failed += 1,
                None => c.pending += 1,
            }
        }
        c
    }

    /// Each destination with a journal, and where the study stands with it.
    pub fn destinations(&self) -> impl Iterator<Item = (&str, DeliveryCounts)> + '_ {
        self.journals.keys().map(|key| (key.as_str(), self.counts(key)))
    }

    /// The destination whose journal holds every instance of the complete
    /// study as delivered: `destination` only, or with `None` any of them.
    pub fn delivered_to(&self, destination: Option<&str>) -> Option<String> {
        if !self.manifest.is_complete() {
            return None;
        }
        self.destinations()
            .filter(|(key, _)| destination.is_none_or(|d| d == *key))
            .find(|(_, counts)| counts.is_all_delivered())
            .map(|(key, _)| key.to_string())
    }
}

impl super::Cache {
    /// A study's state, read without a lock (a snapshot); `None` when it has no manifest.
    pub fn study_status(&self, study: &Uid) -> Result<Option<StudyStatus>> {
        let Some(manifest) = self.read_manifest(study)? else {
            return Ok(None);
        };
        let present = self.present(study)?;
        let journals = self.journals(study)?;
        Ok(Some(StudyStatus::new(manifest, present, journals)))
    }
}

impl super::StudyEntry {
    /// The state of the locked study (see [`super::Cache::study_status`]).
    pub fn status(&self) -> Result<Option<StudyStatus>> {
        let Some(manifest) = self.manifest()? else {
            return Ok(None);
        };
        let present = self.present()?;
        let journals = self.journals()?;
        Ok(Some(StudyStatus::new(manifest, present, journals)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, Delivery, LockMode, StudyInfo};

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    fn record(sop: &str, state: DeliveryState) -> Delivery {
        Delivery {
            sop: uid(sop),
            state,
            status: Some(0),
            detail: None,
            at: "2026-11-27T00:00:00Z".into(),
            coerced: None,
        }
    }

    /// A study listing three instances, of which `have` are in the cache.
    fn study(cache: &Cache, have: usize, complete: bool) -> Uid {
        let study = uid("1.2.3");
        let entry = cache.lock_study(&study, LockMode::Exclusive, || {}).unwrap();
        let sops = ["1.2.3.1", "1.2.3.2", "1.2.3.3"];
        entry
            .write_manifest(&Manifest {
                version: Manifest::VERSION,
                study: StudyInfo::new(study.clone()),
                roles: vec![],
                fetched_at: "2026-11-27T00:00:00Z".into(),
                completed_at: complete.then(|| "2026-11-27T00:00:01Z".into()),
                expected: sops.iter().map(|s| (uid(s), uid("1.2.3.9"))).collect(),
            })
            .unwrap();
        for sop in &sops[..have] {
            entry.put_test_instance(&uid("1.2.3.9"), &uid(sop), 1).unwrap();
        }
        // A file the listing does not know is no instance of the study.
        entry.put_test_instance(&uid("1.2.3.9"), &uid("1.2.3.7"), 1).unwrap();
        study
    }

    #[test]
    fn have_total_and_complete_count_listed_instances_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let s = study(&cache, 2, true);
        let status = cache.study_status(&s).unwrap().unwrap();
        assert_eq!((status.have(), status.total()), (2, 3));
        assert!(!status.is_complete(), "an instance is missing");
        assert!(status.bytes() > 0);

        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let s = study(&cache, 3, false);
        let status = cache.study_status(&s).unwrap().unwrap();
        assert!(!status.is_complete(), "the fetch did not finish it");

        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let s = study(&cache, 3, true);
        let status = cache.study_status(&s).unwrap().unwrap();
        assert!(status.is_complete() && status.is_deliverable());
        let mut empty = status.clone();
        empty.manifest.expected.clear();
        assert!(empty.is_complete() && !empty.is_deliverable());
        assert!(cache.study_status(&uid("1.2.4")).unwrap().is_none());
    }

    #[test]
    fn counts_per_destination_follow_the_last_record_of_listed_instances() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let s = study(&cache, 3, true);
        let entry = cache.lock_study(&s, LockMode::Shared, || {}).unwrap();
        let mut j = entry.journal("A").unwrap();
        j.record(&record("1.2.3.1", DeliveryState::Failed)).unwrap();
        j.record(&record("1.2.3.1", DeliveryState::Delivered)).unwrap();
        j.record(&record("1.2.3.2", DeliveryState::Warning)).unwrap();
        j.record(&record("1.2.3.3", DeliveryState::Failed)).unwrap();
        // Not listed: counts for nothing.
        j.record(&record("1.2.3.7", DeliveryState::Delivered)).unwrap();
        let mut k = entry.journal("B").unwrap();
        for sop in ["1.2.3.1", "1.2.3.2", "1.2.3.3"] {
            k.record(&record(sop, DeliveryState::Delivered)).unwrap();
        }
        drop((j, k));

        let status = entry.status().unwrap().unwrap();
        let a = status.counts("A");
        assert_eq!(
            a,
            DeliveryCounts {
                delivered: 2,
                warnings: 1,
                failed: 1,
                pending: 0,
                total: 3
            }
        );
        assert!(!a.is_all_delivered());
        assert_eq!(status.counts("C").pending, 3, "no journal: nothing tried");
        assert!(status.is_delivered("A", &uid("1.2.3.1")) && !status.is_delivered("A", &uid("1.2.3.3")));
        let sent: Vec<&str> = status.delivered("A").map(Uid::as_str).collect();
        assert_eq!(sent, ["1.2.3.1", "1.2.3.2", "1.2.3.7"]);
        assert_eq!(status.delivered_to(None), Some("B".into()));
        assert_eq!(status.delivered_to(Some("A")), None);
        let keys: Vec<&str> = status.destinations().map(|(k, _)| k).collect();
        assert_eq!(keys, ["A", "B"]);
        // The unlocked snapshot says the same.
        let snapshot = cache.study_status(&s).unwrap().unwrap();
        assert_eq!(snapshot.counts("A"), a);
    }
}
