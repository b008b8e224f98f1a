//! The per-study manifest: what was asked for, why, when, and which
//! instances the study is expected to hold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why a study is in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    /// Asked for directly, by accession number or Study Instance UID.
    Current { requested_as: String },
    /// Chosen as a prior of another study.
    Prior { of: String },
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Current { .. } => f.write_str("current"),
            Role::Prior { of } => write!(f, "prior of {of}"),
        }
    }
}

/// Facts about a study, as the cloud described it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyInfo {
    pub study_uid: String,
    pub accession: Option<String>,
    pub patient_id: Option<String>,
    pub issuer_of_patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    #[serde(default)]
    pub modalities: Vec<String>,
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
    pub expected: BTreeMap<String, String>,
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
