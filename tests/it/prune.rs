//! `retriever prune`: what it removes and what it keeps, run in a loop while `fetch` and
//! `store` work on the same cache, and killed in the middle of a run. Ages are simulated with
//! `--older-than 0s` (everything that may go, goes) and a config file's `max_age`; the cache
//! is filled by `retriever fetch` from the shared Orthanc and delivered to DCMTK `storescp`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    Orthanc, Storescp, fetch_ok, retriever, retriever_at, run_within, temp_cache, testdata, uid_of, wrapped,
};

tests! {
    prune_removes_delivered_expired_studies_and_says_what_it_keeps: ["orthanc", "storescp"],
    prune_in_a_loop_never_touches_a_study_in_use_or_undelivered: ["orthanc", "storescp"],
    a_prune_killed_mid_run_leaves_a_consistent_cache: ["orthanc", "strace"],
}

const LIMIT: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

/// `retriever --cache CACHE prune ARGS...`
fn prune(cache: &Path, args: &[&str]) -> (i32, String, String) {
    run(retriever().arg("--cache").arg(cache).arg("prune").args(args))
}

/// The Study Instance UIDs on prune's stdout (the first field of each line, or `study_uid`).
fn removed(out: &str) -> BTreeSet<String> {
    out.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(v) => v["study_uid"].as_str().unwrap().to_owned(),
            Err(_) => line.split('\t').next().unwrap().to_owned(),
        })
        .collect()
}

/// The SOP Instance UIDs of the instance files of a cached study.
fn cached_sops(cache: &Path, study: &str) -> BTreeSet<String> {
    walkdir::WalkDir::new(cache.join("studies").join(study).join("series"))
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".dcm").map(str::to_owned))
        .collect()
}

/// The studies with a manifest in the cache.
fn cached_studies(cache: &Path) -> BTreeSet<String> {
    std::fs::read_dir(cache.join("studies"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().join("manifest.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The names in a directory of the cache (none if it does not exist).
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `ls --json` must work and show every study whole: complete, with all its instances.
fn assert_no_half_study(cache: &Path) -> BTreeSet<String> {
    let (code, out, err) = run(retriever().arg("--cache").arg(cache).args(["ls", "--json"]));
    assert_eq!(code, 0, "ls failed:\n{err}");
    let mut listed = BTreeSet::new();
    for line in out.lines() {
        let study: Value = serde_json::from_str(line).unwrap();
        let uid = study["study_uid"].as_str().unwrap().to_owned();
        assert_eq!(study["state"], "complete", "{study}");
        assert_eq!(study["instances"], study["expected_instances"], "{study}");
        assert_eq!(
            cached_sops(cache, &uid),
            testdata().study_by_uid(&uid).unwrap().sop_uids(),
            "{uid}"
        );
        listed.insert(uid);
    }
    listed
}

/// Nothing left behind: no trash, no partial download, no temporary, no lock file but the
/// prune lock and those of the studies still there.
fn assert_clean(cache: &Path) {
    assert_eq!(names_in(&cache.join("trash")), BTreeSet::new(), "trash");
    for entry in walkdir::WalkDir::new(cache).into_iter().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy();
        assert!(
            !name.ends_with(".part") && !name.ends_with(".tmp"),
            "left behind: {}",
            entry.path().display()
        );
    }
    let mut want: BTreeSet<String> = cached_studies(cache).iter().map(|s| format!("{s}.lock")).collect();
    want.insert("prune.lock".into());
    let locks = names_in(&cache.join("locks"));
    assert!(locks.is_subset(&want), "stray lock files: {locks:?}, studies: {want:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).into_iter().filter_map(Result::ok) {
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What prune removes, keeps and says: young studies stay; an expired delivered study goes,
/// in a dry run only in words; an undelivered one is kept and said, unless
/// `--include-undelivered`, or past the config file's `max_age`, loudly.
fn prune_removes_delivered_expired_studies_and_says_what_it_keeps() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let dest = scp.address();
    for accession in ["ACC2001", "ACC2002", "ACC3001"] {
        fetch_ok(orthanc, cache.path(), &[accession]);
    }
    let (code, _, err) =
        run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args(["store", uid_of("ACC2001"), "--to", &dest]));
    assert_eq!(code, 0, "store failed:\n{err}");
    let all: BTreeSet<String> = ["ACC2001", "ACC2002", "ACC3001"]
        .iter()
        .map(|a| uid_of(a).to_owned())
        .collect();

    // Young: nothing goes.
    let (code, out, err) = prune(cache.path(), &["--to", &dest]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("removed 0 studies, freed 0 B"), "{err}");

    // A dry run says it all and removes nothing.
    let (code, out, err) = prune(cache.path(), &["--older-than", "0s", "--to", &dest, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let fields: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 5, "{out}");
    assert_eq!(&fields[..2], [uid_of("ACC2001"), "ACC2001"]);
    assert!(fields[3].ends_with('B'), "size: {out}");
    assert_eq!(fields[4], format!("delivered to {dest}"));
    for undelivered in ["ACC2002", "ACC3001"] {
        assert!(
            err.contains(&format!("kept {} ({undelivered}, ", uid_of(undelivered)))
                && err.contains(&format!("not delivered to {dest}; --include-undelivered removes it")),
            "{err}"
        );
    }
    assert!(err.contains("dry run: would remove 1 study, freeing"), "{err}");
    assert_eq!(cached_studies(cache.path()), all);

    // For real, in JSON.
    let (code, out, err) = prune(cache.path(), &["--older-than", "0s", "--to", &dest, "--json"]);
    assert_eq!(code, 0, "{err}");
    let line: Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(line["study_uid"], uid_of("ACC2001"));
    assert_eq!(line["accession"], "ACC2001");
    assert_eq!(line["reason"], "expired");
    assert_eq!(line["delivered_to"], dest.as_str());
    assert!(line["bytes"].as_u64().unwrap() > 0);
    assert!(err.contains("removed 1 study, freed"), "{err}");
    assert!(!cache.path().join("studies").join(uid_of("ACC2001")).exists());

    // With no destination configured, the journal of any destination counts: ACC2002
    // delivered elsewhere goes, ACC3001 delivered nowhere stays.
    let (code, _, err) =
        run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args(["store", uid_of("ACC2002"), "--to", &dest]));
    assert_eq!(code, 0, "store failed:\n{err}");
    let (code, out, err) = prune(cache.path(), &["--older-than", "0s"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(removed(&out), BTreeSet::from([uid_of("ACC2002").to_owned()]), "{err}");
    assert!(err.contains("not delivered to any destination"), "{err}");

    // Past the maximum age even an undelivered study goes, with a warning (also when quiet).
    let config = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(config.path(), r#"{"retention": "1h", "max_age": "0s"}"#).unwrap();
    let (code, out, err) = run(retriever()
        .arg("--cache")
        .arg(cache.path())
        .arg("--config")
        .arg(config.path())
        .args(["prune", "--quiet"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(removed(&out), BTreeSet::from([uid_of("ACC3001").to_owned()]));
    assert!(out.trim_end().ends_with("not delivered, older than 0s"), "{out}");
    assert!(
        err.contains(&format!(
            "warning: removed study {} (ACC3001) although it was never delivered to any destination: \
             it is older than the maximum age of 0s",
            uid_of("ACC3001")
        )),
        "{err}"
    );
    assert_eq!(cached_studies(cache.path()), BTreeSet::new());
    assert_clean(cache.path());
}

/// `prune --older-than 0s` runs again and again while `fetch` and `store` work on the same
/// cache: whatever it removes was delivered, it never removes a study being fetched or
/// delivered (they would fail) nor one never delivered, and in the end every delivered study
/// is gone. Then with `--include-undelivered`, only the locks protect a study being fetched.
fn prune_in_a_loop_never_touches_a_study_in_use_or_undelivered() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    let scp = Storescp::start("STORESCP");
    let dest = scp.address();
    let data = testdata();
    let delivered = ["ACCBIG", "ACC2001", "ACC1006", "ACC2002"];
    let kept = ["ACC1003", "ACC1001", "ACC1002"];
    let fetched_kept = Mutex::new(Vec::<&str>::new());
    let mut removed_all = BTreeSet::new();
    let mut runs = 0;

    std::thread::scope(|s| {
        let deliverer = s.spawn(|| {
            for accession in delivered {
                fetch_ok(orthanc, cache.path(), &[accession]);
                let (code, _, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args([
                    "store",
                    uid_of(accession),
                    "--to",
                    &dest,
                ]));
                assert_eq!(code, 0, "store {accession} failed while prune ran:\n{err}");
            }
        });
        let keeper = s.spawn(|| {
            for accession in kept {
                fetch_ok(orthanc, cache.path(), &[accession]);
                fetched_kept.lock().unwrap().push(accession);
            }
        });
        while !(deliverer.is_finished() && keeper.is_finished()) {
            let (code, out, err) = prune(cache.path(), &["--older-than", "0s", "--to", &dest, "--json"]);
            assert_eq!(code, 0, "prune failed:\n{err}");
            runs += 1;
            for study in removed(&out) {
                assert!(
                    delivered.iter().any(|a| uid_of(a) == study),
                    "prune removed {study}, which was never delivered:\n{out}"
                );
                removed_all.insert(study);
            }
            for accession in fetched_kept.lock().unwrap().iter() {
                assert_eq!(
                    cached_sops(cache.path(), uid_of(accession)),
                    data.study(accession).sop_uids(),
                    "{accession}, never delivered, was touched"
                );
            }
        }
        for worker in [deliverer, keeper] {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    let (code, out, err) = prune(cache.path(), &["--older-than", "0s", "--to", &dest]);
    assert_eq!(code, 0, "{err}");
    removed_all.extend(removed(&out));
    eprintln!("{runs} prune runs while fetch and store worked");
    assert!(runs >= 3, "prune ran {runs} times only");

    let want: BTreeSet<String> = delivered.iter().map(|a| uid_of(a).to_owned()).collect();
    assert_eq!(removed_all, want, "every delivered study is removed, once");
    let all: BTreeSet<String> = delivered.iter().flat_map(|a| data.study(a).sop_uids()).collect();
    assert_eq!(scp.received_sop_uids(), all, "every delivered study arrived whole");
    let kept_uids: BTreeSet<String> = kept.iter().map(|a| uid_of(a).to_owned()).collect();
    assert_eq!(assert_no_half_study(cache.path()), kept_uids);
    assert_clean(cache.path());

    // --include-undelivered: the study being fetched is protected by its lock alone.
    let (code, out, _) = prune(cache.path(), &["--older-than", "0s", "--include-undelivered"]);
    assert_eq!((code, removed(&out)), (0, kept_uids));
    let started = Instant::now();
    let mut skipped_in_use = false;
    std::thread::scope(|s| {
        let fetcher = s.spawn(|| fetch_ok(orthanc, cache.path(), &["ACCBIG"]));
        while !fetcher.is_finished() {
            let (code, out, err) = prune(cache.path(), &["--older-than", "0s", "--include-undelivered"]);
            assert_eq!(code, 0, "prune failed:\n{err}");
            skipped_in_use |= err.contains("in use by another retriever process");
            if removed(&out).contains(uid_of("ACCBIG")) {
                // Only once the fetch is done with it.
                assert!(!cached_studies(cache.path()).contains(uid_of("ACCBIG")));
            }
        }
        if let Err(panic) = fetcher.join() {
            std::panic::resume_unwind(panic);
        }
    });
    assert!(
        skipped_in_use,
        "no prune saw the study being fetched (the fetch took {:?})",
        started.elapsed()
    );
    assert_clean(cache.path());
}

/// A cache as a prune that died right after moving a study out of sight leaves it (the state
/// itself is checked by the unit test `a_prune_dead_after_moving_a_study_out_leaves_only_leftovers`),
/// and prunes killed with SIGKILL at various moments: the cache stays consistent (`ls` works,
/// no half study is visible), a rerun cleans up what they left, and the study can be fetched
/// again.
fn a_prune_killed_mid_run_leaves_a_consistent_cache() {
    let orthanc = Orthanc::shared();
    let template = temp_cache();
    for accession in ["ACCBIG", "ACC1001", "ACC1002", "ACC2001", "ACC2002"] {
        fetch_ok(orthanc, template.path(), &[accession]);
    }
    let everything = assert_no_half_study(template.path());
    assert_eq!(everything.len(), 5);

    // Died right after the first study went into the trash: its directory there under the
    // name prune gives it (`UID.PID.N.removed`), its lock file still in `locks/`.
    let cache = temp_cache();
    copy_dir(template.path(), cache.path());
    let first = everything.iter().next().unwrap().clone();
    std::fs::create_dir_all(cache.path().join("trash")).unwrap();
    std::fs::rename(
        cache.path().join("studies").join(&first),
        cache.path().join("trash").join(format!("{first}.4242.0.removed")),
    )
    .unwrap();
    assert!(cache.path().join("locks").join(format!("{first}.lock")).is_file());
    let left = assert_no_half_study(cache.path());
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(!left.contains(&first));
    assert_eq!(names_in(&cache.path().join("trash")).len(), 1);
    // A rerun with a long retention removes no study, only the leftovers.
    let (code, out, err) = prune(cache.path(), &["--older-than", "1h"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("remains of a removed study"), "{err}");
    assert!(err.contains("lock file of a removed study"), "{err}");
    assert_eq!(assert_no_half_study(cache.path()), left);
    assert_clean(cache.path());
    let accession = &testdata().study_by_uid(&first).unwrap().accession;
    fetch_ok(orthanc, cache.path(), &[accession]);
    assert_eq!(assert_no_half_study(cache.path()), everything);

    // Killed at various moments of a run that removes everything.
    let mut interrupted = 0;
    for delay_ms in [0, 2, 4, 7, 10, 15, 20, 30] {
        let cache = temp_cache();
        copy_dir(template.path(), cache.path());
        let mut child = retriever()
            .arg("--cache")
            .arg(cache.path())
            .args(["prune", "--older-than", "0s", "--include-undelivered"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let left = assert_no_half_study(cache.path());
        if !status.success() && !left.is_empty() && left.len() < everything.len() {
            interrupted += 1;
        }
        let (code, _, err) = prune(cache.path(), &["--older-than", "0s", "--include-undelivered"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(cached_studies(cache.path()), BTreeSet::new());
        assert_clean(cache.path());
        if delay_ms == 30 {
            fetch_ok(orthanc, cache.path(), &["ACCBIG"]);
            assert_eq!(
                assert_no_half_study(cache.path()),
                BTreeSet::from([uid_of("ACCBIG").to_owned()])
            );
        }
    }
    eprintln!("{interrupted} of the killed prunes were caught between two studies");

    // And one kill that lands between two studies for sure: every rename is held up under
    // strace, and the prune is killed as soon as its first study has left `studies/`.
    let cache = temp_cache();
    copy_dir(template.path(), cache.path());
    let mut prune_cmd = retriever();
    prune_cmd
        .arg("--cache")
        .arg(cache.path())
        .args(["prune", "--older-than", "0s", "--include-undelivered"]);
    let slow_renames = "inject=/^rename:delay_exit=200000";
    let mut tracer = wrapped(
        "strace",
        &["-f", "-qq", "-o", "/dev/null", "-e", slow_renames],
        &prune_cmd,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + LIMIT;
    while cached_studies(cache.path()).len() == everything.len() {
        assert!(
            tracer.try_wait().unwrap().is_none(),
            "the prune ended before it was killed"
        );
        assert!(Instant::now() < deadline, "the prune removed no study");
        std::thread::sleep(Duration::from_millis(5));
    }
    let prune_pid = traced_child(tracer.id());
    let killed = Command::new("kill")
        .args(["-KILL", &prune_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -KILL {prune_pid} failed");
    tracer.wait().unwrap();
    let left = assert_no_half_study(cache.path());
    assert!(
        !left.is_empty() && left.len() < everything.len(),
        "the kill did not land between two studies: {} of {} left",
        left.len(),
        everything.len()
    );
    let (code, _, err) = prune(cache.path(), &["--older-than", "0s", "--include-undelivered"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cached_studies(cache.path()), BTreeSet::new());
    assert_clean(cache.path());
}

/// The process `strace` runs (its first child).
fn traced_child(tracer: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children")).unwrap();
    children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("strace ({tracer}) runs no process"))
}
