//! Giving up in bounded time, and stopping when asked: stalled peers end a transfer within a few
//! minutes with a message that names what stalled, and Ctrl-C / SIGTERM is honoured in every wait.

use std::fs::File;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use crate::common::proxy::{Fault, Proxy, Rule, RuleId};
use crate::common::running::{Running, wait_until};
use crate::common::{Orthanc, retriever, retriever_at, run_within, temp_cache, testdata, uid_of};

tests! {
    a_cloud_that_stops_sending_is_given_up_after_two_stalls: ["orthanc"],
    ctrl_c_ends_a_retry_after_wait: ["orthanc"],
    sigterm_ends_a_search_that_waits_for_the_cloud: ["orthanc"],
    ctrl_c_ends_a_wait_for_a_locked_study: ["orthanc"],
    ctrl_c_ends_an_echo_the_destination_never_answers,
}

/// A failure guard for runs that must end: far above what they take, far below the waits they
/// must not sit out (a `Retry-After` of minutes, a minute's idle timeout).
const LIMIT: Duration = Duration::from_secs(40);
/// Long enough to outlast any test: a peer that never answers.
const FOREVER: Duration = Duration::from_secs(600);

/// Sends `signal` and checks that the run stopped as after Ctrl-C: exit 130 and the usual line.
#[track_caller]
fn assert_stops_on(run: &mut Running, signal: &str) {
    let code = run.signal(signal, LIMIT);
    let err = run.stderr();
    assert_eq!(code, 130, "SIG{signal}:\n{err}");
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .starts_with("retriever: interrupted"),
        "SIG{signal}:\n{err}"
    );
}

/// Waits until the proxy has applied `rule` at least once.
fn hit(running: &mut Running, proxy: &Proxy, rule: RuleId) {
    wait_until(LIMIT, "the proxy saw the request", running, || proxy.hits(rule) > 0);
}

/// A test study with one series, so that each round of a fetch asks for it once.
fn one_series_study() -> &'static str {
    let study = testdata()
        .studies
        .iter()
        .find(|s| s.series.len() == 1)
        .expect("a test study with one series");
    &study.accession
}

/// A cloud that stops sending in the middle of a retrieve, before the first part and inside it:
/// with the default `--retries` the study is given up after the second stall, not after six full
/// idle timeouts, and the message says what happened and what to do.
fn a_cloud_that_stops_sending_is_given_up_after_two_stalls() {
    let orthanc = Orthanc::shared();
    let accession = one_series_study();
    let study_uid = uid_of(accession);
    for after in [0, 1000] {
        let proxy = Proxy::to(orthanc);
        let stall = proxy.add(Rule::new(Fault::stall(after, FOREVER)).path_contains("/series/"));
        let cache = temp_cache();
        let (code, _, err) = run_within(
            retriever_at(&proxy.dicomweb_url(), cache.path()).args([
                "fetch",
                accession,
                "--priors",
                "0",
                "--idle-timeout",
                "1s",
            ]),
            LIMIT,
        );
        assert_eq!(code, 1, "stall after {after} bytes:\n{err}");
        assert_eq!(proxy.hits(stall), 2, "stall after {after} bytes:\n{err}");
        assert!(
            err.lines().any(|line| {
                line.contains("the cloud stopped sending for 1s (`--idle-timeout`) twice")
                    && line.contains(study_uid)
                    && line.contains("run the same command again")
            }),
            "stall after {after} bytes:\n{err}"
        );
    }
}

/// A 503 asking to come back in an hour (honoured up to five minutes): Ctrl-C ends the wait.
fn ctrl_c_ends_a_retry_after_wait() {
    let proxy = Proxy::to(Orthanc::shared());
    let unavailable = proxy.add(Rule::new(Fault::unavailable(3600)));
    let cache = temp_cache();
    let mut run = Running::start(retriever_at(&proxy.dicomweb_url(), cache.path()).args([
        "fetch",
        one_series_study(),
        "--priors",
        "0",
    ]));
    hit(&mut run, &proxy, unavailable);
    assert_stops_on(&mut run, "INT");
}

/// A search whose answer does not come, head or body: SIGTERM ends it at once, although the
/// idle timeout is a minute away.
fn sigterm_ends_a_search_that_waits_for_the_cloud() {
    for fault in [Fault::Delay(FOREVER), Fault::stall(0, FOREVER)] {
        let proxy = Proxy::to(Orthanc::shared());
        let search = proxy.add(Rule::new(fault).path_contains("/studies?"));
        let cache = temp_cache();
        let mut run = Running::start(retriever_at(&proxy.dicomweb_url(), cache.path()).args([
            "fetch",
            one_series_study(),
            "--priors",
            "0",
            "--idle-timeout",
            "60s",
        ]));
        hit(&mut run, &proxy, search);
        assert_stops_on(&mut run, "TERM");
    }
}

/// A study another process is fetching (its lock held): the wait for it ends with Ctrl-C.
fn ctrl_c_ends_a_wait_for_a_locked_study() {
    let cache = temp_cache();
    let accession = one_series_study();
    let locks = cache.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let held = File::create(locks.join(format!("{}.lock", uid_of(accession)))).unwrap();
    held.lock().unwrap();
    let mut run = Running::start(
        retriever_at(&Orthanc::shared().dicomweb_url(), cache.path()).args(["fetch", accession, "--priors", "0"]),
    );
    let stderr = run.stderr_path();
    wait_until(LIMIT, "the fetch waits for the lock", &mut run, || {
        std::fs::read_to_string(&stderr).is_ok_and(|err| err.contains("waiting for another retriever process"))
    });
    assert_stops_on(&mut run, "INT");
    drop(held);
}

/// A destination that takes the TCP connection and never answers the association: Ctrl-C ends
/// `echo` at once, although the association timeout is minutes away.
fn ctrl_c_ends_an_echo_the_destination_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted, connections) = mpsc::channel();
    // The connection is handed to the test, which keeps it open and silent until it ends.
    let acceptor = std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let _ = accepted.send(stream);
        }
    });
    let mut run = Running::start(retriever().args([
        "--to",
        &format!("SILENT@127.0.0.1:{port}"),
        "echo",
        "--acse-timeout",
        "10m",
    ]));
    let mut connection = None;
    wait_until(LIMIT, "the destination was connected to", &mut run, || {
        connection = connections.try_recv().ok();
        connection.is_some()
    });
    assert_stops_on(&mut run, "INT");
    acceptor.join().unwrap();
    drop(connection);
}
