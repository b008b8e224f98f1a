//! HTTP requests whose answers are read on the calling thread.
//!
//! reqwest's blocking client runs its connections on a runtime thread of its
//! own and hands every body frame (8 KiB or so) across to the reading thread,
//! with a wake-up each time. On a fast link that hand-over, not the network,
//! was the limit: reading a 157 MB study from a loopback archive took 0.4 to
//! 1.5 s that way, against 0.2 to 0.3 s for curl or for the same read done on
//! one thread.
//!
//! So each [`Lane`] here is an async reqwest client together with a
//! single-threaded Tokio runtime that is driven only by the thread using the
//! lane, for the time of one request and its body. Lanes are lent out from a
//! pool, one per request in flight, and come back when the response is
//! dropped. A lane's pooled connections live on its own runtime, so they are
//! only ever reused through that lane.
//!
//! That runtime does not run between requests, so a kept-alive connection
//! the server closed meanwhile (Orthanc does after 1 s idle) is found closed
//! only when the next request is written on it. That request is sent again
//! at once on a new connection, as browsers and curl do, rather than counted
//! as a failed attempt and retried after a backoff.

use std::error::Error as StdError;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Certificate, RequestBuilder, StatusCode, redirect};

use crate::interrupt::{self, Interrupted};

/// Kept-alive connections per host and lane. A lane runs one request at a
/// time, so one would do; the second covers a connection still closing.
const MAX_IDLE_PER_HOST: usize = 2;

/// What every lane's client is built from.
pub(super) struct Settings {
    pub connect_timeout: Duration,
    /// The longest wait for the response head, and for each piece of a body.
    pub idle_timeout: Duration,
    pub certificates: Vec<Certificate>,
    /// Whether the proxy of the environment (`HTTPS_PROXY`, ...) may be
    /// used. Never for a plain-http cloud: the proxy would read the
    /// credentials and the patient data, and could change them.
    pub use_proxy: bool,
}

struct Lane {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// Lanes for one cloud; as many as requests have ever run at once.
pub(super) struct Lanes {
    settings: Settings,
    redirect: Box<dyn Fn() -> redirect::Policy + Send + Sync>,
    idle: Mutex<Vec<Lane>>,
}

/// Why a request got no response.
pub(super) enum SendError {
    /// No response head within the idle timeout.
    TimedOut,
    Http(reqwest::Error),
    /// A new lane could not be set up (out of threads or file handles).
    Setup(anyhow::Error),
    /// Ctrl-C came while waiting for the response head.
    Interrupted,
}

impl Lanes {
    /// Builds the first lane, so that a bad setting (a CA bundle rustls
    /// rejects, say) is reported now rather than at the first request.
    pub fn new(settings: Settings, redirect: impl Fn() -> redirect::Policy + Send + Sync + 'static) -> Result<Lanes> {
        let lanes = Lanes {
            settings,
            redirect: Box::new(redirect),
            idle: Mutex::new(Vec::new()),
        };
        let first = lanes.build()?;
        lanes.idle.lock().unwrap_or_else(|e| e.into_inner()).push(first);
        Ok(lanes)
    }

    fn build(&self) -> Result<Lane> {
        let s = &self.settings;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(s.connect_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .user_agent(concat!("retriever/", env!("CARGO_PKG_VERSION")))
            .redirect((self.redirect)());
        for cert in &s.certificates {
            builder = builder.add_root_certificate(cert.clone());
        }
        if !s.use_proxy {
            builder = builder.no_proxy();
        }
        let client = builder.build().context("failed to set up the HTTPS client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the HTTP runtime")?;
        Ok(Lane { runtime, client })
    }

    fn take(&self) -> Result<Lane, SendError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(lane) => Ok(lane),
            // The first lane was built with the same settings, so this
            // can fail only for want of resources; report it as such.
            None => self.build().map_err(SendError::Setup),
        }
    }

    fn give_back(&self, lane: Lane) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(lane);
    }

    /// Sends a GET built by `request` on a lane of its own and waits for the
    /// response head.
    pub fn get(
        &self,
        url: reqwest::Url,
        request: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response<'_>, SendError> {
        let lane = self.take()?;
        let send = || {
            let sent = request(lane.client.get(url.clone())).send();
            // The timer is made inside the runtime, which it needs.
            let timed = async { tokio::time::timeout(self.settings.idle_timeout, sent).await };
            lane.runtime.block_on(interrupt::or_cancelled(timed))
        };
        let head = match send() {
            Ok(Ok(Err(e))) if closed_while_idle(&e) => send(),
            head => head,
        };
        let head = match head {
            Ok(head) => head,
            Err(Interrupted) => {
                self.give_back(lane);
                return Err(SendError::Interrupted);
            }
        };
        match head {
            Ok(Ok(response)) => Ok(Response {
                lanes: self,
                lane: Some(lane),
                response,
                chunk: Bytes::new(),
                done: false,
            }),
            Ok(Err(e)) => {
                self.give_back(lane);
                Err(SendError::Http(e))
            }
            Err(_) => {
                self.give_back(lane);
                Err(SendError::TimedOut)
            }
        }
    }
}

/// True when the request went out on a connection that turned out to be
/// closed before any answer came: the server ended a kept-alive connection.
fn closed_while_idle(e: &reqwest::Error) -> bool {
    find_source::<hyper::Error>(e).is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
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

/// A response whose body is read, on the calling thread, through `Read`.
/// Each read waits at most the idle timeout for more data, so a long
/// transfer is never cut while bytes keep coming; and no longer than
/// Ctrl-C, which fails the read with [`Interrupted`] inside the `io::Error`.
pub(super) struct Response<'a> {
    lanes: &'a Lanes,
    lane: Option<Lane>,
    response: reqwest::Response,
    chunk: Bytes,
    done: bool,
}

impl Response<'_> {
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }
}

impl Read for Response<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let lane = self.lane.as_ref().expect("a response holds its lane until dropped");
            let idle = self.lanes.settings.idle_timeout;
            let next = lane.runtime.block_on(interrupt::or_cancelled(async {
                tokio::time::timeout(idle, self.response.chunk()).await
            }));
            // Not `ErrorKind::Interrupted`: readers take that as "read again".
            let next = next.map_err(io::Error::other)?;
            match next {
                Ok(Ok(Some(chunk))) => self.chunk = chunk,
                Ok(Ok(None)) => self.done = true,
                Ok(Err(e)) => return Err(io::Error::other(e)),
                Err(_) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no data for {idle:?}")));
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl Drop for Response<'_> {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            self.lanes.give_back(lane);
        }
    }
}
