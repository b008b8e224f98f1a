//! How sizes and durations are written for people, and read back from a
//! flag or the config file: one function per form, so that every message,
//! line and table writes the same quantity the same way.

use std::fmt;
use std::time::Duration;

/// A size or duration that cannot be read: the text as given, and what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Size(String),
    Duration(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size(raw) => write!(f, "`{raw}` is not a size; write e.g. 512MiB, 4GiB or a number of bytes"),
            Self::Duration(raw) => write!(f, "`{raw}` is not a duration; write e.g. 30s, 90m, 4h or 7d"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads a size such as `4GiB`, `512 MiB`, `500MB` or `1048576` (bytes).
/// `K`, `M`, `G`, `T` and `KiB`… are powers of 1024; `KB`, `MB`… powers of 1000.
pub fn parse_size(raw: &str) -> Result<u64, ParseError> {
    let text = raw.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(ParseError::Size(raw.to_string())),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| ParseError::Size(raw.to_string()))
}

/// Reads a duration such as `90m`, `4h`, `30s`, `2d` or `1h 30m`.
pub fn parse_duration(raw: &str) -> Result<Duration, ParseError> {
    humantime::parse_duration(raw.trim()).map_err(|_| ParseError::Duration(raw.to_string()))
}

/// A size in decimal units, e.g. `157.3 MB`, `512 B` (transfer totals and rates).
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A size in binary units, as a size setting is written (`4GiB` is shown
/// `4 GiB`): `512 MiB`, `1.5 GiB`, `300 bytes`. For limits and free space.
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{:.1} {name}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// A duration in full, e.g. `1m 30s 250ms`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A delay to the millisecond: `1s 500ms`, not the nanoseconds of jitter.
pub fn whole_ms(d: Duration) -> String {
    duration(Duration::from_millis(d.as_millis() as u64))
}

/// A duration to the second, at least `1s`: for a view refreshed every second.
pub fn whole_seconds(d: Duration) -> String {
    duration(Duration::from_secs(d.as_secs().max(1)))
}

/// A duration in its two largest units, as durations are written on the
/// command line: `4h 12m`, `7d`, `90s` is `1m 30s`, `0s`.
pub fn two_units(d: Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / 86400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let text: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_string()
    } else {
        text.join(" ")
    }
}

/// `60s`, `90m`, `4h`, `7d`: the largest unit that gives a whole number of
/// at least 2, as a setting is written in the config file.
pub fn setting_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        return duration(d);
    }
    [(86_400, "d"), (3_600, "h"), (60, "m")]
        .into_iter()
        .find(|(unit, _)| secs.is_multiple_of(*unit) && secs / unit >= 2)
        .map_or_else(|| format!("{secs}s"), |(unit, name)| format!("{}{name}", secs / unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_they_are_written() {
        let s = |secs| two_units(Duration::from_secs(secs));
        assert_eq!(s(0), "0s");
        assert_eq!(s(90), "1m 30s");
        assert_eq!(s(4 * 3600), "4h");
        assert_eq!(s(4 * 3600 + 12 * 60 + 5), "4h 12m");
        assert_eq!(s(7 * 86400), "7d");
        assert_eq!(s(86400 + 59), "1d");
    }

    #[test]
    fn settings_use_the_largest_whole_unit() {
        assert_eq!(setting_duration(Duration::from_secs(60)), "60s");
        assert_eq!(setting_duration(Duration::from_secs(120)), "2m");
        assert_eq!(setting_duration(Duration::from_secs(4 * 3600)), "4h");
        assert_eq!(setting_duration(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(setting_duration(Duration::from_millis(1500)), "1s 500ms");
    }

    #[test]
    fn sizes_parse_in_both_kinds_of_units() {
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size(" 512 MiB ").unwrap(), 512 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        for bad in ["", "GiB", "4 parsecs", "-1GiB", "1.5GiB", "99999999999TiB"] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains("is not a size"), "{bad}: {e}");
        }
        assert_eq!(parse_duration(" 1h 30m ").unwrap(), Duration::from_secs(5400));
        assert_eq!(binary_size(4 << 30).replace(' ', ""), "4GiB");
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .to_string()
                .contains("`soon` is not a duration")
        );
    }

    #[test]
    fn sizes_and_delays() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(157_300_000), "157.3 MB");
        assert_eq!(whole_ms(Duration::from_nanos(1_500_123_456)), "1s 500ms");
        assert_eq!(whole_seconds(Duration::from_millis(10)), "1s");
    }
}
