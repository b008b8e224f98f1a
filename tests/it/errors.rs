//! Errors a person understands: for each way the setup can be wrong (a wrong cloud URL, a wrong
//! password, a destination that is not there or does not answer to its AE title, a full disk,
//! an unusable cache) the run fails with exit status 1 and one line on stderr that says what
//! failed, on what, and what to do. And no secret ever appears in what `retriever` prints.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{
    Orthanc, PASSWORD, USER, free_port, harness::ignore, output_within, retriever, retriever_at, temp_cache,
    testscp::TestScp,
};

tests! {
    a_cloud_host_that_does_not_resolve,
    a_cloud_port_nobody_listens_on,
    a_wrong_password_or_token: ["orthanc"],
    a_destination_that_is_not_there: ["orthanc"],
    a_destination_that_does_not_answer_to_its_ae_title: ["python"],
    a_cache_that_cannot_be_created,
    a_cache_entry_naming_an_invalid_uid,
    a_full_disk: ["orthanc"],
}

const TIMEOUT: Duration = Duration::from_secs(60);
/// Secrets given to the runs below; none may appear in their output.
const WRONG_PASSWORD: &str = "wrong-pw-5150";
const TOKEN: &str = "tok-2718281828";

/// Runs the command and checks the failure: exit status 1, a last line `retriever: ...`, one
/// line holding every fragment (what, on what, what to do), and no secret anywhere. Returns
/// stderr.
#[track_caller]
fn fails_saying(cmd: &mut Command, fragments: &[&str]) -> String {
    let out = output_within(cmd, TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    for secret in [PASSWORD, WRONG_PASSWORD, TOKEN] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret was shown:\n{stdout}\n{stderr}"
        );
    }
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("retriever: "), "no final error line: {stderr}");
    assert!(
        stderr.lines().any(|line| fragments.iter().all(|f| line.contains(f))),
        "no line of stderr says all of {fragments:?}:\n{stderr}"
    );
    stderr
}

fn a_cloud_host_that_does_not_resolve() {
    let cache = temp_cache();
    fails_saying(
        retriever()
            .args([
                "--cloud",
                "https://no-such-host.invalid/dicom-web",
                "--retries",
                "0",
                "--cache",
            ])
            .arg(cache.path())
            .args(["--user", USER])
            .env("RETRIEVER_PASSWORD", PASSWORD)
            .args(["fetch", "ACC1001"]),
        &[
            "could not connect to the cloud at `https://no-such-host.invalid/dicom-web`",
            "dns error",
            "check the network, any proxy settings and the cloud URL",
        ],
    );
}

fn a_cloud_port_nobody_listens_on() {
    let cache = temp_cache();
    let url = format!("http://127.0.0.1:{}/dicom-web", free_port());
    fails_saying(
        retriever()
            .args(["--cloud", &url, "--retries", "0", "--cache"])
            .arg(cache.path())
            .env("RETRIEVER_TOKEN", TOKEN)
            .args(["fetch", "ACC1001"]),
        &[
            &format!("could not connect to the cloud at `{url}`"),
            "Connection refused",
            "check the network, any proxy settings and the cloud URL",
        ],
    );
}

fn a_wrong_password_or_token() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let stderr = fails_saying(
        retriever_at(&orthanc.dicomweb_url(), cache.path())
            .env("RETRIEVER_PASSWORD", WRONG_PASSWORD)
            .args(["fetch", "ACC1001"]),
        &[
            "the cloud at",
            "refused the credentials (HTTP 401)",
            "check RETRIEVER_USER/RETRIEVER_PASSWORD or RETRIEVER_TOKEN",
        ],
    );
    assert!(
        !stderr.contains("includefield"),
        "the query is shown without noise: {stderr}"
    );
    fails_saying(
        retriever()
            .args(["--cloud", &orthanc.dicomweb_url(), "--cache"])
            .arg(cache.path())
            .env("RETRIEVER_TOKEN", TOKEN)
            .args(["fetch", "ACC1001"]),
        &["refused the credentials (HTTP 401)", "RETRIEVER_TOKEN"],
    );
}

fn a_destination_that_is_not_there() {
    let port = free_port();
    let dest = format!("PACS@127.0.0.1:{port}");
    fails_saying(
        retriever().args(["echo", "--to", &dest]),
        &[
            &format!("could not connect to {dest} (connection refused)"),
            "is the destination running and the port right?",
        ],
    );
    let cache = temp_cache();
    fails_saying(
        retriever_at(&Orthanc::shared().dicomweb_url(), cache.path()).args([
            "-q",
            "fetch",
            "ACC1001",
            "--priors",
            "0",
            "--store",
            "--store-retries",
            "0",
            "--to",
            &dest,
        ]),
        &[
            &format!("delivery to {dest} stopped: could not connect to {dest} (connection refused)"),
            "is the destination running and the port right?",
        ],
    );
}

fn a_destination_that_does_not_answer_to_its_ae_title() {
    let scp = TestScp::start(&["--require-called-aet"]);
    fails_saying(
        retriever().args(["echo", "--to", &scp.address("NOTTESTSCP")]),
        &[
            &scp.address("NOTTESTSCP"),
            "rejected the association (called AE title not recognized)",
            "check the AE title in the destination (AE@HOST:PORT)",
        ],
    );
}

fn a_cache_that_cannot_be_created() {
    // A path under a regular file: no directory can be made there, not even by root (who
    // ignores permission bits).
    let dir = temp_cache();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let cache = file.join("cache");
    for args in [&["ls"][..], &["--to", "PACS@127.0.0.1:104", "store"]] {
        fails_saying(
            retriever().arg("--cache").arg(&cache).args(args),
            &[
                "the cache directory is not usable; check its permissions or pass --cache DIR",
                &format!("failed to create the directory `{}", cache.display()),
            ],
        );
    }
}

/// A manifest or a delivery journal in the cache that names something other than a UID (a
/// hand edit, another program, a damaged disk): the entry is refused when read, and the user is
/// told which one and what to do, rather than its names being trusted.
fn a_cache_entry_naming_an_invalid_uid() {
    const STUDY: &str = "1.2.826.0.1.3680043.2.1125.1";
    let manifest = |sop: &str| {
        format!(
            r#"{{"version":1,"study":{{"study_uid":"{STUDY}","accession":"ACC1","patient_id":"P1",
            "issuer_of_patient_id":null,"patient_name":null,"study_date":null,"study_description":null,
            "modalities":[]}},"roles":[{{"role":"current","requested_as":"ACC1"}}],
            "fetched_at":"2026-12-03T10:00:00Z","completed_at":null,"expected":{{"{sop}":"{STUDY}.1"}}}}"#
        )
    };
    let dir = temp_cache();
    let study = dir.path().join("studies").join(STUDY);
    std::fs::create_dir_all(study.join("delivered")).unwrap();
    let ls = || {
        let mut cmd = retriever();
        cmd.arg("--cache").arg(dir.path()).arg("ls");
        cmd
    };

    std::fs::write(study.join("manifest.json"), manifest("../../x")).unwrap();
    let stderr = fails_saying(
        &mut ls(),
        &[
            &format!("the manifest `{}` is damaged", study.join("manifest.json").display()),
            &format!("delete the study's directory `{}`", study.display()),
            "`../../x` is not a valid DICOM UID",
        ],
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    std::fs::write(study.join("manifest.json"), manifest(&format!("{STUDY}.1.1"))).unwrap();
    let journal = study.join("delivered").join("PACS@127.0.0.1_104.jsonl");
    std::fs::write(
        &journal,
        concat!(
            r#"{"sop":"1.2.826.0.1.3680043.2.1125.1.1.1","state":"delivered","status":0,"at":"2026-12-03T10:01:00Z"}"#,
            "\n",
            r#"{"sop":"1.2/3","state":"delivered","status":0,"at":"2026-12-03T10:01:00Z"}"#,
            "\n",
        ),
    )
    .unwrap();
    fails_saying(
        &mut ls(),
        &[
            &format!("the delivery journal `{}` is damaged (line 2)", journal.display()),
            &format!("delete the study's directory `{}`", study.display()),
            "`1.2/3` is not a valid DICOM UID",
        ],
    );
}

/// A 1 MiB tmpfs as the cache, and a study of 20 MB.
fn a_full_disk() {
    let dir = temp_cache();
    let tiny = Tmpfs::mount(&dir.path().join("tiny"), "1m");
    fails_saying(
        retriever_at(&Orthanc::shared().dicomweb_url(), &tiny.0.join("cache"))
            .args(["-q", "fetch", "ACCBIG", "--priors", "0"]),
        &["the disk holding the cache is full", "retriever prune", "--cache DIR"],
    );
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts it (root only); when that is not possible here the test ends `ignored`, saying
    /// why (in CI that is a failure).
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => Tmpfs(at.to_path_buf()),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                ignore(format!(
                    "cannot mount a small tmpfs to fill ({why}); the full-disk test needs root"
                ))
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).stdin(Stdio::null()).status();
    }
}
