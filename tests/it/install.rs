//! The installation: the systemd units and account file of `scripts/systemd/`, checked by
//! systemd's own tools in a temporary root so that nothing on this machine changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::{repo_root, run_within};

tests! {
    systemd_units_pass_systemd_analyze_verify: ["systemd-analyze"],
    sysusers_file_creates_the_service_account: ["systemd-sysusers"],
    watch_and_prune_units_share_account_cache_and_config,
}

const UNITS: &[&str] = &[
    "retriever-watch.service",
    "retriever-prune.service",
    "retriever-prune.timer",
];

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, Duration::from_secs(60))
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory")
}

/// Where this machine keeps systemd's own units (sysinit.target and the like, which the
/// verification loads as dependencies).
fn system_unit_dir() -> PathBuf {
    ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("sysinit.target").exists())
        .unwrap_or_else(|| crate::common::harness::ignore("systemd's units (sysinit.target) are not installed"))
}

/// `systemd-analyze verify` finds nothing to say about the units: every key known and every
/// value valid (it only warns about those, so its output must be empty, not just its status
/// 0), `ExecStart=` executable. They are checked as installed, in a temporary root that holds
/// systemd's units, the units under `/etc/systemd/system` and the built program as
/// `/usr/local/bin/retriever`.
fn systemd_units_pass_systemd_analyze_verify() {
    let root = temp_dir("retriever-systemd-root-");
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::create_dir_all(root.path().join("usr/local/bin")).unwrap();
    let lib = root.path().join("usr/lib/systemd");
    std::fs::create_dir_all(&lib).unwrap();
    // A copy, not a link: systemd resolves the links among its units inside the root.
    let (code, _, err) = run(Command::new("cp")
        .arg("-a")
        .arg(system_unit_dir())
        .arg(lib.join("system")));
    assert_eq!(code, 0, "copying systemd's units failed:\n{err}");
    std::fs::copy(
        env!("CARGO_BIN_EXE_retriever"),
        root.path().join("usr/local/bin/retriever"),
    )
    .unwrap();
    for unit in UNITS {
        std::fs::copy(repo_root().join("scripts/systemd").join(unit), units.join(unit)).unwrap();
    }

    let (code, out, err) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .arg(format!("--root={}", root.path().display()))
        .args(UNITS));
    assert!(
        code == 0 && out.trim().is_empty() && err.trim().is_empty(),
        "systemd-analyze verify {UNITS:?} (status {code}):\n{out}{err}"
    );
}

/// `systemd-sysusers` with the shipped file creates the account the units run as: a system
/// user and group `retriever` that cannot log in.
fn sysusers_file_creates_the_service_account() {
    let root = temp_dir("retriever-sysusers-root-");
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let (code, _, err) = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo_root().join("scripts/systemd/retriever.sysusers")));
    assert_eq!(code, 0, "systemd-sysusers failed:\n{err}");

    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|line| line.starts_with("retriever:"))
        .unwrap_or_else(|| panic!("no user `retriever` in /etc/passwd:\n{passwd}"))
        .split(':')
        .collect();
    let uid: u32 = user[2].parse().unwrap();
    assert!(
        uid > 0 && uid < 1000,
        "`retriever` should be a system user, has uid {uid}"
    );
    assert_eq!(user[6], "/usr/sbin/nologin", "`retriever` should not be able to log in");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|line| line.starts_with(&format!("retriever:x:{}:", user[3]))),
        "no group `retriever` with the user's gid {}:\n{group}",
        user[3]
    );
}

/// A unit file's `[Service]` and `[Unit]` settings: each key with its values in order.
fn unit_settings(unit: &str) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(repo_root().join("scripts/systemd").join(unit)).unwrap();
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            settings.entry(key.to_owned()).or_default().push(value.to_owned());
        }
    }
    settings
}

/// The router's unit runs `watch` as the account, on the cache and the config file that the
/// prune unit uses (a prune on another cache would never empty the router's), restarts it on
/// failure, stops it with SIGTERM (which `watch` answers by exiting 130: see
/// `bounded_time`), and keeps what it writes private.
fn watch_and_prune_units_share_account_cache_and_config() {
    let watch = unit_settings("retriever-watch.service");
    let prune = unit_settings("retriever-prune.service");
    let one = |settings: &BTreeMap<String, Vec<String>>, key: &str| -> Vec<String> {
        settings.get(key).cloned().unwrap_or_default()
    };
    for key in [
        "User",
        "Group",
        "CacheDirectory",
        "CacheDirectoryMode",
        "UMask",
        "Environment",
    ] {
        assert_eq!(
            one(&watch, key),
            one(&prune, key),
            "`{key}=` differs between watch and prune"
        );
    }
    let expect = |key: &str, value: &str| {
        assert_eq!(
            one(&watch, key),
            vec![value.to_owned()],
            "retriever-watch.service `{key}=`"
        );
    };
    expect("User", "retriever");
    expect("CacheDirectory", "retriever");
    expect("CacheDirectoryMode", "0700");
    expect("UMask", "0077");
    expect("ExecStart", "/usr/local/bin/retriever watch");
    expect("Restart", "on-failure");
    expect("KillSignal", "SIGTERM");
    expect("SuccessExitStatus", "130");
    expect("ProtectSystem", "strict");
    expect("NoNewPrivileges", "yes");
    assert!(!watch.contains_key("DynamicUser"), "the cache must outlive the service");
    assert_eq!(
        one(&watch, "Environment"),
        vec![
            "RETRIEVER_CACHE=/var/cache/retriever".to_owned(),
            "RETRIEVER_CONFIG=/etc/retriever/config.json".to_owned()
        ]
    );
    assert!(
        one(&prune, "ExecStart")
            .iter()
            .all(|exec| exec.starts_with("/usr/local/bin/retriever ")),
        "prune runs the same program"
    );
}
