//! A cloud that asks for our client certificate (mutual TLS): Orthanc behind a real nginx with
//! `ssl_verify_client on`, and behind `openssl s_server`, which ends the TLS handshake with an
//! alert instead of answering as nginx does. With our certificate a study arrives whole;
//! without one, or with one from an authority the cloud does not trust, the run fails at once
//! and says which; and the cloud's own certificate is verified all the same. Through a
//! hospital's proxy (HTTPS_PROXY, a CONNECT tunnel) the study arrives the same way.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::nginx::Nginx;
use crate::common::pki::{Issued, Pki, Usage};
use crate::common::{Orthanc, free_port, is_listening, retriever, retriever_at, run_within, temp_cache, uid_of};
use crate::fetch::assert_study_cached;

tests! {
    a_study_comes_whole_from_a_cloud_that_asks_for_our_certificate: ["orthanc", "openssl", "nginx"],
    without_a_certificate_the_error_says_the_cloud_wants_one: ["orthanc", "openssl", "nginx"],
    a_certificate_from_another_authority_is_refused_with_a_clear_message: ["orthanc", "openssl", "nginx"],
    the_clouds_own_certificate_is_still_verified: ["orthanc", "openssl", "nginx"],
    a_cloud_that_ends_the_handshake_with_an_alert_says_why: ["openssl"],
    config_shows_the_client_certificate_and_warns_about_a_readable_key: ["openssl"],
    a_key_that_is_not_the_certificates_is_refused_naming_both: ["openssl"],
    a_study_comes_whole_through_the_hospitals_proxy: ["orthanc", "openssl", "nginx"],
    a_proxy_that_wants_a_password_gets_the_one_in_https_proxy: ["orthanc", "openssl", "nginx"],
    a_proxy_that_will_not_reach_the_cloud_is_named_with_what_to_ask_for: ["orthanc", "openssl", "nginx"],
}

const LIMIT: Duration = Duration::from_secs(120);

/// The certificates of one test: the cloud's (signed by `server_ca`), ours (signed by the
/// authority the cloud trusts for clients) and a stranger's (signed by another).
struct Certs {
    dir: tempfile::TempDir,
    server_ca: Pki,
    server: Issued,
    client_ca: Pki,
    ours: Issued,
    // Holds the stranger's files.
    _other_ca: Pki,
    stranger: Issued,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("retriever-mtls-")
            .tempdir()
            .expect("create a directory for the test's files");
        let server_ca = Pki::new("retriever test server CA");
        let server = server_ca.issue("127.0.0.1", Usage::Server);
        let client_ca = Pki::new("retriever test client CA");
        let ours = client_ca.issue("router", Usage::Client);
        let other_ca = Pki::new("retriever test other CA");
        let stranger = other_ca.issue("stranger", Usage::Client);
        Certs {
            dir,
            server_ca,
            server,
            client_ca,
            ours,
            _other_ca: other_ca,
            stranger,
        }
    }

    /// nginx in front of the shared Orthanc, asking for a certificate from our authority.
    fn nginx(&self) -> Nginx {
        Nginx::requiring_client_certificates(Orthanc::shared().http_addr(), &self.server, &self.client_ca.ca())
    }
}

/// `retriever fetch ACC2001 --priors 0` from `cloud` with the cloud's authority trusted, and
/// `identity` as our client certificate.
fn fetch(cloud: &str, cache: &Path, pki: &Certs, identity: Option<&Issued>) -> (i32, String, String) {
    run_within(&mut fetch_command(cloud, cache, pki, identity), LIMIT)
}

/// [`fetch`] through the proxy `proxy` (HTTPS_PROXY, whatever NO_PROXY the tests run with),
/// tried once (`--retries 0`).
fn fetch_via(proxy: &str, cloud: &str, cache: &Path, pki: &Certs, identity: Option<&Issued>) -> (i32, String, String) {
    let mut cmd = fetch_command(cloud, cache, pki, identity);
    cmd.args(["--retries", "0"])
        .env("HTTPS_PROXY", proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    run_within(&mut cmd, LIMIT)
}

fn fetch_command(cloud: &str, cache: &Path, pki: &Certs, identity: Option<&Issued>) -> Command {
    let mut cmd = retriever_at(&format!("{cloud}/dicom-web"), cache);
    cmd.arg("--ca-bundle").arg(pki.server_ca.ca());
    if let Some(id) = identity {
        cmd.arg("--client-cert").arg(&id.cert).arg("--client-key").arg(&id.key);
    }
    cmd.args(["fetch", "ACC2001", "--priors", "0"]);
    cmd
}

/// Asserts that nginx took every request with our certificate, checked.
fn assert_every_request_had_our_certificate(requests: &[String]) {
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.starts_with("200 SUCCESS ")),
        "every request came with our certificate, checked: {requests:?}"
    );
}

/// Waits until nginx has logged at least one request (it logs after answering, which may be
/// just after the client has its answer), then returns what it logged.
fn requests_logged(nginx: &Nginx) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let requests = nginx.requests();
        if !requests.is_empty() || Instant::now() > deadline {
            return requests;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn a_study_comes_whole_from_a_cloud_that_asks_for_our_certificate() {
    let pki = Certs::new();
    let nginx = pki.nginx();
    let cache = temp_cache();
    let (code, out, err) = fetch(&nginx.url(), cache.path(), &pki, Some(&pki.ours));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(uid_of("ACC2001")), "{out}");
    assert!(
        !err.contains("warning"),
        "openssl writes keys only the owner can read: {err}"
    );
    assert_study_cached(cache.path(), "ACC2001");
    assert_every_request_had_our_certificate(&nginx.requests());
}

fn without_a_certificate_the_error_says_the_cloud_wants_one() {
    let pki = Certs::new();
    let nginx = pki.nginx();
    let cache = temp_cache();
    let (code, out, err) = fetch(&nginx.url(), cache.path(), &pki, None);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("asks for a client certificate") && err.contains("--client-cert") && err.contains("--client-key"),
        "{err}"
    );
    assert!(err.lines().count() <= 3, "one clear error, not a cascade: {err}");
    // Not retried: the same connection without a certificate would get the same answer.
    assert_eq!(requests_logged(&nginx).len(), 1, "{:?}", nginx.requests());
}

fn a_certificate_from_another_authority_is_refused_with_a_clear_message() {
    let pki = Certs::new();
    let nginx = pki.nginx();
    let cache = temp_cache();
    let (code, out, err) = fetch(&nginx.url(), cache.path(), &pki, Some(&pki.stranger));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    let shown = format!("refused our client certificate `{}`", pki.stranger.cert.display());
    assert!(err.contains(&shown), "{err}");
    let requests = requests_logged(&nginx);
    assert_eq!(requests.len(), 1, "not retried: {requests:?}");
    assert!(requests[0].starts_with("400 FAILED:"), "{requests:?}");
}

fn the_clouds_own_certificate_is_still_verified() {
    let pki = Certs::new();
    let nginx = pki.nginx();
    let cache = temp_cache();
    let mut cmd = retriever_at(&format!("{}/dicom-web", nginx.url()), cache.path());
    cmd.arg("--client-cert")
        .arg(&pki.ours.cert)
        .arg("--client-key")
        .arg(&pki.ours.key)
        .args(["fetch", "ACC2001", "--priors", "0"]);
    let (code, out, err) = run_within(&mut cmd, LIMIT);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("presented a certificate that is not trusted") && err.contains("--ca-bundle"),
        "{err}"
    );
    assert!(
        nginx.requests().is_empty(),
        "no request was sent: {:?}",
        nginx.requests()
    );
}

/// `openssl s_server` asking for a client certificate from one authority, and failing the
/// handshake without one (`-verify_return_error`); stopped when dropped.
struct Handshaker {
    child: Child,
    port: u16,
}

impl Handshaker {
    fn start(server: &Issued, client_ca: &Path) -> Handshaker {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("openssl")
                .args(["s_server", "-quiet", "-www", "-Verify", "1", "-verify_return_error"])
                .arg("-accept")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(&server.cert)
                .arg("-key")
                .arg(&server.key)
                .arg("-CAfile")
                .arg(client_ca)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run openssl s_server");
            let deadline = Instant::now() + Duration::from_secs(20);
            while !is_listening(port) && child.try_wait().expect("wait for openssl").is_none() {
                assert!(Instant::now() < deadline, "openssl s_server did not listen on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
            if is_listening(port) {
                return Handshaker { child, port };
            }
        }
        panic!("openssl s_server could not start");
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Handshaker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Most TLS servers (Apache, Go, cloud load balancers, OpenSSL's) end the handshake with an
/// alert, which with TLS 1.3 comes only when the first request is sent.
fn a_cloud_that_ends_the_handshake_with_an_alert_says_why() {
    let pki = Certs::new();
    let cloud = Handshaker::start(&pki.server, &pki.client_ca.ca());

    let cache = temp_cache();
    let (code, out, err) = fetch(&cloud.url(), cache.path(), &pki, None);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("asks for a client certificate") && err.contains("--client-cert"),
        "{err}"
    );
    assert!(!err.contains("attempts"), "not retried: {err}");

    let (code, _, err) = fetch(&cloud.url(), cache.path(), &pki, Some(&pki.stranger));
    assert_eq!(code, 1, "{err}");
    let shown = format!("refused our client certificate `{}`", pki.stranger.cert.display());
    assert!(err.contains(&shown), "{err}");
    assert!(!err.contains("attempts"), "not retried: {err}");
}

fn config_shows_the_client_certificate_and_warns_about_a_readable_key() {
    let pki = Certs::new();
    let config = |key: &Path| {
        let (code, out, err) = run_within(
            retriever()
                .arg("--client-cert")
                .arg(&pki.ours.cert)
                .arg("--client-key")
                .arg(key)
                .args(["config", "--json"]),
            LIMIT,
        );
        assert_eq!(code, 0, "{err}");
        let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
        (json, err)
    };
    let (json, err) = config(&pki.ours.key);
    assert_eq!(json["client_cert"]["value"], pki.ours.cert.display().to_string());
    assert_eq!(json["client_cert"]["origin"], "--client-cert");
    assert_eq!(json["client_key"]["value"], pki.ours.key.display().to_string());
    assert!(!err.contains("warning"), "{err}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let readable = pki.dir.path().join("readable.key");
        std::fs::copy(&pki.ours.key, &readable).unwrap();
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, err) = config(&readable);
        assert!(
            err.contains("warning: the client key") && err.contains(&format!("chmod 600 {}", readable.display())),
            "{err}"
        );
    }
}

/// Checked before anything is sent: the cloud here is a port nothing listens on.
fn a_key_that_is_not_the_certificates_is_refused_naming_both() {
    let pki = Certs::new();
    let mixed = Issued {
        cert: pki.ours.cert.clone(),
        key: pki.stranger.key.clone(),
    };
    let cache = temp_cache();
    let (code, out, err) = fetch(
        &format!("https://127.0.0.1:{}", free_port()),
        cache.path(),
        &pki,
        Some(&mixed),
    );
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    let named = format!(
        "the client key `{}` cannot be used with the client certificate `{}`",
        mixed.key.display(),
        mixed.cert.display()
    );
    assert!(err.contains(&named), "{err}");
    assert!(!err.contains("connect"), "nothing was sent: {err}");
}

/// A hospital's web proxy: it takes `CONNECT host:port` and then, as its [`Policy`] says,
/// passes bytes both ways, never seeing inside the TLS. Keeps what each CONNECT asked for.
struct ConnectProxy {
    port: u16,
    asked: Arc<Mutex<Vec<String>>>,
}

/// The `Proxy-Authorization` a proxy that asks for a password wants: `router:s3cret`.
const PROXY_AUTH: &str = "Basic cm91dGVyOnMzY3JldA==";

/// What a proxy does with a CONNECT.
#[derive(Clone, Copy)]
enum Policy {
    Open,
    /// 407 without this `Proxy-Authorization`.
    Password(&'static str),
    /// 403 to every one, as a proxy whose rules leave the host out.
    Forbidden,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        ConnectProxy::starting(Policy::Open)
    }

    fn starting(policy: Policy) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&asked);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || tunnel(client, &seen, policy));
            }
        });
        ConnectProxy { port, asked }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

fn tunnel(client: TcpStream, seen: &Mutex<Vec<String>>, policy: Policy) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut authorized = !matches!(policy, Policy::Password(_));
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let (Policy::Password(want), Some((name, value))) = (policy, line.split_once(':')) {
            authorized |= name.eq_ignore_ascii_case("proxy-authorization") && value.trim() == want;
        }
    }
    let mut client = client;
    let Some(target) = first.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next()) else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    seen.lock().unwrap().push(target.to_string());
    if matches!(policy, Policy::Forbidden) {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
        return;
    }
    if !authorized {
        let _ = client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"hospital\"\r\n\
              content-length: 0\r\n\r\n",
        );
        return;
    }
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .unwrap();
    let mut to_upstream = upstream.try_clone().unwrap();
    let mut from_upstream = upstream;
    let mut to_client = client.try_clone().unwrap();
    let up = std::thread::spawn(move || {
        // The reader hands over first what the client sent after its request head.
        let _ = std::io::copy(&mut reader, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut from_upstream, &mut to_client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// With the proxy of the environment (HTTPS_PROXY), as a hospital's PCs have it: the study comes
/// whole through the proxy's tunnel, the cloud's certificate checked against the CA bundle and
/// ours presented, as without a proxy.
fn a_study_comes_whole_through_the_hospitals_proxy() {
    let pki = Certs::new();
    let nginx = pki.nginx();
    let proxy = ConnectProxy::start();
    let cache = temp_cache();
    let (code, out, err) = fetch_via(&proxy.url(), &nginx.url(), cache.path(), &pki, Some(&pki.ours));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(uid_of("ACC2001")), "{out}");
    assert_study_cached(cache.path(), "ACC2001");
    let host = nginx.url().trim_start_matches("https://").to_string();
    let asked = proxy.asked();
    assert!(
        !asked.is_empty() && asked.iter().all(|a| *a == host),
        "every connection to the cloud went through the proxy to {host}: {asked:?}"
    );
    assert_every_request_had_our_certificate(&requests_logged(&nginx));
}

/// A proxy that asks for a password: with the one written in HTTPS_PROXY the study comes
/// whole; without it the run fails at once, and the error says the proxy refused, naming it
/// (its password hidden) and what to set.
fn a_proxy_that_wants_a_password_gets_the_one_in_https_proxy() {
    let pki = Certs::new();
    let nginx = pki.nginx();
    let proxy = ConnectProxy::starting(Policy::Password(PROXY_AUTH));
    let cache = temp_cache();
    let with = |password: &str| format!("http://router:{password}@127.0.0.1:{}", proxy.port);
    let (code, _, err) = fetch_via(&with("s3cret"), &nginx.url(), cache.path(), &pki, Some(&pki.ours));
    assert_eq!(code, 0, "{err}");
    assert_study_cached(cache.path(), "ACC2001");

    let started = Instant::now();
    let (code, _, err) = fetch_via(&with("wrong"), &nginx.url(), temp_cache().path(), &pki, Some(&pki.ours));
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "failed at once: {err}");
    assert!(
        err.contains("proxy") && err.contains("407"),
        "says the proxy refused: {err}"
    );
    assert!(err.contains("HTTPS_PROXY"), "says what to set: {err}");
    assert!(!err.contains("wrong"), "the password is not shown: {err}");
}

/// A proxy whose rules leave the cloud out answers 403 to the tunnel: the error names the proxy
/// and the cloud's host, and what to ask the hospital's IT for.
fn a_proxy_that_will_not_reach_the_cloud_is_named_with_what_to_ask_for() {
    let pki = Certs::new();
    let nginx = pki.nginx();
    let proxy = ConnectProxy::starting(Policy::Forbidden);
    let (code, _, err) = fetch_via(&proxy.url(), &nginx.url(), temp_cache().path(), &pki, None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "the proxy `{}` (HTTPS_PROXY) would not open a connection",
            proxy.url()
        )),
        "names the proxy: {err}"
    );
    assert!(
        err.contains("let this router reach `127.0.0.1` over HTTPS") && err.contains("NO_PROXY"),
        "says what to ask for: {err}"
    );
    assert_eq!(proxy.asked().len(), 1, "tried once, as --retries 0 says");
}
