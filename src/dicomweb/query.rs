//! Building QIDO-RS query strings by hand.
//!
//! Orthanc's QIDO-RS does not percent-decode query values: `PatientID=%501`
//! searches for the literal `%501` and matches nothing (measured with Orthanc
//! 1.10 + DICOMweb 1.7; see LANDSCAPE.md). A general-purpose encoder such as
//! `url::form_urlencoded` escapes far more than needed (`^` in person names,
//! `*` and `?` wildcards, `,` in lists), which would break every such search.
//! So values go out verbatim, and only the characters that would change the
//! meaning of the URL or make it invalid are escaped: controls, space, `"`,
//! `#`, `%`, `&`, `'`, `+` (read as a space by form decoders), `<`, `>`, DEL
//! and non-ASCII. `=` is escaped in keys only. Servers that do decode (all the
//! others) see the same values either way.

use std::fmt::Write;

/// Appends `key=value` pairs, in order and repeated keys kept (Orthanc ignores
/// a comma-separated `includefield`, so it has to be repeated), to a query string.
pub fn encode(params: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in params {
        if !out.is_empty() {
            out.push('&');
        }
        escape_into(&mut out, k, true);
        out.push('=');
        escape_into(&mut out, v, false);
    }
    out
}

fn escape_into(out: &mut String, s: &str, is_key: bool) {
    for c in s.chars() {
        if c.is_ascii() && !needs_escape(c as u8, is_key) {
            out.push(c);
        } else {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

fn needs_escape(b: u8, is_key: bool) -> bool {
    b.is_ascii_control()
        || matches!(b, b' ' | b'"' | b'#' | b'%' | b'&' | b'\'' | b'+' | b'<' | b'>')
        || (is_key && b == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_values_pass_verbatim() {
        assert_eq!(
            encode(&[
                ("PatientName", "DOE^J*"),
                ("StudyDate", "20200101-20241231"),
                ("ModalitiesInStudy", "CT,MR"),
                ("AccessionNumber", "A.1-2_3?"),
                ("includefield", "00081030"),
                ("includefield", "00080061"),
                ("PatientID", "P/1:2@3\\4")
            ]),
            "PatientName=DOE^J*&StudyDate=20200101-20241231&ModalitiesInStudy=CT,MR&AccessionNumber=A.1-2_3?\
             &includefield=00081030&includefield=00080061&PatientID=P/1:2@3\\4"
        );
    }

    #[test]
    fn url_breaking_characters_are_escaped() {
        assert_eq!(
            encode(&[("PatientID", "a b&c#d+e%f")]),
            "PatientID=a%20b%26c%23d%2Be%25f"
        );
        assert_eq!(encode(&[("PatientName", "MÜLLER")]), "PatientName=M%C3%9CLLER");
        assert_eq!(encode(&[("a=b", "c=d")]), "a%3Db=c=d");
        assert_eq!(encode(&[("x", "\"<'>\n")]), "x=%22%3C%27%3E%0A");
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn result_is_a_valid_url_query() {
        let q = encode(&[("PatientName", "O'BRIEN^ÅSA ?*"), ("x", "{|}[]`~!$()")]);
        let mut url = reqwest::Url::parse("http://127.0.0.1/dicom-web/studies").unwrap();
        url.set_query(Some(&q));
        // The url crate must not re-escape anything we left alone.
        assert_eq!(url.query(), Some(q.as_str()));
    }
}
