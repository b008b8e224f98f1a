//! What a [`Client`](super::Client) needs to know about the cloud: its base
//! URL, the credentials, the TLS trust, our client certificate, and the
//! limits of every request, with their defaults. `config` fills these from
//! flags, the environment and the config file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

/// Parallel downloads from the cloud.
pub const DEFAULT_JOBS: usize = 4;
/// Retries of a request after a transient failure.
pub const DEFAULT_RETRIES: u32 = 5;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle, not whole-transfer: a big study takes as long as it takes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// First backoff delay of a request's retries.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);

/// How to authenticate to the cloud.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    /// Short-lived tokens, renewed as they run out or are refused: an
    /// OAuth2 client-credentials grant or a token command.
    Renewed(super::Tokens),
}

impl fmt::Debug for Auth {
    // Secrets never reach a log line, even a debug one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Basic { user, .. } => write!(f, "basic (user `{user}`, password redacted)"),
            Auth::Bearer { .. } => f.write_str("bearer (token redacted)"),
            Auth::Renewed(tokens) => fmt::Debug::fmt(tokens, f),
        }
    }
}

/// Our client certificate and its private key, both PEM files, presented
/// to a cloud that asks for a certificate in the TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate, and any intermediate certificates after it.
    pub cert: PathBuf,
    /// The private key, unencrypted: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// Makes a client of the cloud that asks for instances in the transfer
/// syntax given (see [`ClientOptions::in_syntax`]).
pub type ClientFor = dyn Fn(&str) -> anyhow::Result<super::Client> + Send + Sync;

/// Everything needed to talk to the DICOMweb cloud.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL of the DICOMweb service, without a trailing slash, e.g.
    /// `https://cloud.example.org/dicom-web`.
    pub base: Url,
    pub auth: Auth,
    /// Extra PEM bundle of CA certificates trusted besides the system's.
    pub ca_bundle: Option<PathBuf>,
    /// Our certificate, for a cloud that asks for one (mutual TLS).
    pub client_identity: Option<ClientIdentity>,
    /// Plain http to a non-loopback host was explicitly allowed.
    pub allow_insecure_http: bool,
    /// Time allowed to open a TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Time allowed without receiving a byte, on any one request.
    pub idle_timeout: Duration,
    /// Retries after the first attempt, for transient failures.
    pub retries: u32,
    /// First backoff delay; doubled on every retry, with jitter.
    pub backoff: Duration,
    /// Parallel WADO-RS requests.
    pub jobs: usize,
    /// Transfer syntax to ask for; `None` asks for the original bytes (`*`).
    pub transfer_syntax: Option<String>,
    /// Attributes (tags) every study search asks for (`includefield`) and
    /// keeps, besides those retriever itself reads: the ones the routing
    /// rules match on.
    pub study_fields: Vec<u32>,
}

impl ClientOptions {
    /// Defaults for everything but the URL and credentials.
    pub fn new(base: Url, auth: Auth) -> ClientOptions {
        ClientOptions {
            base,
            auth,
            ca_bundle: None,
            client_identity: None,
            allow_insecure_http: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            jobs: DEFAULT_JOBS,
            transfer_syntax: None,
            study_fields: Vec::new(),
        }
    }

    /// Whether requests to the cloud may go through a proxy: never for a
    /// plain-http cloud, whose proxy would read the credentials and the
    /// patient data, and could change them.
    pub fn may_use_proxy(&self) -> bool {
        may_be_proxied(&self.base)
    }

    /// The proxy requests to the cloud go through, found as reqwest finds
    /// it (same matcher): `HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`,
    /// `all_proxy`, else the system's settings (Windows' Internet settings,
    /// macOS's), unless `NO_PROXY` names the host.
    pub fn proxy(&self) -> Proxy {
        proxy_for(&self.base)
    }

    /// How delivery asks this cloud for an instance again in a transfer
    /// syntax the destination takes: a client that asks for that syntax.
    pub fn in_syntax(self) -> Box<ClientFor> {
        Box::new(move |ts: &str| {
            let mut options = self.clone();
            options.transfer_syntax = Some(ts.to_string());
            super::Client::new(&options)
        })
    }
}

/// [`ClientOptions::may_use_proxy`] of a cloud at `base`.
fn may_be_proxied(base: &Url) -> bool {
    base.scheme() == "https"
}

/// [`ClientOptions::proxy`] of a cloud at `base`.
pub(super) fn proxy_for(base: &Url) -> Proxy {
    if !may_be_proxied(base) {
        return Proxy::NeverForPlainHttp;
    }
    let Ok(uri) = base.as_str().parse::<http::Uri>() else {
        return Proxy::None;
    };
    let Some(via) = hyper_util::client::proxy::matcher::Matcher::from_system().intercept(&uri) else {
        return Proxy::None;
    };
    let proxy = via.uri();
    let scheme = proxy.scheme_str().unwrap_or("http");
    let port = proxy.port_u16().unwrap_or(match scheme {
        "https" => 443,
        s if s.starts_with("socks") => 1080,
        _ => 80,
    });
    let credentials = if via.basic_auth().is_some() || via.raw_auth().is_some() {
        "***@"
    } else {
        ""
    };
    let origin = PROXY_VARIABLES
        .iter()
        .find(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
        .map_or(ProxyOrigin::System, |v| ProxyOrigin::Environment(v));
    Proxy::Via {
        url: format!("{scheme}://{credentials}{}:{port}", proxy.host().unwrap_or_default()),
        origin,
    }
}

/// The variables that name the proxy of an https request, in the order
/// reqwest reads them.
const PROXY_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// The proxy requests to the cloud go through (see [`ClientOptions::proxy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// The cloud is plain http, which is never proxied.
    NeverForPlainHttp,
    /// None is set, or `NO_PROXY` names the cloud's host.
    None,
    /// `scheme://host:port`, credentials shown as `***`.
    Via { url: String, origin: ProxyOrigin },
}

/// Where the proxy in use is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyOrigin {
    /// This environment variable.
    Environment(&'static str),
    /// The system's proxy settings (Windows' Internet settings, macOS's).
    System,
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::NeverForPlainHttp => f.write_str("none: plain http is never proxied"),
            Proxy::None => f.write_str("none"),
            Proxy::Via { url, .. } => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_debug_hides_secrets() {
        let a = Auth::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        let t = Auth::Bearer { token: "tok123".into() };
        assert!(!format!("{t:?}").contains("tok123"));
        let o = Auth::Renewed(super::super::Tokens::new(super::super::TokenOrigin::OAuth2(
            super::super::OAuth2 {
                token_url: Url::parse("https://login.example.org/token").unwrap(),
                client_id: "router".into(),
                client_secret: "hunter2".into(),
                scope: None,
                audience: None,
                client_auth: Default::default(),
            },
        )));
        let shown = format!("{o:?}");
        assert!(!shown.contains("hunter2") && shown.contains("router"), "{shown}");
    }
}
