//! C-ECHO SCU (Verification service, PS3.4 Annex A): proves that the
//! destination is reachable, answers to its AE title, and speaks DICOM.

use std::time::{Duration, Instant};

use super::association::Assoc;
use super::command::{self, Command};
use super::error::ScuError;
use super::status::StoreStatus;
use super::{EXPLICIT_VR_LE, IMPLICIT_VR_LE, Proposal, ScuOptions, VERIFICATION};

/// The result of a C-ECHO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReport {
    /// The C-ECHO-RSP status; 0x0000 when all is well.
    pub status: StoreStatus,
    /// From sending the C-ECHO-RQ to receiving its response.
    pub round_trip: Duration,
    /// Connect, associate, echo and release, all told.
    pub total: Duration,
    /// The largest PDU we send to this destination.
    pub max_pdu: u32,
}

/// Opens an association for the Verification SOP class, sends one C-ECHO
/// and releases.
pub fn echo(opts: &ScuOptions) -> Result<EchoReport, ScuError> {
    let start = Instant::now();
    let proposals = [Proposal::new(VERIFICATION, &[EXPLICIT_VR_LE, IMPLICIT_VR_LE])];
    let mut assoc = Assoc::open(opts, &proposals)?;
    // dicom-ul fails the association when no context is accepted.
    let Some(context_id) = assoc.contexts().first().map(|c| c.id) else {
        return Err(assoc.protocol("no presentation context was accepted", false));
    };
    let max_pdu = assoc.send_max_pdu();

    let message_id = assoc.next_message_id();
    let sent = Instant::now();
    assoc.send_command(context_id, &Command::c_echo_rq(message_id))?;
    let rsp = assoc.receive_command(context_id, false)?;
    let round_trip = sent.elapsed();
    if rsp.command_field != command::field::C_ECHO_RSP
        || rsp.message_id_being_responded_to != Some(message_id)
        || rsp.has_data_set()
    {
        let detail = format!(
            "expected a C-ECHO-RSP to message {message_id}, got command field 0x{:04X} answering {:?}",
            rsp.command_field, rsp.message_id_being_responded_to
        );
        return Err(assoc.protocol(&detail, false));
    }
    let Some(code) = rsp.status else {
        return Err(assoc.protocol("the C-ECHO-RSP has no status", false));
    };
    assoc.release()?;
    Ok(EchoReport {
        status: StoreStatus::new(code, rsp.error_comment),
        round_trip,
        total: start.elapsed(),
        max_pdu,
    })
}
