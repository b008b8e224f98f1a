//! The integration-test harness: generated DICOM test data, a private Orthanc with DICOMweb,
//! a fault-injecting HTTP proxy, DCMTK `storescp` as a destination, and the `retriever` binary.
//!
//! Every peer runs on loopback on a free port and is stopped when its handle is dropped (the
//! shared Orthanc, held in a static, stops when the test process exits: its supervisor watches
//! its stdin). A missing peer makes a test `ignored` locally and fails it in CI (`CI=true`), see
//! [`harness`].

#[macro_use]
pub mod harness;
pub mod hostile_scp;
pub mod nginx;
pub mod oauth;
pub mod orthanc;
pub mod pki;
pub mod proxy;
pub mod running;
pub mod storescp;
pub mod testscp;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use orthanc::Orthanc;
pub use proxy::{Fault, Proxy, Rule};
pub use storescp::{Storescp, echoscu, storescu};
pub use tls::TlsFront;

/// The HTTP Basic user every test Orthanc registers.
pub const USER: &str = "retriever";
/// Its password (given to `retriever` through `RETRIEVER_PASSWORD`).
pub const PASSWORD: &str = "s3cret-pw";

/// Instances in the "big" study of the test data (`ACCBIG`, 512x512, ~0.5 MB each).
pub const LARGE_INSTANCES: usize = 40;

pub const ORTHANC_BIN: &str = "/usr/sbin/Orthanc";

/// The crate's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory this test binary was built into (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    // <target>/<profile>/retriever
    let bin = Path::new(env!("CARGO_BIN_EXE_retriever"));
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// True when running in CI, where a missing peer is a failure rather than a skip.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI").as_deref().map(str::to_ascii_lowercase).as_deref(),
        Ok("true" | "1" | "yes")
    )
}

/// Why a peer a test needs is not usable here, or `None` when it is. Known names: `orthanc`
/// (server, DICOMweb plugin and the Python that loads it), `python` (pydicom, pynetdicom,
/// numpy), `pillow` (JPEG test instances), `openssl`, `nginx`, `groff` (renders the man page), `strace` (allowed to trace here), any
/// DCMTK tool (`storescp`, `echoscu`, `storescu`, `dcmdump`, ...). Tests declare them in their
/// module's [`tests!`] block; the runner checks them before the test starts.
pub fn missing_peer(tool: &str) -> Option<String> {
    static CHECKED: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let checked = CHECKED.get_or_init(Default::default);
    let known = checked.lock().unwrap().get(tool).copied();
    let present = known.unwrap_or_else(|| {
        let present = match tool {
            "orthanc" => Path::new(ORTHANC_BIN).exists() && orthanc::dicomweb_plugin().is_some() && python_ok(),
            "python" | "pydicom" | "pynetdicom" => python_ok(),
            "pillow" => python_ok() && testscp::pillow_ok(),
            "openssl" => Command::new("openssl")
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "nginx" => Path::new(nginx::NGINX_BIN).is_file(),
            "groff" => Command::new("groff")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "strace" => Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            other => dcmtk(other).is_some(),
        };
        checked.lock().unwrap().insert(tool.to_owned(), present);
        present
    });
    (!present).then(|| format!("test peer `{tool}` is missing; scripts/install-peers.sh installs it"))
}

/// The Python interpreter used for the scripts (`PYTHON` overrides `python3` on PATH).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn python_ok() -> bool {
    // find_spec rather than import: a second faster.
    let check = "import importlib.util as u, sys; \
                 sys.exit(any(u.find_spec(m) is None for m in ('pydicom', 'pynetdicom', 'numpy')))";
    Command::new(python())
        .args(["-c", check])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The path of a DCMTK tool. pynetdicom installs console scripts with the same names
/// (`storescp`, `echoscu`, `storescu`, ...) that may come first on PATH, so Debian's
/// `/usr/bin` is preferred and Python scripts on PATH are passed over.
pub fn dcmtk(tool: &str) -> Option<PathBuf> {
    let system = Path::new("/usr/bin").join(tool);
    if system.is_file() {
        return Some(system);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file() && !is_python_script(candidate))
}

fn is_python_script(path: &Path) -> bool {
    let mut head = [0u8; 128];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n].starts_with(b"#!") && String::from_utf8_lossy(&head[..n]).contains("python")
}

/// A free TCP port on 127.0.0.1 (bound, read, released: a race with other processes is
/// possible, so callers retry when the peer cannot listen on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Whether something listens on the TCP port, read from /proc so that no connection is made
/// (a probing connection makes DICOM peers log an aborted association).
pub fn is_listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && format!("{} ", fields[1]).ends_with(&needle) && fields[3] == "0A"
            })
        })
    })
}

/// Whether a TCP connection from local port `local` to port `remote` on loopback is
/// established, read from /proc (once the peer has closed it, it is not).
pub fn is_established(local: u16, remote: u16) -> bool {
    let (local, remote) = (format!(":{local:04X}"), format!(":{remote:04X}"));
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && fields[1].ends_with(&local) && fields[2].ends_with(&remote) && fields[3] == "01"
            })
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Test data

// The structs below mirror all of `index.json` (scripts/gen_testdata.py), read by the tests or
// not, so that they document what the generated data holds.

/// What `scripts/gen_testdata.py` wrote: `index.json`, parsed.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub struct TestData {
    #[serde(skip)]
    pub dir: PathBuf,
    pub params: Params,
    pub uid_root: String,
    pub studies: Vec<Study>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub struct Params {
    pub version: u32,
    /// The day the study dates are relative to, `YYYYMMDD`.
    pub today: String,
    pub large: usize,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub struct Study {
    pub label: String,
    pub number: u32,
    pub patient_id: String,
    pub issuer: String,
    pub patient_name: String,
    pub accession: String,
    pub study_uid: String,
    /// `YYYYMMDD`
    pub study_date: String,
    pub days_ago: u32,
    pub description: String,
    /// The first series' modality (the study's main one).
    pub modality: String,
    pub modalities: Vec<String>,
    pub transfer_syntax: String,
    pub num_instances: usize,
    pub series: Vec<Series>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub struct Series {
    pub series_uid: String,
    pub number: u32,
    pub modality: String,
    pub sop_class: String,
    pub description: String,
    pub instances: Vec<Instance>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub struct Instance {
    pub sop_uid: String,
    pub sop_class: String,
    pub instance_number: u32,
    /// Absolute after loading (relative to the data directory in index.json).
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

impl TestData {
    /// The study with this accession number; panics if there is none.
    pub fn study(&self, accession: &str) -> &Study {
        self.studies
            .iter()
            .find(|s| s.accession == accession)
            .unwrap_or_else(|| panic!("no test study with accession {accession}"))
    }

    pub fn study_by_uid(&self, study_uid: &str) -> Option<&Study> {
        self.studies.iter().find(|s| s.study_uid == study_uid)
    }

    /// The studies of one patient (PatientID and IssuerOfPatientID), most recent first.
    pub fn studies_of(&self, patient_id: &str, issuer: &str) -> Vec<&Study> {
        let mut studies: Vec<&Study> = self
            .studies
            .iter()
            .filter(|s| s.patient_id == patient_id && s.issuer == issuer)
            .collect();
        studies.sort_by_key(|s| s.days_ago);
        studies
    }

    /// The big study (`ACCBIG`).
    pub fn large(&self) -> &Study {
        self.study("ACCBIG")
    }
}

impl Study {
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.series.iter().flat_map(|s| s.instances.iter())
    }

    pub fn sop_uids(&self) -> BTreeSet<String> {
        self.instances().map(|i| i.sop_uid.clone()).collect()
    }

    pub fn series_uids(&self) -> Vec<&str> {
        self.series.iter().map(|s| s.series_uid.as_str()).collect()
    }
}

impl Instance {
    /// The file's bytes, as generated (and as uploaded to Orthanc).
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap_or_else(|e| panic!("failed to read `{}`: {e}", self.path.display()))
    }
}

/// The test data, generated once per test binary into `<target>/testdata/` (with a small big
/// study of [`LARGE_INSTANCES`]); the generator skips the work when it is up to date.
pub fn testdata() -> &'static TestData {
    static DATA: OnceLock<TestData> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = target_dir().join("testdata");
        generate_testdata(&dir, LARGE_INSTANCES);
        load_testdata(&dir)
    })
}

/// Runs the generator into `dir` (idempotent; serialised across processes by a lock file).
pub fn generate_testdata(dir: &Path, large: usize) {
    let script = repo_root().join("scripts/gen_testdata.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(dir)
        .args(["--large", &large.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run `{}`: {e}", script.display()));
    assert!(
        output.status.success(),
        "`{}` failed ({}):\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn load_testdata(dir: &Path) -> TestData {
    let index = dir.join("index.json");
    let text = std::fs::read_to_string(&index).unwrap_or_else(|e| panic!("failed to read `{}`: {e}", index.display()));
    let mut data: TestData =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("failed to parse `{}`: {e}", index.display()));
    data.dir = dir.to_path_buf();
    for study in &mut data.studies {
        for series in &mut study.series {
            for instance in &mut series.instances {
                instance.path = dir.join(&instance.path);
            }
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------
// DICOM files

/// Splits a Part-10 file into (file meta group bytes, data set bytes): after the 128-byte
/// preamble and `DICM`, the meta group's length is in (0002,0000). Lets tests compare what a
/// destination stored with what was sent, whatever meta header it wrote.
pub fn split_part10(bytes: &[u8]) -> (&[u8], &[u8]) {
    assert!(
        bytes.len() >= 144 && &bytes[128..132] == b"DICM",
        "not a DICOM Part-10 file"
    );
    // (0002,0000) UL, explicit VR little endian: tag 4, VR 2, length 2, value 4.
    assert_eq!(&bytes[132..138], b"\x02\x00\x00\x00UL", "no (0002,0000) group length");
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    let end = 144 + group_len;
    (&bytes[132..end], &bytes[end..])
}

// ---------------------------------------------------------------------------------------------
// The retriever binary

/// A `Command` for the `retriever` binary, with no `RETRIEVER_*` variable inherited from the
/// environment and stdin closed.
pub fn retriever() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_retriever"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RETRIEVER_") {
            cmd.env_remove(&key);
        }
    }
    // The user's own config file (~/.config/retriever/config.json) must not
    // change what a test sees: point the lookup at a folder that has none.
    cmd.env("XDG_CONFIG_HOME", no_config_dir());
    cmd.stdin(Stdio::null());
    cmd
}

/// `cmd` run by `program ARGS... CMD` (`strace`, say), with the environment `cmd` was given.
pub fn wrapped(program: &str, args: &[&str], cmd: &Command) -> Command {
    let mut wrapper = Command::new(program);
    wrapper.args(args).arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapper.env(key, v),
            None => wrapper.env_remove(key),
        };
    }
    wrapper.stdin(Stdio::null());
    wrapper
}

/// An empty folder under the target directory (kept between runs, so
/// nothing is left behind in /tmp).
fn no_config_dir() -> PathBuf {
    let dir = target_dir().join("no-config");
    std::fs::create_dir_all(&dir).expect("create an empty config folder");
    dir
}

/// `retriever --cloud URL --user retriever --cache CACHE` with `RETRIEVER_PASSWORD` set; the
/// subcommand and its arguments follow.
pub fn retriever_at(cloud: &str, cache: &Path) -> Command {
    let mut cmd = retriever();
    cmd.arg("--cloud")
        .arg(cloud)
        .arg("--user")
        .arg(USER)
        .arg("--cache")
        .arg(cache)
        .env("RETRIEVER_PASSWORD", PASSWORD);
    cmd
}

/// True when the file (a running command's stderr, a log) holds `what`.
pub fn file_says(path: &Path, what: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(what))
}

/// A fresh, empty cache directory, removed when dropped.
pub fn temp_cache() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("retriever-cache-")
        .tempdir()
        .expect("create a temporary cache directory")
}

/// [`output_within`] as (exit code, -1 for a signal; stdout; stderr).
pub fn run_within(cmd: &mut Command, timeout: Duration) -> (i32, String, String) {
    let out = output_within(cmd, timeout);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `retriever fetch IDS... --priors 0` (unless the ids say otherwise) from `orthanc` into
/// `cache`; must succeed within a minute.
pub fn fetch_ok(orthanc: &Orthanc, cache: &Path, ids: &[&str]) {
    let mut cmd = retriever_at(&orthanc.dicomweb_url(), cache);
    cmd.arg("fetch").args(ids);
    if !ids.contains(&"--priors") {
        cmd.args(["--priors", "0"]);
    }
    let (code, _, err) = run_within(&mut cmd, Duration::from_secs(60));
    assert_eq!(code, 0, "fetch {ids:?} failed:\n{err}");
}

/// The Study Instance UID of the test study with this accession number.
pub fn uid_of(accession: &str) -> &'static str {
    &testdata().study(accession).study_uid
}

/// The name the cache gives a destination `AE@HOST:PORT` in file names: `AE@HOST_PORT`.
pub fn dest_key(dest: &str) -> String {
    let (ae_host, port) = dest.rsplit_once(':').unwrap();
    format!("{ae_host}_{port}")
}

/// The watch record of `dest` as a `watch`, running or not, has written it: study UID → its
/// entry (none before it is first written). That is the snapshot (`watch/KEY.json`), then the
/// lines of the log of changes since (`watch/KEY.log`) of the snapshot's generation, a last line
/// cut short ignored. The log is read first: a snapshot written in between holds what it said.
pub fn watch_record(cache: &Path, dest: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let dir = cache.join("watch");
    let log = std::fs::read_to_string(dir.join(format!("{}.log", dest_key(dest)))).unwrap_or_default();
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{}.json", dest_key(dest)))) else {
        return Default::default();
    };
    let snapshot: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut studies: std::collections::BTreeMap<String, serde_json::Value> =
        snapshot["studies"].as_object().unwrap().clone().into_iter().collect();
    let whole = log.rfind('\n').map_or("", |end| &log[..end]);
    for line in whole.lines() {
        let change: serde_json::Value = serde_json::from_str(line).unwrap();
        if change["g"] != snapshot["generation"] {
            continue;
        }
        let study = change["study"].as_str().unwrap().to_string();
        match &change["seen"] {
            serde_json::Value::Null => studies.remove(&study),
            seen => studies.insert(study, seen.clone()),
        };
    }
    studies
}

/// Runs the command to completion, killing it (and failing the test) if it takes longer than
/// `timeout`; stdout and stderr are captured.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_thread.join().unwrap_or_default();
            panic!(
                "{cmd:?} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// The cache, as the tests look at it

/// SOP Instance UID → file bytes of every instance file in a cached study.
pub fn cached_instances(cache: &Path, study_uid: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let dir = cache.join("studies").join(study_uid).join("series");
    let mut out = std::collections::BTreeMap::new();
    if !dir.is_dir() {
        return out;
    }
    for entry in walkdir::WalkDir::new(&dir).into_iter().filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(sop) = name.strip_suffix(".dcm") {
            out.insert(sop.to_string(), std::fs::read(entry.path()).unwrap());
        }
    }
    out
}

/// `retriever ls --json`, one JSON object per cached study; must succeed within two minutes.
pub fn ls_json(cloud: &str, cache: &Path) -> Vec<serde_json::Value> {
    let (code, out, err) = run_within(
        retriever_at(cloud, cache).args(["ls", "--json"]),
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "ls failed: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("ls --json prints JSON lines"))
        .collect()
}

/// Every record of the delivery journal of `study` for `dest`, in order (none when there is no
/// journal; a line that is not JSON is left out).
pub fn journal_lines(cache: &Path, study: &str, dest: &str) -> Vec<serde_json::Value> {
    let path = cache
        .join("studies")
        .join(study)
        .join("delivered")
        .join(format!("{}.jsonl", dest_key(dest)));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Asserts that the journal for `dest` has each instance of the studies (accession numbers of
/// the test data) delivered exactly once.
pub fn assert_journaled_once(cache: &Path, dest: &str, accessions: &[&str]) {
    for accession in accessions {
        let want: BTreeMap<String, usize> = testdata()
            .study(accession)
            .sop_uids()
            .into_iter()
            .map(|s| (s, 1))
            .collect();
        assert_eq!(
            delivered_counts(cache, uid_of(accession), dest),
            want,
            "journal of {accession} for {dest}"
        );
    }
}

/// How many times the journal of `study` for `dest` records each instance as delivered.
pub fn delivered_counts(cache: &Path, study: &str, dest: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in journal_lines(cache, study, dest) {
        if matches!(line["state"].as_str(), Some("delivered" | "warning")) {
            *counts.entry(line["sop"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    counts
}
