//! Proves the integration-test harness (tests/common) works against the real peers: the
//! generated test data, the private Orthanc with DICOMweb, the fault-injecting proxy, and DCMTK
//! storescp/echoscu/storescu. Runs first in a failing suite to tell a broken harness from a broken product.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::{
    Fault, Orthanc, PASSWORD, Proxy, Rule, Storescp, USER, echoscu, output_within, retriever, split_part10, storescu,
    testdata,
};

tests! {
    testdata_is_generated_and_indexed: ["python"],
    orthanc_serves_every_test_study_over_dicomweb: ["orthanc"],
    proxy_passes_through_and_injects_faults: ["orthanc"],
    proxy_reconnects_when_orthanc_closes_an_idle_connection: ["orthanc"],
    a_fresh_orthanc_can_be_changed_and_goes_away_when_dropped: ["orthanc"],
    storescp_receives_what_dcmtk_sends: ["python", "storescp", "echoscu", "storescu"],
    retriever_binary_is_built,
    every_test_is_registered,
}

/// One client for the whole binary, so that kept-alive connections are reused.
fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    })
}

fn get(base: &str, path: &str) -> reqwest::blocking::RequestBuilder {
    client().get(format!("{base}{path}")).basic_auth(USER, Some(PASSWORD))
}

/// The parts of a `multipart/related` body, given its Content-Type.
fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<Vec<u8>> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .expect("boundary in Content-Type")
        .trim_matches('"');
    let delimiter = format!("\r\n--{boundary}");
    // The body starts with `--boundary` (no CRLF before the first delimiter).
    let mut body = [b"\r\n".as_slice(), body].concat();
    let mut parts = Vec::new();
    while let Some(start) = find(&body, delimiter.as_bytes()) {
        body.drain(..start + delimiter.len());
        if body.starts_with(b"--") {
            break;
        }
        let headers_end = find(&body, b"\r\n\r\n").expect("part headers") + 4;
        let end = find(&body, delimiter.as_bytes()).expect("closing delimiter");
        parts.push(body[headers_end..end].to_vec());
        body.drain(..end);
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn valid_uid(uid: &str) -> bool {
    uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0')))
}

fn testdata_is_generated_and_indexed() {
    let data = testdata();
    assert_eq!(data.studies.len(), 10, "9 small studies and the big one");
    let current = data.study("ACC1001");
    assert_eq!(current.study_date, data.params.today);
    assert_eq!(
        (current.patient_id.as_str(), current.issuer.as_str()),
        ("PAT001", "HOSP_A")
    );
    assert_eq!(current.series.len(), 2);
    let p1: Vec<&str> = data
        .studies_of("PAT001", "HOSP_A")
        .iter()
        .map(|s| s.accession.as_str())
        .collect();
    assert_eq!(p1, ["ACC1001", "ACC1002", "ACC1003", "ACC1004", "ACC1005", "ACC1006"]);
    // The trap: same PatientID, another issuer.
    let trap = data.study("ACC3001");
    assert_eq!((trap.patient_id.as_str(), trap.issuer.as_str()), ("PAT001", "HOSP_B"));
    assert_eq!(data.large().num_instances, crate::common::LARGE_INSTANCES);
    let syntaxes: BTreeSet<&str> = data.studies.iter().map(|s| s.transfer_syntax.as_str()).collect();
    assert_eq!(syntaxes.len(), 4, "explicit, implicit, RLE, deflated: {syntaxes:?}");
    // Small studies' UIDs have equal lengths, so tests can swap one for another in a body.
    let lengths: BTreeSet<usize> = data.studies[..9].iter().map(|s| s.study_uid.len()).collect();
    assert_eq!(lengths.len(), 1);
    for study in &data.studies {
        assert!(valid_uid(&study.study_uid), "{}", study.study_uid);
        for series in &study.series {
            assert!(valid_uid(&series.series_uid), "{}", series.series_uid);
        }
        for instance in study.instances() {
            assert!(valid_uid(&instance.sop_uid), "{}", instance.sop_uid);
            let bytes = instance.bytes();
            assert_eq!(bytes.len() as u64, instance.size);
            let (_, dataset) = split_part10(&bytes);
            assert!(!dataset.is_empty());
        }
    }
}

fn orthanc_serves_every_test_study_over_dicomweb() {
    let data = testdata();
    let started = Instant::now();
    let orthanc = Orthanc::shared();
    eprintln!("shared Orthanc ready after {:?}", started.elapsed());
    for study in &data.studies {
        let text = get(
            &orthanc.dicomweb_url(),
            &format!("/studies?AccessionNumber={}&includefield=00201208", study.accession),
        )
        .send()
        .unwrap()
        .text()
        .unwrap();
        let found: serde_json::Value = serde_json::from_str(&text).unwrap();
        let found = found.as_array().unwrap();
        assert_eq!(found.len(), 1, "{}", study.accession);
        assert_eq!(found[0]["0020000D"]["Value"][0], study.study_uid.as_str());
        assert_eq!(
            found[0]["00201208"]["Value"][0].as_u64(),
            Some(study.num_instances as u64),
            "instances of {}",
            study.accession
        );
        assert_eq!(orthanc.study_sop_uids(&study.study_uid), study.sop_uids());
        // Orthanc hands back the stored file unchanged.
        let first = study.instances().next().unwrap();
        assert!(
            orthanc.instance_file(&first.sop_uid) == first.bytes(),
            "{}",
            first.sop_uid
        );
    }
    // Matching on PatientID alone finds the other issuer's study too.
    assert_eq!(orthanc.qido("studies?PatientID=PAT001").len(), 7);
}

fn proxy_passes_through_and_injects_faults() {
    let data = testdata();
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);

    // Pass-through: JSON, and a WADO-RS multipart body that Orthanc ends by closing.
    let query = "/studies?AccessionNumber=ACC1001";
    let direct = get(&orthanc.dicomweb_url(), query).send().unwrap().text().unwrap();
    let proxied = get(&proxy.dicomweb_url(), query).send().unwrap().text().unwrap();
    assert_eq!(
        direct,
        proxied.replace(&proxy.addr().to_string(), &orthanc.http_addr().to_string())
    );
    let study = data.study("ACC1003");
    let response = get(&proxy.dicomweb_url(), &format!("/studies/{}", study.study_uid))
        .header(
            "Accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let parts = multipart_parts(&content_type, &response.bytes().unwrap());
    let got: BTreeSet<Vec<u8>> = parts.into_iter().collect();
    let expected: BTreeSet<Vec<u8>> = study.instances().map(|i| i.bytes()).collect();
    assert!(got == expected, "WADO-RS parts differ from the files");

    // 503 with Retry-After, the first two times only.
    let rule = proxy.add(
        Rule::new(Fault::unavailable(1))
            .path_contains("AccessionNumber=ACC1002")
            .times(2),
    );
    let query = "/studies?AccessionNumber=ACC1002";
    for _ in 0..2 {
        let response = get(&proxy.dicomweb_url(), query).send().unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    assert_eq!(get(&proxy.dicomweb_url(), query).send().unwrap().status(), 200);
    assert_eq!(proxy.hits(rule), 2);

    // 401.
    let rule = proxy.add(Rule::new(Fault::unauthorized()).path_contains("ACC2001"));
    let response = get(&proxy.dicomweb_url(), "/studies?AccessionNumber=ACC2001")
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(proxy.hits(rule), 1);

    // A same-length rewrite of a UID in a JSON answer.
    let (a, b) = (&data.study("ACC2002").study_uid, &data.study("ACC3001").study_uid);
    proxy.add(Rule::new(Fault::rewrite(a, b)).path_contains("ACC2002"));
    let text = get(&proxy.dicomweb_url(), "/studies?AccessionNumber=ACC2002")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains(b.as_str()) && !text.contains(a.as_str()));

    // A cut mid-multipart: the client sees a short body.
    let big = data.large();
    let rule = proxy.add(Rule::new(Fault::CutAfter(300_000)).path_contains(big.series_uids()[0]));
    let response = get(
        &proxy.dicomweb_url(),
        &format!("/studies/{}/series/{}", big.study_uid, big.series[0].series_uid),
    )
    .header(
        "Accept",
        "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
    )
    .send()
    .unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let body = response.bytes().map(|b| b.to_vec()).unwrap_or_default();
    assert!(body.len() <= 300_000);
    assert!(
        !String::from_utf8_lossy(&body)
            .contains(&format!("{}--", content_type.split("boundary=").nth(1).unwrap_or("?")))
    );
    assert_eq!(proxy.hits(rule), 1);

    // A stalled body: the client's timeout fires, and the proxy lets go when dropped.
    proxy.add(Rule::new(Fault::stall(100, Duration::from_secs(20))).path_contains("ACC1005"));
    let stalled = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap()
        .get(format!("{}/studies?AccessionNumber=ACC1005", proxy.dicomweb_url()))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .and_then(|r| r.bytes());
    assert!(
        stalled.as_ref().is_err_and(reqwest::Error::is_timeout),
        "the client's timeout, not the proxy, ended the stalled body: {stalled:?}"
    );
    assert!(proxy.request_count() >= 9);
    drop(proxy);
}

fn proxy_reconnects_when_orthanc_closes_an_idle_connection() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    let client = reqwest::blocking::Client::new();
    for round in 0..3 {
        if round > 0 {
            // Until Orthanc has timed out the kept-alive connection behind the proxy.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !proxy.upstream_closed_all() {
                assert!(Instant::now() < deadline, "Orthanc kept its idle connection open");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let response = client
            .get(format!("{}/studies?AccessionNumber=ACC1001", proxy.dicomweb_url()))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "round {round}");
        response.text().unwrap();
    }
    assert_eq!(proxy.request_count(), 3);
    let seen = &proxy.requests()[0];
    assert!(seen.header("Authorization").is_some_and(|v| v.starts_with("Basic ")));
}

fn a_fresh_orthanc_can_be_changed_and_goes_away_when_dropped() {
    let data = testdata();
    let orthanc = Orthanc::empty();
    let pid = orthanc.pid();
    assert!(orthanc.qido("studies").is_empty());
    let study = data.study("ACC2001");
    for instance in study.instances() {
        orthanc.upload_file(&instance.path);
    }
    assert_eq!(orthanc.study_sop_uids(&study.study_uid), study.sop_uids());
    orthanc.delete_study(&study.study_uid);
    assert!(orthanc.study_sop_uids(&study.study_uid).is_empty());
    drop(orthanc);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

fn storescp_receives_what_dcmtk_sends() {
    let data = testdata();
    let scp = Storescp::start("DEST");
    assert!(echoscu("DEST", scp.port()), "C-ECHO failed:\n{}", scp.log());
    let study = data.study("ACC1001");
    let files: Vec<&std::path::Path> = study.instances().map(|i| i.path.as_path()).collect();
    assert!(storescu("DEST", scp.port(), &files), "C-STORE failed:\n{}", scp.log());
    assert!(scp.wait_for(study.num_instances, Duration::from_secs(10)));
    assert_eq!(scp.received_sop_uids(), study.sop_uids());
    // +B: the data set arrives as sent.
    for instance in study.instances() {
        let received = scp.file(&instance.sop_uid);
        let sent = instance.bytes();
        assert!(
            split_part10(&received).1 == split_part10(&sent).1,
            "{}",
            instance.sop_uid
        );
    }
}

/// The harness runs the binary, and it is the CLI the tests expect: `--help` succeeds and
/// names every subcommand it has.
fn retriever_binary_is_built() {
    let output = output_within(retriever().arg("--help"), Duration::from_secs(20));
    let help = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "retriever --help failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for command in ["fetch", "store", "watch", "prune", "ls", "echo", "config"] {
        assert!(
            help.lines().any(|l| l.split_whitespace().next() == Some(command)),
            "`{command}` is not in retriever --help:\n{help}"
        );
    }
}

/// This binary runs on its own harness, which runs only what the modules' `tests!` blocks list:
/// a function marked `#[test]` is compiled out without a word, and would never run. So no file
/// of this binary may use `#[test]` (or the `require!` of the old harness): register the test in
/// its module's `tests!` block, with the peers it needs, instead.
fn every_test_is_registered() {
    let dir = crate::common::repo_root().join("tests/it");
    let mut stray = Vec::new();
    for entry in walkdir::WalkDir::new(&dir) {
        let entry = entry.unwrap();
        if entry.path().extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[test]") || code.starts_with("require!(") {
                stray.push(format!("{}:{}: {code}", entry.path().display(), n + 1));
            }
        }
    }
    assert!(
        stray.is_empty(),
        "these would never run: list the test in its module's `tests!` block instead:\n{}",
        stray.join("\n")
    );
}
