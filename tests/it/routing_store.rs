//! Delivery to several destinations: `fetch --store`, `store` and `store --dest` send each
//! study to the destinations the config file's `destinations` rules route it to, each
//! destination served on its own, and `fetch --dry-run` says where each study would go and why.
//! Two DCMTK `storescp` play the PACS and a reading workstation; assertions are on the SOP Instance UIDs each received, the lines on stdout and what
//! the user is told.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Orthanc, Storescp, fetch_ok, retriever_at, run_within, temp_cache, testdata, uid_of};

tests! {
    one_destination_is_shown_in_one_line_by_the_dry_run: ["orthanc"],
    fetch_store_sends_every_destination_the_studies: ["orthanc", "storescp"],
    a_stopped_destination_holds_up_nothing_and_store_catches_it_up: ["orthanc", "storescp"],
    store_dest_delivers_to_that_one_only: ["orthanc", "storescp"],
    the_dry_run_says_where_each_study_would_go_and_why: ["orthanc"],
    each_destination_gets_what_its_rules_take: ["orthanc", "storescp"],
    store_dest_does_not_send_a_named_study_its_rules_keep_out: ["orthanc", "storescp"],
}

const LIMIT: Duration = Duration::from_secs(60);

/// The study asked for, and its three priors (the default rules choose them).
const CURRENT: &str = "ACC1001";
const PRIORS: [&str; 3] = ["ACC1002", "ACC1003", "ACC1004"];

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

/// The SOP Instance UIDs of the study asked for and its priors.
fn all_sops() -> BTreeSet<String> {
    std::iter::once(CURRENT)
        .chain(PRIORS)
        .flat_map(|a| testdata().study(a).sop_uids())
        .collect()
}

/// A config file with two destinations, `pacs` and `ws`, each taking every study.
fn two_destinations(dir: &Path, pacs: &str, ws: &str) -> PathBuf {
    let config = json!({
        "destinations": [
            { "name": "pacs", "to": pacs },
            { "name": "ws", "to": ws },
        ]
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// As [`two_destinations`], but `ws` takes current studies only.
fn current_to_ws(dir: &Path, pacs: &str, ws: &str) -> PathBuf {
    let config = json!({
        "destinations": [
            { "name": "pacs", "to": pacs },
            { "name": "ws", "to": ws, "when": { "role": "current" } },
        ]
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// `retriever --config CONFIG ARGS...` with the cloud and the cache set.
fn retriever_with(orthanc: &Orthanc, cache: &Path, config: &Path, args: &[&str]) -> (i32, String, String) {
    run(retriever_at(&orthanc.dicomweb_url(), cache)
        .arg("--config")
        .arg(config)
        .args(args))
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect()
}

/// (study, destination) of each JSON line of `store`.
fn deliveries(out: &str) -> BTreeSet<(String, String)> {
    json_lines(out)
        .iter()
        .map(|l| {
            (
                l["study_uid"].as_str().unwrap().to_owned(),
                l["destination"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// These studies, each to `destination`.
fn each_to(destination: &str) -> BTreeSet<(String, String)> {
    std::iter::once(CURRENT)
        .chain(PRIORS)
        .map(|a| (uid_of(a).to_owned(), destination.to_owned()))
        .collect()
}

/// With a single `--to`, every study goes there: the dry run says so in one line, and each
/// JSON row names it with its reason.
fn one_destination_is_shown_in_one_line_by_the_dry_run() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let to = "PACS@127.0.0.1:11112";
    let dry_run = |json: bool| {
        let mut cmd = retriever_at(&orthanc.dicomweb_url(), cache.path());
        cmd.args(["fetch", CURRENT, "--dry-run", "--to", to]);
        if json {
            cmd.arg("--json");
        }
        run(&mut cmd)
    };
    let (code, out, err) = dry_run(false);
    assert_eq!(code, 0, "{err}");
    let arrows: Vec<&str> = out.lines().filter(|l| l.starts_with('→')).collect();
    assert_eq!(arrows, [format!("→ {to} (every study)")], "{out}");

    let (code, out, err) = dry_run(true);
    assert_eq!(code, 0, "{err}");
    let rows = json_lines(&out);
    assert!(rows.len() > 1, "the current study and its candidate priors:\n{out}");
    for row in &rows {
        let want = json!([{ "destination": to, "to": to, "routed": true, "why": "every study" }]);
        assert_eq!(row["routes"], want, "{row}");
    }
}

/// `fetch --store` with two destinations: each receives the study and its priors, and the
/// summary names each; a `store` after it has nothing left to send to either.
fn fetch_store_sends_every_destination_the_studies() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let (pacs, ws) = (Storescp::start("PACS"), Storescp::start("WS"));
    let config = two_destinations(cache.path(), &pacs.address(), &ws.address());
    let (code, _, err) = retriever_with(orthanc, cache.path(), &config, &["fetch", CURRENT, "--store"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(pacs.received_sop_uids(), all_sops());
    assert_eq!(ws.received_sop_uids(), all_sops());
    for name in [
        format!("store to pacs ({})", pacs.address()),
        format!("store to ws ({})", ws.address()),
    ] {
        assert!(err.contains(&name), "{err}");
    }

    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["store", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "nothing was left to deliver");
}

/// One destination down: the other still gets everything, the run fails naming the one down
/// (and not the other); once it is back, `store` sends it what it lacks, and nothing more to
/// the one that has it all.
fn a_stopped_destination_holds_up_nothing_and_store_catches_it_up() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let (pacs, mut ws) = (Storescp::start("PACS"), Storescp::start("WS"));
    ws.stop();
    let config = two_destinations(cache.path(), &pacs.address(), &ws.address());
    let (code, _, err) = retriever_with(orthanc, cache.path(), &config, &["fetch", CURRENT, "--store"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(pacs.received_sop_uids(), all_sops(), "the PACS got everything:\n{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains(&format!("ws ({})", ws.address())), "{err}");
    assert!(!last.contains("pacs ("), "the PACS did not fail:\n{err}");

    ws.start_again();
    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["store", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(deliveries(&out), each_to("ws"), "{out}");
    for line in json_lines(&out) {
        assert_eq!(line["to"], ws.address(), "{line}");
    }
    assert_eq!(ws.received_sop_uids(), all_sops());
}

/// `store --dest ws` delivers to the workstation only, and then `--dest pacs` to the PACS; a
/// name that is not a destination is a usage error listing the names.
fn store_dest_delivers_to_that_one_only() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &[CURRENT, "--priors", "3"]);
    let (pacs, ws) = (Storescp::start("PACS"), Storescp::start("WS"));
    let config = two_destinations(cache.path(), &pacs.address(), &ws.address());
    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["store", "--dest", "ws"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ws.received_sop_uids(), all_sops());
    assert!(pacs.received_sop_uids().is_empty(), "the PACS was not chosen");
    // The text line names the destination in its third field.
    let lines: Vec<(&str, &str)> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0], f[2])
        })
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines.iter().all(|(_, dest)| *dest == "ws"), "{out}");

    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["store", "--dest", "pacs", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(deliveries(&out), each_to("pacs"), "{out}");
    assert_eq!(pacs.received_sop_uids(), all_sops());

    let (code, _, err) = retriever_with(orthanc, cache.path(), &config, &["store", "--dest", "mammo"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`mammo`") && err.contains("pacs, ws"), "{err}");
}

/// The dry run with two destinations: for each study it would fetch, a line per destination
/// with the reason, and in JSON a `routes` list on every row.
fn the_dry_run_says_where_each_study_would_go_and_why() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let config = two_destinations(cache.path(), "PACS@127.0.0.1:11112", "WS@127.0.0.1:11113");
    let (code, out, err) = retriever_with(
        orthanc,
        cache.path(),
        &config,
        &["fetch", CURRENT, "--dry-run", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let rows = json_lines(&out);
    let row = |accession: &str| rows.iter().find(|r| r["accession"] == accession).unwrap();
    for accession in std::iter::once(CURRENT).chain(PRIORS) {
        let want = json!([
            { "destination": "pacs", "to": "PACS@127.0.0.1:11112", "routed": true, "why": "every study" },
            { "destination": "ws", "to": "WS@127.0.0.1:11113", "routed": true, "why": "every study" },
        ]);
        assert_eq!(row(accession)["routes"], want, "{accession}");
    }

    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["fetch", CURRENT, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    for accession in std::iter::once(CURRENT).chain(PRIORS) {
        for dest in ["pacs (PACS@127.0.0.1:11112)", "ws (WS@127.0.0.1:11113)"] {
            let said = format!("send   {}  to {dest}  every study", uid_of(accession));
            assert!(out.lines().any(|l| l == said), "no `{said}` in:\n{out}");
        }
    }
    // A prior the rules of priors leave out goes nowhere.
    let skipped = uid_of("ACC1005");
    assert!(
        !out.lines().any(|l| l.starts_with("send") && l.contains(skipped)),
        "{out}"
    );
    assert!(
        !out.contains('→'),
        "several destinations are explained study by study:\n{out}"
    );
}

/// With a rule, `fetch --store` sends the PACS the study and its priors and the workstation
/// the current study only; the dry run said so beforehand, with the rule's reason for each.
fn each_destination_gets_what_its_rules_take() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let (pacs, ws) = (Storescp::start("PACS"), Storescp::start("WS"));
    let config = current_to_ws(cache.path(), &pacs.address(), &ws.address());
    let prior = uid_of(PRIORS[0]);

    let (code, out, err) = retriever_with(
        orthanc,
        cache.path(),
        &config,
        &["fetch", CURRENT, "--dry-run", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let rows = json_lines(&out);
    let row = rows.iter().find(|r| r["study_uid"] == prior).unwrap();
    assert_eq!(row["routes"][0]["routed"], true, "{row}");
    assert_eq!(row["routes"][1]["destination"], "ws", "{row}");
    assert_eq!(row["routes"][1]["routed"], false, "{row}");
    assert!(row["routes"][1]["why"].as_str().unwrap().starts_with("not: "), "{row}");
    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["fetch", CURRENT, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let skip = format!("skip   {prior}  to ws ({})  not: ", ws.address());
    assert!(out.lines().any(|l| l.starts_with(&skip)), "no `{skip}` in:\n{out}");
    assert_eq!(
        pacs.received_sop_uids().len() + ws.received_sop_uids().len(),
        0,
        "a dry run sends nothing"
    );

    let (code, _, err) = retriever_with(orthanc, cache.path(), &config, &["fetch", CURRENT, "--store"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(pacs.received_sop_uids(), all_sops());
    assert_eq!(ws.received_sop_uids(), testdata().study(CURRENT).sop_uids());
}

/// `store --dest ws` sends the workstation what its rules take and nothing else; a prior named
/// for it is not sent, stderr gives the rule's reason, and the run fails.
fn store_dest_does_not_send_a_named_study_its_rules_keep_out() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &[CURRENT, "--priors", "3"]);
    let (pacs, ws) = (Storescp::start("PACS"), Storescp::start("WS"));
    let config = current_to_ws(cache.path(), &pacs.address(), &ws.address());
    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["store", "--dest", "ws", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(deliveries(&out), [(uid_of(CURRENT).to_owned(), "ws".to_owned())].into());
    assert_eq!(ws.received_sop_uids(), testdata().study(CURRENT).sop_uids());

    let prior = uid_of(PRIORS[0]);
    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["store", "--dest", "ws", prior]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains(&format!("study {prior} was not sent")) && err.contains("not: role prior is not current"),
        "{err}"
    );
    assert!(
        err.lines().last().unwrap().contains("not for the destination chosen"),
        "{err}"
    );
    assert_eq!(ws.received_sop_uids(), testdata().study(CURRENT).sop_uids());
    assert!(pacs.received_sop_uids().is_empty(), "the PACS was not chosen");

    // Without `--dest`, the same study goes where its rules send it, and that is no failure.
    let (code, out, err) = retriever_with(orthanc, cache.path(), &config, &["store", "--json", prior]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(deliveries(&out), [(prior.to_owned(), "pacs".to_owned())].into());
}
