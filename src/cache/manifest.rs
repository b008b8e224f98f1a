//! The per-study manifest: what was asked for, why, when, and which
//! instances the study is expected to hold. Its JSON is the cache's on-disk
//! format: UIDs are typed here and written as the plain strings they always
//! were, so that other versions read what this one writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::uid::Uid;

/// Why a study is in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    /// Asked for directly, by accession number or Study Instance UID.
    Current { requested_as: String },
    /// Chosen as a prior of another study.
    Prior { of: Uid },
}

impl Role {
    /// `current` or `prior`, as the JSON lines on stdout name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Current { .. } => "current",
            Role::Prior { .. } => "prior",
        }
    }

    /// The study this one is a prior of.
    pub fn prior_of(&self) -> Option<&Uid> {
        match self {
            Role::Current { .. } => None,
            Role::Prior { of } => Some(of),
        }
    }
}

/// `current`, or `prior of UID`: the role column of the lines on stdout.
impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Current { .. } => f.write_str("current"),
            Role::Prior { of } => write!(f, "prior of {of}"),
        }
    }
}

/// Facts about a study, as the cloud described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyInfo {
    pub study_uid: Uid,
    pub accession: Option<String>,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    #[serde(default)]
    pub modalities: Vec<String>,
    /// The attributes the routing rules read, as the cloud's study search
    /// answered them: tag (8 upper-case hex digits) → values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub study: StudyInfo,
    /// Every reason the study was fetched (a study can be a prior of several).
    pub roles: Vec<Role>,
    /// When the last fetch of this study started (RFC 3339, UTC).
    pub fetched_at: String,
    /// When the study was last found complete; `None` while it is not.
    pub completed_at: Option<String>,
    /// The instances the cloud listed: SOP Instance UID → Series Instance UID.
    pub expected: BTreeMap<Uid, Uid>,
}

impl StudyInfo {
    /// A study of which nothing is known but its UID.
    pub fn new(study_uid: Uid) -> StudyInfo {
        StudyInfo {
            study_uid,
            accession: None,
            patient_id: None,
            issuer_of_patient_id: None,
            patient_name: None,
            study_date: None,
            study_description: None,
            modalities: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }
}

impl Manifest {
    pub const VERSION: u32 = 1;

    pub fn is_complete(&self) -> bool {
        self.completed_at.is_some()
    }

    /// Adds `role` unless the manifest already has it.
    pub fn add_role(&mut self, role: Role) {
        if !self.roles.contains(&role) {
            self.roles.push(role);
        }
    }
}

/// Current time as RFC 3339, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as the versions before typed UIDs wrote it.
    const WRITTEN_BEFORE: &str = r#"{
        "version": 1,
        "study": {
            "study_uid": "1.2.826.0.1.3680043.2.1125.1",
            "accession": "ACC1",
            "patient_id": "PAT1",
            "issuer_of_patient_id": null,
            "patient_name": "DOE^JANE",
            "study_date": "20240101",
            "study_description": "CT CHEST",
            "modalities": ["CT"]
        },
        "roles": [
            {"role": "current", "requested_as": "ACC1"},
            {"role": "prior", "of": "1.2.826.0.1.3680043.2.1125.9"}
        ],
        "fetched_at": "2026-12-03T10:00:00Z",
        "completed_at": "2026-12-03T10:01:00Z",
        "expected": {"1.2.826.0.1.3680043.2.1125.1.1.1": "1.2.826.0.1.3680043.2.1125.1.1"}
    }"#;

    #[test]
    fn a_manifest_of_the_previous_version_reads_and_writes_back_the_same() {
        let manifest: Manifest = serde_json::from_str(WRITTEN_BEFORE).unwrap();
        assert_eq!(manifest.study.study_uid.as_str(), "1.2.826.0.1.3680043.2.1125.1");
        assert_eq!(
            manifest.roles[1].prior_of().map(Uid::as_str),
            Some("1.2.826.0.1.3680043.2.1125.9")
        );
        assert_eq!(manifest.roles[1].to_string(), "prior of 1.2.826.0.1.3680043.2.1125.9");
        let written = serde_json::to_value(&manifest).unwrap();
        let before: serde_json::Value = serde_json::from_str(WRITTEN_BEFORE).unwrap();
        assert_eq!(written, before);
    }

    #[test]
    fn a_manifest_naming_an_invalid_uid_is_refused() {
        let bad = WRITTEN_BEFORE.replace("\"of\": \"1.2.826.0.1.3680043.2.1125.9\"", "\"of\": \"../1.2\"");
        let e = serde_json::from_str::<Manifest>(&bad).unwrap_err().to_string();
        assert!(e.contains("is not a valid DICOM UID"), "{e}");
    }
}
