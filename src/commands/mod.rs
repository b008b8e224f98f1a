//! One thin module per subcommand: each joins the pieces for its job.

pub mod config;
pub mod echo;
pub mod fetch;
pub mod ls;
pub mod prune;
pub mod store;
pub mod watch;

/// A field of a line on standard output that came from the cloud: `-` when
/// absent or empty, else escaped, so that a tab or newline in it can never
/// split the line (`store -` reads these lines).
pub fn field(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => crate::text::escape(v),
        _ => "-".to_string(),
    }
}

/// Human-readable size, e.g. `157.3 MB`.
pub fn human_bytes(bytes: u64) -> String {
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
