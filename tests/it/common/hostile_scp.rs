//! A DICOM destination that breaks the protocol in ways pynetdicom will not: raw PDUs on a
//! socket, answering the association with a chosen maximum PDU length (0, 1, 5...), then either
//! answering properly, or sending command fragments that never end, or trickling its answer a
//! byte at a time, or never answering at all, or trickling even its association answer. It runs in threads of the test process on
//! 127.0.0.1, one per association, and stops when dropped.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the destination does once the association is up.
#[derive(Debug, Clone, Copy)]
pub enum Misbehaviour {
    /// Accepts with this maximum PDU length, then answers every request with success.
    MaxPdu(u32),
    /// Answers each C-STORE with command fragments of 4000 bytes, none marked last, until the
    /// connection closes.
    EndlessCommand,
    /// Answers each C-STORE with a P-DATA-TF PDU that announces 16000 bytes, sent one byte per
    /// period.
    Trickle(Duration),
    /// Reads each C-STORE and never answers it.
    Stall,
    /// Sends its A-ASSOCIATE-AC one byte per period, then answers properly.
    TrickleAssociation(Duration),
}

/// A running hostile destination.
pub struct HostileScp {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl HostileScp {
    pub fn start(how: Misbehaviour) -> HostileScp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("make the listener non-blocking");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, r) = (Arc::clone(&stop), Arc::clone(&requests));
        let thread = std::thread::spawn(move || serve(listener, how, s, r));
        HostileScp {
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// `AE@127.0.0.1:PORT`, as `retriever --to` takes it.
    pub fn address(&self) -> String {
        format!("HOSTILE@127.0.0.1:{}", self.port)
    }

    /// C-STORE requests received in full (command and data set) so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HostileScp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How often the server threads look at the stop flag.
const TICK: Duration = Duration::from_millis(50);

fn serve(listener: TcpListener, how: Misbehaviour, stop: Arc<AtomicBool>, requests: Arc<AtomicUsize>) {
    let mut handlers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                let (s, r) = (Arc::clone(&stop), Arc::clone(&requests));
                handlers.push(std::thread::spawn(move || {
                    let _ = association(conn, how, &s, &r);
                }));
            }
            // Nothing to accept: the listener is non-blocking so that the stop flag is seen.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(TICK),
            Err(_) => break,
        }
    }
    for h in handlers {
        let _ = h.join();
    }
}

/// Reads exactly `buf.len()` bytes, giving up when told to stop.
fn read_full(conn: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        if stop.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        match conn.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One PDU: its type and body. The test's peer is trusted, within 1 MiB.
fn read_pdu(conn: &mut TcpStream, stop: &AtomicBool) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 6];
    read_full(conn, &mut header, stop)?;
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if len > 1 << 20 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut body = vec![0u8; len];
    read_full(conn, &mut body, stop)?;
    Ok((header[0], body))
}

fn association(mut conn: TcpStream, how: Misbehaviour, stop: &AtomicBool, requests: &AtomicUsize) -> io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(TICK))?;
    let (kind, rq) = read_pdu(&mut conn, stop)?;
    if kind != 0x01 || rq.len() < 68 {
        return Ok(());
    }
    let max_pdu = match how {
        Misbehaviour::MaxPdu(n) => n,
        _ => 16_384,
    };
    let ac = associate_ac(&rq, max_pdu);
    if let Misbehaviour::TrickleAssociation(period) = how {
        for byte in ac {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            conn.write_all(&[byte])?;
            std::thread::sleep(period);
        }
    } else {
        conn.write_all(&ac)?;
    }

    let mut command = Vec::new();
    loop {
        let (kind, body) = read_pdu(&mut conn, stop)?;
        match kind {
            0x04 => {}
            // A-RELEASE-RQ: A-RELEASE-RP, then the peer closes.
            0x05 => {
                conn.write_all(&[0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0])?;
                continue;
            }
            _ => return Ok(()),
        }
        let mut pos = 0;
        let mut done = None;
        while pos + 6 <= body.len() {
            let item = u32::from_be_bytes(body[pos..pos + 4].try_into().unwrap()) as usize;
            let (ctx, control) = (body[pos + 4], body[pos + 5]);
            let data = &body[pos + 6..(pos + 4 + item).min(body.len())];
            pos += 4 + item;
            if control & 0x01 != 0 {
                command.extend_from_slice(data);
                // The last command fragment ends a request without a data set.
                if control & 0x02 != 0 && element(&command, 0x0800).is_some_and(|v| v == [0x01, 0x01]) {
                    done = Some(ctx);
                }
            } else if control & 0x02 != 0 {
                done = Some(ctx);
            }
        }
        let Some(ctx) = done else { continue };
        let request = std::mem::take(&mut command);
        let field = element(&request, 0x0100).unwrap_or_default();
        if field == [0x01, 0x00] {
            requests.fetch_add(1, Ordering::SeqCst);
        }
        match how {
            Misbehaviour::MaxPdu(_) | Misbehaviour::TrickleAssociation(_) => conn.write_all(&success(&request, ctx))?,
            Misbehaviour::EndlessCommand => {
                let mut pdu = vec![0x04, 0, 0, 0, 0x0f, 0xa6, 0, 0, 0x0f, 0xa2, ctx, 0x01];
                pdu.resize(12 + 4000, 0);
                while !stop.load(Ordering::SeqCst) {
                    conn.write_all(&pdu)?;
                }
                return Ok(());
            }
            Misbehaviour::Trickle(period) => {
                let mut pdu = vec![0x04, 0, 0, 0, 0x3e, 0x80, 0, 0, 0x3e, 0x7c, ctx, 0x03];
                pdu.resize(6 + 16_000, 0);
                for byte in pdu {
                    if stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    conn.write_all(&[byte])?;
                    std::thread::sleep(period);
                }
                return Ok(());
            }
            Misbehaviour::Stall => {}
        }
    }
}

/// The A-ASSOCIATE-AC for an A-ASSOCIATE-RQ body: every presentation context accepted in its
/// first transfer syntax, and our maximum PDU length.
fn associate_ac(rq: &[u8], max_pdu: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0, 1, 0, 0]);
    body.extend_from_slice(&rq[4..36]);
    body.extend_from_slice(&[0; 32]);
    item(&mut body, 0x10, b"1.2.840.10008.3.1.1.1");
    let mut pos = 68;
    while pos + 4 <= rq.len() {
        let kind = rq[pos];
        let len = u16::from_be_bytes([rq[pos + 2], rq[pos + 3]]) as usize;
        let value = &rq[pos + 4..(pos + 4 + len).min(rq.len())];
        pos += 4 + len;
        if kind != 0x20 || value.len() < 4 {
            continue;
        }
        let id = value[0];
        let mut sub = 4;
        let mut syntax = None;
        while sub + 4 <= value.len() {
            let k = value[sub];
            let l = u16::from_be_bytes([value[sub + 2], value[sub + 3]]) as usize;
            if k == 0x40 && syntax.is_none() {
                syntax = value.get(sub + 4..sub + 4 + l);
            }
            sub += 4 + l;
        }
        let mut pc = vec![id, 0, 0, 0];
        item(&mut pc, 0x40, syntax.unwrap_or(b"1.2.840.10008.1.2"));
        item(&mut body, 0x21, &pc);
    }
    let mut user = Vec::new();
    item(&mut user, 0x51, &max_pdu.to_be_bytes());
    item(&mut user, 0x52, b"1.2.826.0.1.3680043.8.498.99");
    item(&mut body, 0x50, &user);
    let mut pdu = vec![0x02, 0];
    pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pdu.extend_from_slice(&body);
    pdu
}

fn item(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.extend_from_slice(&[kind, 0]);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// The value of command element (0000,`element`).
fn element(command: &[u8], element: u16) -> Option<Vec<u8>> {
    let mut pos = 0;
    while pos + 8 <= command.len() {
        let e = u16::from_le_bytes([command[pos + 2], command[pos + 3]]);
        let len = u32::from_le_bytes(command[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let value = command.get(pos + 8..pos + 8 + len)?;
        if e == element {
            return Some(value.to_vec());
        }
        pos += 8 + len;
    }
    None
}

/// A success response to a C-STORE-RQ or C-ECHO-RQ, as one P-DATA-TF PDU.
fn success(request: &[u8], ctx: u8) -> Vec<u8> {
    let field = element(request, 0x0100).unwrap_or_default();
    let response_field: u16 = if field == [0x30, 0x00] { 0x8030 } else { 0x8001 };
    let mut elements = Vec::new();
    let mut put = |e: u16, v: &[u8]| {
        elements.extend_from_slice(&0u16.to_le_bytes());
        elements.extend_from_slice(&e.to_le_bytes());
        elements.extend_from_slice(&(v.len() as u32).to_le_bytes());
        elements.extend_from_slice(v);
    };
    put(0x0002, &element(request, 0x0002).unwrap_or_default());
    put(0x0100, &response_field.to_le_bytes());
    put(0x0120, &element(request, 0x0110).unwrap_or_default());
    put(0x0800, &0x0101u16.to_le_bytes());
    put(0x0900, &0u16.to_le_bytes());
    if let Some(sop) = element(request, 0x1000) {
        put(0x1000, &sop);
    }
    let mut command = Vec::new();
    command.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    command.extend_from_slice(&(elements.len() as u32).to_le_bytes());
    command.extend_from_slice(&elements);
    let mut pdu = vec![0x04, 0];
    pdu.extend_from_slice(&((command.len() + 6) as u32).to_be_bytes());
    pdu.extend_from_slice(&((command.len() + 2) as u32).to_be_bytes());
    pdu.extend_from_slice(&[ctx, 0x03]);
    pdu.extend_from_slice(&command);
    pdu
}
