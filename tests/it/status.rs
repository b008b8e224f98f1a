//! `retriever status`, the router's health for a monitoring system, against real `watch` runs
//! (Orthanc with DICOMweb, directly or through the fault proxy; DCMTK `storescp`): no watch
//! ever run, a watch that works, one killed with `kill -9`, one whose cloud answers 503, and
//! one `--once` pass. Every wait is on the status the watch writes, never on a clock.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::proxy::{Fault, Proxy, Rule};
use crate::common::running::{Running, wait_until};
use crate::common::{Orthanc, Storescp, free_port, retriever, retriever_at, run_within, temp_cache};

tests! {
    with_no_watch_ever_run_it_fails_and_says_so,
    a_running_watch_that_has_searched_is_working_and_shows_its_figures: ["orthanc", "storescp"],
    a_killed_watch_is_not_running: ["orthanc", "storescp"],
    a_watch_whose_cloud_is_down_is_not_working_and_says_the_last_error: ["orthanc"],
    a_once_pass_leaves_a_status_that_says_it_ended: ["orthanc", "storescp"],
}

const LIMIT: Duration = Duration::from_secs(60);

/// `retriever --cache CACHE status ARGS...`: (exit code, stdout, stderr).
fn status(cache: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = retriever();
    cmd.arg("--cache").arg(cache).arg("status").args(args);
    run_within(&mut cmd, LIMIT)
}

/// `retriever status --json ARGS...`: (exit code, the one JSON object for the one watch).
fn status_json(cache: &Path, args: &[&str]) -> (i32, Value) {
    let (code, out, err) = status(cache, &[&["--json"], args].concat());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object per watch:\n{out}\n{err}");
    (code, serde_json::from_str(lines[0]).unwrap())
}

/// `retriever --cloud CLOUD ... watch --to DEST --priors 0 ARGS...`
fn watch(cloud: &str, cache: &Path, dest: &str, args: &[&str]) -> Command {
    let mut cmd = retriever_at(cloud, cache);
    cmd.arg("watch").args(["--to", dest, "--priors", "0"]).args(args);
    cmd
}

fn status_file_exists(cache: &Path) -> bool {
    std::fs::read_dir(cache.join("watch"))
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".status.json"))
        })
        .unwrap_or(false)
}

fn with_no_watch_ever_run_it_fails_and_says_so() {
    let cache = temp_cache();
    let (code, out, err) = status(cache.path(), &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no `retriever watch` has run with the cache"), "{err}");

    let (code, v) = status_json(cache.path(), &["--to", "PACS@127.0.0.1:104"]);
    assert_eq!(code, 1);
    assert_eq!(v["verdict"]["ok"], false);
    let reason = v["verdict"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no `retriever watch` has delivered to PACS@127.0.0.1:104"),
        "{reason}"
    );

    // A cache that does not exist is not made by asking.
    let missing = cache.path().join("nothing-here");
    let (code, _, err) = status(&missing, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("it does not exist"), "{err}");
    assert!(!missing.exists());
}

fn a_running_watch_that_has_searched_is_working_and_shows_its_figures() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let dest = scp.address();
    let collector = tempfile::tempdir().unwrap();
    let metrics = collector.path().join("retriever.prom");
    let mut running = Running::start(watch(
        &orthanc.dicomweb_url(),
        cache.path(),
        &dest,
        &[
            "--interval",
            "1s",
            "--filter",
            "AccessionNumber=ACC3001",
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
    ));
    let label = format!("{{destination=\"{dest}\"}}");
    let delivered = format!("retriever_watch_studies_delivered_today{label} 1\n");
    let mut last = Value::Null;
    wait_until(LIMIT, "a status that shows the study delivered", &mut running, || {
        if !status_file_exists(cache.path()) {
            return false;
        }
        let (code, v) = status_json(cache.path(), &[]);
        let done = code == 0
            && v["studies"]["delivered_today"] == 1
            && std::fs::read_to_string(&metrics).is_ok_and(|m| m.contains(&delivered));
        last = v;
        done
    });
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains(&format!("retriever_watch_up{label} 1\n")), "{text}");
    assert!(
        text.contains(&format!("retriever_watch_search_interval_seconds{label} 1\n")),
        "{text}"
    );
    assert!(
        text.contains("# TYPE retriever_watch_destination_down gauge\n"),
        "{text}"
    );
    let v = last;
    assert_eq!(
        v["verdict"],
        serde_json::json!({"ok": true, "running": true, "reason": null})
    );
    assert_eq!(v["pid"], running.pid());
    assert_eq!(v["destination"], dest.as_str());
    assert_eq!(v["search"]["last_found"], 1);
    assert!(v["search"]["last_ok_at"].is_string(), "{v}");
    assert_eq!(v["destinations"][0]["destination"], dest.as_str());
    assert!(v["destinations"][0]["last_delivery_at"].is_string(), "{v}");
    assert_eq!(v["destinations"][0]["down_since"], Value::Null);
    assert_eq!(v["ended"], Value::Null);

    let (code, out, err) = status(cache.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("router "), "{out}");
    assert!(out.contains("running, working"), "{out}");
    assert!(out.contains("AccessionNumber=ACC3001, every 1s"), "{out}");
    assert!(out.contains("1 delivered and 0 failed on"), "{out}");

    assert_eq!(running.interrupt(), 130);
    let (code, v) = status_json(cache.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(v["ended"]["how"], "interrupted");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains(&format!("retriever_watch_up{label} 0\n")), "{text}");
    assert!(
        v["verdict"]["reason"]
            .as_str()
            .unwrap()
            .contains("is not running: it ended at"),
        "{v}"
    );
}

fn a_killed_watch_is_not_running() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let mut running = Running::start(watch(
        &orthanc.dicomweb_url(),
        cache.path(),
        &scp.address(),
        &["--interval", "1s", "--filter", "AccessionNumber=NOSUCHSTUDY"],
    ));
    wait_until(LIMIT, "a status that says the watch works", &mut running, || {
        status_file_exists(cache.path()) && status(cache.path(), &[]).0 == 0
    });
    running.child.kill().unwrap(); // SIGKILL: nothing written on the way out
    running.child.wait().unwrap();

    let (code, out, err) = status(cache.path(), &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("NOT RUNNING"), "{out}");
    assert!(
        err.contains(&format!("(pid {} on ", running.pid()))
            && err.contains("is not running: it stopped without saying why"),
        "{err}"
    );
}

fn a_watch_whose_cloud_is_down_is_not_working_and_says_the_last_error() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    proxy.add(Rule::new(Fault::unavailable(0)).path_contains("/dicom-web/studies?"));
    let cache = temp_cache();
    // Nothing is found, so nothing is sent: the destination need not listen.
    let dest = format!("NOBODY@127.0.0.1:{}", free_port());
    let mut running = Running::start(watch(
        &proxy.dicomweb_url(),
        cache.path(),
        &dest,
        &[
            "--interval",
            "1s",
            "--retries",
            "0",
            "--filter",
            "AccessionNumber=ACC3001",
        ],
    ));
    let mut last = (0, String::new());
    wait_until(LIMIT, "status to say the search has not worked", &mut running, || {
        if !status_file_exists(cache.path()) {
            return false;
        }
        let (code, _, err) = status(cache.path(), &["--stale-after", "3s"]);
        last = (code, err);
        last.0 != 0
    });
    let (code, err) = last;
    assert_eq!(code, 1);
    assert!(
        err.contains("no search of the cloud has worked since it started at") && err.contains("failed in a row"),
        "{err}"
    );
    assert!(err.contains("503"), "the last error: {err}");

    let (code, v) = status_json(cache.path(), &["--stale-after", "3s"]);
    assert_eq!(code, 1);
    assert_eq!(v["verdict"]["running"], true);
    assert!(v["search"]["failures_in_a_row"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["search"]["last_ok_at"], Value::Null);
    assert!(
        v["search"]["last_failure"]["error"].as_str().unwrap().contains("503"),
        "{v}"
    );
    assert_eq!(running.interrupt(), 130);
}

fn a_once_pass_leaves_a_status_that_says_it_ended() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let dest = scp.address();
    let (code, _, err) = run_within(
        &mut watch(
            &orthanc.dicomweb_url(),
            cache.path(),
            &dest,
            &["--once", "--filter", "AccessionNumber=ACC3001"],
        ),
        LIMIT,
    );
    assert_eq!(code, 0, "watch --once failed:\n{err}");

    let (code, v) = status_json(cache.path(), &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["once"], true);
    assert_eq!(v["ended"]["how"], "finished");
    assert_eq!(v["ended"]["error"], Value::Null);
    assert_eq!(v["studies"]["delivered_today"], 1);
    assert_eq!(v["studies"]["in_flight"], 0);
    assert!(v["destinations"][0]["last_delivery_at"].is_string(), "{v}");
    let (_, out, err) = status(cache.path(), &[]);
    assert!(
        err.contains("ended at") && err.contains("after one pass (`watch --once`)"),
        "{err}"
    );
    assert!(out.contains("NOT RUNNING") && out.contains("(finished)"), "{out}");
}
