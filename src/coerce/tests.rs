//! Tests of the coercion rules: how each form is read and refused, and the
//! rewrite of small instance files in each encoding.

use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::intake::testfile::{self, Ids, Writer};

const SOP: &str = "1.2.3.4.5.6.7";

fn rules(list: Value) -> Result<Coercions, RuleError> {
    Coercions::parse(list.as_array().unwrap())
}

fn refused(list: Value) -> RuleError {
    rules(list).unwrap_err()
}

#[test]
fn each_form_reads() {
    let c = rules(json!([
        {"set": "IssuerOfPatientID", "value": "HOSP"},
        {"set": "PatientID", "value": "EXT-{value}"},
        {"map": "InstitutionName", "values": {"CLOUD": "HOSP"}, "else": "OTHER"},
        {"remove": "(0008,0090)"},
        {"remove": "private"},
    ]))
    .unwrap();
    assert!(!c.is_empty());
    assert_eq!(c.fingerprint().unwrap().len(), 16);
    assert!(
        c.describe().contains("set PatientID = \"EXT-{value}\""),
        "{}",
        c.describe()
    );
    let none = rules(json!([])).unwrap();
    assert!(none.is_empty());
    assert_eq!(none.fingerprint(), None);
    // The same rules, the same fingerprint; other rules, another.
    let again = rules(json!([{"set": "IssuerOfPatientID", "value": "HOSP"}])).unwrap();
    let other = rules(json!([{"set": "IssuerOfPatientID", "value": "HOSP2"}])).unwrap();
    assert_eq!(
        again.fingerprint(),
        rules(json!([{"set": "IssuerOfPatientID", "value": "HOSP"}]))
            .unwrap()
            .fingerprint()
    );
    assert_ne!(again.fingerprint(), other.fingerprint());
}

#[test]
fn wrong_rules_are_refused_naming_the_rule_and_why() {
    let cases = [
        (
            json!([{"set": "PatientIdentifier", "value": "X"}]),
            0,
            "not a DICOM keyword",
        ),
        (
            json!([{"remove": "private"}, {"remove": "(0010,00ZZ)"}]),
            1,
            "(gggg,eeee)",
        ),
        (json!([{"rename": "PatientID"}]), 0, "none of `set`, `map` or `remove`"),
        (json!(["PatientID"]), 0, "a rule is an object"),
        (
            json!([{"set": "PatientID", "map": "PatientID", "value": "X"}]),
            0,
            "one thing",
        ),
        (
            json!([{"set": "PatientID", "value": "X", "to": "Y"}]),
            0,
            "`to` has no meaning",
        ),
        (json!([{"set": "PatientID"}]), 0, "needs a `value`"),
        (
            json!([{"set": "PatientID", "value": "x".repeat(65)}]),
            0,
            "longer than the 64",
        ),
        (json!([{"set": "Modality", "value": "ct"}]), 0, "may not have"),
        (json!([{"set": "StudyDate", "value": "2024-01-01"}]), 0, "a DA value"),
        (json!([{"set": "Rows", "value": "2"}]), 0, "describes the pixel data"),
        (json!([{"set": "PatientID", "value": "{patient}"}]), 0, "braces"),
        (
            json!([{"map": "IssuerOfPatientID", "values": {"A": "x".repeat(65)}}]),
            0,
            "longer than",
        ),
        (
            json!([{"map": "IssuerOfPatientID", "values": "A"}]),
            0,
            "needs `values`",
        ),
        (
            json!([{"set": "SOPInstanceUID", "value": "1.2"}]),
            0,
            "identifies the instance",
        ),
        (json!([{"remove": "StudyInstanceUID"}]), 0, "identifies the instance"),
        (json!([{"set": "(0002,0010)", "value": "1.2"}]), 0, "file meta group"),
        (json!([{"remove": "PixelData"}]), 0, "pixel data"),
        (json!([{"remove": "FloatPixelData"}]), 0, "pixel data"),
        (json!([{"remove": "(FFFC,FFFC)"}]), 0, "comes after it"),
        (json!([{"remove": "(6000,3000)"}]), 0, "pixel data"),
        (json!([{"set": "(0009,1001)", "value": "X"}]), 0, "can only be removed"),
        (json!([{"set": "PatientWeight", "value": "x"}]), 0, "may not have"),
        (json!([{"set": "NumberOfStudyRelatedSeries", "value": "1"}]), 0, ""),
    ];
    for (list, index, why) in cases {
        let text = list.to_string();
        match rules(list) {
            Err(e) => {
                assert_eq!(e.index, index, "{text}: {e}");
                assert!(e.to_string().contains(&format!("`coerce[{index}]`")), "{text}: {e}");
                assert!(e.why.contains(why), "{text}: {e}");
            }
            // The last case is a valid IS value: it must read.
            Ok(_) => assert!(why.is_empty(), "{text} was accepted"),
        }
    }
    assert!(
        refused(json!([{"remove": "PatientName"}, {"set": "(0010,0020)", "value": "\u{1}"}]))
            .why
            .contains("may not have")
    );
}

/// A small instance in `ts` with a patient, an issuer, an institution,
/// private tags at the top and in a sequence item, and `pixels`.
fn instance(ts: &str, pixels: &[u8], encapsulated: bool) -> Vec<u8> {
    let mut ids = Ids::new("1.2.3", "1.2.3.4", SOP, Some("P1"));
    ids.issuer = Some("CLOUD");
    let mut w = Writer::for_syntax(ts);
    let group_length = if w.big_endian {
        90u32.to_be_bytes()
    } else {
        90u32.to_le_bytes()
    };
    w.element(0x0008, 0x0000, "UL", &group_length)
        .text(0x0008, 0x0016, "UI", testfile::CT_IMAGE)
        .text(0x0008, 0x0018, "UI", SOP)
        .text(0x0008, 0x0060, "CS", "CT")
        .text(0x0008, 0x0080, "LO", "CLOUD HOSPITAL")
        .text(0x0008, 0x0090, "PN", "Doe^John")
        .header(0x0008, 0x1140, "SQ", u32::MAX)
        .item(u32::MAX)
        .text(0x0008, 0x1150, "UI", testfile::CT_IMAGE)
        .text(0x0009, 0x0010, "LO", "ACME")
        .text(0x0009, 0x1001, "LO", "inner")
        .item_end()
        .sequence_end()
        .text(0x0009, 0x0010, "LO", "ACME")
        .text(0x0009, 0x1001, "LO", "secret")
        .text(0x0010, 0x0010, "PN", "Doe^Jane")
        .text(0x0010, 0x0020, "LO", "P1")
        .text(0x0010, 0x0021, "LO", "CLOUD");
    testfile::study_series(&mut w, &ids);
    if encapsulated {
        w.header(0x7FE0, 0x0010, "OB", u32::MAX)
            .item(0)
            .item(pixels.len() as u32)
            .raw(pixels)
            .sequence_end();
    } else {
        w.element(0x7FE0, 0x0010, "OW", pixels);
    }
    testfile::part10(ts, testfile::CT_IMAGE, SOP, &w.out)
}

fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("in.dcm");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn data_set_at(path: &Path) -> u64 {
    // The meta group length is at bytes 140..144; the data set follows it.
    let bytes = std::fs::read(path).unwrap();
    144 + u64::from(u32::from_le_bytes(bytes[140..144].try_into().unwrap()))
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .map(|e| e.to_str().unwrap().trim_end_matches([' ', '\0']).to_string())
}

/// The coerced head parsed again, and the file's rest as sent.
fn rewrite(c: &Coercions, ts: &str, bytes: &[u8]) -> (InMemDicomObject, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), bytes);
    let (head, rest_at) = c.coerced_head(&path, data_set_at(&path), ts).unwrap();
    let syntax = TransferSyntaxRegistry.get(ts).unwrap();
    let mut whole = head.clone();
    whole.extend_from_slice(&bytes[rest_at as usize..]);
    // The head and the rest make one data set that parses.
    InMemDicomObject::read_dataset_with_ts(&whole[..], syntax).unwrap();
    let obj = InMemDicomObject::read_dataset_with_ts(&head[..], syntax).unwrap();
    (obj, bytes[rest_at as usize..].to_vec())
}

#[test]
fn the_rules_apply_and_the_pixel_data_is_sent_as_the_file_holds_it() {
    let c = rules(json!([
        {"set": "IssuerOfPatientID", "value": "HOSP"},
        {"set": "PatientID", "value": "EXT-{value}"},
        {"map": "InstitutionName", "values": {"CLOUD HOSPITAL": "HOSP"}},
        {"map": "Modality", "values": {"MR": "XX"}},
        {"remove": "ReferringPhysicianName"},
        {"remove": "private"},
        {"set": "StationName", "value": "ROUTER"},
    ]))
    .unwrap();
    let pixels: Vec<u8> = (0..64u8).collect();
    for (ts, encapsulated) in [
        (testfile::EXPLICIT_LE, false),
        (testfile::IMPLICIT_LE, false),
        (testfile::EXPLICIT_BE, false),
        (testfile::JPEG_BASELINE, true),
    ] {
        let bytes = instance(ts, &pixels, encapsulated);
        let (obj, rest) = rewrite(&c, ts, &bytes);
        assert_eq!(text(&obj, tags::PATIENT_ID).as_deref(), Some("EXT-P1"), "{ts}");
        assert_eq!(text(&obj, tags::ISSUER_OF_PATIENT_ID).as_deref(), Some("HOSP"), "{ts}");
        assert_eq!(text(&obj, tags::INSTITUTION_NAME).as_deref(), Some("HOSP"), "{ts}");
        assert_eq!(text(&obj, tags::MODALITY).as_deref(), Some("CT"), "{ts}");
        assert_eq!(text(&obj, tags::STATION_NAME).as_deref(), Some("ROUTER"), "{ts}");
        assert_eq!(text(&obj, tags::REFERRING_PHYSICIAN_NAME), None, "{ts}");
        assert_eq!(text(&obj, tags::PATIENT_NAME).as_deref(), Some("Doe^Jane"), "{ts}");
        assert_eq!(text(&obj, tags::SOP_INSTANCE_UID).as_deref(), Some(SOP), "{ts}");
        assert!(obj.iter().all(|e| e.tag().0 % 2 == 0), "{ts}: a private tag is left");
        let item = &obj.get(tags::REFERENCED_IMAGE_SEQUENCE).unwrap().items().unwrap()[0];
        assert!(
            item.iter().all(|e| e.tag().0 % 2 == 0),
            "{ts}: a private tag is left in an item"
        );
        assert_eq!(
            text(item, tags::REFERENCED_SOP_CLASS_UID).as_deref(),
            Some(testfile::CT_IMAGE)
        );
        assert!(
            obj.get(tags::PIXEL_DATA).is_none(),
            "{ts}: the head holds no pixel data"
        );
        // The rest is the file's own pixel data element, byte for byte.
        let pixel_at = bytes.len() - rest.len();
        assert_eq!(&rest[..], &bytes[pixel_at..]);
        assert_eq!(
            &rest[rest.len() - pixels.len().min(rest.len())..].len(),
            &pixels.len().min(rest.len())
        );
        assert!(rest.windows(pixels.len()).any(|w| w == &pixels[..]), "{ts}");
    }
}

/// A minimal instance whose Patient ID is `value`, and its pixel data element.
fn with_patient(value: &str) -> (Vec<u8>, Vec<u8>) {
    let value = if value.len() % 2 == 1 {
        format!("{value} ")
    } else {
        value.to_string()
    };
    let mut w = Writer::for_syntax(testfile::EXPLICIT_LE);
    w.text(0x0008, 0x0016, "UI", testfile::CT_IMAGE)
        .text(0x0008, 0x0018, "UI", SOP)
        .text(0x0010, 0x0020, "LO", &value);
    let mut pixels = Writer::for_syntax(testfile::EXPLICIT_LE);
    pixels.element(0x7FE0, 0x0010, "OW", &[1, 2, 3, 4]);
    w.raw(&pixels.out);
    (
        testfile::part10(testfile::EXPLICIT_LE, testfile::CT_IMAGE, SOP, &w.out),
        pixels.out,
    )
}

#[test]
fn a_templated_value_the_vr_does_not_take_fails_the_instance() {
    let c = rules(json!([{"set": "PatientID", "value": "{value}-{value}-{value}"}])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let short = write(dir.path(), &with_patient(&"X".repeat(20)).0);
    let (head, _) = c
        .coerced_head(&short, data_set_at(&short), testfile::EXPLICIT_LE)
        .unwrap();
    let syntax = TransferSyntaxRegistry.get(testfile::EXPLICIT_LE).unwrap();
    let obj = InMemDicomObject::read_dataset_with_ts(&head[..], syntax).unwrap();
    assert_eq!(text(&obj, tags::PATIENT_ID).unwrap().len(), 62);
    // Three times 22 and two dashes is more than an LO value may hold.
    let long = dir.path().join("long.dcm");
    std::fs::write(&long, with_patient(&"X".repeat(22)).0).unwrap();
    let why = c
        .coerced_head(&long, data_set_at(&long), testfile::EXPLICIT_LE)
        .unwrap_err();
    assert!(
        why.contains("`coerce[0]`") && why.contains("longer than the 64"),
        "{why}"
    );
}

#[test]
fn a_deflated_instance_is_refused_saying_why() {
    let c = rules(json!([{"remove": "private"}])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &instance(testfile::EXPLICIT_LE, &[0; 4], false));
    let why = c
        .coerced_head(&path, data_set_at(&path), "1.2.840.10008.1.2.1.99")
        .unwrap_err();
    assert!(why.contains("deflated"), "{why}");
}

#[test]
fn coercing_64_mib_of_pixel_data_allocates_a_small_fraction_of_it() {
    const PIXELS: usize = 64 * 1024 * 1024;
    let c = rules(json!([{"set": "PatientID", "value": "EXT-{value}"}, {"remove": "private"}])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bytes = instance(testfile::EXPLICIT_LE, &vec![7u8; PIXELS], false);
    let path = write(dir.path(), &bytes);
    drop(bytes);
    let at = data_set_at(&path);
    let (result, allocated) = crate::testalloc::measure(|| c.coerced_head(&path, at, testfile::EXPLICIT_LE));
    let (_, rest_at) = result.unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() - rest_at > PIXELS as u64);
    assert!(
        allocated.total < 2 * 1024 * 1024,
        "coercing allocated {} bytes in all (largest {})",
        allocated.total,
        allocated.largest
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the current value, a template either gives a value the
    /// output carries (and that parses again) or fails the instance: it
    /// never panics and never touches the pixel data.
    #[test]
    fn any_current_value_coerces_or_fails_cleanly(
        value in "([!-~][ -~]{0,69})?",
        prefix in "[A-Z0-9-]{0,8}",
    ) {
        let c = rules(json!([{"set": "PatientID", "value": format!("{prefix}{{value}}")}])).unwrap();
        let (bytes, pixels) = with_patient(&value);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &bytes);
        if let Ok((head, rest_at)) = c.coerced_head(&path, data_set_at(&path), testfile::EXPLICIT_LE) {
            let syntax = TransferSyntaxRegistry.get(testfile::EXPLICIT_LE).unwrap();
            let obj = InMemDicomObject::read_dataset_with_ts(&head[..], syntax).unwrap();
            prop_assert!(text(&obj, tags::PATIENT_ID).unwrap().starts_with(&prefix));
            if !value.contains('\\') {
                let want = format!("{prefix}{}", value.trim_end());
                prop_assert_eq!(text(&obj, tags::PATIENT_ID), Some(want.trim_end().to_string()));
            }
            prop_assert_eq!(&bytes[rest_at as usize..], &pixels[..]);
        }
    }
}
