//! DCMTK on the DICOM side: `storescp` as the destination `retriever` delivers to (stopped
//! when dropped), `echoscu` and `storescu` as clients.
//!
//! They run with `TCP_NODELAY=1`: DCMTK otherwise leaves Nagle's algorithm on, and each C-STORE
//! then waits for a delayed ACK (40-90 ms).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{dcmtk, free_port, is_listening};

/// Flags of [`Storescp::start`]: accept every transfer syntax DCMTK knows, write what was
/// received unchanged (so data sets compare byte for byte), no reverse DNS lookups.
pub const DEFAULT_FLAGS: [&str; 3] = ["+xa", "+B", "-dhl"];

/// A running `storescp` writing into a temporary directory, one file per instance named after
/// the SOP Instance UID (`CT.1.2.3...`, DCMTK's default naming).
pub struct Storescp {
    child: Child,
    port: u16,
    aet: String,
    flags: Vec<String>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Storescp {
    /// `storescp -aet AET` with [`DEFAULT_FLAGS`]. Its test declares the
    /// `storescp` peer.
    pub fn start(aet: &str) -> Storescp {
        Storescp::start_with(aet, &DEFAULT_FLAGS)
    }

    /// `storescp -aet AET` with exactly these extra flags (e.g. `--refuse`,
    /// `--abort-after`, `+xi` to accept implicit VR only, `--sleep-during 5`).
    pub fn start_with(aet: &str, flags: &[&str]) -> Storescp {
        let mut last_error = String::new();
        // The port was free a moment ago; another process may take it first, so retry.
        for _ in 0..5 {
            match Storescp::launch(aet, flags, free_port()) {
                Ok(scp) => return scp,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start storescp: {last_error}");
    }

    /// `storescp -aet AET` with [`DEFAULT_FLAGS`] on this port (for a destination that
    /// comes up where the router already expects it).
    pub fn start_on(aet: &str, port: u16) -> Storescp {
        Storescp::launch(aet, &DEFAULT_FLAGS, port).unwrap_or_else(|e| panic!("could not start storescp: {e}"))
    }

    fn launch(aet: &str, flags: &[&str], port: u16) -> Result<Storescp, String> {
        let dir = tempfile::Builder::new()
            .prefix("retriever-storescp-")
            .tempdir()
            .expect("create a directory for storescp");
        std::fs::create_dir(dir.path().join("received")).expect("create storescp's output directory");
        let log = dir.path().join("storescp.log");
        let child = Storescp::spawn(aet, flags, port, dir.path())?;
        Ok(Storescp {
            child,
            port,
            aet: aet.to_owned(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            dir,
            log,
        })
    }

    /// Stops this storescp (SIGKILL, as a crash or a power cut would) and starts it again on
    /// the same port with the same flags, writing into the same directory: what it received
    /// before stays in [`Storescp::received`].
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        self.child = Storescp::spawn(&self.aet, &flags, self.port, self.dir.path())
            .unwrap_or_else(|e| panic!("could not restart storescp: {e}"));
    }

    /// Stops this storescp (SIGKILL) and leaves it stopped: its port refuses connections until
    /// [`Storescp::start_again`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped storescp again, as [`Storescp::restart`] does, and waits until it listens.
    pub fn start_again(&mut self) {
        self.restart();
    }

    /// Starts storescp writing into `dir`/received, its output appended to `dir`/storescp.log,
    /// and waits until it listens.
    fn spawn(aet: &str, flags: &[&str], port: u16, dir: &Path) -> Result<Child, String> {
        let program = dcmtk("storescp").expect("DCMTK storescp is not installed");
        let received = dir.join("received");
        let log = dir.join("storescp.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open storescp.log");
        let mut child = Command::new(&program)
            .env("TCP_NODELAY", "1")
            .arg("-aet")
            .arg(aet)
            .arg("--output-directory")
            .arg(&received)
            .args(flags)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start `{}`: {e}", program.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "storescp exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if is_listening(port) {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("storescp did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn aet(&self) -> &str {
        &self.aet
    }

    /// `AET@127.0.0.1:PORT`, as `retriever --to` takes it.
    pub fn address(&self) -> String {
        format!("{}@127.0.0.1:{}", self.aet, self.port)
    }

    /// Where the received files are written.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("received")
    }

    /// storescp's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Received files by SOP Instance UID (taken from the file names).
    pub fn received(&self) -> BTreeMap<String, PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                // `CT.1.2.840...`; storescp writes in place, so skip what looks unfinished.
                let (_, uid) = name.split_once('.')?;
                uid.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.')
                    .then(|| (uid.to_owned(), e.path()))
            })
            .collect()
    }

    /// The SOP Instance UIDs received so far.
    pub fn received_sop_uids(&self) -> BTreeSet<String> {
        self.received().into_keys().collect()
    }

    /// Waits until at least `n` instances have arrived; false on timeout.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.received().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.received().len() >= n
    }

    /// The bytes of a received instance.
    pub fn file(&self, sop_uid: &str) -> Vec<u8> {
        let path = self
            .received()
            .remove(sop_uid)
            .unwrap_or_else(|| panic!("storescp did not receive {sop_uid}"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("failed to read `{}`: {e}", path.display()))
    }
}

impl Drop for Storescp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// C-ECHO to `AET@127.0.0.1:PORT` with DCMTK `echoscu`; true on success.
pub fn echoscu(aet: &str, port: u16) -> bool {
    let program = dcmtk("echoscu").expect("DCMTK echoscu is not installed");
    Command::new(program)
        .env("TCP_NODELAY", "1")
        .args(["-aet", "ECHOSCU", "-aec", aet, "-to", "10", "127.0.0.1"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// C-STORE files to `AET@127.0.0.1:PORT` with DCMTK `storescu`; true on success.
pub fn storescu(aet: &str, port: u16, files: &[&Path]) -> bool {
    let program = dcmtk("storescu").expect("DCMTK storescu is not installed");
    Command::new(program)
        .env("TCP_NODELAY", "1")
        // Propose only what the files need (their SOP classes and own transfer syntaxes).
        .args(["-aet", "STORESCU", "-aec", aet, "-to", "10", "-R"])
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
