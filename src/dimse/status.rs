//! DIMSE response statuses of C-STORE (PS3.4 Annex B.2.3) and the general
//! ones of PS3.7 Annex C, sorted into what the caller has to do about them.

use std::fmt;

/// What a status means for the instance it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// Stored.
    Success,
    /// Stored, with something worth showing (coercion, elements discarded...).
    Warning,
    /// Not stored because the destination is short of resources: retry later.
    OutOfResources,
    /// Not stored.
    Failure,
}

impl StatusClass {
    /// Classifies a status code.
    ///
    /// Only the Success and Warning classes count as delivered: a status we
    /// do not know is a failure, so nothing unknown is ever reported sent.
    pub fn of(code: u16) -> StatusClass {
        match code {
            0x0000 => StatusClass::Success,
            // PS3.4 B.2.3 warnings (B000 coercion, B006 elements discarded,
            // B007 data set does not match SOP class) and any other Bxxx.
            0xB000..=0xBFFF => StatusClass::Warning,
            // PS3.7 C: warnings of the general status codes.
            0x0001 | 0x0107 | 0x0116 => StatusClass::Warning,
            // PS3.4 B.2.3 "Refused: Out of Resources" A7xx; PS3.7 C 0213
            // "Resource limitation".
            0xA700..=0xA7FF | 0x0213 => StatusClass::OutOfResources,
            _ => StatusClass::Failure,
        }
    }

    /// True when the instance was stored.
    pub fn is_delivered(self) -> bool {
        matches!(self, StatusClass::Success | StatusClass::Warning)
    }
}

impl fmt::Display for StatusClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatusClass::Success => "success",
            StatusClass::Warning => "warning",
            StatusClass::OutOfResources => "out of resources",
            StatusClass::Failure => "failure",
        })
    }
}

/// The standard meaning of a status code, for messages.
pub fn meaning(code: u16) -> &'static str {
    match code {
        0x0000 => "success",
        // PS3.4 B.2.3, Storage Service Class.
        0xB000 => "coercion of data elements",
        0xB006 => "elements discarded",
        0xB007 => "data set does not match SOP class",
        0xA700..=0xA7FF => "refused: out of resources",
        0xA900..=0xA9FF => "error: data set does not match SOP class",
        0xC000..=0xCFFF => "error: cannot understand",
        // PS3.7 C, general statuses.
        0x0001 => "requested optional attributes are not supported",
        0x0105 => "no such attribute",
        0x0106 => "invalid attribute value",
        0x0107 => "attribute list error",
        0x0110 => "processing failure",
        0x0111 => "duplicate SOP instance",
        0x0112 => "no such SOP instance",
        0x0113 => "no such event type",
        0x0114 => "no such argument",
        0x0115 => "invalid argument value",
        0x0116 => "attribute value out of range",
        0x0117 => "invalid object instance",
        0x0118 => "no such SOP class",
        0x0119 => "class-instance conflict",
        0x0120 => "missing attribute",
        0x0121 => "missing attribute value",
        0x0122 => "refused: SOP class not supported",
        0x0123 => "no such action",
        0x0124 => "refused: not authorized",
        0x0210 => "duplicate invocation",
        0x0211 => "unrecognized operation",
        0x0212 => "mistyped argument",
        0x0213 => "resource limitation",
        0xFE00 => "cancelled",
        0xB001..=0xBFFF => "warning",
        _ => "unknown status",
    }
}

/// The answer of the destination to one C-STORE (or C-ECHO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    pub code: u16,
    pub class: StatusClass,
    /// Error Comment (0000,0902), when the destination gave one.
    pub comment: Option<String>,
}

impl StoreStatus {
    pub fn new(code: u16, comment: Option<String>) -> StoreStatus {
        StoreStatus {
            code,
            class: StatusClass::of(code),
            comment,
        }
    }

    pub fn meaning(&self) -> &'static str {
        meaning(self.code)
    }

    pub fn is_delivered(&self) -> bool {
        self.class.is_delivered()
    }
}

impl fmt::Display for StoreStatus {
    /// E.g. `status 0xA700 (refused: out of resources): disk full`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status 0x{:04X} ({})", self.code, self.meaning())?;
        if let Some(c) = &self.comment {
            write!(f, ": {}", crate::text::escape(c))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        use StatusClass::*;
        let table = [
            (0x0000, Success),
            (0xB000, Warning),
            (0xB006, Warning),
            (0xB007, Warning),
            (0xB123, Warning),
            (0x0107, Warning),
            (0xA700, OutOfResources),
            (0xA7FF, OutOfResources),
            (0x0213, OutOfResources),
            (0xA900, Failure),
            (0xA9FF, Failure),
            (0xC000, Failure),
            (0xCFFF, Failure),
            (0x0117, Failure),
            (0x0122, Failure),
            (0x0124, Failure),
            (0x0111, Failure),
            (0x0110, Failure),
            (0xFE00, Failure),
            (0xFF00, Failure), // pending makes no sense for C-STORE
            (0x1234, Failure),
            (0xA800, Failure),
        ];
        for (code, class) in table {
            assert_eq!(StatusClass::of(code), class, "0x{code:04X}");
        }
        assert!(Success.is_delivered() && Warning.is_delivered());
        assert!(!OutOfResources.is_delivered() && !Failure.is_delivered());
    }

    #[test]
    fn meanings_and_display() {
        assert_eq!(meaning(0xA702), "refused: out of resources");
        assert_eq!(meaning(0xC0FF), "error: cannot understand");
        assert_eq!(meaning(0x0122), "refused: SOP class not supported");
        assert_eq!(meaning(0x4242), "unknown status");
        let s = StoreStatus::new(0xA900, Some("bad IOD".into()));
        assert_eq!(
            s.to_string(),
            "status 0xA900 (error: data set does not match SOP class): bad IOD"
        );
        assert_eq!(
            StoreStatus::new(0xB000, None).to_string(),
            "status 0xB000 (coercion of data elements)"
        );
        let s = StoreStatus::new(0xA700, Some("\x1b]0;owned\x07disk\rfull\n".into()));
        assert_eq!(
            s.to_string(),
            "status 0xA700 (refused: out of resources): \\x1b]0;owned\\x07disk\\rfull\\n"
        );
    }
}
