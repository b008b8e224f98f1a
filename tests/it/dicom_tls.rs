//! DICOM TLS to the destination (`--to-tls`), against real TLS peers on loopback with a private
//! CA made by the test (`common/pki.rs`): DCMTK `storescp +tls` (its default BCP 195 profile)
//! and an Orthanc with `DicomTlsEnabled`. What arrives is checked, and so is every refusal:
//! each names the check that failed and what to do, and nothing is ever sent in the clear.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::hostile_scp::{HostileScp, Misbehaviour};
use crate::common::pki::{Issued, Pki, Usage};
use crate::common::{
    Orthanc, Storescp, TlsFront, fetch_ok, retriever, retriever_at, run_within, temp_cache, testdata, uid_of,
};

tests! {
    store_echo_and_fetch_store_go_over_tls: ["orthanc", "storescp", "openssl"],
    an_untrusted_wrong_or_expired_certificate_is_refused: ["orthanc", "storescp", "openssl"],
    a_destination_that_requires_a_client_certificate: ["orthanc", "storescp", "openssl"],
    a_plain_destination_is_never_spoken_to_in_the_clear: ["orthanc", "storescp", "openssl"],
    watch_reports_the_refusal_as_the_destination_down: ["orthanc", "storescp", "openssl"],
    orthanc_with_dicom_tls_receives_what_fetch_stores: ["orthanc", "openssl"],
    tls_settings_are_shown_and_checked: ["openssl"],
    a_trickled_answer_over_tls_meets_the_deadline: ["orthanc", "openssl", "python"],
}

const LIMIT: Duration = Duration::from_secs(60);

/// `storescp +tls KEY CERT` and its own flags (e.g. `-ic`: no client certificate asked for).
fn tls_storescp(server: &Issued, flags: &[&str]) -> Storescp {
    let (key, cert) = (server.key.to_str().unwrap(), server.cert.to_str().unwrap());
    let mut all = vec!["+xa", "+B", "-dhl", "+tls", key, cert];
    all.extend_from_slice(flags);
    Storescp::start_with("TLSSCP", &all)
}

/// `retriever store --to DEST --to-tls ARGS...` with the cloud configured.
fn store_tls(orthanc: &Orthanc, cache: &Path, dest: &str, args: &[&str]) -> (i32, String, String) {
    run_within(
        retriever_at(&orthanc.dicomweb_url(), cache)
            .args(["store", "--to", dest, "--to-tls"])
            .args(args),
        LIMIT,
    )
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `store` over TLS delivers every instance of the study and its priors, byte for byte;
/// `echo` and `fetch --store` work over it too.
fn store_echo_and_fetch_store_go_over_tls() {
    let orthanc = Orthanc::shared();
    let pki = Pki::new("hospital CA");
    let scp = tls_storescp(&pki.issue("127.0.0.1", Usage::Server), &["-ic"]);
    let dest = scp.address();
    let ca = pki.ca();

    let (code, out, err) = run_within(
        retriever().args(["echo", "--to", &dest, "--to-tls", "--to-ca", arg(&ca)]),
        LIMIT,
    );
    assert_eq!(code, 0, "echo over TLS failed:\n{err}");
    assert!(out.contains("answered C-ECHO"), "{out}");

    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1001", "--priors", "3"]);
    let (code, _, err) = store_tls(orthanc, cache.path(), &dest, &["--to-ca", arg(&ca)]);
    assert_eq!(code, 0, "store over TLS failed:\n{err}");
    let data = testdata();
    let studies = ["ACC1001", "ACC1002", "ACC1003", "ACC1004"];
    let want: BTreeSet<String> = studies.iter().flat_map(|a| data.study(a).sop_uids()).collect();
    assert_eq!(scp.received_sop_uids(), want);
    for instance in data.study("ACC1001").instances() {
        let received = scp.file(&instance.sop_uid);
        let original = instance.bytes();
        assert!(
            crate::common::split_part10(&received).1 == crate::common::split_part10(&original).1,
            "{} arrived changed",
            instance.sop_uid
        );
    }

    let cache = temp_cache();
    let (code, _, err) = run_within(
        retriever_at(&orthanc.dicomweb_url(), cache.path()).args([
            "fetch",
            "ACC3001",
            "--priors",
            "0",
            "--store",
            "--to",
            &dest,
            "--to-tls",
            "--to-ca",
            arg(&ca),
        ]),
        LIMIT,
    );
    assert_eq!(code, 0, "fetch --store over TLS failed:\n{err}");
    let got = scp.received_sop_uids();
    assert!(
        data.study("ACC3001").sop_uids().is_subset(&got),
        "ACC3001 not delivered"
    );
}

/// A certificate signed by a CA we were not given, one for another name, and an expired one:
/// each is refused at once (no retries) with exit status 1, a message naming the check, and
/// nothing delivered.
/// The right `--to-server-name` makes the certificate for another name acceptable.
fn an_untrusted_wrong_or_expired_certificate_is_refused() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC2001", "--priors", "0"]);
    let pki = Pki::new("hospital CA");
    let ca = pki.ca();

    // Signed by a CA we do not know.
    let stranger = Pki::new("someone else's CA");
    let scp = tls_storescp(&stranger.issue("127.0.0.1", Usage::Server), &["-ic"]);
    let (code, _, err) = store_tls(orthanc, cache.path(), &scp.address(), &["--to-ca", arg(&ca)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is signed by a CA we do not trust: give its CA with `--to-ca`"),
        "{err}"
    );
    // Permanent until someone fixes it: not retried as a busy destination would be.
    assert!(!err.contains("trying again"), "{err}");
    assert!(scp.received().is_empty());
    // Without the CA at all, the same.
    let (code, _, err) = store_tls(orthanc, cache.path(), &scp.address(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signed by a CA we do not trust"), "{err}");
    drop(scp);

    // For another name.
    let scp = tls_storescp(&pki.issue("pacs.example.org", Usage::Server), &["-ic"]);
    let (code, _, err) = store_tls(orthanc, cache.path(), &scp.address(), &["--to-ca", arg(&ca)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is for `pacs.example.org`, not `127.0.0.1`") && err.contains("`--to-server-name`"),
        "{err}"
    );
    assert!(scp.received().is_empty());
    let (code, _, err) = store_tls(
        orthanc,
        cache.path(),
        &scp.address(),
        &["--to-ca", arg(&ca), "--to-server-name", "pacs.example.org"],
    );
    assert_eq!(code, 0, "with --to-server-name:\n{err}");
    assert_eq!(scp.received_sop_uids(), testdata().study("ACC2001").sop_uids());
    drop(scp);

    // Expired in 2021.
    let expired = pki.issue_between("127.0.0.1", Usage::Server, "20200101000000Z", "20210101000000Z");
    let scp = tls_storescp(&expired, &["-ic"]);
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC2001", "--priors", "0"]);
    let (code, _, err) = store_tls(orthanc, cache.path(), &scp.address(), &["--to-ca", arg(&ca)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("has expired (valid until 2021-01-01T00:00:00Z, it is now 20"),
        "{err}"
    );
    assert!(err.contains("renew the destination's certificate"), "{err}");
    assert!(scp.received().is_empty());
}

/// A storescp that requires a client certificate signed by the CA it trusts: a run without
/// one is refused saying so, one with a certificate from another CA is refused as such, and
/// ours is accepted. A key file others can read is warned about.
fn a_destination_that_requires_a_client_certificate() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC2002", "--priors", "0"]);
    let pki = Pki::new("hospital CA");
    let clients = Pki::new("router CA");
    let ca = pki.ca();
    let scp = tls_storescp(
        &pki.issue("127.0.0.1", Usage::Server),
        &["-rc", "+cf", arg(&clients.ca())],
    );
    let dest = scp.address();

    let (code, _, err) = store_tls(orthanc, cache.path(), &dest, &["--to-ca", arg(&ca)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("asks for a client certificate and we have none: give ours with `--to-cert` and `--to-key`"),
        "{err}"
    );
    assert!(scp.received().is_empty());

    let foreign = pki.issue("router", Usage::Client);
    let (code, _, err) = store_tls(
        orthanc,
        cache.path(),
        &dest,
        &[
            "--to-ca",
            arg(&ca),
            "--to-cert",
            arg(&foreign.cert),
            "--to-key",
            arg(&foreign.key),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refused our client certificate (TLS alert `"), "{err}");
    assert!(scp.received().is_empty());

    let ours = clients.issue("router", Usage::Client);
    set_mode(&ours.key, 0o644);
    let (code, _, err) = store_tls(
        orthanc,
        cache.path(),
        &dest,
        &[
            "--to-ca",
            arg(&ca),
            "--to-cert",
            arg(&ours.cert),
            "--to-key",
            arg(&ours.key),
        ],
    );
    assert_eq!(code, 0, "with our client certificate:\n{err}");
    assert_eq!(scp.received_sop_uids(), testdata().study("ACC2002").sop_uids());
    assert!(
        err.contains(&format!(
            "warning: the TLS key file `{}` can be read by other users (mode 644); run `chmod 600",
            ours.key.display()
        )),
        "{err}"
    );
    set_mode(&ours.key, 0o600);
    let (code, _, err) = run_within(
        retriever().args([
            "echo",
            "--to",
            &dest,
            "--to-tls",
            "--to-ca",
            arg(&ca),
            "--to-cert",
            arg(&ours.cert),
            "--to-key",
            arg(&ours.key),
        ]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");

    // Half a pair is a usage error naming the missing half.
    let (code, _, err) = run_within(
        retriever().args(["echo", "--to", &dest, "--to-tls", "--to-cert", arg(&ours.cert)]),
        LIMIT,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--to-key"), "{err}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `--to-tls` to a storescp without TLS: refused as not speaking TLS, nothing delivered, and
/// nothing of the association sent in the clear (storescp saw no PDU of ours).
fn a_plain_destination_is_never_spoken_to_in_the_clear() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC2001", "--priors", "0"]);
    let pki = Pki::new("hospital CA");
    let scp = Storescp::start("PLAINSCP");
    let (code, _, err) = store_tls(orthanc, cache.path(), &scp.address(), &["--to-ca", arg(&pki.ca())]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{} does not speak TLS on that port", scp.address())),
        "{err}"
    );
    assert!(err.contains("check that DICOM TLS is enabled there"), "{err}");
    assert!(scp.received().is_empty());
    let (code, _, err) = run_within(retriever().args(["echo", "--to", &scp.address(), "--to-tls"]), LIMIT);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not speak TLS on that port"), "{err}");
    // What storescp read was a TLS hello, not an A-ASSOCIATE-RQ (PDU type 1).
    let log = scp.log();
    assert!(!log.contains("Association Received"), "{log}");
    assert!(log.contains("Unrecognized PDU type: 16"), "{log}");
}

/// `watch` finds the destination's certificate untrusted: the destination is reported down
/// with that reason, and every study's failure says it.
fn watch_reports_the_refusal_as_the_destination_down() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let stranger = Pki::new("someone else's CA");
    let scp = tls_storescp(&stranger.issue("127.0.0.1", Usage::Server), &["-ic"]);
    let (code, _, err) = run_within(
        retriever_at(&orthanc.dicomweb_url(), cache.path()).args([
            "watch",
            "--once",
            "--to",
            &scp.address(),
            "--to-tls",
            "--filter",
            "PatientID=PAT002",
        ]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("the destination is down") && l.contains("signed by a CA we do not trust")),
        "{err}"
    );
    assert!(scp.received().is_empty());
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.contains("signed by a CA we do not trust"), "{last}");
}

/// An Orthanc with DICOM TLS that requires our client certificate: `fetch --store` delivers
/// over it, and the instances are in that Orthanc.
fn orthanc_with_dicom_tls_receives_what_fetch_stores() {
    let cloud = Orthanc::shared();
    let pki = Pki::new("hospital CA");
    let clients = Pki::new("router CA");
    let server = pki.issue("127.0.0.1", Usage::Server);
    let pacs = Orthanc::builder()
        .config(json!({
            "DicomTlsEnabled": true,
            "DicomTlsCertificate": server.cert,
            "DicomTlsPrivateKey": server.key,
            "DicomTlsTrustedCertificates": clients.ca(),
            "DicomTlsRemoteCertificateRequired": true,
        }))
        .start();
    let ours = clients.issue("router", Usage::Client);
    let cache = temp_cache();
    let fetch_store = |cache: &Path, extra: &[&str]| {
        let mut cmd: Command = retriever_at(&cloud.dicomweb_url(), cache);
        cmd.args([
            "fetch",
            "ACC3001",
            "--priors",
            "0",
            "--store",
            "--to",
            &pacs.dicom_address(),
        ])
        .args(["--to-tls", "--to-ca", arg(&pki.ca())])
        .args(extra);
        run_within(&mut cmd, LIMIT)
    };
    let (code, _, err) = fetch_store(cache.path(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("asks for a client certificate and we have none"), "{err}");
    assert!(pacs.study_sop_uids(uid_of("ACC3001")).is_empty());

    let (code, _, err) = fetch_store(
        cache.path(),
        &["--to-cert", arg(&ours.cert), "--to-key", arg(&ours.key)],
    );
    assert_eq!(code, 0, "fetch --store to Orthanc over TLS failed:\n{err}");
    assert_eq!(
        pacs.study_sop_uids(uid_of("ACC3001")),
        testdata().study("ACC3001").sop_uids()
    );
}

/// `retriever config` shows the five settings and where each came from; a CA file that holds
/// no certificate, or TLS files given without `--to-tls`, are errors that name them.
fn tls_settings_are_shown_and_checked() {
    let pki = Pki::new("hospital CA");
    let client = pki.issue("router", Usage::Client);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({
            "to": "PACS@127.0.0.1:11112",
            "to_tls": true,
            "to_cert": client.cert,
            "to_key": client.key,
        })
        .to_string(),
    )
    .unwrap();
    let conf = arg(&config);
    let (code, out, err) = run_within(
        retriever().args([
            "--config",
            conf,
            "config",
            "--json",
            "--to-ca",
            arg(&pki.ca()),
            "--to-server-name",
            "pacs.example.org",
        ]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("config --json is JSON");
    let shown = |key: &str| (v[key]["value"].clone(), v[key]["source"].clone());
    assert_eq!(shown("to_tls"), (json!("true"), json!("config file")), "{out}");
    assert_eq!(shown("to_cert").0, json!(client.cert.to_str().unwrap()), "{out}");
    assert_eq!(shown("to_key").1, json!("config file"), "{out}");
    assert_eq!(
        shown("to_ca"),
        (json!(pki.ca().to_str().unwrap()), json!("flag")),
        "{out}"
    );
    assert_eq!(v["to_ca"]["origin"], json!("--to-ca"), "{out}");
    assert_eq!(shown("to_server_name").0, json!("pacs.example.org"), "{out}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let (code, _, err) = run_within(
        retriever().args(["--config", conf, "config", "--to-ca", arg(&empty)]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("the CA file `{}` holds no PEM certificate", empty.display())),
        "{err}"
    );

    // TLS files with `to_tls` set nowhere: a forgotten `--to-tls`, refused.
    let (code, _, err) = run_within(
        retriever().args(["echo", "--to", "PACS@127.0.0.1:11112", "--to-ca", arg(&pki.ca())]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--to-ca is given, but DICOM TLS to the destination is not turned on: add `--to-tls`"),
        "{err}"
    );
    // Turned off on purpose, the files kept for later: fine.
    std::fs::write(
        &config,
        json!({"to": "PACS@127.0.0.1:11112", "to_tls": false, "to_ca": pki.ca()}).to_string(),
    )
    .unwrap();
    let (code, _, err) = run_within(retriever().args(["--config", conf, "config"]), LIMIT);
    assert_eq!(code, 0, "{err}");
}

/// A destination behind TLS that trickles its answer to C-STORE a byte at a time (each byte a
/// TLS record of its own): the DIMSE timeout bounds the whole answer over TLS as over TCP,
/// and the study is given up after the second such stall.
fn a_trickled_answer_over_tls_meets_the_deadline() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002", "--priors", "0"]);
    let scp = HostileScp::start(Misbehaviour::Trickle(Duration::from_millis(200)));
    let upstream = scp.address().rsplit_once('@').unwrap().1.parse().unwrap();
    let front = TlsFront::to(upstream);
    let port = front.url().rsplit_once(':').unwrap().1.to_string();
    let dest = format!("HOSTILE@127.0.0.1:{port}");
    let (code, _, err) = store_tls(
        orthanc,
        cache.path(),
        &dest,
        &["--to-ca", arg(&front.ca()), "--dimse-timeout", "2s"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("a trickle, not a whole answer to C-STORE within 2s"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
