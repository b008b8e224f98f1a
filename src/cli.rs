//! The command-line interface: clap definitions, and the value parsers that
//! check each flag as it is read, so that a wrong flag is a usage error
//! (exit status 2) whatever the subcommand. `config` merges the typed values
//! with the environment and the config file.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::dimse::{Destination, check_ae_title};
use crate::format::{parse_duration, parse_size};
use crate::uid::Uid;
use crate::watch::Filter;

/// The smallest maximum instance size accepted: below this even a small
/// image would be refused.
pub const MIN_INSTANCE_SIZE: u64 = 64 << 10;
/// Parallel downloads from the cloud, at most.
pub const MAX_JOBS: u64 = 64;

const AFTER_HELP: &str = "\
Secrets are never taken from the command line alone: set RETRIEVER_PASSWORD or
RETRIEVER_TOKEN, or use --password-file / --token-file, or the config file.

Exit status: 0 when everything asked for was done, 1 when something failed,
2 for usage errors, 130 after Ctrl-C.

`retriever config` shows every setting and where it came from; `man retriever`
describes the config file.";

const FETCH_AFTER_HELP: &str = "\
Examples:
  retriever fetch ACC123                        the study and its 3 most recent priors
  retriever fetch ACC123 --dry-run              which priors would be fetched, and why
  retriever fetch ACC123 --priors 0 --json      only the study; JSON lines on stdout
  retriever fetch ACC123 --store --to PACS@10.0.0.5:104
                                                fetch, then deliver to the PACS
  retriever fetch ACC123 | retriever store -    the same, as a pipeline";

const STORE_AFTER_HELP: &str = "\
Examples:
  retriever store --to PACS@10.0.0.5:104        every complete study not yet delivered there
  retriever store 1.2.840.113619.2.55.3.1234    one study, to RETRIEVER_DEST
  retriever fetch ACC123 | retriever store -    deliver each study as fetch completes it";

const ECHO_AFTER_HELP: &str = "\
Examples:
  retriever echo --to PACS@10.0.0.5:104
  retriever echo --to PACS@10.0.0.5:104 --calling-ae ROUTER1";

const LS_AFTER_HELP: &str = "\
Examples:
  retriever ls                                  a table: state, size, age, deliveries
  retriever ls --json | jq -r .study_uid        JSON lines, for scripts";

const CONFIG_AFTER_HELP: &str = "\
Every setting is taken from the first of: its flag, its environment variable, the
config file (--config, RETRIEVER_CONFIG, or the first of
~/.config/retriever/config.json, /etc/retriever/config.json; on Windows
%APPDATA%\\retriever\\config.json, %ProgramData%\\retriever\\config.json), the default.
The command fails when a setting is set but wrong.

Examples:
  retriever config                              the table: SETTING, VALUE, SOURCE
  retriever --config router.json config         check a config file before using it
  retriever config --json | jq .cloud           one setting, as JSON";

/// Study router for radiology: pulls studies and their priors from a DICOMweb
/// cloud archive into a local cache and delivers them to a DICOM destination.
#[derive(Debug, Parser)]
#[command(name = "retriever", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts, before or after its name.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// JSON config file; flags beat environment, environment beats the file
    #[arg(long, global = true, env = "RETRIEVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web
    #[arg(long, global = true, env = "RETRIEVER_CLOUD", value_name = "URL")]
    pub cloud: Option<String>,

    /// HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)
    #[arg(long, global = true, env = "RETRIEVER_USER", value_name = "NAME")]
    pub user: Option<String>,

    /// File holding the HTTP Basic password (first line)
    #[arg(long, global = true, env = "RETRIEVER_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// File holding a Bearer token (first line)
    #[arg(long, global = true, env = "RETRIEVER_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Extra CA certificates (PEM) to trust for the cloud, besides the system's
    #[arg(long, global = true, env = "RETRIEVER_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,

    /// Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// The private key (PEM, unencrypted) of --client-cert; a file only this account can read
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// Allow plain, unencrypted http:// to a cloud that is not on this machine
    #[arg(long, global = true)]
    pub allow_insecure_http: bool,

    /// The DICOM destination, e.g. PACS@10.0.0.5:104
    #[arg(long, global = true, env = "RETRIEVER_DEST", value_name = "AE@HOST:PORT", value_parser = Destination::parse)]
    pub to: Option<Destination>,

    /// Only this destination of the config file's `destinations` (by name; repeat for several) [default: all]
    #[arg(long, global = true, value_name = "NAME")]
    pub dest: Vec<String>,

    /// DICOM TLS to the destination (--to); there is never a fallback to plain TCP
    #[arg(long, global = true)]
    pub to_tls: bool,

    /// CA certificates (PEM) to trust for the destination's TLS certificate, besides the system's
    #[arg(long, global = true, value_name = "FILE")]
    pub to_ca: Option<PathBuf>,

    /// Our client certificate (PEM) for a destination that asks for one (with --to-key)
    #[arg(long, global = true, value_name = "FILE", requires = "to_key")]
    pub to_cert: Option<PathBuf>,

    /// The private key (PEM) of --to-cert
    #[arg(long, global = true, value_name = "FILE", requires = "to_cert")]
    pub to_key: Option<PathBuf>,

    /// The name the destination's TLS certificate must be for [default: the host of --to]
    #[arg(long, global = true, value_name = "NAME")]
    pub to_server_name: Option<String>,

    /// Our AE title, as the destination sees it [default: RETRIEVER]
    #[arg(long, global = true, env = "RETRIEVER_CALLING_AE", value_name = "TITLE", value_parser = check_ae_title)]
    pub calling_ae: Option<String>,

    /// The cache directory [default: the platform's local cache folder]
    #[arg(long, global = true, env = "RETRIEVER_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,

    /// Parallel downloads from the cloud [default: 4]
    #[arg(long, global = true, env = "RETRIEVER_JOBS", value_name = "N",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_JOBS))]
    pub jobs: Option<usize>,

    /// Time allowed to connect to the cloud [default: 10s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,

    /// Time a transfer may go without receiving any data [default: 60s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Retries after a transient failure (connection lost, 5xx, 429) [default: 5]
    #[arg(long, global = true, value_name = "N")]
    pub retries: Option<u32>,

    /// Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]
    #[arg(long, global = true, value_name = "SIZE", value_parser = instance_size)]
    pub max_instance_size: Option<u64>,

    /// No progress bars, only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept);
    /// for `service install`, the service's log [default: %ProgramData%\retriever\log\NAME.log]
    #[arg(long, global = true, env = "RETRIEVER_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull studies and their prior studies from the cloud into the cache
    Fetch(FetchArgs),
    /// Show what is in the cache, and its state
    Ls(LsArgs),
    /// Deliver cached studies to the DICOM destination with C-STORE
    Store(StoreArgs),
    /// The router: search the cloud again and again, fetch each new study with its priors, deliver them
    Watch(WatchArgs),
    /// Remove studies older than the retention from the cache, and what crashed runs left behind
    Prune(PruneArgs),
    /// Check the DICOM destination with C-ECHO
    Echo(EchoArgs),
    /// Show the effective configuration and where each value came from (secrets shown as ***)
    Config(ConfigArgs),
    /// Is the router (`watch`) in this cache running and working? Exit status 0 yes, 1 no (for monitoring)
    Status(StatusArgs),
    /// Run the router (`watch`) as a Windows service: install, uninstall, start, stop
    Service(ServiceArgs),
}

/// Which modalities a prior study may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum PriorModality {
    /// Any modality
    #[default]
    Any,
    /// At least one modality in common with the current study
    Same,
}

#[derive(Debug, Args)]
#[command(after_help = FETCH_AFTER_HELP)]
pub struct FetchArgs {
    /// Accession numbers or Study Instance UIDs of the studies to fetch
    #[arg(value_name = "ACCESSION|STUDY_UID", required = true, value_parser = study_identifier)]
    pub studies: Vec<String>,

    /// Show which studies would be fetched and why each prior was chosen or passed over, without downloading
    #[arg(long, visible_alias = "explain")]
    pub dry_run: bool,

    /// One JSON object per line on stdout instead of text
    #[arg(long)]
    pub json: bool,

    /// Ask the cloud for this transfer syntax (UID) instead of the original bytes
    #[arg(long, value_name = "UID", value_parser = transfer_syntax)]
    pub transfer_syntax: Option<Uid>,

    /// Then deliver the studies made complete to the destination (--to), as `store` does
    #[arg(long)]
    pub store: bool,

    // The flattened groups come last: each sets the help heading of what follows it.
    #[command(flatten)]
    pub priors: PriorArgs,

    #[command(flatten)]
    pub dimse: DimseArgs,
}

/// Checks an accession number or Study Instance UID given to `fetch`: a
/// QIDO-RS search would read `*` and `?` in it as wildcards, and match
/// studies nobody named.
fn study_identifier(id: &str) -> Result<String, String> {
    if id.trim().is_empty() {
        return Err("an accession number or Study Instance UID cannot be empty".into());
    }
    if let Some(c) = id.chars().find(|c| matches!(c, '*' | '?')) {
        return Err(format!(
            "`{}` contains `{c}`, which a search of the cloud would read as a wildcard; an accession number \
             or Study Instance UID given to fetch cannot contain wildcards (`*`, `?`): give it in full",
            id.escape_debug()
        ));
    }
    Ok(id.to_string())
}

/// `--max-instance-size`: a size, and not so small that every image is refused.
fn instance_size(raw: &str) -> Result<u64, String> {
    let size = parse_size(raw).map_err(|e| e.to_string())?;
    if size < MIN_INSTANCE_SIZE {
        return Err(format!(
            "the maximum instance size must be at least {}, not `{raw}`",
            crate::format::binary_size(MIN_INSTANCE_SIZE)
        ));
    }
    Ok(size)
}

/// `--interval`: a duration longer than zero (zero would search without a pause).
fn positive_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw).map_err(|e| e.to_string())? {
        d if d.is_zero() => Err(format!("`{raw}` is no time at all; give a duration longer than 0s")),
        d => Ok(d),
    }
}

/// `--filter`: a QIDO-RS matching key and its value, checked as the config
/// file's `watch_filter` is.
fn watch_filter(raw: &str) -> Result<Filter, String> {
    // clap shows one message: the reasons, outermost first, in one line.
    Filter::parse_flag(raw).map_err(|e| format!("{e:#}"))
}

/// `--transfer-syntax`: a UID.
fn transfer_syntax(raw: &str) -> Result<Uid, String> {
    Uid::parse(raw).map_err(|e| format!("{e}; give a transfer syntax UID, e.g. 1.2.840.10008.1.2.1"))
}

/// Which prior studies go with a study (`fetch`, `watch`). The defaults are
/// applied in `config`, after the config file, so they are only named here.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Prior studies")]
pub struct PriorArgs {
    /// How many prior studies of the same patient to fetch with each study [default: 3]
    #[arg(long, value_name = "N")]
    pub priors: Option<usize>,

    /// How far back a prior may be, in years [default: 5]
    #[arg(long, value_name = "YEARS")]
    pub prior_years: Option<u32>,

    /// Which modalities a prior may have [default: any]
    #[arg(long, value_enum, value_name = "WHICH")]
    pub prior_modality: Option<PriorModality>,
}

#[derive(Debug, Args)]
#[command(after_help = STORE_AFTER_HELP)]
pub struct StoreArgs {
    /// Study Instance UIDs to deliver, or `-` to read them from stdin (one per
    /// line, first field, or JSON lines with "study_uid", as `fetch` prints);
    /// none: every complete study in the cache not yet delivered there
    #[arg(value_name = "STUDY_UID|-")]
    pub studies: Vec<String>,

    /// One JSON object per line on stdout instead of text
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub dimse: DimseArgs,
}

#[derive(Debug, Args)]
#[command(after_help = ECHO_AFTER_HELP)]
pub struct EchoArgs {
    #[command(flatten)]
    pub dimse: DimseArgs,
}

/// How to talk DICOM to the destination (`store`, `fetch --store`, `echo`).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "DICOM destination")]
pub struct DimseArgs {
    /// Associations opened in parallel to the destination (1 to 32) [default: 2]
    #[arg(long, value_name = "K", env = "RETRIEVER_ASSOCIATIONS",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub associations: Option<u16>,

    /// Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]
    #[arg(long, value_name = "BYTES", env = "RETRIEVER_MAX_PDU",
          value_parser = clap::value_parser!(u32).range(4096..=4_194_304))]
    pub max_pdu: Option<u32>,

    /// Time allowed to open the TCP connection to the destination [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub dicom_connect_timeout: Option<Duration>,

    /// Time allowed for the destination to answer an association or release request, and for the TLS
    /// handshake with --to-tls [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub acse_timeout: Option<Duration>,

    /// Time the destination may stay silent while an instance is sent, and the most its whole answer
    /// may take [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub dimse_timeout: Option<Duration>,

    /// Retries of an instance within one run, after "out of resources" or no answer (a study
    /// whose requests go unanswered twice in a row is given up), and of an association the
    /// destination is too busy to accept [default: 3]
    #[arg(long, value_name = "N")]
    pub store_retries: Option<u32>,

    /// Decompress lossy JPEG here when the destination does not take it compressed
    /// (otherwise the cloud is asked for it in a syntax the destination takes)
    #[arg(long)]
    pub decompress_lossy: bool,
}

/// `watch`. Its settings (`--interval`, `--filter`, `--stable-age`) are
/// merged with the config file's in `config`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Time between two searches of the cloud [default: 30s]
    #[arg(long = "interval", id = "watch_interval", value_name = "DURATION", value_parser = positive_duration)]
    pub interval: Option<Duration>,

    /// The studies to route: a QIDO-RS matching key and value, e.g. ModalitiesInStudy=CT or
    /// "StudyDate=last 24 hours"; repeat for several; replaces watch_filter of the config file
    /// [default: "StudyDate=last 24 hours"]
    #[arg(long = "filter", id = "watch_filter", value_name = "KEY=VALUE", value_parser = watch_filter)]
    pub filters: Vec<Filter>,

    /// A study whose number of instances has not changed for this long is settled, and no
    /// longer looked at for new instances unless the cloud reports a new count [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stable_age: Option<Duration>,

    /// One pass: search once, fetch and deliver what was found, then exit (status 0 only if all
    /// of it was delivered)
    #[arg(long)]
    pub once: bool,

    /// One JSON object per line on stdout for each study delivered, instead of text
    #[arg(long)]
    pub json: bool,

    /// Also keep the figures of `retriever status` in this file, in the Prometheus text format
    /// (for node_exporter's textfile collector: a FILE ending in .prom in its directory)
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    #[command(flatten)]
    pub priors: PriorArgs,

    #[command(flatten)]
    pub dimse: DimseArgs,
}

#[derive(Debug, Args)]
#[command(after_help = LS_AFTER_HELP)]
pub struct LsArgs {
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,

    /// Every column in full, however wide (the table fits 100 columns otherwise)
    #[arg(long)]
    pub wide: bool,
}

/// `prune`. Its rules: a study goes once it was last fetched or delivered
/// longer ago than the retention, and only if delivered (see `--include-undelivered`).
#[derive(Debug, Args)]
#[command(after_help = PRUNE_AFTER_HELP)]
pub struct PruneArgs {
    /// Remove studies last fetched or delivered longer ago than this, e.g. 90m, 4h, 2d
    /// [default: "retention" in the config file, else 4h]
    #[arg(long, id = "retention", value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<Duration>,

    /// Print what would be removed, and remove nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Also remove expired studies that are not delivered to the destination
    #[arg(long)]
    pub include_undelivered: bool,

    /// One JSON object per removed study on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

const PRUNE_AFTER_HELP: &str = "\
A study counts as delivered when the delivery journal of the destination (--to,
RETRIEVER_DEST or \"to\" in the config file) holds all its instances; with no
destination configured, when the journal of any destination does. Studies in use
by a running fetch, store or watch are skipped. Past the maximum age (\"max_age\"
in the config file, default 7 days) a study is removed even if not delivered.";

const STATUS_AFTER_HELP: &str = "\
Reads what a running `retriever watch` keeps in the cache; needs no cloud or
destination. With --to (or RETRIEVER_DEST, or \"to\" in the config file) it
judges the watch delivering there, else every watch that ran on this cache.
The router works when its process runs, its heartbeat is recent, a search of the
cloud has worked within --stale-after, and its destination has not been down for
longer than that.

Examples:
  retriever status                              a few lines, and exit status 0 or 1
  retriever status --json | jq .verdict         the status file and the verdict, as JSON";

#[derive(Debug, Args)]
#[command(after_help = STATUS_AFTER_HELP)]
pub struct StatusArgs {
    /// The status file and the verdict, one JSON object per watch, instead of text
    #[arg(long)]
    pub json: bool,

    /// Call the router not working when no search of the cloud has worked for this long
    /// [default: 3 search intervals, at least 1m]
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub stale_after: Option<Duration>,
}

#[derive(Debug, Args)]
#[command(after_help = CONFIG_AFTER_HELP)]
pub struct ConfigArgs {
    /// One JSON object (setting -> value, source) instead of a table
    #[arg(long)]
    pub json: bool,

    // Accepted so that their effect can be checked here too.
    #[command(flatten)]
    pub priors: PriorArgs,

    #[command(flatten)]
    pub dimse: DimseArgs,
}

const SERVICE_AFTER_HELP: &str = "\
Windows only (elsewhere the command says so and exits with status 2; on Linux use
the systemd unit scripts/systemd/retriever-watch.service). Run from an elevated
prompt (\"Run as administrator\").

Examples:
  retriever service install                     config, cache and log under %ProgramData%\\retriever
  retriever service install --config D:\\retriever\\config.json --cache D:\\retriever-cache
  retriever service start
  sc query retriever                            its state, as Windows sees it
  retriever service stop
  retriever service uninstall";

/// `service`: the router as a Windows service.
#[derive(Debug, Args)]
#[command(after_help = SERVICE_AFTER_HELP)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
}

#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Register the service: starts with Windows (delayed), restarted after a failure; --config and
    /// --cache are passed to it [default: %ProgramData%\retriever\config.json and ...\cache]
    Install(ServiceInstallArgs),
    /// Stop the service if it runs, and remove it
    Uninstall(ServiceNameArgs),
    /// Start the service
    Start(ServiceNameArgs),
    /// Stop the service; it finishes or abandons what is in flight, as after Ctrl-C
    Stop(ServiceNameArgs),
    /// The service itself, as the Service Control Manager starts it (not run by hand: use `watch`)
    Run(ServiceRunArgs),
}

#[derive(Debug, Args)]
pub struct ServiceNameArgs {
    /// The service's name
    #[arg(long, value_name = "NAME", default_value = crate::service::DEFAULT_NAME, value_parser = service_name)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ServiceInstallArgs {
    #[command(flatten)]
    pub name: ServiceNameArgs,

    /// The account the service runs as: LocalService, NetworkService, LocalSystem, a virtual account
    /// (\"NT SERVICE\\retriever\"), or a user whose password is in RETRIEVER_SERVICE_PASSWORD
    /// [default: LocalService]
    #[arg(long, value_name = "ACCOUNT", value_parser = crate::service::Account::parse)]
    pub account: Option<crate::service::Account>,
}

#[derive(Debug, Args)]
pub struct ServiceRunArgs {
    #[command(flatten)]
    pub name: ServiceNameArgs,
}

/// `--name` of a service: what the Service Control Manager accepts, and
/// what can be typed in `sc query NAME` without quotes.
fn service_name(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 256
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(format!(
            "`{}` is not a usable service name; use letters, digits, `-`, `_` and `.` only, e.g. retriever-ct",
            raw.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_empty_study_identifiers_are_refused() {
        assert_eq!(study_identifier("ACC-1.2").unwrap(), "ACC-1.2");
        for bad in ["ACC*", "A?C", "*"] {
            let e = study_identifier(bad).unwrap_err();
            assert!(e.contains("cannot contain wildcards"), "{e}");
        }
        assert!(study_identifier(" ").unwrap_err().contains("cannot be empty"));
        let e = study_identifier("\u{1b}]0;x*").unwrap_err();
        assert!(!e.contains('\u{1b}'), "{e}");
    }
}
