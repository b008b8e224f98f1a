//! Giving up in bounded time, and stopping when asked: stalled peers end a transfer within a few
//! minutes with a message that names what stalled, and Ctrl-C / SIGTERM is honoured in every wait.

use std::fs::File;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::proxy::{Fault, Proxy, Rule, RuleId};
use crate::common::{Orthanc, retriever, retriever_at, run_within, temp_cache, testdata, uid_of};

/// A failure guard for runs that must end: far above what they take, far below the waits they
/// must not sit out (a `Retry-After` of minutes, a minute's idle timeout).
const LIMIT: Duration = Duration::from_secs(40);
/// Long enough to outlast any test: a peer that never answers.
const FOREVER: Duration = Duration::from_secs(600);

/// A `retriever` run in the background, its output going to files that can be read meanwhile.
struct Running {
    child: Child,
    dir: tempfile::TempDir,
}

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let out = File::create(dir.path().join("stdout")).unwrap();
        let err = File::create(dir.path().join("stderr")).unwrap();
        let child = cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err)).spawn().unwrap();
        Running { child, dir }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits until `done` holds, failing (with the run's stderr) if the run ends first or after
    /// [`LIMIT`].
    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Running) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !done(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("retriever ended ({status}) before {what}:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`INT`, `TERM`) and returns the exit code, failing if the run has not
    /// ended within [`LIMIT`].
    fn signal(&mut self, signal: &str) -> i32 {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "retriever did not stop within {LIMIT:?} of SIG{signal}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and checks that the run stopped as after Ctrl-C: exit 130, the usual line.
    #[track_caller]
    fn assert_stops_on(&mut self, signal: &str) {
        let code = self.signal(signal);
        let err = self.stderr();
        assert_eq!(code, 130, "SIG{signal}:\n{err}");
        assert!(
            err.lines()
                .last()
                .unwrap_or_default()
                .starts_with("retriever: interrupted"),
            "SIG{signal}:\n{err}"
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the proxy has applied `rule` at least once.
fn hit(running: &mut Running, proxy: &Proxy, rule: RuleId) {
    running.wait_until("the proxy saw the request", |_| proxy.hits(rule) > 0);
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
#[test]
fn a_cloud_that_stops_sending_is_given_up_after_two_stalls() {
    require!("orthanc");
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
#[test]
fn ctrl_c_ends_a_retry_after_wait() {
    require!("orthanc");
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
    run.assert_stops_on("INT");
}

/// A search whose answer does not come, head or body: SIGTERM ends it at once, although the
/// idle timeout is a minute away.
#[test]
fn sigterm_ends_a_search_that_waits_for_the_cloud() {
    require!("orthanc");
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
        run.assert_stops_on("TERM");
    }
}

/// A study another process is fetching (its lock held): the wait for it ends with Ctrl-C.
#[test]
fn ctrl_c_ends_a_wait_for_a_locked_study() {
    require!("orthanc");
    let cache = temp_cache();
    let accession = one_series_study();
    let locks = cache.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let held = File::create(locks.join(format!("{}.lock", uid_of(accession)))).unwrap();
    held.lock().unwrap();
    let mut run = Running::start(
        retriever_at(&Orthanc::shared().dicomweb_url(), cache.path()).args(["fetch", accession, "--priors", "0"]),
    );
    run.wait_until("the fetch waits for the lock", |run| {
        run.stderr().contains("waiting for another retriever process")
    });
    run.assert_stops_on("INT");
    drop(held);
}

/// A destination that takes the TCP connection and never answers the association: Ctrl-C ends
/// `echo` at once, although the association timeout is minutes away.
#[test]
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
    run.wait_until("the destination was connected to", |_| {
        connection = connections.try_recv().ok();
        connection.is_some()
    });
    run.assert_stops_on("INT");
    acceptor.join().unwrap();
    drop(connection);
}
