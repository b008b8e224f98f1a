//! Where the time of a fetch and of a delivery goes, for whoever tunes the
//! router or wonders why a study is slow: with `RETRIEVER_TIMINGS=1` in the
//! environment, a few lines per study on stderr (searches, listings, first
//! byte, transfer, the intake gate, syncs, association opens, the first
//! C-STORE answer). Off, every call here returns at once.
//!
//! Durations are summed per kind: work done in parallel (the downloads of
//! several series) can sum to more than the time that passed. Moments
//! (`at`) are counted from the process's first use of this module, which a
//! command makes as it starts.

use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The environment variable that turns timings on.
pub const ENV: &str = "RETRIEVER_TIMINGS";

/// What is known of one subject (a study's fetch, its delivery).
#[derive(Default)]
struct Entry {
    /// Kind → (total, how many).
    spans: Vec<(&'static str, Duration, u32)>,
    /// Kind → the first moment it happened, since the start.
    moments: Vec<(&'static str, Duration)>,
    bytes: u64,
}

fn table() -> Option<&'static Mutex<BTreeMap<String, Entry>>> {
    static TABLE: OnceLock<Option<Mutex<BTreeMap<String, Entry>>>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let on = std::env::var_os(ENV).is_some_and(|v| !v.is_empty() && v != "0");
            on.then(|| {
                start();
                Mutex::new(BTreeMap::new())
            })
        })
        .as_ref()
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Timings are being kept.
pub fn enabled() -> bool {
    table().is_some()
}

fn with(subject: &dyn Display, f: impl FnOnce(&mut Entry)) {
    if let Some(table) = table() {
        let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
        f(table.entry(subject.to_string()).or_default());
    }
}

/// Adds `took` to the time `subject` spent on `what`.
pub fn add(subject: &dyn Display, what: &'static str, took: Duration) {
    with(subject, |e| match e.spans.iter_mut().find(|(w, ..)| *w == what) {
        Some((_, total, n)) => {
            *total += took;
            *n += 1;
        }
        None => e.spans.push((what, took, 1)),
    });
}

/// Times `f` as time `subject` spent on `what`.
pub fn time<T>(subject: &dyn Display, what: &'static str, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let started = Instant::now();
    let out = f();
    add(subject, what, started.elapsed());
    out
}

/// Notes the moment `what` first happened to `subject`.
pub fn at(subject: &dyn Display, what: &'static str) {
    if !enabled() {
        return;
    }
    let now = start().elapsed();
    with(subject, |e| {
        if !e.moments.iter().any(|(w, _)| *w == what) {
            e.moments.push((what, now));
        }
    });
}

/// Counts `bytes` moved for `subject`.
pub fn bytes(subject: &dyn Display, bytes: u64) {
    with(subject, |e| e.bytes += bytes);
}

/// Prints what is known of `subject` on one line of stderr, and forgets it.
pub fn print(subject: &dyn Display) {
    let Some(table) = table() else {
        return;
    };
    let Some(entry) = table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&subject.to_string())
    else {
        return;
    };
    eprintln!("{}", line(subject, &entry));
}

fn line(subject: &dyn Display, e: &Entry) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut out = format!("timings: {subject}:");
    let mut parts = Vec::new();
    for (what, total, n) in &e.spans {
        match n {
            1 => parts.push(format!("{what} {}", ms(*total))),
            n => parts.push(format!("{what} {} ({n})", ms(*total))),
        }
    }
    if e.bytes > 0 {
        parts.push(format!("{} bytes", e.bytes));
    }
    for (what, since) in &e.moments {
        parts.push(format!("{what} at {:.3} s", since.as_secs_f64()));
    }
    let _ = write!(out, " {}", parts.join("; "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_sums_spans_and_keeps_first_moments() {
        let e = Entry {
            spans: vec![
                ("listing", Duration::from_millis(12), 1),
                ("sync", Duration::from_micros(3500), 4),
            ],
            moments: vec![("first byte", Duration::from_millis(250))],
            bytes: 42,
        };
        assert_eq!(
            line(&"fetch of study 1.2.3", &e),
            "timings: fetch of study 1.2.3: listing 12.0 ms; sync 3.5 ms (4); 42 bytes; first byte at 0.250 s"
        );
    }
}
