//! Log lines for a router that runs as a service: one line per event, an
//! RFC 3339 time stamp, a level and the message, no colour and no progress,
//! written to stderr or appended to a file (`--log-file`, `log_file`) that is
//! rotated by size so that months of running never fill the disk.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result};

/// A log file is rotated once it would grow past this.
pub const ROTATE_AT: u64 = 10 << 20;
/// Rotated files kept: `FILE.1` (the newest) to `FILE.5`.
pub const KEEP: usize = 5;

/// How much a line matters, for whoever reads or filters the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        })
    }
}

/// `2026-12-03T14:39:46Z WARN message`: one line, whatever the message holds
/// (a newline in it would forge a line of its own).
pub fn format_line(at: SystemTime, level: Level, message: &str) -> String {
    let message = message.replace(['\n', '\r'], " ");
    format!("{} {level} {message}", humantime::format_rfc3339_seconds(at))
}

/// Where log lines go.
pub enum LogOut {
    Stderr,
    File(Mutex<Rotating>),
    /// For tests.
    #[cfg(test)]
    Collect(Box<dyn Fn(&str) + Send + Sync>),
}

impl LogOut {
    /// Appends to `path` (created if missing), rotated at [`ROTATE_AT`].
    pub fn file(path: &Path) -> Result<LogOut> {
        Ok(LogOut::File(Mutex::new(Rotating::open(path, ROTATE_AT)?)))
    }

    pub fn write(&self, line: &str) {
        match self {
            LogOut::Stderr => eprintln!("{line}"),
            LogOut::File(file) => {
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = file.write_line(line) {
                    // The log is where errors go; stderr is all that is left.
                    eprintln!("retriever: {e:#}");
                    eprintln!("{line}");
                }
            }
            #[cfg(test)]
            LogOut::Collect(f) => f(line),
        }
    }
}

/// A file appended to line by line, renamed to `FILE.1` (and the older ones
/// shifted up to `FILE.{KEEP}`) before a line would take it past `limit`.
pub struct Rotating {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    limit: u64,
}

impl Rotating {
    pub fn open(path: &Path, limit: u64) -> Result<Rotating> {
        let mut r = Rotating {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            limit,
        };
        r.reopen()?;
        Ok(r)
    }

    fn reopen(&mut self) -> Result<()> {
        let file = open_append(&self.path)
            .with_context(|| format!("failed to open the log file `{}`", self.path.display()))?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    pub fn write_line(&mut self, line: &str) -> Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.limit {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let file = self.file.as_mut().expect("opened above");
        writeln!(file, "{line}")
            .with_context(|| format!("failed to write to the log file `{}`", self.path.display()))?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        // Closed first: Windows renames no file that is open without
        // FILE_SHARE_DELETE, and a reader's view must not move under it.
        self.file = None;
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let _ = std::fs::remove_file(numbered(KEEP));
        for n in (1..KEEP).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))
                    .with_context(|| format!("failed to rotate the log file `{}`", from.display()))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))
            .with_context(|| format!("failed to rotate the log file `{}`", self.path.display()))?;
        self.reopen()
    }
}

/// Opens for appending. On Windows others may read, write, rename or delete
/// it meanwhile (a log viewer, a rotation by another tool).
fn open_append(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
        opts.share_mode(0x1 | 0x2 | 0x4);
    }
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_a_time_stamp_a_level_and_no_line_break() {
        let line = format_line(SystemTime::UNIX_EPOCH, Level::Warn, "a\nb\rc");
        assert_eq!(line, "1970-01-01T00:00:00Z WARN a b c");
    }

    #[test]
    fn the_file_is_rotated_before_it_passes_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watch.log");
        let mut log = Rotating::open(&path, 100).unwrap();
        for n in 0..40 {
            log.write_line(&format!("line {n:02} {}", "x".repeat(20))).unwrap();
        }
        let numbered = |n: usize| dir.path().join(format!("watch.log.{n}"));
        for n in 1..=KEEP {
            let len = std::fs::metadata(numbered(n)).unwrap().len();
            assert!(len <= 100, "{n}: {len}");
        }
        assert!(!numbered(KEEP + 1).exists());
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with(&format!("line 39 {}\n", "x".repeat(20))), "{last}");
        let newest = std::fs::read_to_string(numbered(1)).unwrap();
        assert!(newest.contains("line 3"), "{newest}");
    }
}
