//! The installation: the release archive `scripts/package.sh` makes (built around the program
//! this test binary was built with, so that no release build runs here), and the systemd units
//! and account file of `scripts/systemd/`, checked by systemd's own tools in a temporary root
//! so that nothing on this machine changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{repo_root, run_within};

tests! {
    package_holds_what_an_install_needs,
    package_for_windows_holds_the_windows_scripts: ["zip", "unzip"],
    package_refuses_a_program_of_another_version,
    systemd_units_pass_systemd_analyze_verify: ["systemd-analyze"],
    sysusers_file_creates_the_service_account: ["systemd-sysusers"],
    watch_and_prune_units_share_account_cache_and_config,
}

const VERSION: &str = env!("CARGO_PKG_VERSION");
const UNITS: &[&str] = &[
    "retriever-watch.service",
    "retriever-prune.service",
    "retriever-prune.timer",
];

/// Generous: the script copies a few files and compresses a debug build.
const PACKAGE_TIME: Duration = Duration::from_secs(180);

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, Duration::from_secs(60))
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory")
}

/// This machine's target triple, as `scripts/package.sh` finds it.
fn host_triple() -> String {
    let (code, out, err) = run(Command::new("rustc").arg("-vV"));
    assert_eq!(code, 0, "rustc -vV failed:\n{err}");
    out.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// `scripts/package.sh --binary BINARY --out OUT`.
fn package(binary: &Path, out: &Path) -> (i32, String, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/package.sh"))
        .arg("--binary")
        .arg(binary)
        .arg("--out")
        .arg(out);
    run_within(&mut cmd, PACKAGE_TIME)
}

/// The names of the files in `dir` (not recursive).
fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read `{}`: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The packaged program, with no `RETRIEVER_*` variable and no user config file.
fn packaged(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RETRIEVER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("XDG_CONFIG_HOME", "/nonexistent");
    cmd
}

/// The Linux archive for this machine, made around the test's own `retriever`: named for the
/// version and target, with a checksum that `sha256sum -c` accepts, everything in one
/// top-level folder, and in it the program (which runs), the man page, every completion,
/// example config (which the program accepts), systemd file and the README's Install and
/// Everyday use sections.
fn package_holds_what_an_install_needs() {
    let host = host_triple();
    let out = temp_dir("retriever-package-");
    let (code, _, err) = package(Path::new(env!("CARGO_BIN_EXE_retriever")), out.path());
    assert_eq!(code, 0, "scripts/package.sh failed:\n{err}");

    let name = format!("retriever-{VERSION}-{host}");
    let archive = format!("{name}.tar.gz");
    assert_eq!(
        file_names(out.path()),
        BTreeSet::from([archive.clone(), format!("{archive}.sha256")]),
        "the output folder should hold the archive and its checksum only"
    );
    let (code, sums, err) = run(Command::new("sha256sum")
        .args(["-c", &format!("{archive}.sha256")])
        .current_dir(out.path()));
    assert_eq!(code, 0, "sha256sum -c refused the checksum file:\n{sums}{err}");

    let (code, listing, err) = run(Command::new("tar").arg("-tzf").arg(out.path().join(&archive)));
    assert_eq!(code, 0, "tar -t failed:\n{err}");
    let prefix = format!("{name}/");
    let mut files = BTreeSet::new();
    for entry in listing.lines() {
        let inside = entry
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("`{entry}` is outside the archive's folder `{prefix}`"));
        if !inside.is_empty() && !inside.ends_with('/') {
            files.insert(inside.to_owned());
        }
    }
    let mut expected: BTreeSet<String> = ["retriever", "README.md", "man/retriever.1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for (from, to) in [
        ("completions", "completions"),
        ("examples", "examples"),
        ("scripts/systemd", "systemd"),
    ] {
        for file in file_names(&repo_root().join(from)) {
            expected.insert(format!("{to}/{file}"));
        }
    }
    assert_eq!(files, expected, "the archive's files");

    let unpacked = temp_dir("retriever-unpacked-");
    let (code, _, err) = run(Command::new("tar")
        .arg("-xzf")
        .arg(out.path().join(&archive))
        .arg("-C")
        .arg(unpacked.path()));
    assert_eq!(code, 0, "tar -x failed:\n{err}");
    let root = unpacked.path().join(&name);

    let program = root.join("retriever");
    let (code, said, err) = run(packaged(&program).arg("--version"));
    assert_eq!(code, 0, "the packaged program did not run:\n{err}");
    assert_eq!(said.trim(), format!("retriever {VERSION}"));

    for file in ["man/retriever.1", "systemd/retriever-watch.service"] {
        let (from, to) = (
            repo_root().join(file.replace("systemd/", "scripts/systemd/")),
            root.join(file),
        );
        assert!(
            std::fs::read(&from).unwrap() == std::fs::read(&to).unwrap(),
            "`{file}` in the archive differs from `{}`",
            from.display()
        );
    }

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for heading in [
        "## Install",
        "### Linux: `watch` as a systemd service",
        "## Everyday use",
        "### Settings",
    ] {
        assert!(
            readme.lines().any(|line| line == heading),
            "the packaged README lacks `{heading}`:\n{readme}"
        );
    }
    assert!(
        !readme.contains("## How the code is laid out"),
        "the packaged README should hold the Install and Everyday use sections only"
    );

    // The Linux example names /etc/retriever/password, which is not here: the variable beats
    // the file, so the rest of the example is what `config` checks.
    let password = unpacked.path().join("password");
    std::fs::write(&password, "pw\n").unwrap();
    set_private(&password);
    for example in file_names(&root.join("examples")) {
        let (code, _, err) = run(packaged(&program)
            .arg("--config")
            .arg(root.join("examples").join(&example))
            .arg("config")
            .env("RETRIEVER_PASSWORD_FILE", &password));
        assert_eq!(code, 0, "the packaged program refused `examples/{example}`:\n{err}");
    }
}

/// Readable by its owner only, as retriever wants a password file.
fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The Windows archive is a zip with `retriever.exe`, the scripts of `scripts/windows/` and no
/// systemd units. The program is a stand-in: a Windows build is not made here, and the script
/// cannot run one to ask its version.
fn package_for_windows_holds_the_windows_scripts() {
    let out = temp_dir("retriever-package-");
    let exe = out.path().join("stand-in.exe");
    std::fs::write(&exe, b"MZ stand-in").unwrap();
    let target = "x86_64-pc-windows-gnu";
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/package.sh"))
        .args(["--target", target, "--binary"])
        .arg(&exe)
        .arg("--out")
        .arg(out.path());
    let (code, _, err) = run_within(&mut cmd, PACKAGE_TIME);
    assert_eq!(code, 0, "scripts/package.sh --target {target} failed:\n{err}");

    let name = format!("retriever-{VERSION}-{target}");
    let archive = out.path().join(format!("{name}.zip"));
    let (code, listing, err) = run(Command::new("unzip").arg("-Z1").arg(&archive));
    assert_eq!(code, 0, "unzip -Z1 failed:\n{err}");
    let files: BTreeSet<&str> = listing
        .lines()
        .filter(|entry| !entry.ends_with('/'))
        .map(|entry| {
            entry
                .strip_prefix(&format!("{name}/"))
                .unwrap_or_else(|| panic!("`{entry}` is outside the archive's folder `{name}/`"))
        })
        .collect();
    assert!(files.contains("retriever.exe"), "no retriever.exe in:\n{listing}");
    assert!(
        files.contains("examples/retriever.json"),
        "no example config in:\n{listing}"
    );
    for script in file_names(&repo_root().join("scripts/windows")) {
        assert!(
            files.contains(format!("windows/{script}").as_str()),
            "no windows/{script} in:\n{listing}"
        );
    }
    assert!(
        !files
            .iter()
            .any(|file| file.starts_with("systemd/") || *file == "retriever"),
        "Linux files in the Windows archive:\n{listing}"
    );
    assert!(
        out.path().join(format!("{name}.zip.sha256")).is_file(),
        "no checksum file"
    );
}

/// A program that is not of this version (a stale build) is not shipped under its name: the
/// script says so and writes no archive.
fn package_refuses_a_program_of_another_version() {
    let out = temp_dir("retriever-package-");
    let stale = out.path().join("stale-retriever");
    std::fs::write(&stale, "#!/bin/sh\necho 'retriever 0.0.0-stale'\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (code, _, err) = package(&stale, out.path());
    assert_ne!(code, 0, "a program of another version was packaged:\n{err}");
    assert!(
        err.contains("retriever 0.0.0-stale") && err.contains(&format!("not `retriever {VERSION}`")),
        "the error should say which version the program is and which it should be:\n{err}"
    );
    assert_eq!(
        file_names(out.path()),
        BTreeSet::from(["stale-retriever".to_owned()]),
        "nothing should be written"
    );
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
/// 0), `ExecStart=` executable; and `systemd-analyze security` rates the services well
/// hardened. They are checked as installed, in a temporary root that holds
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

    // The hardening, as systemd scores it (0 to 10, lower is safer; the watch unit scores
    // 1.7 with systemd 252): a setting dropped or loosened shows here. --threshold counts
    // tenths.
    let services: Vec<&str> = UNITS
        .iter()
        .copied()
        .filter(|unit| unit.ends_with(".service"))
        .collect();
    let (code, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(format!("--root={}", root.path().display()))
        .args(&services));
    assert_eq!(
        code, 0,
        "systemd-analyze security rates {services:?} more exposed than 2.0:\n{out}{err}"
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
