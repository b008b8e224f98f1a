//! An OAuth2 token endpoint (client-credentials grant, RFC 6749 §4.4) on loopback, issuing
//! short-lived tokens, and the cloud in front of it: the fault proxy before Orthanc, letting
//! through only requests that carry a live token the endpoint issued (and sending Orthanc its
//! own Basic credentials instead).
//!
//! Thread-based and bounded like the proxy: one thread per connection, every connection closed
//! after its answer, everything stopped when the server is dropped.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::proxy::Proxy;
use super::{Orthanc, PASSWORD, USER};

const MAX_REQUEST: usize = 64 * 1024;

/// One request the token endpoint received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The form fields, decoded.
    pub form: Vec<(String, String)>,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
}

impl TokenRequest {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

struct Issued {
    token: String,
    until: Instant,
    revoked: bool,
}

struct State {
    client_id: String,
    client_secret: String,
    lifetime: Duration,
    issued: Mutex<Vec<Issued>>,
    requests: Mutex<Vec<TokenRequest>>,
    /// Requests the cloud refused for their token.
    refused: AtomicUsize,
    /// Requests the cloud let through.
    authorised: AtomicUsize,
    /// The cloud revokes the token of its n-th authorised request (1-based) and refuses it.
    revoke_at: AtomicUsize,
    /// Token requests still to be answered 503 (with `Retry-After: 0`).
    unavailable: AtomicUsize,
    stop: AtomicBool,
}

impl State {
    /// Whether `authorization` is `Bearer T` with T a live token issued here.
    fn is_live(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        let mut issued = self.issued.lock().unwrap();
        let Some(found) = issued.iter_mut().find(|i| i.token == token) else {
            return false;
        };
        if found.revoked || Instant::now() >= found.until {
            return false;
        }
        let n = self.authorised.load(Ordering::SeqCst) + 1;
        if self.revoke_at.load(Ordering::SeqCst) == n {
            found.revoked = true;
            self.revoke_at.store(0, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// The token endpoint; stops when dropped.
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// An endpoint that issues tokens living `lifetime` to the client `client_id` with
    /// `client_secret` (HTTP Basic, form-encoded first, or in the form).
    pub fn start(client_id: &str, client_secret: &str, lifetime: Duration) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token endpoint on 127.0.0.1:0");
        let addr = listener.local_addr().expect("token endpoint address");
        let state = Arc::new(State {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            lifetime,
            issued: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            refused: AtomicUsize::new(0),
            authorised: AtomicUsize::new(0),
            revoke_at: AtomicUsize::new(0),
            unavailable: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name("token-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_state.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let conn_state = Arc::clone(&accept_state);
                    let _ = std::thread::Builder::new()
                        .name("token-conn".into())
                        .spawn(move || answer(stream, &conn_state));
                }
            })
            .expect("spawn the token endpoint thread");
        TokenServer {
            addr,
            state,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT/oauth2/token`
    pub fn url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }

    /// How many tokens were issued so far.
    pub fn issued(&self) -> usize {
        self.state.issued.lock().unwrap().len()
    }

    /// Every token issued so far (to check that none is ever shown).
    pub fn tokens(&self) -> Vec<String> {
        self.state
            .issued
            .lock()
            .unwrap()
            .iter()
            .map(|i| i.token.clone())
            .collect()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests the cloud of [`TokenServer::cloud`] refused for their token.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// The next `n` token requests are answered 503 Service Unavailable, `Retry-After: 0`.
    pub fn unavailable_for(&self, n: usize) {
        self.state.unavailable.store(n, Ordering::SeqCst);
    }

    /// The cloud revokes the still-valid token of its `n`-th request from now and refuses it.
    pub fn revoke_at_request(&self, n: usize) {
        let done = self.state.authorised.load(Ordering::SeqCst);
        self.state.revoke_at.store(done + n, Ordering::SeqCst);
    }

    /// The cloud that takes this endpoint's tokens: a proxy in front of `orthanc` that lets
    /// through only requests with a live, unrevoked token issued here.
    pub fn cloud(&self, orthanc: &Orthanc) -> Proxy {
        let proxy = Proxy::to(orthanc);
        let state = Arc::clone(&self.state);
        let basic = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
        proxy.authorise(Arc::new(move |authorization| {
            if state.is_live(authorization) {
                state.authorised.fetch_add(1, Ordering::SeqCst);
                Some(basic.clone())
            } else {
                state.refused.fetch_add(1, Ordering::SeqCst);
                None
            }
        }));
        proxy
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Reads one request, answers it, closes.
fn answer(mut stream: TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = header(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break (head, buf[end + 4..end + 4 + length].to_vec());
            }
        }
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 && buf.len() < MAX_REQUEST => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let request = TokenRequest {
        form: url::form_urlencoded::parse(&body).into_owned().collect(),
        authorization: header(&head, "authorization").map(str::to_owned),
    };
    state.requests.lock().unwrap().push(request.clone());
    let unavailable = state
        .unavailable
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let (status, json) = if unavailable {
        (503, serde_json::json!({"error": "temporarily_unavailable"}))
    } else if !head.starts_with("POST ") || request.field("grant_type") != Some("client_credentials") {
        (400, serde_json::json!({"error": "unsupported_grant_type"}))
    } else if client_of(&request).as_ref() != Some(&(state.client_id.clone(), state.client_secret.clone())) {
        (
            401,
            serde_json::json!({"error": "invalid_client", "error_description": "client authentication failed"}),
        )
    } else {
        let n = state.issued.lock().unwrap().len();
        let mut random = RandomState::new().build_hasher();
        random.write_usize(n);
        let token = format!("tok-{n}-{:016x}", random.finish());
        state.issued.lock().unwrap().push(Issued {
            token: token.clone(),
            until: Instant::now() + state.lifetime,
            revoked: false,
        });
        (
            200,
            serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": state.lifetime.as_secs()}),
        )
    };
    let body = json.to_string();
    let reason = if status == 200 { "OK" } else { "Error" };
    let retry_after = if status == 503 { "Retry-After: 0\r\n" } else { "" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         {retry_after}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// The client id and secret of a request: HTTP Basic (each form-encoded, RFC 6749 §2.3.1),
/// else the form's `client_id` and `client_secret`.
fn client_of(request: &TokenRequest) -> Option<(String, String)> {
    if let Some(encoded) = request.authorization.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
        let decoded = String::from_utf8(unbase64(encoded.trim())?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let form_decoded = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((form_decoded(id)?, form_decoded(secret)?));
    }
    Some((
        request.field("client_id")?.to_owned(),
        request.field("client_secret")?.to_owned(),
    ))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}
