//! One association with the destination: connect (and run the TLS
//! handshake when TLS is asked for, see `tls.rs`) and negotiate with our
//! timeouts and TCP_NODELAY, send commands and data sets as P-DATA fragments
//! no larger than the negotiated PDU size, read responses, release or abort.
//! dicom-ul encodes the A-ASSOCIATE-RQ and parses the answer; the socket,
//! every read from it and every deadline are ours (see `pdu.rs`), so that
//! nothing the destination sends or withholds escapes our bounds. The
//! services (echo, store) sit on top.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJSource, AssociationRQ, PresentationContextNegotiated, PresentationContextProposed,
    PresentationContextResultReason, UserVariableItem,
};
use dicom_ul::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, Pdu};

use super::command::Command;
use super::error::{Phase, ScuError, TlsFailure};
use super::pdu::{self, ABORT_PDU, Incoming, MAX_COMMAND, MIN_PEER_PDU, ReadError, ReceiveError};
use super::tls::{self, HandshakeError, Stream};
use super::{DEFAULT_MAX_PDU, MAX_CONTEXTS, Proposal, ScuOptions, check_ae_title};

/// PDU header (type, reserved, length) + PDV header (length, context id,
/// message control header).
const PDU_PDV_HEADER: usize = 12;

/// Bounds on our own maximum PDU (DCMTK's lower bound; an upper one so a
/// peer announcing "unlimited" does not make us buffer huge PDUs).
const MIN_OWN_PDU: u32 = 4096;
const MAX_OWN_PDU: u32 = 4 * 1024 * 1024;

/// The DICOM application context (PS3.7 §A.2.1).
const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";

/// An established association.
pub(crate) struct Assoc {
    /// The connection, until the association ends.
    inner: Option<Stream>,
    /// The accepted presentation contexts.
    contexts: Vec<PresentationContextNegotiated>,
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
    /// Connects and negotiates the given presentation contexts, the whole
    /// answer within the ACSE timeout.
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
        let (proposed, request) = association_rq(opts, proposals, own_max_pdu)
            .map_err(|e| invalid(format!("the association request could not be encoded: {}", chain(&e))))?;

        let tcp = connect(&dest.host, dest.port, opts.connect_timeout).map_err(|source| ScuError::Connect {
            destination: destination.clone(),
            source,
        })?;
        // Without TCP_NODELAY every C-STORE waits out a delayed ACK
        // (40 ms on Linux): the small command PDU is sent, then Nagle holds
        // the first data PDU back until the peer acknowledges it.
        if let Err(e) = tcp.set_nodelay(true) {
            let _ = tcp.shutdown(std::net::Shutdown::Both);
            return Err(io_error(&destination, e, Phase::Associate, opts.acse_timeout, false));
        }
        // With TLS asked for, TLS or nothing: a failed handshake ends here.
        let mut stream = match &opts.tls {
            None => Stream::Plain(tcp),
            Some(config) => tls::handshake(config, tcp, Instant::now() + opts.acse_timeout)
                .map_err(|e| handshake_error(&destination, e, opts.acse_timeout))?,
        };
        let deadline = Instant::now() + opts.acse_timeout;
        let sent = stream
            .tcp()
            .set_write_timeout(Some(opts.acse_timeout))
            .and_then(|_| stream.write_all(&request));
        if let Err(e) = sent {
            stream.close();
            return Err(io_error(&destination, e, Phase::Associate, opts.acse_timeout, false));
        }
        let fail = |stream: Stream, e: ScuError| {
            abort(stream);
            Err(e)
        };
        let ac = match pdu::read_association_answer(&mut stream, own_max_pdu, deadline) {
            Ok(Ok(Pdu::AssociationAC(ac))) => ac,
            Ok(Ok(Pdu::AssociationRJ(rj))) => {
                stream.close();
                let (transient, reason) = rejection(&rj);
                return Err(ScuError::AssociationRejected {
                    destination,
                    called_ae: dest.ae_title.clone(),
                    calling_ae: opts.calling_ae.clone(),
                    transient,
                    reason,
                });
            }
            Ok(Err(Incoming::Abort)) => {
                stream.close();
                return Err(ScuError::Aborted {
                    destination,
                    phase: Phase::Associate,
                    outcome_unknown: false,
                });
            }
            // Only types 2 and 3 are parsed, so this is some other such PDU.
            Ok(Ok(_)) => {
                let detail = "an unexpected PDU in answer to A-ASSOCIATE-RQ".to_string();
                return fail(stream, protocol_error(&destination, detail));
            }
            Ok(Err(other)) => {
                let detail = format!("unexpected {} PDU in answer to A-ASSOCIATE-RQ", pdu::name(&other));
                return fail(stream, protocol_error(&destination, detail));
            }
            Err(e) => {
                let e = read_error(&destination, e, Phase::Associate, opts.acse_timeout, false);
                return fail(stream, e);
            }
        };
        let negotiated = match negotiate(ac, &proposed, own_max_pdu) {
            Ok(n) => n,
            Err(Refusal::Protocol(detail)) => return fail(stream, protocol_error(&destination, detail)),
            Err(Refusal::NoContext) => {
                let proposed = proposals
                    .iter()
                    .map(|p| format!("{} in {}", p.sop_class, p.transfer_syntaxes.join("/")))
                    .collect();
                return fail(stream, ScuError::NoAcceptedContext { destination, proposed });
            }
            Err(Refusal::PduTooSmall(announced)) => {
                let e = ScuError::PduTooSmall {
                    destination,
                    announced,
                    least: MIN_PEER_PDU,
                };
                return fail(stream, e);
            }
        };
        if let Err(e) = stream.set_timeouts(opts.dimse_timeout, opts.dimse_timeout) {
            let e = ScuError::ConnectionLost {
                destination,
                phase: Phase::Associate,
                source: Some(e),
                outcome_unknown: false,
            };
            return fail(stream, e);
        }
        Ok(Assoc {
            inner: Some(stream),
            contexts: negotiated.contexts,
            destination,
            send_max_pdu: negotiated.send_max_pdu,
            own_max_pdu,
            acse_timeout: opts.acse_timeout,
            dimse_timeout: opts.dimse_timeout,
            next_message_id: 1,
        })
    }

    /// The accepted presentation contexts (rejected ones are not listed).
    pub fn contexts(&self) -> &[PresentationContextNegotiated] {
        match &self.inner {
            Some(_) => &self.contexts,
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
    fn live(&mut self) -> Result<&mut Stream, ScuError> {
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
            // Message control header: bit 0 set = command, bit 1 = last.
            let pdu = pdata_pdu(context_id, if i + 1 == n { 0x03 } else { 0x01 }, chunk);
            let inner = self.live()?;
            if let Err(e) = inner.write_all(&pdu) {
                return Err(self.fail_send(e));
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
        Ok(DataWriter::new(inner, context_id, max_pdu))
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
        writer.lead_with(pdata_pdu(context_id, 0x03, &bytes));
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
        let stream = self.live()?;
        let received = pdu::read_command(stream, context_id, max_pdu, deadline);
        // Back to the idle timeout for what is sent next.
        let _ = stream.set_timeouts(idle, idle);
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
        read_error(&self.destination, e, phase, timeout, outcome_unknown)
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
        let stream = &mut inner;
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
        stream.close();
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
            inner.close();
        }
    }
}

/// The error for a failed read of the destination's answer.
fn read_error(destination: &str, e: ReadError, phase: Phase, timeout: Duration, outcome_unknown: bool) -> ScuError {
    let destination = destination.to_string();
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
        ReadError::Io(e) => io_error(&destination, e, phase, timeout, outcome_unknown),
        e @ (ReadError::TooLarge { .. } | ReadError::Malformed(_)) => ScuError::Protocol {
            destination,
            detail: e.to_string(),
            outcome_unknown,
        },
    }
}

fn protocol_error(destination: &str, detail: String) -> ScuError {
    ScuError::Protocol {
        destination: destination.to_string(),
        detail,
        outcome_unknown: false,
    }
}

/// Our A-ASSOCIATE-RQ, encoded, and the presentation contexts it proposes
/// (ids 1, 3, 5... in the order of `proposals`).
fn association_rq(
    opts: &ScuOptions,
    proposals: &[Proposal],
    own_max_pdu: u32,
) -> Result<(Vec<PresentationContextProposed>, Vec<u8>), dicom_ul::pdu::WriteError> {
    let proposed: Vec<PresentationContextProposed> = proposals
        .iter()
        .enumerate()
        .map(|(i, p)| PresentationContextProposed {
            id: (2 * i + 1) as u8,
            abstract_syntax: uid(&p.sop_class).to_string(),
            transfer_syntaxes: p.transfer_syntaxes.iter().map(|t| uid(t).to_string()).collect(),
        })
        .collect();
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: opts.calling_ae.trim().to_string(),
        called_ae_title: opts.destination.ae_title.trim().to_string(),
        application_context_name: APPLICATION_CONTEXT.to_string(),
        presentation_contexts: proposed.clone(),
        user_variables: vec![
            UserVariableItem::MaxLength(own_max_pdu),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
            UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.to_string()),
        ],
    });
    let mut request = Vec::new();
    dicom_ul::write_pdu(&mut request, &rq)?;
    Ok((proposed, request))
}

/// Sends A-ABORT and closes.
fn abort(mut stream: Stream) {
    let _ = stream.write_all(&ABORT_PDU);
    stream.close();
}

/// Opens the TCP connection, trying each address the name resolves to
/// (`(host, port)` also parses IPv6 literals unbracketed).
fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("`{host}` resolves to no address"));
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What was agreed in an A-ASSOCIATE-AC.
struct Negotiated {
    contexts: Vec<PresentationContextNegotiated>,
    send_max_pdu: u32,
}

/// Why an A-ASSOCIATE-AC does not give a usable association.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Protocol(String),
    NoContext,
    PduTooSmall(u32),
}

/// Checks an A-ASSOCIATE-AC against what was proposed: the contexts
/// accepted among those proposed (each with its abstract syntax), and the
/// PDU size to send.
fn negotiate(
    ac: AssociationAC,
    proposed: &[PresentationContextProposed],
    own_max_pdu: u32,
) -> Result<Negotiated, Refusal> {
    // Only version 1 exists; its bit must be set (PS3.8 §9.3.3).
    if ac.protocol_version & 1 == 0 {
        return Err(Refusal::Protocol(format!(
            "the A-ASSOCIATE-AC has protocol version {:#06x}, without version 1",
            ac.protocol_version
        )));
    }
    let contexts: Vec<PresentationContextNegotiated> = ac
        .presentation_contexts
        .into_iter()
        .filter(|c| c.reason == PresentationContextResultReason::Acceptance)
        .filter_map(|c| {
            let p = proposed.iter().find(|p| p.id == c.id)?;
            // An accepted context names one of the syntaxes we proposed.
            let ts = uid(&c.transfer_syntax);
            p.transfer_syntaxes
                .iter()
                .any(|t| t == ts)
                .then(|| PresentationContextNegotiated {
                    id: c.id,
                    reason: c.reason,
                    transfer_syntax: ts.to_string(),
                    abstract_syntax: p.abstract_syntax.clone(),
                })
        })
        .collect();
    if contexts.is_empty() {
        return Err(Refusal::NoContext);
    }
    // The Maximum Length item is mandatory; without it assume the common default.
    let announced = ac
        .user_variables
        .iter()
        .find_map(|v| match v {
            UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(DEFAULT_MAX_PDU);
    let send_max_pdu = pdu::send_max_pdu(announced, own_max_pdu).map_err(Refusal::PduTooSmall)?;
    Ok(Negotiated { contexts, send_max_pdu })
}

/// A UID without the padding a peer may leave on it.
fn uid(s: &str) -> &str {
    s.trim_end_matches(['\0', ' '])
}

impl Drop for Assoc {
    /// An association dropped without release (an error path, a panic) is
    /// aborted, so the peer sees A-ABORT rather than a bare disconnect.
    fn drop(&mut self) {
        self.abort_inner();
    }
}

/// Bytes of whole PDUs gathered into one write. A peer's maximum PDU is
/// often 16 KiB (DCMTK's default), and a write per PDU costs a system call
/// and a wake-up of the peer per 16 KiB: sending from the cache to
/// storescp took an eighth less CPU with writes of 64 KiB, in the same
/// time; larger writes saved nothing more.
const WRITE_BATCH: usize = 64 * 1024;

/// Sends bytes as data set P-DATA-TF PDUs of at most `max_pdu` (PDU length
/// field), one PDV each, gathered into writes of about [`WRITE_BATCH`]
/// bytes. The last PDU is held back until `finish`, so that the final
/// fragment (marked last) is never empty.
pub(crate) struct DataWriter<'a> {
    stream: &'a mut Stream,
    /// Whole PDUs not yet written, then the one being filled (from `start`).
    buf: Vec<u8>,
    start: usize,
    /// PDU and PDV headers plus the most data one PDU carries.
    pdu_size: usize,
    context_id: u8,
    bytes: u64,
}

impl<'a> DataWriter<'a> {
    fn new(stream: &'a mut Stream, context_id: u8, max_pdu: u32) -> DataWriter<'a> {
        let pdu_size = PDU_PDV_HEADER + pdu::pdv_capacity(max_pdu);
        let mut buf = Vec::with_capacity(pdu_size.max(WRITE_BATCH));
        buf.extend_from_slice(&pdu_pdv_header(context_id, 0, 0));
        DataWriter {
            stream,
            buf,
            start: 0,
            pdu_size,
            context_id,
            bytes: 0,
        }
    }

    /// Puts a whole PDU (the command set) before the data set's first,
    /// so that both go out in one write. Only before any data.
    fn lead_with(&mut self, pdu: Vec<u8>) {
        debug_assert_eq!(self.buf.len(), self.start + PDU_PDV_HEADER);
        self.buf.splice(self.start..self.start, pdu);
        self.start = self.buf.len() - PDU_PDV_HEADER;
    }

    /// Writes the PDU being filled into its header.
    fn close(&mut self, last: bool) {
        let data_len = self.buf.len() - self.start - PDU_PDV_HEADER;
        // Message control header: bit 0 clear = data set, bit 1 = last.
        let header = pdu_pdv_header(self.context_id, if last { 0x02 } else { 0x00 }, data_len);
        self.buf[self.start..self.start + PDU_PDV_HEADER].copy_from_slice(&header);
    }

    /// Closes the full PDU being filled and starts the next, writing out
    /// what is gathered when another PDU would not fit the batch.
    fn next_pdu(&mut self) -> io::Result<()> {
        self.close(false);
        if self.buf.len() + self.pdu_size > self.pdu_size.max(WRITE_BATCH) {
            self.stream.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.start = self.buf.len();
        self.buf.extend_from_slice(&pdu_pdv_header(self.context_id, 0, 0));
        Ok(())
    }

    /// Sends the last fragment; returns the data set's length in bytes.
    pub fn finish(mut self) -> io::Result<u64> {
        self.close(true);
        self.stream.write_all(&self.buf)?;
        Ok(self.bytes)
    }
}

impl Write for DataWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.len() - self.start == self.pdu_size {
            self.next_pdu()?;
        }
        let n = data.len().min(self.pdu_size - (self.buf.len() - self.start));
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

fn io_error(destination: &str, e: io::Error, phase: Phase, timeout: Duration, outcome_unknown: bool) -> ScuError {
    let destination = destination.to_string();
    // A refusal that TLS 1.3 delivers after the handshake, with the first
    // answer (our client certificate, checked late): see `tls.rs`.
    if let Some(failure) = e.get_ref().and_then(|inner| inner.downcast_ref::<TlsFailure>()) {
        return ScuError::Tls {
            destination,
            failure: failure.clone(),
        };
    }
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

/// The error for a TLS handshake that did not complete.
fn handshake_error(destination: &str, e: HandshakeError, timeout: Duration) -> ScuError {
    match e {
        HandshakeError::Failed(failure) => ScuError::Tls {
            destination: destination.to_string(),
            failure,
        },
        HandshakeError::TimedOut { got } => read_error(
            destination,
            ReadError::TimedOut { got },
            Phase::Handshake,
            timeout,
            false,
        ),
        HandshakeError::Io(e) => io_error(destination, e, Phase::Handshake, timeout, false),
    }
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

    fn ac(max_pdu: Option<u32>, contexts: &[(u8, u8, &str)]) -> AssociationAC {
        AssociationAC {
            protocol_version: 1,
            calling_ae_title: "RETRIEVER".into(),
            called_ae_title: "PACS".into(),
            application_context_name: APPLICATION_CONTEXT.into(),
            presentation_contexts: contexts
                .iter()
                .map(|(id, reason, ts)| dicom_ul::pdu::PresentationContextResult {
                    id: *id,
                    reason: match reason {
                        0 => PresentationContextResultReason::Acceptance,
                        _ => PresentationContextResultReason::AbstractSyntaxNotSupported,
                    },
                    transfer_syntax: ts.to_string(),
                })
                .collect(),
            user_variables: max_pdu.map(UserVariableItem::MaxLength).into_iter().collect(),
        }
    }

    fn proposed() -> Vec<PresentationContextProposed> {
        vec![
            PresentationContextProposed {
                id: 1,
                abstract_syntax: "1.2.840.10008.5.1.4.1.1.7".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2.1".into(), "1.2.840.10008.1.2".into()],
            },
            PresentationContextProposed {
                id: 3,
                abstract_syntax: "1.2.840.10008.5.1.4.1.1.2".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            },
        ]
    }

    #[test]
    fn negotiation_checks_sizes_and_contexts() {
        let ok = [(1, 0, "1.2.840.10008.1.2\0")];
        let n = negotiate(ac(Some(0), &ok), &proposed(), 16_384).unwrap();
        assert_eq!(n.send_max_pdu, 16_384, "0 means no limit: ours applies");
        assert_eq!(n.contexts.len(), 1);
        assert_eq!(n.contexts[0].abstract_syntax, "1.2.840.10008.5.1.4.1.1.7");
        assert_eq!(n.contexts[0].transfer_syntax, "1.2.840.10008.1.2");
        assert_eq!(
            negotiate(ac(None, &ok), &proposed(), 65_536).unwrap().send_max_pdu,
            DEFAULT_MAX_PDU
        );
        assert_eq!(
            negotiate(ac(Some(u32::MAX), &ok), &proposed(), 65_536)
                .unwrap()
                .send_max_pdu,
            65_536
        );
        for tiny in [1, 5, 6, 7, 100] {
            assert!(matches!(
                negotiate(ac(Some(tiny), &ok), &proposed(), 16_384),
                Err(Refusal::PduTooSmall(n)) if n == tiny
            ));
        }
        // Refused, never proposed, or in a syntax we did not propose: none usable.
        let none = [
            (1, 3, "1.2.840.10008.1.2"),
            (5, 0, "1.2.840.10008.1.2"),
            (3, 0, "1.2.840.10008.1.2.1"),
        ];
        assert!(matches!(
            negotiate(ac(Some(16_384), &none), &proposed(), 16_384),
            Err(Refusal::NoContext)
        ));
        let mut bad = ac(Some(16_384), &ok);
        bad.protocol_version = 2;
        assert!(matches!(negotiate(bad, &proposed(), 16_384), Err(Refusal::Protocol(_))));
    }

    /// An A-ASSOCIATE-AC, mutated, read as the answer to our request: an
    /// answer or an error, never a panic.
    #[test]
    fn mutated_association_answers_never_panic() {
        use proptest::prelude::*;
        struct Bytes<'a>(&'a [u8]);
        impl Read for Bytes<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.read(buf)
            }
        }
        impl pdu::Wire for Bytes<'_> {
            fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
                Ok(())
            }
        }
        let mut good = Vec::new();
        let ok = [(1, 0, "1.2.840.10008.1.2"), (3, 0, "1.2.840.10008.1.2")];
        dicom_ul::write_pdu(&mut good, &Pdu::AssociationAC(ac(Some(16_384), &ok))).unwrap();
        let far = Instant::now() + Duration::from_secs(3600);
        proptest!(ProptestConfig::with_cases(3000), |(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..6)
        )| {
            let mut wire = good.clone();
            for (at, value, flip) in edits {
                let at = at % wire.len().max(1);
                if flip && !wire.is_empty() {
                    wire[at] ^= value | 1;
                } else {
                    wire.truncate(at);
                }
            }
            if let Ok(Ok(Pdu::AssociationAC(ac))) = pdu::read_association_answer(&mut Bytes(&wire), 16_384, far) {
                let _ = negotiate(ac, &proposed(), 16_384);
            }
        });
    }

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
        for (total, command) in [0usize, 1, 1018, 1019, 3000, 10_000, 600_000]
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
            let client = TcpStream::connect(addr).unwrap();
            let payload: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            let mut client = Stream::Plain(client);
            let mut w = DataWriter::new(&mut client, 3, 1024);
            if command {
                w.lead_with(pdata_pdu(3, 0x03, b"command set"));
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
