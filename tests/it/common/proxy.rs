//! A fault-injecting HTTP/1.1 proxy between `retriever` and Orthanc, so tests can make the
//! cloud misbehave on purpose: cut a download mid-multipart, answer 503 with Retry-After, stall
//! a body, refuse the credentials, or rewrite bytes of a response (a UID swapped for another of
//! the same length, so Content-Length stays right), or answer QIDO-RS searches the way servers
//! with other habits do (capped pages, an ignored `offset` or matching key).
//!
//! Thread-based and bounded: it listens on 127.0.0.1:0, serves each client connection on its own
//! thread with one upstream connection, and everything ends within a fraction of a second once the
//! proxy is dropped. Responses are framed the way Orthanc frames them: Content-Length, chunked, or
//! (WADO-RS in Orthanc 1.10) `Connection: close` with the body running to EOF.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often blocked reads wake up to look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// A connection with no traffic for this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(120);
const MAX_HEAD: usize = 64 * 1024;

/// What the proxy does to a request that a rule matches.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forward it unchanged (useful to count requests of one kind).
    PassThrough,
    /// Forward the response head and this many body bytes, then close the connection.
    CutAfter(usize),
    /// Answer this instead of asking upstream (the request body is read and discarded).
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Forward the head and `after` body bytes, then send nothing for `duration` (or until
    /// the proxy is dropped), then close.
    Stall { after: usize, duration: Duration },
    /// Forward the response with every occurrence of each `from` replaced by its `to` (same
    /// length) in the body.
    Rewrite(Vec<(Vec<u8>, Vec<u8>)>),
    /// Wait this long, then forward unchanged (a slow server).
    Delay(Duration),
    /// Answer a QIDO-RS search as a server with other habits would: remove the query parameters
    /// named in `ignore` before asking upstream (a server that ignores `offset`, or a matching
    /// key it does not support), then keep at most `cap` results of the JSON answer, adding
    /// `Warning: 299 ... additional results` when `warn` and results were cut.
    Qido {
        ignore: Vec<String>,
        cap: Option<usize>,
        warn: bool,
    },
    /// Answer 200 with these headers and a body that never ends: `start`, then zero bytes
    /// until the client goes away or the proxy is dropped.
    Endless {
        headers: Vec<(String, String)>,
        start: Vec<u8>,
    },
}

impl Fault {
    /// 503 Service Unavailable with `Retry-After: SECS`.
    pub fn unavailable(retry_after_secs: u32) -> Fault {
        Fault::Respond {
            status: 503,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: b"unavailable (injected by the test proxy)\n".to_vec(),
        }
    }

    /// 429 Too Many Requests with `Retry-After: SECS`.
    pub fn too_many_requests(retry_after_secs: u32) -> Fault {
        Fault::Respond {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_secs.to_string())],
            body: b"slow down (injected by the test proxy)\n".to_vec(),
        }
    }

    /// 401 Unauthorized with a Basic challenge.
    pub fn unauthorized() -> Fault {
        Fault::Respond {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), "Basic realm=\"test\"".into())],
            body: Vec::new(),
        }
    }

    /// Replace `from` by `to` (which must have the same length) in response bodies.
    pub fn rewrite(from: &str, to: &str) -> Fault {
        Fault::Rewrite(vec![pair(from.as_bytes(), to.as_bytes())])
    }

    pub fn stall(after: usize, duration: Duration) -> Fault {
        Fault::Stall { after, duration }
    }
}

fn pair(from: &[u8], to: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(
        from.len(),
        to.len(),
        "a rewrite keeps the length (Content-Length must stay valid)"
    );
    assert!(!from.is_empty(), "nothing to rewrite");
    (from.to_vec(), to.to_vec())
}

/// Which requests a fault applies to, and how many times.
#[derive(Clone, Debug)]
pub struct Rule {
    fault: Fault,
    path_contains: Option<String>,
    times: Option<usize>,
}

impl Rule {
    /// Applies `fault` to every request, until narrowed down.
    pub fn new(fault: Fault) -> Rule {
        Rule {
            fault,
            path_contains: None,
            times: None,
        }
    }

    /// Only requests whose target (path and query) contains `needle`.
    pub fn path_contains(mut self, needle: &str) -> Rule {
        self.path_contains = Some(needle.to_owned());
        self
    }

    /// Only the first `k` matching requests; later ones fall through to the next rule.
    pub fn times(mut self, k: usize) -> Rule {
        self.times = Some(k);
        self
    }

    fn matches(&self, target: &str) -> bool {
        self.path_contains
            .as_deref()
            .is_none_or(|needle| target.contains(needle))
    }
}

pub type RuleId = usize;

/// Decides on a request's `Authorization` header (if any): `Some(value)` forwards the request
/// with that header instead, `None` answers 401 with a Bearer challenge. For a cloud that takes
/// only the access tokens its token endpoint issued (see `oauth.rs`).
pub type Authoriser = Arc<dyn Fn(Option<&str>) -> Option<String> + Send + Sync>;

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct RequestSeen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Request headers, names lowercased (to check Accept, Authorization, ...).
    pub headers: Vec<(String, String)>,
}

impl RequestSeen {
    /// The value of a request header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

struct RuleState {
    id: RuleId,
    rule: Rule,
    hits: usize,
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<RuleState>>,
    seen: Mutex<Vec<RequestSeen>>,
    /// Local ports of the upstream connections opened so far.
    upstream_ports: Mutex<Vec<u16>>,
    next_id: AtomicUsize,
    stop: AtomicBool,
    authoriser: Mutex<Option<Authoriser>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The first rule that matches and has uses left decides; it counts the hit.
    fn choose(&self, method: &str, target: &str, head: &Head) -> Fault {
        let mut rules = self.rules.lock().unwrap();
        let chosen = rules
            .iter_mut()
            .find(|r| r.rule.matches(target) && r.rule.times.is_none_or(|k| r.hits < k));
        let fault = match chosen {
            Some(r) => {
                r.hits += 1;
                r.rule.fault.clone()
            }
            None => Fault::PassThrough,
        };
        self.seen.lock().unwrap().push(RequestSeen {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: head.headers.clone(),
        });
        fault
    }
}

/// The proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy in front of `upstream`, passing everything through until rules are added.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            upstream_ports: Mutex::new(Vec::new()),
            next_id: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            authoriser: Mutex::new(None),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_shared.stopped() {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let conn_shared = Arc::clone(&accept_shared);
                    let _ = std::thread::Builder::new()
                        .name("proxy-conn".into())
                        .spawn(move || serve(stream, &conn_shared));
                }
            })
            .expect("spawn the proxy thread");
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// A proxy in front of an Orthanc's HTTP port.
    pub fn to(orthanc: &super::Orthanc) -> Proxy {
        Proxy::start(orthanc.http_addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/dicom-web`, for `retriever --cloud`.
    pub fn dicomweb_url(&self) -> String {
        format!("{}/dicom-web", self.url())
    }

    /// Adds a rule after the existing ones (the first matching rule with uses left applies).
    pub fn add(&self, rule: Rule) -> RuleId {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared.rules.lock().unwrap().push(RuleState { id, rule, hits: 0 });
        id
    }

    /// From now on every request must pass `authoriser` (see [`Authoriser`]).
    pub fn authorise(&self, authoriser: Authoriser) {
        *self.shared.authoriser.lock().unwrap() = Some(authoriser);
    }

    /// Removes every rule: everything passes through again.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// How many requests the rule has applied to.
    pub fn hits(&self, id: RuleId) -> usize {
        self.shared
            .rules
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.hits)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RequestSeen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// How many QIDO-RS study searches whose target contains `what` passed so far, counting the
    /// first page of each (a retrieve has no query string, a search of many studies has several
    /// pages).
    pub fn study_searches(&self, what: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.target.contains(what))
            .filter(|r| r.target.ends_with("offset=0") || r.target.contains("offset=0&"))
            .count()
    }

    /// Whether the upstream server has closed every connection the proxy opened to it (none
    /// is established any more, seen in /proc): a kept-alive connection it timed out, say.
    pub fn upstream_closed_all(&self) -> bool {
        let upstream = self.shared.upstream.port();
        let ports = self.shared.upstream_ports.lock().unwrap();
        !ports.is_empty() && !ports.iter().any(|&port| super::is_established(port, upstream))
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// A socket with buffered input whose reads wake up to check the stop flag.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

enum ReadError {
    Closed,
    Stopped,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(POLL));
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; false at EOF.
    fn fill(&mut self, shared: &Shared) -> Result<(), ReadError> {
        let mut chunk = [0u8; 64 * 1024];
        let idle_since = Instant::now();
        loop {
            if shared.stopped() {
                return Err(ReadError::Stopped);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if idle_since.elapsed() > IDLE_LIMIT {
                        return Err(ReadError::Closed);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// Reads up to the end of a message head (`\r\n\r\n`) and returns it, leaving the rest.
    fn read_head(&mut self, shared: &Shared) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return Ok(head);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Closed);
            }
            self.fill(shared)?;
        }
    }

    /// Takes exactly `n` bytes.
    fn take_exact(&mut self, n: usize, shared: &Shared) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            self.fill(shared)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes whatever is available (at least one byte), at most `max`.
    fn take_some(&mut self, max: usize, shared: &Shared) -> Result<Vec<u8>, ReadError> {
        if self.buf.is_empty() {
            self.fill(shared)?;
        }
        let n = self.buf.len().min(max);
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes one CRLF-terminated line (with its CRLF).
    fn take_line(&mut self, shared: &Shared) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                return Ok(self.buf.drain(..pos + 2).collect());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Closed);
            }
            self.fill(shared)?;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Head {
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Option<Head> {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.split("\r\n");
        let first_line = lines.next()?.to_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Head { first_line, headers })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn content_length(&self) -> Option<usize> {
        self.get("content-length").and_then(|v| v.parse().ok())
    }
}

enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

fn serve(client: TcpStream, shared: &Shared) {
    let mut client = Conn::new(client);
    let mut upstream: Option<Conn> = None;
    loop {
        let Ok(raw_head) = client.read_head(shared) else {
            return;
        };
        let Some(head) = Head::parse(&raw_head) else {
            return;
        };
        let mut parts = head.first_line.split(' ');
        let method = parts.next().unwrap_or_default().to_ascii_uppercase();
        let target = parts.next().unwrap_or_default().to_owned();
        if head.has_token("transfer-encoding", "chunked") {
            // Not needed by the tests: retriever sends no request bodies.
            let _ = client
                .stream
                .write_all(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        let Ok(body) = client.take_exact(head.content_length().unwrap_or(0), shared) else {
            return;
        };
        let client_close = head.has_token("connection", "close");
        let fault = shared.choose(&method, &target, &head);
        let authoriser = shared.authoriser.lock().unwrap().clone();
        let raw_head = match authoriser.map(|a| a(head.get("authorization"))) {
            None => raw_head,
            Some(Some(value)) => with_authorization(&raw_head, &value),
            Some(None) => {
                let mut refusal = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\n\
                                   Content-Length: 0\r\n"
                    .to_string();
                if client_close {
                    refusal.push_str("Connection: close\r\n");
                }
                refusal.push_str("\r\n");
                if client.stream.write_all(refusal.as_bytes()).is_err() || client_close {
                    return;
                }
                continue;
            }
        };

        match &fault {
            Fault::Respond { status, headers, body } => {
                let mut response = format!("HTTP/1.1 {status} {}\r\n", reason(*status));
                for (k, v) in headers {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str(&format!("Content-Length: {}\r\n", body.len()));
                if client_close {
                    response.push_str("Connection: close\r\n");
                }
                response.push_str("\r\n");
                let mut bytes = response.into_bytes();
                if method != "HEAD" {
                    bytes.extend_from_slice(body);
                }
                if client.stream.write_all(&bytes).is_err() || client_close {
                    return;
                }
                continue;
            }
            Fault::Delay(duration) if !sleep_unless_stopped(*duration, shared) => return,
            Fault::Endless { headers, start } => {
                let mut response = "HTTP/1.1 200 OK\r\n".to_string();
                for (k, v) in headers {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("Connection: close\r\n\r\n");
                let zeros = vec![0u8; 64 * 1024];
                let mut sent = client
                    .stream
                    .write_all(response.as_bytes())
                    .and_then(|()| client.stream.write_all(start));
                while sent.is_ok() && !shared.stopped() {
                    sent = client.stream.write_all(&zeros);
                }
                let _ = client.stream.shutdown(Shutdown::Both);
                return;
            }
            _ => {}
        }

        let raw_head = match &fault {
            Fault::Qido { ignore, .. } => without_params(&raw_head, ignore),
            _ => raw_head,
        };

        // Forward over this client's upstream connection. A kept-alive upstream connection may
        // have been closed by the server meanwhile: then the request is sent again on a new one.
        let mut raw_response = None;
        for _ in 0..2 {
            let reused = upstream.is_some();
            if upstream.is_none() {
                match TcpStream::connect(shared.upstream) {
                    Ok(s) => {
                        if let Ok(local) = s.local_addr() {
                            shared.upstream_ports.lock().unwrap().push(local.port());
                        }
                        upstream = Some(Conn::new(s));
                    }
                    Err(_) => {
                        let _ = client
                            .stream
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return;
                    }
                }
            }
            let up = upstream.as_mut().unwrap();
            let sent = up.stream.write_all(&raw_head).is_ok() && up.stream.write_all(&body).is_ok();
            match (sent, sent.then(|| up.read_head(shared))) {
                (true, Some(Ok(head))) => {
                    raw_response = Some(head);
                    break;
                }
                (_, Some(Err(ReadError::Stopped))) => return,
                _ if reused && up.buf.is_empty() => upstream = None,
                _ => return,
            }
        }
        let Some(raw_response) = raw_response else {
            return;
        };
        let up = upstream.as_mut().unwrap();
        let Some(response) = Head::parse(&raw_response) else {
            return;
        };
        let status: u16 = response
            .first_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let framing = if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::None
        } else if response.has_token("transfer-encoding", "chunked") {
            Framing::Chunked
        } else if let Some(n) = response.content_length() {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let server_close = response.has_token("connection", "close");
        if let Fault::Qido {
            cap: Some(cap), warn, ..
        } = &fault
        {
            let Some(body) = read_body(up, &framing, shared) else {
                return;
            };
            let (head, body) = capped(&response, body, *cap, *warn);
            if client.stream.write_all(&head).is_err() || client.stream.write_all(&body).is_err() {
                return;
            }
            if matches!(framing, Framing::UntilClose) || server_close || client_close {
                let _ = client.stream.shutdown(Shutdown::Write);
                return;
            }
            continue;
        }
        if client.stream.write_all(&raw_response).is_err() {
            return;
        }

        let mut sink = BodySink::new(&mut client.stream, &fault);
        let finished = match framing {
            Framing::None => Ok(()),
            Framing::Length(n) => copy_length(up, n, &mut sink, shared),
            Framing::Chunked => copy_chunked(up, &mut sink, shared),
            Framing::UntilClose => copy_until_close(up, &mut sink, shared),
        };
        let finished = finished.and_then(|()| sink.finish());
        match finished {
            Ok(()) => {}
            Err(Stop::Stall) => {
                let duration = match fault {
                    Fault::Stall { duration, .. } => duration,
                    _ => Duration::ZERO,
                };
                sleep_unless_stopped(duration, shared);
                let _ = client.stream.shutdown(Shutdown::Both);
                return;
            }
            Err(Stop::Close) => {
                let _ = client.stream.shutdown(Shutdown::Both);
                return;
            }
        }
        if matches!(framing, Framing::UntilClose) || server_close || client_close {
            let _ = client.stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

enum Stop {
    /// Close the client connection now (cut, or a peer went away).
    Close,
    /// Stall, then close.
    Stall,
}

/// Writes a response body to the client, applying the fault: rewriting, cutting, stalling.
struct BodySink<'a> {
    client: &'a mut TcpStream,
    /// Body bytes still allowed through before the cut or stall.
    budget: Option<usize>,
    stall: bool,
    rewrites: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes held back because a rewrite pattern may continue in the next read.
    pending: Vec<u8>,
}

impl<'a> BodySink<'a> {
    fn new(client: &'a mut TcpStream, fault: &Fault) -> BodySink<'a> {
        let (budget, stall, rewrites) = match fault {
            Fault::CutAfter(n) => (Some(*n), false, Vec::new()),
            Fault::Stall { after, .. } => (Some(*after), true, Vec::new()),
            Fault::Rewrite(pairs) => (None, false, pairs.clone()),
            _ => (None, false, Vec::new()),
        };
        BodySink {
            client,
            budget,
            stall,
            rewrites,
            pending: Vec::new(),
        }
    }

    fn stop(&self) -> Stop {
        if self.stall { Stop::Stall } else { Stop::Close }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), Stop> {
        if self.rewrites.is_empty() {
            return self.emit(data);
        }
        self.pending.extend_from_slice(data);
        for (from, to) in &self.rewrites {
            let mut at = 0;
            while let Some(pos) = find(&self.pending[at..], from) {
                let start = at + pos;
                self.pending[start..start + to.len()].copy_from_slice(to);
                at = start + to.len();
            }
        }
        let keep = self.rewrites.iter().map(|(f, _)| f.len() - 1).max().unwrap_or(0);
        if self.pending.len() > keep {
            let ready: Vec<u8> = self.pending.drain(..self.pending.len() - keep).collect();
            self.emit(&ready)?;
        }
        Ok(())
    }

    fn emit(&mut self, data: &[u8]) -> Result<(), Stop> {
        let (data, exhausted) = match self.budget {
            Some(left) if data.len() >= left => (&data[..left], true),
            _ => (data, false),
        };
        if let Some(left) = self.budget.as_mut() {
            *left -= data.len();
        }
        if !data.is_empty() && self.client.write_all(data).is_err() {
            return Err(Stop::Close);
        }
        if exhausted {
            let _ = self.client.flush();
            return Err(self.stop());
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Stop> {
        let rest = std::mem::take(&mut self.pending);
        self.emit(&rest)?;
        // A cut or stall at exactly the body's length still applies.
        if self.budget == Some(0) {
            return Err(self.stop());
        }
        Ok(())
    }
}

fn copy_length(up: &mut Conn, n: usize, sink: &mut BodySink, shared: &Shared) -> Result<(), Stop> {
    let mut left = n;
    while left > 0 {
        let data = up.take_some(left, shared).map_err(|_| Stop::Close)?;
        left -= data.len();
        sink.write(&data)?;
    }
    Ok(())
}

fn copy_chunked(up: &mut Conn, sink: &mut BodySink, shared: &Shared) -> Result<(), Stop> {
    loop {
        let line = up.take_line(shared).map_err(|_| Stop::Close)?;
        sink.write(&line)?;
        let size_text = String::from_utf8_lossy(&line);
        let size_text = size_text.trim().split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| Stop::Close)?;
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let trailer = up.take_line(shared).map_err(|_| Stop::Close)?;
                sink.write(&trailer)?;
                if trailer == b"\r\n" {
                    return Ok(());
                }
            }
        }
        copy_length(up, size + 2, sink, shared)?;
    }
}

fn copy_until_close(up: &mut Conn, sink: &mut BodySink, shared: &Shared) -> Result<(), Stop> {
    loop {
        match up.take_some(usize::MAX, shared) {
            Ok(data) => sink.write(&data)?,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Stopped) => return Err(Stop::Close),
        }
    }
}

/// The request head with its `Authorization` header replaced by (or given) `value`.
fn with_authorization(raw_head: &[u8], value: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw_head);
    let mut lines: Vec<String> = text
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("authorization:"))
        .map(str::to_owned)
        .collect();
    lines.push(format!("Authorization: {value}"));
    format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
}

/// Sleeps for `duration` in short steps; false if the proxy was stopped meanwhile.
fn sleep_unless_stopped(duration: Duration, shared: &Shared) -> bool {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        if shared.stopped() {
            return false;
        }
        std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
    }
    !shared.stopped()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

// ---------------------------------------------------------------------------------------------
// QIDO-RS answers of other habits (`Fault::Qido`)

impl Fault {
    /// A server that ignores these query parameters (e.g. `offset`, or `AccessionNumber`).
    pub fn ignore_params(names: &[&str]) -> Fault {
        Fault::Qido {
            ignore: names.iter().map(|n| n.to_string()).collect(),
            cap: None,
            warn: false,
        }
    }

    /// A server that sends at most `cap` results per answer, saying so in a `Warning` if `warn`.
    pub fn cap_results(cap: usize, warn: bool) -> Fault {
        Fault::Qido {
            ignore: Vec::new(),
            cap: Some(cap),
            warn,
        }
    }
}

/// The request head with the query parameters named in `ignore` taken out of its target.
fn without_params(raw_head: &[u8], ignore: &[String]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw_head);
    let (first, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
    let mut words: Vec<&str> = first.split(' ').collect();
    let Some((path, query)) = words.get(1).and_then(|t| t.split_once('?')) else {
        return raw_head.to_vec();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !ignore.iter().any(|name| p.split('=').next() == Some(name.as_str())))
        .collect();
    let target = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    words[1] = &target;
    format!("{}\r\n{rest}", words.join(" ")).into_bytes()
}

/// The whole response body, de-chunked; `None` if the connection failed.
fn read_body(up: &mut Conn, framing: &Framing, shared: &Shared) -> Option<Vec<u8>> {
    match framing {
        Framing::None => Some(Vec::new()),
        Framing::Length(n) => up.take_exact(*n, shared).ok(),
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let line = up.take_line(shared).ok()?;
                let size_text = String::from_utf8_lossy(&line);
                let size_text = size_text.trim().split(';').next().unwrap_or("").trim().to_owned();
                let size = usize::from_str_radix(&size_text, 16).ok()?;
                if size == 0 {
                    while up.take_line(shared).ok()? != b"\r\n" {}
                    return Some(body);
                }
                let chunk = up.take_exact(size + 2, shared).ok()?;
                body.extend_from_slice(&chunk[..size]);
            }
        }
        Framing::UntilClose => {
            let mut body = Vec::new();
            loop {
                match up.take_some(usize::MAX, shared) {
                    Ok(data) => body.extend_from_slice(&data),
                    Err(ReadError::Closed) => return Some(body),
                    Err(ReadError::Stopped) => return None,
                }
            }
        }
    }
}

/// The response with at most `cap` results of its JSON array (anything else passes unchanged),
/// framed with a Content-Length, and a `Warning` when `warn` and results were cut.
fn capped(response: &Head, body: Vec<u8>, cap: usize, warn: bool) -> (Vec<u8>, Vec<u8>) {
    let mut cut = false;
    let body = match serde_json::from_slice::<Vec<serde_json::Value>>(&body) {
        Ok(mut results) if results.len() > cap => {
            results.truncate(cap);
            cut = true;
            serde_json::to_vec(&results).expect("serialise JSON")
        }
        _ => body,
    };
    let mut head = format!("{}\r\n", response.first_line);
    for (k, v) in &response.headers {
        if k != "content-length" && k != "transfer-encoding" {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if cut && warn {
        head.push_str("Warning: 299 test-proxy: There are additional results that can be requested\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    (head.into_bytes(), body)
}
