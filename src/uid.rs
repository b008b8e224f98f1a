//! DICOM unique identifiers, checked against the PS3.5 §9.1 grammar before
//! any of them is used as part of a path or a URL.

use std::fmt;

/// A UID known to follow PS3.5 §9.1: components of digits separated by
/// single dots, no empty component, no leading zero (except `0` itself),
/// at most 64 characters. Such a string is safe as a file name on every
/// platform, and contains no `/`, `\`, `..` or drive letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

impl Uid {
    /// Checks `s` (trailing NUL or space padding, as DICOM pads UI values,
    /// is removed first) and wraps it.
    pub fn parse(s: &str) -> Result<Uid, InvalidUid> {
        let s = s.trim_end_matches(['\0', ' ']);
        match problem(s) {
            None => Ok(Uid(s.to_string())),
            Some(why) => Err(InvalidUid {
                value: s.chars().take(80).collect(),
                why,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("it is empty");
    }
    if s.len() > 64 {
        return Some("it is longer than 64 characters");
    }
    if !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Some("it contains characters other than digits and dots");
    }
    for component in s.split('.') {
        if component.is_empty() {
            return Some("it has an empty component");
        }
        if component.len() > 1 && component.starts_with('0') {
            return Some("it has a component with a leading zero");
        }
    }
    None
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// So that maps keyed by `Uid` are looked up with a `&str`: a `Uid`
/// compares, orders and hashes as its string does.
impl std::borrow::Borrow<str> for Uid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Uid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a string is not a valid UID; the value is kept (shortened) for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUid {
    pub value: String,
    pub why: &'static str,
}

impl fmt::Display for InvalidUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid DICOM UID: {}",
            crate::text::escape(&self.value),
            self.why
        )
    }
}

impl std::error::Error for InvalidUid {}

/// Written as the plain string, so that files written with a `Uid` read as
/// they did when the field was a `String`, and the other way round.
impl serde::Serialize for Uid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Read back through [`Uid::parse`]: a file that names an invalid UID is
/// refused, as the cloud's answer would be.
impl<'de> serde::Deserialize<'de> for Uid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Uid, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Uid::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_uids() {
        for ok in [
            "1.2.840.10008.1.2.1",
            "0",
            "1.0.3",
            "2.25.329800735698586629295641978511506172918",
        ] {
            assert_eq!(Uid::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(Uid::parse("1.2.3\0").unwrap().as_str(), "1.2.3");
    }

    #[test]
    fn rejects_what_could_escape_a_directory_or_break_the_grammar() {
        for bad in [
            "", "..", "1..2", "1.2/3", "../1.2", "1.2.", ".1", "1.02", "1.2\\3", "C:1", "1.2.3a",
        ] {
            assert!(Uid::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Uid::parse(&"1.".repeat(32)).is_err());
    }

    #[test]
    fn serde_writes_and_reads_the_plain_string_and_refuses_a_bad_one() {
        let uid = Uid::parse("1.2.3").unwrap();
        assert_eq!(serde_json::to_string(&uid).unwrap(), r#""1.2.3""#);
        assert_eq!(serde_json::from_str::<Uid>(r#""1.2.3""#).unwrap(), uid);
        let e = serde_json::from_str::<Uid>(r#""../1.2""#).unwrap_err().to_string();
        assert!(e.contains("is not a valid DICOM UID"), "{e}");
    }

    #[test]
    fn a_bad_uid_is_shown_without_its_control_characters() {
        let e = Uid::parse("1.2\x1b[2J\r\n3").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`1.2\\x1b[2J\\r\\n3` is not a valid DICOM UID: it contains characters other than digits and dots"
        );
    }
}
