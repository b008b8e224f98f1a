//! Taking things out of the cache: whole studies, for `prune`, and what
//! crashed or killed runs left behind.
//!
//! A study goes in two steps. Its directory is first renamed into
//! `ROOT/trash/`: one atomic rename, after which no command sees the study
//! (nor anything that looks like one). Only then is it deleted, file by
//! file. A crash in between leaves a directory in the trash, which the next
//! sweep deletes.
//!
//! Windows refuses to delete a file another program holds open (a viewer,
//! a virus scanner), and to rename a directory that contains one. A study in
//! that state is left as it was, or its remains left in the trash, and the
//! next run tries again: it never fails the whole prune (see [`is_in_use`]).
//!
//! Lock files are deleted once their study is gone, or `locks/` would grow
//! by one file per study forever. That is safe only because every locker
//! checks, after taking a lock, that the file it locked still has its name
//! (`Cache::take_lock`); on Windows a lock file is deleted only when no
//! process has it open.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::{Cache, LockMode, StudyEntry, Take, fsutil};
use crate::uid::Uid;

/// Root-level temporary files belong to no study lock, so a write may be
/// in flight on one; they count as leftovers only once this old, whatever
/// the retention.
const UNLOCKED_TEMPORARY_MIN_AGE: Duration = Duration::from_secs(3600);

/// What removing a study did.
#[derive(Debug)]
pub struct Removal {
    /// Bytes deleted.
    pub freed: u64,
    /// What could not be deleted yet. The study is gone from the cache
    /// either way; the next sweep deletes the rest.
    pub left: Option<Left>,
}

/// The part of a removed study still in the trash.
#[derive(Debug)]
pub struct Left {
    pub path: PathBuf,
    pub bytes: u64,
    /// The first deletion that failed (see [`is_in_use`]).
    pub error: io::Error,
}

/// Something a crashed or killed run left in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub kind: LeftoverKind,
    pub path: PathBuf,
    pub bytes: u64,
    /// The study whose lock guards it, if any.
    study: Option<Uid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftoverKind {
    /// The remains of a removed study: a prune was killed while deleting
    /// it, or a file was open in another program.
    Trash,
    /// A download (`tmp/*.part`) no fetch is working on.
    PartialDownload,
    /// The temporary file of an atomic write that was never renamed.
    Temporary,
    /// A study directory without a manifest: a fetch died as it began.
    StudyWithoutManifest,
    /// The lock file of a study no longer in the cache.
    LockFile,
}

impl std::fmt::Display for LeftoverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeftoverKind::Trash => "remains of a removed study",
            LeftoverKind::PartialDownload => "abandoned partial download",
            LeftoverKind::Temporary => "abandoned temporary file",
            LeftoverKind::StudyWithoutManifest => "study directory without a manifest",
            LeftoverKind::LockFile => "lock file of a removed study",
        })
    }
}

/// Held by the one `prune` that runs at a time; released when dropped.
#[derive(Debug)]
pub struct PruneLock {
    _file: File,
}

/// True when `e` comes from a file or directory that another program holds
/// open, which Windows does not let us delete or rename: not a failure,
/// a thing to try again on the next run.
pub fn is_in_use(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(io_error_in_use)
}

/// [`is_in_use`] for an `io::Error`.
pub fn io_error_in_use(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::ResourceBusy {
        return true;
    }
    // ERROR_ACCESS_DENIED (also what a file pending deletion gives),
    // ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION.
    cfg!(windows) && matches!(e.raw_os_error(), Some(5 | 32 | 33))
}

/// True when opening a lock file failed only because a prune is deleting
/// it at this instant (Windows: it holds the file unshared, then it is
/// pending deletion); the open is retried.
pub(super) fn is_lock_file_being_removed(e: &io::Error) -> bool {
    cfg!(windows) && matches!(e.raw_os_error(), Some(5 | 32))
}

impl Cache {
    fn trash_dir(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// Takes the prune lock if no other prune holds it; `None` if one does.
    pub fn try_lock_prune(&self) -> Result<Option<PruneLock>> {
        let path = self.locks_dir().join("prune.lock");
        Ok(fsutil::try_lock(&path)?.map(|file| PruneLock { _file: file }))
    }

    /// Bytes the files of `study` take.
    pub fn study_size(&self, study: &Uid) -> u64 {
        fsutil::tree_size(&self.study_dir(study))
    }

    /// When the manifest of `study` was last written, for a manifest whose
    /// own times cannot be read.
    pub fn manifest_modified(&self, study: &Uid) -> Option<SystemTime> {
        fs::metadata(self.study_dir(study).join("manifest.json"))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Removes a study, locked exclusively by the caller: first out of
    /// sight (renamed into the trash), then from the disk. An error means
    /// the study is still there, untouched (see [`is_in_use`]).
    pub fn remove_study(&self, entry: StudyEntry) -> Result<Removal> {
        let bytes = fsutil::tree_size(&entry.dir);
        let target = self.move_to_trash(&entry)?;
        self.remove_lock_file_of(entry);
        // The study's lock is released: a fetch of it may start again now
        // and write a new directory while the old one is being deleted.
        Ok(match fsutil::remove_tree(&target) {
            Ok(()) => Removal {
                freed: bytes,
                left: None,
            },
            Err(error) => {
                let left = fsutil::tree_size(&target);
                Removal {
                    freed: bytes.saturating_sub(left),
                    left: Some(Left {
                        path: target,
                        bytes: left,
                        error,
                    }),
                }
            }
        })
    }

    /// Takes a locked study out of sight: renames it into the trash, and
    /// makes that durable before any deletion starts, so that after a
    /// crash or power cut the study is either whole in `studies/` or (part)
    /// in the trash. Returns where it went.
    fn move_to_trash(&self, entry: &StudyEntry) -> Result<PathBuf> {
        let trash = self.trash_dir();
        fsutil::create_dir_all(&trash)?;
        let target = trash.join(fsutil::unique_name(entry.uid.as_str(), "removed"));
        fsutil::rename(&entry.dir, &target)?;
        fsutil::sync_dir(&self.studies_dir());
        fsutil::sync_dir(&trash);
        Ok(target)
    }

    /// Deletes the lock file of a study just moved out, and releases the lock.
    fn remove_lock_file_of(&self, entry: StudyEntry) {
        let path = self.lock_path(&entry.uid);
        if cfg!(unix) {
            // Deleted while still locked: whoever opened it meanwhile finds,
            // once it gets the lock, that it is no longer under that name.
            let _ = fs::remove_file(&path);
            drop(entry);
        } else {
            drop(entry);
            // If a process waits on it, it stays; the sweep retries.
            let _ = remove_lock_file(&path);
        }
    }

    /// What crashed runs left behind. Partial downloads, temporary files
    /// and study directories without a manifest count once their last
    /// change is `older_than` ago at `now`; the trash and the lock files of
    /// studies no longer in the cache count whatever their age.
    pub fn leftovers(&self, older_than: Duration, now: SystemTime) -> Result<Vec<Leftover>> {
        let old = |path: &Path, min: Duration| {
            fsutil::newest_mtime(path).is_some_and(|t| now.duration_since(t).unwrap_or_default() >= min)
        };
        let mut out = Vec::new();
        for path in list_dir(&self.trash_dir())? {
            out.push(Leftover {
                kind: LeftoverKind::Trash,
                bytes: fsutil::tree_size(&path),
                path,
                study: None,
            });
        }
        for dir in list_dir(&self.studies_dir())? {
            let Some(uid) = file_name(&dir).and_then(|n| Uid::parse(n).ok()) else {
                continue;
            };
            if !dir.is_dir() {
                continue;
            }
            if !dir.join("manifest.json").exists() {
                if old(&dir, older_than) {
                    out.push(Leftover {
                        kind: LeftoverKind::StudyWithoutManifest,
                        bytes: fsutil::tree_size(&dir),
                        path: dir,
                        study: Some(uid),
                    });
                }
                continue;
            }
            for path in list_dir(&dir.join("tmp"))? {
                if file_name(&path).is_some_and(|n| n.ends_with(".part")) && old(&path, older_than) {
                    out.push(Leftover {
                        kind: LeftoverKind::PartialDownload,
                        bytes: fsutil::tree_size(&path),
                        path,
                        study: Some(uid.clone()),
                    });
                }
            }
            for path in list_dir(&dir)? {
                if file_name(&path).is_some_and(fsutil::is_atomic_temporary) && old(&path, older_than) {
                    out.push(Leftover {
                        kind: LeftoverKind::Temporary,
                        bytes: fsutil::tree_size(&path),
                        path,
                        study: Some(uid.clone()),
                    });
                }
            }
        }
        for path in list_dir(&self.root)? {
            if file_name(&path).is_some_and(fsutil::is_atomic_temporary)
                && old(&path, older_than.max(UNLOCKED_TEMPORARY_MIN_AGE))
            {
                out.push(Leftover {
                    kind: LeftoverKind::Temporary,
                    bytes: fsutil::tree_size(&path),
                    path,
                    study: None,
                });
            }
        }
        for path in list_dir(&self.locks_dir())? {
            let Some(uid) = file_name(&path)
                .and_then(|n| n.strip_suffix(".lock"))
                .and_then(|n| Uid::parse(n).ok())
            else {
                continue;
            };
            if !self.study_dir(&uid).exists() {
                out.push(Leftover {
                    kind: LeftoverKind::LockFile,
                    path,
                    bytes: 0,
                    study: Some(uid),
                });
            }
        }
        Ok(out)
    }

    /// Deletes a leftover found by [`Cache::leftovers`]. `Ok(false)`: it is
    /// in use after all (its study is locked), and stays.
    pub fn remove_leftover(&self, leftover: &Leftover) -> Result<bool> {
        let failed =
            |e: io::Error| anyhow::Error::new(e).context(format!("failed to delete `{}`", leftover.path.display()));
        match (leftover.kind, &leftover.study) {
            (LeftoverKind::LockFile, Some(uid)) => self.remove_orphan_lock_file(uid).map_err(failed),
            (LeftoverKind::Trash, _) | (_, None) => fsutil::remove_tree(&leftover.path).map(|()| true).map_err(failed),
            (kind, Some(uid)) => {
                // Under the study's lock nobody is downloading into it or
                // writing its manifest: what is there is abandoned.
                let Some(entry) = self.try_lock_study(uid)? else {
                    return Ok(false);
                };
                if kind == LeftoverKind::StudyWithoutManifest {
                    if entry.dir.join("manifest.json").exists() {
                        // A study again: not a leftover any more.
                        return Ok(false);
                    }
                    if !entry.dir.exists() {
                        self.remove_lock_file_of(entry);
                        return Ok(true);
                    }
                    // Out of sight first, as for a study.
                    return match self.remove_study(entry)?.left {
                        None => Ok(true),
                        Some(left) => Err(left.error).context(format!("failed to delete `{}`", left.path.display())),
                    };
                }
                fsutil::remove_tree(&leftover.path).map_err(failed)?;
                drop(entry);
                if kind == LeftoverKind::PartialDownload
                    && let Some(tmp) = leftover.path.parent()
                {
                    // Gone if empty; fetch makes it again when it needs it.
                    let _ = fs::remove_dir(tmp);
                }
                Ok(true)
            }
        }
    }

    /// Deletes the lock file of a study that is not in the cache, unless a
    /// process is using it. `Ok(false)`: in use, or the study is back.
    fn remove_orphan_lock_file(&self, uid: &Uid) -> io::Result<bool> {
        if cfg!(unix) {
            let taken = self
                .take_lock(uid, LockMode::Exclusive, Take::Try, || {})
                .map_err(io::Error::other)?;
            let Some(file) = taken else {
                return Ok(false);
            };
            // Nobody creates the study without this lock, so its absence holds.
            if self.study_dir(uid).exists() {
                return Ok(false);
            }
            let removed = fs::remove_file(self.lock_path(uid));
            drop(file);
            removed.map(|()| true)
        } else {
            if self.study_dir(uid).exists() {
                return Ok(false);
            }
            // Deleting a lock file that nobody has open is always safe: the
            // next locker makes a new one.
            match remove_lock_file(&self.lock_path(uid)) {
                Ok(()) => Ok(true),
                Err(e) if io_error_in_use(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Deletes a lock file only if no process has it open (Windows): opened
/// without sharing, so that the open fails if anyone holds it and nobody
/// can open it before it is gone, and deleted when closed.
#[cfg(windows)]
fn remove_lock_file(path: &Path) -> io::Result<()> {
    use std::os::windows::fs::OpenOptionsExt;
    const DELETE: u32 = 0x0001_0000;
    const FILE_FLAG_DELETE_ON_CLOSE: u32 = 0x0400_0000;
    let file = std::fs::OpenOptions::new()
        .access_mode(DELETE)
        .share_mode(0)
        .custom_flags(FILE_FLAG_DELETE_ON_CLOSE)
        .open(path);
    match file {
        Ok(file) => {
            drop(file);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(windows))]
fn remove_lock_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The entries of `dir`; none if it does not exist.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => out.push(entry.path()),
            // Removed while being listed: by another process, fine.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", dir.display())),
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

#[cfg(test)]
mod tests {

    use super::super::{Manifest, StudyInfo, now_rfc3339};
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    fn add_study(cache: &Cache, study: &str) {
        let entry = cache.lock_study(&uid(study), LockMode::Exclusive, || {}).unwrap();
        entry
            .write_manifest(&Manifest {
                version: Manifest::VERSION,
                study: StudyInfo::new(uid(study)),
                roles: vec![],
                fetched_at: now_rfc3339(),
                completed_at: Some(now_rfc3339()),
                expected: [(uid(&format!("{study}.1")), uid(&format!("{study}.9")))].into(),
            })
            .unwrap();
        entry
            .put_test_instance(&uid(&format!("{study}.9")), &uid(&format!("{study}.1")), 7)
            .unwrap();
    }

    #[test]
    fn a_removed_study_is_gone_with_its_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        add_study(&cache, "1.2.3");
        add_study(&cache, "1.2.4");
        let entry = cache.try_lock_study(&uid("1.2.3")).unwrap().unwrap();
        let removal = cache.remove_study(entry).unwrap();
        assert!(removal.left.is_none(), "{removal:?}");
        assert!(removal.freed >= 1000, "{removal:?}");
        assert_eq!(cache.studies().unwrap(), vec![uid("1.2.4")]);
        assert!(!dir.path().join("locks/1.2.3.lock").exists());
        assert!(dir.path().join("locks/1.2.4.lock").exists());
        assert_eq!(fs::read_dir(dir.path().join("trash")).unwrap().count(), 0);
        // The study can come back.
        add_study(&cache, "1.2.3");
        assert_eq!(cache.studies().unwrap().len(), 2);
    }

    /// A prune that dies (kill -9, power cut) right after moving a study
    /// out of sight: the study is gone for every command, and what it left
    /// (the study in the trash, its lock file) is a leftover the next
    /// prune deletes, whatever the retention; the study can come back.
    #[test]
    fn a_prune_dead_after_moving_a_study_out_leaves_only_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        add_study(&cache, "1.2.3");
        add_study(&cache, "1.2.4");
        let entry = cache.try_lock_study(&uid("1.2.3")).unwrap().unwrap();
        let moved = cache.move_to_trash(&entry).unwrap();
        // The process dies: its lock goes with it, nothing else happens.
        drop(entry);
        assert_eq!(cache.studies().unwrap(), vec![uid("1.2.4")]);
        assert!(cache.read_manifest(&uid("1.2.3")).unwrap().is_none());
        assert!(moved.join("manifest.json").is_file(), "moved whole");

        let leftovers = cache.leftovers(Duration::from_secs(3600), SystemTime::now()).unwrap();
        let kinds: Vec<LeftoverKind> = leftovers.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [LeftoverKind::Trash, LeftoverKind::LockFile], "{leftovers:?}");
        assert_eq!(leftovers[0].path, moved);
        assert!(leftovers[0].bytes >= 1000);
        for leftover in &leftovers {
            assert!(cache.remove_leftover(leftover).unwrap(), "{leftover:?}");
        }
        assert_eq!(fs::read_dir(dir.path().join("trash")).unwrap().count(), 0);
        assert!(!dir.path().join("locks/1.2.3.lock").exists());
        assert!(dir.path().join("locks/1.2.4.lock").exists());
        assert_eq!(cache.studies().unwrap(), vec![uid("1.2.4")]);
        add_study(&cache, "1.2.3");
        assert_eq!(cache.studies().unwrap().len(), 2);
    }

    #[test]
    fn a_lock_file_deleted_between_open_and_lock_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let path = cache.lock_path(&uid("1.2.3"));
        let stale = cache.open_lock_file(&uid("1.2.3")).unwrap();
        fs::remove_file(&path).unwrap();
        stale.try_lock().unwrap();
        assert!(!fsutil::still_named(&stale, &path));
        // A locker now gets the file under the name, which nobody holds...
        let held = cache.try_lock_study(&uid("1.2.3")).unwrap().expect("free");
        assert!(path.exists());
        // ...and excludes the others.
        assert!(cache.try_lock_study(&uid("1.2.3")).unwrap().is_none());
        assert!(cache.is_busy(&uid("1.2.3")).unwrap());
        drop(held);
        assert!(!cache.is_busy(&uid("1.2.3")).unwrap());
    }

    #[test]
    fn leftovers_are_found_and_removed_unless_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cache = Cache::open(root).unwrap();
        add_study(&cache, "1.2.3");
        add_study(&cache, "1.2.5");
        // A prune killed after moving a study out.
        fs::create_dir_all(root.join("trash/1.2.9.77.0.removed/series/1")).unwrap();
        fs::write(root.join("trash/1.2.9.77.0.removed/series/1/2.dcm"), b"x").unwrap();
        // A fetch killed while downloading, and while writing the manifest.
        fs::create_dir_all(root.join("studies/1.2.3/tmp")).unwrap();
        fs::write(root.join("studies/1.2.3/tmp/instance.77.1.part"), b"partial").unwrap();
        fs::write(root.join("studies/1.2.3/manifest.json.77.2.tmp"), b"{").unwrap();
        // A fetch killed before its first manifest.
        fs::create_dir_all(root.join("studies/1.2.4/series")).unwrap();
        // A lock file of a study long gone, and one of a study being fetched.
        fs::write(root.join("locks/1.2.8.lock"), b"").unwrap();
        // Not ours: left alone.
        fs::write(root.join("notes.txt"), b"hello").unwrap();
        fs::write(root.join("studies/1.2.3/readme.tmp"), b"x").unwrap();

        let found = cache.leftovers(Duration::ZERO, SystemTime::now()).unwrap();
        let kinds: Vec<(LeftoverKind, String)> = found
            .iter()
            .map(|l| (l.kind, l.path.strip_prefix(root).unwrap().display().to_string()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (LeftoverKind::Trash, "trash/1.2.9.77.0.removed".into()),
                (
                    LeftoverKind::PartialDownload,
                    "studies/1.2.3/tmp/instance.77.1.part".into()
                ),
                (LeftoverKind::Temporary, "studies/1.2.3/manifest.json.77.2.tmp".into()),
                (LeftoverKind::StudyWithoutManifest, "studies/1.2.4".into()),
                (LeftoverKind::LockFile, "locks/1.2.8.lock".into()),
            ]
        );
        // Nothing counts when it is younger than asked.
        let young = cache.leftovers(Duration::from_secs(3600), SystemTime::now()).unwrap();
        assert_eq!(
            young.iter().map(|l| l.kind).collect::<Vec<_>>(),
            vec![LeftoverKind::Trash, LeftoverKind::LockFile]
        );

        // A study in use keeps its leftovers.
        let held = cache.try_lock_study(&uid("1.2.3")).unwrap().unwrap();
        for leftover in &found {
            let removed = cache.remove_leftover(leftover).unwrap();
            assert_eq!(removed, leftover.study.as_ref() != Some(&uid("1.2.3")), "{leftover:?}");
        }
        drop(held);
        for leftover in &found {
            assert!(cache.remove_leftover(leftover).unwrap(), "{leftover:?}");
            assert!(!leftover.path.exists(), "{leftover:?}");
        }
        assert!(cache.leftovers(Duration::ZERO, SystemTime::now()).unwrap().is_empty());
        assert_eq!(cache.studies().unwrap(), vec![uid("1.2.3"), uid("1.2.5")]);
        assert!(root.join("notes.txt").exists());
        assert!(root.join("studies/1.2.3/readme.tmp").exists());
        assert!(root.join("studies/1.2.3/manifest.json").exists());
        assert!(!root.join("studies/1.2.3/tmp").exists());
    }

    #[test]
    fn one_prune_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let first = cache.try_lock_prune().unwrap();
        assert!(first.is_some());
        assert!(cache.try_lock_prune().unwrap().is_none());
        drop(first);
        assert!(cache.try_lock_prune().unwrap().is_some());
        // Not mistaken for the lock file of a study.
        assert!(cache.leftovers(Duration::ZERO, SystemTime::now()).unwrap().is_empty());
    }

    #[test]
    fn atomic_temporaries_are_recognised() {
        assert!(fsutil::is_atomic_temporary("manifest.json.123.4.tmp"));
        assert!(fsutil::is_atomic_temporary("CACHEDIR.TAG.1.0.tmp"));
        assert!(!fsutil::is_atomic_temporary("readme.tmp"));
        assert!(!fsutil::is_atomic_temporary("x.1.tmp"));
        assert!(!fsutil::is_atomic_temporary(".1.2.tmp"));
        assert!(!fsutil::is_atomic_temporary("manifest.json"));
    }
}
