//! The DICOM network side: C-ECHO and C-STORE as a service class user.
//! dicom-ul encodes the A-ASSOCIATE-RQ and parses the answer; the socket,
//! every read under its size and time bounds (the destination is as
//! untrusted as the cloud), DIMSE command sets, message ids, P-DATA
//! fragmentation, status classification and lossless transfer syntax
//! conversion are ours; so is DICOM TLS over that socket (`tls.rs`). It
//! owns its options and their defaults ([`ScuOptions`], [`Destination`]
//! with the AE-title rules).
//!
//! Nothing here prints, draws progress or exits: every outcome is returned
//! to the caller, which reports it.
//!
//! ```no_run
//! # use retriever::dimse::*;
//! # fn run(dest: retriever::dimse::Destination, files: &[std::path::PathBuf]) -> Result<(), ScuError> {
//! let opts = ScuOptions::new(dest);
//! let metas: Vec<InstanceMeta> = files.iter().map(|f| InstanceMeta::read(f)).collect::<Result<_, _>>()?;
//! let proposals = proposals_for(metas.iter().map(|m| (m.sop_class.as_str(), m.transfer_syntax.as_str())));
//! for group in split_proposals(&proposals) {
//!     let mut assoc = StoreAssociation::open(&opts, &group)?;
//!     for (file, meta) in files.iter().zip(&metas) {
//!         if !group.iter().any(|p| p.sop_class == meta.sop_class) {
//!             continue;
//!         }
//!         let outcome = assoc.store_file(file)?;
//!         // record outcome.is_delivered(), show status / needed syntax...
//!     }
//!     assoc.release()?;
//! }
//! # Ok(())
//! # }
//! ```

mod association;
mod command;
mod destination;
mod echo;
mod error;
mod pdu;
mod proposal;
pub mod status;
mod store;
mod tls;
mod transcode;

use std::time::Duration;

pub use destination::{AeTitleError, Destination, DestinationError, check_ae_title};
pub use echo::{EchoReport, echo};
pub use error::{Phase, ScuError, TlsFailure};
pub use proposal::{MAX_CONTEXTS, Proposal, proposals_for, split_proposals};
pub use status::{StatusClass, StoreStatus, meaning};
pub use store::{InstanceMeta, SendPlan, StoreAssociation, StoreOutcome};
pub use tls::{ClientTls, TlsOptions, TlsSetupError};

/// Verification SOP class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Implicit VR Little Endian, the default transfer syntax every SCP takes.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Explicit VR Big Endian (retired, still met in old archives).
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
/// Deflated Explicit VR Little Endian.
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";

/// Our calling AE title unless configured otherwise.
pub const DEFAULT_CALLING_AE: &str = "RETRIEVER";
/// DCMTK's and dicom-rs's default maximum PDU.
pub const DEFAULT_MAX_PDU: u32 = 16_384;
/// Default time to open the TCP connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for the answer to an association request or release.
pub const DEFAULT_ACSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default idle time while an instance is sent or its answer awaited.
pub const DEFAULT_DIMSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach the destination.
#[derive(Debug, Clone)]
pub struct ScuOptions {
    pub calling_ae: String,
    pub destination: Destination,
    /// The largest PDU we receive, and the largest we send (the
    /// destination's own limit applies too). 16 KiB by default; larger
    /// values cut per-PDU overhead where the destination accepts them.
    /// Taken within 4 KiB ..= 4 MiB.
    pub max_pdu: u32,
    /// Time allowed to open the TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for the whole answer to an association or release
    /// request.
    pub acse_timeout: Duration,
    /// Idle time allowed while sending a message (per write, not for the
    /// whole data set, so big instances are not cut off), and the time
    /// allowed for the whole response once the request is sent (so a
    /// destination trickling its answer cannot hold the association).
    pub dimse_timeout: Duration,
    /// Also decompress lossy-compressed pixel data (JPEG baseline...) when
    /// the destination does not take it compressed. Off by default, as in
    /// dcmsend: such instances are reported as needing another syntax.
    pub decompress_lossy: bool,
    /// DICOM TLS to the destination; `None`: plain TCP. With it, every
    /// association is TLS or is not opened (no fallback). The handshake
    /// is bounded by the ACSE timeout.
    pub tls: Option<ClientTls>,
    /// Rules applied to every instance sent (none by default: the file's
    /// bytes go out as they are).
    pub coerce: crate::coerce::Coercions,
}

impl ScuOptions {
    /// Defaults: calling AE `RETRIEVER`, 16 KiB PDUs, 10 s to connect, 30 s
    /// for ACSE, 60 s idle for DIMSE, no lossy decompression, plain TCP.
    pub fn new(destination: Destination) -> ScuOptions {
        ScuOptions {
            calling_ae: DEFAULT_CALLING_AE.to_string(),
            destination,
            max_pdu: DEFAULT_MAX_PDU,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            acse_timeout: DEFAULT_ACSE_TIMEOUT,
            dimse_timeout: DEFAULT_DIMSE_TIMEOUT,
            decompress_lossy: false,
            tls: None,
            coerce: crate::coerce::Coercions::default(),
        }
    }
}
