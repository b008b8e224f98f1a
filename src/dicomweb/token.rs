//! Access tokens that renew themselves, for clouds that hand out short-lived
//! tokens instead of taking a password (Google Cloud Healthcare, Azure Health
//! Data Services, vendor clouds behind an OIDC server): an OAuth2
//! client-credentials grant (RFC 6749 §4.4), or a command that prints a token
//! (`gcloud auth print-access-token`).
//!
//! One [`Tokens`] is shared by every request thread, and by the clients made
//! for other transfer syntaxes: one renewal runs at a time and the others
//! wait for it. A token is renewed before it runs out ([`renew_after`]) and
//! once more when the cloud refuses it ([`Tokens::refused`]), so that a
//! `watch` running for days never fails because a token expired
//! (dcm4chee-arc-light #1738: tokens expiring in the middle of a study).
//!
//! What the token endpoint and the command send is hostile like anything
//! from the network: bounded in size and time, checked before use, and shown
//! only escaped and cut. The client secret and the tokens are never shown.

use std::fmt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, anyhow, bail};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::client::LoginRefused;
use super::http::{Lanes, SendError};
use super::retry::{backoff, is_transient_status, parse_retry_after};
use crate::interrupt::{self, Interrupted};

/// How long a token from the token command is used, since a command gives
/// no expiry; also the life assumed of an OAuth2 token whose answer has no
/// `expires_in`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// How long the token command may run before it is stopped.
pub const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest answer read from the token endpoint; a token answer is a few KiB.
const MAX_ANSWER: u64 = 64 * 1024;
/// Longest access token taken (JWTs with many claims run to a few KiB).
const MAX_TOKEN: usize = 16 * 1024;
/// Longest `expires_in` believed: a token is renewed at least daily.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The whole exchange with the token endpoint, answer included: it is small,
/// so this is a deadline, unlike the idle timeouts of the cloud's transfers.
const TOKEN_DEADLINE: Duration = Duration::from_secs(30);
/// How much of the token command's stderr is kept (its end) and shown.
const MAX_STDERR: usize = 4096;
const STDERR_LINES: usize = 5;
/// How long the command's output may stay open once it has exited (a
/// process it started in the background may hold it).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// How the client id and secret go to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic, the way every server must accept.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form, for servers that refuse Basic.
    Body,
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::Basic => "basic",
            ClientAuth::Body => "body",
        })
    }
}

/// An OAuth2 client-credentials grant.
#[derive(Clone)]
pub struct OAuth2 {
    /// https, or loopback (checked by `config`, as the cloud URL is).
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
}

/// A command whose standard output is the access token.
#[derive(Clone)]
pub struct TokenCommand {
    /// Run by the platform's shell: `sh -c` on Unix, `cmd /C` on Windows.
    pub command: String,
    /// How long its token is used before the command is run again.
    pub lifetime: Duration,
    pub timeout: Duration,
}

/// Where tokens come from.
#[derive(Clone)]
pub enum Origin {
    OAuth2(OAuth2),
    Command(TokenCommand),
}

/// The token in use, renewed when needed; cheap to clone, clones share it.
#[derive(Clone)]
pub struct Tokens(Arc<Shared>);

struct Shared {
    origin: Origin,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    renewing: bool,
    /// Renewals started so far; a waiter knows by it whether the one it
    /// waited for failed.
    rounds: u64,
    /// The last renewal that failed, and why (the message only: the error
    /// itself goes to the thread that renewed).
    failed: Option<(u64, String, bool)>,
    /// Threads waiting for a renewal, for the tests to know when they all are.
    #[cfg(test)]
    waiting: usize,
}

struct Live {
    token: String,
    renew_at: Instant,
    round: u64,
}

/// A token handed to a request; [`Tokens::refused`] takes it back.
pub struct Lease {
    pub(super) token: String,
    round: u64,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lease(token redacted, renewal {})", self.round)
    }
}

/// A token as issued, with how long it lives.
#[derive(PartialEq, Eq)]
pub(super) struct Issued {
    pub token: String,
    pub lifetime: Duration,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Issued(token redacted, {:?})", self.lifetime)
    }
}

/// What fetching a token needs of the client: a way to reach the token
/// endpoint, and the cloud's retry settings for its transient failures.
pub(super) struct Fetch<'a> {
    pub lanes: Option<&'a Lanes>,
    pub retries: u32,
    pub backoff: Duration,
}

impl Tokens {
    pub fn new(origin: Origin) -> Tokens {
        Tokens(Arc::new(Shared {
            origin,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }))
    }

    pub fn origin(&self) -> &Origin {
        &self.0.origin
    }

    /// The token endpoint, if tokens come from one.
    pub fn token_url(&self) -> Option<&Url> {
        match &self.0.origin {
            Origin::OAuth2(o) => Some(&o.token_url),
            Origin::Command(_) => None,
        }
    }

    /// A token that is not due for renewal, renewing it first if it is.
    pub(super) fn get(&self, fetch: &Fetch<'_>) -> Result<Lease> {
        self.get_with(|| match &self.0.origin {
            Origin::OAuth2(o) => request_token(o, fetch),
            Origin::Command(c) => run_command(c),
        })
    }

    /// The cloud refused the token of `lease`: the next [`Tokens::get`]
    /// renews it, unless another request has renewed it already.
    pub(super) fn refused(&self, lease: &Lease) {
        let mut state = self.lock();
        if state.live.as_ref().is_some_and(|l| l.round == lease.round) {
            state.live = None;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Tokens::get`] with the renewal given, for the tests.
    fn get_with(&self, renew: impl FnOnce() -> Result<Issued>) -> Result<Lease> {
        let mut state = self.lock();
        let mut waited_for = None;
        loop {
            if let Some(live) = &state.live
                && Instant::now() < live.renew_at
            {
                return Ok(Lease {
                    token: live.token.clone(),
                    round: live.round,
                });
            }
            if let Some(round) = waited_for
                && let Some((failed, why, refused)) = &state.failed
                && *failed == round
            {
                // The renewal this thread waited for failed: so would its own.
                return Err(if *refused {
                    anyhow::Error::new(LoginRefused(why.clone()))
                } else {
                    anyhow!("{why}")
                });
            }
            if !state.renewing {
                break;
            }
            waited_for = Some(state.rounds);
            #[cfg(test)]
            {
                state.waiting += 1;
            }
            state = self.0.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            #[cfg(test)]
            {
                state.waiting -= 1;
            }
        }
        state.renewing = true;
        state.rounds += 1;
        let round = state.rounds;
        drop(state);
        let renewed = renew();
        let mut state = self.lock();
        state.renewing = false;
        let result = match renewed {
            Ok(issued) => {
                state.live = Some(Live {
                    token: issued.token.clone(),
                    renew_at: Instant::now() + renew_after(issued.lifetime),
                    round,
                });
                Ok(Lease {
                    token: issued.token,
                    round,
                })
            }
            Err(e) => {
                let refused = e.chain().any(|c| c.is::<LoginRefused>());
                state.failed = Some((round, format!("{e:#}"), refused));
                Err(e)
            }
        };
        self.0.changed.notify_all();
        result
    }
}

impl fmt::Debug for Tokens {
    // Neither the client secret nor a token ever reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.origin {
            Origin::OAuth2(o) => write!(
                f,
                "oauth2 (client `{}` at `{}`, secret and token redacted)",
                o.client_id, o.token_url
            ),
            Origin::Command(c) => write!(
                f,
                "token command (renewed every {}, token redacted)",
                crate::format::setting_duration(c.lifetime)
            ),
        }
    }
}

/// How long after it was issued a token of this lifetime is renewed: at 90 %
/// of its life or 60 s before its end, whichever is earlier, but never
/// before half of it, so that a short-lived token is not renewed for every
/// request.
pub fn renew_after(lifetime: Duration) -> Duration {
    let ninety = lifetime.mul_f64(0.9);
    let minute_before = lifetime.saturating_sub(Duration::from_secs(60));
    ninety.min(minute_before).max(lifetime / 2)
}

// --- OAuth2 ---------------------------------------------------------------

/// One failed request to the token endpoint: what happened, what to do,
/// and whether asking again may help.
struct Attempt {
    what: String,
    hint: &'static str,
    kind: Kind,
    retry_after: Option<Duration>,
}

#[derive(PartialEq, Eq)]
enum Kind {
    /// May pass: 5xx, 429, no connection.
    Transient,
    Permanent,
    /// The endpoint refused the client: a [`LoginRefused`].
    Refused,
    Interrupted,
}

impl Attempt {
    fn new(kind: Kind, what: String, hint: &'static str) -> Attempt {
        Attempt {
            what,
            hint,
            kind,
            retry_after: None,
        }
    }

    fn interrupted() -> Attempt {
        Attempt::new(Kind::Interrupted, String::new(), "")
    }

    fn into_error(self, tries: u32) -> anyhow::Error {
        let after = if tries > 1 {
            format!(" after {tries} attempts")
        } else {
            String::new()
        };
        let message = format!("{}{after}; {}", self.what, self.hint);
        match self.kind {
            Kind::Interrupted => Interrupted.into(),
            Kind::Refused => anyhow::Error::new(LoginRefused(message)),
            Kind::Transient | Kind::Permanent => anyhow!(message),
        }
    }
}

/// The client-credentials grant, retried with backoff while the endpoint
/// fails in a way that may pass (5xx, 429, no connection).
fn request_token(o: &OAuth2, fetch: &Fetch<'_>) -> Result<Issued> {
    let Some(lanes) = fetch.lanes else {
        bail!("no HTTP client for the token endpoint `{}`; this is a bug", o.token_url);
    };
    let mut tries = 0u32;
    loop {
        tries += 1;
        match request_once(o, lanes) {
            Ok(issued) => return Ok(issued),
            Err(a) if a.kind == Kind::Transient && tries <= fetch.retries => {
                let wait = a.retry_after.unwrap_or_else(|| backoff(fetch.backoff, tries - 1));
                interrupt::sleep(wait)?;
            }
            Err(a) => return Err(a.into_error(tries)),
        }
    }
}

const CHECK_NETWORK: &str = "check the network, any proxy settings and `oauth_token_url`";
const CHECK_URL: &str = "check `oauth_token_url`";

fn request_once(o: &OAuth2, lanes: &Lanes) -> Result<Issued, Attempt> {
    let url = &o.token_url;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if o.client_auth == ClientAuth::Body {
        form.append_pair("client_id", &o.client_id);
        form.append_pair("client_secret", &o.client_secret);
    }
    if let Some(scope) = &o.scope {
        form.append_pair("scope", scope);
    }
    if let Some(audience) = &o.audience {
        form.append_pair("audience", audience);
    }
    let form = form.finish();
    let sent = lanes.post(url.clone(), |r| {
        // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
        let r = match o.client_auth {
            ClientAuth::Basic => r.basic_auth(form_encoded(&o.client_id), Some(form_encoded(&o.client_secret))),
            ClientAuth::Body => r,
        };
        r.timeout(TOKEN_DEADLINE)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form.clone())
    });
    let response = match sent {
        Ok(response) => response,
        Err(SendError::Interrupted) => return Err(Attempt::interrupted()),
        Err(SendError::Setup(e)) => {
            return Err(Attempt::new(
                Kind::Transient,
                format!("could not set up a connection to the token endpoint `{url}` ({e:#})"),
                "the computer may be short of threads or open files; try again later",
            ));
        }
        Err(SendError::Http(e)) => {
            let why = super::client::chain(&e);
            return Err(Attempt::new(
                Kind::Transient,
                format!("could not get an access token from the token endpoint `{url}` ({why})"),
                CHECK_NETWORK,
            ));
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut body = Vec::new();
    let read = response.take(MAX_ANSWER + 1).read_to_end(&mut body);
    if let Err(e) = read {
        if interrupt::caused(&e) {
            return Err(Attempt::interrupted());
        }
        return Err(Attempt::new(
            Kind::Transient,
            format!(
                "the answer of the token endpoint `{url}` broke off ({})",
                super::client::chain(&e)
            ),
            CHECK_NETWORK,
        ));
    }
    if body.len() as u64 > MAX_ANSWER {
        return Err(Attempt::new(
            Kind::Permanent,
            format!(
                "the token endpoint `{url}` answered with more than {} KiB",
                MAX_ANSWER / 1024
            ),
            CHECK_URL,
        ));
    }
    if status.is_success() {
        return parse_answer(&body).map_err(|why| {
            Attempt::new(
                Kind::Permanent,
                format!("the token endpoint `{url}` answered with no usable access token ({why})"),
                CHECK_URL,
            )
        });
    }
    let said = oauth_error(&body);
    let code = status.as_u16();
    if is_transient_status(status) {
        let mut a = Attempt::new(
            Kind::Transient,
            format!("the token endpoint `{url}` answered HTTP {code}{said}"),
            "it may be overloaded or down, try again later",
        );
        a.retry_after = retry_after;
        return Err(a);
    }
    if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(Attempt::new(
            Kind::Refused,
            format!("the token endpoint `{url}` refused the client credentials (HTTP {code}{said})"),
            "check `oauth_client_id`, the client secret (`oauth_client_secret`, `oauth_client_secret_file` or \
             RETRIEVER_OAUTH_CLIENT_SECRET), `oauth_scope`, `oauth_audience`, and `oauth_client_auth` for a \
             server that takes the secret only in the form",
        ));
    }
    Err(Attempt::new(
        Kind::Permanent,
        format!("the token endpoint `{url}` answered HTTP {code}{said}"),
        CHECK_URL,
    ))
}

fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `: error: description` from an OAuth2 error answer (RFC 6749 §5.2),
/// escaped and cut; nothing when the body says neither.
fn oauth_error(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorAnswer {
        error: Option<serde_json::Value>,
        error_description: Option<serde_json::Value>,
    }
    let Ok(answer) = serde_json::from_slice::<ErrorAnswer>(body) else {
        return String::new();
    };
    let text = |v: Option<serde_json::Value>, max: usize| match v {
        Some(serde_json::Value::String(s)) if !s.is_empty() => {
            Some(crate::text::escape(&s.chars().take(max).collect::<String>()))
        }
        _ => None,
    };
    match (text(answer.error, 80), text(answer.error_description, 200)) {
        (Some(e), Some(d)) => format!(": {e}: {d}"),
        (Some(e), None) => format!(": {e}"),
        (None, Some(d)) => format!(": {d}"),
        (None, None) => String::new(),
    }
}

/// Reads a token endpoint's success answer (RFC 6749 §5.1): a Bearer
/// `access_token` that can go in a header, and its `expires_in` (a number,
/// or a numeric string as some servers send it), or why it is unusable.
pub(super) fn parse_answer(body: &[u8]) -> Result<Issued, String> {
    use serde_json::Value;
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<Value>,
        token_type: Option<Value>,
        expires_in: Option<Value>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|_| "not a JSON object".to_string())?;
    let token = match answer.access_token {
        Some(Value::String(t)) => t,
        Some(_) => return Err("`access_token` is not a string".into()),
        None => return Err("no `access_token`".into()),
    };
    check_token(&token)?;
    match answer.token_type {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(t)) => {
            let shown = crate::text::escape(&t.chars().take(40).collect::<String>());
            return Err(format!("`token_type` is `{shown}`, not Bearer"));
        }
        Some(_) => return Err("`token_type` is not a string".into()),
        None => return Err("no `token_type`".into()),
    }
    let seconds = match &answer.expires_in {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or("`expires_in` is not a whole number of seconds")?),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<u64>()
                .map_err(|_| "`expires_in` is not a whole number of seconds")?,
        ),
        Some(_) => return Err("`expires_in` is not a number".into()),
    };
    let lifetime = match seconds {
        Some(0) => return Err("`expires_in` is 0: the token is expired already".into()),
        Some(s) => Duration::from_secs(s).min(MAX_LIFETIME),
        None => DEFAULT_TOKEN_LIFETIME,
    };
    Ok(Issued { token, lifetime })
}

/// A token must fit in an `Authorization` header: visible ASCII, bounded.
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if token.len() > MAX_TOKEN {
        return Err(format!("the token is longer than {} KiB", MAX_TOKEN / 1024));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token has characters that cannot go in an HTTP header".into());
    }
    Ok(())
}

// --- the token command --------------------------------------------------

/// Runs the token command, bounded in time, and takes its one line of output.
fn run_command(c: &TokenCommand) -> Result<Issued> {
    let command = c.clone();
    let done = interrupt::outwait(move || run_bounded(&command))??;
    let Output { status, stdout, stderr } = done;
    let said = stderr_tail(&stderr);
    if let Some(code) = status {
        bail!(
            "the token command (`token_command`) failed with exit status {code}{said}; run it by hand to see \
             why (a login may have expired)"
        );
    }
    let text = String::from_utf8_lossy(&stdout);
    let text = text.trim();
    if text.is_empty() {
        bail!("the token command (`token_command`) printed no token{said}; run it by hand to see why");
    }
    if text.lines().count() > 1 {
        bail!("the token command (`token_command`) printed more than one line; it must print only the access token");
    }
    check_token(text).map_err(|why| anyhow!("the token command (`token_command`) printed no usable token ({why})"))?;
    Ok(Issued {
        token: text.to_string(),
        lifetime: c.lifetime,
    })
}

struct Output {
    /// The exit code when it is not success (`-1`: ended by a signal).
    status: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn run_bounded(c: &TokenCommand) -> Result<Output> {
    let mut child = shell(&c.command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow!("failed to start the token command (`token_command`) ({e}); check that it can be run"))?;
    let stdout = child
        .stdout
        .take()
        .map(|out| read_capped(out, MAX_ANSWER as usize, false));
    let stderr = child.stderr.take().map(|err| read_capped(err, MAX_STDERR, true));
    let deadline = Instant::now() + c.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the token command (`token_command`) did not finish within {}; it was stopped; run it by hand \
                     to see why (it may be waiting for input)",
                    crate::format::setting_duration(c.timeout)
                );
            }
            // The child cannot wake us, and this runs on a thread of its own.
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => bail!("failed to wait for the token command (`token_command`) ({e})"),
        }
    };
    let take = |rx: Option<std::sync::mpsc::Receiver<Vec<u8>>>| {
        rx.and_then(|rx| rx.recv_timeout(OUTPUT_GRACE).ok()).unwrap_or_default()
    };
    Ok(Output {
        status: (!status.success()).then(|| status.code().unwrap_or(-1)),
        stdout: take(stdout),
        stderr: take(stderr),
    })
}

#[cfg(unix)]
fn shell(command: &str) -> Command {
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(command);
    shell
}

#[cfg(windows)]
fn shell(command: &str) -> Command {
    use std::os::windows::process::CommandExt;
    let mut shell = Command::new("cmd");
    // As typed at a prompt: `arg` would quote it again.
    shell.arg("/C").raw_arg(command);
    shell
}

/// Reads a pipe to its end on a thread of its own, keeping at most `cap`
/// bytes (its start, or its end when `tail`), so that a chatty command
/// never blocks on a full pipe nor fills the memory.
fn read_capped(mut pipe: impl Read + Send + 'static, cap: usize, tail: bool) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if tail {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > cap {
                    kept.drain(..kept.len() - cap);
                }
            } else if kept.len() <= cap {
                kept.extend_from_slice(&chunk[..n.min(cap + 1 - kept.len())]);
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

/// ` (stderr: ...)` with the last lines the command wrote there, escaped.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let last = &lines[lines.len().saturating_sub(STDERR_LINES)..];
    format!(" (stderr: {})", crate::text::escape(&last.join(" | ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renewal_comes_before_the_end_but_not_too_early() {
        let s = Duration::from_secs;
        // Long lives: 60 s before the end, or 90 %, whichever is earlier.
        assert_eq!(renew_after(s(3600)), s(3240));
        assert_eq!(renew_after(s(300)), s(240));
        // Short lives: never before half of it.
        assert_eq!(renew_after(s(60)), s(30));
        assert_eq!(renew_after(s(3)), Duration::from_millis(1500));
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
        for secs in 1..5000 {
            let r = renew_after(s(secs));
            assert!(r < s(secs) && r >= s(secs) / 2, "{secs}: {r:?}");
        }
    }

    fn issued(token: &str, lifetime: Duration) -> Result<Issued> {
        Ok(Issued {
            token: token.into(),
            lifetime,
        })
    }

    #[test]
    fn a_live_token_is_reused_and_a_refused_one_renewed_once() {
        let tokens = Tokens::new(Origin::Command(TokenCommand {
            command: String::new(),
            lifetime: DEFAULT_TOKEN_LIFETIME,
            timeout: TOKEN_COMMAND_TIMEOUT,
        }));
        let first = tokens.get_with(|| issued("t1", Duration::from_secs(3600))).unwrap();
        assert_eq!(first.token, "t1");
        let again = tokens.get_with(|| panic!("renewed a live token")).unwrap();
        assert_eq!(again.token, "t1");
        tokens.refused(&first);
        let second = tokens.get_with(|| issued("t2", Duration::from_secs(3600))).unwrap();
        assert_eq!(second.token, "t2");
        // A second request refused with the old token does not renew again.
        tokens.refused(&again);
        assert_eq!(tokens.get_with(|| panic!("renewed twice")).unwrap().token, "t2");
        // A token past its renewal time is renewed.
        tokens.refused(&second);
        let short = tokens.get_with(|| issued("t3", Duration::ZERO)).unwrap();
        assert_eq!(short.token, "t3");
        assert_eq!(
            tokens.get_with(|| issued("t4", Duration::from_secs(60))).unwrap().token,
            "t4"
        );
    }

    #[test]
    fn one_renewal_at_a_time_and_waiters_share_its_outcome() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let tokens = Tokens::new(Origin::Command(TokenCommand {
            command: String::new(),
            lifetime: DEFAULT_TOKEN_LIFETIME,
            timeout: TOKEN_COMMAND_TIMEOUT,
        }));
        let renewals = Arc::new(AtomicUsize::new(0));
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let renewer = {
            let (tokens, renewals) = (tokens.clone(), Arc::clone(&renewals));
            std::thread::spawn(move || {
                tokens.get_with(|| {
                    renewals.fetch_add(1, Ordering::SeqCst);
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Err(anyhow::Error::new(LoginRefused("invalid_client".into())))
                })
            })
        };
        entered_rx.recv().unwrap();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (tokens, renewals) = (tokens.clone(), Arc::clone(&renewals));
                std::thread::spawn(move || {
                    tokens.get_with(|| {
                        renewals.fetch_add(1, Ordering::SeqCst);
                        issued("late", Duration::from_secs(60))
                    })
                })
            })
            .collect();
        // The renewal is held until every other thread waits for it.
        while tokens.lock().waiting < 4 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        let e = renewer.join().unwrap().unwrap_err();
        assert!(e.chain().any(|c| c.is::<LoginRefused>()));
        for w in waiters {
            let e = w.join().unwrap().unwrap_err();
            assert!(format!("{e:#}").contains("invalid_client"), "{e:#}");
            assert!(e.chain().any(|c| c.is::<LoginRefused>()), "{e:#}");
        }
        assert_eq!(renewals.load(Ordering::SeqCst), 1);
        // The next request tries again.
        assert_eq!(
            tokens
                .get_with(|| issued("next", Duration::from_secs(60)))
                .unwrap()
                .token,
            "next"
        );
    }

    #[test]
    fn token_answers_are_checked() {
        let ok = |body: &str| parse_answer(body.as_bytes());
        let i = ok(r#"{"access_token":"abc.def-ghi_~+/=","token_type":"Bearer","expires_in":3}"#).unwrap();
        assert_eq!(
            (i.token.as_str(), i.lifetime),
            ("abc.def-ghi_~+/=", Duration::from_secs(3))
        );
        let i = ok(r#"{"access_token":"a","token_type":"bearer","expires_in":"3599","scope":"x"}"#).unwrap();
        assert_eq!(i.lifetime, Duration::from_secs(3599));
        assert_eq!(
            ok(r#"{"access_token":"a","token_type":"BEARER"}"#).unwrap().lifetime,
            DEFAULT_TOKEN_LIFETIME
        );
        assert_eq!(
            ok(r#"{"access_token":"a","token_type":"Bearer","expires_in":99999999999}"#)
                .unwrap()
                .lifetime,
            MAX_LIFETIME
        );
        for (body, why) in [
            ("", "not a JSON object"),
            ("[]", "not a JSON object"),
            (r#"{"token_type":"Bearer"}"#, "no `access_token`"),
            (r#"{"access_token":"","token_type":"Bearer"}"#, "empty"),
            (r#"{"access_token":"a b","token_type":"Bearer"}"#, "HTTP header"),
            (r#"{"access_token":"a\r\nX: y","token_type":"Bearer"}"#, "HTTP header"),
            (r#"{"access_token":7,"token_type":"Bearer"}"#, "not a string"),
            (r#"{"access_token":"a"}"#, "no `token_type`"),
            (
                r#"{"access_token":"a","token_type":"mac\u001b[2J"}"#,
                "`mac\\x1b[2J`, not Bearer",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":0}"#,
                "expired already",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#,
                "whole number",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":1.5}"#,
                "whole number",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":"soon"}"#,
                "whole number",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":[]}"#,
                "not a number",
            ),
        ] {
            let e = ok(body).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
        let long = format!(
            r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
            "a".repeat(MAX_TOKEN + 1)
        );
        assert!(ok(&long).unwrap_err().contains("longer than"));
    }

    #[test]
    fn oauth_errors_are_escaped_and_cut() {
        assert_eq!(
            oauth_error(br#"{"error":"invalid_client","error_description":"bad secret"}"#),
            ": invalid_client: bad secret"
        );
        assert_eq!(oauth_error(br#"{"error":"invalid_client"}"#), ": invalid_client");
        assert_eq!(oauth_error(b"<html>"), "");
        let hostile = format!(
            r#"{{"error":"x\u001b[2J\n","error_description":"{}"}}"#,
            "d".repeat(5000)
        );
        let shown = oauth_error(hostile.as_bytes());
        assert!(shown.starts_with(": x\\x1b[2J\\n: ddd"), "{shown}");
        assert!(shown.len() < 400, "{}", shown.len());
    }

    #[test]
    fn stderr_shows_its_last_lines_escaped() {
        assert_eq!(stderr_tail(b""), "");
        assert_eq!(stderr_tail(b"\nnot logged in\n"), " (stderr: not logged in)");
        let many: String = (1..=9).map(|n| format!("line {n}\n")).collect();
        assert_eq!(
            stderr_tail(many.as_bytes()),
            " (stderr: line 5 | line 6 | line 7 | line 8 | line 9)"
        );
        assert!(stderr_tail(b"\x1b[2Jgone").contains("\\x1b[2Jgone"));
    }

    #[cfg(unix)]
    #[test]
    fn the_token_command_prints_the_token_or_says_why_not() {
        let command = |c: &str| TokenCommand {
            command: c.into(),
            lifetime: Duration::from_secs(7),
            timeout: Duration::from_secs(20),
        };
        let i = run_command(&command("printf ' tok-42 \\n'")).unwrap();
        assert_eq!((i.token.as_str(), i.lifetime), ("tok-42", Duration::from_secs(7)));
        let e = format!(
            "{:#}",
            run_command(&command("echo not logged in >&2; exit 3")).unwrap_err()
        );
        assert!(
            e.contains("exit status 3") && e.contains("stderr: not logged in"),
            "{e}"
        );
        let e = format!("{:#}", run_command(&command("true")).unwrap_err());
        assert!(e.contains("printed no token"), "{e}");
        let e = format!("{:#}", run_command(&command("echo a; echo b")).unwrap_err());
        assert!(e.contains("more than one line"), "{e}");
        let mut slow = command("exec sleep 30");
        slow.timeout = Duration::from_millis(200);
        let e = format!("{:#}", run_command(&slow).unwrap_err());
        assert!(e.contains("did not finish within"), "{e}");
    }

    proptest! {
        #[test]
        fn any_answer_is_read_without_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_answer(&body);
            let _ = oauth_error(&body);
        }

        #[test]
        fn any_json_like_answer_is_read_without_panic(
            token in "[ -~\\PC]{0,40}", kind in "[ -~]{0,10}", expires in "-?[0-9.e\"]{0,25}"
        ) {
            let body = format!(
                r#"{{"access_token":{},"token_type":{},"expires_in":{expires}}}"#,
                serde_json::to_string(&token).unwrap(),
                serde_json::to_string(&kind).unwrap()
            );
            if let Ok(i) = parse_answer(body.as_bytes()) {
                prop_assert!(!i.token.is_empty() && i.lifetime > Duration::ZERO && i.lifetime <= MAX_LIFETIME);
            }
        }
    }
}
