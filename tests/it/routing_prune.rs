//! `prune` and `ls` with several destinations in the config file: a study stays in the cache
//! until every destination its rules route it to holds all of it, the dry run names the ones
//! holding it back, and `ls` shows the study's state at each. The cache is filled by
//! `retriever fetch` from the shared Orthanc; delivery journals are written by `retriever store
//! --to` to one DCMTK `storescp` at a time, as a router delivering to each would leave them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Orthanc, Storescp, fetch_ok, retriever, retriever_at, run_within, temp_cache, uid_of};

tests! {
    prune_waits_for_every_destination_and_ls_shows_each: ["orthanc", "storescp"],
    a_study_goes_once_the_destinations_its_rules_pick_have_it: ["orthanc", "storescp"],
}

const LIMIT: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

/// A config file in `dir` with these `destinations`.
fn config_with(dir: &Path, destinations: Value) -> std::path::PathBuf {
    let path = dir.join("retriever.json");
    std::fs::write(&path, json!({ "destinations": destinations }).to_string()).unwrap();
    path
}

/// `retriever --cache CACHE --config CONFIG ARGS...`
fn with_config(cache: &Path, config: &Path, args: &[&str]) -> (i32, String, String) {
    run(retriever()
        .arg("--cache")
        .arg(cache)
        .arg("--config")
        .arg(config)
        .args(args))
}

/// `retriever store STUDY --to DEST`: the study's journal for `dest` holds all of it.
fn store_to(orthanc: &Orthanc, cache: &Path, accession: &str, dest: &str) {
    let (code, _, err) =
        run(retriever_at(&orthanc.dicomweb_url(), cache).args(["store", uid_of(accession), "--to", dest]));
    assert_eq!(code, 0, "store {accession} to {dest} failed:\n{err}");
}

/// The `ls --json` record of `accession`'s study.
fn ls_record(cache: &Path, config: &Path, accession: &str) -> Value {
    let (code, out, err) = with_config(cache, config, &["ls", "--json"]);
    assert_eq!(code, 0, "ls failed:\n{err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["study_uid"] == uid_of(accession))
        .unwrap_or_else(|| panic!("{accession} is not listed: {out}"))
}

/// The `(destination, to, routed, delivered, pending)` of each entry of an `ls --json` record's
/// `destinations`.
fn destinations(record: &Value) -> Vec<(String, String, bool, u64, u64)> {
    record["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("no destinations: {record}"))
        .iter()
        .map(|d| {
            (
                d["destination"].as_str().unwrap().to_owned(),
                d["to"].as_str().unwrap().to_owned(),
                d["routed"].as_bool().unwrap(),
                d["delivered"].as_u64().unwrap(),
                d["pending"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Two destinations that take every study: delivered to one, a study is kept and the dry run
/// names the other; delivered to both, it goes. `ls` shows it at each.
fn prune_waits_for_every_destination_and_ls_shows_each() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let (pacs, ws) = (Storescp::start("PACSA"), Storescp::start("WSB"));
    let (a, b) = (pacs.address(), ws.address());
    let config = config_with(
        cache.path(),
        json!([{ "name": "pacs", "to": a }, { "name": "workstation", "to": b }]),
    );
    fetch_ok(orthanc, cache.path(), &["ACC3001"]);
    store_to(orthanc, cache.path(), "ACC3001", &a);
    let uid = uid_of("ACC3001");
    let study_dir = cache.path().join("studies").join(uid);

    // Held back by the workstation: said, with how far it got, and kept.
    let (code, out, err) = with_config(cache.path(), &config, &["prune", "--older-than", "0s", "--dry-run"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains(&format!("kept {uid} (ACC3001, ")), "{err}");
    assert!(
        err.contains(&format!(
            "not yet delivered to workstation ({b}): 0 of 2 instances; --include-undelivered removes it"
        )),
        "{err}"
    );
    assert!(!err.contains("not yet delivered to pacs"), "{err}");
    assert!(
        err.contains("kept 1 study older than 0s but not delivered to every destination it is routed to"),
        "{err}"
    );
    // JSON names the destinations holding it back.
    let (code, out, err) = with_config(
        cache.path(),
        &config,
        &[
            "prune",
            "--older-than",
            "0s",
            "--dry-run",
            "--include-undelivered",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let line: Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(line["reason"], "undelivered", "{line}");
    assert_eq!(
        line["held_back_by"],
        json!([{ "destination": "workstation", "to": b, "delivered": 0, "total": 2 }]),
        "{line}"
    );
    let (code, out, err) = with_config(cache.path(), &config, &["prune", "--older-than", "0s"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(
        err.contains(&format!("not yet delivered to workstation ({b})")),
        "{err}"
    );
    assert!(study_dir.join("manifest.json").is_file(), "a real prune kept it");

    // `ls` shows the study at each destination; the journals' view stays as it was.
    let (code, out, err) = with_config(cache.path(), &config, &["ls", "--wide"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pacs 2/2, workstation 0/2 (2 pending)"), "{out}");
    let record = ls_record(cache.path(), &config, "ACC3001");
    assert_eq!(
        destinations(&record),
        [
            ("pacs".to_owned(), a.clone(), true, 2, 0),
            ("workstation".to_owned(), b.clone(), true, 0, 2),
        ]
    );
    assert_eq!(record["deliveries"][0]["destination"], a.as_str(), "{record}");

    // At the workstation too: it goes.
    store_to(orthanc, cache.path(), "ACC3001", &b);
    let (code, out, err) = with_config(cache.path(), &config, &["prune", "--older-than", "0s", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let fields: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(fields[0], uid, "{out}");
    assert_eq!(
        fields[4],
        format!("delivered to pacs ({a}), workstation ({b})"),
        "{out}"
    );
    let (code, out, err) = with_config(
        cache.path(),
        &config,
        &["prune", "--older-than", "0s", "--dry-run", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let line: Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(line["delivered_to"], format!("pacs ({a}), workstation ({b})"), "{line}");
    assert_eq!(line["held_back_by"], json!([]), "{line}");
    let (code, out, err) = with_config(cache.path(), &config, &["prune", "--older-than", "0s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(uid), "{out}");
    assert!(!study_dir.exists(), "removed once both have it");
}

/// The rules send a CT study to the PACS only and an MR study to both: once at the PACS, the
/// CT study goes and the MR study waits for the workstation; a study the rules send nowhere
/// waits for nothing, and the dry run says why. `ls` shows a journal of a destination the
/// rules do not pick as not routed.
fn a_study_goes_once_the_destinations_its_rules_pick_have_it() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let (pacs, ws) = (Storescp::start("PACSA"), Storescp::start("WSB"));
    let (a, b) = (pacs.address(), ws.address());
    let config = config_with(
        cache.path(),
        json!([
            { "name": "pacs", "to": a, "when": { "modality": ["CT", "MR"] } },
            { "name": "workstation", "to": b, "when": { "modality": "MR" } },
        ]),
    );
    fetch_ok(orthanc, cache.path(), &["ACC3001"]);
    fetch_ok(orthanc, cache.path(), &["ACC1003"]);
    fetch_ok(orthanc, cache.path(), &["ACC2002"]);
    store_to(orthanc, cache.path(), "ACC3001", &a);
    store_to(orthanc, cache.path(), "ACC1003", &a);
    // The OT study went to the workstation, which its rules do not pick.
    store_to(orthanc, cache.path(), "ACC2002", &b);

    let (code, out, err) = with_config(cache.path(), &config, &["prune", "--older-than", "0s", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    let state_of = |accession: &str| {
        lines
            .iter()
            .find(|f| f[0] == uid_of(accession))
            .map(|f| f[4].to_owned())
            .unwrap_or_else(|| panic!("{accession} would not be removed: {out}\n{err}"))
    };
    assert_eq!(state_of("ACC3001"), format!("delivered to pacs ({a})"));
    let nowhere = state_of("ACC2002");
    assert!(
        nowhere.starts_with("routed to no destination (pacs: ") && nowhere.contains("workstation: "),
        "{nowhere}"
    );
    assert!(!out.contains(uid_of("ACC1003")), "{out}");
    assert!(
        err.contains(&format!("kept {} (ACC1003, ", uid_of("ACC1003")))
            && err.contains(&format!("not yet delivered to workstation ({b}): 0 of 4 instances")),
        "{err}"
    );

    let record = ls_record(cache.path(), &config, "ACC2002");
    assert_eq!(
        destinations(&record),
        [("workstation".to_owned(), b.clone(), false, 2, 0)]
    );
    let record = ls_record(cache.path(), &config, "ACC3001");
    assert_eq!(destinations(&record), [("pacs".to_owned(), a.clone(), true, 2, 0)]);
    let (code, out, err) = with_config(cache.path(), &config, &["ls", "--wide"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("workstation 2/2 not routed"), "{out}");
    assert!(out.contains("pacs 4/4, workstation 0/4 (4 pending)"), "{out}");

    // For real: the CT and the OT study go, the MR study stays until the workstation has it.
    let (code, _, err) = with_config(cache.path(), &config, &["prune", "--older-than", "0s"]);
    assert_eq!(code, 0, "{err}");
    let studies = cache.path().join("studies");
    assert!(!studies.join(uid_of("ACC3001")).exists() && !studies.join(uid_of("ACC2002")).exists());
    assert!(studies.join(uid_of("ACC1003")).join("manifest.json").is_file());
    store_to(orthanc, cache.path(), "ACC1003", &b);
    let (code, out, err) = with_config(cache.path(), &config, &["prune", "--older-than", "0s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(uid_of("ACC1003")), "{out}\n{err}");
    assert!(!studies.join(uid_of("ACC1003")).exists());
}
