//! The destination's side of an established association, read under bounds:
//! what PDU sizes it announced can mean, and PDUs and command sets read from
//! its bytes with a size cap (our own maximum PDU, a command set cap) and a
//! deadline for the whole answer, not only for each read. A destination is
//! as untrusted as the cloud: whatever it sends or announces ends in an
//! error here, never in a panic, an underflow or a huge allocation.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dicom_ul::Pdu;

use super::command::{Command, DecodeError};

/// PDU header: type, reserved, length.
pub(crate) const PDU_HEADER: usize = 6;
/// PDV header inside a P-DATA-TF PDU: item length, context id, control.
pub(crate) const PDV_HEADER: usize = 6;

/// The least maximum PDU length we accept from a destination. Any value
/// from 7 could carry a PDV one byte at a time, but a peer announcing less
/// than dicom-ul's own minimum (1024 - 6) is broken, not frugal: DCMTK
/// refuses anything below 4096.
pub(crate) const MIN_PEER_PDU: u32 = 1018;

/// The largest command set we take. A C-STORE-RSP is under 200 bytes, with
/// an Error Comment and Offending Elements still under 1 KiB.
pub(crate) const MAX_COMMAND: usize = 64 * 1024;

/// What we may send: the destination's maximum PDU length capped by our
/// own, 0 from the destination meaning "no limit". `Err` carries the
/// announced value when it is too small to be honoured.
pub(crate) fn send_max_pdu(announced: u32, own: u32) -> Result<u32, u32> {
    match announced {
        0 => Ok(own),
        n if n < MIN_PEER_PDU => Err(n),
        n => Ok(n.min(own)),
    }
}

/// Bytes of message data one P-DATA-TF PDU of at most `max_pdu` (its
/// length field) carries in one PDV; never 0, so that a caller cutting
/// data into pieces of this size always advances.
pub(crate) fn pdv_capacity(max_pdu: u32) -> usize {
    (max_pdu as usize).saturating_sub(PDV_HEADER).max(1)
}

/// A byte source with a per-read timeout that can be changed between reads:
/// a socket, or in tests any reader.
pub(crate) trait Wire: Read {
    /// Prepares the next read: the longest it may block.
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

impl Wire for TcpStream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        set_read_timeout(self, timeout)
    }
}

/// Prepares the socket under a [`Wire`] (plain or TLS) for its next read.
pub(crate) fn set_read_timeout(socket: &TcpStream, timeout: Duration) -> io::Result<()> {
    // A destination that leaves Nagle's algorithm on (DCMTK does,
    // unless told otherwise) writes its answer in two pieces and holds
    // the second until the first is acknowledged; Linux delays that
    // acknowledgement by up to 40 ms. Acknowledging at once makes 2,000
    // small instances take 2 s instead of 90 s. The kernel clears the
    // flag after use, so it is set before every read.
    #[cfg(target_os = "linux")]
    let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
    // A zero timeout is refused by the OS API; a millisecond is as good.
    socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
}

/// One presentation data value of a P-DATA-TF PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pdv {
    pub context_id: u8,
    pub command: bool,
    pub last: bool,
    pub data: Vec<u8>,
}

/// A PDU as far as an association user waiting for an answer cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    PData(Vec<Pdv>),
    ReleaseRq,
    ReleaseRp,
    Abort,
    /// Any other PDU type (an A-ASSOCIATE PDU, or an unknown type).
    Other(u8),
}

/// Why no PDU or command set could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The deadline passed (or a read timed out) with `got` bytes of the
    /// answer received: none means silence, some means a trickle.
    TimedOut {
        got: usize,
    },
    /// The connection closed.
    Closed,
    Io(io::Error),
    /// The PDU announced more bytes than our maximum PDU.
    TooLarge {
        declared: u32,
        max: u32,
    },
    /// The PDU's own structure is wrong.
    Malformed(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TimedOut { got } => write!(f, "timed out after {got} bytes"),
            ReadError::Closed => f.write_str("the connection closed"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::TooLarge { declared, max } => write!(
                f,
                "a PDU of {declared} bytes, more than the maximum of {max} we announced"
            ),
            ReadError::Malformed(what) => write!(f, "a malformed PDU ({what})"),
        }
    }
}

/// Reads exactly `buf.len()` bytes before `deadline`; `got` counts bytes of
/// the answer received so far, for [`ReadError::TimedOut`].
fn read_full(wire: &mut impl Wire, buf: &mut [u8], deadline: Instant, got: &mut usize) -> Result<(), ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::TimedOut { got: *got });
        }
        wire.set_timeout(left).map_err(ReadError::Io)?;
        match wire.read(&mut buf[filled..]) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => {
                filled += n;
                *got += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A socket read timeout is WouldBlock on Unix, TimedOut on Windows.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ReadError::TimedOut { got: *got });
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(())
}

/// Reads one PDU of at most `max_pdu` bytes (its length field) before
/// `deadline`.
pub(crate) fn read_pdu(
    wire: &mut impl Wire,
    max_pdu: u32,
    deadline: Instant,
    got: &mut usize,
) -> Result<Incoming, ReadError> {
    let (kind, body) = read_raw(wire, max_pdu, deadline, got)?;
    let len = body.len();
    let short = |what: &str| ReadError::Malformed(format!("{what} of {len} bytes"));
    match kind {
        0x04 => parse_pdata(&body).map(Incoming::PData),
        0x05 if len >= 4 => Ok(Incoming::ReleaseRq),
        0x06 if len >= 4 => Ok(Incoming::ReleaseRp),
        0x07 if len >= 4 => Ok(Incoming::Abort),
        0x05 => Err(short("an A-RELEASE-RQ")),
        0x06 => Err(short("an A-RELEASE-RP")),
        0x07 => Err(short("an A-ABORT")),
        other => Ok(Incoming::Other(other)),
    }
}

/// Reads the answer to an A-ASSOCIATE-RQ, all of it before `deadline`:
/// A-ASSOCIATE-AC or -RJ parsed by dicom-ul from bytes we read, A-ABORT,
/// or any other PDU as [`Incoming::Other`] in `Err`.
pub(crate) fn read_association_answer(
    wire: &mut impl Wire,
    max_pdu: u32,
    deadline: Instant,
) -> Result<Result<Pdu, Incoming>, ReadError> {
    let (kind, body) = read_raw(wire, max_pdu, deadline, &mut 0)?;
    match kind {
        0x02 | 0x03 => {
            let mut whole = Vec::with_capacity(PDU_HEADER + body.len());
            whole.extend_from_slice(&[kind, 0]);
            whole.extend_from_slice(&(body.len() as u32).to_be_bytes());
            whole.extend_from_slice(&body);
            let limit = max_pdu.clamp(dicom_ul::pdu::MINIMUM_PDU_SIZE, dicom_ul::pdu::MAXIMUM_PDU_SIZE);
            match dicom_ul::read_pdu(&whole[..], limit, true) {
                Ok(Some(pdu)) => Ok(Ok(pdu)),
                Ok(None) => Err(ReadError::Malformed("an A-ASSOCIATE answer cut short".into())),
                Err(e) => Err(ReadError::Malformed(super::association::chain(&e))),
            }
        }
        0x07 => Ok(Err(Incoming::Abort)),
        other => Ok(Err(Incoming::Other(other))),
    }
}

/// Reads one PDU's type and body, the body at most `max_pdu` bytes, before
/// `deadline`. Memory grows with the bytes that arrive, never with the
/// length the peer declared.
fn read_raw(
    wire: &mut impl Wire,
    max_pdu: u32,
    deadline: Instant,
    got: &mut usize,
) -> Result<(u8, Vec<u8>), ReadError> {
    let mut header = [0u8; PDU_HEADER];
    read_full(wire, &mut header, deadline, got)?;
    let kind = header[0];
    let declared = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    if declared > max_pdu {
        return Err(ReadError::TooLarge { declared, max: max_pdu });
    }
    let len = declared as usize;
    let mut body = Vec::with_capacity(len.min(16 * 1024));
    let mut chunk = [0u8; 16 * 1024];
    while body.len() < len {
        let n = (len - body.len()).min(chunk.len());
        read_full(wire, &mut chunk[..n], deadline, got)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((kind, body))
}

/// The PDVs of a P-DATA-TF PDU's body.
fn parse_pdata(mut body: &[u8]) -> Result<Vec<Pdv>, ReadError> {
    let mut pdvs = Vec::new();
    if body.is_empty() {
        return Err(ReadError::Malformed("a P-DATA-TF with no PDV".into()));
    }
    while !body.is_empty() {
        let Some((head, rest)) = body.split_first_chunk::<4>() else {
            return Err(ReadError::Malformed("a PDV item cut short".into()));
        };
        let item_len = u32::from_be_bytes(*head) as usize;
        if item_len < 2 || item_len > rest.len() {
            return Err(ReadError::Malformed(format!(
                "a PDV item length of {item_len} with {} bytes left",
                rest.len()
            )));
        }
        let (item, rest) = rest.split_at(item_len);
        pdvs.push(Pdv {
            context_id: item[0],
            command: item[1] & 0x01 != 0,
            last: item[1] & 0x02 != 0,
            data: item[2..].to_vec(),
        });
        body = rest;
    }
    Ok(pdvs)
}

/// Why no response command set was read.
#[derive(Debug)]
pub(crate) enum ReceiveError {
    Read(ReadError),
    /// A data set fragment came where a command was expected.
    DataSet,
    WrongContext {
        got: u8,
    },
    /// The command set grew past [`MAX_COMMAND`] without its last fragment.
    Endless {
        got: usize,
    },
    Aborted,
    /// A PDU other than P-DATA-TF or A-ABORT (its name).
    Unexpected(&'static str),
    Decode(DecodeError),
}

/// Reads one whole command set on `context_id`, all of it before
/// `deadline`, in PDUs of at most `max_pdu`.
pub(crate) fn read_command(
    wire: &mut impl Wire,
    context_id: u8,
    max_pdu: u32,
    deadline: Instant,
) -> Result<Command, ReceiveError> {
    let mut bytes = Vec::new();
    let mut got = 0;
    loop {
        let pdvs = match read_pdu(wire, max_pdu, deadline, &mut got).map_err(ReceiveError::Read)? {
            Incoming::PData(pdvs) => pdvs,
            Incoming::Abort => return Err(ReceiveError::Aborted),
            other => return Err(ReceiveError::Unexpected(name(&other))),
        };
        for pdv in pdvs {
            if !pdv.command {
                return Err(ReceiveError::DataSet);
            }
            if pdv.context_id != context_id {
                return Err(ReceiveError::WrongContext { got: pdv.context_id });
            }
            if bytes.len() + pdv.data.len() > MAX_COMMAND {
                return Err(ReceiveError::Endless {
                    got: bytes.len() + pdv.data.len(),
                });
            }
            bytes.extend_from_slice(&pdv.data);
            if pdv.last {
                return Command::decode(&bytes).map_err(ReceiveError::Decode);
            }
        }
    }
}

/// A PDU's name, for messages.
pub(crate) fn name(pdu: &Incoming) -> &'static str {
    match pdu {
        Incoming::PData(_) => "P-DATA-TF",
        Incoming::ReleaseRq => "A-RELEASE-RQ",
        Incoming::ReleaseRp => "A-RELEASE-RP",
        Incoming::Abort => "A-ABORT",
        Incoming::Other(0x01) => "A-ASSOCIATE-RQ",
        Incoming::Other(0x02) => "A-ASSOCIATE-AC",
        Incoming::Other(0x03) => "A-ASSOCIATE-RJ",
        Incoming::Other(_) => "unknown",
    }
}

/// A-ABORT from the service user, encoded here so that sending it depends
/// on nothing the destination announced.
pub(crate) const ABORT_PDU: [u8; 10] = [0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse::command::{Command, field};
    use crate::testalloc::measure;
    use proptest::prelude::*;

    /// A reader that ignores timeouts (it never blocks).
    struct Bytes<'a>(&'a [u8]);

    impl Read for Bytes<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Wire for Bytes<'_> {
        fn set_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// One P-DATA-TF PDU with one PDV (`control`: bit 0 command, bit 1 last).
    fn pdata(ctx: u8, control: u8, data: &[u8]) -> Vec<u8> {
        let mut pdu = vec![0x04, 0];
        pdu.extend_from_slice(&((data.len() + 6) as u32).to_be_bytes());
        pdu.extend_from_slice(&((data.len() + 2) as u32).to_be_bytes());
        pdu.push(ctx);
        pdu.push(control);
        pdu.extend_from_slice(data);
        pdu
    }

    /// P-DATA-TF PDUs carrying `data` as command fragments of at most
    /// `piece` bytes on context `ctx`, the last one marked last.
    fn fragments(data: &[u8], ctx: u8, piece: usize) -> Vec<u8> {
        let pieces: Vec<&[u8]> = data.chunks(piece.max(1)).collect();
        let n = pieces.len();
        pieces
            .into_iter()
            .enumerate()
            .flat_map(|(i, p)| pdata(ctx, if i + 1 == n { 0x03 } else { 0x01 }, p))
            .collect()
    }

    fn response(message_id: u16, status: u16, comment: Option<String>) -> Command {
        Command {
            command_field: field::C_STORE_RSP,
            affected_sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.7".into()),
            message_id_being_responded_to: Some(message_id),
            data_set_type: crate::dimse::command::NO_DATA_SET,
            status: Some(status),
            error_comment: comment,
            affected_sop_instance_uid: Some("1.2.3.4".into()),
            ..Command::default()
        }
    }

    #[test]
    fn announced_sizes_never_underflow() {
        let own = 16_384;
        assert_eq!(send_max_pdu(0, own), Ok(own), "0 means no limit: ours applies");
        for tiny in [1, 5, 6, 7, 100, MIN_PEER_PDU - 1] {
            assert_eq!(send_max_pdu(tiny, own), Err(tiny));
        }
        assert_eq!(send_max_pdu(MIN_PEER_PDU, own), Ok(MIN_PEER_PDU));
        assert_eq!(send_max_pdu(u32::MAX, own), Ok(own));
        assert_eq!(pdv_capacity(0), 1);
        assert_eq!(pdv_capacity(1), 1);
        assert_eq!(pdv_capacity(5), 1);
        assert_eq!(pdv_capacity(6), 1);
        assert_eq!(pdv_capacity(7), 1);
        assert_eq!(pdv_capacity(8), 2);
        assert_eq!(pdv_capacity(16_384), 16_378);
        assert_eq!(pdv_capacity(u32::MAX), u32::MAX as usize - 6);
    }

    #[test]
    fn a_declared_length_is_not_a_reservation() {
        let mut wire = vec![0x04, 0, 0xff, 0xff, 0xff, 0xff];
        wire.extend_from_slice(&[0; 64]);
        let mut got = 0;
        let e = read_pdu(&mut Bytes(&wire), 16_384, far(), &mut got).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::TooLarge {
                    declared: u32::MAX,
                    max: 16_384
                }
            ),
            "{e}"
        );

        // Within our maximum, but the bytes stop: memory follows what came.
        let mut wire = vec![0x04, 0, 0x00, 0x40, 0x00, 0x00];
        wire.extend_from_slice(&[0; 100]);
        let (e, allocated) = measure(|| read_pdu(&mut Bytes(&wire), 4 * 1024 * 1024, far(), &mut got).unwrap_err());
        assert!(matches!(e, ReadError::Closed), "{e}");
        assert!(allocated.largest <= 16 * 1024, "{allocated:?}");
    }

    #[test]
    fn endless_command_fragments_stop_at_the_cap() {
        let wire: Vec<u8> = (0..100).flat_map(|_| pdata(1, 0x01, &[0u8; 4000])).collect();
        let e = read_command(&mut Bytes(&wire), 1, 16_384, far()).unwrap_err();
        assert!(matches!(e, ReceiveError::Endless { got } if got > MAX_COMMAND), "{e:?}");
    }

    #[test]
    fn a_passed_deadline_is_a_timeout_with_what_came() {
        let rsp = response(1, 0, None).encode();
        let wire = fragments(&rsp, 1, 16);
        let past = Instant::now() - Duration::from_millis(1);
        match read_command(&mut Bytes(&wire), 1, 16_384, past) {
            Err(ReceiveError::Read(ReadError::TimedOut { got: 0 })) => {}
            other => panic!("{other:?}"),
        }
    }

    fn mutate(mut wire: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        for &(at, op, value) in edits {
            if wire.is_empty() {
                break;
            }
            let at = at % wire.len();
            match op % 4 {
                0 => wire[at] ^= value | 1,
                1 => wire.truncate(at),
                2 => wire.insert(at, value),
                _ => {
                    wire.remove(at);
                }
            }
        }
        wire
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A response cut into random fragments and PDUs arrives exactly.
        #[test]
        fn fragmented_responses_arrive_whole(
            id in any::<u16>(),
            status in any::<u16>(),
            comment in proptest::option::of("[ -~]{0,300}"),
            piece in 1usize..400,
        ) {
            let comment = comment.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
            let rsp = response(id, status, comment);
            let wire = fragments(&rsp.encode(), 3, piece);
            let got = read_command(&mut Bytes(&wire), 3, 16_384, far());
            prop_assert_eq!(got.unwrap(), rsp);
        }

        /// Mutated or random bytes give the command sent or an error, never
        /// a panic, and no allocation beyond our maximum PDU.
        #[test]
        fn hostile_bytes_give_the_command_or_an_error(
            piece in 1usize..200,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6),
            noise in proptest::collection::vec(any::<u8>(), 0..300),
            random in any::<bool>(),
            max_pdu in prop_oneof![Just(4096u32), Just(16_384), Just(1024 * 1024)],
        ) {
            let rsp = response(7, 0xB000, Some("coerced".into()));
            let wire = if random {
                noise
            } else {
                mutate(fragments(&rsp.encode(), 1, piece), &edits)
            };
            let (got, allocated) = measure(|| read_command(&mut Bytes(&wire), 1, max_pdu, far()));
            let largest = allocated.largest;
            prop_assert!(largest <= 2 * (MAX_COMMAND + 16 * 1024), "allocated {} bytes", largest);
            if let Ok(cmd) = got {
                // An edit may change a value and still decode: then it is a
                // well-formed command, and if nothing was edited, ours.
                if edits.is_empty() && !random {
                    prop_assert_eq!(cmd, rsp);
                }
            }
        }
    }
}
