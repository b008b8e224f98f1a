//! How sizes and durations are written for people: one function per form,
//! so that every message, line and table writes the same quantity the same way.

use std::time::Duration;

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
    fn sizes_and_delays() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(157_300_000), "157.3 MB");
        assert_eq!(whole_ms(Duration::from_nanos(1_500_123_456)), "1s 500ms");
        assert_eq!(whole_seconds(Duration::from_millis(10)), "1s");
    }
}
