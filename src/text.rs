//! Text that came from the network (an HTTP error body, a PACS error comment,
//! an accession number or a patient ID from the cloud), made harmless to
//! print. A peer can put anything in it: an ESC sequence that rewrites the
//! terminal or hides the lines before it, a CR that overwrites a log line, a
//! newline or a tab that splits one tab-separated stdout line (which
//! `store -` reads) into two, or megabytes of it. [`escape`] is the one
//! place that turns such text into one bounded line of visible characters.
//!
//! JSON output needs none of this: serde_json escapes control characters.

use std::fmt::Write;

/// Characters of network text shown at most; the rest is cut, with `…`.
pub const MAX_SHOWN: usize = 300;

/// `text` with every control character written as an escape (`\n`, `\r`,
/// `\t`, `\x1b`, `\u{202e}`), and cut to [`MAX_SHOWN`] characters with `…`.
///
/// Backslashes stay as they are (DICOM separates values with them), so the
/// result is for reading, not for decoding; escaping text twice changes
/// nothing more, so a message built from escaped parts may be escaped again.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_SHOWN) + 8);
    for (n, c) in text.chars().enumerate() {
        if n == MAX_SHOWN {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A field of a line on standard output that came from the cloud: `-` when
/// absent or empty, else escaped, so that a tab or newline in it can never
/// split the line (`store -` reads these lines).
pub fn field(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => escape(v),
        _ => "-".to_string(),
    }
}

/// Characters that are not controls but still move or hide text on a
/// terminal: zero-width ones, the line and paragraph separators, and the
/// bidirectional overrides that make text read differently than it is.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(escape("plain text: ÅSA^MÜLLER 1.2.3"), "plain text: ÅSA^MÜLLER 1.2.3");
        assert_eq!(escape("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(escape("\x1b[2J\x1b]0;title\x07"), "\\x1b[2J\\x1b]0;title\\x07");
        assert_eq!(escape("\0\x7f\u{9b}"), "\\x00\\x7f\\x9b");
        assert_eq!(escape("abc\u{202e}fed\u{2028}"), "abc\\u{202e}fed\\u{2028}");
        assert_eq!(escape("DOE\\JOHN"), "DOE\\JOHN");
        for raw in ["a\tb\nc", "\x1b[31mred", "x\u{202e}y"] {
            let once = escape(raw);
            assert!(!once.chars().any(|c| c.is_control() || is_invisible(c)), "{once:?}");
            assert_eq!(escape(&once), once);
        }
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let exact = "x".repeat(MAX_SHOWN);
        assert_eq!(escape(&exact), exact);
        let long = "é".repeat(10 * MAX_SHOWN);
        let shown = escape(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN + 1);
        assert!(shown.ends_with("é…"));
        // Escapes count as the one character they stand for.
        let shown = escape(&"\n".repeat(MAX_SHOWN + 1));
        assert_eq!(shown, format!("{}…", "\\n".repeat(MAX_SHOWN)));
    }
}
