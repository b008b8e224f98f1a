//! Secrets and patient data: cache permissions, credentials that never leave for a proxy or a log,
//! text from the network printed harmlessly, and journal records that reach the disk in time.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use crate::common::proxy::{Fault, Proxy, Rule};
use crate::common::testscp::TestScp;
use crate::common::{
    Orthanc, PASSWORD, Storescp, fetch_ok, retriever, retriever_at, run_within, temp_cache, uid_of, wrapped,
};

tests! {
    #[cfg(unix)] the_cache_is_private_to_its_user_whatever_the_umask: ["orthanc", "storescp"],
    a_plain_http_cloud_never_goes_through_a_proxy: ["orthanc"],
    credentials_in_the_cloud_url_are_refused_and_never_echoed,
    an_error_body_from_the_cloud_is_printed_escaped: ["orthanc"],
    text_from_the_cloud_cannot_split_a_stdout_line: ["orthanc", "python"],
    an_error_comment_from_the_pacs_is_printed_escaped: ["orthanc", "python"],
    delivery_records_reach_the_disk_in_small_groups: ["orthanc", "storescp", "strace"],
}

const LIMIT: Duration = Duration::from_secs(120);

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, LIMIT)
}

/// `cmd` run by `sh` under `umask 022`, the usual default, whatever the test runner's umask.
fn with_umask_022(cmd: &Command) -> Command {
    wrapped("sh", &["-c", "umask 022 && exec \"$0\" \"$@\""], cmd)
}

/// Raw control characters in `text` other than the newlines that end its lines.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars().filter(|c| c.is_control() && *c != '\n').collect()
}

#[cfg(unix)]
fn the_cache_is_private_to_its_user_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    // As an older version, or `mkdir`, would have left it.
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut fetch = retriever_at(&orthanc.dicomweb_url(), cache.path());
    fetch.args(["fetch", "ACC2001", "--priors", "0"]);
    let (code, _, err) = run(&mut with_umask_022(&fetch));
    assert_eq!(code, 0, "fetch failed: {err}");
    let scp = Storescp::start("PRIVATE");
    let mut store = retriever_at(&orthanc.dicomweb_url(), cache.path());
    store.args(["store", uid_of("ACC2001"), "--to", &scp.address()]);
    let (code, _, err) = run(&mut with_umask_022(&store));
    assert_eq!(code, 0, "store failed: {err}");

    let mut open = Vec::new();
    let (mut locks, mut journals, mut instances) = (0, 0, 0);
    for entry in walkdir::WalkDir::new(cache.path()) {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let name = entry.file_name().to_string_lossy().into_owned();
        locks += usize::from(name.ends_with(".lock"));
        journals += usize::from(name.ends_with(".jsonl"));
        instances += usize::from(name.ends_with(".dcm"));
        let want = if entry.file_type().is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            open.push(format!("{} {mode:o}", entry.path().display()));
        }
    }
    assert!(
        locks >= 1 && journals == 1 && instances >= 1,
        "{locks} lock files, {journals} journals, {instances} instances"
    );
    assert!(open.is_empty(), "not private:\n{}", open.join("\n"));
}

/// A listener posing as an HTTP proxy: it records the first line of each connection and
/// answers 502.
struct ProxyTrap {
    addr: std::net::SocketAddr,
    seen: mpsc::Receiver<String>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const SENTINEL: &str = "SENTINEL";

impl ProxyTrap {
    fn start() -> ProxyTrap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let last = line.starts_with(SENTINEL);
                let _ = tx.send(line);
                if last {
                    return;
                }
            }
        });
        ProxyTrap {
            addr,
            seen,
            thread: Some(thread),
        }
    }

    /// Every connection made so far, and stops the trap. It takes connections in order, so
    /// once it has taken one made now, it has taken all the earlier ones.
    fn connections(mut self) -> Vec<String> {
        let mut s = std::net::TcpStream::connect(self.addr).unwrap();
        s.write_all(format!("{SENTINEL}\r\n").as_bytes()).unwrap();
        let mut out = Vec::new();
        for line in self.seen.iter() {
            if line.starts_with(SENTINEL) {
                break;
            }
            out.push(line);
        }
        self.thread.take().unwrap().join().unwrap();
        out
    }
}

fn a_plain_http_cloud_never_goes_through_a_proxy() {
    let orthanc = Orthanc::shared();
    let trap = ProxyTrap::start();
    let proxy = format!("http://{}", trap.addr);
    let cache = temp_cache();
    let mut fetch = retriever_at(&orthanc.dicomweb_url(), cache.path());
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        fetch.env(var, &proxy);
    }
    for var in ["NO_PROXY", "no_proxy"] {
        fetch.env_remove(var);
    }
    let (code, _, err) = run(fetch.args(["fetch", "ACC2001", "--priors", "0"]));
    let seen = trap.connections();
    assert!(seen.is_empty(), "the proxy saw {seen:?}");
    assert_eq!(code, 0, "fetch failed: {err}");
}

fn credentials_in_the_cloud_url_are_refused_and_never_echoed() {
    let cache = temp_cache();
    let config = cache.path().join("config.json");
    for spelling in [
        "https:router:hunter2@cloud.example.org/dicom-web",
        "https:/router:hunter2@cloud.example.org/dicom-web",
        "https:\\\\router:hunter2@cloud.example.org/dicom-web",
        "https://router:hunter2@cloud.example.org/dicom-web",
        "HTTPS://router:hunter2@cloud.example.org/dicom-web",
        "https://hunter2@cloud.example.org/dicom-web",
        "https://:hunter2@cloud.example.org/dicom-web",
        "https://router:hun/ter2@cloud.example.org/dicom-web",
        "http://router:hunter2@127.0.0.1:1/dicom-web",
        "router:hunter2@cloud.example.org/dicom-web",
    ] {
        std::fs::write(&config, serde_json::json!({ "cloud": spelling }).to_string()).unwrap();
        let runs = [
            retriever()
                .args(["--cloud", spelling, "--cache"])
                .arg(cache.path())
                .args(["fetch", "1.2.3"])
                .env("RETRIEVER_PASSWORD", PASSWORD)
                .env("RETRIEVER_USER", "router")
                .output()
                .unwrap(),
            retriever()
                .env("RETRIEVER_CLOUD", spelling)
                .arg("config")
                .output()
                .unwrap(),
            retriever().arg("--config").arg(&config).arg("config").output().unwrap(),
            retriever()
                .arg("--config")
                .arg(&config)
                .args(["config", "--json"])
                .output()
                .unwrap(),
        ];
        for (n, out) in runs.iter().enumerate() {
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(
                !out.status.success(),
                "run {n} of {spelling:?} was accepted: {stdout}{stderr}"
            );
            for secret in ["hunter2", "hun/ter2"] {
                assert!(
                    !stdout.contains(secret) && !stderr.contains(secret),
                    "run {n} of {spelling:?} shows the password:\n{stdout}\n{stderr}"
                );
            }
            assert!(
                stderr.contains("credentials in it") || stderr.contains("not a valid URL"),
                "run {n} of {spelling:?}: {stderr}"
            );
        }
    }
}

fn an_error_body_from_the_cloud_is_printed_escaped() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    proxy.add(Rule::new(Fault::Respond {
        status: 400,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: b"\x1b[2J\x1b]0;owned\x07bad\rrequest\nsee \xc2\x9b31m\x1b[8m".to_vec(),
    }));
    let cache = temp_cache();
    let (code, out, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", "ACC2001", "--priors", "0"]));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(
        raw_controls(&err),
        Vec::<char>::new(),
        "raw control characters in:\n{err:?}"
    );
    assert!(err.contains("\\x1b[2J\\x1b]0;owned\\x07bad"), "{err}");
}

fn text_from_the_cloud_cannot_split_a_stdout_line() {
    let orthanc = Orthanc::shared();
    let proxy = Proxy::to(orthanc);
    // The accession number, in the JSON of the study search: "A<TAB>C<NEWLINE>1".
    proxy.add(Rule::new(Fault::rewrite("ACC2001", "A\\tC\\n1")).path_contains("/studies?"));
    let cache = temp_cache();
    let (code, out, err) =
        run(retriever_at(&proxy.dicomweb_url(), cache.path()).args(["fetch", uid_of("ACC2001"), "--priors", "0"]));
    assert_eq!(code, 0, "fetch failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one line per study:\n{out:?}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields.len(), 9, "{:?}", lines[0]);
    assert_eq!(fields[..2], [uid_of("ACC2001"), "A\\tC\\n1"]);
    assert_eq!(raw_controls(&err), Vec::<char>::new(), "{err:?}");

    // What the cache recorded is printed the same way.
    let (code, out, err) = run(retriever().arg("--cache").arg(cache.path()).arg("ls"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "a header and one study:\n{out:?}");
    assert!(out.contains(" A\\tC\\n1 "), "{out}");
    let (code, out, _) = run(retriever().arg("--cache").arg(cache.path()).args(["ls", "--json"]));
    assert_eq!(code, 0);
    let study: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(study["accession"], "A\tC\n1", "JSON keeps the text as it is");

    let scp = TestScp::start(&[]);
    let (code, out, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args([
        "store",
        uid_of("ACC2001"),
        "--to",
        &scp.address("TESTSCP"),
    ]));
    assert_eq!(code, 0, "store failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert_eq!(lines[0].split('\t').nth(1), Some("A\\tC\\n1"), "{out:?}");
    assert_eq!(lines[0].split('\t').count(), 7, "{out:?}");
}

fn an_error_comment_from_the_pacs_is_printed_escaped() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACC2001"]);
    let scp = TestScp::start(&[
        "--statuses",
        "0xA900",
        "--comment",
        "\x1b[2Jbad\rIOD\nx\x1b]0;owned\x07",
    ]);
    let (code, _, err) = run(retriever_at(&orthanc.dicomweb_url(), cache.path()).args([
        "store",
        uid_of("ACC2001"),
        "--to",
        &scp.address("TESTSCP"),
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("\\x1b[2Jbad\\rIOD"),
        "the comment is shown, escaped: {err}"
    );
    assert_eq!(raw_controls(&err), Vec::<char>::new(), "{err:?}");
}

/// `cmd` under `strace -f -yy`, which logs to `log` the system calls that write, each with
/// the file or socket it was made on.
fn strace(cmd: &Command, log: &Path) -> Command {
    let log = log.to_str().expect("a UTF-8 temporary path");
    let trace = "trace=write,writev,sendto,sendmsg,fdatasync,fsync";
    wrapped("strace", &["-f", "-qq", "-yy", "-s", "0", "-e", trace, "-o", log], cmd)
}

/// What a power cut may resend is bounded: the delivery journal reaches the disk at least
/// every `UNSYNCED_MAX` records, and before a study is reported delivered.
fn delivery_records_reach_the_disk_in_small_groups() {
    let orthanc = Orthanc::shared();
    let cache = temp_cache();
    fetch_ok(orthanc, cache.path(), &["ACCBIG"]);
    let scp = Storescp::start("SYNCED");
    let log = cache.path().join("strace.log");
    let mut store = retriever_at(&orthanc.dicomweb_url(), cache.path());
    store.args(["store", uid_of("ACCBIG"), "--associations", "1", "--to", &scp.address()]);
    let (code, _, err) = run(&mut strace(&store, &log));
    assert_eq!(code, 0, "store failed: {err}");

    let mut writes = 0;
    let mut unsynced = 0;
    let mut most_unsynced = 0;
    let mut reported_unsynced = None;
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        // `PID call(FD<what>, ...`; a call resumed in another line starts with `<...`.
        let Some(call) = line.split_whitespace().nth(1) else {
            continue;
        };
        let on_journal = call.contains(".jsonl>");
        if call.starts_with("write(") && on_journal {
            writes += 1;
            unsynced += 1;
            most_unsynced = most_unsynced.max(unsynced);
        } else if (call.starts_with("fdatasync(") || call.starts_with("fsync(")) && on_journal {
            unsynced = 0;
        } else if call.starts_with("write(1<") {
            // The study's line on stdout: reported delivered.
            reported_unsynced.get_or_insert(unsynced);
        }
    }
    let instances = crate::common::testdata().large().num_instances;
    assert!(writes >= instances, "{writes} journal writes for {instances} instances");
    assert!(
        most_unsynced <= retriever::cache::UNSYNCED_MAX,
        "{most_unsynced} records in a row were not synced"
    );
    assert_eq!(
        reported_unsynced,
        Some(0),
        "reported delivered before the journal was synced"
    );
}
