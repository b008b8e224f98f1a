//! One association with the destination, on dicom-ul's upper layer: connect
//! and negotiate with our timeouts and TCP_NODELAY, send commands and data
//! sets as P-DATA fragments no larger than the negotiated PDU size, read
//! responses, release or abort. The services (echo, store) sit on top.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dicom_ul::association::client::ClientAssociation;
use dicom_ul::association::{Association as _, Error as UlError};
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason, AssociationRJSource,
    PDataValue, PDataValueType, PresentationContextNegotiated,
};
use dicom_ul::{ClientAssociationOptions, Pdu};

use super::command::Command;
use super::error::{Phase, ScuError};
use super::pdu::{self, ABORT_PDU, Incoming, MAX_COMMAND, MIN_PEER_PDU, ReadError, ReceiveError};
use super::{MAX_CONTEXTS, Proposal, ScuOptions};
use crate::config::check_ae_title;

/// PDU header (type, reserved, length) + PDV header (length, context id,
/// message control header).
const PDU_PDV_HEADER: usize = 12;

/// Bounds on our own maximum PDU (DCMTK's lower bound; an upper one so a
/// peer announcing "unlimited" does not make us buffer huge PDUs).
const MIN_OWN_PDU: u32 = 4096;
const MAX_OWN_PDU: u32 = 4 * 1024 * 1024;

/// An established association.
pub(crate) struct Assoc {
    inner: Option<ClientAssociation<TcpStream>>,
    destination: String,
    /// Largest PDU we send: the peer's maximum, capped by ours.
    send_max_pdu: u32,
    /// Largest PDU we take: ours, as announced.
    own_max_pdu: u32,
    acse_timeout: Duration,
    dimse_timeout: Duration,
    next_message_id: u16,
}

impl Assoc {
    /// Connects and negotiates the given presentation contexts.
    pub fn open(opts: &ScuOptions, proposals: &[Proposal]) -> Result<Assoc, ScuError> {
        let dest = &opts.destination;
        let destination = dest.to_string();
        let invalid = |detail: String| ScuError::InvalidOptions { detail };
        if proposals.is_empty() || proposals.len() > MAX_CONTEXTS {
            return Err(invalid(format!(
                "{} presentation contexts cannot go in one association (1 to {MAX_CONTEXTS}; see split_proposals)",
                proposals.len()
            )));
        }
        for ae in [&opts.calling_ae, &dest.ae_title] {
            check_ae_title(ae).map_err(|e| invalid(format!("{e:#}")))?;
        }
        let own_max_pdu = opts.max_pdu.clamp(MIN_OWN_PDU, MAX_OWN_PDU);
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(opts.calling_ae.trim())
            .called_ae_title(dest.ae_title.trim())
            .max_pdu_length(own_max_pdu)
            .connection_timeout(opts.connect_timeout)
            // dicom-ul applies these to the socket while negotiating: they
            // are our ACSE timeout. DIMSE ones are set once established.
            .read_timeout(opts.acse_timeout)
            .write_timeout(opts.acse_timeout);
        for p in proposals {
            options = options.with_presentation_context(
                p.sop_class.as_str(),
                p.transfer_syntaxes.iter().map(String::as_str).collect(),
            );
        }
        let ctx = ErrorContext {
            destination: &destination,
            called_ae: &dest.ae_title,
            calling_ae: &opts.calling_ae,
            proposals,
        };
        let mut inner = options
            // (host, port) resolves names and parses IPv6 literals unbracketed.
            .establish((dest.host.as_str(), dest.port))
            .map_err(|e| ctx.map(e, Phase::Associate, opts.acse_timeout, false))?;

        // Without TCP_NODELAY every C-STORE waits out a delayed ACK
        // (40 ms on Linux): the small command PDU is sent, then Nagle holds
        // the first data PDU back until the peer acknowledges it. dicom-ul
        // does not set it and connects the socket itself, so set it on the
        // stream it exposes, before any DIMSE traffic. The A-ASSOCIATE-RQ
        // went out as one write, which Nagle never delays.
        let stream = inner.inner_stream();
        let socket_setup = stream
            .set_nodelay(true)
            .and_then(|_| stream.set_read_timeout(Some(opts.dimse_timeout)))
            .and_then(|_| stream.set_write_timeout(Some(opts.dimse_timeout)));
        if let Err(e) = socket_setup {
            abort(inner);
            return Err(ScuError::ConnectionLost {
                destination,
                phase: Phase::Associate,
                source: Some(e),
                outcome_unknown: false,
            });
        }

        // dicom-ul turns a peer's 0 ("no limit") into u32::MAX-ish; our own
        // maximum bounds what we buffer and send.
        let send_max_pdu = match pdu::send_max_pdu(inner.peer_max_pdu_length(), own_max_pdu) {
            Ok(n) => n,
            Err(announced) => {
                abort(inner);
                return Err(ScuError::PduTooSmall {
                    destination,
                    announced,
                    least: MIN_PEER_PDU,
                });
            }
        };
        Ok(Assoc {
            inner: Some(inner),
            destination,
            send_max_pdu,
            own_max_pdu,
            acse_timeout: opts.acse_timeout,
            dimse_timeout: opts.dimse_timeout,
            next_message_id: 1,
        })
    }

    /// The accepted presentation contexts (rejected ones are not listed).
    pub fn contexts(&self) -> &[PresentationContextNegotiated] {
        match &self.inner {
            Some(a) => a.presentation_contexts(),
            None => &[],
        }
    }

    pub fn is_open(&self) -> bool {
        self.inner.is_some()
    }

    pub fn send_max_pdu(&self) -> u32 {
        self.send_max_pdu
    }

    /// A fresh Message ID; 16 bits, wrapping, never reused while a request
    /// is outstanding since we have only one at a time.
    pub fn next_message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        id
    }

    /// The error for using this association after it was closed.
    pub fn closed(&self) -> ScuError {
        ScuError::Closed {
            destination: self.destination.clone(),
        }
    }

    /// The open association, or [`closed`](Self::closed).
    fn live(&mut self) -> Result<&mut ClientAssociation<TcpStream>, ScuError> {
        match self.inner {
            Some(ref mut inner) => Ok(inner),
            None => Err(self.closed()),
        }
    }

    /// Sends a command set, fragmented if it exceeds the PDU size.
    pub fn send_command(&mut self, context_id: u8, command: &Command) -> Result<(), ScuError> {
        let bytes = command.encode();
        let chunks: Vec<&[u8]> = bytes.chunks(pdu::pdv_capacity(self.send_max_pdu)).collect();
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let pdu = Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context_id,
                    value_type: PDataValueType::Command,
                    is_last: i + 1 == n,
                    data: chunk.to_vec(),
                }],
            };
            let inner = self.live()?;
            if let Err(e) = inner.send(&pdu) {
                let err = self.map(e, Phase::Send, self.dimse_timeout, false);
                self.abort_inner();
                return Err(err);
            }
        }
        Ok(())
    }

    /// A writer that sends what is written to it as data set P-DATA
    /// fragments on `context_id`. Call [`DataWriter::finish`] to send the
    /// last fragment; on any error the caller must abort the association.
    pub fn data_writer(&mut self, context_id: u8) -> Result<DataWriter<'_>, ScuError> {
        let max_pdu = self.send_max_pdu;
        let inner = self.live()?;
        Ok(DataWriter::new(inner.inner_stream(), context_id, max_pdu))
    }

    /// Starts a request with a data set: the command set, then a writer for
    /// the data set as [`data_writer`](Self::data_writer) gives. A command
    /// that fits in one PDU goes out in the same write as the data set's
    /// first PDU, so the peer is woken once per small instance, not twice.
    pub fn command_with_data(&mut self, context_id: u8, command: &Command) -> Result<DataWriter<'_>, ScuError> {
        let bytes = command.encode();
        if bytes.len() > pdu::pdv_capacity(self.send_max_pdu) {
            self.send_command(context_id, command)?;
            return self.data_writer(context_id);
        }
        let mut writer = self.data_writer(context_id)?;
        writer.pending = pdata_pdu(context_id, 0x03, &bytes);
        Ok(writer)
    }

    /// Maps an I/O error from writing the data set, then aborts.
    pub fn fail_send(&mut self, e: io::Error) -> ScuError {
        let err = io_error(&self.destination, e, Phase::Send, self.dimse_timeout, false);
        self.abort_inner();
        err
    }

    /// Waits for one complete command set (a response), all of it within
    /// the DIMSE timeout: a destination that trickles its answer a byte at
    /// a time does not hold the association past it. `sent` tells whether
    /// a data set was sent in full before, for the error's outcome.
    pub fn receive_command(&mut self, context_id: u8, sent: bool) -> Result<Command, ScuError> {
        let idle = self.dimse_timeout;
        let deadline = Instant::now() + idle;
        let max_pdu = self.own_max_pdu;
        let inner = self.live()?;
        let stream = inner.inner_stream();
        let received = pdu::read_command(stream, context_id, max_pdu, deadline);
        // Back to the idle timeout for what is sent next.
        let _ = stream.set_read_timeout(Some(idle));
        let e = match received {
            Ok(command) => return Ok(command),
            Err(e) => e,
        };
        let detail = match e {
            ReceiveError::Read(e) => {
                let err = self.read_error(e, Phase::Response, self.dimse_timeout, sent);
                self.abort_inner();
                return Err(err);
            }
            ReceiveError::Aborted => {
                self.drop_inner();
                return Err(ScuError::Aborted {
                    destination: self.destination.clone(),
                    phase: Phase::Response,
                    outcome_unknown: sent,
                });
            }
            ReceiveError::DataSet => "a data set came where a response command was expected".to_string(),
            ReceiveError::WrongContext { got } => {
                format!("the response came on presentation context {got} instead of {context_id}")
            }
            ReceiveError::Endless { got } => format!(
                "it sent an endless command set: {got} bytes without its last fragment, more than the {} KiB \
                 a response can take",
                MAX_COMMAND / 1024
            ),
            ReceiveError::Unexpected(name) => format!("unexpected {name} PDU"),
            ReceiveError::Decode(e) => e.to_string(),
        };
        Err(self.protocol(&detail, sent))
    }

    /// The error for a failed read of the destination's answer.
    fn read_error(&self, e: ReadError, phase: Phase, timeout: Duration, outcome_unknown: bool) -> ScuError {
        let destination = self.destination.clone();
        match e {
            ReadError::TimedOut { got: 0 } => ScuError::Timeout {
                destination,
                phase,
                after: timeout,
                outcome_unknown,
            },
            ReadError::TimedOut { got } => ScuError::TooSlow {
                destination,
                phase,
                within: timeout,
                got,
                outcome_unknown,
            },
            ReadError::Closed => ScuError::ConnectionLost {
                destination,
                phase,
                source: None,
                outcome_unknown,
            },
            ReadError::Io(e) => io_error(&self.destination, e, phase, timeout, outcome_unknown),
            e @ (ReadError::TooLarge { .. } | ReadError::Malformed(_)) => ScuError::Protocol {
                destination,
                detail: e.to_string(),
                outcome_unknown,
            },
        }
    }

    /// Aborts the association and builds a protocol error.
    pub fn protocol(&mut self, detail: &str, outcome_unknown: bool) -> ScuError {
        self.abort_inner();
        ScuError::Protocol {
            destination: self.destination.clone(),
            detail: detail.to_string(),
            outcome_unknown,
        }
    }

    /// A-RELEASE, waiting at most the ACSE timeout for the whole answer.
    pub fn release(mut self) -> Result<(), ScuError> {
        let Some(mut inner) = self.inner.take() else {
            return Err(self.closed());
        };
        const RELEASE_RQ: [u8; 10] = [0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0];
        let stream = inner.inner_stream();
        let deadline = Instant::now() + self.acse_timeout;
        let answer = stream
            .write_all(&RELEASE_RQ)
            .map_err(ReadError::Io)
            .and_then(|_| pdu::read_pdu(stream, self.own_max_pdu, deadline, &mut 0));
        let result = match answer {
            Ok(Incoming::ReleaseRp) => Ok(()),
            Ok(Incoming::Abort) => Err(ScuError::Aborted {
                destination: self.destination.clone(),
                phase: Phase::Release,
                outcome_unknown: false,
            }),
            Ok(other) => {
                let _ = stream.write_all(&ABORT_PDU);
                Err(ScuError::Protocol {
                    destination: self.destination.clone(),
                    detail: format!("unexpected {} PDU in answer to A-RELEASE-RQ", pdu::name(&other)),
                    outcome_unknown: false,
                })
            }
            Err(e) => {
                let _ = stream.write_all(&ABORT_PDU);
                Err(self.read_error(e, Phase::Release, self.acse_timeout, false))
            }
        };
        let _ = stream.shutdown(std::net::Shutdown::Both);
        result
    }

    /// A-ABORT (service user) and close, leaving this handle closed.
    pub fn abort_inner(&mut self) {
        if let Some(inner) = self.inner.take() {
            abort(inner);
        }
    }

    /// Forgets a connection the peer already ended.
    fn drop_inner(&mut self) {
        if let Some(mut inner) = self.inner.take() {
            let _ = inner.inner_stream().shutdown(std::net::Shutdown::Both);
        }
    }

    fn map(&self, e: UlError, phase: Phase, timeout: Duration, outcome_unknown: bool) -> ScuError {
        let ctx = ErrorContext {
            destination: &self.destination,
            called_ae: "",
            calling_ae: "",
            proposals: &[],
        };
        ctx.map(e, phase, timeout, outcome_unknown)
    }
}

/// Sends A-ABORT and closes. Written here rather than by dicom-ul, whose
/// encoder checks PDUs against the destination's announced maximum.
fn abort(mut inner: ClientAssociation<TcpStream>) {
    let stream = inner.inner_stream();
    let _ = stream.write_all(&ABORT_PDU);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

impl Drop for Assoc {
    /// An association dropped without release (an error path, a panic) is
    /// aborted, so the peer sees A-ABORT rather than a bare disconnect.
    fn drop(&mut self) {
        self.abort_inner();
    }
}

/// Sends bytes as data set P-DATA-TF PDUs of at most `max_pdu` (PDU length
/// field), one PDV each. The last PDU is held back until `finish`, so that
/// the final fragment (marked last) is never empty.
pub(crate) struct DataWriter<'a> {
    stream: &'a mut TcpStream,
    /// A command PDU to send in the same write as the first data PDU.
    pending: Vec<u8>,
    buf: Vec<u8>,
    capacity: usize,
    bytes: u64,
}

impl<'a> DataWriter<'a> {
    fn new(stream: &'a mut TcpStream, context_id: u8, max_pdu: u32) -> DataWriter<'a> {
        let capacity = PDU_PDV_HEADER + pdu::pdv_capacity(max_pdu);
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(&pdu_pdv_header(context_id, 0, 0));
        DataWriter {
            stream,
            pending: Vec::new(),
            buf,
            capacity,
            bytes: 0,
        }
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data_len = self.buf.len() - PDU_PDV_HEADER;
        let context_id = self.buf[10];
        // Message control header: bit 0 clear = data set, bit 1 = last.
        let header = pdu_pdv_header(context_id, if last { 0x02 } else { 0x00 }, data_len);
        self.buf[..PDU_PDV_HEADER].copy_from_slice(&header);
        if self.pending.is_empty() {
            self.stream.write_all(&self.buf)?;
        } else {
            let mut both = std::mem::take(&mut self.pending);
            both.extend_from_slice(&self.buf);
            self.stream.write_all(&both)?;
        }
        self.buf.truncate(PDU_PDV_HEADER);
        Ok(())
    }

    /// Sends the last fragment; returns the data set's length in bytes.
    pub fn finish(mut self) -> io::Result<u64> {
        self.dispatch(true)?;
        Ok(self.bytes)
    }
}

impl Write for DataWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.len() == self.capacity {
            self.dispatch(false)?;
        }
        let n = data.len().min(self.capacity - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One P-DATA-TF PDU holding one whole PDV (`control`: bit 0 set for a
/// command, bit 1 for the last fragment).
fn pdata_pdu(context_id: u8, control: u8, data: &[u8]) -> Vec<u8> {
    let mut pdu = Vec::with_capacity(data.len() + PDU_PDV_HEADER);
    pdu.extend_from_slice(&pdu_pdv_header(context_id, control, data.len()));
    pdu.extend_from_slice(data);
    pdu
}

/// The head of a P-DATA-TF PDU with one PDV of `data_len` bytes: PDU type
/// and length, PDV item length, presentation context, message control.
fn pdu_pdv_header(context_id: u8, control: u8, data_len: usize) -> [u8; PDU_PDV_HEADER] {
    let pdv_len = data_len as u32 + 2;
    let mut header = [0u8; PDU_PDV_HEADER];
    header[0] = 0x04;
    header[2..6].copy_from_slice(&(pdv_len + 4).to_be_bytes());
    header[6..10].copy_from_slice(&pdv_len.to_be_bytes());
    header[10] = context_id;
    header[11] = control;
    header
}

struct ErrorContext<'a> {
    destination: &'a str,
    called_ae: &'a str,
    calling_ae: &'a str,
    proposals: &'a [Proposal],
}

impl ErrorContext<'_> {
    fn map(&self, e: UlError, phase: Phase, timeout: Duration, outcome_unknown: bool) -> ScuError {
        let destination = self.destination.to_string();
        match e {
            UlError::Connect { source, .. } | UlError::ToAddress { source, .. } => {
                ScuError::Connect { destination, source }
            }
            UlError::Rejected { association_rj, .. } => {
                let (transient, reason) = rejection(&association_rj);
                ScuError::AssociationRejected {
                    destination,
                    called_ae: self.called_ae.to_string(),
                    calling_ae: self.calling_ae.to_string(),
                    transient,
                    reason,
                }
            }
            UlError::NoAcceptedPresentationContexts { .. } => ScuError::NoAcceptedContext {
                destination,
                proposed: self
                    .proposals
                    .iter()
                    .map(|p| format!("{} in {}", p.sop_class, p.transfer_syntaxes.join("/")))
                    .collect(),
            },
            UlError::Aborted { .. } => ScuError::Aborted {
                destination,
                phase,
                outcome_unknown,
            },
            UlError::UnexpectedPdu { pdu, .. } if matches!(*pdu, Pdu::AbortRQ { .. }) => ScuError::Aborted {
                destination,
                phase,
                outcome_unknown,
            },
            UlError::ConnectionClosed { .. } => ScuError::ConnectionLost {
                destination,
                phase,
                source: None,
                outcome_unknown,
            },
            other => match find_io(&other) {
                Some(io) => io_error(self.destination, io, phase, timeout, outcome_unknown),
                None => ScuError::Protocol {
                    destination,
                    detail: chain(&other),
                    outcome_unknown,
                },
            },
        }
    }
}

fn io_error(destination: &str, e: io::Error, phase: Phase, timeout: Duration, outcome_unknown: bool) -> ScuError {
    let destination = destination.to_string();
    match e.kind() {
        // A socket read timeout is WouldBlock on Unix, TimedOut on Windows.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ScuError::Timeout {
            destination,
            phase,
            after: timeout,
            outcome_unknown,
        },
        _ => ScuError::ConnectionLost {
            destination,
            phase,
            source: Some(e),
            outcome_unknown,
        },
    }
}

/// The first I/O error in an error's chain, copied (io::Error is not Clone).
fn find_io(e: &(dyn std::error::Error + 'static)) -> Option<io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io::Error::new(io.kind(), io.to_string()));
        }
        cur = err.source();
    }
    None
}

/// An error and its sources, on one line.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}

/// Whether a rejection is worth retrying, and its reason in words.
fn rejection(rj: &AssociationRJ) -> (bool, String) {
    let congested = matches!(
        rj.source,
        AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::TemporaryCongestion
                | AssociationRJServiceProviderPresentationReason::LocalLimitExceeded
        )
    );
    let transient = rj.result == AssociationRJResult::Transient || congested;
    (transient, rj.source.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::AssociationRJServiceUserReason;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn rejection_classification() {
        let rj = |result, source| AssociationRJ { result, source };
        let (t, r) = rejection(&rj(
            AssociationRJResult::Permanent,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::CalledAETitleNotRecognized),
        ));
        assert!(!t);
        assert_eq!(r, "called AE title not recognized");
        let (t, _) = rejection(&rj(
            AssociationRJResult::Transient,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::NoReasonGiven),
        ));
        assert!(t);
        // Some SCPs send "local limit exceeded" as rejected-permanent.
        let (t, r) = rejection(&rj(
            AssociationRJResult::Permanent,
            AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        ));
        assert!(t);
        assert_eq!(r, "local limit exceeded");
    }

    /// The writer's PDUs, parsed back: sizes respect the limit, only the
    /// last is marked last, and the payload is intact.
    #[test]
    fn data_writer_fragments_to_max_pdu() {
        for (total, command) in [0usize, 1, 1018, 1019, 3000, 10_000]
            .into_iter()
            .flat_map(|t| [(t, false), (t, true)])
        {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let reader = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut all = Vec::new();
                s.read_to_end(&mut all).unwrap();
                all
            });
            let mut client = TcpStream::connect(addr).unwrap();
            let payload: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            let mut w = DataWriter::new(&mut client, 3, 1024);
            if command {
                w.pending = pdata_pdu(3, 0x03, b"command set");
            }
            // Odd-sized writes, as io::copy would not do.
            for chunk in payload.chunks(700) {
                w.write_all(chunk).unwrap();
            }
            assert_eq!(w.finish().unwrap(), total as u64);
            drop(client);
            let wire = reader.join().unwrap();

            let mut pos = 0;
            if command {
                // The command PDU first, whole, marked command and last.
                assert_eq!(&wire[..23], &pdata_pdu(3, 0x03, b"command set")[..]);
                assert_eq!(&wire[..6], &[0x04, 0, 0, 0, 0, 17]);
                assert_eq!(wire[11], 0x03);
                pos = 23;
            }
            let mut got = Vec::new();
            let mut lasts = Vec::new();
            while pos < wire.len() {
                assert_eq!(wire[pos], 0x04);
                let pdu_len = u32::from_be_bytes(wire[pos + 2..pos + 6].try_into().unwrap()) as usize;
                assert!(pdu_len <= 1024, "PDU of {pdu_len} bytes");
                let pdv_len = u32::from_be_bytes(wire[pos + 6..pos + 10].try_into().unwrap()) as usize;
                assert_eq!(pdv_len + 4, pdu_len);
                assert_eq!(wire[pos + 10], 3);
                lasts.push(wire[pos + 11] == 0x02);
                got.extend_from_slice(&wire[pos + 12..pos + 6 + pdu_len]);
                pos += 6 + pdu_len;
            }
            assert_eq!(got, payload, "total {total}");
            assert_eq!(lasts.iter().filter(|l| **l).count(), 1);
            assert!(*lasts.last().unwrap());
            if total > 0 {
                assert_eq!(lasts.len(), total.div_ceil(1018));
            }
        }
    }
}
