//! Tests of the intake gate: the structure walk on valid and hostile files
//! (with random and mutated inputs), and the checks against what was asked.

use std::io::Write;

use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::StandardDataDictionary;
use proptest::prelude::*;

use super::testfile::{self, Ids, Writer};
use super::walk::{self, MAX_DEPTH, Meta, WalkError};
use super::*;

/// Runs `f`, returning what it allocated on this thread (in bytes, frees not subtracted).
pub(crate) fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (result, allocated) = crate::testalloc::measure(f);
    (result, allocated.total)
}

/// The most the walk may allocate, inflater included, whatever its input.
const WALK_ALLOCATION_BOUND: usize = 256 * 1024;

/// Walks `bytes`, checking that it allocated no more than the bound.
fn walk_bytes(bytes: &[u8]) -> Result<Meta, String> {
    // The dictionary is built once per process, on first use: not the walk's doing.
    let _ = StandardDataDictionary.by_tag(dicom_core::Tag(0x0008, 0x0016));
    let (result, allocated) = allocated_by(|| walk::walk(bytes, bytes.len() as u64, 1 << 20));
    assert!(
        allocated <= WALK_ALLOCATION_BOUND,
        "the walk allocated {allocated} bytes"
    );
    match result {
        Ok(meta) => Ok(meta),
        Err(WalkError::Malformed(m)) => Err(m.0),
        Err(WalkError::Io(e)) => panic!("reading from memory failed: {e}"),
    }
}

const STUDY: &str = "1.2.826.0.1.3680043.8.498.1";
const SERIES: &str = "1.2.826.0.1.3680043.8.498.1.1";
const SOP: &str = "1.2.826.0.1.3680043.8.498.1.1.1";

fn ids() -> Ids<'static> {
    Ids::new(STUDY, SERIES, SOP, Some("PAT-1"))
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A valid instance in each encoding the walk knows.
fn valid_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut files: Vec<(&str, Vec<u8>)> = [testfile::EXPLICIT_LE, testfile::IMPLICIT_LE, testfile::EXPLICIT_BE]
        .into_iter()
        .map(|ts| (ts, testfile::instance(ts, &ids())))
        .collect();
    let deflated = "1.2.840.10008.1.2.1.99";
    let data = deflate(&testfile::data_set(testfile::EXPLICIT_LE, &ids()));
    files.push((deflated, testfile::part10(deflated, testfile::CT_IMAGE, SOP, &data)));
    files.push((testfile::JPEG_BASELINE, encapsulated(&ids())));
    files
}

/// An instance with encapsulated pixel data: an offset table and two fragments.
fn encapsulated(ids: &Ids) -> Vec<u8> {
    let mut w = Writer::new(true, false);
    testfile::identity(&mut w, ids);
    testfile::study_series(&mut w, ids);
    w.header(0x7FE0, 0x0010, "OB", u32::MAX)
        .item(0)
        .item(6)
        .raw(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9])
        .item(4)
        .raw(&[9, 9, 9, 9])
        .sequence_end();
    testfile::part10(testfile::JPEG_BASELINE, testfile::CT_IMAGE, ids.sop, &w.out)
}

/// A file with `body` after the identity, in explicit VR little endian.
fn with_body(body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new(true, false);
    testfile::identity(&mut w, &ids());
    testfile::study_series(&mut w, &ids());
    body(&mut w);
    testfile::part10(testfile::EXPLICIT_LE, testfile::CT_IMAGE, SOP, &w.out)
}

#[test]
fn valid_instances_pass_in_every_encoding() {
    for (ts, file) in valid_files() {
        let meta = walk_bytes(&file).unwrap_or_else(|e| panic!("{ts}: {e}"));
        assert_eq!(meta.transfer_syntax, ts);
        assert_eq!(meta.sop_instance, SOP);
        assert_eq!(meta.sop_class, testfile::CT_IMAGE);
    }
}

#[test]
fn sequences_up_to_the_depth_limit_pass_and_deeper_ones_do_not() {
    for ts in [testfile::EXPLICIT_LE, testfile::IMPLICIT_LE] {
        let nested = |depth| {
            let mut w = Writer::for_syntax(ts);
            testfile::identity(&mut w, &ids());
            w.nested(depth, true);
            testfile::study_series(&mut w, &ids());
            testfile::part10(ts, testfile::CT_IMAGE, SOP, &w.out)
        };
        walk_bytes(&nested(MAX_DEPTH)).unwrap();
        let e = walk_bytes(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(e.contains("nested more than 32 deep"), "{e}");
        let e = walk_bytes(&nested(10_000)).unwrap_err();
        assert!(e.contains("nested more than 32 deep"), "{e}");
    }
}

#[test]
fn a_tiny_part_declaring_4_gib_is_refused_without_allocating_it() {
    let file = with_body(|w| {
        w.header(0x0011, 0x1010, "OB", 0xFFFF_FFF0).raw(&[1, 2, 3, 4]);
    });
    assert!(file.len() < 1024);
    let e = walk_bytes(&file).unwrap_err();
    assert!(
        e.contains("declares 4294967280 bytes") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn truncated_instances_are_refused_wherever_they_are_cut() {
    let file = testfile::instance(testfile::EXPLICIT_LE, &ids());
    // Inside the pixel data, the last element.
    for cut in [file.len() - 1, file.len() - 8, file.len() - 16] {
        let e = walk_bytes(&file[..cut]).unwrap_err();
        assert!(
            e.contains("truncated") || e.contains("middle of an element"),
            "cut {cut}: {e}"
        );
    }
    // Anywhere inside the meta group or the preamble.
    for cut in 0..140 {
        assert!(walk_bytes(&file[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn sequences_and_items_that_never_close_are_refused() {
    let unclosed = with_body(|w| {
        w.nested(3, false);
    });
    let e = walk_bytes(&unclosed).unwrap_err();
    assert!(e.contains("never closes"), "{e}");
    let fragments = with_body(|w| {
        w.header(0x7FE0, 0x0010, "OB", u32::MAX).item(0).item(2).raw(&[1, 2]);
    });
    assert!(walk_bytes(&fragments).unwrap_err().contains("never closes"));
    // A defined-length sequence whose item runs past its end.
    let overrun = with_body(|w| {
        w.header(0x0008, 0x1140, "SQ", 8).item(20).raw(&[0; 20]);
    });
    assert!(walk_bytes(&overrun).is_err());
    // A plain element of undefined length.
    let undefined = with_body(|w| {
        w.header(0x0010, 0x4000, "LT", 0xFFFF).raw(&[b' '; 4]);
    });
    assert!(walk_bytes(&undefined).is_err());
}

#[test]
fn bad_meta_groups_are_refused() {
    let file = testfile::instance(testfile::EXPLICIT_LE, &ids());
    // No DICM marker.
    let mut no_marker = file.clone();
    no_marker[130] = b'X';
    assert!(walk_bytes(&no_marker).unwrap_err().contains("DICM"));
    // A group length that is not the first element.
    let mut no_length = file.clone();
    no_length[132..134].copy_from_slice(&[0x02, 0x00]);
    no_length[134..136].copy_from_slice(&[0x01, 0x00]);
    assert!(walk_bytes(&no_length).unwrap_err().contains("group length"));
    // A group length that swallows the data set.
    let mut long = file.clone();
    long[140..144].copy_from_slice(&200u32.to_le_bytes());
    assert!(walk_bytes(&long).is_err());
    // No transfer syntax.
    let mut meta = Writer::new(true, false);
    meta.text(0x0002, 0x0002, "UI", testfile::CT_IMAGE)
        .text(0x0002, 0x0003, "UI", SOP);
    let mut group = Writer::new(true, false);
    group.element(0x0002, 0x0000, "UL", &(meta.out.len() as u32).to_le_bytes());
    let mut no_ts = vec![0u8; 128];
    no_ts.extend_from_slice(b"DICM");
    no_ts.extend_from_slice(&group.out);
    no_ts.extend_from_slice(&meta.out);
    no_ts.extend_from_slice(&testfile::data_set(testfile::EXPLICIT_LE, &ids()));
    assert!(walk_bytes(&no_ts).unwrap_err().contains("Transfer Syntax"));
}

#[test]
fn a_deflated_data_set_that_inflates_past_the_bound_is_refused() {
    let deflated = "1.2.840.10008.1.2.1.99";
    let mut w = Writer::new(true, false);
    testfile::identity(&mut w, &ids());
    w.element(0x0011, 0x1010, "OB", &vec![0u8; 4 << 20]);
    let data = deflate(&w.out);
    let file = testfile::part10(deflated, testfile::CT_IMAGE, SOP, &data);
    assert!(file.len() < 64 * 1024);
    let e = walk_bytes(&file).unwrap_err();
    assert!(e.contains("inflates to more than"), "{e}");
    // Bytes that do not inflate.
    let garbage = testfile::part10(deflated, testfile::CT_IMAGE, SOP, &[0xFF; 64]);
    assert!(walk_bytes(&garbage).is_err());
}

/// Nesting hidden in a value the walk skips (an explicit UN of defined length whose tag the
/// dictionary calls a sequence) must not reach the parser as nesting either.
#[test]
fn nesting_inside_a_defined_length_un_does_not_crash_the_parser() {
    let mut inner = Writer::new(false, false);
    inner.nested(10_000, true);
    let file = with_body(|w| {
        w.element(0x0008, 0x1140, "UN", &inner.out);
    });
    let study = Uid::parse(STUDY).unwrap();
    // Admitted or refused, but the process is still here to say so.
    let _ = admit_bytes(&file, &expect(&study, Patient::default()));
}

fn no_series(_: &Uid) -> Option<Uid> {
    None
}

/// Writes `bytes` to a file and runs the gate on it.
fn admit_bytes(bytes: &[u8], want: &Expectation) -> Result<Admitted, Refused> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.dcm");
    std::fs::write(&path, bytes).unwrap();
    admit(&path, want).unwrap()
}

fn expect<'a>(study: &'a Uid, patient: Patient<'a>) -> Expectation<'a> {
    Expectation {
        study,
        patient,
        series: None,
        sop: None,
        listed_series: None,
        series_of: &no_series,
        max_inflated: 1 << 20,
    }
}

#[test]
fn the_gate_admits_a_valid_instance_with_its_header() {
    let study = Uid::parse(STUDY).unwrap();
    let want = expect(
        &study,
        Patient {
            id: Some("PAT-1"),
            issuer: None,
        },
    );
    for (ts, file) in valid_files() {
        let admitted = admit_bytes(&file, &want).unwrap_or_else(|e| panic!("{ts}: {e}"));
        let h = admitted.header();
        assert_eq!(
            (h.study.as_str(), h.series.as_str(), h.sop_instance.as_str()),
            (STUDY, SERIES, SOP)
        );
        assert_eq!(h.patient_id.as_deref(), Some("PAT-1"));
        assert_eq!(admitted.bytes(), file.len() as u64);
        assert!(admitted.notes().is_empty());
    }
}

/// What a power cut can leave of a file renamed into place before its
/// batch was synced: nothing, a part, or the whole of it.
#[test]
fn a_kept_file_checked_again_passes_only_when_whole() {
    let study = Uid::parse(STUDY).unwrap();
    let want = expect(
        &study,
        Patient {
            id: Some("PAT-1"),
            issuer: None,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.dcm");
    for (ts, file) in valid_files() {
        std::fs::write(&path, &file).unwrap();
        assert_eq!(recheck(&path, &want).unwrap(), Ok(()), "{ts}");
        for cut in [0, 132, file.len() / 2, file.len() - 1] {
            std::fs::write(&path, &file[..cut]).unwrap();
            let refused = recheck(&path, &want).unwrap();
            assert!(refused.is_err(), "{ts}: the first {cut} bytes passed");
        }
    }
    std::fs::write(&path, b"").unwrap();
    assert_eq!(recheck(&path, &want).unwrap(), Err(Refused("the file is empty".into())));
}

#[test]
fn the_gate_checks_what_was_asked_for() {
    let study = Uid::parse(STUDY).unwrap();
    let other = Uid::parse("1.2.3.999").unwrap();
    let file = testfile::instance(testfile::EXPLICIT_LE, &ids());
    let patient = Patient {
        id: Some("PAT-1"),
        issuer: None,
    };
    let refused = |want: &Expectation| admit_bytes(&file, want).unwrap_err().0;

    assert!(refused(&expect(&other, patient)).contains("belongs to study"));
    let mut want = expect(&study, patient);
    want.sop = Some(&other);
    assert!(refused(&want).contains("when instance `1.2.3.999` was asked for"));
    let mut want = expect(&study, patient);
    want.series = Some(&other);
    assert!(refused(&want).contains("not in series `1.2.3.999`"));
    let listed = [other.clone()];
    let mut want = expect(&study, patient);
    want.listed_series = Some(&listed);
    assert!(refused(&want).contains("does not list"));
    let elsewhere = |_: &Uid| Uid::parse("1.2.3.999").ok();
    let mut want = expect(&study, patient);
    want.series_of = &elsewhere;
    assert!(refused(&want).contains("listed it in series"));
}

#[test]
fn meta_and_data_set_must_agree_on_instance_and_class() {
    let study = Uid::parse(STUDY).unwrap();
    let want = expect(&study, Patient::default());
    let data = testfile::data_set(testfile::EXPLICIT_LE, &ids());
    let other_sop = testfile::part10(testfile::EXPLICIT_LE, testfile::CT_IMAGE, "1.2.3.4", &data);
    assert!(admit_bytes(&other_sop, &want).unwrap_err().0.contains("SOP Instance"));
    let mr = "1.2.840.10008.5.1.4.1.1.4";
    let other_class = testfile::part10(testfile::EXPLICIT_LE, mr, SOP, &data);
    let e = admit_bytes(&other_class, &want).unwrap_err().0;
    assert!(e.contains("SOP Class") && e.contains(mr), "{e}");
}

#[test]
fn patient_policy() {
    let study = Uid::parse(STUDY).unwrap();
    let file = |patient: Option<&'static str>, issuer: Option<&'static str>| {
        let mut ids = Ids::new(STUDY, SERIES, SOP, patient);
        ids.issuer = issuer;
        testfile::instance(testfile::EXPLICIT_LE, &ids)
    };
    let p = |id, issuer| Patient { id, issuer };
    // Another patient, or none: refused.
    let e = admit_bytes(&file(Some("PAT-2"), None), &expect(&study, p(Some("PAT-1"), None))).unwrap_err();
    assert!(e.0.contains("`PAT-2` is not the study's Patient ID `PAT-1`"), "{e}");
    let e = admit_bytes(&file(None, None), &expect(&study, p(Some("PAT-1"), None))).unwrap_err();
    assert!(e.0.contains("has no Patient ID"), "{e}");
    // Issuers on both sides must agree.
    let e = admit_bytes(
        &file(Some("PAT-1"), Some("HOSP-B")),
        &expect(&study, p(Some("PAT-1"), Some("HOSP-A"))),
    )
    .unwrap_err();
    assert!(e.0.contains("Issuer of Patient ID `HOSP-B`"), "{e}");
    // An issuer on one side only: admitted, with a note.
    let a = admit_bytes(
        &file(Some("PAT-1"), Some("HOSP-A")),
        &expect(&study, p(Some("PAT-1"), None)),
    )
    .unwrap();
    assert_eq!(a.notes(), [Note::IssuerOnlyInInstance]);
    let a = admit_bytes(
        &file(Some("PAT-1"), None),
        &expect(&study, p(Some("PAT-1"), Some("HOSP-A"))),
    )
    .unwrap();
    assert_eq!(a.notes(), [Note::IssuerOnlyInStudy]);
    // The study has no Patient ID: admitted, with a note.
    let a = admit_bytes(&file(Some("PAT-9"), None), &expect(&study, p(None, None))).unwrap();
    assert_eq!(a.notes(), [Note::StudyHasNoPatientId]);
    assert!(Note::StudyHasNoPatientId.message(&study).contains(STUDY));
}

/// Element boundaries are where a cut leaves a shorter valid file; the
/// walk must then still say exactly what the meta group holds.
fn meta_of(file: &[u8]) -> Meta {
    walk_bytes(file).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes_never_panic_nor_allocate(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        file.extend_from_slice(&tail);
        let _ = walk_bytes(&file);
        let _ = walk_bytes(&tail);
    }

    #[test]
    fn mutated_valid_files_give_their_meta_or_an_error(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (_, original) = valid_files().swap_remove(which);
        let mut file = original.clone();
        for (at, byte) in edits {
            let at = at.index(file.len());
            file[at] = byte;
        }
        if let Some(cut) = cut {
            file.truncate(cut.index(file.len()));
        }
        if let Ok(meta) = walk_bytes(&file) {
            // Whatever passed, the meta reported is the file's own.
            let ts = meta.transfer_syntax.as_bytes();
            prop_assert!(file.windows(ts.len()).any(|w| w == ts));
        }
    }

    #[test]
    fn mutated_pixel_values_still_pass(fill in any::<u8>(), which in 0usize..3) {
        let ts = [testfile::EXPLICIT_LE, testfile::IMPLICIT_LE, testfile::EXPLICIT_BE][which];
        let original = testfile::instance(ts, &ids());
        let mut file = original.clone();
        let len = file.len();
        file[len - 16..].fill(fill);
        prop_assert_eq!(meta_of(&file), meta_of(&original));
    }

    #[test]
    fn nesting_is_refused_exactly_past_the_limit(depth in 0usize..80, closed in any::<bool>()) {
        let file = with_body(|w| { w.nested(depth, closed); });
        let result = walk_bytes(&file);
        prop_assert_eq!(result.is_ok(), depth <= MAX_DEPTH && (closed || depth == 0));
    }
}
