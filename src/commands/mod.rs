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
