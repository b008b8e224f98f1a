//! A tiny HTTP/1.1 server on 127.0.0.1 for the client's tests: every
//! connection gets one canned, scripted answer (bytes, pauses, an early
//! close), so that faults a real server rarely shows on demand (a stall in
//! the middle of a part, a cut connection) can be produced exactly.
//!
//! The integration tests have their own HTTP server, the fault proxy in
//! `tests/it/common/proxy.rs`, in front of a real Orthanc. The two cannot be one:
//! unit tests cannot reach code under `tests/`, and the integration binary links
//! the library built without `cfg(test)`, so sharing would put test code in the
//! product.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `key` (not decoded).
    pub fn param(&self, key: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

/// What the server does on a connection, in order; the connection is closed after the last step.
pub enum Step {
    Send(Vec<u8>),
    Sleep(Duration),
}

type Handler = dyn Fn(usize, &Recorded) -> Vec<Step> + Send + Sync;

pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Connections answered and closed.
    closed: Arc<AtomicUsize>,
}

impl TestServer {
    /// Starts a server; `handler` gets the request's number (from 0) and the request.
    pub fn start(handler: impl Fn(usize, &Recorded) -> Vec<Step> + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let closed: Arc<AtomicUsize> = Arc::default();
        let counted = closed.clone();
        // The threads end with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                let recorded = recorded.clone();
                let counted = counted.clone();
                std::thread::spawn(move || {
                    serve(stream, &*handler, &recorded);
                    counted.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        TestServer { addr, requests, closed }
    }

    /// How many connections the server has answered and closed so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits (10 s at most) until the server has answered and closed `n` connections.
    pub fn wait_closed(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.closed() < n {
            assert!(
                Instant::now() < deadline,
                "the test server did not close {n} connections"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn url(&self, path: &str) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, handler: &Handler, recorded: &Mutex<Vec<Recorded>>) {
    let _ = stream.set_nodelay(true);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let target = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let request = Recorded { target, headers };
    let index = {
        let mut r = recorded.lock().unwrap();
        r.push(request.clone());
        r.len() - 1
    };
    for step in handler(index, &request) {
        match step {
            Step::Send(bytes) => {
                if stream.write_all(&bytes).is_err() {
                    return;
                }
                let _ = stream.flush();
            }
            Step::Sleep(d) => std::thread::sleep(d),
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// A complete response with a Content-Length.
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = head(status, headers);
    out.truncate(out.len() - 2);
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// A status line and headers, with `Connection: close` and no length: the
/// body (sent next) ends when the connection does, as with Orthanc's WADO-RS.
pub fn head(status: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

pub const BOUNDARY: &str = "XyZzY0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01";

pub fn multipart_content_type() -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}")
}

/// One part: delimiter, headers, body (without the CRLF that ends it).
pub fn part(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-Length: {}\r\nMIME-Version: 1.0\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

pub fn closing() -> Vec<u8> {
    format!("\r\n--{BOUNDARY}--\r\n").into_bytes()
}
