//! What can go wrong talking to a DICOM destination, with messages that say
//! what was being done, to whom, and what to check.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// When an error happened, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
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
    /// The instance file could not be read. If this happened part way
    /// through the data set the association was aborted; before anything
    /// was sent it is still usable.
    File { path: PathBuf, detail: String },
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
            ScuError::File { path, detail } => {
                write!(f, "failed to read `{}`: {detail}", path.display())
            }
            ScuError::Closed { destination } => {
                write!(f, "the association with {destination} is closed after an earlier error")
            }
            ScuError::InvalidOptions { detail } => f.write_str(detail),
        }
    }
}

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
}
