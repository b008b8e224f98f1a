//! The search `watch` repeats: QIDO-RS study matching keys, from the config
//! file's `watch_filter` or `--filter KEY=VALUE`, checked once. A date key
//! may be a moving window, `last 24 hours`, which becomes a date range
//! (`StudyDate=YYYYMMDD-`) anew at each search.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::priors::date_of;

/// One matching key of the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    key: String,
    value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// Sent as written.
    Literal(String),
    /// A date key: from this long ago until now (the text as written, for messages).
    Last(Duration, String),
}

/// The widest gap between UTC and a local time (UTC−12 to UTC+14). Study
/// dates are local dates and this machine's time zone is not known here, so
/// a window starts this much earlier: it may take in a few studies more,
/// never miss one.
const LOCAL_TIME_SLACK: Duration = Duration::from_secs(14 * 3600);

impl Filter {
    /// Parses `KEY=VALUE`, as `--filter` takes it.
    pub fn parse_flag(raw: &str) -> Result<Filter> {
        let (key, value) = raw.split_once('=').with_context(|| {
            format!("the filter `{raw}` is not KEY=VALUE (e.g. ModalitiesInStudy=CT or \"StudyDate=last 24 hours\")")
        })?;
        Filter::parse(key, value)
    }

    /// Checks a key (a DICOM keyword such as `ModalitiesInStudy`, or a tag
    /// such as `00080061`) and its value.
    pub fn parse(key: &str, value: &str) -> Result<Filter> {
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            bail!(
                "`{key}` is not a QIDO-RS matching key; use a DICOM keyword such as ModalitiesInStudy, or a tag such as 00080061"
            );
        }
        if ["limit", "offset", "includefield", "fuzzymatching"]
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k))
        {
            bail!("`{key}` is not a matching key: watch sets it itself");
        }
        let value = value.trim();
        if value.is_empty() {
            bail!("the filter `{key}` has no value");
        }
        let window = value
            .get(..5)
            .filter(|head| head.eq_ignore_ascii_case("last "))
            .map(|_| value[5..].trim());
        let value = match window {
            Some(span) if key.ends_with("Date") || key.eq_ignore_ascii_case("00080020") => {
                // humantime wants `24hours` and `1week`; people write `24 hours` and `week`.
                let mut compact: String = span.chars().filter(|c| !c.is_whitespace()).collect();
                if compact.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    compact.insert(0, '1');
                }
                let duration = humantime::parse_duration(&compact).with_context(|| {
                    format!("`{value}` in the filter `{key}` is not a window such as `last 24 hours` or `last 7d`")
                })?;
                Value::Last(duration, value.to_string())
            }
            Some(_) => {
                bail!("the filter `{key}={value}`: a window `last ...` applies to a date key, such as StudyDate")
            }
            None => Value::Literal(value.to_string()),
        };
        Ok(Filter {
            key: key.to_string(),
            value,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value to send in a search made at `now`.
    pub fn value_at(&self, now: SystemTime) -> String {
        match &self.value {
            Value::Literal(v) => v.clone(),
            Value::Last(span, _) => {
                let since = now.checked_sub(*span + LOCAL_TIME_SLACK).unwrap_or(UNIX_EPOCH);
                format!("{}-", date_of(since))
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::Literal(v) | Value::Last(_, v) => write!(f, "{}={v}", self.key),
        }
    }
}

/// The search when none is configured: the studies of the last day.
pub fn default_filters() -> Vec<Filter> {
    vec![Filter::parse("StudyDate", "last 24 hours").expect("a valid default filter")]
}

/// The filters as one line, for messages.
pub fn describe(filters: &[Filter]) -> String {
    filters.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_window_filters() {
        let f = Filter::parse_flag("ModalitiesInStudy=CT").unwrap();
        assert_eq!(
            (f.key(), f.value_at(SystemTime::now())),
            ("ModalitiesInStudy", "CT".into())
        );
        assert_eq!(f.to_string(), "ModalitiesInStudy=CT");

        // 2026-11-27 22:00 UTC; 24 hours back and 14 hours of time zones: 2026-11-26 08:00.
        let now = UNIX_EPOCH + Duration::from_secs(1_795_816_800);
        assert_eq!(date_of(now), "20261127");
        let w = Filter::parse_flag("StudyDate=last 24 hours").unwrap();
        assert_eq!(w.value_at(now), "20261126-");
        assert_eq!(w.to_string(), "StudyDate=last 24 hours");
        assert_eq!(
            Filter::parse("StudyDate", "Last 7d").unwrap().value_at(now),
            "20261120-"
        );
        assert_eq!(
            Filter::parse("StudyDate", "20261101-").unwrap().value_at(now),
            "20261101-"
        );
        assert_eq!(
            Filter::parse("StudyDate", "last week").unwrap().value_at(now),
            "20261120-"
        );
        assert_eq!(default_filters(), vec![w]);
        assert_eq!(date_of(UNIX_EPOCH), "19700101");
        assert_eq!(date_of(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229");
    }

    #[test]
    fn bad_filters_say_why() {
        for (raw, why) in [
            ("ModalitiesInStudy", "is not KEY=VALUE"),
            ("=CT", "is not a QIDO-RS matching key"),
            ("Modality In=CT", "is not a QIDO-RS matching key"),
            ("limit=5", "watch sets it itself"),
            ("ModalitiesInStudy=", "has no value"),
            ("StudyDate=last fortnight", "is not a window"),
            ("PatientID=last 2d", "applies to a date key"),
        ] {
            let e = format!("{:#}", Filter::parse_flag(raw).unwrap_err());
            assert!(e.contains(why), "{raw}: {e}");
        }
    }
}
