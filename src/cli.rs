//! The command-line interface: clap definitions only. Values are checked and
//! turned into typed settings in `config`; nothing here has behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Secrets are never taken from the command line alone: set RETRIEVER_PASSWORD or
RETRIEVER_TOKEN, or use --password-file / --token-file, or the config file.

Exit status: 0 when everything asked for was done, 1 when something failed,
2 for usage errors, 130 after Ctrl-C.";

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

    /// Allow plain, unencrypted http:// to a cloud that is not on this machine
    #[arg(long, global = true)]
    pub allow_insecure_http: bool,

    /// The DICOM destination, e.g. PACS@10.0.0.5:104
    #[arg(long, global = true, env = "RETRIEVER_DEST", value_name = "AE@HOST:PORT")]
    pub to: Option<String>,

    /// Our AE title, as the destination sees it [default: RETRIEVER]
    #[arg(long, global = true, env = "RETRIEVER_CALLING_AE", value_name = "TITLE")]
    pub calling_ae: Option<String>,

    /// The cache directory [default: the platform's local cache folder]
    #[arg(long, global = true, env = "RETRIEVER_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,

    /// Parallel downloads from the cloud [default: 4]
    #[arg(long, global = true, env = "RETRIEVER_JOBS", value_name = "N")]
    pub jobs: Option<usize>,

    /// Time allowed to connect to the cloud [default: 10s]
    #[arg(long, global = true, value_name = "DURATION")]
    pub connect_timeout: Option<String>,

    /// Time a transfer may go without receiving any data [default: 60s]
    #[arg(long, global = true, value_name = "DURATION")]
    pub idle_timeout: Option<String>,

    /// Retries after a transient failure (connection lost, 5xx, 429) [default: 5]
    #[arg(long, global = true, value_name = "N")]
    pub retries: Option<u32>,

    /// No progress bars, only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull studies and their prior studies from the cloud into the cache
    Fetch(FetchArgs),
    /// Show what is in the cache, and its state
    Ls(LsArgs),
    /// Deliver cached studies to the DICOM destination with C-STORE
    Store(StoreArgs),
    /// Check the DICOM destination with C-ECHO
    Echo(EchoArgs),
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
pub struct FetchArgs {
    /// Accession numbers or Study Instance UIDs of the studies to fetch
    #[arg(value_name = "ACCESSION|STUDY_UID", required = true)]
    pub studies: Vec<String>,

    /// How many prior studies of the same patient to fetch with each study
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub priors: usize,

    /// How far back a prior may be, in years
    #[arg(long, value_name = "YEARS", default_value_t = 5)]
    pub prior_years: u32,

    /// Which modalities a prior may have
    #[arg(long, value_enum, default_value_t = PriorModality::Any)]
    pub prior_modality: PriorModality,

    /// Show which studies would be fetched and why each prior was chosen or passed over, without downloading
    #[arg(long, visible_alias = "explain")]
    pub dry_run: bool,

    /// One JSON object per line on stdout instead of text
    #[arg(long)]
    pub json: bool,

    /// Ask the cloud for this transfer syntax (UID) instead of the original bytes
    #[arg(long, value_name = "UID")]
    pub transfer_syntax: Option<String>,

    /// Then deliver the studies made complete to the destination (--to), as `store` does
    #[arg(long)]
    pub store: bool,

    #[command(flatten)]
    pub dimse: DimseArgs,
}

#[derive(Debug, Args)]
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
pub struct EchoArgs {
    #[command(flatten)]
    pub dimse: DimseArgs,
}

/// How to talk DICOM to the destination (`store`, `fetch --store`, `echo`).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "DICOM destination")]
pub struct DimseArgs {
    /// Associations opened in parallel to the destination
    #[arg(long, value_name = "K", env = "RETRIEVER_ASSOCIATIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub associations: u16,

    /// Largest PDU we receive, and send if the destination takes it (4096 to 4194304)
    #[arg(long, value_name = "BYTES", env = "RETRIEVER_MAX_PDU", default_value_t = 16_384,
          value_parser = clap::value_parser!(u32).range(4096..=4_194_304))]
    pub max_pdu: u32,

    /// Time allowed to open the TCP connection to the destination [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub dicom_connect_timeout: Option<String>,

    /// Time allowed for the destination to answer an association or release request [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub acse_timeout: Option<String>,

    /// Time the destination may stay silent while an instance is sent or its answer awaited [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub dimse_timeout: Option<String>,

    /// Retries of an instance within one run, after "out of resources" or no answer,
    /// and of an association the destination is too busy to accept
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub store_retries: u32,

    /// Decompress lossy JPEG here when the destination does not take it compressed
    /// (otherwise the cloud is asked for it in a syntax the destination takes)
    #[arg(long)]
    pub decompress_lossy: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
}
