//! A destination that misbehaves at the protocol level: absurd PDU sizes, command sets that never
//! end, answers that trickle. The router must abort that association and go on, never panic.
//!
//! The destination is the raw-socket peer of `common/hostile_scp.rs`; the cache is filled from
//! the shared Orthanc. Every run of `retriever` is watched: it must end within a bound, with
//! exit status 1 (never 101, a panic), and its peak memory (VmHWM) must stay small.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::hostile_scp::{HostileScp, Misbehaviour};
use crate::common::{Orthanc, fetch_ok, retriever_at, temp_cache, uid_of};

tests! {
    tiny_max_pdu_lengths_are_refused_not_a_crash: ["orthanc"],
    an_endless_command_set_is_aborted: ["orthanc"],
    a_trickled_answer_meets_the_deadline: ["orthanc"],
    a_stalled_destination_is_given_up_after_the_second_stall: ["orthanc"],
    a_trickled_association_answer_meets_the_deadline: ["orthanc"],
}

/// Longer than any run should take; the old behaviour (retrying with the whole timeout, or
/// waiting on a trickle) takes far longer.
const LIMIT: Duration = Duration::from_secs(60);
/// Peak memory allowed to a run, in KiB. An endless command set used to take gigabytes.
const MEMORY_KIB: u64 = 256 * 1024;

/// What a watched run did.
struct Run {
    code: i32,
    stderr: String,
    peak_kib: u64,
}

/// Runs `cmd`, reading its peak memory from /proc while it runs; kills it (and fails the test)
/// past [`LIMIT`] or [`MEMORY_KIB`].
fn run_watched(cmd: &mut Command) -> Run {
    let dir = tempfile::tempdir().expect("a directory for the output");
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("create the stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}"));
    let started = Instant::now();
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for retriever") {
            break status;
        }
        peak_kib = peak_kib.max(vm_hwm_kib(child.id()).unwrap_or(0));
        if peak_kib > MEMORY_KIB || started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!(
                "retriever ran {:?} and reached {peak_kib} KiB; killed:\n{stderr}",
                started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        peak_kib,
    }
}

/// The process's peak resident memory so far.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `retriever store STUDY --to DEST ARGS...`
fn store(orthanc: &Orthanc, cache: &Path, dest: &str, args: &[&str]) -> Run {
    run_watched(
        retriever_at(&orthanc.dicomweb_url(), cache)
            .args(["store", uid_of("ACC1002"), "--to", dest])
            .args(args),
    )
}

/// `retriever watch --once` for ACC1002 alone, to DEST.
fn watch_once(orthanc: &Orthanc, cache: &Path, dest: &str, args: &[&str]) -> Run {
    run_watched(
        retriever_at(&orthanc.dicomweb_url(), cache)
            .args([
                "watch",
                "--once",
                "--priors",
                "0",
                "--filter",
                "AccessionNumber=ACC1002",
            ])
            .args(["--to", dest])
            .args(args),
    )
}

fn assert_failed_cleanly(run: &Run, what: &str, needle: &str) {
    assert_eq!(
        run.code, 1,
        "{what}: exit {} (101 is a panic):\n{}",
        run.code, run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{what}:\n{}", run.stderr);
    assert!(run.stderr.contains(needle), "{what}: no `{needle}` in:\n{}", run.stderr);
    assert!(run.peak_kib < MEMORY_KIB, "{what}: {} KiB", run.peak_kib);
}

/// A maximum PDU length too small to carry a PDV (1, 5, 6) or merely absurd (100) ends the
/// association with an error naming the value, in `echo`, `store` and `watch`; 0 means "no
/// limit" and works.
fn tiny_max_pdu_lengths_are_refused_not_a_crash() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002"]);

    for n in [1, 5, 6, 100] {
        let scp = HostileScp::start(Misbehaviour::MaxPdu(n));
        let needle = format!("announced a maximum PDU length of {n} byte");
        let run = store(orthanc, cache.path(), &scp.address(), &[]);
        assert_failed_cleanly(&run, &format!("store, max PDU {n}"), &needle);
        assert!(
            run.stderr.contains("maximum PDU length to 16384 or more"),
            "{}",
            run.stderr
        );
        assert_eq!(scp.requests(), 0, "nothing is sent to a destination announcing {n}");

        let run = run_watched(crate::common::retriever().args(["echo", "--to", &scp.address()]));
        assert_failed_cleanly(&run, &format!("echo, max PDU {n}"), &needle);
    }

    let scp = HostileScp::start(Misbehaviour::MaxPdu(5));
    let run = watch_once(orthanc, cache.path(), &scp.address(), &[]);
    assert_failed_cleanly(
        &run,
        "watch --once, max PDU 5",
        "announced a maximum PDU length of 5 bytes",
    );

    let scp = HostileScp::start(Misbehaviour::MaxPdu(0));
    let run = store(orthanc, cache.path(), &scp.address(), &[]);
    assert_eq!(run.code, 0, "max PDU 0 (no limit):\n{}", run.stderr);
    assert_eq!(scp.requests(), 3);
}

/// Command fragments that never end are cut off at the command set cap: the association is
/// aborted, the instances are not delivered, memory stays small.
fn an_endless_command_set_is_aborted() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002"]);
    let scp = HostileScp::start(Misbehaviour::EndlessCommand);

    let run = store(orthanc, cache.path(), &scp.address(), &["--store-retries", "1"]);
    assert_failed_cleanly(&run, "store", "endless command set");
    assert!(run.stderr.contains("not delivered"), "{}", run.stderr);

    let run = watch_once(orthanc, cache.path(), &scp.address(), &["--store-retries", "1"]);
    assert_failed_cleanly(&run, "watch --once", "endless command set");
}

/// An answer trickled a byte at a time never holds the association past the DIMSE timeout,
/// however short each pause: the whole answer has a deadline.
fn a_trickled_answer_meets_the_deadline() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002"]);
    let scp = HostileScp::start(Misbehaviour::Trickle(Duration::from_millis(200)));

    let run = store(orthanc, cache.path(), &scp.address(), &["--dimse-timeout", "2s"]);
    let needle = "a trickle, not a whole answer to C-STORE within 2s";
    assert_failed_cleanly(&run, "store", needle);

    let run = watch_once(orthanc, cache.path(), &scp.address(), &["--dimse-timeout", "2s"]);
    assert_failed_cleanly(&run, "watch --once", needle);
}

/// A destination that takes the association and never answers C-STORE is given up after the
/// second stall in a row, whatever the number of retries, with the stall named.
fn a_stalled_destination_is_given_up_after_the_second_stall() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002"]);
    let scp = HostileScp::start(Misbehaviour::Stall);
    let args = ["--dimse-timeout", "1s", "--store-retries", "5"];

    let run = store(orthanc, cache.path(), &scp.address(), &args);
    let needle = "stopped answering (no answer to C-STORE within 1s, 2 times in a row)";
    assert_failed_cleanly(&run, "store", needle);
    assert!(run.stderr.contains("run `retriever store` again"), "{}", run.stderr);
    // Two associations: at most one more request after the first stall of each.
    assert!(scp.requests() <= 4, "{} C-STORE requests", scp.requests());

    let run = watch_once(orthanc, cache.path(), &scp.address(), &args);
    assert_failed_cleanly(&run, "watch --once", needle);
}

/// An association answer trickled a byte at a time meets the ACSE timeout as a whole, in `echo`
/// and `store`.
fn a_trickled_association_answer_meets_the_deadline() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC1002"]);
    let scp = HostileScp::start(Misbehaviour::TrickleAssociation(Duration::from_millis(200)));
    let needle = "answered too slowly while negotiating the association";

    let run = run_watched(crate::common::retriever().args(["echo", "--to", &scp.address(), "--acse-timeout", "2s"]));
    assert_failed_cleanly(&run, "echo", needle);

    let run = store(orthanc, cache.path(), &scp.address(), &["--acse-timeout", "2s"]);
    assert_failed_cleanly(&run, "store", needle);
    assert_eq!(scp.requests(), 0);
}
