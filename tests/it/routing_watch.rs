//! `retriever watch` with several destinations in the config file (two DCMTK `storescp`): one
//! pass delivers to each destination the studies routed there (by their `when` rules), with one
//! stdout line per study and destination, and a prior that becomes a current study is judged
//! again; a destination down for a pass holds up nothing at the other, and the next
//! pass delivers only what it lacks, and nothing again where it was delivered; `retriever
//! status` and the metrics file name each destination, and the one that is down; two watches
//! never deliver to one destination from one cache.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::running::{Running, wait_until};
use crate::common::{
    Orthanc, Storescp, assert_journaled_once, dest_key, retriever, retriever_at, run_within, temp_cache, testdata,
    uid_of,
};

tests! {
    once_delivers_to_each_destination_what_is_routed_there: ["orthanc", "storescp"],
    a_destination_down_for_a_pass_gets_only_the_rest_at_the_next: ["orthanc", "storescp"],
    status_and_metrics_name_each_destination_and_the_one_down: ["orthanc", "storescp"],
    a_watch_sharing_a_destination_with_a_running_one_is_refused_naming_it: ["orthanc", "storescp"],
    rules_route_each_study_and_a_prior_that_becomes_current_is_judged_again: ["orthanc", "storescp"],
}

const LIMIT: Duration = Duration::from_secs(90);

/// The current study PAT001's search finds, and its three priors.
const CURRENT: &str = "ACC1001";
const PRIORS: [&str; 3] = ["ACC1002", "ACC1003", "ACC1004"];

fn sops(accessions: &[&str]) -> BTreeSet<String> {
    accessions.iter().flat_map(|a| testdata().study(a).sop_uids()).collect()
}

fn all_studies() -> Vec<&'static str> {
    [CURRENT].iter().chain(&PRIORS).copied().collect()
}

/// A config file in `dir` with the destinations `pacs` (every study) and `ws` (`ws_when`).
fn config(dir: &Path, pacs: &str, ws: &str, ws_when: Option<Value>) -> PathBuf {
    let mut ws = json!({ "name": "ws", "to": ws });
    if let Some(when) = ws_when {
        ws["when"] = when;
    }
    let path = dir.join("config.json");
    let text = json!({ "destinations": [{ "name": "pacs", "to": pacs }, ws] });
    std::fs::write(&path, serde_json::to_vec_pretty(&text).unwrap()).unwrap();
    path
}

/// `retriever --cloud CLOUD ... --config CONFIG watch --filter PatientID=PAT001 ARGS...`
fn watch(cloud: &str, cache: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = retriever_at(cloud, cache);
    cmd.arg("--config")
        .arg(config)
        .arg("watch")
        .args(["--filter", "PatientID=PAT001", "--filter", "StudyDate=last 24 hours"])
        .args(args);
    cmd
}

/// The stdout lines of `watch --json`, as (study UID, destination name).
fn lines(out: &str) -> BTreeSet<(String, String)> {
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| {
            (
                v["study_uid"].as_str().unwrap().to_owned(),
                v["destination"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(accessions: &[&str], destination: &str) -> BTreeSet<(String, String)> {
    accessions
        .iter()
        .map(|a| (uid_of(a).to_owned(), destination.to_owned()))
        .collect()
}

/// The watch record of `dest`: study UID → its entry.
fn record(cache: &Path, dest: &str) -> BTreeMap<String, Value> {
    let studies = crate::common::watch_record(cache, dest);
    assert!(!studies.is_empty(), "no watch record of {dest} in {}", cache.display());
    studies
}

/// One pass delivers the current study and its priors to both destinations (no rules: each
/// takes every study), each gets exactly its UID set, and stdout has one line per study and
/// destination, naming it, with its address in the JSON.
fn once_delivers_to_each_destination_what_is_routed_there() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let pacs = Storescp::start("PACS");
    let ws = Storescp::start("WS");
    let config = config(cache.path(), &pacs.address(), &ws.address(), None);

    let (code, out, err) = run_within(
        &mut watch(&orthanc.dicomweb_url(), cache.path(), &config, &["--once", "--json"]),
        LIMIT,
    );
    assert_eq!(code, 0, "watch --once failed:\n{err}");
    let studies = all_studies();
    assert_eq!(pacs.received_sop_uids(), sops(&studies), "pacs");
    assert_eq!(ws.received_sop_uids(), sops(&studies), "ws");
    let want: BTreeSet<_> = pairs(&studies, "pacs").union(&pairs(&studies, "ws")).cloned().collect();
    assert_eq!(lines(&out), want, "{out}");
    assert_eq!(out.lines().count(), 8, "one line per study and destination:\n{out}");
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let to = if first["destination"] == "pacs" {
        pacs.address()
    } else {
        ws.address()
    };
    assert_eq!(first["to"], json!(to), "{first}");
    assert!(err.contains("delivering to pacs (PACS@"), "{err}");
    assert_journaled_once(cache.path(), &pacs.address(), &studies);
    assert_journaled_once(cache.path(), &ws.address(), &studies);
    for dest in [pacs.address(), ws.address()] {
        assert_eq!(
            record(cache.path(), &dest)[uid_of(CURRENT)]["delivered"],
            true,
            "{dest}"
        );
    }

    // Again: delivered everywhere already, nothing is sent and nothing printed.
    let (code, out, err) = run_within(
        &mut watch(&orthanc.dicomweb_url(), cache.path(), &config, &["--once"]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    assert_eq!(pacs.received().len(), 14);
    assert_eq!(ws.received().len(), 14);
}

/// With `ws` stopped, a pass delivers everything to `pacs` at once and fails naming `ws`; after
/// `ws` is back, the next pass delivers everything to `ws` and nothing again to `pacs`.
fn a_destination_down_for_a_pass_gets_only_the_rest_at_the_next() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let pacs = Storescp::start("PACS");
    let mut ws = Storescp::start("WS");
    let config = config(cache.path(), &pacs.address(), &ws.address(), None);
    ws.stop();

    let (code, out, err) = run_within(
        &mut watch(&orthanc.dicomweb_url(), cache.path(), &config, &["--once", "--json"]),
        LIMIT,
    );
    assert_eq!(code, 1, "a destination was down:\n{err}");
    let studies = all_studies();
    assert_eq!(pacs.received_sop_uids(), sops(&studies), "pacs got everything");
    assert!(ws.received().is_empty());
    assert_eq!(lines(&out), pairs(&studies, "pacs"), "{out}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("was not delivered") && last.contains("ws: "), "{err}");
    assert_eq!(
        record(cache.path(), &pacs.address())[uid_of(CURRENT)]["delivered"],
        true
    );
    assert_eq!(record(cache.path(), &ws.address())[uid_of(CURRENT)]["delivered"], false);

    ws.start_again();
    let (code, out, err) = run_within(
        &mut watch(&orthanc.dicomweb_url(), cache.path(), &config, &["--once", "--json"]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(ws.received_sop_uids(), sops(&studies), "ws got the rest");
    assert_eq!(lines(&out), pairs(&studies, "ws"), "only ws's lines:\n{out}");
    assert_journaled_once(cache.path(), &pacs.address(), &studies);
    assert_journaled_once(cache.path(), &ws.address(), &studies);
    assert_eq!(pacs.received().len(), 14, "nothing again to pacs");
    assert_eq!(record(cache.path(), &ws.address())[uid_of(CURRENT)]["delivered"], true);
}

/// A running watch whose `ws` is down: `retriever status` shows both destinations, `pacs` up
/// and `ws` down, and fails naming `ws` once it is down longer than allowed; the metrics file
/// has a line per destination.
fn status_and_metrics_name_each_destination_and_the_one_down() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let pacs = Storescp::start("PACS");
    let mut ws = Storescp::start("WS");
    let config = config(cache.path(), &pacs.address(), &ws.address(), None);
    ws.stop();
    let metrics = cache.path().join("retriever.prom");
    let mut running = Running::start(watch(
        &orthanc.dicomweb_url(),
        cache.path(),
        &config,
        &["--interval", "1s", "--metrics-file", metrics.to_str().unwrap()],
    ));
    let status = |args: &[&str]| {
        let mut cmd = retriever();
        cmd.arg("--cache").arg(cache.path()).arg("status").args(args);
        run_within(&mut cmd, LIMIT)
    };
    wait_until(LIMIT, "pacs to have everything", &mut running, || {
        pacs.received_sop_uids() == sops(&all_studies())
    });
    wait_until(
        LIMIT,
        "status to say ws is down for longer than 1s",
        &mut running,
        || {
            let (code, _, err) = status(&["--stale-after", "1s"]);
            code == 1 && err.contains("the destination ws (WS@") && err.contains("has not taken studies since")
        },
    );
    let (_, out, _) = status(&["--stale-after", "1s"]);
    assert!(out.contains(&format!("pacs ({}): up", pacs.address())), "{out}");
    assert!(out.contains(&format!("ws ({}): DOWN since", ws.address())), "{out}");
    assert_eq!(out.matches("router ").count(), 1, "the watch is shown once:\n{out}");
    let (_, json_out, _) = status(&["--json"]);
    assert_eq!(json_out.lines().count(), 1, "one object for the one watch:\n{json_out}");
    let v: Value = serde_json::from_str(&json_out).unwrap();
    let names: Vec<&str> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pacs", "ws"], "{v}");
    wait_until(LIMIT, "the metrics to say ws is down", &mut running, || {
        std::fs::read_to_string(&metrics)
            .is_ok_and(|m| m.contains("retriever_watch_destination_down{destination=\"ws\"} 1"))
    });
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("retriever_watch_destination_down{destination=\"pacs\"} 0"),
        "{text}"
    );
    assert_eq!(text.matches("# TYPE retriever_watch_up gauge").count(), 1, "{text}");

    ws.start_again();
    wait_until(LIMIT, "ws to get everything once back", &mut running, || {
        ws.received_sop_uids() == sops(&all_studies())
    });
    assert_eq!(running.interrupt(), 130, "{}", running.stderr());
    let err = running.stderr();
    assert!(err.contains("the destination ws is down"), "{err}");
    assert!(err.contains("the destination ws answers again"), "{err}");
}

/// A watch delivering to `ws` alone (`--dest ws`) holds `ws`: a watch of both destinations is
/// refused, naming `ws` and the process that holds it, while one of `pacs` alone runs beside it.
fn a_watch_sharing_a_destination_with_a_running_one_is_refused_naming_it() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let pacs = Storescp::start("PACS");
    let ws = Storescp::start("WS");
    let config = config(cache.path(), &pacs.address(), &ws.address(), None);
    let mut first = watch(&orthanc.dicomweb_url(), cache.path(), &config, &["--interval", "1s"]);
    first.args(["--dest", "ws"]);
    let mut running = Running::start(first);
    let pid = running.pid();
    let status_file = cache
        .path()
        .join("watch")
        .join(format!("{}.status.json", dest_key(&ws.address())));
    wait_until(LIMIT, "the first watch to write its status", &mut running, || {
        status_file.exists()
    });

    let (code, out, err) = run_within(
        &mut watch(&orthanc.dicomweb_url(), cache.path(), &config, &["--once"]),
        LIMIT,
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains(&format!("another `retriever watch` (pid {pid} on "))
            && err.contains(&format!("is already delivering to ws ({})", ws.address())),
        "{err}"
    );
    assert!(pacs.received().is_empty(), "the refused watch sent nothing");

    let mut beside = watch(&orthanc.dicomweb_url(), cache.path(), &config, &["--once"]);
    beside.args(["--dest", "pacs"]);
    let (code, _, err) = run_within(&mut beside, LIMIT);
    assert_eq!(code, 0, "{err}");
    assert_eq!(pacs.received_sop_uids(), sops(&all_studies()));
    assert_eq!(running.interrupt(), 130, "{}", running.stderr());
}

/// `ws` takes current studies only (`"when": {"role": "current"}`): one pass sends it the current
/// study and `pacs` everything. A later pass whose search finds a prior as a current study
/// judges it again: `ws` gets it now, `pacs` only the prior it did not have.
fn rules_route_each_study_and_a_prior_that_becomes_current_is_judged_again() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let pacs = Storescp::start("PACS");
    let ws = Storescp::start("WS");
    let when = json!({ "role": "current" });
    let config = config(cache.path(), &pacs.address(), &ws.address(), Some(when));

    let (code, out, err) = run_within(
        &mut watch(&orthanc.dicomweb_url(), cache.path(), &config, &["--once", "--json"]),
        LIMIT,
    );
    assert_eq!(code, 0, "watch --once failed:\n{err}");
    let studies = all_studies();
    assert_eq!(pacs.received_sop_uids(), sops(&studies), "pacs: everything");
    assert_eq!(ws.received_sop_uids(), sops(&[CURRENT]), "ws: the current study only");
    let want: BTreeSet<_> = pairs(&studies, "pacs")
        .union(&pairs(&[CURRENT], "ws"))
        .cloned()
        .collect();
    assert_eq!(lines(&out), want, "{out}");

    // The search now finds ACC1002, so far a prior, as a current study (with its own priors).
    let mut again = retriever_at(&orthanc.dicomweb_url(), cache.path());
    again
        .arg("--config")
        .arg(&config)
        .arg("watch")
        .args(["--filter", "AccessionNumber=ACC1002", "--once", "--json"]);
    let (code, out, err) = run_within(&mut again, LIMIT);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        ws.received_sop_uids(),
        sops(&[CURRENT, "ACC1002"]),
        "ws: now ACC1002 too"
    );
    let with_new_prior: Vec<&str> = studies.iter().copied().chain(["ACC1005"]).collect();
    assert_eq!(
        pacs.received_sop_uids(),
        sops(&with_new_prior),
        "pacs: only the new prior"
    );
    let want: BTreeSet<_> = pairs(&["ACC1005"], "pacs")
        .union(&pairs(&["ACC1002"], "ws"))
        .cloned()
        .collect();
    assert_eq!(lines(&out), want, "{out}");
    assert_journaled_once(cache.path(), &pacs.address(), &with_new_prior);
    assert_journaled_once(cache.path(), &ws.address(), &[CURRENT, "ACC1002"]);
}
