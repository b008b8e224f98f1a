//! What the router writes for a service and what fits a console: `watch` without a terminal
//! logs one line per event with a time stamp and a level and no ANSI, appends to `--log-file`
//! and rotates it by size, says a down destination's failure once per study with no doubled
//! label and a short last line; `ls` fits 100 columns unless `--wide`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{Orthanc, Storescp, fetch_ok, free_port, retriever_at, run_within, temp_cache, uid_of};

tests! {
    the_log_has_a_time_stamp_and_a_level_on_every_line: ["orthanc", "storescp"],
    the_log_file_is_appended_to_and_rotated: ["orthanc", "storescp"],
    a_down_destination_is_said_once_per_study: ["orthanc"],
    ls_fits_100_columns_and_wide_shows_it_all: ["orthanc", "storescp"],
}

const LIMIT: Duration = Duration::from_secs(120);

/// `retriever ... watch --once --priors 0 --filter AccessionNumber=ACC --to DEST ARGS...`
fn watch_once(orthanc: &Orthanc, cache: &Path, dest: &str, accession: &str, args: &[&str]) -> Command {
    let mut cmd = retriever_at(&orthanc.dicomweb_url(), cache);
    cmd.args(["watch", "--once", "--priors", "0", "--to", dest])
        .args(["--filter", &format!("AccessionNumber={accession}")])
        .args(args);
    cmd
}

/// True for `2026-12-03T14:39:46Z INFO message` (or WARN, ERROR).
fn is_log_line(line: &str) -> bool {
    let Some((stamp, rest)) = line.split_once(' ') else {
        return false;
    };
    let stamp_ok = stamp.len() == 20
        && stamp.ends_with('Z')
        && stamp.as_bytes()[10] == b'T'
        && stamp
            .chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19) || c.is_ascii_digit());
    let level_ok = ["INFO ", "WARN ", "ERROR "].iter().any(|l| rest.starts_with(l));
    stamp_ok && level_ok
}

fn assert_log(text: &str) {
    assert!(!text.contains('\u{1b}'), "no ANSI escape in a log: {text:?}");
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(is_log_line(line), "not a log line: {line:?}\nin:\n{text}");
    }
}

/// Stderr is a pipe: every line is a log line, none has an escape sequence.
fn the_log_has_a_time_stamp_and_a_level_on_every_line() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let (code, _, err) = run_within(
        &mut watch_once(orthanc, cache.path(), &scp.address(), "ACC1002", &[]),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    assert_log(&err);
    assert!(
        err.contains(" INFO searching the cloud for AccessionNumber=ACC1002 once"),
        "{err}"
    );
}

/// `--log-file` appends there (stderr stays quiet); a file past the rotation size is renamed
/// to FILE.1 before the next line, which starts a new FILE.
fn the_log_file_is_appended_to_and_rotated() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("watch.log");
    let file_arg = log.to_str().unwrap().to_string();

    let (code, _, err) = run_within(
        &mut watch_once(
            orthanc,
            cache.path(),
            &scp.address(),
            "ACC1002",
            &["--log-file", &file_arg],
        ),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "", "without a terminal the file is the log");
    let first = std::fs::read_to_string(&log).unwrap();
    assert_log(&first);

    // Appended to, not replaced.
    let (code, _, err) = run_within(
        &mut watch_once(
            orthanc,
            cache.path(),
            &scp.address(),
            "ACC1002",
            &["--log-file", &file_arg],
        ),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    let second = std::fs::read_to_string(&log).unwrap();
    assert!(second.starts_with(&first) && second.len() > first.len(), "{second}");

    // 10 bytes under 10 MiB: the next run's first line would pass it.
    let mut filler = vec![b'x'; (10 << 20) - 11];
    filler.push(b'\n');
    std::fs::write(&log, filler).unwrap();
    let (code, _, err) = run_within(
        &mut watch_once(
            orthanc,
            cache.path(),
            &scp.address(),
            "ACC1002",
            &["--log-file", &file_arg],
        ),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    let rotated = dir.path().join("watch.log.1");
    let old = std::fs::read_to_string(&rotated).expect("the full file was renamed to watch.log.1");
    assert!(old.starts_with("xxxx") && old.len() <= 10 << 20, "{}", old.len());
    assert_log(&std::fs::read_to_string(&log).unwrap());
}

/// The destination is down: each study's failure is said once, the study's label is never
/// doubled (`ACC2001: ACC2001: ...`), the association retries are not repeated, and the last
/// line is short.
fn a_down_destination_is_said_once_per_study() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let dest = format!("DOWN@127.0.0.1:{}", free_port());
    let mut cmd = retriever_at(&orthanc.dicomweb_url(), cache.path());
    cmd.args(["watch", "--once", "--to", &dest, "--filter", "PatientID=PAT002"]);
    let (code, _, err) = run_within(&mut cmd, LIMIT);
    assert_eq!(code, 1, "{err}");
    let (log, last) = err.trim_end().rsplit_once('\n').expect("log lines, then the error");
    for accession in ["ACC2001", "ACC2002"] {
        assert!(
            !err.contains(&format!("{accession}: {accession}")),
            "doubled label:\n{err}"
        );
        let said = log
            .lines()
            .filter(|l| l.contains(&format!(" {accession}: ")) && l.contains("not delivered"))
            .filter(|l| l.contains(" WARN "))
            .count();
        assert_eq!(said, 1, "{accession} said once as a study:\n{err}");
        let grouped = log
            .lines()
            .filter(|l| l.contains(&format!(" ERROR {accession}: not delivered: ")))
            .count();
        assert_eq!(grouped, 1, "{accession} said once as a current study:\n{err}");
    }
    assert_log(log);
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("connection refused")).collect();
    // Once as the destination's state, once per current study as its cause.
    assert_eq!(refused.len(), 3, "{err}");
    assert_eq!(
        refused.iter().filter(|l| l.contains("the destination is down")).count(),
        1,
        "{err}"
    );
    assert!(last.starts_with("retriever: 2 studies were not delivered: "), "{last}");
    assert!(last.contains("connection refused"), "{last}");
    assert!(
        last.chars().count() < 250,
        "{} characters: {last}",
        last.chars().count()
    );
}

/// A cache whose studies went to two destinations with long names: the table still fits 100
/// columns, with the UIDs shortened; `--wide` shows them in full.
fn ls_fits_100_columns_and_wide_shows_it_all() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1001", "ACC1002", "ACC2001"]);
    for aet in ["RADIOLOGYARCHIVE", "TEACHINGFILES001"] {
        let scp = Storescp::start(aet);
        let (code, _, err) = run_within(
            retriever_at(&orthanc.dicomweb_url(), cache.path()).args(["store", "--to", &scp.address()]),
            LIMIT,
        );
        assert_eq!(code, 0, "{err}");
    }
    let ls = |args: &[&str]| {
        let (code, out, err) = run_within(
            retriever_at(&orthanc.dicomweb_url(), cache.path()).arg("ls").args(args),
            LIMIT,
        );
        assert_eq!(code, 0, "{err}");
        out
    };
    let table = ls(&[]);
    assert_eq!(table.lines().count(), 4, "{table}");
    for line in table.lines() {
        assert!(line.chars().count() <= 100, "{} columns: {line}", line.chars().count());
    }
    assert!(table.contains("RADIOLOGYARCHIVE@"), "{table}");
    let wide = ls(&["--wide"]);
    for accession in ["ACC1001", "ACC1002", "ACC2001"] {
        let uid = uid_of(accession);
        assert!(
            wide.lines().any(|l| l.starts_with(&format!("{uid} "))),
            "{uid} in full:\n{wide}"
        );
    }
    assert!(wide.lines().any(|l| l.chars().count() > 100), "{wide}");
    assert!(
        table
            .lines()
            .skip(1)
            .any(|l| l.split(' ').next().unwrap().contains('…')),
        "a UID shortened:\n{table}"
    );
}
