//! What `watch` keeps in the cache besides studies: its own record of the
//! studies it has seen and delivered (a snapshot, `ROOT/watch/NAME.json`,
//! replaced atomically, and the log of changes since, `ROOT/watch/NAME.log`,
//! appended to), the status it shows to `retriever status`
//! (`ROOT/watch/NAME.status.json`, likewise), the lock that lets one `watch`
//! at a time use that record, and the delivery journal of a study it is
//! fetching itself.
//!
//! The record is kept apart from the studies on purpose: `prune` removes a
//! delivered study after its retention time while the cloud still lists it,
//! and the record is what keeps `watch` from fetching and sending it again.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

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
        let prefixes = [format!("{name}.json."), format!("{name}{STATUS_SUFFIX}.")];
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(n) = file_name.to_str() else { continue };
                // `write_atomic` names its temporary `NAME.PID.N.tmp`.
                if prefixes.iter().any(|p| n.starts_with(p.as_str())) && n.ends_with(".tmp") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(Some(WatchLock { _file: file }))
    }

    /// The snapshot of the record `name`, as last written, at most `limit`
    /// bytes of it; `None` if there is none yet.
    pub fn read_watch_record(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        check_name(name)?;
        read_record_file(&self.watch_dir().join(format!("{name}.json")), limit)
    }

    /// Replaces the snapshot of the record `name` atomically. Call with [`WatchLock`] held.
    pub fn write_watch_record(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name)?;
        let dir = self.watch_dir();
        fsutil::create_dir_all(&dir)?;
        fsutil::write_atomic(&dir.join(format!("{name}.json")), bytes)
    }

    /// The log of changes to the record `name`, at most `limit` bytes of
    /// it; `None` if there is none.
    pub fn read_watch_log(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        check_name(name)?;
        read_record_file(&self.watch_log_path(name), limit)
    }

    /// Appends `bytes` (whole lines) to the log of the record `name`, and
    /// syncs them: one sync for all of them. Call with [`WatchLock`] held.
    pub fn append_watch_log(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name)?;
        let dir = self.watch_dir();
        fsutil::create_dir_all(&dir)?;
        let path = self.watch_log_path(name);
        let mut file = fsutil::private_options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| fsutil::write_error(e, "open", &path))?;
        let created = file.metadata().map_or(true, |m| m.len() == 0);
        file.write_all(bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| fsutil::write_error(e, "write", &path))?;
        if created {
            // The log's name must outlive a power cut as its lines do.
            fsutil::sync_dir(&dir);
        }
        Ok(())
    }

    /// Empties the log of the record `name` (its snapshot now holds what
    /// it said). Call with [`WatchLock`] held.
    pub fn clear_watch_log(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.watch_log_path(name);
        let file = match fs::OpenOptions::new().write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(fsutil::write_error(e, "open", &path)),
        };
        file.set_len(0)
            .and_then(|()| file.sync_data())
            .map_err(|e| fsutil::write_error(e, "empty", &path))
    }

    fn watch_log_path(&self, name: &str) -> std::path::PathBuf {
        self.watch_dir().join(format!("{name}.log"))
    }

    /// Replaces the status of the watch `name` atomically. Call with [`WatchLock`] held.
    pub fn write_watch_status(&self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name)?;
        let dir = self.watch_dir();
        fsutil::create_dir_all(&dir)?;
        fsutil::write_atomic(&self.watch_status_path(name), bytes)
    }

    /// The status of the watch `name` as last written, at most `limit`
    /// bytes of it; `None` if that watch never wrote one.
    pub fn read_watch_status(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        check_name(name)?;
        let path = self.watch_status_path(name);
        let Some(bytes) = read_at_most(&path, limit)? else {
            return Ok(None);
        };
        if bytes.len() as u64 > limit {
            bail!(
                "the watch status `{}` is larger than {limit} bytes, which retriever never writes; remove it \
                 (the running `retriever watch` writes it again)",
                path.display()
            );
        }
        Ok(Some(bytes))
    }

    /// The names of the watches that left a status in this cache, sorted.
    pub fn watch_statuses(&self) -> Result<Vec<String>> {
        let dir = self.watch_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", dir.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list `{}`", dir.display()))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(STATUS_SUFFIX)) else {
                continue;
            };
            if check_name(name).is_ok() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// True when a `watch` holds the lock of the record `name` right now.
    ///
    /// Finding out takes the lock (shared) for an instant when nobody holds
    /// it; a `watch` starting at that instant tries again before it gives
    /// up (see `watch::run`). Creates nothing.
    pub fn is_watch_running(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let path = self.watch_dir().join(format!("{name}.lock"));
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("failed to open the lock file `{}`", path.display())),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("failed to lock `{}`", path.display())),
        }
    }

    fn watch_status_path(&self, name: &str) -> std::path::PathBuf {
        self.watch_dir().join(format!("{name}{STATUS_SUFFIX}"))
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

/// The file at `path`, at most `limit + 1` bytes of it (more than `limit`:
/// larger than allowed); `None` if there is none.
fn read_at_most(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    Ok(Some(bytes))
}

/// A file of a watch record, at most `limit` bytes: a larger one is not
/// one retriever wrote.
fn read_record_file(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let bytes = read_at_most(path, limit)?;
    if bytes.as_ref().is_some_and(|b| b.len() as u64 > limit) {
        bail!(
            "the watch record `{}` is larger than {limit} bytes, which retriever never writes; remove it to start \
             afresh (studies in it may then be sent again)",
            path.display()
        );
    }
    Ok(bytes)
}

/// How the status file of a watch is named after its record's name.
const STATUS_SUFFIX: &str = ".status.json";

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
        assert_eq!(cache.read_watch_record(name, 100).unwrap(), None);
        assert_eq!(cache.read_watch_log(name, 100).unwrap(), None);
        cache.clear_watch_log(name).unwrap();
        let held = cache.try_lock_watch(name).unwrap().expect("free");
        assert!(cache.try_lock_watch(name).unwrap().is_none(), "one watch at a time");
        cache.write_watch_record(name, b"{\"v\":1}").unwrap();
        assert_eq!(cache.read_watch_record(name, 7).unwrap().unwrap(), b"{\"v\":1}");
        let e = cache.read_watch_record(name, 6).unwrap_err();
        assert!(format!("{e:#}").contains("larger than 6 bytes"), "{e:#}");
        cache.append_watch_log(name, b"a\n").unwrap();
        cache.append_watch_log(name, b"b\n").unwrap();
        assert_eq!(cache.read_watch_log(name, 4).unwrap().unwrap(), b"a\nb\n");
        assert!(cache.read_watch_log(name, 3).is_err());
        cache.clear_watch_log(name).unwrap();
        assert_eq!(cache.read_watch_log(name, 4).unwrap().unwrap(), b"");
        drop(held);
        // A temporary left by a crash goes when the lock is taken again.
        let stale = dir.path().join("watch").join(format!("{name}.json.77.3.tmp"));
        fs::write(&stale, b"{").unwrap();
        let _held = cache.try_lock_watch(name).unwrap().expect("free again");
        assert!(!stale.exists());
        assert!(cache.read_watch_record("../x", 1).is_err());
        assert!(cache.append_watch_log("../x", b"").is_err());
    }

    #[test]
    fn status_is_found_bounded_and_its_lock_probed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let name = "PACS@127.0.0.1_104";
        assert_eq!(cache.watch_statuses().unwrap(), Vec::<String>::new());
        assert!(!cache.is_watch_running(name).unwrap(), "no lock file: not running");
        assert!(
            !dir.path().join("watch").join(format!("{name}.lock")).exists(),
            "creates nothing"
        );
        let held = cache.try_lock_watch(name).unwrap().expect("free");
        assert!(cache.is_watch_running(name).unwrap());
        cache.write_watch_status(name, b"{}").unwrap();
        cache.write_watch_record(name, b"{}").unwrap();
        assert_eq!(cache.watch_statuses().unwrap(), vec![name.to_string()]);
        assert_eq!(cache.read_watch_status(name, 2).unwrap().unwrap(), b"{}");
        let e = cache.read_watch_status(name, 1).unwrap_err();
        assert!(format!("{e:#}").contains("larger than 1 bytes"), "{e:#}");
        drop(held);
        assert!(!cache.is_watch_running(name).unwrap());
        // The probe let go: a watch can take the lock.
        let stale = dir.path().join("watch").join(format!("{name}.status.json.77.3.tmp"));
        fs::write(&stale, b"{").unwrap();
        let _held = cache.try_lock_watch(name).unwrap().expect("free again");
        assert!(!stale.exists());
        assert_eq!(cache.read_watch_status("other", 10).unwrap(), None);
    }
}
