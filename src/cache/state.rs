//! The one answer to "what state is this study in": how many of its
//! expected instances the cache holds, whether it is complete, and where it
//! stands with each destination it was sent to. `ls`, `prune`, `store` and
//! `watch` read it here rather than each counting manifests, files and
//! journal lines its own way.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{DeliveryState, Instance, Journals, Manifest};

/// A study as its manifest, its instance files and its delivery journals
/// describe it at one moment.
#[derive(Debug, Clone)]
pub struct StudyStatus {
    pub manifest: Manifest,
    /// The instance files present, listed or not.
    pub present: BTreeMap<String, Instance>,
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
    pub(super) fn new(manifest: Manifest, present: BTreeMap<String, Instance>, journals: Journals) -> StudyStatus {
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
    pub fn records(&self, destination: &str) -> Option<&BTreeMap<String, super::Delivery>> {
        self.journals.get(destination)
    }

    /// Whether `sop` is recorded as delivered to `destination`.
    pub fn is_delivered(&self, destination: &str, sop: &str) -> bool {
        self.records(destination)
            .and_then(|r| r.get(sop))
            .is_some_and(|d| d.state.is_delivered())
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
    pub fn study_status(&self, study: &crate::uid::Uid) -> Result<Option<StudyStatus>> {
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
