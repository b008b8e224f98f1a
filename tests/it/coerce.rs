//! Tag coercion (`coerce` in the config file) against real destinations: DCMTK `storescp`
//! receives instances in explicit and implicit VR little endian and JPEG baseline, and the
//! received files, read with pydicom, carry the coerced attributes and nothing else changed,
//! with the pixel data byte for byte the cached file's. A wrong rule stops the run before any
//! association; an instance that cannot be coerced fails alone, saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use retriever::dimse::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};

use crate::common::testscp::make_instances;
use crate::common::{
    Orthanc, Storescp, fetch_ok, journal_lines, python, retriever, retriever_at, run_within, temp_cache, uid_of,
};

tests! {
    coerced_copies_arrive_with_the_rules_applied_and_the_pixels_unchanged: ["orthanc", "storescp", "python", "pillow"],
    a_wrong_rule_is_refused_before_anything_is_sent: ["orthanc", "storescp"],
    a_deflated_instance_is_not_sent_and_says_why: ["orthanc", "storescp"],
}

const LIMIT: Duration = Duration::from_secs(60);
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

/// A config file holding these rules.
fn config(dir: &Path, rules: Value) -> PathBuf {
    let path = dir.join("retriever.json");
    std::fs::write(&path, json!({ "coerce": rules }).to_string()).unwrap();
    path
}

/// Adds what the rules act on to each file, in its own transfer syntax: an issuer, an
/// institution, a referring physician and a private block.
const DECORATE: &str = r#"
import sys, pydicom
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    ds.IssuerOfPatientID = "CLOUD"
    ds.InstitutionName = "CLOUD HOSPITAL"
    ds.ReferringPhysicianName = "REFERRER^ROBIN"
    ds.StationName = "SCANNER1"
    block = ds.private_block(0x0009, "ACME", create=True)
    block.add_new(0x01, "LO", "secret")
    ds.save_as(path)
"#;

/// For each (cached file, received file): what differs at the top level of the data set
/// (tags, private ones aside), the values of interest, the private tags there were the private tags left anywhere, and whether the Pixel Data
/// element's value is the same bytes.
pub(crate) const COMPARE: &str = r#"
import sys, json, hashlib, pydicom
out = {}
for cached, received in json.loads(sys.argv[1]):
    a, b = pydicom.dcmread(cached), pydicom.dcmread(received)
    def elements(ds):
        return {str(e.tag): (e.VR, repr(e.value)) for e in ds if e.tag != 0x7FE00010}
    ea, eb = elements(a), elements(b)
    digest = lambda ds: hashlib.sha256(ds.PixelData).hexdigest()
    out[str(b.SOPInstanceUID)] = {
        "ts": str(b.file_meta.TransferSyntaxUID),
        "changed": sorted(t for t in set(ea) | set(eb) if ea.get(t) != eb.get(t) and int(t[1:5], 16) % 2 == 0),
        "private_before": len([e for e in a.iterall() if e.tag.is_private]),
        "PatientID": b.get("PatientID"),
        "IssuerOfPatientID": b.get("IssuerOfPatientID"),
        "InstitutionName": b.get("InstitutionName"),
        "StationName": b.get("StationName"),
        "ReferringPhysicianName": None if "ReferringPhysicianName" not in b else str(b.ReferringPhysicianName),
        "private": [str(e.tag) for e in b.iterall() if e.tag.is_private],
        "pixels_same": digest(a) == digest(b),
    }
print(json.dumps(out))
"#;

pub(crate) fn python_json(script: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The cached file of each instance of a study, by SOP Instance UID.
fn cached_files(cache: &Path, study: &str) -> Vec<(String, PathBuf)> {
    walkdir::WalkDir::new(cache.join("studies").join(study).join("series"))
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".dcm")
                .map(|sop| (sop.to_owned(), e.path().to_owned()))
        })
        .collect()
}

fn coerced_copies_arrive_with_the_rules_applied_and_the_pixels_unchanged() {
    let files = tempfile::tempdir().unwrap();
    let study = "1.2.826.0.1.3680043.8.498.71";
    let spec = |ts: &str| {
        format!(
            r#"{{"ts": "{ts}", "rows": 16, "cols": 16, "study": "{study}", "patient": "PCO", "accession": "ACCCO"}}"#
        )
    };
    let made = make_instances(
        files.path(),
        &[&spec(EXPLICIT_VR_LE), &spec(IMPLICIT_VR_LE), &spec(JPEG_BASELINE)],
    );
    let paths: Vec<String> = made.iter().map(|m| m.path.display().to_string()).collect();
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let out = Command::new(python())
        .args(["-c", DECORATE])
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cloud = Orthanc::empty();
    for m in &made {
        cloud.upload_file(&m.path);
    }
    let cache = temp_cache();
    fetch_ok(&cloud, cache.path(), &[study]);
    let rules = json!([
        {"set": "PatientID", "value": "EXT-{value}"},
        {"map": "IssuerOfPatientID", "values": {"CLOUD": "HOSP"}},
        {"map": "StationName", "values": {"OTHER": "X"}},
        {"set": "InstitutionName", "value": "ROUTED"},
        {"remove": "ReferringPhysicianName"},
        {"remove": "private"},
    ]);
    let settings = config(files.path(), rules);

    // `retriever config` shows the rules.
    let (code, out, err) = run(retriever().arg("--config").arg(&settings).args(["config", "--json"]));
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let shown = shown["coerce"]["value"].as_str().unwrap_or_default().to_owned();
    assert!(
        shown.contains("set PatientID = \"EXT-{value}\"") && shown.contains("remove private"),
        "{out}"
    );

    for (flags, converted) in [(&["+xa", "+B", "-dhl"][..], false), (&["+xi", "+B", "-dhl"][..], true)] {
        let scp = Storescp::start_with("STORESCP", flags);
        let dest = scp.address();
        let (code, _, err) = run(retriever_at(&cloud.dicomweb_url(), cache.path())
            .arg("--config")
            .arg(&settings)
            .args(["store", study, "--to", &dest, "--decompress-lossy"]));
        assert_eq!(code, 0, "store failed:\n{err}");
        let cached = cached_files(cache.path(), study);
        assert_eq!(cached.len(), 3);
        let received = scp.received();
        let pairs: Vec<(String, String)> = cached
            .iter()
            .map(|(sop, path)| {
                let got = received.get(sop).unwrap_or_else(|| panic!("{sop} did not arrive"));
                (path.display().to_string(), got.display().to_string())
            })
            .collect();
        let report = python_json(COMPARE, &[&serde_json::to_string(&pairs).unwrap()]);
        for (sop, got) in report.as_object().unwrap() {
            assert_eq!(got["PatientID"], "EXT-PCO", "{sop}: {got}");
            assert_eq!(got["IssuerOfPatientID"], "HOSP", "{sop}: {got}");
            assert_eq!(got["InstitutionName"], "ROUTED", "{sop}: {got}");
            assert_eq!(got["StationName"], "SCANNER1", "{sop}: {got}");
            assert_eq!(got["ReferringPhysicianName"], Value::Null, "{sop}: {got}");
            assert_eq!(got["private"], json!([]), "{sop}: {got}");
            assert!(got["private_before"].as_u64().unwrap() >= 2, "{sop}: {got}");
            let ts = got["ts"].as_str().unwrap();
            if converted {
                assert_eq!(ts, IMPLICIT_VR_LE, "{sop}: {got}");
                continue;
            }
            // Sent in its own syntax: only the coerced attributes differ, and the pixel
            // data is the cached file's, byte for byte.
            assert_eq!(
                got["changed"],
                json!(["(0008,0080)", "(0008,0090)", "(0010,0020)", "(0010,0021)"]),
                "{sop}: {got}"
            );
            assert_eq!(got["pixels_same"], true, "{sop}: {got}");
        }
        let mut syntaxes: Vec<&str> = report
            .as_object()
            .unwrap()
            .values()
            .map(|v| v["ts"].as_str().unwrap())
            .collect();
        syntaxes.sort();
        if !converted {
            assert_eq!(syntaxes, [IMPLICIT_VR_LE, EXPLICIT_VR_LE, JPEG_BASELINE]);
        }
        // The journal says each delivered copy was coerced, and by which rules.
        let records = journal_lines(cache.path(), study, &dest);
        assert_eq!(records.len(), 3, "{records:?}");
        let fingerprints: Vec<&str> = records.iter().filter_map(|r| r["coerced"].as_str()).collect();
        assert_eq!(fingerprints.len(), 3, "{records:?}");
        assert!(
            fingerprints.iter().all(|f| f.len() == 16 && *f == fingerprints[0]),
            "{records:?}"
        );
    }
    // The cache still holds the files as they came from the cloud.
    for (_, path) in cached_files(cache.path(), study) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.windows(6).any(|w| w == b"CLOUD "),
            "{} was changed",
            path.display()
        );
    }
}

fn a_wrong_rule_is_refused_before_anything_is_sent() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1001", "--priors", "0"]);
    let scp = Storescp::start("STORESCP");
    let dir = tempfile::tempdir().unwrap();
    for (rules, why) in [
        (
            json!([{"remove": "private"}, {"set": "SOPInstanceUID", "value": "1.2.3"}]),
            "`coerce[1]`",
        ),
        (json!([{"set": "PatientIdentity", "value": "X"}]), "not a DICOM keyword"),
        (
            json!([{"set": "PatientID", "value": "P"}, {"set": "Modality", "value": "ct"}]),
            "`coerce[1]`",
        ),
        (json!([{"rewrite": "PatientID"}]), "none of `set`, `map` or `remove`"),
        (json!([{"remove": "(7fe0,0010)"}]), "pixel data"),
    ] {
        let settings = config(dir.path(), rules.clone());
        for args in [
            &["store", uid_of("ACC1001"), "--to", &scp.address()][..],
            &["config"][..],
        ] {
            let (code, _, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path())
                .arg("--config")
                .arg(&settings)
                .args(args));
            assert_eq!(code, 1, "{rules} {args:?}: {err}");
            assert!(
                err.contains(why) && err.contains("`coerce` in the config file"),
                "{rules}: {err}"
            );
            assert!(
                err.contains(&settings.display().to_string()),
                "the file is named: {err}"
            );
        }
    }
    assert!(scp.received().is_empty());
    assert!(!scp.log().contains("Association Received"), "{}", scp.log());
}

fn a_deflated_instance_is_not_sent_and_says_why() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1004", "--priors", "0"]);
    let scp = Storescp::start("STORESCP");
    let dir = tempfile::tempdir().unwrap();
    let settings = config(dir.path(), json!([{"set": "IssuerOfPatientID", "value": "HOSP"}]));
    let (code, _, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path())
        .arg("--config")
        .arg(&settings)
        .args(["store", uid_of("ACC1004"), "--to", &scp.address()]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("failed to coerce `") && err.contains("deflated") && err.contains("it was not sent"),
        "{err}"
    );
    assert!(scp.received().is_empty(), "nothing uncoerced went out");
}
