//! Typed, validated settings. Raw flags, environment variables and the
//! config file are turned into these once (see `Settings::resolve`); the
//! rest of the program never parses strings again.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::Url;

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
}

impl fmt::Debug for Auth {
    // Secrets never reach a log line, even a debug one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Basic { user, .. } => write!(f, "basic (user `{user}`, password redacted)"),
            Auth::Bearer { .. } => f.write_str("bearer (token redacted)"),
        }
    }
}

/// Everything needed to talk to the DICOMweb cloud.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// Base URL of the DICOMweb service, without a trailing slash, e.g.
    /// `https://cloud.example.org/dicom-web`.
    pub base: Url,
    pub auth: Auth,
    /// Extra PEM bundle of CA certificates trusted besides the system's.
    pub ca_bundle: Option<PathBuf>,
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
}

impl CloudConfig {
    /// Defaults for everything but the URL and credentials.
    pub fn new(base: Url, auth: Auth) -> CloudConfig {
        CloudConfig {
            base,
            auth,
            ca_bundle: None,
            allow_insecure_http: false,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            retries: 5,
            backoff: Duration::from_millis(500),
            jobs: 4,
            transfer_syntax: None,
        }
    }
}

/// Parses the cloud URL and checks the scheme rule: https always, plain http
/// only to a loopback host or with the explicit opt-in.
pub fn parse_cloud_url(raw: &str, allow_insecure_http: bool) -> Result<Url> {
    let mut url = Url::parse(raw.trim()).with_context(|| {
        format!("the cloud URL `{raw}` is not a valid URL (expected e.g. https://cloud.example.org/dicom-web)")
    })?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(&url) => {}
        "http" => bail!(
            "the cloud URL `{raw}` uses plain http, which would send patient data and credentials unencrypted; \
             use https, or pass --allow-insecure-http if this network path is protected otherwise"
        ),
        other => bail!("the cloud URL `{raw}` has scheme `{other}`; use an https:// URL"),
    }
    if url.host().is_none() {
        bail!("the cloud URL `{raw}` has no host name");
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// True when the URL's host is a loopback name or address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A DICOM destination written `AE@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl Destination {
    pub fn parse(raw: &str) -> Result<Destination> {
        let hint = "write the destination as AE@HOST:PORT, e.g. PACS@10.0.0.5:104";
        let (ae, addr) = raw
            .split_once('@')
            .with_context(|| format!("the destination `{raw}` has no AE title; {hint}"))?;
        let ae_title = check_ae_title(ae).with_context(|| format!("in the destination `{raw}`"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .with_context(|| format!("the destination `{raw}` has no port; {hint}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("the destination `{raw}` has no host; {hint}");
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0).with_context(|| {
            format!("the destination `{raw}` has port `{port}`, which is not a TCP port number; {hint}")
        })?;
        Ok(Destination {
            ae_title,
            host: host.to_string(),
            port,
        })
    }

    /// A name for this destination that is safe as a file name in the cache.
    pub fn key(&self) -> String {
        let raw = format!("{}@{}_{}", self.ae_title, self.host, self.port);
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.ae_title, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.ae_title, self.host, self.port)
        }
    }
}

/// Checks an AE title (PS3.5: 1 to 16 characters of the default repertoire,
/// no backslash or control characters, not all spaces).
pub fn check_ae_title(raw: &str) -> Result<String> {
    let ae = raw.trim();
    if ae.is_empty() {
        bail!("the AE title is empty");
    }
    if ae.len() > 16 {
        bail!("the AE title `{ae}` is longer than 16 characters");
    }
    if !ae.chars().all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\') {
        bail!("the AE title `{ae}` contains characters not allowed in an AE title");
    }
    Ok(ae.to_string())
}

/// Parses a duration such as `90m`, `4h`, `30s`, `2d` or `1h 30m`.
pub fn parse_duration(raw: &str) -> Result<Duration> {
    humantime::parse_duration(raw.trim())
        .with_context(|| format!("`{raw}` is not a duration; write e.g. 30s, 90m, 4h or 7d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_parses_and_rejects() {
        let d = Destination::parse("PACS@10.0.0.5:104").unwrap();
        assert_eq!(
            (d.ae_title.as_str(), d.host.as_str(), d.port),
            ("PACS", "10.0.0.5", 104)
        );
        assert_eq!(d.to_string(), "PACS@10.0.0.5:104");
        assert_eq!(Destination::parse("X@[::1]:11112").unwrap().host, "::1");
        for bad in [
            "PACS",
            "PACS@host",
            "@host:104",
            "PACS@host:0",
            "PACS@:104",
            "WAYTOOLONGAETITLE1@h:1",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cloud_url_scheme_rule() {
        assert!(parse_cloud_url("https://cloud.example.org/dicom-web/", false).is_ok());
        assert_eq!(
            parse_cloud_url("https://cloud.example.org/dicom-web/", false)
                .unwrap()
                .as_str(),
            "https://cloud.example.org/dicom-web"
        );
        assert!(parse_cloud_url("http://127.0.0.1:8042/dicom-web", false).is_ok());
        assert!(parse_cloud_url("http://localhost:8042/dicom-web", false).is_ok());
        assert!(parse_cloud_url("http://cloud.example.org/dicom-web", false).is_err());
        assert!(parse_cloud_url("http://cloud.example.org/dicom-web", true).is_ok());
        assert!(parse_cloud_url("ftp://cloud.example.org/", true).is_err());
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let a = Auth::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        let t = Auth::Bearer { token: "tok123".into() };
        assert!(!format!("{t:?}").contains("tok123"));
    }
}

/// The config file, as written by an administrator. Every field is optional;
/// flags and environment variables take precedence over it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub cloud: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_bundle: Option<PathBuf>,
    pub allow_insecure_http: Option<bool>,
    pub to: Option<String>,
    pub calling_ae: Option<String>,
    pub cache: Option<PathBuf>,
    pub jobs: Option<usize>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub retries: Option<u32>,
}

impl FileConfig {
    pub fn load(path: &std::path::Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the config file `{}`", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("the config file `{}` is not valid", path.display()))
    }
}

/// Settings shared by every subcommand, merged from flags, environment and
/// the config file, and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cache_root: PathBuf,
    pub calling_ae: String,
    pub quiet: bool,
    cloud: Result<CloudConfig, String>,
    destination: Option<Result<Destination, String>>,
}

impl Settings {
    /// Merges `args` (flags and environment, already combined by clap) with
    /// the config file, and the secrets from environment or files.
    pub fn resolve(args: &crate::cli::GlobalArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let cache_root = match args.cache.clone().or(file.cache.clone()) {
            Some(dir) => dir,
            None => default_cache_dir()?,
        };
        let calling_ae = check_ae_title(
            args.calling_ae
                .as_deref()
                .or(file.calling_ae.as_deref())
                .unwrap_or("RETRIEVER"),
        )
        .context("the calling AE title (--calling-ae) is not usable")?;
        let destination = args
            .to
            .as_deref()
            .or(file.to.as_deref())
            .map(|raw| Destination::parse(raw).map_err(|e| format!("{e:#}")));
        let cloud = cloud_config(args, &file).map_err(|e| format!("{e:#}"));
        Ok(Settings {
            cache_root,
            calling_ae,
            quiet: args.quiet,
            cloud,
            destination,
        })
    }

    /// The cloud settings, or why they are missing or wrong.
    pub fn cloud(&self) -> Result<&CloudConfig> {
        self.cloud.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The destination, or why it is missing or wrong.
    pub fn destination(&self) -> Result<&Destination> {
        match &self.destination {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(anyhow::anyhow!("{e}")),
            None => bail!("no destination given: pass --to AE@HOST:PORT or set RETRIEVER_DEST"),
        }
    }
}

fn cloud_config(args: &crate::cli::GlobalArgs, file: &FileConfig) -> Result<CloudConfig> {
    let raw = args.cloud.as_deref().or(file.cloud.as_deref()).context(
        "no cloud archive given: pass --cloud URL or set RETRIEVER_CLOUD (e.g. https://cloud.example.org/dicom-web)",
    )?;
    let insecure = args.allow_insecure_http || file.allow_insecure_http.unwrap_or(false);
    let base = parse_cloud_url(raw, insecure)?;
    let auth = resolve_auth(args, file)?;
    let mut cloud = CloudConfig::new(base, auth);
    cloud.allow_insecure_http = insecure;
    cloud.ca_bundle = args.ca_bundle.clone().or(file.ca_bundle.clone());
    if let Some(jobs) = args.jobs.or(file.jobs) {
        if jobs == 0 || jobs > 64 {
            bail!("--jobs must be between 1 and 64, not {jobs}");
        }
        cloud.jobs = jobs;
    }
    if let Some(raw) = args.connect_timeout.as_deref().or(file.connect_timeout.as_deref()) {
        cloud.connect_timeout = parse_duration(raw).context("in --connect-timeout")?;
    }
    if let Some(raw) = args.idle_timeout.as_deref().or(file.idle_timeout.as_deref()) {
        cloud.idle_timeout = parse_duration(raw).context("in --idle-timeout")?;
    }
    if let Some(retries) = args.retries.or(file.retries) {
        cloud.retries = retries;
    }
    Ok(cloud)
}

fn resolve_auth(args: &crate::cli::GlobalArgs, file: &FileConfig) -> Result<Auth> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let token = match (env("RETRIEVER_TOKEN"), &args.token_file, &file.token, &file.token_file) {
        (Some(t), ..) => Some(t),
        (None, Some(path), ..) => Some(read_secret(path, "token")?),
        (None, None, Some(t), _) => Some(t.clone()),
        (None, None, None, Some(path)) => Some(read_secret(path, "token")?),
        _ => None,
    };
    if let Some(token) = token {
        return Ok(Auth::Bearer { token });
    }
    let Some(user) = args.user.clone().or(file.user.clone()) else {
        return Ok(Auth::None);
    };
    let password = match (
        env("RETRIEVER_PASSWORD"),
        &args.password_file,
        &file.password,
        &file.password_file,
    ) {
        (Some(p), ..) => p,
        (None, Some(path), ..) => read_secret(path, "password")?,
        (None, None, Some(p), _) => p.clone(),
        (None, None, None, Some(path)) => read_secret(path, "password")?,
        _ => bail!(
            "a user name (`{user}`) was given but no password: set RETRIEVER_PASSWORD, \
             or pass --password-file FILE, or put \"password\" in the config file"
        ),
    };
    Ok(Auth::Basic { user, password })
}

fn read_secret(path: &std::path::Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the {what} file `{}`", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        bail!("the {what} file `{}` is empty", path.display());
    }
    Ok(secret)
}

/// The platform's local cache folder for retriever.
pub fn default_cache_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    };
    base.map(|b| b.join("retriever")).context(
        "could not find the platform's cache folder (LOCALAPPDATA / XDG_CACHE_HOME / HOME unset); pass --cache DIR",
    )
}
