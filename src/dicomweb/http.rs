//! HTTP requests with reqwest's blocking client, made so that Ctrl-C never
//! waits for the network.
//!
//! A blocking read cannot be raced against Ctrl-C, so each request runs on a
//! thread of its own ([`interrupt::feed`]): that thread sends the request and
//! reads the answer in pieces of [`PIECE`] bytes, at most one piece ahead of
//! the caller, which waits for each piece on the cancel token. On Ctrl-C the
//! caller returns at once and the thread is left to end with the program.
//!
//! Idle timeouts are reqwest's: the blocking client's `timeout` bounds the
//! wait for the response head and then each read of the body on its own
//! (reqwest 0.12 `blocking::wait::timeout` starts a fresh deadline per read),
//! so a transfer is cut only when nothing comes for that long, never for
//! lasting long. A per-request `RequestBuilder::timeout` must not be used: it
//! becomes a deadline for the whole transfer.
//!
//! Each blocking client runs its connections on a runtime thread of its own,
//! which hands every body frame to the reading thread. One client serving
//! every download would make that thread the limit on a fast link, so
//! clients are lent out from a pool, one per request in flight, and come back
//! when the response is dropped.

use std::error::Error as StdError;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, redirect};
use rustls::RootCertStore;

use super::identity::Identity;

use crate::interrupt::{self, Feed, Give, Interrupted};

/// Kept-alive connections per host and client. A client runs one request
/// at a time, so one would do; the second covers a connection still closing.
const MAX_IDLE_PER_HOST: usize = 2;
/// How long a kept-alive connection may wait for its next request. Orthanc
/// closes a connection after 1 s idle (measured; it answers `Keep-Alive:
/// timeout=1`): a request sent just then would be
/// lost with the connection and cost a retry after a backoff. Waiting at most
/// half that, a connection is never reused at the moment its server ends
/// it; one that the server closed earlier is seen closed by the client's
/// runtime thread and never reused either.
const POOL_IDLE: Duration = Duration::from_millis(500);
/// Bytes of an answer handed to the caller at once. Large, so that handing
/// over costs little next to the copying; at most three are held per
/// request (the caller's, the one waiting, the one being read).
const PIECE: usize = 256 * 1024;

/// What every client is built from.
#[derive(Clone)]
pub(super) struct Settings {
    pub connect_timeout: Duration,
    /// The longest wait for the response head, and for each piece of a body.
    pub idle_timeout: Duration,
    /// What every client's TLS is made of ([`tls_config`]): built once,
    /// so that the trusted roots are read and held once, not per client.
    pub tls: Arc<rustls::ClientConfig>,
    /// Whether the proxy of the environment (`HTTPS_PROXY`, ...) may be
    /// used. Never for a plain-http cloud: the proxy would read the
    /// credentials and the patient data, and could change them.
    pub use_proxy: bool,
}

/// Clients for one cloud; as many as requests have ever run at once.
pub(super) struct Lanes {
    settings: Settings,
    redirect: Box<dyn Fn() -> redirect::Policy + Send + Sync>,
    idle: Mutex<Vec<Client>>,
}

/// Why a request got no response.
pub(super) enum SendError {
    /// Includes no response head within the idle timeout (`is_timeout`).
    Http(reqwest::Error),
    /// A new client or the request's thread could not be set up (out of
    /// threads or file handles).
    Setup(anyhow::Error),
    /// Ctrl-C came while waiting for the response head.
    Interrupted,
}

/// What the request's thread hands to the caller: the head or why there is
/// none, then the body in pieces, then, if the connection failed, why.
enum Piece {
    Head { status: StatusCode, headers: HeaderMap },
    Failed(reqwest::Error),
    Data(Vec<u8>),
    Broken(io::Error),
}

impl Lanes {
    /// Builds the first client, so that a bad setting (a CA bundle rustls
    /// rejects, say) is reported now rather than at the first request.
    pub fn new(settings: Settings, redirect: impl Fn() -> redirect::Policy + Send + Sync + 'static) -> Result<Lanes> {
        let lanes = Lanes {
            settings,
            redirect: Box::new(redirect),
            idle: Mutex::new(Vec::new()),
        };
        let first = lanes.build()?;
        lanes.give_back(first);
        Ok(lanes)
    }

    fn build(&self) -> Result<Client> {
        let s = &self.settings;
        let mut builder = Client::builder()
            .timeout(s.idle_timeout)
            .connect_timeout(s.connect_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE)
            .user_agent(concat!("retriever/", env!("CARGO_PKG_VERSION")))
            .redirect((self.redirect)());
        // A clone shares the roots, our key and the TLS sessions to resume.
        builder = builder.use_preconfigured_tls((*s.tls).clone());
        if !s.use_proxy {
            builder = builder.no_proxy();
        }
        builder.build().context("failed to set up the HTTPS client")
    }

    fn take(&self) -> Result<Client, SendError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(client) => Ok(client),
            // The first client was built with the same settings, so this
            // can fail only for want of resources; report it as such.
            None => self.build().map_err(SendError::Setup),
        }
    }

    fn give_back(&self, client: Client) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(client);
    }

    /// Sends a GET built by `request` with a client of its own and waits
    /// for the response head.
    pub fn get(
        &self,
        url: reqwest::Url,
        request: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response<'_>, SendError> {
        self.send(Method::GET, url, request)
    }

    /// [`Lanes::get`] for a POST (the token endpoint's form).
    pub fn post(
        &self,
        url: reqwest::Url,
        request: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response<'_>, SendError> {
        self.send(Method::POST, url, request)
    }

    fn send(
        &self,
        method: Method,
        url: reqwest::Url,
        request: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response<'_>, SendError> {
        let client = self.take()?;
        let head = self.start(&client, method, url, request);
        match head {
            Ok((status, headers, feed)) => Ok(Response {
                lanes: self,
                client: Some(client),
                status,
                headers,
                feed,
                piece: Vec::new(),
                at: 0,
            }),
            Err(e) => {
                self.give_back(client);
                Err(e)
            }
        }
    }

    fn start(
        &self,
        client: &Client,
        method: Method,
        url: reqwest::Url,
        request: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, Feed<Piece>), SendError> {
        let request = request(client.request(method, url)).build().map_err(SendError::Http)?;
        let client = client.clone();
        let mut feed = interrupt::feed(move |give| answer(&client, request, give)).map_err(SendError::Setup)?;
        match feed.take() {
            Ok(Some(Piece::Head { status, headers })) => Ok((status, headers, feed)),
            Ok(Some(Piece::Failed(e))) => Err(SendError::Http(e)),
            Err(Interrupted) => Err(SendError::Interrupted),
            Ok(_) => unreachable!("the request's thread hands over the head or why there is none first"),
        }
    }
}

/// The TLS every client of a cloud uses: what reqwest would build from the
/// same settings (TLS 1.2 and 1.3, SNI, HTTP/1.1 by ALPN), built once. Each
/// client built by reqwest itself holds a copy of the trusted roots, about
/// 0.4 MB, for as long as the program runs.
pub(super) fn tls_config(roots: RootCertStore, identity: Option<Identity>) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS cannot be set up here")?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(Identity { chain, key }) => builder
            .with_client_auth_cert(chain, key)
            .context("our client certificate cannot be used")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The first error of type `T` in `e`'s chain, `e` included.
pub(super) fn find_source<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(e);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        current = e.source();
    }
    None
}

/// The request's thread: sends it, hands over the head, then the body in
/// pieces, until the body ends, the connection fails or the caller is gone.
fn answer(client: &Client, request: reqwest::blocking::Request, give: &Give<Piece>) {
    let mut response = match client.execute(request) {
        Ok(response) => response,
        Err(e) => {
            give.give(Piece::Failed(e));
            return;
        }
    };
    let head = Piece::Head {
        status: response.status(),
        headers: response.headers().clone(),
    };
    if !give.give(head) {
        return;
    }
    loop {
        // `read_to_end` into spare capacity: the piece is not zeroed first.
        let mut piece = Vec::with_capacity(PIECE);
        let read = (&mut response).take(PIECE as u64).read_to_end(&mut piece);
        let ended = matches!(read, Ok(n) if n < PIECE);
        // What came before a failure is handed over first: parts complete
        // in it are kept.
        if !piece.is_empty() && !give.give(Piece::Data(piece)) {
            return;
        }
        match read {
            Err(e) => {
                give.give(Piece::Broken(e));
                return;
            }
            Ok(_) if ended => return,
            Ok(_) => {}
        }
    }
}

/// A response whose body is read through `Read`. Each read of the
/// connection waits at most the idle timeout for more data, so a long
/// transfer is never cut while bytes keep coming; and no wait outlasts
/// Ctrl-C, which fails the read with [`Interrupted`] inside the `io::Error`.
pub(super) struct Response<'a> {
    lanes: &'a Lanes,
    client: Option<Client>,
    status: StatusCode,
    headers: HeaderMap,
    feed: Feed<Piece>,
    piece: Vec<u8>,
    /// How much of `piece` has been read.
    at: usize,
}

impl Response<'_> {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl Read for Response<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            if buf.is_empty() {
                return Ok(0);
            }
            // Not `ErrorKind::Interrupted`: readers take that as "read again".
            match self.feed.take().map_err(io::Error::other)? {
                Some(Piece::Data(piece)) => {
                    self.piece = piece;
                    self.at = 0;
                }
                Some(Piece::Broken(e)) => return Err(e),
                None => return Ok(0),
                Some(Piece::Head { .. } | Piece::Failed(_)) => {
                    unreachable!("the head comes once, before the body")
                }
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for Response<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.lanes.give_back(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{Shutdown, TcpListener};

    use super::*;

    fn lanes(idle_timeout: Duration) -> Lanes {
        let settings = Settings {
            connect_timeout: Duration::from_secs(2),
            idle_timeout,
            tls: Arc::new(tls_config(RootCertStore::empty(), None).unwrap()),
            use_proxy: false,
        };
        Lanes::new(settings, redirect::Policy::none).unwrap()
    }

    /// Every client of a cloud shares the trusted roots, read once: a
    /// client more holds less than half of what they hold (about a third,
    /// measured), where reqwest's own set-up reads and keeps them again for
    /// each client (one and a half times what they hold, and about 0.4 MB
    /// of resident memory each, kept for as long as the program runs).
    /// reqwest builds a client on its runtime thread, so what every thread
    /// holds is counted, in a process of the test's own.
    #[test]
    fn clients_share_the_trusted_roots_read_once() {
        if !crate::testalloc::alone("dicomweb::http::tests::clients_share_the_trusted_roots_read_once") {
            return;
        }
        let held = crate::testalloc::held_everywhere;
        let before = held();
        let roots = crate::trust::system_roots();
        let for_roots = held() - before;
        let settings = Settings {
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            tls: Arc::new(tls_config(roots, None).unwrap()),
            use_proxy: false,
        };
        let lanes = Lanes::new(settings, redirect::Policy::none).unwrap();
        let before = held();
        let clients: Vec<Client> = (0..5).map(|_| lanes.build().unwrap()).collect();
        let for_clients = held() - before;
        eprintln!("the roots hold {for_roots} bytes; five clients more {for_clients}");
        assert!(
            for_clients * 2 < 5 * for_roots,
            "five clients more hold {for_clients} bytes, the roots {for_roots}: each holds its own copy"
        );
        drop(clients);
    }

    /// A body that comes slowly but steadily takes many idle timeouts in all,
    /// and is read to its end: the timeout is per read, not per transfer.
    #[test]
    fn a_slow_but_steady_body_is_read_to_its_end() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .unwrap();
            for _ in 0..8 {
                std::thread::sleep(Duration::from_millis(100));
                stream.write_all(&[7u8; 1000]).unwrap();
            }
            stream.shutdown(Shutdown::Write).unwrap();
        });
        let lanes = lanes(Duration::from_millis(300));
        let url = reqwest::Url::parse(&format!("http://{addr}/")).unwrap();
        let Ok(mut response) = lanes.get(url, |r| r) else {
            panic!("no response head")
        };
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = Vec::new();
        response.read_to_end(&mut body).unwrap();
        assert_eq!(body, vec![7u8; 8000]);
        server.join().unwrap();
    }

    /// A server that ends a kept-alive connection as soon as it has been
    /// idle for a moment (as Orthanc does after 1 s), without telling the
    /// client: a connection idle that long is not used for the next request.
    #[test]
    fn a_connection_idle_too_long_is_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let server = std::thread::spawn(move || {
            // First connection: answers, then swallows the next request
            // unanswered and closes, as a server does when its keep-alive
            // timer and the request cross.
            let (mut first, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = first.read(&mut request).unwrap();
            first.write_all(answer).unwrap();
            let reused = first.read(&mut request).unwrap_or(0) > 0;
            drop(first);
            if reused {
                return true;
            }
            let (mut second, _) = listener.accept().unwrap();
            let _ = second.read(&mut request).unwrap();
            second.write_all(answer).unwrap();
            false
        });
        let lanes = lanes(Duration::from_secs(5));
        let url = reqwest::Url::parse(&format!("http://{addr}/")).unwrap();
        for round in 0..2 {
            let Ok(mut response) = lanes.get(url.clone(), |r| r) else {
                panic!("no response head in round {round}")
            };
            let mut body = String::new();
            response.read_to_string(&mut body).unwrap();
            assert_eq!(body, "ok");
            drop(response);
            if round == 0 {
                // Idle past the pool's limit: the scenario itself is time.
                std::thread::sleep(POOL_IDLE + Duration::from_millis(300));
            }
        }
        assert!(!server.join().unwrap(), "the idle connection was reused");
    }
}
