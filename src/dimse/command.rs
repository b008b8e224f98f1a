//! DIMSE command sets (PS3.7 §9.3, §E): the group 0000 elements that head
//! every DIMSE message, always encoded in Implicit VR Little Endian whatever
//! transfer syntax the presentation context negotiated.
//!
//! Only the fields the C-STORE and C-ECHO services use are typed; any other
//! element of a received command is skipped, so a peer that adds e.g.
//! Offending Element or Error ID does not break decoding.

use std::fmt;

/// Command Field values (PS3.7 §E.1).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
}

/// Command Data Set Type (0000,0800): any value but this one means a data
/// set follows the command.
pub const NO_DATA_SET: u16 = 0x0101;

/// The value we send when a data set follows (as pynetdicom does).
pub const DATA_SET_PRESENT: u16 = 0x0001;

/// Priority (0000,0700) MEDIUM.
pub const PRIORITY_MEDIUM: u16 = 0x0000;

const GROUP_LENGTH: u16 = 0x0000;
const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
const COMMAND_FIELD: u16 = 0x0100;
const MESSAGE_ID: u16 = 0x0110;
const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
const PRIORITY: u16 = 0x0700;
const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
const STATUS: u16 = 0x0900;
const OFFENDING_ELEMENT: u16 = 0x0901;
const ERROR_COMMENT: u16 = 0x0902;
const ERROR_ID: u16 = 0x0903;
const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;
const MOVE_ORIGINATOR_AE_TITLE: u16 = 0x1030;
const MOVE_ORIGINATOR_MESSAGE_ID: u16 = 0x1031;

/// A DIMSE command set. Absent optional fields are `None` and not encoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    pub command_field: u16,
    pub affected_sop_class_uid: Option<String>,
    pub message_id: Option<u16>,
    pub message_id_being_responded_to: Option<u16>,
    pub priority: Option<u16>,
    /// [`NO_DATA_SET`] or any other value (data set present).
    pub data_set_type: u16,
    pub status: Option<u16>,
    /// Offending Element (0000,0901): the tags the peer complains about.
    pub offending_elements: Vec<(u16, u16)>,
    pub error_comment: Option<String>,
    pub error_id: Option<u16>,
    pub affected_sop_instance_uid: Option<String>,
    pub move_originator_ae_title: Option<String>,
    pub move_originator_message_id: Option<u16>,
}

impl Command {
    /// A C-STORE-RQ with a data set following.
    pub fn c_store_rq(message_id: u16, sop_class: &str, sop_instance: &str) -> Command {
        Command {
            command_field: field::C_STORE_RQ,
            affected_sop_class_uid: Some(sop_class.to_string()),
            message_id: Some(message_id),
            priority: Some(PRIORITY_MEDIUM),
            data_set_type: DATA_SET_PRESENT,
            affected_sop_instance_uid: Some(sop_instance.to_string()),
            ..Command::default()
        }
    }

    /// A C-ECHO-RQ (Verification SOP class, no data set).
    pub fn c_echo_rq(message_id: u16) -> Command {
        Command {
            command_field: field::C_ECHO_RQ,
            affected_sop_class_uid: Some(super::VERIFICATION.to_string()),
            message_id: Some(message_id),
            data_set_type: NO_DATA_SET,
            ..Command::default()
        }
    }

    pub fn has_data_set(&self) -> bool {
        self.data_set_type != NO_DATA_SET
    }

    /// Encodes the command set in Implicit VR Little Endian, elements in
    /// ascending tag order, led by Command Group Length.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        if let Some(uid) = &self.affected_sop_class_uid {
            put(&mut body, AFFECTED_SOP_CLASS_UID, &uid_bytes(uid));
        }
        put(&mut body, COMMAND_FIELD, &self.command_field.to_le_bytes());
        if let Some(id) = self.message_id {
            put(&mut body, MESSAGE_ID, &id.to_le_bytes());
        }
        if let Some(id) = self.message_id_being_responded_to {
            put(&mut body, MESSAGE_ID_BEING_RESPONDED_TO, &id.to_le_bytes());
        }
        if let Some(p) = self.priority {
            put(&mut body, PRIORITY, &p.to_le_bytes());
        }
        put(&mut body, COMMAND_DATA_SET_TYPE, &self.data_set_type.to_le_bytes());
        if let Some(s) = self.status {
            put(&mut body, STATUS, &s.to_le_bytes());
        }
        if !self.offending_elements.is_empty() {
            let mut v = Vec::with_capacity(4 * self.offending_elements.len());
            for (g, e) in &self.offending_elements {
                v.extend_from_slice(&g.to_le_bytes());
                v.extend_from_slice(&e.to_le_bytes());
            }
            put(&mut body, OFFENDING_ELEMENT, &v);
        }
        if let Some(c) = &self.error_comment {
            put(&mut body, ERROR_COMMENT, &text_bytes(c));
        }
        if let Some(id) = self.error_id {
            put(&mut body, ERROR_ID, &id.to_le_bytes());
        }
        if let Some(uid) = &self.affected_sop_instance_uid {
            put(&mut body, AFFECTED_SOP_INSTANCE_UID, &uid_bytes(uid));
        }
        if let Some(ae) = &self.move_originator_ae_title {
            put(&mut body, MOVE_ORIGINATOR_AE_TITLE, &text_bytes(ae));
        }
        if let Some(id) = self.move_originator_message_id {
            put(&mut body, MOVE_ORIGINATOR_MESSAGE_ID, &id.to_le_bytes());
        }
        let mut out = Vec::with_capacity(12 + body.len());
        put(&mut out, GROUP_LENGTH, &(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a command set received from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut cmd = Command::default();
        let mut seen_field = false;
        let mut seen_data_set_type = false;
        let mut pos = 0usize;
        while pos < bytes.len() {
            let header = bytes.get(pos..pos + 8).ok_or(DecodeError::Truncated { offset: pos })?;
            let group = u16::from_le_bytes([header[0], header[1]]);
            let element = u16::from_le_bytes([header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if group != 0x0000 {
                return Err(DecodeError::NotCommandGroup { group, element });
            }
            if len == u32::MAX {
                return Err(DecodeError::UndefinedLength { element });
            }
            let start = pos + 8;
            let end = start
                .checked_add(len as usize)
                .filter(|end| *end <= bytes.len())
                .ok_or(DecodeError::Truncated { offset: pos })?;
            let value = &bytes[start..end];
            pos = end;
            let us = || -> Result<u16, DecodeError> {
                match value {
                    [a, b] => Ok(u16::from_le_bytes([*a, *b])),
                    _ => Err(DecodeError::BadLength { element, len }),
                }
            };
            match element {
                COMMAND_FIELD => {
                    cmd.command_field = us()?;
                    seen_field = true;
                }
                AFFECTED_SOP_CLASS_UID => cmd.affected_sop_class_uid = Some(text(value)),
                MESSAGE_ID => cmd.message_id = Some(us()?),
                MESSAGE_ID_BEING_RESPONDED_TO => cmd.message_id_being_responded_to = Some(us()?),
                PRIORITY => cmd.priority = Some(us()?),
                COMMAND_DATA_SET_TYPE => {
                    cmd.data_set_type = us()?;
                    seen_data_set_type = true;
                }
                STATUS => cmd.status = Some(us()?),
                OFFENDING_ELEMENT => {
                    cmd.offending_elements = value
                        .chunks_exact(4)
                        .map(|c| (u16::from_le_bytes([c[0], c[1]]), u16::from_le_bytes([c[2], c[3]])))
                        .collect()
                }
                ERROR_COMMENT => cmd.error_comment = Some(text(value)).filter(|s| !s.is_empty()),
                ERROR_ID => cmd.error_id = Some(us()?),
                AFFECTED_SOP_INSTANCE_UID => cmd.affected_sop_instance_uid = Some(text(value)),
                MOVE_ORIGINATOR_AE_TITLE => cmd.move_originator_ae_title = Some(text(value)),
                MOVE_ORIGINATOR_MESSAGE_ID => cmd.move_originator_message_id = Some(us()?),
                // Group length (informational) and elements of other services.
                _ => {}
            }
        }
        if !seen_field {
            return Err(DecodeError::Missing("Command Field (0000,0100)"));
        }
        if !seen_data_set_type {
            return Err(DecodeError::Missing("Command Data Set Type (0000,0800)"));
        }
        Ok(cmd)
    }
}

fn put(out: &mut Vec<u8>, element: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// UI values are padded to even length with NUL (PS3.5 §6.2).
fn uid_bytes(uid: &str) -> Vec<u8> {
    let mut v = uid.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

/// Text values (AE, LO) are padded to even length with a space.
fn text_bytes(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    v
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .trim_end_matches(['\0', ' '])
        .trim_start_matches(' ')
        .to_string()
}

/// Why a received command set could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated { offset: usize },
    NotCommandGroup { group: u16, element: u16 },
    UndefinedLength { element: u16 },
    BadLength { element: u16, len: u32 },
    Missing(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { offset } => {
                write!(f, "the command set is truncated at byte {offset}")
            }
            DecodeError::NotCommandGroup { group, element } => {
                write!(
                    f,
                    "the command set contains ({group:04X},{element:04X}), outside group 0000"
                )
            }
            DecodeError::UndefinedLength { element } => {
                write!(f, "command element (0000,{element:04X}) has an undefined length")
            }
            DecodeError::BadLength { element, len } => {
                write!(f, "command element (0000,{element:04X}) has length {len}, expected 2")
            }
            DecodeError::Missing(what) => write!(f, "the command set has no {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A C-STORE-RQ as pynetdicom 3.0.4 encodes it (`C_STORE_RQ`
    /// `.primitive_to_message` then `dsutils.encode(cmd, True, True)`, with
    /// message id 7, SC Image Storage, instance `1.2.3`): the reference our
    /// encoder must reproduce byte for byte.
    const PYNETDICOM_C_STORE_RQ: &str = "000000000400000058000000000002001a000000312e322e3834302e31303030382e\
        352e312e342e312e312e3700000000010200000001000000100102000000070000000007020000000000\
        000000080200000001000000001006000000312e322e3300";

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn c_store_rq_matches_pynetdicom_bytes() {
        let cmd = Command::c_store_rq(7, "1.2.840.10008.5.1.4.1.1.7", "1.2.3");
        let reference = unhex(PYNETDICOM_C_STORE_RQ);
        assert_eq!(cmd.encode(), reference);
        assert_eq!(Command::decode(&reference).unwrap(), cmd);
    }

    #[test]
    fn response_round_trip_with_optional_fields() {
        let rsp = Command {
            command_field: field::C_STORE_RSP,
            affected_sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.2".into()),
            message_id_being_responded_to: Some(65535),
            data_set_type: NO_DATA_SET,
            status: Some(0xB000),
            offending_elements: vec![(0x0010, 0x0010), (0x0028, 0x0010)],
            error_comment: Some("coerced PatientName".into()),
            error_id: Some(3),
            affected_sop_instance_uid: Some("1.2.3.4".into()),
            ..Command::default()
        };
        let bytes = rsp.encode();
        assert_eq!(bytes.len() % 2, 0);
        let group_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(group_len, bytes.len() - 12);
        assert_eq!(Command::decode(&bytes).unwrap(), rsp);
        assert!(!rsp.has_data_set());
    }

    #[test]
    fn echo_round_trip() {
        let rq = Command::c_echo_rq(1);
        let back = Command::decode(&rq.encode()).unwrap();
        assert_eq!(back.command_field, field::C_ECHO_RQ);
        assert_eq!(back.affected_sop_class_uid.as_deref(), Some("1.2.840.10008.1.1"));
        assert!(!back.has_data_set());
    }

    #[test]
    fn decode_skips_unknown_elements_and_rejects_garbage() {
        let mut bytes = Command::c_echo_rq(2).encode();
        // An element of another service, e.g. Number of Remaining Sub-operations.
        bytes.extend_from_slice(&[0x00, 0x00, 0x20, 0x10, 0x02, 0x00, 0x00, 0x00, 0x05, 0x00]);
        assert_eq!(Command::decode(&bytes).unwrap().message_id, Some(2));

        assert!(matches!(
            Command::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        let not_command = [0x08, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert!(matches!(
            Command::decode(&not_command),
            Err(DecodeError::NotCommandGroup { .. })
        ));
        assert!(matches!(Command::decode(&[]), Err(DecodeError::Missing(_))));
    }
}
