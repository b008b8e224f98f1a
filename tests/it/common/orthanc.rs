//! A private Orthanc with the DICOMweb plugin, on loopback, started through
//! `scripts/orthanc.py run` and stopped when dropped; plus helpers on its REST API so tests can
//! check what the server holds, byte for byte.
//!
//! `orthanc.py run` supervises the server: it picks free ports (retrying when one is taken),
//! prints the state as one JSON line once `/system` answers, loads the files asked for, and kills
//! the server and removes its directory when its stdin closes. So even the shared instance, held
//! in a static that is never dropped, goes away with the test process.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{PASSWORD, USER, python, repo_root, testdata};

const PLUGINS: [&str; 2] = [
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
];

/// The DICOMweb plugin library, if installed.
pub fn dicomweb_plugin() -> Option<PathBuf> {
    PLUGINS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// A running private Orthanc. A test that starts one declares the
/// `orthanc` peer in its `tests!` block.
pub struct Orthanc {
    supervisor: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    http_port: u16,
    dicom_port: u16,
    pid: u32,
    aet: String,
    workdir: PathBuf,
    client: reqwest::blocking::Client,
}

/// Options for a private Orthanc; [`Orthanc::builder`].
#[derive(Clone, Debug, Default)]
pub struct OrthancBuilder {
    load_testdata: bool,
    config: Option<Value>,
}

impl OrthancBuilder {
    /// Loads every study of [`testdata`] once started.
    pub fn testdata(mut self) -> Self {
        self.load_testdata = true;
        self
    }

    /// Configuration merged over the generated one (`orthanc.py --config-json`), e.g. DICOM TLS.
    pub fn config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    pub fn start(self) -> Orthanc {
        let workdir = tempfile::Builder::new()
            .prefix("retriever-orthanc-")
            .tempdir()
            .expect("create a directory for Orthanc")
            // orthanc.py removes it when the server stops.
            .keep();
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("scripts/orthanc.py"))
            .arg("run")
            .arg("--cleanup")
            .arg("--workdir")
            .arg(&workdir)
            .arg("--user")
            .arg(format!("{USER}:{PASSWORD}"));
        if self.load_testdata {
            cmd.arg("--upload").arg(&testdata().dir);
        }
        if let Some(config) = &self.config {
            cmd.arg("--config-json").arg(config.to_string());
        }
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run scripts/orthanc.py: {e}"));
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if read.map_or(true, |n| n == 0) {
            let status = child.wait();
            let _ = std::fs::remove_dir_all(&workdir);
            panic!("scripts/orthanc.py could not start Orthanc ({status:?}); see its stderr above");
        }
        let state: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad state line from orthanc.py: {e}: {line}"));
        let port = |key: &str| state[key].as_u64().expect("port in orthanc.py state") as u16;
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("build an HTTP client");
        let orthanc = Orthanc {
            stdin: Mutex::new(child.stdin.take()),
            supervisor: Mutex::new(child),
            http_port: port("http_port"),
            dicom_port: port("dicom_port"),
            pid: state["pid"].as_u64().unwrap_or(0) as u32,
            aet: state["aet"].as_str().unwrap_or("ORTHANC").to_owned(),
            workdir: workdir.clone(),
            client,
        };
        if std::env::var_os("RETRIEVER_TEST_VERBOSE").is_some() {
            eprintln!(
                "orthanc: pid {} http {} dicom {} ready in {:?} (start {} s, {} files uploaded in {} s)",
                orthanc.pid,
                orthanc.http_port,
                orthanc.dicom_port,
                started.elapsed(),
                state["start_seconds"],
                state["uploaded"],
                state["upload_seconds"],
            );
        }
        orthanc
    }
}

impl Orthanc {
    pub fn builder() -> OrthancBuilder {
        OrthancBuilder::default()
    }

    /// One Orthanc per test binary, loaded with the test data. Tests must not change what it
    /// holds; a test that does starts its own with [`Orthanc::builder`].
    pub fn shared() -> &'static Orthanc {
        static SHARED: OnceLock<Orthanc> = OnceLock::new();
        SHARED.get_or_init(|| Orthanc::builder().testdata().start())
    }

    /// A separate, empty Orthanc.
    pub fn empty() -> Orthanc {
        Orthanc::builder().start()
    }

    /// `http://127.0.0.1:PORT`
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `http://127.0.0.1:PORT/dicom-web`, the base URL `retriever --cloud` takes.
    pub fn dicomweb_url(&self) -> String {
        format!("{}/dicom-web", self.http_url())
    }

    pub fn http_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.http_port).into()
    }

    /// `AET@127.0.0.1:PORT`, as `retriever --to` takes it.
    pub fn dicom_address(&self) -> String {
        format!("{}@127.0.0.1:{}", self.aet, self.dicom_port)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// GET a path (starting with `/`) of the REST API, authenticated. No status check.
    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client
            .get(format!("{}{path}", self.http_url()))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .unwrap_or_else(|e| panic!("GET {path} on Orthanc: {e}"))
    }

    /// GET a path and parse the JSON answer; panics unless 200.
    pub fn get_json(&self, path: &str) -> Value {
        let response = self.get(path);
        let status = response.status();
        let body = response.text().unwrap_or_default();
        assert!(status.is_success(), "GET {path} on Orthanc: {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: bad JSON: {e}"))
    }

    /// GET a path and return the body; panics unless 200.
    pub fn get_bytes(&self, path: &str) -> Vec<u8> {
        let response = self.get(path);
        let status = response.status();
        assert!(status.is_success(), "GET {path} on Orthanc: {status}");
        response.bytes().expect("read body").to_vec()
    }

    /// POST a body to a path; returns the JSON answer, panics unless 200.
    pub fn post(&self, path: &str, body: Vec<u8>, content_type: &str) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.http_url()))
            .basic_auth(USER, Some(PASSWORD))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("POST {path} on Orthanc: {e}"));
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "POST {path} on Orthanc: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// DELETE a resource; panics unless 200.
    pub fn delete(&self, path: &str) {
        let response = self
            .client
            .delete(format!("{}{path}", self.http_url()))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .unwrap_or_else(|e| panic!("DELETE {path} on Orthanc: {e}"));
        assert!(response.status().is_success(), "DELETE {path}: {}", response.status());
    }

    /// A QIDO-RS query relative to the DICOMweb root, e.g. `studies?AccessionNumber=ACC1001`.
    pub fn qido(&self, query: &str) -> Vec<Value> {
        match self.get_json(&format!("/dicom-web/{query}")) {
            Value::Array(items) => items,
            other => panic!("QIDO {query}: not an array: {other}"),
        }
    }

    /// Orthanc's identifier of the resource with this DICOM UID (`/tools/lookup`).
    pub fn lookup(&self, uid: &str) -> Option<String> {
        let found = self.post("/tools/lookup", uid.as_bytes().to_vec(), "text/plain");
        found
            .as_array()
            .and_then(|items| items.first())
            .and_then(|item| item["ID"].as_str())
            .map(str::to_owned)
    }

    /// The SOP Instance UIDs Orthanc holds for a study (empty if it has no such study).
    pub fn study_sop_uids(&self, study_uid: &str) -> BTreeSet<String> {
        let Some(id) = self.lookup(study_uid) else {
            return BTreeSet::new();
        };
        let instances = self.get_json(&format!("/studies/{id}/instances"));
        instances
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["MainDicomTags"]["SOPInstanceUID"].as_str())
            .map(str::to_owned)
            .collect()
    }

    /// The bytes of the stored file of an instance (what was uploaded, unchanged).
    pub fn instance_file(&self, sop_uid: &str) -> Vec<u8> {
        let id = self
            .lookup(sop_uid)
            .unwrap_or_else(|| panic!("Orthanc has no instance {sop_uid}"));
        self.get_bytes(&format!("/instances/{id}/file"))
    }

    /// Stores a Part-10 file; returns Orthanc's instance identifier.
    pub fn upload(&self, bytes: Vec<u8>) -> String {
        let answer = self.post("/instances", bytes, "application/dicom");
        answer["ID"].as_str().unwrap_or_default().to_owned()
    }

    pub fn upload_file(&self, path: &Path) -> String {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("failed to read `{}`: {e}", path.display()));
        self.upload(bytes)
    }

    pub fn delete_study(&self, study_uid: &str) {
        if let Some(id) = self.lookup(study_uid) {
            self.delete(&format!("/studies/{id}"));
        }
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        // Closing stdin tells the supervisor to kill Orthanc and remove its directory.
        drop(self.stdin.lock().unwrap().take());
        let mut child = self.supervisor.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The supervisor's death kills Orthanc too (PR_SET_PDEATHSIG).
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}
