//! The DICOM network layer (`retriever::dimse`) called directly, against real peers on
//! loopback: DCMTK's storescp and the pynetdicom SCP of scripts/test_scp.py, which misbehaves on
//! request. Test instances are made with pydicom.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dicom_dictionary_std::tags;
use retriever::dimse::Destination;
use retriever::dimse::*;

use crate::common::testscp::{TestScp, make_instances};
use crate::common::{Storescp, dcmtk, free_port, python};

tests! {
    echo_and_store_to_storescp: ["storescp", "python"],
    connection_refused_is_clear,
    storescp_refuses_and_aborts: ["storescp", "python"],
    statuses_are_classified: ["python"],
    rejections_are_classified: ["python"],
    converts_between_implicit_and_explicit: ["python"],
    rle_is_sent_as_is_or_decompressed: ["storescp", "python"],
    unsendable_instances_are_reported_not_skipped: ["python"],
    abort_and_timeout_are_not_delivered: ["python"],
    lossy_jpeg_decompression_is_opt_in: ["storescp", "python", "pillow"],
}

const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const RLE: &str = "1.2.840.10008.1.2.5";
const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";

/// storescp flags for a destination that takes the uncompressed syntaxes only (DCMTK's
/// default) and writes what it received unchanged.
const UNCOMPRESSED_ONLY: [&str; 2] = ["+B", "-dhl"];

fn storescp_dest(scp: &Storescp) -> Destination {
    Destination {
        ae_title: scp.aet().to_owned(),
        host: "127.0.0.1".to_owned(),
        port: scp.port(),
    }
}

/// Received files, parsed, by SOP Instance UID.
fn parse_all(files: BTreeMap<String, PathBuf>) -> BTreeMap<String, dicom_object::DefaultDicomObject> {
    files
        .into_iter()
        .map(|(uid, path)| {
            let obj = dicom_object::open_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (uid, obj)
        })
        .collect()
}

fn opts(dest: Destination) -> ScuOptions {
    let mut o = ScuOptions::new(dest);
    o.connect_timeout = Duration::from_secs(5);
    o.acse_timeout = Duration::from_secs(10);
    o.dimse_timeout = Duration::from_secs(10);
    o
}

// ------------------------------------------------------------ instances --

struct Instance {
    path: PathBuf,
    meta: InstanceMeta,
    raw_pixels: Vec<u8>,
}

/// Makes one instance per spec in `dir` (see [`make_instances`]).
fn make(dir: &Path, specs: &[&str]) -> Vec<Instance> {
    make_instances(dir, specs)
        .into_iter()
        .map(|m| Instance {
            meta: InstanceMeta::read(&m.path).unwrap(),
            path: m.path,
            raw_pixels: m.raw_pixels,
        })
        .collect()
}

fn spec(ts: &str) -> String {
    format!(r#"{{"ts": "{ts}"}}"#)
}

fn proposals(instances: &[Instance]) -> Vec<Proposal> {
    proposals_for(
        instances
            .iter()
            .map(|i| (i.meta.sop_class.as_str(), i.meta.transfer_syntax.as_str())),
    )
}

fn pixels(obj: &dicom_object::DefaultDicomObject) -> Vec<u8> {
    obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().into_owned()
}

/// Pixel data equal to the original samples, but for the pad byte an odd
/// length gets.
fn assert_pixels(obj: &dicom_object::DefaultDicomObject, raw: &[u8], what: &str) {
    let got = pixels(obj);
    let padded = raw.len() % 2 == 1 && got.len() == raw.len() + 1 && got.last() == Some(&0);
    assert!(
        got.len() == raw.len() || padded,
        "{what}: {} bytes for {}",
        got.len(),
        raw.len()
    );
    assert!(got[..raw.len()] == *raw, "{what}: pixel data differs");
}

/// Compares two files element by element with pydicom (values, not
/// encodings), and checks that dcmdump parses the second one.
fn assert_same_elements(original: &Path, received: &Path) {
    let script = r#"
import sys, pydicom
a, b = pydicom.dcmread(sys.argv[1]), pydicom.dcmread(sys.argv[2])
def norm(v):
    return v.encode() if isinstance(v, str) else v
diffs = []
for e in a:
    if e.tag not in b:
        diffs.append(f"{e.tag} missing")
        continue
    x, y = e.value, b[e.tag].value
    if type(x) != type(y):
        x, y = norm(x), norm(y)
    if x != y:
        diffs.append(f"{e.tag} {e.keyword}: {x!r} != {y!r}")
diffs += [f"{e.tag} added" for e in b if e.tag not in a]
print("\n".join(diffs))
sys.exit(1 if diffs else 0)
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(original)
        .arg(received)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "elements differ between {} and {}:\n{}{}",
        original.display(),
        received.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(dcmdump) = dcmtk("dcmdump") {
        let out = Command::new(dcmdump).arg(received).output().unwrap();
        assert!(out.status.success(), "dcmdump cannot read {}", received.display());
    }
}

// ---------------------------------------------------------------- tests --

fn echo_and_store_to_storescp() {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = vec![spec(EXPLICIT_VR_LE); 4];
    specs.push(spec(IMPLICIT_VR_LE));
    specs.push(r#"{"ts": "1.2.840.10008.1.2.1", "rows": 300, "cols": 300}"#.to_string());
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let instances = make(dir.path(), &specs);
    let peer = Storescp::start_with("STORESCP", &UNCOMPRESSED_ONLY);

    let report = echo(&opts(storescp_dest(&peer))).unwrap();
    assert_eq!(report.status.code, 0x0000);
    assert_eq!(report.status.class, StatusClass::Success);
    eprintln!("C-ECHO round trip {:?}, total {:?}", report.round_trip, report.total);

    let mut assoc = StoreAssociation::open(&opts(storescp_dest(&peer)), &proposals(&instances)).unwrap();
    for inst in &instances {
        let outcome = assoc.store_file(&inst.path).unwrap();
        match &outcome {
            StoreOutcome::Responded {
                status,
                sent_as,
                converted_from,
            } => {
                assert_eq!(status.code, 0x0000);
                assert_eq!(sent_as, &inst.meta.transfer_syntax, "sent in its own syntax");
                assert_eq!(converted_from, &None);
            }
            other => panic!("{other:?}"),
        }
        assert!(outcome.is_delivered());
    }
    assoc.release().unwrap();

    let received = parse_all(peer.received());
    assert_eq!(received.len(), instances.len());
    for inst in &instances {
        let obj = received.get(&inst.meta.sop_instance).expect("instance received");
        assert_pixels(obj, &inst.raw_pixels, &inst.meta.sop_instance);
    }
}

fn connection_refused_is_clear() {
    let port = free_port();
    let dest = Destination {
        ae_title: "PACS".into(),
        host: "127.0.0.1".into(),
        port,
    };
    let err = echo(&opts(dest)).unwrap_err();
    assert!(matches!(err, ScuError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        format!(
            "could not connect to PACS@127.0.0.1:{port} (connection refused); is the destination running and the port right?"
        )
    );
}

fn storescp_refuses_and_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let instances = make(dir.path(), &[&spec(EXPLICIT_VR_LE), &spec(EXPLICIT_VR_LE)]);

    let refusing = Storescp::start_with("STORESCP", &["--refuse", "-dhl"]);
    let err = StoreAssociation::open(&opts(storescp_dest(&refusing)), &proposals(&instances))
        .err()
        .expect("association refused");
    assert!(matches!(err, ScuError::AssociationRejected { .. }), "{err:?}");
    eprintln!("--refuse: {err}");

    let aborting = Storescp::start_with("STORESCP", &["--abort-after", "-dhl"]);
    let mut assoc = StoreAssociation::open(&opts(storescp_dest(&aborting)), &proposals(&instances)).unwrap();
    let err = assoc.store_file(&instances[0].path).unwrap_err();
    eprintln!("--abort-after: {err}");
    assert!(
        matches!(err, ScuError::Aborted { .. } | ScuError::ConnectionLost { .. }),
        "{err:?}"
    );
    assert!(err.outcome_unknown(), "the data set was sent, no response came");
    assert!(!assoc.is_usable());
    let again = assoc.store_file(&instances[1].path).unwrap_err();
    assert!(matches!(again, ScuError::Closed { .. }), "{again:?}");
}

fn statuses_are_classified() {
    let dir = tempfile::tempdir().unwrap();
    let specs = vec![spec(EXPLICIT_VR_LE); 7];
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let instances = make(dir.path(), &specs);
    let peer = TestScp::start(&[
        "--statuses",
        "0xB000,0xA700,0xC000,0x0122,0xA900,0xB007",
        "--comment",
        "as told",
    ]);
    let mut assoc = StoreAssociation::open(&opts(peer.dest("TESTSCP")), &proposals(&instances)).unwrap();
    let expected = [
        (0xB000, StatusClass::Warning),
        (0xA700, StatusClass::OutOfResources),
        (0xC000, StatusClass::Failure),
        (0x0122, StatusClass::Failure),
        (0xA900, StatusClass::Failure),
        (0xB007, StatusClass::Warning),
        (0x0000, StatusClass::Success),
    ];
    for (inst, (code, class)) in instances.iter().zip(expected) {
        let StoreOutcome::Responded { status, .. } = assoc.store_file(&inst.path).unwrap() else {
            panic!("not sent");
        };
        assert_eq!((status.code, status.class), (code, class), "{status}");
        if code != 0 {
            assert_eq!(status.comment.as_deref(), Some("as told"));
        }
        assert_eq!(
            status.is_delivered(),
            matches!(class, StatusClass::Success | StatusClass::Warning)
        );
    }
    assoc.release().unwrap();
    let received = peer.received();
    let delivered: Vec<&String> = [0usize, 5, 6]
        .iter()
        .map(|i| &instances[*i].meta.sop_instance)
        .collect();
    assert_eq!(received.keys().collect::<Vec<_>>().len(), 3);
    for uid in delivered {
        assert!(received.contains_key(uid));
    }
}

fn rejections_are_classified() {
    let proposals = [Proposal::new(SC, &[EXPLICIT_VR_LE, IMPLICIT_VR_LE])];

    let strict = TestScp::start(&["--require-called-aet", "--ae-title", "PACS"]);
    let err = StoreAssociation::open(&opts(strict.dest("WRONGAE")), &proposals)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(err, ScuError::AssociationRejected { transient: false, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        msg.contains("`WRONGAE`") && msg.contains("`RETRIEVER`") && msg.contains("configuration"),
        "{msg}"
    );
    // The right AE title works.
    assert_eq!(echo(&opts(strict.dest("PACS"))).unwrap().status.code, 0);

    let busy = TestScp::start(&["--reject", "transient"]);
    let err = echo(&opts(busy.dest("TESTSCP"))).unwrap_err();
    assert!(
        matches!(err, ScuError::AssociationRejected { transient: true, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("local limit exceeded"), "{err}");
}

fn converts_between_implicit_and_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let instances = make(dir.path(), &[&spec(EXPLICIT_VR_LE), &spec(IMPLICIT_VR_LE)]);
    let implicit_only = TestScp::start(&["--ts", IMPLICIT_VR_LE]);
    let explicit_only = TestScp::start(&["--ts", EXPLICIT_VR_LE]);

    for (inst, peer, target) in [
        (&instances[0], &implicit_only, IMPLICIT_VR_LE),
        (&instances[1], &explicit_only, EXPLICIT_VR_LE),
    ] {
        let mut assoc = StoreAssociation::open(&opts(peer.dest("TESTSCP")), &proposals(&instances)).unwrap();
        assert!(matches!(
            assoc.plan(&inst.meta.sop_class, &inst.meta.transfer_syntax),
            SendPlan::Convert { ref to, .. } if to == target
        ));
        let outcome = assoc.store_file(&inst.path).unwrap();
        assert_eq!(
            outcome,
            StoreOutcome::Responded {
                status: StoreStatus::new(0, None),
                sent_as: target.to_string(),
                converted_from: Some(inst.meta.transfer_syntax.clone()),
            }
        );
        assoc.release().unwrap();
        let received = peer.file(&inst.meta.sop_instance);
        let obj = dicom_object::open_file(&received).unwrap();
        assert_eq!(obj.meta().transfer_syntax().trim_end_matches('\0'), target);
        assert_pixels(&obj, &inst.raw_pixels, "converted pixel data");
        assert_same_elements(&inst.path, &received);
    }
}

fn rle_is_sent_as_is_or_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let instances = make(
        dir.path(),
        &[
            &spec(RLE),
            r#"{"ts": "1.2.840.10008.1.2.5", "rgb": true, "rows": 7, "cols": 5}"#,
        ],
    );

    // storescp by default takes uncompressed syntaxes only.
    let plain = Storescp::start_with("STORESCP", &UNCOMPRESSED_ONLY);
    let mut assoc = StoreAssociation::open(&opts(storescp_dest(&plain)), &proposals(&instances)).unwrap();
    for inst in &instances {
        let outcome = assoc.store_file(&inst.path).unwrap();
        assert!(
            matches!(&outcome, StoreOutcome::Responded { status, sent_as, converted_from: Some(from) }
                if status.code == 0 && sent_as == EXPLICIT_VR_LE && from == RLE),
            "{outcome:?}"
        );
    }
    assoc.release().unwrap();
    let received = parse_all(plain.received());
    for inst in &instances {
        let obj = &received[&inst.meta.sop_instance];
        assert_pixels(obj, &inst.raw_pixels, "decompressed pixel data");
        let planar = obj.element_opt(tags::PLANAR_CONFIGURATION).unwrap();
        if let Some(p) = planar {
            assert_eq!(p.to_int::<u16>().unwrap(), 0);
        }
    }

    // A destination that takes RLE gets the bytes as they are.
    let rle_ok = TestScp::start(&["--ts", &format!("{RLE},{EXPLICIT_VR_LE}")]);
    let mut assoc = StoreAssociation::open(&opts(rle_ok.dest("TESTSCP")), &proposals(&instances)).unwrap();
    let outcome = assoc.store_file(&instances[0].path).unwrap();
    assert!(
        matches!(&outcome, StoreOutcome::Responded { sent_as, converted_from: None, .. } if sent_as == RLE),
        "{outcome:?}"
    );
    assoc.release().unwrap();
    let got = std::fs::read(rle_ok.file(&instances[0].meta.sop_instance)).unwrap();
    let sent = std::fs::read(&instances[0].path).unwrap();
    let tail = |b: &[u8]| b[b.len() - 256..].to_vec();
    assert_eq!(tail(&got), tail(&sent), "data set bytes unchanged");
}

fn unsendable_instances_are_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let ct = |ts: &str| format!(r#"{{"ts": "{ts}", "sop": "{CT}"}}"#);
    let instances = make(
        dir.path(),
        &[
            &ct(EXPLICIT_VR_LE),
            &ct(J2K_LOSSLESS),
            &spec(EXPLICIT_VR_LE),
            &ct(EXPLICIT_VR_LE),
        ],
    );
    let peer = TestScp::start(&["--sop-classes", CT]);
    let mut assoc = StoreAssociation::open(&opts(peer.dest("TESTSCP")), &proposals(&instances)).unwrap();
    assert!(assoc.store_file(&instances[0].path).unwrap().is_delivered());
    match assoc.store_file(&instances[1].path).unwrap() {
        StoreOutcome::NeedsOtherSyntax {
            file_syntax, accepted, ..
        } => {
            assert_eq!(file_syntax, J2K_LOSSLESS);
            assert!(accepted.iter().any(|t| t == EXPLICIT_VR_LE), "{accepted:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        assoc.store_file(&instances[2].path).unwrap(),
        StoreOutcome::SopClassNotAccepted { sop_class: SC.into() }
    );
    // The association is still good for the rest.
    assert!(assoc.is_usable());
    assert!(assoc.store_file(&instances[3].path).unwrap().is_delivered());
    assoc.release().unwrap();
    assert_eq!(peer.received().len(), 2);
}

fn abort_and_timeout_are_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let instances = make(dir.path(), &[&spec(EXPLICIT_VR_LE), &spec(EXPLICIT_VR_LE)]);

    let aborting = TestScp::start(&["--abort-on", "2"]);
    let mut assoc = StoreAssociation::open(&opts(aborting.dest("TESTSCP")), &proposals(&instances)).unwrap();
    assert!(assoc.store_file(&instances[0].path).unwrap().is_delivered());
    let err = assoc.store_file(&instances[1].path).unwrap_err();
    assert!(
        matches!(
            err,
            ScuError::Aborted {
                outcome_unknown: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());

    let slow = TestScp::start(&["--sleep", "5"]);
    let mut o = opts(slow.dest("TESTSCP"));
    o.dimse_timeout = Duration::from_secs(1);
    let mut assoc = StoreAssociation::open(&o, &proposals(&instances)).unwrap();
    let err = assoc.store_file(&instances[0].path).unwrap_err();
    assert!(
        matches!(
            err,
            ScuError::Timeout {
                outcome_unknown: true,
                ..
            }
        ),
        "{err:?}"
    );
    // The SCP logs a request when it answers, after its 5 s sleep: it had not answered yet.
    assert_eq!(slow.requests(), Vec::new(), "the timeout fired only after the answer");
    assert!(!assoc.is_usable());
    eprintln!("timeout: {err}");
}

/// Lossy JPEG is decompressed only with the opt-in, and stays marked lossy.
fn lossy_jpeg_decompression_is_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let instances = make(
        dir.path(),
        &[r#"{"ts": "1.2.840.10008.1.2.4.50", "rows": 16, "cols": 16}"#],
    );
    let jpeg = &instances[0];
    let peer = Storescp::start_with("STORESCP", &UNCOMPRESSED_ONLY);

    let mut assoc = StoreAssociation::open(&opts(storescp_dest(&peer)), &proposals(&instances)).unwrap();
    match assoc.store_file(&jpeg.path).unwrap() {
        StoreOutcome::NeedsOtherSyntax {
            file_syntax, accepted, ..
        } => {
            assert_eq!(file_syntax, "1.2.840.10008.1.2.4.50");
            assert!(accepted.iter().any(|t| t == EXPLICIT_VR_LE));
        }
        other => panic!("{other:?}"),
    }
    assoc.release().unwrap();
    assert!(peer.received().is_empty());

    let mut o = opts(storescp_dest(&peer));
    o.decompress_lossy = true;
    let mut assoc = StoreAssociation::open(&o, &proposals(&instances)).unwrap();
    let outcome = assoc.store_file(&jpeg.path).unwrap();
    assert!(outcome.is_delivered(), "{outcome:?}");
    assoc.release().unwrap();
    let received = parse_all(peer.received());
    let obj = &received[&jpeg.meta.sop_instance];
    assert_eq!(obj.meta().transfer_syntax().trim_end_matches('\0'), EXPLICIT_VR_LE);
    let lossy = obj.element(tags::LOSSY_IMAGE_COMPRESSION).unwrap().to_str().unwrap();
    assert_eq!(lossy.trim(), "01");
    // Two JPEG decoders (jpeg-decoder here, libjpeg in Pillow) may round
    // the inverse DCT differently; they must agree within one step.
    let got = pixels(obj);
    assert_eq!(got.len(), jpeg.raw_pixels.len());
    let worst = got
        .iter()
        .zip(&jpeg.raw_pixels)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "decoded pixels differ by up to {worst}");
}
