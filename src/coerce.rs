//! Tag coercion: rules that set, template, map or remove attributes of every
//! instance on its way to a destination (a PACS that keys patients by its own
//! issuer, a viewer that must not see private tags). The rules are read and
//! checked once, when the settings are resolved, so that a wrong rule stops
//! the run before anything is sent; then each instance's data set up to its
//! Pixel Data is re-encoded once with the rules applied, and the pixel data
//! after it is sent as the file holds it. The cached file is never changed.
//!
//! Rules are written as JSON objects, applied in order:
//! `{"set": "IssuerOfPatientID", "value": "HOSP"}`,
//! `{"set": "PatientID", "value": "EXT-{value}"}` (`{value}`: the current value),
//! `{"map": "IssuerOfPatientID", "values": {"CLOUD": "HOSP"}, "else": "OTHER"}`,
//! `{"remove": "InstitutionName"}`, `{"remove": "private"}`. Attributes are
//! named by keyword or as `(gggg,eeee)`, and act on the top-level data set
//! (`remove: private` also empties the sequences' items of private tags).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, TagRange};
use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::Value;

use crate::intake::walk;

/// The most of an instance before its Pixel Data that is re-encoded in
/// memory. Real headers are kilobytes; a structured report without pixels
/// can reach megabytes. Beyond this the instance is refused, not read.
pub const MAX_HEAD: u64 = 32 * 1024 * 1024;

const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";

/// The rules for one destination, in order. Cheap to clone. Empty: every
/// instance goes out as its file holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coercions {
    rules: Arc<[Rule]>,
    /// A short hash of the rules as written, recorded with each delivery.
    fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// Set (creating if absent) from a template.
    Set {
        attr: Attr,
        template: Template,
    },
    /// Replace a present value found in `values`, else by `otherwise` if given.
    Map {
        attr: Attr,
        values: BTreeMap<String, String>,
        otherwise: Option<String>,
    },
    Remove {
        tag: Tag,
    },
    RemovePrivate,
}

/// An attribute a rule writes to, with the VR its values are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attr {
    tag: Tag,
    vr: VR,
    name: String,
}

/// A value with `{value}` placeholders, held as the literal pieces between them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<String>);

impl Template {
    fn parse(raw: &str) -> Result<Template, String> {
        let pieces: Vec<String> = raw.split("{value}").map(str::to_string).collect();
        if pieces.iter().any(|p| p.contains(['{', '}'])) {
            return Err(format!(
                "its value `{raw}` has braces other than `{{value}}`, the only placeholder there is"
            ));
        }
        Ok(Template(pieces))
    }

    fn render(&self, current: &str) -> String {
        self.0.join(current)
    }
}

/// A rule refused when the settings are read: `coerce[index]` and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub index: usize,
    pub why: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`coerce[{}]` is refused: {}", self.index, self.why)
    }
}

impl std::error::Error for RuleError {}

impl Coercions {
    /// Reads and checks the rules of a `coerce` list.
    pub fn parse(list: &[Value]) -> Result<Coercions, RuleError> {
        let rules = list
            .iter()
            .enumerate()
            .map(|(index, raw)| parse_rule(raw).map_err(|why| RuleError { index, why }))
            .collect::<Result<Vec<Rule>, RuleError>>()?;
        let fingerprint = if rules.is_empty() {
            String::new()
        } else {
            fingerprint(&Value::Array(list.to_vec()).to_string())
        };
        Ok(Coercions {
            rules: rules.into(),
            fingerprint,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What the journal records for a copy made with these rules; `None`
    /// when there are none.
    pub fn fingerprint(&self) -> Option<&str> {
        (!self.is_empty()).then_some(self.fingerprint.as_str())
    }

    /// Applies the rules, in order, to a data set. `Err` says why this
    /// instance cannot be coerced (a templated value the VR does not take).
    pub fn apply(&self, obj: &mut InMemDicomObject) -> Result<(), String> {
        for (index, rule) in self.rules.iter().enumerate() {
            apply_rule(rule, obj).map_err(|why| format!("`coerce[{index}]`: {why}"))?;
        }
        // Group lengths are retired, and a changed value would make them lie.
        obj.retain(|e| e.tag().1 != 0x0000);
        Ok(())
    }

    /// The data set of the instance file at `path` (whose data set starts
    /// at `data_set_at`, in `transfer_syntax`) up to its Pixel Data,
    /// coerced and encoded again in the same syntax; with the offset in the
    /// file where the rest (Pixel Data and what follows) starts, to be sent
    /// unchanged after it. Only the part before the pixel data is read into
    /// memory, at most [`MAX_HEAD`].
    pub fn coerced_head(&self, path: &Path, data_set_at: u64, transfer_syntax: &str) -> Result<(Vec<u8>, u64), String> {
        if transfer_syntax == DEFLATED_LE {
            return Err(
                "its data set is deflated, and coercion re-encodes only data sets it can \
                 stream past the pixel data: have the cloud send it in another transfer syntax, \
                 or deliver it without `coerce`"
                    .into(),
            );
        }
        let ts = TransferSyntaxRegistry
            .get(transfer_syntax)
            .filter(|ts| ts.can_decode_dataset())
            .ok_or_else(|| {
                format!("its transfer syntax {transfer_syntax} is not one its data set can be re-encoded in")
            })?;
        let file = File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        // The walk checks every declared length before the parser reads any.
        let walked = BufReader::with_capacity(64 * 1024, file.try_clone().map_err(|e| e.to_string())?);
        let (_, pixel_data_at) = walk::walk_located(walked, len, 0).map_err(|e| match e {
            walk::WalkError::Malformed(m) => m.0,
            walk::WalkError::Io(e) => e.to_string(),
        })?;
        let rest_at = pixel_data_at.unwrap_or(len);
        let head_len = rest_at.saturating_sub(data_set_at);
        if head_len > MAX_HEAD {
            return Err(format!(
                "its data set before the pixel data is {head_len} bytes; coercion re-encodes at most {MAX_HEAD}"
            ));
        }
        let mut file = file;
        file.seek(SeekFrom::Start(data_set_at)).map_err(|e| e.to_string())?;
        let mut head = Vec::with_capacity(head_len as usize);
        BufReader::new(file)
            .take(head_len)
            .read_to_end(&mut head)
            .map_err(|e| e.to_string())?;
        if head.len() as u64 != head_len {
            return Err("it changed while it was read".into());
        }
        // The parser is third-party code fed with outside data; a panic in
        // it must fail this instance, not the whole run.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.rewrite(&head, ts)))
            .map_err(|_| "the DICOM parser crashed on its data set".to_string())??;
        Ok((out, rest_at))
    }

    /// Parses a data set that ends where its pixel data would start,
    /// applies the rules and encodes it again in `ts`.
    fn rewrite(&self, head: &[u8], ts: &dicom_encoding::TransferSyntax) -> Result<Vec<u8>, String> {
        let mut obj = InMemDicomObject::read_dataset_with_ts(head, ts)
            .map_err(|e| format!("its data set does not parse: {}", chain(&e)))?;
        self.apply(&mut obj)?;
        let mut out = Vec::with_capacity(head.len() + 256);
        obj.write_dataset_with_ts(&mut out, ts)
            .map_err(|e| format!("its coerced data set could not be encoded: {}", chain(&e)))?;
        Ok(out)
    }

    /// The rules as `retriever config` shows them.
    pub fn describe(&self) -> String {
        self.rules.iter().map(Rule::describe).collect::<Vec<_>>().join("; ")
    }
}

impl Rule {
    fn describe(&self) -> String {
        match self {
            Rule::Set { attr, template } => format!("set {} = \"{}\"", attr.name, template.0.join("{value}")),
            Rule::Map {
                attr,
                values,
                otherwise,
            } => {
                let pairs: Vec<String> = values.iter().map(|(k, v)| format!("\"{k}\" → \"{v}\"")).collect();
                let otherwise = otherwise
                    .as_ref()
                    .map(|o| format!(", else \"{o}\""))
                    .unwrap_or_default();
                format!("map {} ({}{otherwise})", attr.name, pairs.join(", "))
            }
            Rule::Remove { tag } => format!("remove {}", name_of(*tag)),
            Rule::RemovePrivate => "remove private".into(),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// FNV-1a, 64 bits, in hex: a stable short name for a set of rules.
fn fingerprint(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{hash:016x}")
}

fn parse_rule(raw: &Value) -> Result<Rule, String> {
    let Some(obj) = raw.as_object() else {
        return Err(format!(
            "a rule is an object such as {{\"set\": \"IssuerOfPatientID\", \"value\": \"HOSP\"}}, not `{raw}`"
        ));
    };
    let string = |key: &str| -> Result<Option<&str>, String> {
        match obj.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("`{key}` must be a string, not `{other}`")),
        }
    };
    let allowed = |keys: &[&str]| -> Result<(), String> {
        match obj.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(format!("`{k}` has no meaning in a `{}` rule", keys[0])),
            None => Ok(()),
        }
    };
    let forms = ["set", "map", "remove"];
    let given: Vec<&str> = forms.iter().copied().filter(|f| obj.contains_key(*f)).collect();
    match given.as_slice() {
        ["set"] => {
            allowed(&["set", "value"])?;
            let attr = attribute(string("set")?.unwrap_or_default())?;
            let raw = string("value")?.ok_or("a `set` rule needs a `value`")?;
            let template = Template::parse(raw)?;
            check_value(attr.vr, &template.render("")).map_err(|why| format!("its value `{raw}` {why}"))?;
            Ok(Rule::Set { attr, template })
        }
        ["map"] => {
            allowed(&["map", "values", "else"])?;
            let attr = attribute(string("map")?.unwrap_or_default())?;
            let Some(Value::Object(raw_values)) = obj.get("values") else {
                return Err("a `map` rule needs `values`, an object from old value to new".into());
            };
            let mut values = BTreeMap::new();
            for (from, to) in raw_values {
                let Value::String(to) = to else {
                    return Err(format!("`values` maps `{from}` to `{to}`, which is not a string"));
                };
                check_value(attr.vr, to).map_err(|why| format!("its value `{to}` {why}"))?;
                values.insert(from.trim_end_matches([' ', '\0']).to_string(), to.clone());
            }
            let otherwise = string("else")?.map(str::to_string);
            if let Some(o) = &otherwise {
                check_value(attr.vr, o).map_err(|why| format!("its `else` value `{o}` {why}"))?;
            }
            Ok(Rule::Map {
                attr,
                values,
                otherwise,
            })
        }
        ["remove"] => {
            allowed(&["remove"])?;
            match string("remove")?.unwrap_or_default() {
                "private" => Ok(Rule::RemovePrivate),
                name => {
                    let tag = tag_of(name)?;
                    check_coercible(tag, name)?;
                    Ok(Rule::Remove { tag })
                }
            }
        }
        [] => Err(format!(
            "it has none of `set`, `map` or `remove` (it has {})",
            obj.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        )),
        more => Err(format!(
            "it has {}: a rule does one thing; write one rule for each",
            more.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ")
        )),
    }
}

/// A keyword or `(gggg,eeee)`.
fn tag_of(name: &str) -> Result<Tag, String> {
    let name = name.trim();
    if let Some(inner) = name.strip_prefix('(').and_then(|n| n.strip_suffix(')')) {
        let parts: Vec<&str> = inner.split(',').collect();
        let hex = |s: &str| (s.len() == 4).then(|| u16::from_str_radix(s, 16).ok()).flatten();
        return match parts.as_slice() {
            [g, e] => match (hex(g.trim()), hex(e.trim())) {
                (Some(g), Some(e)) => Ok(Tag(g, e)),
                _ => Err(format!("`{name}` is not a tag: write it as (gggg,eeee) in hexadecimal")),
            },
            _ => Err(format!("`{name}` is not a tag: write it as (gggg,eeee) in hexadecimal")),
        };
    }
    if name.is_empty() {
        return Err("the attribute is empty: name it by keyword (PatientID) or as (gggg,eeee)".into());
    }
    match StandardDataDictionary.by_name(name) {
        Some(entry) => match entry.tag_range() {
            TagRange::Single(tag) => Ok(tag),
            _ => Err(format!(
                "`{name}` is a repeating-group attribute: name the one meant as (gggg,eeee)"
            )),
        },
        None => Err(format!(
            "`{name}` is not a DICOM keyword (they are written like PatientID, case included) nor a (gggg,eeee) tag"
        )),
    }
}

/// The attribute a `set` or `map` writes, with its VR from the dictionary.
fn attribute(name: &str) -> Result<Attr, String> {
    let tag = tag_of(name)?;
    check_coercible(tag, name)?;
    let Some(entry) = StandardDataDictionary.by_tag(tag) else {
        return Err(format!(
            "`{name}` is not in the standard dictionary, so its VR is unknown: a private attribute can only be removed"
        ));
    };
    let vr = entry.vr().relaxed();
    Ok(Attr {
        tag,
        vr,
        name: name.trim().to_string(),
    })
}

fn name_of(tag: Tag) -> String {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.alias().to_string())
        .unwrap_or_else(|| format!("({:04X},{:04X})", tag.0, tag.1))
}

/// Attributes no rule may touch: what identifies the instance, how it is
/// encoded, and what describes or holds the pixel data sent unchanged.
fn check_coercible(tag: Tag, name: &str) -> Result<(), String> {
    const IDENTITY: &[Tag] = &[
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
        tags::SOP_CLASS_UID,
    ];
    const PIXEL_DESCRIPTION: &[Tag] = &[
        tags::SAMPLES_PER_PIXEL,
        tags::PHOTOMETRIC_INTERPRETATION,
        tags::PLANAR_CONFIGURATION,
        tags::NUMBER_OF_FRAMES,
        tags::ROWS,
        tags::COLUMNS,
        tags::BITS_ALLOCATED,
        tags::BITS_STORED,
        tags::HIGH_BIT,
        tags::PIXEL_REPRESENTATION,
    ];
    let why = if IDENTITY.contains(&tag) {
        "it identifies the instance, which the destination and the journal know it by"
    } else if tag.0 == 0x0002 {
        "it is in the file meta group (0002), which describes the file, not the data set"
    } else if tag == tags::SPECIFIC_CHARACTER_SET {
        "it says how the data set's text is encoded"
    } else if PIXEL_DESCRIPTION.contains(&tag) {
        "it describes the pixel data, which is sent unchanged"
    } else if tag >= Tag(0x7FE0, 0x0000) || (tag.0 & 0xFF01 == 0x6000 && tag.1 == 0x3000) {
        "it is pixel data or comes after it, which is sent unchanged"
    } else if tag.0 == 0xFFFE || tag.1 == 0x0000 {
        "it is an item delimiter or a group length, not an attribute"
    } else {
        return Ok(());
    };
    Err(format!("`{}` ({tag}) cannot be coerced: {why}", name.trim()))
}

/// Why `value` is not valid for `vr` (PS3.5 §6.2), if it is not.
fn check_value(vr: VR, value: &str) -> Result<(), String> {
    let (max, single): (usize, bool) = match vr {
        VR::AE => (16, false),
        VR::AS => (4, false),
        VR::CS => (16, false),
        VR::DA => (8, false),
        VR::DS => (16, false),
        VR::DT => (26, false),
        VR::IS => (12, false),
        VR::LO => (64, false),
        VR::LT => (10240, true),
        VR::PN => (64 * 3 + 2, false),
        VR::SH => (16, false),
        VR::ST => (1024, true),
        VR::TM => (14, false),
        VR::UC => (usize::MAX, false),
        VR::UI => (64, false),
        VR::UR | VR::UT => (usize::MAX, true),
        other => {
            return Err(format!(
                "cannot be written to a {} attribute: only text attributes can be set",
                other.to_string()
            ));
        }
    };
    let values: Vec<&str> = if single {
        vec![value]
    } else {
        value.split('\\').collect()
    };
    for v in values {
        if v.chars().count() > max {
            return Err(format!("is longer than the {max} characters a {vr:?} value may have"));
        }
        if vr == VR::PN && v.split('=').any(|group| group.chars().count() > 64) {
            return Err("has a name component group longer than 64 characters".into());
        }
        let text_ok = |c: char| !c.is_control() || (single && matches!(c, '\r' | '\n' | '\t' | '\x0c'));
        let ok = match vr {
            VR::CS => v
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ' || c == '_'),
            VR::DA => v.is_empty() || (v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit())),
            VR::TM | VR::DT => v.bytes().all(|b| b.is_ascii_digit() || b"+-. ".contains(&b)),
            VR::DS => v.bytes().all(|b| b.is_ascii_digit() || b"+-.eE ".contains(&b)),
            VR::IS => v.bytes().all(|b| b.is_ascii_digit() || b"+- ".contains(&b)),
            VR::AS => {
                v.is_empty()
                    || (v.len() == 4
                        && v[..3].bytes().all(|b| b.is_ascii_digit())
                        && b"DWMY".contains(&v.as_bytes()[3]))
            }
            VR::UI => v.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
            VR::AE => v.chars().all(|c| c.is_ascii() && !c.is_control()),
            _ => v.chars().all(text_ok),
        };
        if !ok {
            return Err(format!("has characters or a form a {vr:?} value may not have"));
        }
    }
    Ok(())
}

/// The current value of an attribute as text, trailing padding removed;
/// `None` when absent.
fn current(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches([' ', '\0']).to_string())
}

fn put(obj: &mut InMemDicomObject, attr: &Attr, value: String) -> Result<(), String> {
    check_value(attr.vr, &value).map_err(|why| format!("the value `{value}` for `{}` {why}", attr.name))?;
    obj.put(DataElement::new(attr.tag, attr.vr, PrimitiveValue::from(value)));
    Ok(())
}

fn apply_rule(rule: &Rule, obj: &mut InMemDicomObject) -> Result<(), String> {
    match rule {
        Rule::Set { attr, template } => {
            let now = current(obj, attr.tag).unwrap_or_default();
            put(obj, attr, template.render(&now))
        }
        Rule::Map {
            attr,
            values,
            otherwise,
        } => {
            let Some(now) = current(obj, attr.tag) else {
                return Ok(());
            };
            match values.get(&now).or(otherwise.as_ref()) {
                Some(to) => put(obj, attr, to.clone()),
                None => Ok(()),
            }
        }
        Rule::Remove { tag } => {
            obj.remove_element(*tag);
            Ok(())
        }
        Rule::RemovePrivate => {
            remove_private(obj);
            Ok(())
        }
    }
}

/// Removes every element of an odd group (private data and its creators),
/// in the items of sequences too. Depth is bounded: the walk refused
/// deeper nesting before the data set was parsed.
fn remove_private(obj: &mut InMemDicomObject) {
    obj.retain(|e| e.tag().0 % 2 == 0);
    let sequences: Vec<Tag> = obj.iter().filter(|e| e.vr() == VR::SQ).map(|e| e.tag()).collect();
    for tag in sequences {
        obj.update_value(tag, |value| {
            if let Some(items) = value.items_mut() {
                items.iter_mut().for_each(remove_private);
            }
        });
    }
}

#[cfg(test)]
mod tests;
