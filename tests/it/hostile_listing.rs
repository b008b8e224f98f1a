//! A cloud whose searches and listings cannot be taken at their word: capped pages, an ignored
//! `offset`, ignored matching keys, results of other studies. A study is complete only against a
//! listing that is itself complete.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    Fault, Orthanc, Proxy, Rule, cached_instances, ls_json, retriever_at, run_within, temp_cache, testdata,
};

tests! {
    capped_pages_with_the_warning_are_followed_and_the_whole_study_fetched: ["orthanc"],
    capped_pages_without_the_warning_fall_short_of_the_count_and_the_study_is_not_complete: ["orthanc"],
    an_ignored_offset_ends_at_once_with_a_clear_error_in_little_memory: ["orthanc"],
    an_ignored_accession_number_key_fetches_only_the_study_asked_for: ["orthanc"],
    wildcards_in_an_identifier_are_a_usage_error,
    an_instance_listing_with_an_instance_of_another_study_is_refused: ["orthanc"],
    a_series_listing_of_another_study_is_refused: ["orthanc"],
    instances_of_other_series_in_a_listing_are_left_out_and_the_study_completes: ["orthanc"],
    an_invalid_uid_among_the_priors_is_skipped_with_a_warning: ["orthanc"],
    watch_skips_a_study_with_an_invalid_uid_with_a_warning_and_delivers_the_others: ["orthanc", "storescp"],
}

const LIMIT: Duration = Duration::from_secs(120);

/// `retriever fetch ARGS...` through the proxy: (exit code, stdout, stderr).
fn fetch(proxy: &Proxy, cache: &Path, args: &[&str]) -> (i32, String, String) {
    run_within(
        retriever_at(&proxy.dicomweb_url(), cache).arg("fetch").args(args),
        LIMIT,
    )
}

/// The Study Instance UIDs `fetch` printed as complete.
fn printed(out: &str) -> BTreeSet<String> {
    out.lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect()
}

fn uids(accessions: &[&str]) -> BTreeSet<String> {
    accessions
        .iter()
        .map(|a| testdata().study(a).study_uid.clone())
        .collect()
}

/// The `ls --json` record of a cached study.
fn listed(proxy: &Proxy, cache: &Path, accession: &str) -> Option<Value> {
    let uid = &testdata().study(accession).study_uid;
    ls_json(&proxy.dicomweb_url(), cache)
        .into_iter()
        .find(|s| s["study_uid"].as_str() == Some(uid))
}

/// Asserts that the study is complete in the cache, every instance there, and the cache's
/// expectation the whole study.
fn assert_complete(proxy: &Proxy, cache: &Path, accession: &str) {
    let study = testdata().study(accession);
    let cached: BTreeSet<String> = cached_instances(cache, &study.study_uid).into_keys().collect();
    assert_eq!(cached, study.sop_uids(), "instances of {accession} in the cache");
    let record = listed(proxy, cache, accession).unwrap_or_else(|| panic!("{accession} is not in the cache"));
    assert_eq!(record["state"], "complete", "{record}");
    assert_eq!(record["expected_instances"], study.num_instances, "{record}");
}

/// Runs the command to its end, reading its peak memory (VmHWM) from /proc while it runs:
/// (exit code, stderr, peak KiB).
fn run_measuring_memory(cmd: &mut Command) -> (i32, String, u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start retriever");
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        text
    });
    let status_file = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + LIMIT;
    let mut peak = 0u64;
    let status = loop {
        // The high-water mark only grows, so the last reading before the exit is the peak.
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait for retriever") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("retriever did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap_or_default(), peak)
}

fn capped_pages_with_the_warning_are_followed_and_the_whole_study_fetched() {
    let proxy = Proxy::to(Orthanc::shared());
    // Every search and listing: two results per answer, and a Warning that more exist.
    let capped = proxy.add(Rule::new(Fault::cap_results(2, true)).path_contains("?"));
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &["ACC1001"]);
    assert_eq!(code, 0, "fetch failed:\n{err}");
    let want = ["ACC1001", "ACC1002", "ACC1003", "ACC1004"];
    assert_eq!(printed(&out), uids(&want), "the study and its three priors:\n{err}");
    for accession in want {
        assert_complete(&proxy, cache.path(), accession);
    }
    let offsets = proxy
        .requests()
        .iter()
        .filter(|r| r.target.contains("/instances?") && r.target.contains("offset=2"))
        .count();
    assert!(offsets > 0, "the instance listings were paged on");
    assert!(proxy.hits(capped) > 0);
}

fn capped_pages_without_the_warning_fall_short_of_the_count_and_the_study_is_not_complete() {
    let proxy = Proxy::to(Orthanc::shared());
    // The instance listings are cut to two results, silently; the series listing still says
    // how many instances each series has (NumberOfSeriesRelatedInstances).
    proxy.add(Rule::new(Fault::cap_results(2, false)).path_contains("/instances?"));
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &["ACC1001", "--priors", "0"]);
    assert_eq!(
        code, 1,
        "a short listing must not pass:\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.is_empty(), "nothing reported complete: {out}");
    let series = &testdata().study("ACC1001").series[0].series_uid;
    assert!(
        err.contains(&format!("listing of series `{series}`"))
            && err.contains("is short: 2 instances listed, 3 announced"),
        "{err}"
    );
    assert!(err.contains("try again later"), "{err}");
    if let Some(record) = listed(&proxy, cache.path(), "ACC1001") {
        assert_ne!(record["state"], "complete", "{record}");
    }
}

fn an_ignored_offset_ends_at_once_with_a_clear_error_in_little_memory() {
    let proxy = Proxy::to(Orthanc::shared());
    // One result per answer, always "more to come", and `offset` never reaches the server: the
    // same first result comes back for ever.
    let ignored = proxy.add(
        Rule::new(Fault::Qido {
            ignore: vec!["offset".into()],
            cap: Some(1),
            warn: true,
        })
        .path_contains("/instances?"),
    );
    let cache = temp_cache();
    let mut cmd = retriever_at(&proxy.dicomweb_url(), cache.path());
    cmd.args(["fetch", "ACC1002", "--priors", "0"]);
    let (code, err, peak_kib) = run_measuring_memory(&mut cmd);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("seems to ignore `offset`"), "{err}");
    assert!(err.contains("cannot be completed"), "{err}");
    // One series: its first page, and the page that brought nothing new.
    assert_eq!(proxy.hits(ignored), 2, "{:#?}", proxy.requests());
    assert!(peak_kib > 0 && peak_kib < 200 * 1024, "peak memory {peak_kib} KiB");
    if let Some(record) = listed(&proxy, cache.path(), "ACC1002") {
        assert_ne!(record["state"], "complete", "{record}");
    }
}

fn an_ignored_accession_number_key_fetches_only_the_study_asked_for() {
    let proxy = Proxy::to(Orthanc::shared());
    // The server drops the matching key and answers with every study it has.
    let ignored =
        proxy.add(Rule::new(Fault::ignore_params(&["AccessionNumber"])).path_contains("AccessionNumber=ACC2001"));
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &["ACC2001", "--priors", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(proxy.hits(ignored), 1);
    assert_eq!(printed(&out), uids(&["ACC2001"]), "{err}");
    assert_complete(&proxy, cache.path(), "ACC2001");
    let others = testdata().studies.len() - 1;
    assert!(
        err.contains(&format!("with {others} studies that do not have AccessionNumber")),
        "one warning says how many were left out:\n{err}"
    );
    let cached = ls_json(&proxy.dicomweb_url(), cache.path());
    assert_eq!(cached.len(), 1, "{cached:?}");
}

fn wildcards_in_an_identifier_are_a_usage_error() {
    let cache = temp_cache();
    // No cloud is asked: the identifier is refused before.
    let (code, _, err) = run_within(
        retriever_at("http://127.0.0.1:9/dicom-web", cache.path()).args(["fetch", "ACC10*"]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot contain wildcards"), "{err}");
}

fn an_instance_listing_with_an_instance_of_another_study_is_refused() {
    let proxy = Proxy::to(Orthanc::shared());
    let study = testdata().study("ACC1002");
    let other = &testdata().study("ACC2002").study_uid;
    assert_eq!(study.study_uid.len(), other.len());
    proxy.add(
        Rule::new(Fault::rewrite(&study.study_uid, other)).path_contains(&format!("{}/instances?", study.study_uid)),
    );
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &["ACC1002", "--priors", "0"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("the cloud listed one of study `{other}`")),
        "{err}"
    );
    if let Some(record) = listed(&proxy, cache.path(), "ACC1002") {
        assert_ne!(record["state"], "complete", "{record}");
    }
}

fn a_series_listing_of_another_study_is_refused() {
    let proxy = Proxy::to(Orthanc::shared());
    let study = testdata().study("ACC1002");
    let other = &testdata().study("ACC2002").study_uid;
    proxy
        .add(Rule::new(Fault::rewrite(&study.study_uid, other)).path_contains(&format!("{}/series?", study.study_uid)));
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &["ACC1002", "--priors", "0"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("the cloud listed one of study `{other}`")),
        "{err}"
    );
}

fn instances_of_other_series_in_a_listing_are_left_out_and_the_study_completes() {
    let proxy = Proxy::to(Orthanc::shared());
    // Each series' listing lists the whole study.
    let ignored = proxy.add(Rule::new(Fault::ignore_params(&["SeriesInstanceUID"])).path_contains("/instances?"));
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &["ACC1001", "--priors", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(proxy.hits(ignored), 2, "one listing per series");
    assert_eq!(printed(&out), uids(&["ACC1001"]));
    assert_complete(&proxy, cache.path(), "ACC1001");
    assert!(err.contains("instances of other series"), "{err}");
}

fn an_invalid_uid_among_the_priors_is_skipped_with_a_warning() {
    let proxy = Proxy::to(Orthanc::shared());
    // ACC1003, the second most recent prior, gets a UID with a `/` in the patient's search.
    let bad_of = &testdata().study("ACC1003").study_uid;
    let bad = format!("{}/{}", &bad_of[..bad_of.len() - 2], &bad_of[bad_of.len() - 1..]);
    assert_eq!(bad.len(), bad_of.len());
    proxy.add(Rule::new(Fault::rewrite(bad_of, &bad)).path_contains("PatientID=PAT001"));
    let cache = temp_cache();
    let (code, out, err) = fetch(&proxy, cache.path(), &["ACC1001"]);
    assert_eq!(code, 0, "{err}");
    // The next eligible prior takes its place.
    let want = ["ACC1001", "ACC1002", "ACC1004", "ACC1005"];
    assert_eq!(printed(&out), uids(&want), "{err}");
    for accession in want {
        assert_complete(&proxy, cache.path(), accession);
    }
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains(&bad)).collect();
    assert_eq!(warnings.len(), 1, "one warning names it:\n{err}");
    assert!(warnings[0].contains("skipped"), "{err}");
}

fn watch_skips_a_study_with_an_invalid_uid_with_a_warning_and_delivers_the_others() {
    let proxy = Proxy::to(Orthanc::shared());
    let bad_of = &testdata().study("ACC2002").study_uid;
    let bad = format!("{}/{}", &bad_of[..bad_of.len() - 2], &bad_of[bad_of.len() - 1..]);
    // Both watch's search and the prior search of ACC2001 see it.
    let rewritten = proxy.add(Rule::new(Fault::rewrite(bad_of, &bad)).path_contains("PatientID=PAT002"));
    let scp = crate::common::Storescp::start("STORESCP");
    let cache = temp_cache();
    let (code, out, err) = run_within(
        retriever_at(&proxy.dicomweb_url(), cache.path())
            .args(["watch", "--to", &scp.address()])
            .args(["--once", "--filter", "PatientID=PAT002"]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    assert!(proxy.hits(rewritten) >= 2, "{:#?}", proxy.requests());
    assert_eq!(printed(&out), uids(&["ACC2001"]), "{err}");
    assert_eq!(scp.received_sop_uids(), testdata().study("ACC2001").sop_uids());
    let warned: Vec<&str> = err.lines().filter(|l| l.contains(&format!("`{bad}`"))).collect();
    assert!(!warned.is_empty(), "a warning names it:\n{err}");
    assert!(warned.iter().all(|l| l.contains("skipped")), "{err}");
}
