//! One object of a QIDO-RS answer in the DICOM JSON model (PS3.18 §F.2):
//! a map from a tag written as eight hex digits to `{"vr": .., "Value": [..]}`.
//!
//! Clouds differ in small ways (numbers sent as strings, lowercase tags, a
//! Value array that is empty or missing), so the accessors are lenient about
//! the shape and strict only about what the rest of the program relies on:
//! UIDs go through [`Uid::parse`] before anyone can use them in a path.
//!
//! A `watch` reads every study in its window at every search, so a result
//! is held in a form that is cheap to build: the attributes in a sorted list,
//! each `{"vr": .., "Value": [..]}` without an object and two keys of its own
//! (about half the allocations of a `serde_json::Value`, and half the time to
//! parse), anything else as sent. It reads and writes as the same JSON object.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};

use anyhow::{Context, Result, anyhow};
use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;
use serde::de::value::SeqAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::uid::Uid;

/// One result: its attributes sorted by key, each key once (the last one
/// sent, as for any JSON object).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DicomJson(Vec<(String, Element)>);

/// One attribute's JSON.
#[derive(Debug, Clone, PartialEq)]
enum Element {
    /// An object with at most a string `vr` and an array `Value`: nearly
    /// every attribute.
    Plain {
        vr: Option<String>,
        value: Option<Vec<Value>>,
    },
    /// Anything else (`BulkDataURI`, `InlineBinary`, not an object...).
    Other(Value),
}

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
        let element = self
            .get(&hex_key(tag, b"0123456789ABCDEF"))
            .or_else(|| self.get(&hex_key(tag, b"0123456789abcdef")))?;
        match element {
            Element::Plain { value, .. } => value.as_ref(),
            Element::Other(v) => v.get("Value")?.as_array(),
        }
    }

    fn get(&self, key: &[u8; 8]) -> Option<&Element> {
        let i = self.0.binary_search_by(|(k, _)| k.as_bytes().cmp(key)).ok()?;
        Some(&self.0[i].1)
    }
}

/// `tag` as eight hex digits, without a `String` for each look-up.
fn hex_key(tag: u32, digits: &[u8; 16]) -> [u8; 8] {
    std::array::from_fn(|i| digits[(tag >> (28 - 4 * i) & 0xF) as usize])
}

impl Serialize for DicomJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, element) in &self.0 {
            map.serialize_entry(key, element)?;
        }
        map.end()
    }
}

impl Serialize for Element {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Element::Plain { vr, value } => {
                // In the order of a JSON object's keys, as before.
                let mut map = serializer.serialize_map(None)?;
                if let Some(value) = value {
                    map.serialize_entry("Value", value)?;
                }
                if let Some(vr) = vr {
                    map.serialize_entry("vr", vr)?;
                }
                map.end()
            }
            Element::Other(v) => v.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for DicomJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Attributes;
        impl<'de> Visitor<'de> for Attributes {
            type Value = DicomJson;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_unit<E>(self) -> Result<DicomJson, E> {
                Ok(DicomJson::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DicomJson, A::Error> {
                let mut all: Vec<(String, Element)> = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry()? {
                    all.push(entry);
                }
                // Clouds send the keys sorted; when one does not, sort, the
                // last of a repeated key first so that it is the one kept.
                if !all.windows(2).all(|w| w[0].0 < w[1].0) {
                    all.reverse();
                    all.sort_by(|a, b| a.0.cmp(&b.0));
                    all.dedup_by(|later, kept| later.0 == kept.0);
                }
                Ok(DicomJson(all))
            }
        }
        deserializer.deserialize_map(Attributes)
    }
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ElementVisitor)
    }
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element, A::Error> {
        let (mut vr, mut value) = (None, None);
        while let Some(key) = map.next_key::<Key>()? {
            let (key, v) = match key {
                Key::Vr => match map.next_value()? {
                    Value::String(s) => {
                        vr = Some(s);
                        continue;
                    }
                    other => ("vr".to_string(), other),
                },
                Key::Value => match map.next_value()? {
                    Value::Array(a) => {
                        value = Some(a);
                        continue;
                    }
                    other => ("Value".to_string(), other),
                },
                Key::Other(key) => {
                    let v = map.next_value()?;
                    (key, v)
                }
            };
            // Not a plain attribute: kept whole, as sent.
            let mut all = Map::new();
            if let Some(a) = value {
                all.insert("Value".into(), Value::Array(a));
            }
            if let Some(s) = vr {
                all.insert("vr".into(), Value::String(s));
            }
            all.insert(key, v);
            while let Some((key, v)) = map.next_entry()? {
                all.insert(key, v);
            }
            return Ok(Element::Other(Value::Object(all)));
        }
        Ok(Element::Plain { vr, value })
    }

    fn visit_bool<E>(self, v: bool) -> Result<Element, E> {
        Ok(Element::Other(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Element, E> {
        Ok(Element::Other(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Element, E> {
        Ok(Element::Other(Value::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Element, E> {
        Ok(Element::Other(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Element, E> {
        Ok(Element::Other(Value::String(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Element, E> {
        Ok(Element::Other(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Element, E> {
        Ok(Element::Other(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Element, E> {
        Ok(Element::Other(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Element, D::Error> {
        Value::deserialize(d).map(Element::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Element, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Element::Other)
    }
}

/// A key of an attribute's object; the two usual ones need no `String`.
enum Key {
    Vr,
    Value,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "vr" => Key::Vr,
                    "Value" => Key::Value,
                    _ => Key::Other(v.to_string()),
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
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
            None => format!("json:{}", serde_json::to_string(json).unwrap_or_default()),
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

/// One QIDO-RS answer, checked to be a JSON array, whose results are read
/// one at a time.
///
/// A result read as a [`DicomJson`] takes about fifteen times its size in
/// memory (a map per attribute); read as a whole, a page of 200 studies
/// took 3 MB for a moment at every search, and the allocator kept those
/// pages: the resident memory of a `watch` rose by some 10 kB for each study
/// in its search's window. Read one at a time, a page costs its bytes and
/// one result.
pub struct Page {
    body: Vec<u8>,
    len: usize,
}

impl Page {
    /// Checks that `body` is a JSON array (of anything: each result is
    /// checked when it is read), allocating nothing beyond `body`.
    pub fn parse(body: Vec<u8>) -> serde_json::Result<Page> {
        let len = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&body)?.len();
        Ok(Page { body, len })
    }

    /// How many results it holds.
    pub fn results(&self) -> usize {
        self.len
    }

    /// Hands each result to `each`, in order, until it fails. A result that
    /// is not a DICOM JSON object ends it with `not_json`'s error.
    pub fn each(
        &self,
        each: &mut dyn FnMut(DicomJson) -> Result<()>,
        not_json: &dyn Fn(serde_json::Error) -> anyhow::Error,
    ) -> Result<()> {
        let mut stopped = None;
        let mut de = serde_json::Deserializer::from_slice(&self.body);
        let read = serde::Deserializer::deserialize_seq(
            &mut de,
            EachResult {
                each,
                stopped: &mut stopped,
            },
        );
        match (stopped, read) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(not_json(e)),
            (None, Ok(())) => Ok(()),
        }
    }
}

/// Reads a page's array one [`DicomJson`] at a time; what the callback
/// returned as an error is kept in `stopped`, as serde can carry only its own.
struct EachResult<'a, 'b> {
    each: &'a mut dyn FnMut(DicomJson) -> Result<()>,
    stopped: &'b mut Option<anyhow::Error>,
}

impl<'de> serde::de::Visitor<'de> for EachResult<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of DICOM JSON objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(result) = seq.next_element::<DicomJson>()? {
            if let Err(e) = (self.each)(result) {
                *self.stopped = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
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

/// A page of `studies` as Orthanc answers a search with its fields, for tests.
#[cfg(test)]
pub(crate) fn study_page(studies: std::ops::Range<usize>) -> Vec<u8> {
    let one = |i: usize| {
        format!(
            r#"{{"00080005":{{"vr":"CS","Value":["ISO_IR 100"]}},"00080020":{{"vr":"DA","Value":["20261203"]}},
            "00080030":{{"vr":"TM","Value":["101500"]}},"00080050":{{"vr":"SH","Value":["ACC{i}"]}},
            "00080061":{{"vr":"CS","Value":["CT"]}},"00080090":{{"vr":"PN","Value":[{{"Alphabetic":"DR^WHO"}}]}},
            "00081030":{{"vr":"LO","Value":["CT HEAD"]}},"00100010":{{"vr":"PN","Value":[{{"Alphabetic":"DOE^JANE"}}]}},
            "00100020":{{"vr":"LO","Value":["PAT{i}"]}},"00100021":{{"vr":"LO","Value":["HOSP_A"]}},
            "00100030":{{"vr":"DA","Value":["19700101"]}},"0020000D":{{"vr":"UI","Value":["1.2.826.0.1.3680043.10.543.{i}"]}},
            "00200010":{{"vr":"SH","Value":["1"]}},"00201206":{{"vr":"IS","Value":[1]}},"00201208":{{"vr":"IS","Value":[42]}}}}"#
        )
    };
    format!("[{}]", studies.map(one).collect::<Vec<_>>().join(",")).into_bytes()
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
    fn reads_and_writes_the_json_object_as_sent_whatever_its_shape() {
        // Unsorted and repeated keys (the last one counts), attributes that
        // are not `{"vr", "Value"}` or not objects, and odd members.
        let text = r#"{
            "00201208": {"vr": "IS", "Value": [3]},
            "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
            "00080050": {"Value": ["A"], "vr": "SH", "vr": "LO"},
            "00080050": {"vr": "SH", "Value": ["B"]},
            "7FE00010": {"vr": "OB", "BulkDataURI": "http://x/1"},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^J"}], "InlineBinary": "AA=="},
            "00080061": {"vr": 5, "Value": ["CT"]},
            "00080020": {"vr": "DA", "Value": "20240101"},
            "00081030": "not an object",
            "00081031": [1, {"a": null}],
            "00081032": null,
            "00081033": {},
            "x-extra": true
        }"#;
        let j: DicomJson = serde_json::from_str(text).unwrap();
        let as_value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&j).unwrap(), as_value);
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            serde_json::to_string(&as_value).unwrap()
        );
        assert_eq!(j.string(0x0008_0050).as_deref(), Some("B"));
        assert_eq!(j.int(0x0020_1208), Some(3));
        assert_eq!(j.string(0x0010_0010).as_deref(), Some("DOE^J"));
        assert_eq!(j.strings(0x0008_0061), vec!["CT"]);
        assert_eq!(j.string(0x0008_0020), None);
        assert_eq!(j.string(0x0008_1030), None);
        assert_eq!(j.string(0x7FE0_0010), None);
        assert!(serde_json::from_str::<DicomJson>("[1]").is_err());
        assert!(serde_json::from_str::<DicomJson>(r#"{"0020000D": [1,}"#).is_err());
        // Depth stays bounded by the JSON parser's limit.
        let deep = format!(r#"{{"00081030": {}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(serde_json::from_str::<DicomJson>(&deep).is_err());
        let deep = format!(r#"{{"00081030": {}{}}}"#, r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert!(serde_json::from_str::<DicomJson>(&deep).is_err());
    }

    #[test]
    fn round_trips_through_serde() {
        let j = sample();
        let back: DicomJson = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(back, j);
    }

    /// A page is read one result at a time: what reading it holds at once
    /// is about its bytes, not the many times more its results take as maps
    /// (which the allocator of a long `watch` kept, search after search).
    #[test]
    fn a_page_is_read_one_result_at_a_time() {
        let body = study_page(0..200);
        let size = body.len();
        let ((), whole) = crate::testalloc::measure(|| {
            let results: Vec<DicomJson> = serde_json::from_slice(&body).unwrap();
            assert_eq!(results.len(), 200);
        });
        let mut uids = Vec::new();
        let ((), paged) = crate::testalloc::measure(|| {
            let page = Page::parse(body).unwrap();
            assert_eq!(page.results(), 200);
            let mut take = |j: DicomJson| {
                uids.push(j.string(0x0020_000D).unwrap().len());
                Ok(())
            };
            page.each(&mut take, &|e| anyhow!("{e}")).unwrap();
        });
        assert_eq!(uids.len(), 200);
        assert!(whole.peak > 4 * size, "read whole: {} for {size} bytes", whole.peak);
        assert!(
            paged.peak < size / 4,
            "read a result at a time: {} for {size} bytes",
            paged.peak
        );
    }

    #[test]
    fn a_page_that_is_not_an_array_of_objects_is_refused() {
        assert!(Page::parse(b"{}".to_vec()).is_err());
        assert!(Page::parse(b"[1, 2".to_vec()).is_err());
        let page = Page::parse(br#"[{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}, 7]"#.to_vec()).unwrap();
        let mut seen = 0;
        let mut count = |_| {
            seen += 1;
            Ok(())
        };
        let e = page.each(&mut count, &|e| anyhow!("not DICOM JSON: {e}")).unwrap_err();
        assert!(format!("{e}").starts_with("not DICOM JSON: "), "{e}");
        assert_eq!(seen, 1, "the results before the bad one were read");
        // The callback's own error comes back as it is.
        let page = Page::parse(study_page(0..3)).unwrap();
        let e = page
            .each(&mut |_| Err(anyhow!("enough")), &|e| anyhow!("{e}"))
            .unwrap_err();
        assert_eq!(format!("{e}"), "enough");
    }
}
