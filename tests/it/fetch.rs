//! `retriever fetch` and `retriever ls` against a real Orthanc with DICOMweb,
//! directly and through the fault-injecting proxy.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::proxy::{Fault, Proxy, Rule};
use crate::common::{Orthanc, TlsFront, cached_instances, ls_json, retriever_at, run_within, temp_cache, testdata};

tests! {
    fetch_brings_the_study_and_its_three_most_recent_priors: ["orthanc"],
    dry_run_explains_each_prior_and_downloads_nothing: ["orthanc"],
    study_uid_works_and_a_rerun_downloads_nothing: ["orthanc"],
    a_cut_connection_resumes_with_only_what_is_missing: ["orthanc"],
    busy_cloud_503_and_429_are_retried_honouring_retry_after: ["orthanc"],
    a_stalled_download_times_out_and_is_retried: ["orthanc"],
    https_with_a_private_certificate_authority: ["orthanc", "openssl", "python"],
    refused_credentials_fail_clearly_without_retrying: ["orthanc"],
    an_instance_of_another_study_is_rejected_and_the_study_not_reported_complete: ["orthanc"],
    uids_that_could_escape_the_cache_are_rejected: ["orthanc"],
    an_unknown_accession_fails_with_a_clear_message: ["orthanc"],
    two_processes_fetching_the_same_study_do_not_trample_each_other: ["orthanc"],
    killed_mid_fetch_a_rerun_completes_the_study: ["orthanc"],
}

const LIMIT: Duration = Duration::from_secs(120);

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

/// Asserts that the cache holds exactly the study's instances, byte for byte
/// what the server was loaded with.
pub(crate) fn assert_study_cached(cache: &Path, accession: &str) {
    let study = testdata().study(accession);
    let cached = cached_instances(cache, &study.study_uid);
    let got: BTreeSet<String> = cached.keys().cloned().collect();
    assert_eq!(got, study.sop_uids(), "instances of {accession} in the cache");
    for instance in study.instances() {
        assert!(
            cached[&instance.sop_uid] == instance.bytes(),
            "bytes of {} differ",
            instance.sop_uid
        );
    }
}

fn no_temporaries_outside(cache: &Path) {
    for entry in walkdir::WalkDir::new(cache).into_iter().filter_map(|e| e.ok()) {
        let p = entry.path().to_string_lossy().into_owned();
        assert!(!p.ends_with(".part") || p.contains("/tmp/"), "stray temporary {p}");
    }
}

fn fetch_brings_the_study_and_its_three_most_recent_priors() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let (code, out, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args(["fetch", "ACC1001"]));
    assert_eq!(code, 0, "fetch failed: {err}");
    let data = testdata();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "one line per complete study:\n{out}");
    let uids: BTreeSet<&str> = lines.iter().map(|l| l.split('\t').next().unwrap()).collect();
    let want: BTreeSet<&str> = ["ACC1001", "ACC1002", "ACC1003", "ACC1004"]
        .iter()
        .map(|a| data.study(a).study_uid.as_str())
        .collect();
    assert_eq!(uids, want, "the current study and the 3 most recent priors");
    for accession in ["ACC1001", "ACC1002", "ACC1003", "ACC1004"] {
        assert_study_cached(cache.path(), accession);
    }
    // The same Patient ID from another issuer is another patient.
    assert!(cached_instances(cache.path(), &data.study("ACC3001").study_uid).is_empty());
    no_temporaries_outside(cache.path());
    assert!(cache.path().join("CACHEDIR.TAG").is_file());

    let listed = ls_json(&orthanc.dicomweb_url(), cache.path());
    assert_eq!(listed.len(), 4);
    for study in &listed {
        assert_eq!(study["state"], "complete", "{study}");
        assert_eq!(study["instances"], study["expected_instances"]);
    }
}

fn dry_run_explains_each_prior_and_downloads_nothing() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let data = testdata();
    let (code, out, err) =
        run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args(["fetch", "ACC1001", "--dry-run", "--json"]));
    assert_eq!(code, 0, "dry run failed: {err}");
    let rows: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let row = |accession: &str| rows.iter().find(|r| r["accession"] == accession).cloned();
    assert_eq!(row("ACC1001").unwrap()["role"], "current");
    for chosen in ["ACC1002", "ACC1003", "ACC1004"] {
        assert_eq!(row(chosen).unwrap()["fetch"], true, "{chosen}: {rows:?}");
    }
    let enough = row("ACC1005").unwrap();
    assert_eq!(enough["fetch"], false);
    assert!(enough["reason"].as_str().unwrap().contains("were enough"), "{enough}");
    let old = row("ACC1006").unwrap();
    assert!(old["reason"].as_str().unwrap().contains("lookback"), "{old}");
    let other = row("ACC3001").unwrap();
    assert!(other["reason"].as_str().unwrap().contains("another issuer"), "{other}");
    assert!(row("ACC2001").is_none(), "another patient's study is not a candidate");
    assert!(cached_instances(cache.path(), &data.study("ACC1001").study_uid).is_empty());

    // The text form says the same in words.
    let (code, out, _) =
        run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args(["fetch", "ACC1001", "--explain"]));
    assert_eq!(code, 0);
    assert!(out.contains("skip") && out.contains("lookback"), "{out}");
}

fn study_uid_works_and_a_rerun_downloads_nothing() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    let cache = temp_cache();
    let study = testdata().study("ACC2002");
    let fetch = |extra: &[&str]| {
        let mut cmd = retriever_at(&proxy.dicomweb_url(), cache.path());
        cmd.args(["fetch", &study.study_uid, "--priors", "0", "--json"])
            .args(extra);
        run(&mut cmd)
    };
    let (code, out, err) = fetch(&[]);
    assert_eq!(code, 0, "{err}");
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["study_uid"], study.study_uid.as_str());
    assert_eq!(row["accession"], "ACC2002");
    assert_eq!(row["role"], "current");
    assert_eq!(row["patient_id"], study.patient_id.as_str());
    assert_eq!(row["instances"], study.num_instances);
    assert!(Path::new(row["path"].as_str().unwrap()).is_dir());
    assert_study_cached(cache.path(), "ACC2002");

    let wado_before = proxy
        .requests()
        .iter()
        .filter(|r| r.target.contains("/series/"))
        .count();
    assert!(wado_before > 0);
    let (code, out, err) = fetch(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "a complete study is reported again");
    let wado_after = proxy
        .requests()
        .iter()
        .filter(|r| r.target.contains("/series/"))
        .count();
    assert_eq!(wado_after, wado_before, "nothing downloaded again");
}

fn a_cut_connection_resumes_with_only_what_is_missing() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    let big = testdata().large();
    // Cut the first series download after ~3 instances' worth of bytes.
    let first_series = big.series[0].series_uid.clone();
    let cut = proxy.add(
        Rule::new(Fault::CutAfter(3 * 530_000))
            .path_contains(&format!("/series/{first_series}"))
            .times(1),
    );
    let cache = temp_cache();
    let (code, out, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", &big.accession, "--priors", "0"]));
    assert_eq!(code, 0, "fetch failed: {err}");
    assert_eq!(proxy.hits(cut), 1);
    assert_eq!(out.lines().count(), 1);
    assert_study_cached(cache.path(), &big.accession);
    // The rest of that series came back instance by instance, not again in full.
    let whole_series = proxy
        .requests()
        .iter()
        .filter(|r| r.target.ends_with(&format!("/series/{first_series}")))
        .count();
    assert_eq!(whole_series, 1, "the series was not downloaded in full a second time");
    let single = proxy
        .requests()
        .iter()
        .filter(|r| r.target.contains("/instances/"))
        .count();
    assert!(
        single > 0 && single < big.series[0].instances.len(),
        "{single} single-instance requests"
    );
    no_temporaries_outside(cache.path());
}

fn busy_cloud_503_and_429_are_retried_honouring_retry_after() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    let qido = proxy.add(
        Rule::new(Fault::unavailable(1))
            .path_contains("AccessionNumber=ACC2001")
            .times(2),
    );
    let wado = proxy.add(
        Rule::new(Fault::too_many_requests(1))
            .path_contains("/series/")
            .times(1),
    );
    let cache = temp_cache();
    let started = std::time::Instant::now();
    let (code, _, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", "ACC2001", "--priors", "0"]));
    assert_eq!(code, 0, "fetch failed: {err}");
    assert_eq!(proxy.hits(qido), 2);
    assert_eq!(proxy.hits(wado), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After: 1 was honoured three times"
    );
    assert_study_cached(cache.path(), "ACC2001");
}

fn a_stalled_download_times_out_and_is_retried() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    let stall = proxy.add(
        Rule::new(Fault::stall(1000, Duration::from_secs(60)))
            .path_contains("/series/")
            .times(1),
    );
    let cache = temp_cache();
    let (code, _, err) = run(retriever_at(&proxy.dicomweb_url(), cache.path()).args([
        "fetch",
        "ACC2001",
        "--priors",
        "0",
        "--idle-timeout",
        "2s",
    ]));
    assert_eq!(code, 0, "fetch failed: {err}");
    assert_eq!(proxy.hits(stall), 1);
    assert_study_cached(cache.path(), "ACC2001");
}

/// The cloud over HTTPS with a certificate from a private authority: with that authority's
/// certificate given (`--ca-bundle`) a study and its priors arrive over several connections at
/// once; without it, nothing is sent and the error says what to do.
fn https_with_a_private_certificate_authority() {
    let orthanc = Orthanc::shared();
    let front = TlsFront::to(orthanc.http_addr());
    let cloud = format!("{}/dicom-web", front.url());

    let cache = temp_cache();
    let (code, out, err) = run(retriever_at(&cloud, cache.path())
        .arg("--ca-bundle")
        .arg(front.ca())
        .args(["fetch", "ACC1001", "--jobs", "4"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 4, "the study and its three priors: {out}");
    for accession in ["ACC1001", "ACC1002", "ACC1003", "ACC1004"] {
        assert_study_cached(cache.path(), accession);
    }

    let untrusted = temp_cache();
    let (code, out, err) = run(retriever_at(&cloud, untrusted.path()).args(["fetch", "ACC1001"]));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("presented a certificate that is not trusted") && err.contains("--ca-bundle"),
        "{err}"
    );
    assert!(err.lines().count() <= 3, "one clear error, not a cascade: {err}");
}

fn refused_credentials_fail_clearly_without_retrying() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let (code, out, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path())
        .env("RETRIEVER_PASSWORD", "wrong-password")
        .args(["fetch", "ACC1001"]));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("401") && err.contains("RETRIEVER_PASSWORD"), "{err}");
    assert!(!err.contains("wrong-password"), "the secret is never printed: {err}");
    assert!(err.lines().count() <= 3, "one clear error, not a cascade: {err}");
}

fn an_instance_of_another_study_is_rejected_and_the_study_not_reported_complete() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    let study = testdata().study("ACC2001");
    // Same length, different last digit: the part claims to be of another study.
    let uid = &study.study_uid;
    let last = uid.chars().last().unwrap();
    let other = format!("{}{}", &uid[..uid.len() - 1], if last == '9' { '8' } else { '9' });
    proxy.add(Rule::new(Fault::rewrite(uid, &other)).path_contains("/series/"));
    let cache = temp_cache();
    let (code, out, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", "ACC2001", "--priors", "0"]));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "nothing reported complete: {out}");
    assert!(
        err.contains(uid.as_str()) && err.contains("not to the study asked for"),
        "{err}"
    );
    assert!(cached_instances(cache.path(), uid).is_empty());
    assert!(!cache.path().join("studies").join(&other).exists());
    let listed = ls_json(&orthanc.dicomweb_url(), cache.path());
    assert!(listed.iter().all(|s| s["state"] != "complete"), "{listed:?}");
}

fn uids_that_could_escape_the_cache_are_rejected() {
    let orthanc = Orthanc::shared();
    let data = testdata();
    let study = data.study("ACC1001");
    let sop = study.instances().next().unwrap().sop_uid.clone();
    // Same length: the last three characters become "/..".
    let evil = format!("{}/..", &sop[..sop.len() - 3]);

    // In the QIDO listing: the study fails before anything is written.
    let proxy = Proxy::to(orthanc);
    proxy.add(Rule::new(Fault::rewrite(&sop, &evil)).path_contains("/instances"));
    let cache = temp_cache();
    let (code, out, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", "ACC1001", "--priors", "0"]));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("not a valid DICOM UID"), "{err}");

    // In the downloaded part itself: that part is rejected, nothing is written outside the cache.
    let proxy = Proxy::to(orthanc);
    proxy.add(Rule::new(Fault::rewrite(&sop, &evil)).path_contains("/series/"));
    let cache = temp_cache();
    let (code, out, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", "ACC1001", "--priors", "0"]));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    let lower = err.to_lowercase();
    assert!(lower.contains("rejected") && lower.contains("invalid uid"), "{err}");
    assert!(
        err.contains(&data.study("ACC1001").study_uid),
        "the message names the study: {err}"
    );
    for entry in walkdir::WalkDir::new(cache.path().parent().unwrap())
        .max_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        assert!(
            !entry.file_name().to_string_lossy().ends_with(".dcm"),
            "file outside the cache: {entry:?}"
        );
    }
}

fn an_unknown_accession_fails_with_a_clear_message() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let (code, _, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args(["fetch", "NOSUCHACC"]));
    assert_eq!(code, 1);
    assert!(err.contains("NOSUCHACC") && err.contains("no study"), "{err}");
}

fn two_processes_fetching_the_same_study_do_not_trample_each_other() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let big = testdata().large();
    let spawn = || {
        retriever_at(&orthanc.dicomweb_url(), cache.path())
            .args(["fetch", &big.accession, "--priors", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    }
    assert_study_cached(cache.path(), &big.accession);
}

fn killed_mid_fetch_a_rerun_completes_the_study() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    // Every series download is held up after its first 2 MB (a few instances), so that the
    // kill lands while the study is in the cache in part.
    let held = proxy.add(Rule::new(Fault::stall(2 << 20, LIMIT)).path_contains("/series/"));
    let big = testdata().large();
    let cache = temp_cache();
    let mut child = retriever_at(&proxy.dicomweb_url(), cache.path())
        .args(["fetch", &big.accession, "--priors", "0", "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    while proxy.hits(held) == 0 || cached_instances(cache.path(), &big.study_uid).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the fetch ended before it was killed"
        );
        assert!(std::time::Instant::now() < deadline, "no instance reached the cache");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = cached_instances(cache.path(), &big.study_uid).len();
    assert!(
        before < big.num_instances,
        "the study was complete ({before} instances) when the fetch was killed"
    );
    proxy.clear();
    let (code, out, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", &big.accession, "--priors", "0"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1);
    assert_study_cached(cache.path(), &big.accession);
    no_temporaries_outside(cache.path());
}
