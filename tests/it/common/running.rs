//! A `retriever` run in the background (a `watch`, or a run a test stops on purpose): its
//! stdout and stderr go to files the test can read while it runs, and it is stopped with a
//! signal as a user or a service manager would (Ctrl-C, SIGTERM), or killed when dropped.

use std::borrow::BorrowMut;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Running {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Running {
    pub fn start(mut cmd: impl BorrowMut<Command>) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let out = File::create(dir.path().join("stdout")).unwrap();
        let err = File::create(dir.path().join("stderr")).unwrap();
        let child = cmd
            .borrow_mut()
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Running { child, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// The file stderr goes to (to read it while the run is borrowed).
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr")
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("retriever exited early ({status}):\n{}", self.stderr());
        }
    }

    /// Sends `signal` (`INT`, `TERM`) and returns the exit code, failing if the run has not
    /// ended `within` (a failure guard, not a timing check).
    pub fn signal(&mut self, signal: &str, within: Duration) -> i32 {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "retriever did not stop within {within:?} of SIG{signal}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C (SIGINT); returns the exit code.
    pub fn interrupt(&mut self) -> i32 {
        self.signal("INT", Duration::from_secs(20))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done` holds, failing with `what` (and the run's stderr) if the run ends first or
/// after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, running: &mut Running, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        running.assert_running();
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", running.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}
