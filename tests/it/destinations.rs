//! Several destinations in the config file: `retriever config` shows each with where its
//! settings came from, a wrong list (or `--dest` name) is refused at start-up naming the entry
//! and key, `--to` replaces the list, and `echo` checks every destination (or those of
//! `--dest`) against real DCMTK `storescp` peers, one line each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Storescp, free_port, repo_root, retriever, run_within, temp_cache};

tests! {
    config_shows_each_destination_and_where_its_settings_came_from,
    wrong_lists_of_destinations_are_usage_errors_naming_the_entry,
    to_replaces_the_list_of_destinations,
    echo_checks_every_destination_and_names_the_one_that_failed: ["storescp"],
    dest_echoes_only_the_destinations_named: ["storescp"],
}

const TIMEOUT: Duration = Duration::from_secs(60);

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    run_within(cmd, TIMEOUT)
}

fn write_config(dir: &Path, json: &str) -> PathBuf {
    let path = dir.join("retriever.json");
    std::fs::write(&path, json).unwrap();
    path
}

/// `retriever --config PATH ARGS config --json`, parsed; panics unless it succeeds.
fn config_json(path: &Path, args: &[&str]) -> Value {
    let (code, stdout, stderr) = run(retriever()
        .arg("--config")
        .arg(path)
        .args(args)
        .args(["config", "--json"]));
    assert_eq!(code, 0, "retriever config failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// (value, source, origin) of one setting.
fn setting(config: &Value, key: &str) -> (Value, Value, Value) {
    let s = &config[key];
    assert!(s.is_object(), "no setting `{key}` in {config}");
    (s["value"].clone(), s["source"].clone(), s["origin"].clone())
}

/// The site of the README: the PACS gets everything, the workstation current CT and MR, the
/// mammography viewer MG with its own calling AE title and issuer.
const SITE: &str = r#"{
  "cloud": "https://cloud.example.org/dicom-web",
  "associations": 3,
  "destinations": [
    { "name": "pacs", "to": "PACS@10.0.0.5:104" },
    { "name": "workstation", "to": "WS1@10.0.0.7:11112", "associations": 1,
      "when": { "role": "current", "modality": ["CT", "MR"] } },
    { "name": "mammo", "to": "MAMMO@10.0.0.9:104", "calling_ae": "RTR_MAMMO",
      "when": { "modality": "MG" },
      "coerce": [ { "set": "IssuerOfPatientID", "value": "NORTH" } ] }
  ]
}"#;

fn config_shows_each_destination_and_where_its_settings_came_from() {
    let dir = temp_cache();
    let path = write_config(dir.path(), SITE);
    let config = config_json(&path, &["--calling-ae", "ROUTER"]);
    assert_eq!(setting(&config, "destinations").0, "pacs, workstation, mammo");
    assert_eq!(
        setting(&config, "destinations[pacs].to"),
        ("PACS@10.0.0.5:104".into(), "config file".into(), Value::Null)
    );
    // Inherited: the top level's value, with its source.
    assert_eq!(
        setting(&config, "destinations[pacs].calling_ae"),
        ("ROUTER".into(), "flag".into(), "--calling-ae".into())
    );
    assert_eq!(
        setting(&config, "destinations[pacs].associations"),
        ("3".into(), "config file".into(), "`associations`".into())
    );
    // Its own: the entry's.
    assert_eq!(
        setting(&config, "destinations[mammo].calling_ae"),
        ("RTR_MAMMO".into(), "config file".into(), Value::Null)
    );
    assert_eq!(setting(&config, "destinations[workstation].associations").0, "1");
    assert!(
        setting(&config, "destinations[mammo].coerce")
            .0
            .as_str()
            .unwrap()
            .contains("IssuerOfPatientID"),
        "{config}"
    );
    assert_eq!(
        setting(&config, "destinations[workstation].when").0,
        r#"{"modality":["CT","MR"],"role":"current"}"#
    );
    assert_eq!(setting(&config, "destinations[pacs].when").1, Value::Null);

    // The table says the same, one row per key of each destination.
    let (code, stdout, stderr) = run(retriever().arg("--config").arg(&path).arg("config"));
    assert_eq!(code, 0, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("destinations[mammo].calling_ae "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("RTR_MAMMO") && row.ends_with("config file"), "{row}");
    assert!(!stderr.contains("no destination is set"), "{stderr}");

    // The example of the repository is a valid list.
    let example = repo_root().join("examples/destinations.json");
    let (code, stdout, stderr) = run(retriever()
        .arg("--config")
        .arg(&example)
        .env("RETRIEVER_PASSWORD", "pw-for-the-example")
        .arg("config"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("destinations[mammo].when"), "{stdout}");
}

fn wrong_lists_of_destinations_are_usage_errors_naming_the_entry() {
    let dir = temp_cache();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let entry = |name: &str, to: &str, more: &str| format!(r#"{{"name": "{name}", "to": "{to}"{more}}}"#);
    let list = |entries: &[String]| format!(r#"{{"destinations": [{}]}}"#, entries.join(", "));
    for (json, says) in [
        (
            list(&[entry("pacs", "A@h:1", ""), entry("pacs", "B@h:1", "")]),
            "the name `pacs` is given to two destinations",
        ),
        (
            list(&[entry("pacs", "A@h:1", ""), entry("ws", "A@h:1", "")]),
            "`destinations[pacs].to` and `destinations[ws].to` are both `A@h:1`",
        ),
        (
            r#"{"to": "A@h:1", "destinations": [{"name": "pacs", "to": "B@h:1"}]}"#.to_string(),
            "and `to` are both set; use one",
        ),
        (
            list(&[entry("pacs", "A@h:1", r#", "called_ae": "X""#)]),
            "`destinations[pacs]` is not valid: unknown field `called_ae`",
        ),
        (
            list(&[entry("ws", "A@h:1", r#", "when": {"Modalty": "CT"}"#)]),
            "`destinations[ws].when.Modalty` cannot be used",
        ),
        (
            list(&[entry("ws", "A@h:1", r#", "when": {"role": "todays"}"#)]),
            "`destinations[ws].when.role` is `todays`",
        ),
    ] {
        let path = write_config(dir.path(), &json);
        let (code, _, stderr) = run(retriever().arg("--config").arg(&path).args(["ls", "--cache", cache]));
        assert_eq!(code, 2, "{json}: {stderr}");
        assert!(stderr.contains(says), "{json}: expected `{says}` in: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "the file is named: {stderr}"
        );
    }

    // An unknown `--dest` lists the names there are.
    let path = write_config(dir.path(), SITE);
    let (code, stdout, stderr) = run(retriever().arg("--config").arg(&path).args(["echo", "--dest", "ct"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "nothing was echoed: {stdout}");
    assert!(
        stderr.contains("no destination named `ct`; the destinations are: pacs, workstation, mammo"),
        "{stderr}"
    );
}

fn to_replaces_the_list_of_destinations() {
    let dir = temp_cache();
    let path = write_config(dir.path(), SITE);
    let config = config_json(&path, &["--to", "ONE@127.0.0.1:11112"]);
    assert_eq!(setting(&config, "to").0, "ONE@127.0.0.1:11112");
    let listed = setting(&config, "destinations").0;
    assert!(listed.as_str().unwrap().contains("not used: --to given"), "{listed}");
    assert!(config.get("destinations[pacs].to").is_none(), "{config}");
    let config = config_json(&path, &[]);
    assert!(config.get("destinations[pacs].to").is_some(), "{config}");
}

/// Three destinations, the third stopped: two answer, the third's error is named, exit 1.
fn echo_checks_every_destination_and_names_the_one_that_failed() {
    let pacs = Storescp::start("PACS");
    let ws = Storescp::start("WS1");
    let mut mammo = Storescp::start("MAMMO");
    mammo.stop();
    let dir = temp_cache();
    let path = write_config(
        dir.path(),
        &format!(
            r#"{{"destinations": [
                 {{"name": "pacs", "to": "{}"}},
                 {{"name": "workstation", "to": "{}", "when": {{"role": "current"}}}},
                 {{"name": "mammo", "to": "{}", "calling_ae": "RTR_MAMMO"}}]}}"#,
            pacs.address(),
            ws.address(),
            mammo.address()
        ),
    );
    let (code, stdout, stderr) = run(retriever().arg("--config").arg(&path).arg("echo"));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per destination: {stdout}");
    assert!(
        lines[0].starts_with(&format!("pacs ({}): ok in ", pacs.address())),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!("workstation ({}): ok in ", ws.address())),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(&format!("mammo ({}): failed: ", mammo.address()))
            && lines[2].contains("connection refused"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 3 destinations did not answer the C-ECHO (mammo)"),
        "{stderr}"
    );
}

/// `--dest` echoes only the destinations named: the one stopped is left alone, exit 0.
fn dest_echoes_only_the_destinations_named() {
    let ws = Storescp::start("WS1");
    let stopped = format!("PACS@127.0.0.1:{}", free_port());
    let dir = temp_cache();
    let path = write_config(
        dir.path(),
        &format!(
            r#"{{"destinations": [{{"name": "pacs", "to": "{stopped}"}}, {{"name": "ws", "to": "{}"}}]}}"#,
            ws.address()
        ),
    );
    let (code, stdout, stderr) = run(retriever().arg("--config").arg(&path).args(["echo", "--dest", "ws"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with(&format!("ws ({}): ok in ", ws.address())),
        "{stdout}"
    );
    // Without it, the stopped one fails the run.
    let (code, stdout, _) = run(retriever().arg("--config").arg(&path).arg("echo"));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains(&format!("pacs ({stopped}): failed: ")), "{stdout}");
}
