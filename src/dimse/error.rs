//! What can go wrong talking to a DICOM destination, with messages that say
//! what was being done, to whom, and what to check.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// When an error happened, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TLS handshake, before the association is requested.
    Handshake,
    /// A-ASSOCIATE negotiation.
    Associate,
    /// Sending a DIMSE request (command or data set).
    Send,
    /// Waiting for the DIMSE response.
    Response,
    /// A-RELEASE.
    Release,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Handshake => "negotiating TLS",
            Phase::Associate => "negotiating the association",
            Phase::Send => "sending",
            Phase::Response => "waiting for the response",
            Phase::Release => "releasing the association",
        })
    }
}

/// An error of the DICOM network side.
///
/// After a [`ScuError::File`] error the association may still be usable;
/// after any other it is gone (aborted or closed); see
/// [`StoreAssociation::is_usable`](super::StoreAssociation::is_usable).
#[derive(Debug)]
pub enum ScuError {
    /// The TCP connection could not be opened (refused, unreachable, timed
    /// out, host name not resolved).
    Connect { destination: String, source: io::Error },
    /// TLS with the destination failed a check, or the destination refused
    /// us or does not speak TLS: nothing was sent, and trying again gives
    /// the same until someone changes a certificate or a setting.
    Tls { destination: String, failure: TlsFailure },
    /// The destination answered A-ASSOCIATE-RJ.
    AssociationRejected {
        destination: String,
        called_ae: String,
        calling_ae: String,
        /// Rejected-transient, or "temporary congestion" / "local limit
        /// exceeded": trying again later can work.
        transient: bool,
        /// The reason the destination gave, in words.
        reason: String,
    },
    /// The association was accepted but none of the proposed presentation
    /// contexts (SOP class + transfer syntaxes) was.
    NoAcceptedContext { destination: String, proposed: Vec<String> },
    /// The destination sent A-ABORT.
    Aborted {
        destination: String,
        phase: Phase,
        outcome_unknown: bool,
    },
    /// The connection dropped (closed or reset without A-ABORT).
    ConnectionLost {
        destination: String,
        phase: Phase,
        source: Option<io::Error>,
        outcome_unknown: bool,
    },
    /// No answer within the configured timeout.
    Timeout {
        destination: String,
        phase: Phase,
        after: Duration,
        outcome_unknown: bool,
    },
    /// Bytes came, but the whole answer did not arrive within the timeout:
    /// the destination trickles (or is overloaded to a crawl).
    TooSlow {
        destination: String,
        phase: Phase,
        within: Duration,
        /// Bytes of the answer that did arrive.
        got: usize,
        outcome_unknown: bool,
    },
    /// The destination announced a maximum PDU length too small to carry
    /// DICOM messages; we aborted the association.
    PduTooSmall {
        destination: String,
        announced: u32,
        least: u32,
    },
    /// The destination broke the protocol (unexpected PDU, undecodable or
    /// mismatched response); we aborted the association.
    Protocol {
        destination: String,
        detail: String,
        outcome_unknown: bool,
    },
    /// The instance file could not be read, or (`doing` says which) its
    /// coerced copy made. If this happened part way through the data set
    /// the association was aborted; before anything was sent it is still
    /// usable.
    File {
        path: PathBuf,
        /// What failed, as in "failed to read": `read` or `coerce`.
        doing: &'static str,
        detail: String,
    },
    /// The association was already closed by an earlier error.
    Closed { destination: String },
    /// The request cannot be made as given (AE title, number of contexts).
    InvalidOptions { detail: String },
}

impl ScuError {
    /// True when the data set of the current instance was sent in full but
    /// no response came: the destination may or may not have stored it. The
    /// instance is not delivered (it will be sent again, possibly twice).
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ScuError::Aborted { outcome_unknown, .. }
            | ScuError::ConnectionLost { outcome_unknown, .. }
            | ScuError::Timeout { outcome_unknown, .. }
            | ScuError::TooSlow { outcome_unknown, .. }
            | ScuError::Protocol { outcome_unknown, .. } => *outcome_unknown,
            _ => false,
        }
    }

    /// True when trying again later may succeed without anyone changing a
    /// configuration: the destination is down or busy, the network dropped.
    pub fn is_transient(&self) -> bool {
        match self {
            ScuError::Connect { .. }
            | ScuError::Aborted { .. }
            | ScuError::ConnectionLost { .. }
            | ScuError::Timeout { .. }
            | ScuError::TooSlow { .. }
            | ScuError::Closed { .. } => true,
            ScuError::AssociationRejected { transient, .. } => *transient,
            ScuError::NoAcceptedContext { .. }
            | ScuError::Tls { .. }
            | ScuError::PduTooSmall { .. }
            | ScuError::Protocol { .. }
            | ScuError::File { .. }
            | ScuError::InvalidOptions { .. } => false,
        }
    }
}

impl ScuError {
    /// True when the destination stopped answering a request (no answer,
    /// or not all of it, within the timeout) rather than refusing or
    /// failing: waiting for it again costs the whole timeout again.
    pub fn is_stall(&self) -> bool {
        matches!(
            self,
            ScuError::Timeout { phase, .. } | ScuError::TooSlow { phase, .. }
                if matches!(phase, Phase::Send | Phase::Response)
        )
    }
}

impl fmt::Display for ScuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unknown = |f: &mut fmt::Formatter<'_>, yes: bool| {
            if yes {
                f.write_str(" after the instance was sent; it is not counted as delivered")
            } else {
                Ok(())
            }
        };
        match self {
            ScuError::Connect { destination, source } => {
                let why = match source.kind() {
                    io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
                    _ => source.to_string(),
                };
                write!(
                    f,
                    "could not connect to {destination} ({why}); is the destination running and the port right?"
                )
            }
            ScuError::Tls { destination, failure } => failure.explain(destination, f),
            ScuError::AssociationRejected {
                destination,
                called_ae,
                calling_ae,
                transient,
                reason,
            } => {
                let kind = if *transient { "temporarily" } else { "permanently" };
                write!(f, "{destination} {kind} rejected the association ({reason})")?;
                if reason.contains("called AE title") {
                    write!(
                        f,
                        "; it does not answer to the called AE title `{called_ae}` (we are `{calling_ae}`): \
                         check the AE title in the destination (AE@HOST:PORT) against the destination's configuration"
                    )
                } else if reason.contains("calling AE title") {
                    write!(
                        f,
                        "; it does not know our AE title `{calling_ae}` (we called `{called_ae}`): \
                         add `{calling_ae}` to the destination's known peers or set --calling-ae"
                    )
                } else if *transient {
                    f.write_str("; will try again later")
                } else {
                    write!(
                        f,
                        "; we called `{called_ae}` as `{calling_ae}`: check the destination's configuration"
                    )
                }
            }
            ScuError::NoAcceptedContext { destination, proposed } => write!(
                f,
                "{destination} accepted none of the proposed presentation contexts ({})",
                proposed.join(", ")
            ),
            ScuError::Aborted {
                destination,
                phase,
                outcome_unknown,
            } => {
                write!(f, "{destination} aborted the association while {phase}")?;
                unknown(f, *outcome_unknown)
            }
            ScuError::ConnectionLost {
                destination,
                phase,
                source,
                outcome_unknown,
            } => {
                write!(f, "the connection to {destination} was lost while {phase}")?;
                if let Some(e) = source {
                    write!(f, " ({e})")?;
                }
                unknown(f, *outcome_unknown)
            }
            ScuError::Timeout {
                destination,
                phase,
                after,
                outcome_unknown,
            } => {
                write!(
                    f,
                    "{destination} did not answer within {} while {phase}",
                    crate::format::duration(*after)
                )?;
                unknown(f, *outcome_unknown)
            }
            ScuError::TooSlow {
                destination,
                phase,
                within,
                got,
                outcome_unknown,
            } => {
                write!(
                    f,
                    "{destination} answered too slowly while {phase}: {got} bytes trickled in, \
                     not a whole answer within {}; association aborted",
                    crate::format::duration(*within)
                )?;
                unknown(f, *outcome_unknown)
            }
            ScuError::PduTooSmall {
                destination,
                announced,
                least,
            } => write!(
                f,
                "{destination} announced a maximum PDU length of {announced} byte{}, too small to carry \
                 DICOM messages (at least {least}); association aborted: set the destination's maximum \
                 PDU length to 16384 or more (0 means no limit)",
                if *announced == 1 { "" } else { "s" }
            ),
            ScuError::Protocol {
                destination,
                detail,
                outcome_unknown,
            } => {
                write!(
                    f,
                    "{destination} broke the DICOM protocol ({detail}); association aborted"
                )?;
                unknown(f, *outcome_unknown)
            }
            ScuError::File { path, doing, detail } => {
                write!(f, "failed to {doing} `{}`: {detail}", path.display())
            }
            ScuError::Closed { destination } => {
                write!(f, "the association with {destination} is closed after an earlier error")
            }
            ScuError::InvalidOptions { detail } => f.write_str(detail),
        }
    }
}

/// Which TLS check failed, or what the destination refused (see
/// [`ScuError::Tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// Its certificate does not chain to a CA we trust.
    UnknownCa,
    /// Its certificate is for other names (`presented`, the first few,
    /// made printable) than the one checked (`expected`).
    WrongName {
        expected: Option<String>,
        presented: Vec<String>,
    },
    /// Its certificate expired (dates when rustls gives them).
    Expired {
        not_after: Option<SystemTime>,
        now: Option<SystemTime>,
    },
    /// Its certificate is not valid yet.
    NotYetValid {
        not_before: Option<SystemTime>,
        now: Option<SystemTime>,
    },
    /// Its certificate failed another check (signature, purpose, revoked).
    BadCertificate { detail: String },
    /// It asked for a client certificate and we have none.
    CertificateRequired,
    /// It refused our client certificate (how: the alert it sent, or that
    /// it hung up).
    CertificateRefused { how: String },
    /// It does not answer our TLS hello with TLS.
    NotTls { detail: String },
    /// Any other failed handshake (no common protocol version or cipher).
    Handshake { detail: String },
}

impl TlsFailure {
    /// The message for `destination`: what failed and what to do.
    fn explain(&self, destination: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cert = format!("the TLS certificate of {destination}");
        let date = |t: &SystemTime| humantime::format_rfc3339_seconds(*t).to_string();
        match self {
            TlsFailure::UnknownCa => write!(
                f,
                "{cert} is signed by a CA we do not trust: give its CA with `--to-ca` (a PEM file)"
            ),
            TlsFailure::WrongName { expected, presented } => {
                write!(f, "{cert} is for ")?;
                if presented.is_empty() {
                    f.write_str("other names")?;
                } else {
                    write!(f, "`{}`", presented.join("`, `"))?;
                }
                if let Some(expected) = expected {
                    write!(f, ", not `{expected}`")?;
                }
                f.write_str(
                    ": give the destination by a name its certificate is for, or the name to check with \
                     `--to-server-name`",
                )
            }
            TlsFailure::Expired { not_after, now } => {
                write!(f, "{cert} has expired")?;
                if let Some(t) = not_after {
                    write!(f, " (valid until {}", date(t))?;
                    if let Some(now) = now {
                        write!(f, ", it is now {}", date(now))?;
                    }
                    f.write_str(")")?;
                }
                f.write_str(": renew the destination's certificate, or check this machine's clock")
            }
            TlsFailure::NotYetValid { not_before, now } => {
                write!(f, "{cert} is not valid yet")?;
                if let Some(t) = not_before {
                    write!(f, " (valid from {}", date(t))?;
                    if let Some(now) = now {
                        write!(f, ", it is now {}", date(now))?;
                    }
                    f.write_str(")")?;
                }
                f.write_str(": check the clocks of this machine and of the destination")
            }
            TlsFailure::BadCertificate { detail } => write!(
                f,
                "{cert} was refused ({detail}): the destination needs a valid server certificate"
            ),
            TlsFailure::CertificateRequired => write!(
                f,
                "{destination} asks for a client certificate and we have none: give ours with \
                 `--to-cert` and `--to-key`"
            ),
            TlsFailure::CertificateRefused { how } => write!(
                f,
                "{destination} refused our client certificate ({how}): give one it trusts with `--to-cert` \
                 and `--to-key`, or have it trust the CA of ours"
            ),
            TlsFailure::NotTls { detail } => write!(
                f,
                "{destination} does not speak TLS on that port ({detail}): check that DICOM TLS is enabled \
                 there and that the port is its TLS port"
            ),
            TlsFailure::Handshake { detail } => write!(
                f,
                "the TLS handshake with {destination} failed ({detail}): the destination must offer TLS 1.2 \
                 or 1.3 with BCP 195 cipher suites; its log says why it refused"
            ),
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.explain("the destination", f)
    }
}

impl std::error::Error for TlsFailure {}

impl std::error::Error for ScuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScuError::Connect { source, .. } => Some(source),
            ScuError::ConnectionLost { source: Some(s), .. } => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_to_check() {
        let e = ScuError::Connect {
            destination: "PACS@127.0.0.1:104".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            e.to_string(),
            "could not connect to PACS@127.0.0.1:104 (connection refused); is the destination running and the port right?"
        );
        assert!(e.is_transient());

        let e = ScuError::AssociationRejected {
            destination: "PACS@127.0.0.1:104".into(),
            called_ae: "PACS".into(),
            calling_ae: "RETRIEVER".into(),
            transient: false,
            reason: "called AE title not recognized".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("`PACS`") && msg.contains("`RETRIEVER`") && msg.contains("configuration"),
            "{msg}"
        );
        assert!(!e.is_transient());

        let e = ScuError::Timeout {
            destination: "X@h:1".into(),
            phase: Phase::Response,
            after: Duration::from_secs(30),
            outcome_unknown: true,
        };
        assert!(e.outcome_unknown());
        assert!(e.to_string().contains("not counted as delivered"), "{e}");
    }

    #[test]
    fn tls_failures_are_permanent_and_say_what_to_do() {
        let tls = |failure| ScuError::Tls {
            destination: "PACS@10.0.0.5:2762".into(),
            failure,
        };
        let at = |secs| Some(std::time::UNIX_EPOCH + Duration::from_secs(secs));
        for (failure, says) in [
            (
                TlsFailure::UnknownCa,
                "the TLS certificate of PACS@10.0.0.5:2762 is signed by a CA we do not trust: give its CA \
                 with `--to-ca` (a PEM file)",
            ),
            (
                TlsFailure::WrongName {
                    expected: Some("10.0.0.5".into()),
                    presented: vec!["pacs.example.org".into(), "10.0.0.6".into()],
                },
                "the TLS certificate of PACS@10.0.0.5:2762 is for `pacs.example.org`, `10.0.0.6`, not `10.0.0.5`: \
                 give the destination by a name its certificate is for, or the name to check with \
                 `--to-server-name`",
            ),
            (
                TlsFailure::Expired {
                    not_after: at(1_609_459_200),
                    now: at(1_767_225_600),
                },
                "the TLS certificate of PACS@10.0.0.5:2762 has expired (valid until 2021-01-01T00:00:00Z, it is \
                 now 2026-01-01T00:00:00Z): renew the destination's certificate, or check this machine's clock",
            ),
            (
                TlsFailure::NotYetValid {
                    not_before: None,
                    now: None,
                },
                "the TLS certificate of PACS@10.0.0.5:2762 is not valid yet: check the clocks of this machine \
                 and of the destination",
            ),
            (
                TlsFailure::CertificateRequired,
                "PACS@10.0.0.5:2762 asks for a client certificate and we have none: give ours with `--to-cert` \
                 and `--to-key`",
            ),
            (
                TlsFailure::CertificateRefused {
                    how: "TLS alert `unknown_ca`".into(),
                },
                "PACS@10.0.0.5:2762 refused our client certificate (TLS alert `unknown_ca`): give one it trusts \
                 with `--to-cert` and `--to-key`, or have it trust the CA of ours",
            ),
            (
                TlsFailure::NotTls {
                    detail: "it closed the connection at our TLS hello".into(),
                },
                "PACS@10.0.0.5:2762 does not speak TLS on that port (it closed the connection at our TLS hello): \
                 check that DICOM TLS is enabled there and that the port is its TLS port",
            ),
        ] {
            let e = tls(failure);
            assert_eq!(e.to_string(), says);
            assert!(!e.is_transient(), "{e}");
            assert!(!e.is_stall() && !e.outcome_unknown(), "{e}");
        }
        // A handshake that the destination leaves unanswered may pass.
        let e = ScuError::Timeout {
            destination: "PACS@10.0.0.5:2762".into(),
            phase: Phase::Handshake,
            after: Duration::from_secs(30),
            outcome_unknown: false,
        };
        assert!(e.is_transient() && !e.is_stall());
        assert_eq!(
            e.to_string(),
            "PACS@10.0.0.5:2762 did not answer within 30s while negotiating TLS"
        );
    }
}
