//! What `watch` keeps in the cache besides studies: its own record of the
//! studies it has seen and delivered (`ROOT/watch/NAME.json`, replaced
//! atomically), the lock that lets one `watch` at a time use that record,
//! and the delivery journal of a study it is fetching itself.
//!
//! The record is kept apart from the studies on purpose: `prune` removes a
//! delivered study after its retention time while the cloud still lists it,
//! and the record is what keeps `watch` from fetching and sending it again.

use std::fs::{self, File};
use std::io;

use anyhow::{Context, Result, bail};

use super::{Cache, Journal, fsutil, journal};
use crate::uid::Uid;

/// Held while a `watch` uses its record; released when dropped.
#[derive(Debug)]
pub struct WatchLock {
    _file: File,
}

impl Cache {
    fn watch_dir(&self) -> std::path::PathBuf {
        self.root.join("watch")
    }

    /// Takes the lock of the record `name` (a destination key) if no other
    /// process holds it; `None` if one does. Removes the temporary files a
    /// crash left next to that record.
    pub fn try_lock_watch(&self, name: &str) -> Result<Option<WatchLock>> {
        check_name(name)?;
        let dir = self.watch_dir();
        fsutil::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.lock"));
        let Some(file) = fsutil::try_lock(&path)? else {
            return Ok(None);
        };
        let prefix = format!("{name}.json.");
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(n) = file_name.to_str() else { continue };
                // `write_atomic` names its temporary `NAME.PID.N.tmp`.
                if n.starts_with(&prefix) && n.ends_with(".tmp") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(Some(WatchLock { _file: file }))
    }

    /// The record `name`, as last written; `None` if there is none yet.
    pub fn read_watch_record(&self, name: &str) -> Result<Option<Vec<u8>>> {
        check_name(name)?;
        let path = self.watch_dir().join(format!("{name}.json"));
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read `{}`", path.display())),
        }
    }

    /// Replaces the record `name` atomically. Call with [`WatchLock`] held.
    pub fn write_watch_record(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name)?;
        let dir = self.watch_dir();
        fsutil::create_dir_all(&dir)?;
        fsutil::write_atomic(&dir.join(format!("{name}.json")), bytes)
    }

    /// Opens the delivery journal of `study` for `destination` without
    /// locking the study: for a caller that holds the study's lock through
    /// its own fetch (delivery streams instances to the destination as `watch`
    /// lands them), since a second lock on the study from the same process
    /// would wait for the first.
    pub fn open_journal(&self, study: &Uid, destination: &str) -> Result<Journal> {
        Journal::open(&journal::path(&self.study_dir(study), destination))
    }
}

/// A record name becomes a file name: only what a destination key holds.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "@._-".contains(c))
    {
        bail!("`{name}` cannot name a watch record");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_under_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let name = "PACS@127.0.0.1_104";
        assert_eq!(cache.read_watch_record(name).unwrap(), None);
        let held = cache.try_lock_watch(name).unwrap().expect("free");
        assert!(cache.try_lock_watch(name).unwrap().is_none(), "one watch at a time");
        cache.write_watch_record(name, b"{\"v\":1}").unwrap();
        assert_eq!(cache.read_watch_record(name).unwrap().unwrap(), b"{\"v\":1}");
        drop(held);
        // A temporary left by a crash goes when the lock is taken again.
        let stale = dir.path().join("watch").join(format!("{name}.json.77.3.tmp"));
        fs::write(&stale, b"{").unwrap();
        let _held = cache.try_lock_watch(name).unwrap().expect("free again");
        assert!(!stale.exists());
        assert!(cache.read_watch_record("../x").is_err());
    }
}
