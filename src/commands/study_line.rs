//! The one printer of the lines `fetch`, `store` and `watch` write on stdout,
//! one per study: tab-separated text with the Study Instance UID first (what
//! `store -` reads back), or with `--json` one JSON object per line. Each
//! command says which fields its line has; how a field is written (escaped,
//! `-` when absent) is decided here only.

use std::io::{self, Write};

use serde_json::{Map, Value};

use crate::uid::Uid;

/// One study's line: its fields in text order, each with its JSON key and
/// value, its text, or both.
pub struct StudyLine {
    fields: Vec<(Option<Json>, Option<String>)>,
}

/// A field's key and value in the JSON line.
type Json = (&'static str, Value);

impl StudyLine {
    /// A line for `study`: `study_uid` first.
    pub fn new(study: &Uid) -> StudyLine {
        StudyLine {
            fields: vec![(
                Some(("study_uid", Value::from(study.as_str()))),
                Some(study.to_string()),
            )],
        }
    }

    /// A value that came from the cloud: `-` in text when absent or empty,
    /// else escaped, so that a tab or newline in it can never split the line.
    pub fn cloud(mut self, key: &'static str, value: Option<&str>) -> StudyLine {
        self.fields
            .push((Some((key, Value::from(value))), Some(super::field(value))));
        self
    }

    /// A value of ours, written as `text` in the text line.
    pub fn with(mut self, key: &'static str, json: impl Into<Value>, text: impl Into<String>) -> StudyLine {
        self.fields.push((Some((key, json.into())), Some(text.into())));
        self
    }

    /// A value only the text line has.
    pub fn text_only(mut self, text: impl Into<String>) -> StudyLine {
        self.fields.push((None, Some(text.into())));
        self
    }

    /// A value only the JSON line has.
    pub fn json_only(mut self, key: &'static str, json: impl Into<Value>) -> StudyLine {
        self.fields.push((Some((key, json.into())), None));
        self
    }

    /// A value only the JSON line has, and only when there is one.
    pub fn json_only_if(mut self, key: &'static str, json: Option<impl Into<Value>>) -> StudyLine {
        if let Some(json) = json {
            self.fields.push((Some((key, json.into())), None));
        }
        self
    }

    /// Writes the line and flushes it, so that a pipeline reader gets each
    /// study as soon as it is done.
    pub fn write(&self, out: &mut impl Write, json: bool) -> io::Result<()> {
        if json {
            let object: Map<String, Value> = self
                .fields
                .iter()
                .filter_map(|(json, _)| json.as_ref())
                .map(|(key, value)| (key.to_string(), value.clone()))
                .collect();
            writeln!(out, "{}", Value::Object(object))?;
        } else {
            let text: Vec<&str> = self.fields.iter().filter_map(|(_, text)| text.as_deref()).collect();
            writeln!(out, "{}", text.join("\t"))?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: bool) -> String {
        let mut out = Vec::new();
        StudyLine::new(&Uid::parse("1.2.3").unwrap())
            .cloud("accession", Some("A\tB"))
            .cloud("patient_id", None)
            .json_only("prior_of", Value::Null)
            .with("instances", 3, "3 instances")
            .text_only("1 sent")
            .write(&mut out, json)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_and_json_lines() {
        assert_eq!(line(false), "1.2.3\tA\\tB\t-\t3 instances\t1 sent\n");
        let v: Value = serde_json::from_str(&line(true)).unwrap();
        assert_eq!(v["study_uid"], "1.2.3");
        assert_eq!(v["accession"], "A\tB");
        assert_eq!(v["patient_id"], Value::Null);
        assert_eq!(v["prior_of"], Value::Null);
        assert_eq!(v["instances"], 3);
    }
}
