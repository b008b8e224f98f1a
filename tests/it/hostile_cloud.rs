//! A cloud that sends what it should not: instances that are not what was asked for, broken or
//! endless bodies, and data sets built to crash or exhaust a parser. Nothing of it may reach the
//! cache or the destination.
//!
//! Each test keeps a study in its own Orthanc (so QIDO-RS answers truthfully) and puts the fault
//! proxy in front of it, answering the WADO-RS retrieve with a crafted multipart body. The DICOM
//! bytes are written with the same tiny Part-10 writer the unit tests use.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::proxy::{Fault, Proxy, Rule};
use crate::common::testscp::TestScp;
use crate::common::{Orthanc, retriever_at, run_within, temp_cache};

#[path = "../../src/intake/testfile.rs"]
mod testfile;

use testfile::{Ids, Writer};

tests! {
    a_re_requested_instance_of_another_patient_is_not_sent: ["orthanc", "python"],
    a_tiny_part_declaring_4_gib_is_refused_and_the_router_stays_small: ["orthanc"],
    a_truncated_instance_is_refused_and_the_study_is_not_complete: ["orthanc"],
    ten_thousand_nested_sequences_are_refused_without_a_crash: ["orthanc"],
    an_endless_part_is_cut_at_the_maximum_instance_size: ["orthanc"],
    an_instance_without_the_studys_patient_id_is_refused: ["orthanc"],
    a_one_sided_issuer_warns_once_and_a_different_one_is_refused: ["orthanc"],
    a_study_without_a_patient_id_is_fetched_with_one_warning: ["orthanc"],
    re_requested_instances_with_a_one_sided_issuer_are_sent_with_one_warning: ["orthanc", "python"],
}

const LIMIT: Duration = Duration::from_secs(60);
const BOUNDARY: &str = "hostile-boundary-0123456789";

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

/// UIDs of a test of its own: `N` tells the tests apart.
struct Uids {
    study: String,
    series: String,
    sops: Vec<String>,
}

fn uids(n: u32, instances: usize) -> Uids {
    let study = format!("1.2.826.0.1.3680043.8.498.9{n}");
    let series = format!("{study}.1");
    let sops = (1..=instances).map(|i| format!("{series}.{i}")).collect();
    Uids { study, series, sops }
}

impl Uids {
    fn ids(&self, i: usize, patient: Option<&'static str>) -> Ids<'_> {
        Ids::new(&self.study, &self.series, &self.sops[i], patient)
    }
}

/// The multipart response holding `parts`, with its Content-Type.
fn multipart(parts: &[Vec<u8>]) -> Fault {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes());
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    Fault::Respond {
        status: 200,
        headers: vec![content_type()],
        body,
    }
}

fn content_type() -> (String, String) {
    (
        "Content-Type".into(),
        format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"),
    )
}

/// An Orthanc holding `files`, and the proxy in front of it.
fn cloud_with(files: &[Vec<u8>]) -> (Orthanc, Proxy) {
    let orthanc = Orthanc::empty();
    for f in files {
        orthanc.upload(f.clone());
    }
    let proxy = Proxy::to(&orthanc);
    (orthanc, proxy)
}

/// The retrieve of any series or instance of `u`'s series answers `fault`.
fn answer_retrieve(proxy: &Proxy, u: &Uids, fault: Fault) {
    proxy.add(Rule::new(fault).path_contains(&format!("/series/{}", u.series)));
}

fn fetch(proxy: &Proxy, cache: &Path, u: &Uids, extra: &[&str]) -> (i32, String, String) {
    run(retriever_at(&proxy.dicomweb_url(), cache)
        .args(["fetch", &u.study, "--priors", "0"])
        .args(extra))
}

/// The instance files the cache holds for the study, and whether it is recorded complete.
fn cached(cache: &Path, u: &Uids) -> (usize, bool) {
    let dir = cache.join("studies").join(&u.study);
    let files = walkdir::WalkDir::new(dir.join("series"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    let complete = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m).ok())
        .is_some_and(|m| !m["completed_at"].is_null());
    (files, complete)
}

/// Bytes of the study's tmp directory (what a download left staged).
fn staged_bytes(cache: &Path, u: &Uids) -> u64 {
    let tmp = cache.join("studies").join(&u.study).join("tmp");
    walkdir::WalkDir::new(tmp)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// A data set with `body` written between the identity and the study and series UIDs.
fn instance_with(ids: &Ids, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new(true, false);
    testfile::identity(&mut w, ids);
    body(&mut w);
    testfile::study_series(&mut w, ids);
    testfile::part10(testfile::EXPLICIT_LE, testfile::CT_IMAGE, ids.sop, &w.out)
}

/// A lossy JPEG instance: never converted here, so a destination that takes only uncompressed
/// syntaxes makes `store` ask the cloud for it again.
fn jpeg(ids: &Ids) -> Vec<u8> {
    let mut w = Writer::new(true, false);
    testfile::identity(&mut w, ids);
    testfile::study_series(&mut w, ids);
    w.header(0x7FE0, 0x0010, "OB", u32::MAX)
        .item(0)
        .item(4)
        .raw(&[0xFF, 0xD8, 0xFF, 0xD9])
        .sequence_end();
    testfile::part10(testfile::JPEG_BASELINE, testfile::CT_IMAGE, ids.sop, &w.out)
}

/// The re-request of an instance for a destination that needs another transfer syntax is
/// answered with another patient's data set (same UIDs): it is refused, nothing reaches the
/// destination, and the instance is recorded as not delivered.
fn a_re_requested_instance_of_another_patient_is_not_sent() {
    let u = uids(1, 1);
    let (_orthanc, proxy) = cloud_with(&[jpeg(&u.ids(0, Some("PAT-RIGHT")))]);
    let cache = temp_cache();
    let (code, _, err) = fetch(&proxy, cache.path(), &u, &[]);
    assert_eq!(code, 0, "{err}");

    let other = testfile::instance(testfile::EXPLICIT_LE, &u.ids(0, Some("PAT-OTHER")));
    let re_request = proxy.add(Rule::new(multipart(&[other])).path_contains(&format!("/instances/{}", u.sops[0])));
    let scp = TestScp::start(&[]);
    let dest = scp.address("TESTSCP");
    let (code, _, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["store", &u.study, "--to", &dest]));
    assert_eq!(
        proxy.hits(re_request),
        1,
        "the instance was not asked for again:\n{err}"
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Patient ID `PAT-OTHER` is not the study's Patient ID `PAT-RIGHT`"),
        "{err}"
    );
    assert!(
        scp.received_sop_uids().is_empty(),
        "the destination received {:?}",
        scp.received_sop_uids()
    );
    let journal = std::fs::read_to_string(
        cache
            .path()
            .join("studies")
            .join(&u.study)
            .join("delivered")
            .join(format!("{}.jsonl", crate::common::dest_key(&dest))),
    )
    .unwrap();
    let last: serde_json::Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    assert_eq!(last["state"], "failed", "{journal}");
}

/// A part of under 1 KiB that declares a value of 4 GiB: refused before any parser sees it. The
/// process runs with 2 GiB of address space, so reserving the declared length would kill it.
fn a_tiny_part_declaring_4_gib_is_refused_and_the_router_stays_small() {
    let u = uids(2, 1);
    let (_orthanc, proxy) = cloud_with(&[testfile::instance(testfile::EXPLICIT_LE, &u.ids(0, Some("P2")))]);
    let tiny = instance_with(&u.ids(0, Some("P2")), |w| {
        w.header(0x0011, 0x1010, "OB", 0xFFFF_FFF0).raw(&[1, 2, 3, 4]);
    });
    assert!(tiny.len() < 1024);
    answer_retrieve(&proxy, &u, multipart(&[tiny]));
    let cache = temp_cache();
    let mut cmd = Command::new("sh");
    let inner = retriever_at(&proxy.dicomweb_url(), cache.path());
    cmd.arg("-c")
        .arg("ulimit -v 2097152 && exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args())
        .args(["fetch", &u.study, "--priors", "0"]);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("declares 4294967280 bytes"), "{err}");
    assert_eq!(cached(cache.path(), &u), (0, false));
}

/// An instance cut short (its pixel data declares more than is there): refused, and the study
/// is not complete.
fn a_truncated_instance_is_refused_and_the_study_is_not_complete() {
    let u = uids(3, 2);
    let files: Vec<Vec<u8>> = (0..2)
        .map(|i| testfile::instance(testfile::EXPLICIT_LE, &u.ids(i, Some("P3"))))
        .collect();
    let (_orthanc, proxy) = cloud_with(&files);
    let mut cut = files[1].clone();
    cut.truncate(cut.len() - 6);
    answer_retrieve(&proxy, &u, multipart(&[files[0].clone(), cut]));
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &u, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(out.is_empty(), "reported complete: {out}");
    assert_eq!(cached(cache.path(), &u), (1, false));
}

/// Sequences nested 10,000 deep: refused by the walk, no stack overflow.
fn ten_thousand_nested_sequences_are_refused_without_a_crash() {
    let u = uids(4, 1);
    let (_orthanc, proxy) = cloud_with(&[testfile::instance(testfile::EXPLICIT_LE, &u.ids(0, Some("P4")))]);
    let deep = instance_with(&u.ids(0, Some("P4")), |w| {
        w.nested(10_000, true);
    });
    answer_retrieve(&proxy, &u, multipart(&[deep]));
    let cache = temp_cache();
    let (code, _, err) = fetch(&proxy, cache.path(), &u, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nested more than 32 deep"), "{err}");
    assert_eq!(cached(cache.path(), &u), (0, false));
}

/// A part that never ends: cut at --max-instance-size, the download stopped, little written.
fn an_endless_part_is_cut_at_the_maximum_instance_size() {
    let u = uids(5, 1);
    let (_orthanc, proxy) = cloud_with(&[testfile::instance(testfile::EXPLICIT_LE, &u.ids(0, Some("P5")))]);
    let mut start = format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    start.extend(instance_with(&u.ids(0, Some("P5")), |w| {
        w.header(0x0011, 0x1010, "OB", 0xFFFF_FFF0);
    }));
    let endless = proxy.add(
        Rule::new(Fault::Endless {
            headers: vec![content_type()],
            start,
        })
        .path_contains(&format!("/series/{}", u.series)),
    );
    let cache = temp_cache();
    let (code, _, err) = fetch(&proxy, cache.path(), &u, &["--max-instance-size", "1MiB"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the cloud sent more than the maximum instance size of 1 MiB for one instance"),
        "{err}"
    );
    assert!(err.contains("--max-instance-size"), "{err}");
    // One request: a part too large is not a reason to ask again.
    assert_eq!(proxy.hits(endless), 1);
    assert_eq!(cached(cache.path(), &u), (0, false));
    assert_eq!(staged_bytes(cache.path(), &u), 0);
}

/// The study has a Patient ID and the instance none: refused.
fn an_instance_without_the_studys_patient_id_is_refused() {
    let u = uids(6, 1);
    let (_orthanc, proxy) = cloud_with(&[testfile::instance(testfile::EXPLICIT_LE, &u.ids(0, Some("P6")))]);
    answer_retrieve(
        &proxy,
        &u,
        multipart(&[testfile::instance(testfile::EXPLICIT_LE, &u.ids(0, None))]),
    );
    let cache = temp_cache();
    let (code, _, err) = fetch(&proxy, cache.path(), &u, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("it has no Patient ID, but the study's Patient ID is `P6`"),
        "{err}"
    );
    assert_eq!(cached(cache.path(), &u), (0, false));
}

/// An Issuer of Patient ID on one side only: accepted, with one warning naming the study; on
/// both sides and different: refused.
fn a_one_sided_issuer_warns_once_and_a_different_one_is_refused() {
    let u = uids(7, 3);
    let files: Vec<Vec<u8>> = (0..3)
        .map(|i| testfile::instance(testfile::EXPLICIT_LE, &u.ids(i, Some("P7"))))
        .collect();
    let (_orthanc, proxy) = cloud_with(&files);
    let with_issuer = |issuer| -> Vec<Vec<u8>> {
        (0..3)
            .map(|i| {
                let mut ids = u.ids(i, Some("P7"));
                ids.issuer = Some(issuer);
                testfile::instance(testfile::EXPLICIT_LE, &ids)
            })
            .collect()
    };
    let rule = proxy.add(
        Rule::new(multipart(&with_issuer("HOSP-A")))
            .path_contains(&format!("/series/{}", u.series))
            .times(1),
    );
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &u, &[]);
    assert_eq!(proxy.hits(rule), 1);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&u.study), "{out}");
    let warning = format!("instances of study `{}` name an Issuer of Patient ID", u.study);
    assert_eq!(err.matches(&warning).count(), 1, "{err}");
    assert_eq!(cached(cache.path(), &u), (3, true));

    // The cloud's index now names issuer HOSP-B for the patient; instances of HOSP-A are refused.
    let u = uids(8, 1);
    let mut ids = u.ids(0, Some("P8"));
    ids.issuer = Some("HOSP-B");
    let (_orthanc, proxy) = cloud_with(&[testfile::instance(testfile::EXPLICIT_LE, &ids)]);
    ids.issuer = Some("HOSP-A");
    answer_retrieve(
        &proxy,
        &u,
        multipart(&[testfile::instance(testfile::EXPLICIT_LE, &ids)]),
    );
    let cache = temp_cache();
    let (code, _, err) = fetch(&proxy, cache.path(), &u, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Issuer of Patient ID `HOSP-A` is not the study's `HOSP-B`"),
        "{err}"
    );
    assert_eq!(cached(cache.path(), &u), (0, false));
}

/// A study with no Patient ID in the cloud's index: its instances are taken, with one warning
/// naming the study.
fn a_study_without_a_patient_id_is_fetched_with_one_warning() {
    let u = uids(9, 2);
    let files: Vec<Vec<u8>> = (0..2)
        .map(|i| testfile::instance(testfile::EXPLICIT_LE, &u.ids(i, None)))
        .collect();
    let (_orthanc, proxy) = cloud_with(&files);
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &u, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&u.study), "{out}");
    let warning = format!("study `{}` has no Patient ID in the cloud's index", u.study);
    assert_eq!(err.matches(&warning).count(), 1, "{err}");
    assert_eq!(cached(cache.path(), &u), (2, true));
}

/// Instances asked for again that name an Issuer of Patient ID the study does not: sent, with
/// one warning for the study.
fn re_requested_instances_with_a_one_sided_issuer_are_sent_with_one_warning() {
    let u = uids(10, 2);
    let (_orthanc, proxy) = cloud_with(&[jpeg(&u.ids(0, Some("P10"))), jpeg(&u.ids(1, Some("P10")))]);
    let cache = temp_cache();
    let (code, _, err) = fetch(&proxy, cache.path(), &u, &[]);
    assert_eq!(code, 0, "{err}");
    for i in 0..2 {
        let mut ids = u.ids(i, Some("P10"));
        ids.issuer = Some("HOSP-A");
        let answer = multipart(&[testfile::instance(testfile::EXPLICIT_LE, &ids)]);
        proxy.add(Rule::new(answer).path_contains(&format!("/instances/{}", u.sops[i])));
    }
    let scp = TestScp::start(&[]);
    let dest = scp.address("TESTSCP");
    let (code, _, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["store", &u.study, "--to", &dest]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(scp.received_sop_uids(), u.sops.iter().cloned().collect());
    let warning = format!("instances of study `{}` name an Issuer of Patient ID", u.study);
    assert_eq!(err.matches(&warning).count(), 1, "{err}");
}
