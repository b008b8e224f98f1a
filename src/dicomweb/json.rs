//! One object of a QIDO-RS answer in the DICOM JSON model (PS3.18 §F.2):
//! a map from a tag written as eight hex digits to `{"vr": .., "Value": [..]}`.
//!
//! Clouds differ in small ways (numbers sent as strings, lowercase tags, a
//! Value array that is empty or missing), so the accessors are lenient about
//! the shape and strict only about what the rest of the program relies on:
//! UIDs go through [`Uid::parse`] before anyone can use them in a path.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use anyhow::{Context, Result, anyhow};
use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::uid::Uid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DicomJson(Map<String, Value>);

impl DicomJson {
    /// The first value as a string: a person name gives its Alphabetic
    /// component, a number its decimal form. `None` when the attribute is
    /// absent, has no value, or the value is empty.
    pub fn string(&self, tag: u32) -> Option<String> {
        self.values(tag)?.iter().find_map(value_string)
    }

    /// Every value that can be read as a string, in order (for multi-valued
    /// attributes such as ModalitiesInStudy).
    pub fn strings(&self, tag: u32) -> Vec<String> {
        self.values(tag)
            .map(|v| v.iter().filter_map(value_string).collect())
            .unwrap_or_default()
    }

    /// The first value as a checked UID; the error names the attribute.
    pub fn uid(&self, tag: u32) -> Result<Uid> {
        let raw = self
            .string(tag)
            .ok_or_else(|| anyhow!("the cloud's answer has no {}", tag_name(tag)))?;
        Uid::parse(&raw).with_context(|| format!("the cloud's answer has an invalid {}", tag_name(tag)))
    }

    /// The first value as an integer (IS, US, UL, SL, ...), whether the cloud
    /// sent it as a JSON number or as a string.
    pub fn int(&self, tag: u32) -> Option<i64> {
        match self.values(tag)?.first()? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn values(&self, tag: u32) -> Option<&Vec<Value>> {
        let key = format!("{tag:08X}");
        let element = self.0.get(&key).or_else(|| self.0.get(&key.to_ascii_lowercase()))?;
        element.get("Value")?.as_array()
    }
}

/// The results a search has handed out, by identity: the UID that
/// identifies a result at its level, or the whole result when it has none.
/// Kept as 128-bit keyed hashes, so that memory grows by 24 bytes a result
/// and a server cannot choose UIDs that collide. Each identity remembers the
/// pass of the search that last saw it, so that a search started again can
/// tell the results it has met in this pass from those of the one before.
#[derive(Default)]
pub struct Identities {
    keys: (RandomState, RandomState),
    seen: HashMap<Identity, u32>,
    pass: u32,
}

/// One result's identity (see [`Identities`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity(u64, u64);

/// What a search knew of a result before meeting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Nothing: it is new.
    New,
    /// Met in an earlier pass (so handed out), not yet in this one.
    EarlierPass,
    /// Met already in this pass.
    ThisPass,
}

impl Identities {
    pub fn identity(&self, json: &DicomJson, id_tag: u32) -> Identity {
        let id = match json.string(id_tag) {
            Some(uid) => format!("uid:{}", uid.trim_end_matches(['\0', ' '])),
            None => format!("json:{}", serde_json::to_string(&json.0).unwrap_or_default()),
        };
        Identity(self.keys.0.hash_one(&id), self.keys.1.hash_one(&id))
    }

    /// Records that this pass met `id`, and says what was known of it.
    pub fn see(&mut self, id: Identity) -> Seen {
        match self.seen.insert(id, self.pass) {
            None => Seen::New,
            Some(pass) if pass == self.pass => Seen::ThisPass,
            Some(_) => Seen::EarlierPass,
        }
    }

    /// Begins a new pass: every result known so far counts as met earlier.
    pub fn start_again(&mut self) {
        self.pass += 1;
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

fn value_string(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => o.get("Alphabetic")?.as_str()?.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// "StudyInstanceUID (0020,000D)", or just the tag for a private or unknown one.
pub fn tag_name(tag: u32) -> String {
    let t = Tag((tag >> 16) as u16, tag as u16);
    let code = format!("({:04X},{:04X})", t.0, t.1);
    match StandardDataDictionary.by_tag(t) {
        Some(e) => format!("{} {code}", e.alias()),
        None => format!("attribute {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DicomJson {
        serde_json::from_str(
            r#"{
                "0020000D": {"vr": "UI", "Value": ["1.2.840.113619.2.1"]},
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]},
                "00080061": {"vr": "CS", "Value": ["CT", "SR", ""]},
                "00201208": {"vr": "IS", "Value": ["42 "]},
                "00201206": {"vr": "IS", "Value": [7]},
                "00280010": {"vr": "US", "Value": [512.0]},
                "00080050": {"vr": "SH"},
                "00080020": {"vr": "DA", "Value": []},
                "0020000e": {"vr": "UI", "Value": ["1.2.3/../4"]},
                "00081030": {"vr": "LO", "Value": [""]}
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn strings_and_names() {
        let j = sample();
        assert_eq!(j.string(0x0020_000D).as_deref(), Some("1.2.840.113619.2.1"));
        assert_eq!(j.string(0x0010_0010).as_deref(), Some("DOE^JANE"));
        assert_eq!(j.strings(0x0008_0061), vec!["CT", "SR"]);
        assert_eq!(j.string(0x0008_0050), None);
        assert_eq!(j.string(0x0008_0020), None);
        assert_eq!(j.string(0x0008_1030), None);
        assert_eq!(j.string(0x0009_0001), None);
        assert!(j.strings(0x0008_0050).is_empty());
        assert_eq!(j.string(0x0020_1206).as_deref(), Some("7"));
    }

    #[test]
    fn ints() {
        let j = sample();
        assert_eq!(j.int(0x0020_1208), Some(42));
        assert_eq!(j.int(0x0020_1206), Some(7));
        assert_eq!(j.int(0x0028_0010), Some(512));
        assert_eq!(j.int(0x0010_0010), None);
        assert_eq!(j.int(0x0008_0050), None);
    }

    #[test]
    fn uids_are_checked_and_errors_name_the_tag() {
        let j = sample();
        assert_eq!(j.uid(0x0020_000D).unwrap().as_str(), "1.2.840.113619.2.1");
        let e = format!("{:#}", j.uid(0x0020_000E).unwrap_err());
        assert!(e.contains("SeriesInstanceUID (0020,000E)"), "{e}");
        assert!(e.contains("not a valid DICOM UID"), "{e}");
        let e = format!("{:#}", j.uid(0x0008_0018).unwrap_err());
        assert_eq!(e, "the cloud's answer has no SOPInstanceUID (0008,0018)");
        let e = format!("{:#}", j.uid(0x0009_1001).unwrap_err());
        assert_eq!(e, "the cloud's answer has no attribute (0009,1001)");
    }

    #[test]
    fn identities_are_the_uid_or_the_whole_result() {
        let parse = |s: &str| -> DicomJson { serde_json::from_str(s).unwrap() };
        let mut ids = Identities::default();
        let mut insert = |s: &str| {
            let id = ids.identity(&parse(s), 0x0020_000D);
            ids.see(id) == Seen::New
        };
        assert!(insert(r#"{"0020000D": {"vr": "UI", "Value": ["1.2"]}}"#));
        // The same UID padded, or with other attributes, is the same result.
        let again = r#"{"0020000D": {"vr": "UI", "Value": ["1.2\u0000"]}, "00080050": {"vr": "SH"}}"#;
        assert!(!insert(again));
        assert!(insert(r#"{"0020000D": {"vr": "UI", "Value": ["1.3"]}}"#));
        // Without the UID, the whole result identifies it.
        let bare = r#"{"00080050": {"vr": "SH", "Value": ["A"]}}"#;
        assert!(insert(bare));
        assert!(!insert(bare));
        assert!(insert(r#"{"00080050": {"vr": "SH", "Value": ["B"]}}"#));
        assert_eq!(ids.len(), 4);
    }

    #[test]
    fn a_pass_started_again_tells_earlier_results_from_its_own() {
        let parse = |s: &str| -> DicomJson { serde_json::from_str(s).unwrap() };
        let mut ids = Identities::default();
        let a = ids.identity(&parse(r#"{"0020000D": {"vr": "UI", "Value": ["1.2"]}}"#), 0x0020_000D);
        let b = ids.identity(&parse(r#"{"0020000D": {"vr": "UI", "Value": ["1.3"]}}"#), 0x0020_000D);
        assert_eq!(ids.see(a), Seen::New);
        assert_eq!(ids.see(a), Seen::ThisPass);
        ids.start_again();
        assert_eq!(ids.see(a), Seen::EarlierPass);
        assert_eq!(ids.see(a), Seen::ThisPass);
        assert_eq!(ids.see(b), Seen::New);
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn round_trips_through_serde() {
        let j = sample();
        let back: DicomJson = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(back, j);
    }
}
