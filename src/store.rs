//! `store`: delivering studies from the cache to the DICOM destination now.
//! What to deliver comes from the command line or from `fetch`'s output on
//! stdin; how it is delivered is the delivery engine's ([`crate::delivery`]).

use anyhow::{Context, Result};

use crate::uid::Uid;

/// Parses one line of `store -` input: a JSON object with "study_uid" (as
/// `fetch --json` prints), or text whose first whitespace-separated field
/// is the Study Instance UID (as `fetch` prints). Blank lines and `#`
/// comments give `None`.
pub fn parse_study_line(line: &str) -> Result<Option<Uid>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let raw = if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("the line `{}` is not valid JSON", crate::text::escape(line)))?;
        value
            .get("study_uid")
            .and_then(|v| v.as_str())
            .with_context(|| {
                format!(
                    "the JSON line `{}` has no \"study_uid\" string",
                    crate::text::escape(line)
                )
            })?
            .to_string()
    } else {
        line.split_whitespace().next().unwrap_or_default().to_string()
    };
    let uid =
        Uid::parse(&raw).with_context(|| format!("`{}` is not a Study Instance UID", crate::text::escape(&raw)))?;
    Ok(Some(uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    #[test]
    fn study_lines_text_json_and_noise() {
        assert_eq!(parse_study_line("1.2.3\tACC1\tcurrent").unwrap(), Some(uid("1.2.3")));
        assert_eq!(parse_study_line("  1.2.4  ").unwrap(), Some(uid("1.2.4")));
        assert_eq!(
            parse_study_line(r#"{"study_uid":"1.2.5","accession":"A"}"#).unwrap(),
            Some(uid("1.2.5"))
        );
        assert_eq!(parse_study_line("").unwrap(), None);
        assert_eq!(parse_study_line("# comment").unwrap(), None);
        assert!(parse_study_line("ACC123").is_err());
        assert!(parse_study_line("../../etc").is_err());
        assert!(parse_study_line(r#"{"accession":"A"}"#).is_err());
        assert!(parse_study_line("{not json").is_err());
    }
}
