//! DICOM TLS to the destination (PS3.15 Annex B, with the BCP 195 profile:
//! TLS 1.2 or 1.3 and rustls's strong cipher suites only): the client
//! configuration built once from the settings (the system's roots plus the
//! CAs given, an optional client certificate), the handshake run under our
//! deadline, and the stream the association driver owns afterwards.
//!
//! The stream under an association is plain TCP or dicom-ul's TLS stream
//! type (rustls over our `TcpStream`). Its reads do not go through rustls's
//! own `Read` (which loops over socket reads until a whole record came, so a
//! destination trickling bytes could hold it past any deadline): each socket
//! read here is bounded by what is left of the caller's deadline. A failed
//! handshake is classified ([`TlsFailure`]) so that the user is told which
//! check failed and what to do; there is never a fallback to plain TCP.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dicom_ul::association::client::TlsStream;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, SignatureScheme};

use super::error::TlsFailure;

/// The TLS settings as given: files and the name to verify.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates (PEM, one or more) trusted besides the system's.
    pub ca: Option<PathBuf>,
    /// Our client certificate (PEM, the chain from ours up), for a
    /// destination that asks for one; with [`TlsOptions::key`].
    pub cert: Option<PathBuf>,
    /// The private key of [`TlsOptions::cert`] (PEM).
    pub key: Option<PathBuf>,
    /// The name the destination's certificate must be for; else the host
    /// of the destination (an IP address is checked as an IP SAN).
    pub server_name: Option<String>,
}

/// A checked TLS client configuration for one destination, built once per
/// run (the system's roots are read here, not per association).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    key: Option<Arc<CertifiedKey>>,
    server_name: ServerName<'static>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field("client_certificate", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a TLS setting cannot be used; the message names the file.
#[derive(Debug)]
pub struct TlsSetupError(String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

impl ClientTls {
    /// Reads the files and builds the configuration; `host` is the
    /// destination's host, the name verified unless another is given.
    pub fn new(opts: &TlsOptions, host: &str) -> Result<ClientTls, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let name = opts.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
            TlsSetupError(format!(
                "`{name}` is not a host name or IP address a TLS certificate can be checked against; \
                 give the name the destination's certificate is for with `--to-server-name`"
            ))
        })?;
        let mut roots = crate::trust::system_roots();
        if let Some(path) = &opts.ca {
            for cert in read_certificates(path, "CA file")? {
                roots.add(cert).map_err(|e| {
                    TlsSetupError(format!(
                        "the CA file `{}` holds a certificate that cannot be trusted as a CA ({e})",
                        path.display()
                    ))
                })?;
            }
        }
        let key = match (&opts.cert, &opts.key) {
            (Some(cert), Some(key)) => Some(Arc::new(client_key(cert, key, &provider)?)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsSetupError(
                    "a client certificate needs its key: give it with `--to-key`".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(TlsSetupError(
                    "a client key needs its certificate: give it with `--to-cert`".into(),
                ));
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(format!("TLS cannot be set up here ({e})")))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(ClientKey {
                key: key.clone(),
                asked: Arc::default(),
            }));
        Ok(ClientTls {
            config: Arc::new(config),
            key,
            server_name,
        })
    }

    /// The name the destination's certificate is checked against.
    pub fn server_name(&self) -> String {
        self.server_name.to_str().into_owned()
    }
}

/// The certificates of a PEM file, at least one.
fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let unreadable =
        |e: &dyn fmt::Display| TlsSetupError(format!("failed to read the {what} `{}`: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(TlsSetupError(format!(
            "the {what} `{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// Our client certificate chain and its key, checked to belong together.
fn client_key(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let chain = read_certificates(cert, "client certificate")?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        TlsSetupError(format!(
            "failed to read the client key `{}`: {e} (a PEM private key, unencrypted)",
            key.display()
        ))
    })?;
    CertifiedKey::from_der(chain, der, provider).map_err(|e| {
        TlsSetupError(format!(
            "the client key `{}` cannot be used with the certificate `{}` ({e})",
            key.display(),
            cert.display()
        ))
    })
}

/// Offers our certificate when the destination asks for one, and notes that
/// it asked: an empty answer then explains its refusal.
#[derive(Debug)]
struct ClientKey {
    key: Option<Arc<CertifiedKey>>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for ClientKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// What a connection knows to explain a refusal.
#[derive(Debug, Clone)]
struct Context {
    /// The destination asked for a client certificate.
    asked: Arc<AtomicBool>,
    /// We have one to give.
    have_cert: bool,
}

impl Context {
    fn classify(&self, e: &rustls::Error, received: usize) -> Option<TlsFailure> {
        classify(e, self.asked.load(Ordering::SeqCst), self.have_cert, received)
    }
}

/// Why a handshake did not give a TLS stream.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// A check failed or the destination refused: permanent until fixed.
    Failed(TlsFailure),
    /// No answer within the deadline (`got`: bytes of it that came).
    TimedOut { got: usize },
    /// The connection broke (not at our first message: see `NotTls`).
    Io(io::Error),
}

/// Runs the TLS handshake on `tcp`, all of it before `deadline`.
pub(crate) fn handshake(tls: &ClientTls, tcp: TcpStream, deadline: Instant) -> Result<Stream, HandshakeError> {
    let context = Context {
        asked: Arc::default(),
        have_cert: tls.key.is_some(),
    };
    // Per connection, so that the destination's asking is noted for this
    // handshake alone.
    let mut config = ClientConfig::clone(&tls.config);
    config.client_auth_cert_resolver = Arc::new(ClientKey {
        key: tls.key.clone(),
        asked: context.asked.clone(),
    });
    let conn = ClientConnection::new(Arc::new(config), tls.server_name.clone())
        .map_err(|e| HandshakeError::Failed(TlsFailure::Handshake { detail: e.to_string() }))?;
    let mut stream = TlsStream::new(conn, tcp);
    let mut received = 0;
    let result = drive_handshake(&mut stream, &context, deadline, &mut received);
    if let Err(e) = result {
        // Tell the destination why (an alert rustls queued), best effort.
        let _ = stream.sock.set_write_timeout(Some(Duration::from_millis(200)));
        while stream.conn.wants_write() && stream.conn.write_tls(&mut stream.sock).is_ok_and(|n| n > 0) {}
        let _ = stream.sock.shutdown(Shutdown::Both);
        let asked = context.asked.load(Ordering::SeqCst);
        return Err(match e {
            HandshakeError::Io(io) if received == 0 && is_closed(&io) => HandshakeError::Failed(TlsFailure::NotTls {
                detail: "it closed the connection at our TLS hello".into(),
            }),
            // Hung up without an alert after asking for our certificate.
            HandshakeError::Io(io) if asked && is_closed(&io) => HandshakeError::Failed(match context.have_cert {
                false => TlsFailure::CertificateRequired,
                true => TlsFailure::CertificateRefused {
                    how: "it closed the connection".into(),
                },
            }),
            other => other,
        });
    }
    Ok(Stream::Tls(Box::new(TlsConn {
        inner: stream,
        deadline: None,
        context,
    })))
}

fn drive_handshake(
    stream: &mut TlsStream,
    context: &Context,
    deadline: Instant,
    received: &mut usize,
) -> Result<(), HandshakeError> {
    let TlsStream { conn, sock } = stream;
    loop {
        while conn.wants_write() {
            let left = left(deadline).ok_or(HandshakeError::TimedOut { got: *received })?;
            sock.set_write_timeout(Some(left)).map_err(HandshakeError::Io)?;
            match conn.write_tls(sock) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(HandshakeError::TimedOut { got: *received }),
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        let left = left(deadline).ok_or(HandshakeError::TimedOut { got: *received })?;
        sock.set_read_timeout(Some(left)).map_err(HandshakeError::Io)?;
        match conn.read_tls(sock) {
            Ok(0) => {
                // Whatever came last may be an alert that says why.
                if let Err(e) = conn.process_new_packets() {
                    return Err(failed(context, &e, *received));
                }
                return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => *received += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(HandshakeError::TimedOut { got: *received }),
            Err(e) => return Err(HandshakeError::Io(e)),
        }
        if let Err(e) = conn.process_new_packets() {
            return Err(failed(context, &e, *received));
        }
    }
}

fn failed(context: &Context, e: &rustls::Error, received: usize) -> HandshakeError {
    HandshakeError::Failed(
        context
            .classify(e, received)
            .unwrap_or_else(|| TlsFailure::Handshake { detail: e.to_string() }),
    )
}

/// What is left before `deadline`, or `None` once it passed.
fn left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

/// A socket read or write timeout: WouldBlock on Unix, TimedOut on Windows.
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// Which check failed, from rustls's error: `asked` when the destination
/// asked for a client certificate, `have_cert` when we have one, `received`
/// the bytes that came from it. `None` for a failure that is not about
/// trust or TLS support (left to be reported as it is).
pub(crate) fn classify(e: &rustls::Error, asked: bool, have_cert: bool, received: usize) -> Option<TlsFailure> {
    use rustls::Error;
    Some(match e {
        Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => TlsFailure::UnknownCa,
            CertificateError::NotValidForName => TlsFailure::WrongName {
                expected: None,
                presented: Vec::new(),
            },
            CertificateError::NotValidForNameContext { expected, presented } => TlsFailure::WrongName {
                expected: Some(expected.to_str().into_owned()),
                // The names are the destination's to choose: a few, printable.
                presented: presented
                    .iter()
                    .take(5)
                    .map(|n| crate::text::escape(name_of(n)))
                    .collect(),
            },
            CertificateError::Expired => TlsFailure::Expired {
                not_after: None,
                now: None,
            },
            CertificateError::ExpiredContext { time, not_after } => TlsFailure::Expired {
                not_after: Some(system_time(*not_after)),
                now: Some(system_time(*time)),
            },
            CertificateError::NotValidYet => TlsFailure::NotYetValid {
                not_before: None,
                now: None,
            },
            CertificateError::NotValidYetContext { time, not_before } => TlsFailure::NotYetValid {
                not_before: Some(system_time(*not_before)),
                now: Some(system_time(*time)),
            },
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                TlsFailure::BadCertificate {
                    detail: "it is not made for a TLS server (its extended key usage)".into(),
                }
            }
            CertificateError::Revoked => TlsFailure::BadCertificate {
                detail: "it is revoked".into(),
            },
            CertificateError::BadSignature => TlsFailure::BadCertificate {
                detail: "its signature is wrong".into(),
            },
            other => TlsFailure::BadCertificate {
                detail: format!("{other:?}"),
            },
        },
        Error::AlertReceived(alert) => {
            let about_ours = matches!(
                alert,
                AlertDescription::BadCertificate
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::UnknownCA
                    | AlertDescription::AccessDenied
                    | AlertDescription::DecryptError
                    | AlertDescription::HandshakeFailure
                    | AlertDescription::CertificateRequired
            );
            match alert {
                AlertDescription::CertificateRequired if !have_cert => TlsFailure::CertificateRequired,
                _ if about_ours && asked && !have_cert => TlsFailure::CertificateRequired,
                _ if about_ours && asked => TlsFailure::CertificateRefused {
                    how: format!("TLS alert `{}`", alert_name(*alert)),
                },
                _ => TlsFailure::Handshake {
                    detail: format!("it sent the alert `{}`", alert_name(*alert)),
                },
            }
        }
        // The first bytes that came are not TLS: a DICOM peer answering our
        // hello as if it were a PDU, or some other service.
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } if received <= 512 => TlsFailure::NotTls {
            detail: "its answer to our TLS hello is not TLS".into(),
        },
        Error::PeerIncompatible(_) | Error::NoCertificatesPresented => TlsFailure::Handshake { detail: e.to_string() },
        _ => return None,
    })
}

/// `127.0.0.1` of webpki's `IpAddress(127.0.0.1)`, `pacs.example.org` of
/// `DnsName("pacs.example.org")`; anything else as it is.
fn name_of(presented: &str) -> &str {
    for kind in ["DnsName(\"", "IpAddress(", "UniformResourceIdentifier(\""] {
        if let Some(rest) = presented.strip_prefix(kind) {
            return rest.trim_end_matches(')').trim_end_matches('"');
        }
    }
    presented
}

/// An alert's name as TLS writes it (`bad_certificate`).
fn alert_name(alert: AlertDescription) -> String {
    let mut out = String::new();
    let mut previous_upper = true;
    for c in format!("{alert:?}").chars() {
        let upper = c.is_ascii_uppercase();
        // `UnknownCA`: a word starts at an upper-case letter after a lower-case one.
        if upper && !previous_upper {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        previous_upper = upper;
    }
    out
}

fn system_time(t: UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// The stream under an association: plain TCP, or TLS over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

/// A TLS connection after its handshake.
pub(crate) struct TlsConn {
    inner: TlsStream,
    /// Set by [`super::pdu::Wire::set_timeout`]: no socket read goes past it.
    deadline: Option<Instant>,
    context: Context,
}

impl Stream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.inner.sock,
        }
    }

    /// The idle timeout of each socket read and write from now on (a
    /// deadline set for reads is dropped).
    pub(crate) fn set_timeouts(&mut self, read: Duration, write: Duration) -> io::Result<()> {
        if let Stream::Tls(t) = self {
            t.deadline = None;
        }
        self.tcp().set_read_timeout(Some(read))?;
        self.tcp().set_write_timeout(Some(write))
    }

    /// Closes the connection (after TLS's close_notify, best effort: a
    /// destination that stopped reading does not hold us).
    pub(crate) fn close(&mut self) {
        if let Stream::Tls(t) = self {
            let _ = t.inner.sock.set_write_timeout(Some(Duration::from_millis(200)));
            t.inner.conn.send_close_notify();
            let TlsStream { conn, sock } = &mut t.inner;
            while conn.wants_write() && conn.write_tls(sock).is_ok_and(|n| n > 0) {}
        }
        let _ = self.tcp().shutdown(Shutdown::Both);
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl TlsConn {
    /// Plaintext that came, or one socket read bounded by the deadline
    /// and again; what rustls refuses ends the connection.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let TlsStream { conn, sock } = &mut self.inner;
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: DICOM frames its own
                // messages, so a cut is seen there; to the reader it is an
                // end like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if let Some(deadline) = self.deadline {
                let left = left(deadline).ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))?;
                sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            }
            // At the end (0 bytes) the reader says so next time round:
            // Ok(0), or the cut that is mapped to it above.
            conn.read_tls(sock)?;
            let processed = conn.process_new_packets();
            // An alert or a key update may want an answer.
            while conn.wants_write() && conn.write_tls(sock)? > 0 {}
            if let Err(e) = processed {
                return Err(match self.context.classify(&e, usize::MAX) {
                    Some(failure) => io::Error::other(failure),
                    None => io::Error::new(io::ErrorKind::InvalidData, e),
                });
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(data),
            Stream::Tls(t) => {
                let TlsStream { conn, sock } = &mut t.inner;
                let n = conn.writer().write(data)?;
                // Out now, so that a failure is this write's, not a later one's.
                while conn.wants_write() {
                    conn.write_tls(sock)?;
                }
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => {
                let TlsStream { conn, sock } = &mut t.inner;
                while conn.wants_write() {
                    conn.write_tls(sock)?;
                }
                Ok(())
            }
        }
    }
}

impl super::pdu::Wire for Stream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        if let Stream::Tls(t) = self {
            t.deadline = Some(Instant::now() + timeout);
        }
        super::pdu::set_read_timeout(self.tcp(), timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_checks_are_told_apart() {
        let e = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(
            classify(&e(CertificateError::UnknownIssuer), false, false, 900),
            Some(TlsFailure::UnknownCa)
        );
        let wrong = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("pacs.example.org").unwrap(),
            presented: vec![
                "DnsName(\"other.example.org\")".into(),
                "IpAddress(10.0.0.5)".into(),
                "DnsName(\"\u{1b}]0;x\")".into(),
            ],
        };
        assert_eq!(
            classify(&e(wrong), false, false, 900),
            Some(TlsFailure::WrongName {
                expected: Some("pacs.example.org".into()),
                presented: vec!["other.example.org".into(), "10.0.0.5".into(), "\\x1b]0;x".into()],
            })
        );
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
        };
        assert!(matches!(
            classify(&e(expired), false, false, 900),
            Some(TlsFailure::Expired { not_after: Some(t), .. })
                if t == SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        ));
        assert!(matches!(
            classify(&e(CertificateError::NotValidYet), false, false, 900),
            Some(TlsFailure::NotYetValid { not_before: None, .. })
        ));
        assert!(matches!(
            classify(&e(CertificateError::BadSignature), false, false, 900),
            Some(TlsFailure::BadCertificate { .. })
        ));
    }

    #[test]
    fn a_refusal_of_our_certificate_is_told_from_a_missing_one() {
        let alert = |a| rustls::Error::AlertReceived(a);
        // Asked, and we had none to give.
        assert_eq!(
            classify(&alert(AlertDescription::CertificateRequired), true, false, 900),
            Some(TlsFailure::CertificateRequired)
        );
        assert_eq!(
            classify(&alert(AlertDescription::HandshakeFailure), true, false, 900),
            Some(TlsFailure::CertificateRequired)
        );
        // Asked, given, refused.
        assert_eq!(
            classify(&alert(AlertDescription::UnknownCA), true, true, 900),
            Some(TlsFailure::CertificateRefused {
                how: "TLS alert `unknown_ca`".into()
            })
        );
        assert_eq!(
            classify(&alert(AlertDescription::BadCertificate), true, true, 900),
            Some(TlsFailure::CertificateRefused {
                how: "TLS alert `bad_certificate`".into()
            })
        );
        // Never asked: not about our certificate.
        assert_eq!(
            classify(&alert(AlertDescription::HandshakeFailure), false, false, 900),
            Some(TlsFailure::Handshake {
                detail: "it sent the alert `handshake_failure`".into()
            })
        );
        assert_eq!(
            classify(&alert(AlertDescription::ProtocolVersion), false, true, 900),
            Some(TlsFailure::Handshake {
                detail: "it sent the alert `protocol_version`".into()
            })
        );
    }

    #[test]
    fn an_answer_that_is_not_tls_says_so() {
        let e = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(matches!(
            classify(&e, false, false, 10),
            Some(TlsFailure::NotTls { .. })
        ));
        // Deep into a session, a bad record is a broken connection.
        assert_eq!(classify(&e, false, false, usize::MAX), None);
        assert_eq!(classify(&rustls::Error::DecryptError, false, false, 10), None);
    }

    #[test]
    fn settings_are_checked_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let opts = |ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>| TlsOptions {
            ca,
            cert,
            key,
            server_name: None,
        };
        let e = ClientTls::new(&opts(Some(empty.clone()), None, None), "127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        assert!(e.to_string().contains(&format!("`{}`", empty.display())), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = ClientTls::new(&opts(Some(missing.clone()), None, None), "127.0.0.1").unwrap_err();
        assert!(e.to_string().starts_with("failed to read the CA file"), "{e}");
        let e = ClientTls::new(&opts(None, Some(empty.clone()), None), "h").unwrap_err();
        assert!(e.to_string().contains("`--to-key`"), "{e}");
        let e = ClientTls::new(&opts(None, None, Some(empty)), "h").unwrap_err();
        assert!(e.to_string().contains("`--to-cert`"), "{e}");
        let tls = ClientTls::new(&opts(None, None, None), "127.0.0.1").unwrap();
        assert_eq!(tls.server_name(), "127.0.0.1");
        let e = ClientTls::new(&opts(None, None, None), "bad name!").unwrap_err();
        assert!(e.to_string().contains("`--to-server-name`"), "{e}");
    }

    /// A destination that accepts the connection and then says nothing, or trickles bytes
    /// that never make a TLS record, does not hold the handshake past its deadline.
    #[test]
    fn the_handshake_is_bounded_by_its_deadline() {
        use std::net::TcpListener;
        let tls = ClientTls::new(&TlsOptions::default(), "127.0.0.1").unwrap();
        for trickle in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // A record header announcing 16 KiB, then a byte every 50 ms until the client
            // hangs up; at most 200 (10 s), so that a handshake without a deadline ends too
            // and is seen to have taken them all.
            let peer = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut bytes = vec![0x16, 0x03, 0x03, 0x40, 0x00];
                bytes.resize(200, 0);
                let mut sent = 0;
                for b in bytes.iter().take(if trickle { 200 } else { 0 }) {
                    if s.write_all(&[*b]).is_err() {
                        return sent;
                    }
                    sent += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
                sent
            });
            let tcp = TcpStream::connect(addr).unwrap();
            let deadline = Instant::now() + Duration::from_millis(300);
            match handshake(&tls, tcp, deadline) {
                Err(HandshakeError::TimedOut { got }) => assert_eq!(got > 0, trickle, "got {got}"),
                Err(other) => panic!("trickle {trickle}: {other:?}"),
                Ok(_) => panic!("trickle {trickle}: a handshake with no server"),
            }
            let sent = peer.join().unwrap();
            assert!(sent < 200, "the handshake took every byte the peer trickled");
        }
    }

    /// A test authority, and a server certificate for 127.0.0.1 that it signed (valid from
    /// 2000 to 2100) with its key: fixed, so that the unit tests need no openssl.
    const TEST_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBqDCCAU+gAwIBAgIUX8MIwzqApxHkAw9sqxQkqHyCiAUwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWcmV0cmlldmVyIHVuaXQgdGVzdCBDQTAgFw0yNjEyMDMxNjEx
MjFaGA8yMTI2MTEwOTE2MTEyMVowITEfMB0GA1UEAwwWcmV0cmlldmVyIHVuaXQg
dGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABExI/pQXtjh+FbB4mlyP
uGbvsdG1/SovQiYGaVmG4R9jgaKtQEyTaTXJ4GUOlyElJaUCgC894aA04BgtHTPe
ArmjYzBhMB0GA1UdDgQWBBR7Edkgfj+adCxUQm9BBJInXwFW0TAfBgNVHSMEGDAW
gBR7Edkgfj+adCxUQm9BBJInXwFW0TAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB
/wQEAwIBBjAKBggqhkjOPQQDAgNHADBEAiAFbKCBqVrqJI5fEhFuf1NPUkA0MmPx
nMbfLXh0QKQvzgIgNdoKUDfNAOjLs8NzIWJ4awho+LTZjI9EBaydBX5N+5A=
-----END CERTIFICATE-----
";
    const TEST_SERVER_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBrTCCAVKgAwIBAgICEAAwCgYIKoZIzj0EAwIwITEfMB0GA1UEAwwWcmV0cmll
dmVyIHVuaXQgdGVzdCBDQTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAw
MFowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD
QgAE+oq3UR1YEh0O25Pp9wHOK4l6l2XcynIioW8Q1WtQR8HK8aaQiTYtPYTRjx+y
eWevjTQU6IpYtI8UekAKBSjRl6OBhDCBgTAPBgNVHREECDAGhwR/AAABMAkGA1Ud
EwQCMAAwDgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMB0GA1Ud
DgQWBBQkviiInjcvZ9+HPgkfFku55DooXDAfBgNVHSMEGDAWgBR7Edkgfj+adCxU
Qm9BBJInXwFW0TAKBggqhkjOPQQDAgNJADBGAiEAt3Ujf4Lb2M0eDaPfUZLanEW6
JSlWLTgu/nbJbFdPGRgCIQCwZjTM8nhfOPIo1Zx3e+ZKUdrUA8NyX5ZVbldRyEKK
Ag==
-----END CERTIFICATE-----
";
    const TEST_SERVER_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxK2Vekc5+l3ppPdX
C6yA3sqBBTtMT7HNfX/9zIc+6NihRANCAAT6irdRHVgSHQ7bk+n3Ac4riXqXZdzK
ciKhbxDVa1BHwcrxppCJNi09hNGPH7J5Z6+NNBToili0jxR6QAoFKNGX
-----END PRIVATE KEY-----
";

    /// After the handshake, a destination sends one TLS record a byte at a time: a read
    /// given a deadline ends at it with a timeout, rather than waiting for the whole record
    /// (as rustls's own `Read` would, each socket read with the full timeout again).
    #[test]
    fn a_trickled_record_does_not_hold_a_read_past_its_deadline() {
        use super::super::pdu::Wire;
        use std::net::TcpListener;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CA).unwrap();
        let opts = TlsOptions {
            ca: Some(ca),
            ..TlsOptions::default()
        };
        let tls = ClientTls::new(&opts, "127.0.0.1").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let chain = CertificateDer::pem_slice_iter(TEST_SERVER_CERT.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(TEST_SERVER_KEY.as_bytes()).unwrap();
            let config =
                rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(chain, key)
                    .unwrap();
            let mut conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).unwrap();
            }
            while conn.wants_write() {
                conn.write_tls(&mut tcp).unwrap();
            }
            conn.writer().write_all(&[0x07; 100]).unwrap();
            let mut record = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut record).unwrap();
            }
            let mut sent = 0;
            for byte in &record {
                if tcp.write_all(&[*byte]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (sent, record.len())
        });
        let tcp = TcpStream::connect(addr).unwrap();
        let mut stream = handshake(&tls, tcp, Instant::now() + Duration::from_secs(10)).unwrap();
        stream.set_timeout(Duration::from_millis(300)).unwrap();
        let mut buf = [0u8; 200];
        let e = stream.read(&mut buf).unwrap_err();
        assert!(is_timeout(&e), "{e}");
        stream.close();
        drop(stream);
        let (sent, whole) = peer.join().unwrap();
        assert!(sent < whole, "the read waited for all {whole} bytes of the record");
    }

    #[test]
    fn alert_names_are_written_as_tls_writes_them() {
        assert_eq!(alert_name(AlertDescription::BadCertificate), "bad_certificate");
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(
            alert_name(AlertDescription::CertificateRequired),
            "certificate_required"
        );
    }
}
