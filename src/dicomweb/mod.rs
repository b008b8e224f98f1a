//! The DICOMweb client (PS3.18): QIDO-RS searches and WADO-RS retrieves
//! against the cloud archive, with its authentication, retries, idle
//! timeouts and a streaming multipart parser. It owns its options and their
//! defaults ([`ClientOptions`], [`Auth`]).
//!
//! This module speaks HTTP and nothing else: it hands each retrieved part to
//! a callback as a reader and never decides where the bytes go, so the cache
//! stays the only code that knows paths (see STYLE.md).

mod client;
mod http;
mod identity;
mod json;
mod multipart;
mod options;
mod query;
mod retry;
mod token;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod qido_tests;
#[cfg(test)]
pub(crate) mod testserver;

use std::fmt;

pub use client::Client;
pub use options::{
    Auth, ClientFor, ClientIdentity, ClientOptions, DEFAULT_BACKOFF, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_JOBS, DEFAULT_RETRIES, Proxy, ProxyOrigin,
};
pub use token::{
    ClientAuth, DEFAULT_TOKEN_LIFETIME, OAuth2, Origin as TokenOrigin, TOKEN_COMMAND_TIMEOUT, TokenCommand, Tokens,
};

/// True when `e` comes from the cloud refusing the login (HTTP 401 or 403).
pub fn is_login_refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<client::LoginRefused>())
}

/// How long the cloud asked to be left alone (`Retry-After`, capped), when
/// `e` comes from its answer to the last try of a request.
pub fn retry_after(e: &anyhow::Error) -> Option<std::time::Duration> {
    e.chain()
        .find_map(|c| c.downcast_ref::<client::AskedToWait>())
        .map(|a| a.wait)
}

/// True when `e` comes from the cloud sending nothing for the idle timeout
/// (a stall), as opposed to a cut connection or an error status.
pub fn is_stalled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<client::Stalled>())
}
pub use json::{DicomJson, tag_name};

use crate::uid::Uid;

/// What a WADO-RS retrieve asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Study(Uid),
    Series(Uid, Uid),
    Instance(Uid, Uid, Uid),
}

impl Target {
    /// The resource path below the base URL, e.g. `/studies/1.2/series/3.4`.
    /// Safe to build by formatting: a [`Uid`] holds only digits and dots.
    pub fn path(&self) -> String {
        match self {
            Target::Study(st) => format!("/studies/{st}"),
            Target::Series(st, se) => format!("/studies/{st}/series/{se}"),
            Target::Instance(st, se, sop) => format!("/studies/{st}/series/{se}/instances/{sop}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// The headers of one part of a multipart response that matter to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub content_location: Option<String>,
}

/// Why [`Client::retrieve`] stopped.
///
/// `parts_seen` counts the parts for which the callback returned `Ok`: those
/// are complete. When `transient` is true, asking again (for what is still
/// missing) may well succeed; when false, it would fail the same way. An
/// error returned by the callback is passed through unchanged as `error`,
/// with `transient` false.
pub struct RetrieveError {
    pub transient: bool,
    pub parts_seen: usize,
    pub error: anyhow::Error,
}

impl fmt::Display for RetrieveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The whole chain, because `source` below is deliberately empty:
        // printed through anyhow's `{:#}` the causes would otherwise repeat.
        write!(f, "{:#}", self.error)
    }
}

impl fmt::Debug for RetrieveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetrieveError")
            .field("transient", &self.transient)
            .field("parts_seen", &self.parts_seen)
            .field("error", &format_args!("{:#}", self.error))
            .finish()
    }
}

impl std::error::Error for RetrieveError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    #[test]
    fn target_paths() {
        assert_eq!(Target::Study(uid("1.2")).path(), "/studies/1.2");
        assert_eq!(Target::Series(uid("1.2"), uid("3")).path(), "/studies/1.2/series/3");
        assert_eq!(
            Target::Instance(uid("1.2"), uid("3"), uid("4.5")).to_string(),
            "/studies/1.2/series/3/instances/4.5"
        );
    }

    #[test]
    fn retrieve_error_prints_the_chain_once() {
        let e = RetrieveError {
            transient: true,
            parts_seen: 2,
            error: anyhow::anyhow!("inner").context("outer"),
        };
        assert_eq!(e.to_string(), "outer: inner");
        let any = anyhow::Error::from(e);
        assert_eq!(format!("{any:#}"), "outer: inner");
    }
}
