//! Typed, validated settings. Raw flags, environment variables and the
//! config file are turned into these once (see `Settings::resolve`); the
//! rest of the program never parses strings again. `config` owns no defaults
//! of the modules below it: it fills their options (`dicomweb::ClientOptions`,
//! `dimse::ScuOptions`, `delivery::StoreOptions`, `watch::Filter`...) and checks
//! the values that come from the environment and the config file (`cli`
//! checks the flags).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, ValueEnum};
use reqwest::Url;

use crate::cli::{MAX_JOBS, MIN_INSTANCE_SIZE, PriorModality};
use crate::delivery::StoreOptions;
use crate::dicomweb::{
    Auth, ClientAuth, ClientIdentity, ClientOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_JOBS,
    DEFAULT_RETRIES, DEFAULT_TOKEN_LIFETIME, OAuth2, TOKEN_COMMAND_TIMEOUT, TokenCommand, TokenOrigin, Tokens,
};
use crate::dimse::{ClientTls, Destination, ScuOptions, TlsOptions, check_ae_title};
use crate::format::{parse_duration, parse_size, setting_duration as format_setting_duration};
use crate::priors::{ModalityRule, Rules};
use crate::watch::Filter;

mod destinations;

/// Parses the cloud URL and checks the scheme rule: https always, plain http
/// only to a loopback host or with the explicit opt-in.
pub fn parse_cloud_url(raw: &str, allow_insecure_http: bool) -> Result<Url> {
    let mut url = parse_https_url(
        "the cloud URL",
        raw,
        "https://cloud.example.org/dicom-web",
        allow_insecure_http,
    )?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!(
            "the cloud URL `{}` has credentials in it, where other users can read them; give the user \
             with --user and the password with RETRIEVER_PASSWORD, --password-file or the config file",
            redact_url(raw)
        );
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Parses `raw` (`what`, e.g. "the cloud URL") and checks the scheme rule
/// for every URL credentials go to: https always, plain http only to a
/// loopback host or with the explicit opt-in.
fn parse_https_url(what: &str, raw: &str, example: &str, allow_insecure_http: bool) -> Result<Url> {
    // What is shown of it, in case a password was written into it.
    let raw = &redact_url(raw);
    let url = Url::parse(raw.trim())
        .with_context(|| format!("{what} `{raw}` is not a valid URL (expected e.g. {example})"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(&url) => {}
        "http" => bail!(
            "{what} `{raw}` uses plain http, which would send patient data and credentials unencrypted; \
             use https, or pass --allow-insecure-http if this network path is protected otherwise"
        ),
        other => bail!("{what} `{raw}` has scheme `{other}`; use an https:// URL"),
    }
    if url.host().is_none() {
        bail!("{what} `{raw}` has no host name");
    }
    Ok(url)
}

/// The URL as it may be shown: a user and password in it replaced by `***`,
/// however it is spelt. Every message that shows a cloud URL given by the
/// user goes through this.
///
/// The URL parser decides what is a user and password, as it does for the
/// requests: it also reads `https:user:pw@host`, `https:/user:pw@host` or
/// `https:\\user:pw@host` as `https://user:pw@host/`, and drops tabs and
/// newlines inside the URL. What it cannot read as a URL with a host may
/// still hold a secret: everything up to its last `@` is hidden.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(mut url) if url.has_host() => {
            if url.username().is_empty() && url.password().is_none() {
                return raw.to_string();
            }
            // Neither can fail on a URL with a host.
            let _ = url.set_password(None);
            let _ = url.set_username(REDACTED);
            url.to_string()
        }
        _ => match raw.rfind('@') {
            Some(at) => format!("{}{REDACTED}@{}", http_scheme_prefix(raw), &raw[at + 1..]),
            None => raw.to_string(),
        },
    }
}

/// `http:` or `https:` (in any case) and the slashes after it, when `raw`
/// starts so; else nothing (whatever else stands there may be a user name).
fn http_scheme_prefix(raw: &str) -> &str {
    let Some(colon) = raw.find(':') else {
        return "";
    };
    if !["http", "https"].iter().any(|s| raw[..colon].eq_ignore_ascii_case(s)) {
        return "";
    }
    let slashes = raw[colon + 1..].len() - raw[colon + 1..].trim_start_matches(['/', '\\']).len();
    &raw[..colon + 1 + slashes]
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

/// The config file, as an administrator writes it: JSON, every key optional,
/// each named after its long flag (`--prior-years` is `prior_years`). Flags
/// and environment variables take precedence over it. Unknown keys are
/// refused, so that a misspelt setting is not silently ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    // The cloud archive.
    pub cloud: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_bundle: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    // OAuth2 client credentials (RFC 6749 §4.4), or a command printing a
    // token: short-lived access tokens, renewed as they run out.
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret: Option<String>,
    pub oauth_client_secret_file: Option<PathBuf>,
    pub oauth_scope: Option<String>,
    pub oauth_audience: Option<String>,
    /// `basic` (the default) or `body`: how the client secret is sent.
    pub oauth_client_auth: Option<String>,
    pub token_command: Option<String>,
    /// How long a token printed by `token_command` is used, e.g. "5m".
    pub token_command_lifetime: Option<String>,
    pub allow_insecure_http: Option<bool>,
    pub jobs: Option<usize>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub retries: Option<u32>,
    /// The largest single instance taken from the cloud, e.g. "8GiB".
    pub max_instance_size: Option<String>,
    // Prior studies.
    pub priors: Option<usize>,
    pub prior_years: Option<u32>,
    pub prior_modality: Option<String>,
    // The DICOM destination.
    pub to: Option<String>,
    pub calling_ae: Option<String>,
    pub associations: Option<u16>,
    pub max_pdu: Option<u32>,
    pub dicom_connect_timeout: Option<String>,
    pub acse_timeout: Option<String>,
    pub dimse_timeout: Option<String>,
    pub store_retries: Option<u32>,
    pub decompress_lossy: Option<bool>,
    // DICOM TLS to the destination.
    pub to_tls: Option<bool>,
    pub to_ca: Option<PathBuf>,
    pub to_cert: Option<PathBuf>,
    pub to_key: Option<PathBuf>,
    pub to_server_name: Option<String>,
    /// Tag coercion: rules applied in order to every instance sent to the
    /// destination (see `coerce.rs` for their forms).
    pub coerce: Option<Vec<serde_json::Value>>,
    /// Several destinations, each with its own settings and rules (see
    /// `DestinationEntry`); read entry by entry so that an error names the entry.
    pub destinations: Option<Vec<serde_json::Value>>,
    // `watch`: the search for studies to route, as QIDO-RS matching keys
    // and values, e.g. {"ModalitiesInStudy": "CT", "StudyDate": "last 24 hours"}.
    pub watch_filter: Option<std::collections::BTreeMap<String, String>>,
    pub watch_interval: Option<String>,
    pub stable_age: Option<String>,
    // The cache.
    pub cache: Option<PathBuf>,
    /// How long `prune` keeps a study after its last fetch or delivery, e.g. "4h".
    pub retention: Option<String>,
    /// Past this age `prune` removes a study even if not delivered, e.g. "7d".
    pub max_age: Option<String>,
    /// Where `watch` appends its log (rotated by size).
    pub log_file: Option<PathBuf>,
}

/// How to write a Windows path in the JSON config file.
const BACKSLASH_HINT: &str = "in JSON a backslash starts an escape: write a Windows path with `/` \
     (`\"D:/retriever-cache\"`) or with doubled backslashes (`\"D:\\\\retriever-cache\"`)";

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the config file `{}`", path.display()))?;
        let file: FileConfig = serde_json::from_str(&text)
            .map_err(|e| match e.to_string() {
                // `"C:\ProgramData"` written with single backslashes, as
                // Windows shows paths.
                msg if msg.starts_with("invalid escape") => anyhow::anyhow!("{msg}; {BACKSLASH_HINT}"),
                _ => anyhow::Error::new(e),
            })
            .with_context(|| format!("the config file `{}` is not valid", path.display()))?;
        file.check_paths()
            .with_context(|| format!("the config file `{}` is not valid", path.display()))?;
        Ok(file)
    }

    /// Refuses a path holding a control character (see [`check_path`]).
    fn check_paths(&self) -> Result<()> {
        let paths = [
            ("cache", &self.cache),
            ("ca_bundle", &self.ca_bundle),
            ("password_file", &self.password_file),
            ("token_file", &self.token_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
            ("oauth_client_secret_file", &self.oauth_client_secret_file),
            ("to_ca", &self.to_ca),
            ("to_cert", &self.to_cert),
            ("to_key", &self.to_key),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                check_path(key, path)?;
            }
        }
        Ok(())
    }

    /// True when the file holds a password or token itself, not the name
    /// of a file holding one.
    pub fn holds_secret(&self) -> bool {
        self.password.is_some() || self.token.is_some() || self.oauth_client_secret.is_some()
    }
}

/// Refuses a path holding a control character: JSON reads `"D:\retriever"`
/// (one backslash) as `D:` + carriage return + `etriever`, which is never
/// what was meant and would otherwise create a strange directory silently.
fn check_path(key: &str, path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        bail!(
            "`{key}` is `{}`, with the control character `{}` in it, which is what JSON makes of a \
             single backslash before `b`, `f`, `n`, `r` or `t`; {BACKSLASH_HINT}",
            text.escape_default(),
            c.escape_default()
        );
    }
    Ok(())
}

/// A setting found wrong, kept until a command needs it (`ls` needs no
/// cloud, `fetch` no destination): its error, with the whole chain of causes.
#[derive(Debug, Clone)]
struct Wrong(std::sync::Arc<anyhow::Error>);

impl From<anyhow::Error> for Wrong {
    fn from(e: anyhow::Error) -> Wrong {
        Wrong(std::sync::Arc::new(e))
    }
}

impl Wrong {
    /// The error again, for the caller's `?`; its causes stay its sources.
    fn error(&self) -> anyhow::Error {
        // Kept recognisable, for `main`'s exit status.
        if let Some(usage) = self.0.chain().next().and_then(|e| e.downcast_ref::<UsageError>()) {
            return anyhow::Error::new(usage.clone());
        }
        anyhow::Error::new(self.clone())
    }
}

/// Settings that contradict each other, such as two ways to log in to the
/// cloud: a usage error (exit status 2), like a wrong flag.
#[derive(Debug, Clone)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl fmt::Display for Wrong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Wrong {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Where a setting's value came from, highest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    ConfigFile,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Environment => "environment",
            Source::ConfigFile => "config file",
            Source::Default => "default",
        })
    }
}

/// How a secret is shown, wherever it is shown.
pub const REDACTED: &str = "***";

/// One setting as `retriever config` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The setting's key in the config file (`destinations[pacs].to` for
    /// a key of one entry of the list).
    pub key: std::borrow::Cow<'static, str>,
    /// The value as shown (a secret as [`REDACTED`]); `None` when not set.
    pub value: Option<String>,
    pub source: Source,
    /// Exactly where from: the flag (`--cloud`), the variable
    /// (`RETRIEVER_CLOUD`), the file a secret was read from.
    pub origin: Option<String>,
}

/// How to talk DICOM to the destination (`store`, `fetch --store`, `echo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomSettings {
    /// Associations opened in parallel.
    pub associations: u16,
    /// Largest PDU we receive, and send if the destination takes it.
    pub max_pdu: u32,
    pub connect_timeout: Duration,
    pub acse_timeout: Duration,
    /// Idle time allowed while an instance is sent or its answer awaited.
    pub dimse_timeout: Duration,
    /// Retries of an instance, or of an association, within one run.
    pub store_retries: u32,
    pub decompress_lossy: bool,
    /// Tag coercion for every instance sent; none by default.
    pub coerce: crate::coerce::Coercions,
}

impl DicomSettings {
    /// The association settings for `destination`, reached with `tls`
    /// (`None`: plain TCP) as `calling_ae`.
    fn scu_options(&self, destination: Destination, tls: Option<ClientTls>, calling_ae: &str) -> ScuOptions {
        let mut opts = ScuOptions::new(destination);
        opts.tls = tls;
        opts.calling_ae = calling_ae.to_string();
        opts.max_pdu = self.max_pdu;
        opts.decompress_lossy = self.decompress_lossy;
        opts.coerce = self.coerce.clone();
        opts.connect_timeout = self.connect_timeout;
        opts.acse_timeout = self.acse_timeout;
        opts.dimse_timeout = self.dimse_timeout;
        opts
    }
}

impl Default for DicomSettings {
    fn default() -> DicomSettings {
        DicomSettings {
            associations: crate::delivery::DEFAULT_ASSOCIATIONS,
            max_pdu: crate::dimse::DEFAULT_MAX_PDU,
            connect_timeout: crate::dimse::DEFAULT_CONNECT_TIMEOUT,
            acse_timeout: crate::dimse::DEFAULT_ACSE_TIMEOUT,
            dimse_timeout: crate::dimse::DEFAULT_DIMSE_TIMEOUT,
            store_retries: crate::delivery::DEFAULT_RETRIES,
            decompress_lossy: false,
            coerce: crate::coerce::Coercions::default(),
        }
    }
}

/// Settings shared by every subcommand, merged from flags, environment and
/// the config file, and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cache_root: PathBuf,
    /// `prune --older-than`, or `retention` in the config file.
    pub retention: Duration,
    /// `max_age` in the config file.
    pub max_age: Duration,
    /// `--log-file`: where `watch` appends its log.
    pub log_file: Option<PathBuf>,
    pub calling_ae: String,
    pub quiet: bool,
    pub dicom: DicomSettings,
    pub priors: Rules,
    pub watch: WatchSettings,
    /// What one instance may take of the cache's disk.
    pub cache_limits: crate::cache::Limits,
    /// What the person should fix but that does not stop the run, such as
    /// a config file with a password that other users can read.
    pub warnings: Vec<String>,
    cloud: Result<ClientOptions, Wrong>,
    destination: Option<Result<Destination, Wrong>>,
    /// DICOM TLS to the destination; `None` for plain TCP.
    tls: Result<Option<ClientTls>, Wrong>,
    /// `--dest NAME` (repeatable): only these destinations; all when none.
    pub dest_names: Vec<String>,
    /// The config file's `destinations`, when they are used (no `--to`,
    /// no `RETRIEVER_DEST`): each route, or why it cannot be used.
    destinations: Option<Vec<Result<crate::routing::Route, Wrong>>>,
    entries: Vec<Entry>,
}

impl Settings {
    /// Takes every setting from the first place that has it: a flag, its
    /// environment variable (clap has both in `matches`, told apart by
    /// `value_source`), the config file, the default; the secrets from the
    /// environment, a file or the config file. Records where each value
    /// came from, for `retriever config` ([`Settings::entries`]).
    ///
    /// A new setting is a field in [`FileConfig`] named like its flag's
    /// clap id, and one `layers.pick` here.
    pub fn resolve(matches: &ArgMatches) -> Result<Settings> {
        let (config_path, config_entry) = config_file(matches);
        let file = match &config_path {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let mut layers = Layers {
            matches,
            command: crate::cli::Cli::command(),
            config_path: config_path.as_deref(),
            entries: vec![config_entry],
            warnings: Vec::new(),
        };
        if let Some(path) = &config_path
            && file.holds_secret()
            && let Some(mode) = readable_by_others(path)
        {
            layers.warnings.push(format!(
                "the config file `{}` holds a secret and other users can read it (mode {mode:03o}); \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
        let cloud = cloud_config(&mut layers, &file).map_err(Wrong::from);
        let priors = prior_rules(&mut layers, &file)?;
        // A wrong destination matters only to the commands that deliver.
        let destination = match layers.file_value("to", file.to.clone(), Destination::parse) {
            Ok(file_to) => layers.pick("to", file_to, None, show_display).map(Ok),
            Err(e) => Some(Err(Wrong::from(e))),
        };
        let host = match &destination {
            Some(Ok(d)) => Some(d.host.clone()),
            _ => None,
        };
        let tls_defaults = tls_settings(&mut layers, &file);
        // With the config file's list in use, the top-level TLS keys are
        // only what its entries inherit, checked entry by entry.
        let list_in_use = destination.is_none() && file.destinations.is_some();
        let tls = if list_in_use {
            Ok(None)
        } else {
            client_tls(&tls_defaults, host.as_deref(), &|key| layers.origin(key)).map_err(Wrong::from)
        };
        let calling_ae = layers
            .pick(
                "calling_ae",
                file.calling_ae.clone(),
                Some(crate::dimse::DEFAULT_CALLING_AE.to_string()),
                show_string,
            )
            .unwrap_or_default();
        let calling_ae = check_ae_title(&calling_ae)
            .with_context(|| format!("the calling AE title ({}) is not usable", layers.origin("calling_ae")))?;
        let dicom = dicom_settings(&mut layers, &file)?;
        let watch = watch_settings(&mut layers, &file)?;
        let cache_root = match layers.pick("cache", file.cache.clone(), default_cache_dir().ok(), show_path) {
            Some(dir) => dir,
            None => default_cache_dir()?,
        };
        let cache_limits = cache_limits(&mut layers, &file)?;
        let retention = layers.duration("retention", file.retention.clone(), crate::prune::DEFAULT_RETENTION)?;
        let max_age = layers.duration("max_age", file.max_age.clone(), crate::prune::DEFAULT_MAX_AGE)?;
        let log_file = layers.pick("log_file", file.log_file.clone(), None, show_path);
        let inherited = destinations::Inherited {
            calling_ae: &calling_ae,
            dicom: &dicom,
            tls: &tls_defaults,
        };
        let resolved = destinations::resolve(&mut layers, &file, &inherited, destination.is_some())?;
        // Every study search asks for what the rules read, so that the
        // cache keeps it with the study.
        let cloud = cloud.map(|mut cloud| {
            cloud.study_fields = resolved.attribute_tags;
            cloud
        });
        let dest_names = layers
            .matches
            .try_get_many::<String>("dest")
            .ok()
            .flatten()
            .map(|names| names.cloned().collect())
            .unwrap_or_default();
        Ok(Settings {
            cache_root,
            retention,
            max_age,
            log_file,
            calling_ae,
            quiet: layers.given::<bool>("quiet").is_some_and(|(quiet, ..)| quiet),
            dicom,
            priors,
            watch,
            cache_limits,
            warnings: layers.warnings,
            cloud,
            destination,
            tls,
            dest_names,
            destinations: resolved.routes,
            entries: layers.entries,
        })
    }

    /// The cloud settings, or why they are missing or wrong.
    pub fn cloud(&self) -> Result<&ClientOptions> {
        self.cloud.as_ref().map_err(Wrong::error)
    }

    /// The destination, or why it is missing or wrong.
    pub fn destination(&self) -> Result<&Destination> {
        match &self.destination {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(e.error()),
            None => bail!(
                "no destination given: pass --to AE@HOST:PORT or set RETRIEVER_DEST, or list `destinations` in \
                 the config file"
            ),
        }
    }

    /// The destination if one is given (`None` if none is), or why the
    /// one given is wrong.
    pub fn destination_if_given(&self) -> Result<Option<&Destination>> {
        match &self.destination {
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e)) => Err(e.error()),
            None => Ok(None),
        }
    }

    /// DICOM TLS to the destination (`None`: plain TCP), or why the TLS
    /// settings cannot be used.
    pub fn destination_tls(&self) -> Result<Option<&ClientTls>> {
        self.tls.as_ref().map(Option::as_ref).map_err(Wrong::error)
    }

    /// The association settings for the destination: the DICOM flags (see
    /// `cli::DimseArgs`), as merged with the environment and the config file.
    pub fn scu_options(&self) -> Result<ScuOptions> {
        let destination = self.destination()?.clone();
        let tls = self.destination_tls()?.cloned();
        Ok(self.dicom.scu_options(destination, tls, &self.calling_ae))
    }

    /// [`Settings::scu_options`] plus how many associations and retries.
    pub fn store_options(&self) -> Result<StoreOptions> {
        let mut opts = StoreOptions::new(self.scu_options()?);
        opts.associations = usize::from(self.dicom.associations);
        opts.retries = self.dicom.store_retries;
        Ok(opts)
    }

    /// The destinations to deliver to, each with its rules: the one of
    /// `--to` (or `RETRIEVER_DEST`, or the config file's `to`), else the
    /// config file's `destinations`; only those named by `--dest`, if any.
    pub fn routes(&self) -> Result<crate::routing::Routes> {
        use crate::routing::{Route, Routes};
        let routes = match (&self.destination, &self.destinations) {
            (None, Some(list)) => Routes::configured(
                list.iter()
                    .map(|route| route.clone().map_err(|e| e.error()))
                    .collect::<Result<_>>()?,
            ),
            _ => Routes::new(vec![Route::single(self.store_options()?)]),
        };
        routes
            .select(&self.dest_names)
            .map_err(|e| anyhow::Error::new(UsageError(format!("--dest: {e:#}"))))
    }

    /// Every setting with its value (secrets redacted) and where it came
    /// from, in the order `retriever config` shows them.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// The config file: `--config` or `RETRIEVER_CONFIG`, else the first of
/// [`config_file_candidates`] that exists.
fn config_file(matches: &ArgMatches) -> (Option<PathBuf>, Entry) {
    let entry = |path: &Path, source, origin| Entry {
        key: "config".into(),
        value: Some(path.display().to_string()),
        source,
        origin,
    };
    if let Ok(Some(path)) = matches.try_get_one::<PathBuf>("config") {
        let (source, origin) = match matches.value_source("config") {
            Some(ValueSource::EnvVariable) => (Source::Environment, "RETRIEVER_CONFIG"),
            _ => (Source::Flag, "--config"),
        };
        return (Some(path.clone()), entry(path, source, Some(origin.to_string())));
    }
    match config_file_candidates().into_iter().find(|p| p.is_file()) {
        Some(path) => {
            let e = entry(&path, Source::Default, None);
            (Some(path), e)
        }
        None => (
            None,
            Entry {
                key: "config".into(),
                value: None,
                source: Source::Default,
                origin: None,
            },
        ),
    }
}

/// Where a config file is looked for when none is named, in this order:
/// the user's (`%APPDATA%\retriever\config.json`, `~/.config/retriever/config.json`),
/// then the machine's (`%ProgramData%\retriever\config.json`, `/etc/retriever/config.json`).
pub fn config_file_candidates() -> Vec<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dirs = if cfg!(windows) {
        vec![var("APPDATA"), var("ProgramData")]
    } else {
        vec![
            var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config"))),
            Some(PathBuf::from("/etc")),
        ]
    };
    dirs.into_iter()
        .flatten()
        .map(|d| d.join("retriever").join("config.json"))
        .collect()
}

/// Picks each setting from flags, environment, config file or default, and
/// records where it came from.
struct Layers<'a> {
    matches: &'a ArgMatches,
    /// The clap definitions, for the flag and variable names.
    command: clap::Command,
    config_path: Option<&'a Path>,
    entries: Vec<Entry>,
    warnings: Vec<String>,
}

impl Layers<'_> {
    /// The value of clap argument `id` when given as a flag or through its
    /// environment variable, not clap's default; with where it came from.
    /// The subcommand's own arguments are looked at first, then the global ones.
    fn given<T: Clone + Send + Sync + 'static>(&self, id: &str) -> Option<(T, Source, String)> {
        let sub = self.matches.subcommand();
        let levels = sub.map(|(_, m)| m).into_iter().chain([self.matches]);
        for m in levels {
            let value = match m.try_get_one::<T>(id) {
                Ok(Some(value)) => value,
                // A type that is not the argument's would ignore the flag silently.
                Err(e @ clap::parser::MatchesError::Downcast { .. }) => panic!("clap argument `{id}`: {e}"),
                Ok(None) | Err(_) => continue,
            };
            let arg = self.arg(sub.map(|(name, _)| name), id);
            let (source, origin) = match m.value_source(id) {
                Some(ValueSource::CommandLine) => {
                    let long = arg.and_then(|a| a.get_long()).map(str::to_string);
                    (
                        Source::Flag,
                        format!("--{}", long.unwrap_or_else(|| id.replace('_', "-"))),
                    )
                }
                Some(ValueSource::EnvVariable) => {
                    let env = arg.and_then(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned());
                    (Source::Environment, env.unwrap_or_default())
                }
                _ => continue,
            };
            return Some((value.clone(), source, origin));
        }
        None
    }

    /// The clap definition of argument `id`, in the subcommand or at the top.
    fn arg(&self, sub: Option<&str>, id: &str) -> Option<&clap::Arg> {
        let sub = sub.and_then(|name| self.command.find_subcommand(name));
        sub.into_iter()
            .chain([&self.command])
            .flat_map(|c| c.get_arguments())
            .find(|a| a.get_id() == id)
    }

    /// The first of: flag or environment (clap id `key`), config file, default.
    fn pick<T: Clone + Send + Sync + 'static>(
        &mut self,
        key: &'static str,
        file: Option<T>,
        default: Option<T>,
        show: impl Fn(&T) -> String,
    ) -> Option<T> {
        let (value, source, origin) = match (self.given::<T>(key), file) {
            (Some((v, source, origin)), _) => (Some(v), source, Some(origin)),
            (None, Some(v)) => (Some(v), Source::ConfigFile, None),
            (None, None) => (default, Source::Default, None),
        };
        self.entries.push(Entry {
            key: key.into(),
            value: value.as_ref().map(show),
            source,
            origin,
        });
        value
    }

    /// [`Layers::pick`] with a default, so always a value.
    fn pick_or<T: Clone + Send + Sync + 'static>(
        &mut self,
        key: &'static str,
        file: Option<T>,
        default: T,
        show: impl Fn(&T) -> String,
    ) -> T {
        self.pick(key, file, Some(default.clone()), show).unwrap_or(default)
    }

    /// [`Layers::pick`] for a duration (written e.g. `30s`, `5m`), checked.
    /// A flag was checked by clap; the config file's text is checked here.
    fn duration(&mut self, key: &'static str, file: Option<String>, default: Duration) -> Result<Duration> {
        let file = self.file_value(key, file, parse_duration)?;
        Ok(self.pick_or(key, file, default, |d| format_setting_duration(*d)))
    }

    /// The config file's text for `key`, read by `parse`, unless a flag or
    /// the environment overrides it (then it is not looked at). A text that
    /// does not read is an error naming the key and the file, and is shown
    /// as written by `retriever config`.
    fn file_value<T: Clone + Send + Sync + 'static, E: std::error::Error + Send + Sync + 'static>(
        &mut self,
        key: &'static str,
        file: Option<String>,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Option<T>> {
        let Some(raw) = file.filter(|_| self.given::<T>(key).is_none()) else {
            return Ok(None);
        };
        match parse(&raw) {
            Ok(value) => Ok(Some(value)),
            Err(e) => {
                self.entries.push(Entry {
                    key: key.into(),
                    value: Some(raw),
                    source: Source::ConfigFile,
                    origin: None,
                });
                Err(anyhow::Error::new(e).context(format!("in {}", self.in_file(key))))
            }
        }
    }

    /// A setting with an environment variable but no flag: `env`, else the
    /// config file's `key`.
    fn env_or_file(&mut self, key: &'static str, env: &str, file: Option<String>) -> Option<String> {
        let from_env = std::env::var(env).ok().filter(|v| !v.trim().is_empty());
        let (value, source, origin) = match (from_env, file) {
            (Some(v), _) => (Some(v), Source::Environment, Some(env.to_string())),
            (None, Some(v)) => (Some(v), Source::ConfigFile, None),
            (None, None) => (None, Source::Default, None),
        };
        self.entries.push(Entry {
            key: key.into(),
            value: value.clone(),
            source,
            origin,
        });
        value
    }

    /// Whether the last entry recorded for `key` has a value.
    fn entry_set(&self, key: &str) -> bool {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .is_some_and(|e| e.value.is_some())
    }

    /// A secret: the environment variable `env`, else the file named by the
    /// clap argument `file_arg` (a flag or its variable), else the config
    /// file's own value, else the file it names. Recorded as [`REDACTED`].
    fn secret(
        &mut self,
        key: &'static str,
        env: &str,
        file_arg: &str,
        inline: Option<&String>,
        inline_file: Option<&PathBuf>,
    ) -> Result<Option<String>> {
        let from_env = std::env::var(env).ok().filter(|v| !v.is_empty());
        let (value, source, origin) = if let Some(v) = from_env {
            (Ok(Some(v)), Source::Environment, Some(env.to_string()))
        } else if let Some((path, source, origin)) = self.given::<PathBuf>(file_arg) {
            let origin = format!("{origin} `{}`", path.display());
            (self.read_secret(&path, key).map(Some), source, Some(origin))
        } else if let Some(v) = inline {
            (Ok(Some(v.clone())), Source::ConfigFile, None)
        } else if let Some(path) = inline_file {
            let origin = format!("{file_arg} `{}`", path.display());
            (self.read_secret(path, key).map(Some), Source::ConfigFile, Some(origin))
        } else {
            (Ok(None), Source::Default, None)
        };
        let shown = match &value {
            Ok(Some(_)) => Some(REDACTED.to_string()),
            Ok(None) => None,
            Err(_) => Some("(unreadable)".to_string()),
        };
        self.entries.push(Entry {
            key: key.into(),
            value: shown,
            source,
            origin,
        });
        value
    }

    /// The first line of a file holding a secret; warns when others can read it.
    fn read_secret(&mut self, path: &Path, what: &str) -> Result<String> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the {what} file `{}`", path.display()))?;
        let secret = text.lines().next().unwrap_or("").trim().to_string();
        if secret.is_empty() {
            bail!("the {what} file `{}` is empty", path.display());
        }
        self.warn_if_others_can_read(path, &format!("{what} file"));
        Ok(secret)
    }

    /// Warns when users other than the owner can read the file at `path`,
    /// which holds a secret (`what`: "password file", "client key").
    fn warn_if_others_can_read(&mut self, path: &Path, what: &str) {
        if let Some(mode) = readable_by_others(path) {
            self.warnings.push(format!(
                "the {what} `{}` can be read by other users (mode {mode:03o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }

    /// Where the value of `key` came from, for an error message: `--jobs`,
    /// `RETRIEVER_JOBS`, `` `jobs` in the config file `FILE` ``.
    fn origin(&self, key: &str) -> String {
        let entry = self.entries.iter().rev().find(|e| e.key == key);
        match entry.map(|e| (e.source, e.origin.as_deref())) {
            Some((Source::Flag | Source::Environment, Some(origin))) => origin.to_string(),
            Some((Source::ConfigFile, _)) => self.in_file(key),
            _ => format!("the default {key}"),
        }
    }

    /// `` `key` in the config file `FILE` ``.
    fn in_file(&self, key: &str) -> String {
        match self.config_path {
            Some(path) => format!("`{key}` in the config file `{}`", path.display()),
            None => format!("`{key}` in the config file"),
        }
    }
}

fn show_string<S: AsRef<str>>(s: &S) -> String {
    s.as_ref().to_string()
}

fn show_path<P: AsRef<Path>>(p: &P) -> String {
    p.as_ref().display().to_string()
}

fn show_display<T: fmt::Display>(v: &T) -> String {
    v.to_string()
}

fn cloud_config(l: &mut Layers<'_>, file: &FileConfig) -> Result<ClientOptions> {
    // Every setting is looked up (and so shown by `retriever config`)
    // before the first one found wrong ends this.
    let raw = l.pick("cloud", file.cloud.clone(), None, |url: &String| redact_url(url));
    let insecure = l
        .pick(
            "allow_insecure_http",
            file.allow_insecure_http,
            Some(false),
            show_display,
        )
        .unwrap_or(false);
    let auth = resolve_auth(l, file, insecure);
    let ca_bundle = l.pick("ca_bundle", file.ca_bundle.clone(), None, show_path);
    let client_identity = client_identity(l, file);
    let jobs = l.pick_or("jobs", file.jobs, DEFAULT_JOBS, show_display);
    let connect_timeout = l.duration("connect_timeout", file.connect_timeout.clone(), DEFAULT_CONNECT_TIMEOUT);
    let idle_timeout = l.duration("idle_timeout", file.idle_timeout.clone(), DEFAULT_IDLE_TIMEOUT);
    let retries = l.pick_or("retries", file.retries, DEFAULT_RETRIES, show_display);

    let raw = raw.context(
        "no cloud archive given: pass --cloud URL or set RETRIEVER_CLOUD (e.g. https://cloud.example.org/dicom-web)",
    )?;
    let base = parse_cloud_url(&raw, insecure)?;
    let auth = auth?;
    if matches!(auth, Auth::Renewed(_)) && base.scheme() == "http" && !is_loopback(&base) {
        bail!(
            "the cloud URL `{}` uses plain http, and an access token from `oauth_token_url` or `token_command` \
             never goes over plain http but to this computer itself; use an https:// cloud URL",
            redact_url(&raw)
        );
    }
    let mut cloud = ClientOptions::new(base, auth);
    cloud.allow_insecure_http = insecure;
    cloud.ca_bundle = ca_bundle;
    cloud.client_identity = client_identity?;
    if jobs == 0 || jobs as u64 > MAX_JOBS {
        bail!("{} must be between 1 and 64, not {jobs}", l.origin("jobs"));
    }
    cloud.jobs = jobs;
    cloud.connect_timeout = connect_timeout?;
    cloud.idle_timeout = idle_timeout?;
    cloud.retries = retries;
    Ok(cloud)
}

/// Our client certificate for the cloud: both files or neither. The flags
/// come in pairs (clap); the config file is checked here.
fn client_identity(l: &mut Layers<'_>, file: &FileConfig) -> Result<Option<ClientIdentity>> {
    let cert = l.pick("client_cert", file.client_cert.clone(), None, show_path);
    let key = l.pick("client_key", file.client_key.clone(), None, show_path);
    if let Some(key) = &key {
        l.warn_if_others_can_read(key, "client key");
    }
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(ClientIdentity { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => bail!(
            "{} names a client certificate but no key is given; set `client_key` to the file of its              private key",
            l.origin("client_cert")
        ),
        (None, Some(_)) => bail!(
            "{} names a client key but no certificate is given; set `client_cert` to the file of the              certificate",
            l.origin("client_key")
        ),
    }
}

fn cache_limits(l: &mut Layers<'_>, file: &FileConfig) -> Result<crate::cache::Limits> {
    let mut limits = crate::cache::Limits::default();
    let from_file = l.file_value("max_instance_size", file.max_instance_size.clone(), parse_size)?;
    let show = |size: &u64| crate::format::binary_size(*size).replace(' ', "");
    let max = l.pick_or("max_instance_size", from_file, limits.max_instance_size, show);
    if max < MIN_INSTANCE_SIZE {
        bail!(
            "{} must be at least {}, not `{}`",
            l.origin("max_instance_size"),
            crate::format::binary_size(MIN_INSTANCE_SIZE),
            show(&max)
        );
    }
    limits.max_instance_size = max;
    Ok(limits)
}

fn resolve_auth(l: &mut Layers<'_>, file: &FileConfig, insecure: bool) -> Result<Auth> {
    let user = l.pick("user", file.user.clone(), None, show_string);
    let token = l.secret(
        "token",
        "RETRIEVER_TOKEN",
        "token_file",
        file.token.as_ref(),
        file.token_file.as_ref(),
    );
    let password = l.secret(
        "password",
        "RETRIEVER_PASSWORD",
        "password_file",
        file.password.as_ref(),
        file.password_file.as_ref(),
    );
    let oauth = oauth2(l, file, insecure);
    let command = token_command(l, file);
    // A user with a static token has always meant the token; every other
    // pair of ways to log in is a contradiction that would otherwise be
    // settled silently.
    let mut given = Vec::new();
    if user.is_some() {
        given.push(format!("a user for HTTP Basic ({})", l.origin("user")));
    }
    if !matches!(token, Ok(None)) {
        given.push(format!("a Bearer token ({})", l.origin("token")));
    }
    if !matches!(oauth, Ok(None)) {
        let key = ["oauth_token_url", "oauth_client_id", "oauth_client_secret"]
            .into_iter()
            .find(|key| l.entry_set(key))
            .unwrap_or("oauth_token_url");
        given.push(format!("OAuth2 ({})", l.origin(key)));
    }
    if !matches!(command, Ok(None)) {
        given.push(format!("a token command ({})", l.origin("token_command")));
    }
    let renewed = !matches!(oauth, Ok(None)) || !matches!(command, Ok(None));
    if renewed && given.len() > 1 {
        return Err(anyhow::Error::new(UsageError(format!(
            "two ways to log in to the cloud are set: {} and {}; keep only one",
            given[..given.len() - 1].join(", "),
            given[given.len() - 1]
        ))));
    }
    if let Some(oauth) = oauth? {
        return Ok(Auth::Renewed(Tokens::new(TokenOrigin::OAuth2(oauth))));
    }
    if let Some(command) = command? {
        return Ok(Auth::Renewed(Tokens::new(TokenOrigin::Command(command))));
    }
    if let Some(token) = token? {
        return Ok(Auth::Bearer { token });
    }
    let Some(user) = user else {
        return Ok(Auth::None);
    };
    match password? {
        Some(password) => Ok(Auth::Basic { user, password }),
        None => bail!(
            "a user name (`{user}`) was given but no password: set RETRIEVER_PASSWORD, \
             or pass --password-file FILE, or put \"password\" in the config file"
        ),
    }
}

/// The OAuth2 client-credentials settings, if any `oauth_*` key is set.
fn oauth2(l: &mut Layers<'_>, file: &FileConfig, insecure: bool) -> Result<Option<OAuth2>> {
    let url = l.env_or_file(
        "oauth_token_url",
        "RETRIEVER_OAUTH_TOKEN_URL",
        file.oauth_token_url.clone(),
    );
    let client_id = l.env_or_file(
        "oauth_client_id",
        "RETRIEVER_OAUTH_CLIENT_ID",
        file.oauth_client_id.clone(),
    );
    let secret = l.secret(
        "oauth_client_secret",
        "RETRIEVER_OAUTH_CLIENT_SECRET",
        "oauth_client_secret_file",
        file.oauth_client_secret.as_ref(),
        file.oauth_client_secret_file.as_ref(),
    );
    let scope = l.pick("oauth_scope", file.oauth_scope.clone(), None, show_string);
    let audience = l.pick("oauth_audience", file.oauth_audience.clone(), None, show_string);
    let client_auth = l.file_value("oauth_client_auth", file.oauth_client_auth.clone(), |raw| {
        match raw.trim().to_ascii_lowercase().as_str() {
            "basic" => Ok(ClientAuth::Basic),
            "body" => Ok(ClientAuth::Body),
            _ => Err(std::io::Error::other(format!(
                "`{raw}` is neither \"basic\" nor \"body\""
            ))),
        }
    });
    let client_auth = client_auth.map(|c| l.pick_or("oauth_client_auth", c, ClientAuth::Basic, show_display));
    let secret = secret?;
    if url.is_none() && client_id.is_none() && secret.is_none() && scope.is_none() && audience.is_none() {
        return Ok(None);
    }
    let (Some(url), Some(client_id), Some(client_secret)) = (url, client_id, secret) else {
        let missing: Vec<&str> = [
            (
                l.entry_set("oauth_token_url"),
                "`oauth_token_url` (or RETRIEVER_OAUTH_TOKEN_URL)",
            ),
            (
                l.entry_set("oauth_client_id"),
                "`oauth_client_id` (or RETRIEVER_OAUTH_CLIENT_ID)",
            ),
            (
                l.entry_set("oauth_client_secret"),
                "`oauth_client_secret`, `oauth_client_secret_file` or RETRIEVER_OAUTH_CLIENT_SECRET",
            ),
        ]
        .into_iter()
        .filter(|(set, _)| !set)
        .map(|(_, name)| name)
        .collect();
        bail!(
            "OAuth2 is set up only in part: {} missing; the client-credentials grant needs the token URL, the \
             client id and the client secret",
            missing.join(" and ")
        );
    };
    let token_url = parse_https_url(
        &format!("the token URL ({})", l.origin("oauth_token_url")),
        &url,
        "https://login.example.org/oauth2/token",
        insecure,
    )?;
    if !token_url.username().is_empty() || token_url.password().is_some() {
        bail!(
            "the token URL `{}` has credentials in it; give them as `oauth_client_id` and the client secret",
            redact_url(&url)
        );
    }
    Ok(Some(OAuth2 {
        token_url,
        client_id,
        client_secret,
        scope,
        audience,
        client_auth: client_auth?,
    }))
}

/// The token command's settings, if `token_command` is set.
fn token_command(l: &mut Layers<'_>, file: &FileConfig) -> Result<Option<TokenCommand>> {
    let command = l.pick("token_command", file.token_command.clone(), None, show_string);
    let lifetime = l.duration(
        "token_command_lifetime",
        file.token_command_lifetime.clone(),
        DEFAULT_TOKEN_LIFETIME,
    )?;
    let Some(command) = command else {
        return Ok(None);
    };
    if command.trim().is_empty() {
        bail!(
            "{} is empty; give the command that prints an access token, or leave it out",
            l.origin("token_command")
        );
    }
    if lifetime < Duration::from_secs(1) {
        bail!("{} must be at least 1s", l.origin("token_command_lifetime"));
    }
    Ok(Some(TokenCommand {
        command,
        lifetime,
        timeout: TOKEN_COMMAND_TIMEOUT,
    }))
}

fn prior_rules(l: &mut Layers<'_>, file: &FileConfig) -> Result<Rules> {
    let defaults = Rules::default();
    let count = l.pick_or("priors", file.priors, defaults.count, show_display);
    let years = l.pick_or("prior_years", file.prior_years, defaults.years, show_display);
    let file_modality = file
        .prior_modality
        .as_deref()
        .map(|raw| {
            PriorModality::from_str(raw, true).map_err(|_| {
                anyhow::anyhow!(
                    "`prior_modality` in the config file is `{raw}`; write \"any\" or \"same\"{}",
                    l.config_path
                        .map(|p| format!(" (in `{}`)", p.display()))
                        .unwrap_or_default()
                )
            })
        })
        .transpose()?;
    let modality = l.pick_or("prior_modality", file_modality, PriorModality::Any, |m| {
        m.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    });
    Ok(Rules {
        count,
        years,
        modality: match modality {
            PriorModality::Any => ModalityRule::Any,
            PriorModality::Same => ModalityRule::Same,
        },
    })
}

/// How `watch` follows the cloud.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// The search's matching keys (never none).
    pub filters: Vec<crate::watch::Filter>,
    /// Time between two searches.
    pub interval: Duration,
    /// A study whose size has not changed for this long is settled.
    pub stable_age: Duration,
}

fn watch_settings(l: &mut Layers<'_>, file: &FileConfig) -> Result<WatchSettings> {
    use crate::watch::{default_filters, describe};
    let interval = l.duration(
        "watch_interval",
        file.watch_interval.clone(),
        crate::watch::DEFAULT_INTERVAL,
    )?;
    if interval.is_zero() {
        bail!("{} must be longer than 0s", l.origin("watch_interval"));
    }
    let stable_age = l.duration("stable_age", file.stable_age.clone(), crate::watch::DEFAULT_STABLE_AGE)?;
    // `--filter` replaces the config file's `watch_filter` as a whole: what
    // the command line says is what is searched for.
    // clap has checked each `--filter`.
    let flags: Option<Vec<Filter>> = l
        .matches
        .subcommand()
        .and_then(|(_, m)| m.try_get_many::<Filter>("watch_filter").ok().flatten())
        .map(|values| values.cloned().collect());
    let (filters, source, origin) = match (flags, &file.watch_filter) {
        (Some(filters), _) => (filters, Source::Flag, Some("--filter".to_string())),
        (None, Some(map)) => {
            let place = l.in_file("watch_filter");
            if map.is_empty() {
                bail!("{place} is empty; name at least one key, or leave it out");
            }
            let filters = map
                .iter()
                .map(|(k, v)| Filter::parse(k, v))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("in {place}"))?;
            (filters, Source::ConfigFile, None)
        }
        (None, None) => (default_filters(), Source::Default, None),
    };
    l.entries.push(Entry {
        key: "watch_filter".into(),
        value: Some(describe(&filters)),
        source,
        origin,
    });
    Ok(WatchSettings {
        filters,
        interval,
        stable_age,
    })
}

fn dicom_settings(l: &mut Layers<'_>, file: &FileConfig) -> Result<DicomSettings> {
    let d = DicomSettings::default();
    let associations = l.pick_or("associations", file.associations, d.associations, show_display);
    if !(1..=32).contains(&associations) {
        bail!(
            "{} must be between 1 and 32, not {associations}",
            l.origin("associations")
        );
    }
    let max_pdu = l.pick_or("max_pdu", file.max_pdu, d.max_pdu, show_display);
    if !(4096..=4_194_304).contains(&max_pdu) {
        bail!(
            "{} must be between 4096 and 4194304, not {max_pdu}",
            l.origin("max_pdu")
        );
    }
    Ok(DicomSettings {
        associations,
        max_pdu,
        connect_timeout: l.duration(
            "dicom_connect_timeout",
            file.dicom_connect_timeout.clone(),
            d.connect_timeout,
        )?,
        acse_timeout: l.duration("acse_timeout", file.acse_timeout.clone(), d.acse_timeout)?,
        dimse_timeout: l.duration("dimse_timeout", file.dimse_timeout.clone(), d.dimse_timeout)?,
        store_retries: l.pick_or("store_retries", file.store_retries, d.store_retries, show_display),
        decompress_lossy: l.pick_or("decompress_lossy", file.decompress_lossy, false, show_display),
        coerce: coercions(l, file)?,
    })
}

/// `coerce`: checked now, so that a wrong rule stops every command before
/// anything is sent, with the rule and the file named.
fn coercions(l: &mut Layers<'_>, file: &FileConfig) -> Result<crate::coerce::Coercions> {
    let rules = match &file.coerce {
        Some(list) => crate::coerce::Coercions::parse(list)
            .map_err(anyhow::Error::new)
            .with_context(|| format!("{} is wrong; fix or remove the rule", l.in_file("coerce")))?,
        None => crate::coerce::Coercions::default(),
    };
    l.entries.push(Entry {
        key: "coerce".into(),
        value: (!rules.is_empty()).then(|| rules.describe()),
        source: if file.coerce.is_some() {
            Source::ConfigFile
        } else {
            Source::Default
        },
        origin: None,
    });
    Ok(rules)
}

/// The top-level TLS settings to the destination, as given: on or off,
/// whether said off on purpose, the files and the name to check.
#[derive(Debug, Clone, Default)]
struct TlsSettings {
    on: bool,
    /// `to_tls` written `false` on purpose (the files kept for later).
    said_off: bool,
    opts: TlsOptions,
}

/// The top-level TLS keys, looked up (and so shown by `retriever config`).
fn tls_settings(l: &mut Layers<'_>, file: &FileConfig) -> TlsSettings {
    let on = l.pick_or("to_tls", file.to_tls, false, show_display);
    let opts = TlsOptions {
        ca: l.pick("to_ca", file.to_ca.clone(), None, show_path),
        cert: l.pick("to_cert", file.to_cert.clone(), None, show_path),
        key: l.pick("to_key", file.to_key.clone(), None, show_path),
        server_name: l.pick("to_server_name", file.to_server_name.clone(), None, show_string),
    };
    if let Some(key) = &opts.key {
        l.warn_if_others_can_read(key, "TLS key file");
    }
    let said_off = l
        .entries
        .iter()
        .any(|e| e.key == "to_tls" && e.source != Source::Default);
    TlsSettings { on, said_off, opts }
}

/// DICOM TLS to the destination when `to_tls` is on: the CAs, the client
/// certificate and the name to check, read and checked now (`host`, the
/// destination's, is the name checked unless `to_server_name` gives one).
/// TLS files given while `to_tls` is set nowhere are refused.
/// `None` for plain TCP, or when there is no usable destination (whose own
/// error is reported by the commands that need one). `origin` names where
/// a key's value came from, for the errors.
fn client_tls(tls: &TlsSettings, host: Option<&str>, origin: &dyn Fn(&str) -> String) -> Result<Option<ClientTls>> {
    let opts = &tls.opts;
    // Written `false` on purpose (the files kept for later) is off; not
    // written at all beside files for TLS is taken for a forgotten
    // `--to-tls`, which would send in the clear what was meant to be
    // encrypted.
    if !tls.on && tls.said_off {
        return Ok(None);
    }
    if !tls.on {
        let given: Vec<String> = [
            ("to_ca", opts.ca.is_some()),
            ("to_cert", opts.cert.is_some()),
            ("to_key", opts.key.is_some()),
            ("to_server_name", opts.server_name.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(key, _)| origin(key))
        .collect();
        if !given.is_empty() {
            bail!(
                "{} {} given, but DICOM TLS to the destination is not turned on: add `--to-tls` \
                 (or \"to_tls\": true in the config file), or leave {} out",
                given.join(", "),
                if given.len() == 1 { "is" } else { "are" },
                if given.len() == 1 { "it" } else { "them" },
            );
        }
        return Ok(None);
    }
    match (&opts.cert, &opts.key) {
        (Some(_), None) => bail!(
            "{} gives a client certificate for the destination but no key: give its key with `--to-key` \
             (or \"to_key\" in the config file)",
            origin("to_cert")
        ),
        (None, Some(_)) => bail!(
            "{} gives a client key for the destination but no certificate: give it with `--to-cert` \
             (or \"to_cert\" in the config file)",
            origin("to_key")
        ),
        _ => {}
    }
    let Some(host) = host else {
        return Ok(None);
    };
    let tls = ClientTls::new(opts, host).context("DICOM TLS to the destination cannot be set up")?;
    Ok(Some(tls))
}

/// The permission bits of `path` when users other than its owner may read
/// or write it; `None` when only the owner may, or where file modes do not
/// exist (Windows: the folder's ACL decides, see the README).
#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<u32> {
    None
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn credentials_in_the_cloud_url_are_refused_and_never_shown() {
        let e = parse_cloud_url("https://router:hunter2@cloud.example.org/dw", false).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("`https://***@cloud.example.org/dw` has credentials in it"),
            "{msg}"
        );
        assert_eq!(redact_url("https://u:p@h:1/x@y"), "https://***@h:1/x@y");
        assert_eq!(redact_url("https://h/x@y"), "https://h/x@y");
        let e = parse_cloud_url("https://u:hunter2@[bad/dw", false).unwrap_err();
        assert!(!format!("{e:#}").contains("hunter2"));
        for spelling in [
            "https:router:hunter2@cloud.example.org/dw",
            "https:/router:hunter2@cloud.example.org/dw",
            "https:\\\\router:hunter2@cloud.example.org/dw",
            "HTTPS://router:hunter2@cloud.example.org/dw",
            " https://router:hunter2@cloud.example.org/dw ",
            "https://rou\tter:hun\nter2@cloud.example.org/dw",
            "https://router:hunter2@@cloud.example.org/dw",
            "https://:hunter2@cloud.example.org/dw",
            "https://hunter2@cloud.example.org/dw",
            "http://router:hunter2@127.0.0.1:8042/dw",
            "https://router:hun/ter2@cloud.example.org/dw",
            "https://router:hunter2@cloud.example.org:99999/dw",
            "router:hunter2@cloud.example.org/dw",
            "ftp://router:hunter2@cloud.example.org/dw",
        ] {
            let shown = redact_url(spelling);
            assert!(
                !shown.contains("hunter2") && !shown.contains("hun"),
                "{spelling:?} shown as {shown:?}"
            );
            let e = parse_cloud_url(spelling, true).unwrap_err();
            let msg = format!("{e:#}");
            assert!(!msg.contains("hun") && !msg.contains("router"), "{spelling:?}: {msg}");
        }
        assert_eq!(
            redact_url("https:router:hunter2@cloud.example.org/dw"),
            "https://***@cloud.example.org/dw"
        );
        assert_eq!(
            redact_url("https://cloud.example.org/dw"),
            "https://cloud.example.org/dw"
        );
    }

    fn settings(args: &[&str]) -> Result<Settings> {
        let argv = ["retriever"].iter().chain(args).copied();
        let matches = crate::cli::Cli::command().try_get_matches_from(argv)?;
        Settings::resolve(&matches)
    }

    fn entry<'a>(s: &'a Settings, key: &str) -> &'a Entry {
        s.entries().iter().find(|e| e.key == key).unwrap()
    }

    fn config_file(json: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, json.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let f = config_file(
            r#"{"cloud": "https://file.example.org/dw", "jobs": 2, "retries": 7, "prior_years": 2,
                "prior_modality": "same", "max_pdu": 65536, "acse_timeout": "5s", "cache": "/file/cache"}"#,
        );
        let path = f.path().to_str().unwrap();
        // Global flags after the subcommand count as flags too.
        let s = settings(&[
            "--config",
            path,
            "--jobs",
            "8",
            "fetch",
            "X",
            "--prior-years",
            "9",
            "--cache",
            "/c",
        ])
        .unwrap();
        let cloud = s.cloud().unwrap();
        assert_eq!((cloud.jobs, cloud.retries), (8, 7));
        assert_eq!(cloud.base.as_str(), "https://file.example.org/dw");
        assert_eq!(cloud.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(
            (s.priors.count, s.priors.years, s.priors.modality),
            (3, 9, ModalityRule::Same)
        );
        assert_eq!(s.dicom.max_pdu, 65536);
        assert_eq!(s.dicom.acse_timeout, Duration::from_secs(5));
        assert_eq!(s.cache_root, PathBuf::from("/c"));
        let sources = |key| (entry(&s, key).source, entry(&s, key).origin.clone());
        assert_eq!(sources("jobs"), (Source::Flag, Some("--jobs".into())));
        assert_eq!(sources("prior_years"), (Source::Flag, Some("--prior-years".into())));
        assert_eq!(sources("cache"), (Source::Flag, Some("--cache".into())));
        assert_eq!(sources("retries"), (Source::ConfigFile, None));
        assert_eq!(sources("idle_timeout"), (Source::Default, None));
        assert_eq!(sources("config"), (Source::Flag, Some("--config".into())));
    }

    #[test]
    fn wrong_file_values_are_refused_naming_the_key() {
        let f = config_file(r#"{"prior_modality": "ct"}"#);
        let e = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap_err();
        assert!(format!("{e:#}").contains("prior_modality"), "{e:#}");
        let f = config_file(r#"{"associations": 99}"#);
        let e = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap_err();
        assert!(format!("{e:#}").contains("`associations` in the config file"), "{e:#}");
        let f = config_file(r#"{"dimse_timeout": "soon"}"#);
        let e = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap_err();
        assert!(format!("{e:#}").contains("`dimse_timeout` in the config file"), "{e:#}");
        let f = config_file(r#"{"cloud_url": "https://x"}"#);
        let e = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `cloud_url`"), "{e:#}");
    }

    #[test]
    fn windows_paths_need_slashes_or_doubled_backslashes() {
        let f = config_file(r#"{"cache": "D:/retriever-cache", "ca_bundle": "C:\\ProgramData\\ca.pem"}"#);
        let s = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap();
        assert_eq!(s.cache_root, PathBuf::from("D:/retriever-cache"));
        // `\r` is a valid JSON escape: a carriage return, silently, before this check.
        for (json, key) in [
            (r#"{"cache": "D:\retriever-cache"}"#, "`cache` is `D:\\retriever-cache`"),
            (r#"{"token_file": "C:\tokens\\t"}"#, "`token_file`"),
            (r#"{"password_file": "C:\new"}"#, "`password_file`"),
        ] {
            let f = config_file(json);
            let e = format!(
                "{:#}",
                settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap_err()
            );
            assert!(e.contains(key), "{e}");
            assert!(e.contains("control character"), "{e}");
            assert!(e.contains(r#"`"D:/retriever-cache"`"#), "{e}");
            assert!(e.contains(r#"`"D:\\retriever-cache"`"#), "{e}");
        }
        let f = config_file(r#"{"cache": "C:\ProgramData\retriever"}"#);
        let e = format!(
            "{:#}",
            settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap_err()
        );
        assert!(e.contains("invalid escape at line 1 column 15"), "{e}");
        assert!(e.contains("write a Windows path with `/`"), "{e}");
    }

    #[test]
    fn oauth2_settings_are_checked_and_the_secret_redacted() {
        let f = config_file(
            r#"{"cloud": "https://cloud.example.org/dw", "oauth_token_url": "https://login.example.org/t",
                "oauth_client_id": "router", "oauth_client_secret": "hunter2", "oauth_client_auth": "body",
                "oauth_audience": "https://cloud.example.org"}"#,
        );
        let path = f.path().to_str().unwrap();
        let s = settings(&["--config", path, "ls"]).unwrap();
        let Auth::Renewed(tokens) = &s.cloud().unwrap().auth else {
            panic!("{:?}", s.cloud().unwrap().auth)
        };
        let crate::dicomweb::TokenOrigin::OAuth2(o) = tokens.origin() else {
            panic!("not OAuth2")
        };
        assert_eq!(
            (
                o.token_url.as_str(),
                o.client_id.as_str(),
                o.client_auth,
                o.scope.as_deref()
            ),
            ("https://login.example.org/t", "router", ClientAuth::Body, None)
        );
        assert_eq!(entry(&s, "oauth_client_secret").value.as_deref(), Some(REDACTED));
        assert_eq!(entry(&s, "oauth_client_auth").value.as_deref(), Some("body"));
        assert!(!format!("{s:?}").contains("hunter2"));

        for (json, says) in [
            (
                r#"{"oauth_token_url": "http://login.example.org/t", "oauth_client_id": "c", "oauth_client_secret": "s"}"#,
                "the token URL (`oauth_token_url` in the config file",
            ),
            (
                r#"{"oauth_client_id": "c"}"#,
                "`oauth_token_url` (or RETRIEVER_OAUTH_TOKEN_URL) and `oauth_client_secret`",
            ),
            (
                r#"{"oauth_token_url": "https://l/t", "oauth_client_id": "c", "oauth_client_secret": "s", "oauth_client_auth": "post"}"#,
                "neither \"basic\" nor \"body\"",
            ),
            (r#"{"token_command": " "}"#, "`token_command` in the config file"),
            (
                r#"{"token_command": "t", "token_command_lifetime": "0s"}"#,
                "at least 1s",
            ),
        ] {
            let f = config_file(&format!(r#"{{"cloud": "https://cloud.example.org/dw", {}"#, &json[1..]));
            let s = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap();
            let e = format!("{:#}", s.cloud().unwrap_err());
            assert!(e.contains(says), "{json}: {e}");
        }
        // An access token goes over plain http only to this computer.
        let f = config_file(r#"{"token_command": "t", "allow_insecure_http": true}"#);
        let path = f.path().to_str().unwrap();
        let s = settings(&["--config", path, "--cloud", "http://cloud.example.org/dw", "ls"]).unwrap();
        assert!(format!("{:#}", s.cloud().unwrap_err()).contains("never goes over plain http"));
        let s = settings(&["--config", path, "--cloud", "http://127.0.0.1:8042/dw", "ls"]).unwrap();
        assert!(matches!(s.cloud().unwrap().auth, Auth::Renewed(_)));
    }

    #[test]
    fn two_ways_to_log_in_are_a_usage_error() {
        let f = config_file(r#"{"cloud": "https://x.example.org/dw", "user": "u", "token_command": "t"}"#);
        let s = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap();
        let e = s.cloud().unwrap_err();
        assert!(e.chain().any(|c| c.is::<UsageError>()), "{e:#}");
        let e = format!("{e:#}");
        assert!(
            e.contains("a user for HTTP Basic (`user` in the config file")
                && e.contains("a token command (`token_command` in the config file"),
            "{e}"
        );
        // A user with a static token has always meant the token.
        let f = config_file(r#"{"cloud": "https://x.example.org/dw", "user": "u", "token": "t"}"#);
        let s = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap();
        assert!(matches!(s.cloud().unwrap().auth, Auth::Bearer { .. }));
    }

    #[test]
    fn secrets_are_redacted_and_a_readable_file_is_warned_about() {
        let f = config_file(r#"{"cloud": "https://x.example.org/dw", "user": "u", "password": "hunter2"}"#);
        let path = f.path().to_str().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
            let s = settings(&["--config", path, "ls"]).unwrap();
            assert!(s.warnings.iter().any(|w| w.contains("chmod 600")), "{:?}", s.warnings);
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let s = settings(&["--config", path, "ls"]).unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert!(matches!(&s.cloud().unwrap().auth, Auth::Basic { password, .. } if password == "hunter2"));
        assert_eq!(entry(&s, "password").value.as_deref(), Some(REDACTED));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_client_certificate_comes_with_its_key_and_a_readable_key_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("me.pem");
        let key = dir.path().join("me.key");
        std::fs::write(&cert, "").unwrap();
        std::fs::write(&key, "").unwrap();
        let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let cloud = ["--cloud", "https://x.example.org/dw"];
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
            let s =
                settings(&[&cloud[..], &["--client-cert", cert_arg, "--client-key", key_arg, "ls"]].concat()).unwrap();
            assert!(
                s.warnings
                    .iter()
                    .any(|w| w.contains("client key") && w.contains("chmod 600")),
                "{:?}",
                s.warnings
            );
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let s = settings(&[&cloud[..], &["--client-cert", cert_arg, "--client-key", key_arg, "ls"]].concat()).unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let expected = ClientIdentity {
            cert: cert.clone(),
            key: key.clone(),
        };
        assert_eq!(s.cloud().unwrap().client_identity.as_ref(), Some(&expected));
        assert_eq!(entry(&s, "client_cert").value.as_deref(), Some(cert_arg));
        assert_eq!(entry(&s, "client_key").source, Source::Flag);

        // One flag alone is a usage error naming the other.
        let e = settings(&[&cloud[..], &["--client-cert", cert_arg, "ls"]].concat()).unwrap_err();
        let e = e.downcast::<clap::Error>().expect("a clap usage error");
        assert!(e.to_string().contains("--client-key"), "{e}");

        // The config file: both, or an error naming the one missing.
        let json = serde_json::json!({"cloud": "https://x.example.org/dw", "client_cert": cert, "client_key": key});
        let f = config_file(&json.to_string());
        let s = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap();
        assert_eq!(s.cloud().unwrap().client_identity.as_ref(), Some(&expected));
        assert_eq!(entry(&s, "client_key").source, Source::ConfigFile);
        let f = config_file(&serde_json::json!({"cloud": "https://x.example.org/dw", "client_cert": cert}).to_string());
        let s = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap();
        let e = format!("{:#}", s.cloud().unwrap_err());
        assert!(
            e.contains("`client_cert` in the config file") && e.contains("`client_key`"),
            "{e}"
        );
    }

    fn three_destinations() -> tempfile::NamedTempFile {
        config_file(
            r#"{"calling_ae": "TOP", "associations": 3,
                "destinations": [
                  {"name": "pacs", "to": "PACS@10.0.0.5:104"},
                  {"name": "workstation", "to": "WS1@10.0.0.7:11112", "associations": 1},
                  {"name": "mammo", "to": "MAMMO@10.0.0.9:104", "calling_ae": "RTR_MAMMO",
                   "coerce": [{"set": "IssuerOfPatientID", "value": "NORTH"}]}
                ]}"#,
        )
    }

    #[test]
    fn destinations_take_the_top_level_settings_they_do_not_set() {
        let f = three_destinations();
        let path = f.path().to_str().unwrap();
        let s = settings(&["--config", path, "ls"]).unwrap();
        let routes = s.routes().unwrap();
        assert!(routes.is_configured());
        assert_eq!(routes.names(), ["pacs", "workstation", "mammo"]);
        let pacs = routes.get("pacs").unwrap();
        assert_eq!(pacs.to_string(), "pacs (PACS@10.0.0.5:104)");
        assert_eq!(
            (pacs.store.scu.calling_ae.as_str(), pacs.store.associations),
            ("TOP", 3)
        );
        assert!(pacs.store.scu.coerce.is_empty());
        let ws = routes.get("workstation").unwrap();
        assert_eq!((ws.store.scu.calling_ae.as_str(), ws.store.associations), ("TOP", 1));
        let mammo = routes.get("mammo").unwrap();
        assert_eq!(mammo.store.scu.calling_ae, "RTR_MAMMO");
        assert!(!mammo.store.scu.coerce.is_empty());
        assert_eq!(mammo.key(), "MAMMO@10.0.0.9_104");

        let shown = |key: &str| {
            let e = entry(&s, key);
            (e.value.clone(), e.source, e.origin.clone())
        };
        assert_eq!(
            shown("destinations[workstation].associations"),
            (Some("1".into()), Source::ConfigFile, None)
        );
        assert_eq!(
            shown("destinations[pacs].associations"),
            (Some("3".into()), Source::ConfigFile, Some("`associations`".into()))
        );
        assert_eq!(
            shown("destinations[pacs].to"),
            (Some("PACS@10.0.0.5:104".into()), Source::ConfigFile, None)
        );
        assert_eq!(shown("destinations[pacs].to_tls").1, Source::Default);
        // A flag beats the top level the entries inherit, not an entry's own value.
        let s = settings(&["--config", path, "--calling-ae", "FLAG", "ls"]).unwrap();
        let routes = s.routes().unwrap();
        assert_eq!(routes.get("pacs").unwrap().store.scu.calling_ae, "FLAG");
        assert_eq!(routes.get("mammo").unwrap().store.scu.calling_ae, "RTR_MAMMO");
        assert_eq!(
            shown_in(&s, "destinations[pacs].calling_ae"),
            (Some("FLAG".into()), Source::Flag, Some("--calling-ae".into()))
        );
    }

    fn shown_in(s: &Settings, key: &str) -> (Option<String>, Source, Option<String>) {
        let e = entry(s, key);
        (e.value.clone(), e.source, e.origin.clone())
    }

    #[test]
    fn to_overrides_the_list_and_dest_chooses_from_it() {
        let f = three_destinations();
        let path = f.path().to_str().unwrap();
        let s = settings(&["--config", path, "--to", "ONE@127.0.0.1:11112", "ls"]).unwrap();
        let routes = s.routes().unwrap();
        assert!(!routes.is_configured());
        assert_eq!(routes.names(), ["ONE@127.0.0.1:11112"]);
        let listed = entry(&s, "destinations").value.clone().unwrap();
        assert!(listed.contains("not used: --to given"), "{listed}");
        assert!(!s.entries().iter().any(|e| e.key.starts_with("destinations[")));

        let s = settings(&["--config", path, "ls", "--dest", "mammo", "--dest", "pacs"]).unwrap();
        assert_eq!(s.routes().unwrap().names(), ["mammo", "pacs"]);
        let s = settings(&["--config", path, "--dest", "ct", "ls"]).unwrap();
        let e = s.routes().unwrap_err();
        assert!(e.is::<UsageError>(), "{e:#}");
        assert!(
            format!("{e:#}").contains("no destination named `ct`; the destinations are: pacs, workstation, mammo"),
            "{e:#}"
        );
    }

    #[test]
    fn a_wrong_list_of_destinations_is_a_usage_error_naming_the_entry() {
        for (json, says) in [
            (
                r#"{"to": "A@h:1", "destinations": [{"name": "a", "to": "A@h:2"}]}"#,
                "and `to` are both set; use one",
            ),
            (r#"{"destinations": []}"#, "`destinations` in the config file"),
            (
                r#"{"destinations": [{"name": "a", "to": "A@h:1"}, {"name": "a", "to": "B@h:1"}]}"#,
                "the name `a` is given to two destinations",
            ),
            (
                r#"{"destinations": [{"name": "a", "to": "A@h:1"}, {"name": "b", "to": "A@h:1"}]}"#,
                "`destinations[a].to` and `destinations[b].to` are both `A@h:1`",
            ),
            (
                r#"{"destinations": [{"name": "a", "to": "A@h:1", "ae": "X"}]}"#,
                "`destinations[a]` is not valid: unknown field `ae`",
            ),
            (
                r#"{"destinations": [{"to": "A@h:1"}]}"#,
                "`destinations[0]` is not valid: missing field `name`",
            ),
            (
                r#"{"destinations": [{"name": "the pacs", "to": "A@h:1"}]}"#,
                "`destinations[0].name` is `the pacs`",
            ),
            (
                r#"{"destinations": [{"name": "a", "to": "h:1"}]}"#,
                "`destinations[a].to` is not usable",
            ),
            (
                r#"{"destinations": [{"name": "a", "to": "A@h:1", "associations": 0}]}"#,
                "`destinations[a].associations` must be between 1 and 32",
            ),
            (
                r#"{"destinations": [{"name": "a", "to": "A@h:1", "calling_ae": ""}]}"#,
                "`destinations[a].calling_ae` is not usable",
            ),
            (
                r#"{"destinations": [{"name": "a", "to": "A@h:1", "coerce": [{"set": "Nope"}]}]}"#,
                "`destinations[a].coerce` is wrong",
            ),
            (
                r#"{"destinations": ["A@h:1"]}"#,
                "`destinations[0]` is `\"A@h:1\"`, not an object",
            ),
        ] {
            let f = config_file(json);
            let e = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap_err();
            assert!(e.chain().any(|c| c.is::<UsageError>()), "{json}: {e:#}");
            assert!(format!("{e:#}").contains(says), "{json}: {e:#}");
        }
    }

    #[test]
    fn tls_files_of_an_entry_need_tls_on_for_it() {
        let f = config_file(
            r#"{"to_ca": "/etc/ca.pem", "destinations": [
                 {"name": "a", "to": "A@h:1", "to_tls": false},
                 {"name": "b", "to": "B@h:1", "to_server_name": "pacs.example.org"}]}"#,
        );
        let s = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap();
        // The top-level files are only what entries inherit.
        assert!(s.destination_tls().unwrap().is_none());
        let e = format!("{:#}", s.routes().unwrap_err());
        assert!(
            e.contains("the destination `b` (B@h:1) cannot be used")
                && e.contains("`to_ca` in the config file")
                && e.contains("`destinations[b].to_server_name` in the config file")
                && e.contains("not turned on"),
            "{e}"
        );
    }

    #[test]
    fn rules_are_read_at_start_up_and_the_study_search_asks_for_what_they_read() {
        let f = config_file(
            r#"{"cloud": "https://cloud.example.org/dw", "destinations": [
                 {"name": "pacs", "to": "PACS@h:104"},
                 {"name": "ws", "to": "WS@h:105", "when": {"role": "current", "InstitutionName": "NORTH*"}}]}"#,
        );
        let path = f.path().to_str().unwrap();
        let s = settings(&["--config", path, "ls"]).unwrap();
        assert_eq!(s.cloud().unwrap().study_fields, [0x0008_0080]);
        let ws = s.routes().unwrap().get("ws").unwrap().clone();
        let mut info = crate::cache::StudyInfo::new(crate::uid::Uid::parse("1.2.3").unwrap());
        info.attributes.insert("00080080".into(), vec!["NORTH HOSPITAL".into()]);
        let current = crate::cache::Role::Current {
            requested_as: "A".into(),
        };
        assert_eq!(
            ws.decide(&info, &[current]).why,
            "role current, InstitutionName NORTH HOSPITAL"
        );
        assert_eq!(
            entry(&s, "destinations[ws].when").value.as_deref(),
            Some(r#"{"InstitutionName":"NORTH*","role":"current"}"#)
        );
        // Also with --to, for the runs that use the list later on the same cache.
        let s = settings(&["--config", path, "--to", "A@h:1", "ls"]).unwrap();
        assert_eq!(s.cloud().unwrap().study_fields, [0x0008_0080]);

        let f = config_file(r#"{"destinations": [{"name": "ws", "to": "WS@h:105", "when": {"role": "old"}}]}"#);
        let e = settings(&["--config", f.path().to_str().unwrap(), "ls"]).unwrap_err();
        assert!(e.chain().any(|c| c.is::<UsageError>()), "{e:#}");
        assert!(
            format!("{e:#}").contains("`destinations[ws].when.role` is `old`"),
            "{e:#}"
        );
    }
}
