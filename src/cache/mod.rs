//! The shared cache: the only code that knows where things live inside it.
//!
//! ```text
//! ROOT/CACHEDIR.TAG
//! ROOT/locks/STUDY.lock                      one lock file per study; removed by prune once the study is gone
//! ROOT/studies/STUDY/manifest.json           what was asked, why, when, which instances are expected (and
//!                                            while it is fetched, which instance files are durable)
//! ROOT/studies/STUDY/series/SERIES/SOP.dcm   complete, checked instances (renamed into place)
//! ROOT/studies/STUDY/tmp/*.part              instances being downloaded
//! ROOT/studies/STUDY/delivered/DEST.jsonl     delivery journal: one line per C-STORE answer
//! ROOT/trash/STUDY.PID.N/                    a study being removed (see `removal`): never a study
//! ROOT/locks/prune.lock                      held by the one `prune` running
//! ROOT/watch/DEST.json                       what `watch` saw and delivered to DEST (see `watch`)
//! ROOT/watch/DEST.lock                       held by the one `watch` delivering to DEST
//! ROOT/watch/DEST.status.json                how that `watch` is doing, for `retriever status`
//! ```
//!
//! Every UID is a checked [`Uid`] before it becomes part of a path, so no
//! name sent by the cloud can point outside the cache. An instance file
//! exists under its final name only once its bytes are complete and
//! checked; it is made durable with the others of its batch (see
//! `durable`), and until the manifest marks it so, a resumed fetch checks
//! it again before it counts.

mod copy;
mod durable;
mod fsutil;
mod journal;
mod manifest;
mod removal;
mod state;
mod watch;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use copy::{BodyReadFailed, copy_part};
pub use durable::{BATCH_AGE, BATCH_BYTES};
pub use fsutil::{LowSpace, same_contents, tree_size, write_error};
pub use journal::{Delivery, DeliveryState, Journal, UNSYNCED_MAX};

/// A study's delivery journals: destination key → SOP Instance UID → its last record.
pub type Journals = BTreeMap<String, BTreeMap<Uid, Delivery>>;
pub use fsutil::write_atomic_readable;
pub use manifest::{Manifest, Role, StudyInfo, now_rfc3339};
pub use removal::{Left, Leftover, LeftoverKind, PruneLock, Removal, io_error_in_use, is_in_use};
pub use state::{DeliveryCounts, StudyStatus};
pub use watch::WatchLock;

use crate::intake::Admitted;
use crate::uid::Uid;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by retriever.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    limits: Limits,
}

/// What one instance may take of the disk. Every byte of an instance is
/// written through a [`Staged`] file, which enforces both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// An instance file past this size is refused while it is written.
    pub max_instance_size: u64,
    /// Writing stops when the disk holding the cache would have less free
    /// than this, so that a study never fills the disk the system and the
    /// other studies need.
    pub free_space_reserve: u64,
}

/// The default [`Limits::max_instance_size`]: larger than any real single
/// instance (a whole-slide image or a long multi-frame is a few GiB).
pub const DEFAULT_MAX_INSTANCE_SIZE: u64 = 4 << 30;
/// The default [`Limits::free_space_reserve`].
pub const DEFAULT_FREE_SPACE_RESERVE: u64 = 1 << 30;
/// How often a staged file looks at the free space again while it grows.
const SPACE_CHECK_EVERY: u64 = 64 << 20;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_instance_size: DEFAULT_MAX_INSTANCE_SIZE,
            free_space_reserve: DEFAULT_FREE_SPACE_RESERVE,
        }
    }
}

/// A staged instance grew past [`Limits::max_instance_size`]. Travels inside
/// the `io::Error` of the write that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the instance is larger than the maximum instance size of {}",
            crate::format::binary_size(self.limit)
        )
    }
}

impl std::error::Error for TooLarge {}

impl TooLarge {
    /// The limit, when `e` is the error a [`Staged`] write returns for it.
    pub fn in_io(e: &io::Error) -> Option<TooLarge> {
        e.get_ref().and_then(|i| i.downcast_ref::<TooLarge>()).copied()
    }
}

/// How a study is locked: exclusively to change its files, shared to read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Exclusive,
    Shared,
}

/// Whether to wait for a lock another process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    Wait,
    Try,
}

impl Cache {
    /// Opens the cache at `root`, creating it (tagged with `CACHEDIR.TAG`) if needed.
    pub fn open(root: &Path) -> Result<Cache> {
        let cache = Cache {
            root: root.to_path_buf(),
            limits: Limits::default(),
        };
        for dir in [cache.studies_dir(), cache.locks_dir()] {
            fsutil::create_dir_all(&dir)
                .context("the cache directory is not usable; check its permissions or pass --cache DIR")?;
        }
        fsutil::make_private(root)?;
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            fsutil::write_atomic(&tag, CACHEDIR_TAG.as_bytes())?;
        }
        Ok(cache)
    }

    /// The same cache, writing instances within `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Cache {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn studies_dir(&self) -> PathBuf {
        self.root.join("studies")
    }

    fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    fn study_dir(&self, study: &Uid) -> PathBuf {
        self.studies_dir().join(study.as_str())
    }

    /// Locks `study`, waiting for other processes that hold it. Calls
    /// `on_wait` once if the lock is not free at once (to tell the user).
    pub fn lock_study(&self, study: &Uid, mode: LockMode, on_wait: impl FnOnce()) -> Result<StudyEntry> {
        let file = self
            .take_lock(study, mode, Take::Wait, on_wait)?
            .context("a waiting lock returned without the lock")?;
        Ok(StudyEntry {
            uid: study.clone(),
            dir: self.study_dir(study),
            limits: self.limits,
            group: durable::GroupCommit::new(self.study_dir(study), study.clone()),
            _lock: file,
        })
    }

    /// Locks `study` exclusively if nobody else holds it; `None` if somebody does.
    pub fn try_lock_study(&self, study: &Uid) -> Result<Option<StudyEntry>> {
        Ok(self
            .take_lock(study, LockMode::Exclusive, Take::Try, || {})?
            .map(|file| StudyEntry {
                uid: study.clone(),
                dir: self.study_dir(study),
                limits: self.limits,
                group: durable::GroupCommit::new(self.study_dir(study), study.clone()),
                _lock: file,
            }))
    }

    /// True when another process holds `study` exclusively right now
    /// (a fetch writing it, a prune removing it).
    pub fn is_busy(&self, study: &Uid) -> Result<bool> {
        Ok(self.take_lock(study, LockMode::Shared, Take::Try, || {})?.is_none())
    }

    /// Opens and locks the lock file of `study`; `None` when `take` is
    /// [`Take::Try`] and another process holds it.
    ///
    /// `prune` deletes the lock files of studies that are gone (or `locks/`
    /// would grow by a file per study forever). A process that opened the
    /// file just before it was deleted would then lock a file that no longer
    /// has a name, and exclude nobody; so after locking, the file must still
    /// be the one under that name, else the lock is dropped and taken again
    /// on the file that is there now. (On Windows a lock file is only ever
    /// deleted when nobody has it open, see `removal::remove_lock_file`.)
    fn take_lock(&self, study: &Uid, mode: LockMode, take: Take, on_wait: impl FnOnce()) -> Result<Option<File>> {
        let path = self.lock_path(study);
        let mut on_wait = Some(on_wait);
        // A prune deletes a lock file once per study removed: more than a
        // few rounds means a filesystem that does not keep file identities.
        for _ in 0..100 {
            let mut file = self.open_lock_file(study)?;
            let attempt = match mode {
                LockMode::Exclusive => file.try_lock(),
                LockMode::Shared => file.try_lock_shared(),
            };
            match attempt {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) if take == Take::Try => return Ok(None),
                Err(fs::TryLockError::WouldBlock) => {
                    if let Some(on_wait) = on_wait.take() {
                        on_wait();
                    }
                    // The other process may hold the study for long (a big
                    // fetch): wait on a thread of its own, so Ctrl-C ends
                    // the wait at once.
                    let (waited, locked) = crate::interrupt::outwait(move || {
                        let locked = match mode {
                            LockMode::Exclusive => file.lock(),
                            LockMode::Shared => file.lock_shared(),
                        };
                        (file, locked)
                    })?;
                    locked.with_context(|| format!("failed to lock `{}`", path.display()))?;
                    file = waited;
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("failed to lock `{}`", path.display()));
                }
            }
            if fsutil::still_named(&file, &path) {
                return Ok(Some(file));
            }
        }
        bail!(
            "failed to lock `{}`: the file changed each time it was locked; \
             is the cache on a filesystem that supports file locks?",
            path.display()
        )
    }

    fn lock_path(&self, study: &Uid) -> PathBuf {
        self.locks_dir().join(format!("{study}.lock"))
    }

    fn open_lock_file(&self, study: &Uid) -> Result<File> {
        let path = self.lock_path(study);
        let mut attempts = 0;
        loop {
            match fsutil::open_lock(&path) {
                Ok(file) => return Ok(file),
                // A prune is deleting this lock file this very instant (on
                // Windows it holds it unshared while it does): wait it out.
                Err(e) if removal::is_lock_file_being_removed(&e) && attempts < 200 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e).with_context(|| format!("failed to open the lock file `{}`", path.display())),
            }
        }
    }

    /// Studies that have a manifest, sorted by UID. Entries whose name is
    /// not a valid UID (something else put there) are ignored.
    pub fn studies(&self) -> Result<Vec<Uid>> {
        let dir = self.studies_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("failed to list `{}`", dir.display()))? {
            let entry = entry.with_context(|| format!("failed to list `{}`", dir.display()))?;
            let Some(uid) = entry.file_name().to_str().and_then(|n| Uid::parse(n).ok()) else {
                continue;
            };
            if entry.path().join("manifest.json").is_file() {
                out.push(uid);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads a study's manifest without locking (a snapshot: manifests are
    /// replaced atomically, so it is always whole).
    pub fn read_manifest(&self, study: &Uid) -> Result<Option<Manifest>> {
        read_manifest_in(&self.study_dir(study))
    }

    /// The instance files present for `study` (see [`StudyEntry::present`]), read without a lock.
    pub fn present(&self, study: &Uid) -> Result<BTreeMap<Uid, Instance>> {
        present_in(&self.study_dir(study))
    }

    /// What the delivery journal of `study` says about `destination` (a
    /// [`crate::dimse::Destination::key`]): the last record of each instance.
    pub fn deliveries(&self, study: &Uid, destination: &str) -> Result<BTreeMap<Uid, Delivery>> {
        journal::read(&journal::path(&self.study_dir(study), destination))
    }

    /// Every delivery journal of a study: destination key → the last
    /// record of each instance.
    pub fn journals(&self, study: &Uid) -> Result<Journals> {
        journals_in(&self.study_dir(study))
    }

    /// The directory holding a study's files, for showing to the user.
    pub fn study_path(&self, study: &Uid) -> PathBuf {
        self.study_dir(study)
    }
}

/// A complete instance file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub series: Uid,
    pub path: PathBuf,
    pub bytes: u64,
}

/// A locked study; the lock is released when this is dropped.
#[derive(Debug)]
pub struct StudyEntry {
    uid: Uid,
    dir: PathBuf,
    limits: Limits,
    /// The batch of instance files not yet durable (see `durable`).
    group: durable::GroupCommit,
    _lock: File,
}

/// What happened to a staged instance handed to [`StudyEntry::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// Moved into place, at `path`.
    Stored { bytes: u64, path: PathBuf },
    /// The same bytes were already there; the staged copy was discarded.
    AlreadyPresent,
    /// Different bytes are already stored under this SOP Instance UID; they were kept.
    Conflict,
}

impl StudyEntry {
    pub fn uid(&self) -> &Uid {
        &self.uid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> Result<Option<Manifest>> {
        read_manifest_in(&self.dir)
    }

    /// Complete instance files, by SOP Instance UID.
    pub fn present(&self) -> Result<BTreeMap<Uid, Instance>> {
        present_in(&self.dir)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A new temporary file for an instance being downloaded, written
    /// within the cache's [`Limits`]. Fails at once when the disk is
    /// already below the free-space reserve.
    pub fn stage(&self) -> Result<Staged> {
        let tmp = self.dir.join("tmp");
        fsutil::create_dir_all(&tmp)?;
        fsutil::check_free_space(&tmp, 0, self.limits.free_space_reserve)
            .map_err(|e| fsutil::write_error(e, "create a file in", &tmp))?;
        let path = tmp.join(fsutil::unique_name("instance", "part"));
        let file = fsutil::private_options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| fsutil::write_error(e, "create", &path))?;
        Ok(Staged {
            path,
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            bytes: 0,
            limits: self.limits,
            next_space_check: SPACE_CHECK_EVERY,
        })
    }

    /// Moves a staged file that the intake gate admitted to its final
    /// place, unless that SOP Instance UID is already stored. Never
    /// overwrites. Nothing else puts an instance into the cache.
    pub fn commit(&self, staged: Staged, admitted: Admitted) -> Result<Commit> {
        // The gate checked this very file, complete: the same path, synced
        // before it was read, and not grown since.
        if admitted.path() != staged.path || staged.file.is_some() || admitted.bytes() != staged.bytes {
            bail!(
                "`{}` is not the file the intake gate checked; it was not kept (a bug in retriever)",
                staged.path.display()
            );
        }
        let (series, sop) = (&admitted.header().series, &admitted.header().sop_instance);
        let dir = self.dir.join("series").join(series.as_str());
        let path = dir.join(format!("{sop}.dcm"));
        if path.exists() {
            let same = same_contents(&staged.path, &path)?;
            return Ok(if same { Commit::AlreadyPresent } else { Commit::Conflict });
        }
        fsutil::create_dir_all(&dir)?;
        // `hard_link` fails if the target exists, so two writers racing on
        // the same instance can never overwrite each other's file.
        // The file and its name are made durable with its batch (see
        // `durable`): a name or bytes lost in a power cut only mean that
        // instance is checked again, and downloaded again if it is torn.
        match fs::hard_link(&staged.path, &path) {
            Ok(()) => {
                self.enlist(sop, &path, staged.bytes);
                Ok(Commit::Stored {
                    bytes: staged.bytes,
                    path,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let same = same_contents(&staged.path, &path)?;
                Ok(if same { Commit::AlreadyPresent } else { Commit::Conflict })
            }
            Err(_) => {
                // Filesystems without hard links: a rename is still atomic,
                // and the lock on the study keeps other writers out.
                fsutil::rename(&staged.path, &path)?;
                self.enlist(sop, &path, staged.bytes);
                Ok(Commit::Stored {
                    bytes: staged.bytes,
                    path,
                })
            }
        }
    }

    /// Every delivery journal of this study (see [`Cache::journals`]).
    pub fn journals(&self) -> Result<Journals> {
        journals_in(&self.dir)
    }

    /// Opens the delivery journal of this study for `destination` (a
    /// [`crate::dimse::Destination::key`]), locked against other writers.
    pub fn journal(&self, destination: &str) -> Result<Journal> {
        Journal::open(&journal::path(&self.dir, destination))
    }

    /// Makes the names of every instance file of this study durable.
    pub fn sync_dirs(&self) {
        let series_root = self.dir.join("series");
        if let Ok(entries) = fs::read_dir(&series_root) {
            for entry in entries.flatten() {
                fsutil::sync_dir(&entry.path());
            }
        }
        fsutil::sync_dir(&series_root);
        fsutil::sync_dir(&self.dir);
    }

    /// Removes temporary files left by interrupted downloads of this study.
    pub fn clean_tmp(&self) {
        let _ = fs::remove_dir_all(self.dir.join("tmp"));
    }
}

/// An instance being written to a temporary file; removed on drop unless committed.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    file: Option<io::BufWriter<File>>,
    bytes: u64,
    limits: Limits,
    /// The size at which the free space is looked at again.
    next_space_check: u64,
}

impl Staged {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes out what is buffered and closes the file; it can then be read
    /// back. It is made durable later, with its batch (see `durable`); its
    /// write-back to the disk starts now, while the next one downloads.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(writer) = self.file.take() {
            let file = writer
                .into_inner()
                .map_err(|e| e.into_error())
                .map_err(|e| fsutil::write_error(e, "write", &self.path))?;
            fsutil::start_writeback(&file);
        }
        Ok(())
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("staged file already finished"))?;
        let limit = self.limits.max_instance_size;
        if self.bytes.saturating_add(buf.len() as u64) > limit {
            return Err(io::Error::other(TooLarge { limit }));
        }
        if self.bytes + buf.len() as u64 >= self.next_space_check {
            let dir = self.path.parent().unwrap_or(&self.path);
            fsutil::check_free_space(dir, SPACE_CHECK_EVERY, self.limits.free_space_reserve)?;
            self.next_space_check += SPACE_CHECK_EVERY;
        }
        let n = file.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.file.take();
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
impl StudyEntry {
    /// Stages a small valid instance of this study, whose pixel data is
    /// `fill`, and commits it through the intake gate as a download would.
    pub(crate) fn put_test_instance(&self, series: &Uid, sop: &Uid, fill: u8) -> Result<Commit> {
        use crate::intake::{self, Expectation, testfile};
        let ids = testfile::Ids::new(self.uid.as_str(), series.as_str(), sop.as_str(), None);
        let data_set = testfile::data_set_with_pixels(testfile::EXPLICIT_LE, &ids, &[fill; 1024]);
        let bytes = testfile::part10(testfile::EXPLICIT_LE, testfile::CT_IMAGE, sop.as_str(), &data_set);
        let mut staged = self.stage()?;
        staged.write_all(&bytes)?;
        staged.finish()?;
        let want = Expectation {
            study: &self.uid,
            patient: Default::default(),
            series: None,
            sop: None,
            listed_series: None,
            series_of: &|_| None,
            max_inflated: 1 << 20,
        };
        let admitted = intake::admit(staged.path(), &want)?.map_err(anyhow::Error::new)?;
        self.commit(staged, admitted)
    }
}

fn read_manifest_in(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join("manifest.json");
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", path.display())),
    };
    let manifest: Manifest = serde_json::from_slice(&text).with_context(|| {
        format!(
            "the manifest `{}` is damaged; this cache entry cannot be trusted: delete the study's directory `{}` \
             and fetch the study again",
            path.display(),
            dir.display()
        )
    })?;
    if manifest.version != Manifest::VERSION {
        bail!(
            "the manifest `{}` has version {} but this retriever reads version {}",
            path.display(),
            manifest.version,
            Manifest::VERSION
        );
    }
    Ok(Some(manifest))
}

fn journals_in(dir: &Path) -> Result<Journals> {
    journal::destinations(dir)?
        .into_iter()
        .map(|key| {
            let records = journal::read(&journal::path(dir, &key))?;
            Ok((key, records))
        })
        .collect()
}

/// Instance files are named by checked UIDs when committed; a directory or
/// file whose name is not a valid UID was put there by something else and
/// is no instance of the study.
fn present_in(dir: &Path) -> Result<BTreeMap<Uid, Instance>> {
    let series_root = dir.join("series");
    let mut out = BTreeMap::new();
    let series_dirs = match fs::read_dir(&series_root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", series_root.display())),
    };
    for series in series_dirs {
        let series = series.with_context(|| format!("failed to list `{}`", series_root.display()))?;
        let Some(series_uid) = series.file_name().to_str().and_then(|n| Uid::parse(n).ok()) else {
            continue;
        };
        let files = match fs::read_dir(series.path()) {
            Ok(files) => files,
            // The study was removed (by a prune) while being read without a lock.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", series.path().display())),
        };
        for file in files {
            let file = file.with_context(|| format!("failed to list `{}`", series.path().display()))?;
            let name = file.file_name();
            let Some(sop) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".dcm"))
                .and_then(|n| Uid::parse(n).ok())
            else {
                continue;
            };
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            out.insert(
                sop,
                Instance {
                    series: series_uid.clone(),
                    path: file.path(),
                    bytes,
                },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    #[test]
    fn stage_commit_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert!(dir.path().join("CACHEDIR.TAG").is_file());
        let study = cache.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();

        let stored = study.put_test_instance(&uid("1.2.3.4"), &uid("1.2.3.4.5"), 1).unwrap();
        let Commit::Stored { bytes, path } = stored else {
            panic!("not stored: {stored:?}")
        };
        assert_eq!(path, study.dir.join("series/1.2.3.4/1.2.3.4.5.dcm"));
        let first = fs::read(&path).unwrap();
        assert_eq!(bytes, first.len() as u64);

        assert_eq!(
            study.put_test_instance(&uid("1.2.3.4"), &uid("1.2.3.4.5"), 1).unwrap(),
            Commit::AlreadyPresent
        );
        assert_eq!(
            study.put_test_instance(&uid("1.2.3.4"), &uid("1.2.3.4.5"), 2).unwrap(),
            Commit::Conflict
        );

        let present = study.present().unwrap();
        assert_eq!(present.len(), 1);
        assert_eq!(fs::read(&present["1.2.3.4.5"].path).unwrap(), first);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(study.dir().join("tmp")).unwrap().count(), 0);
    }

    /// Patient data is for this account only, whatever the umask; a cache
    /// root an older version left open is closed when opened.
    #[cfg(unix)]
    #[test]
    fn everything_in_the_cache_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let cache = Cache::open(&root).unwrap();
        let study = cache.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();
        study.put_test_instance(&uid("1.2.3.4"), &uid("1.2.3.4.5"), 1).unwrap();
        let _staged = study.stage().unwrap();
        study.journal("PACS@host_104").unwrap();
        let mut seen = 0;
        for entry in walkdir::WalkDir::new(&root) {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            let want = if entry.file_type().is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "`{}` has mode {mode:o}", entry.path().display());
            seen += 1;
        }
        assert!(seen >= 12, "{seen} entries");
    }

    #[test]
    fn staged_files_stop_at_the_maximum_size_and_the_free_space_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_instance_size: 1000,
            free_space_reserve: 0,
        };
        let cache = Cache::open(dir.path()).unwrap().with_limits(limits);
        let study = cache.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();
        let mut staged = study.stage().unwrap();
        staged.write_all(&[0; 1000]).unwrap();
        let e = staged.write_all(&[0]).unwrap_err();
        assert_eq!(TooLarge::in_io(&e), Some(TooLarge { limit: 1000 }));
        assert_eq!(staged.bytes(), 1000);

        // A disk that would fall below the reserve: refused before anything is written.
        let full = Cache::open(dir.path()).unwrap().with_limits(Limits {
            max_instance_size: 1000,
            free_space_reserve: u64::MAX,
        });
        drop(study);
        let study = full.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();
        let e = format!("{:#}", study.stage().unwrap_err());
        assert!(e.starts_with("the disk holding the cache is full"), "{e}");
        assert!(e.contains("--cache DIR"), "{e}");
    }

    #[test]
    fn exclusive_lock_excludes_and_manifest_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let held = cache.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();
        assert!(cache.try_lock_study(&uid("1.2.3")).unwrap().is_none());
        assert!(cache.try_lock_study(&uid("1.2.4")).unwrap().is_some());

        let manifest = Manifest {
            version: Manifest::VERSION,
            study: StudyInfo::new(uid("1.2.3")),
            roles: vec![Role::Current {
                requested_as: "ACC1".into(),
            }],
            fetched_at: now_rfc3339(),
            completed_at: None,
            expected: [(uid("1.2.3.4.5"), uid("1.2.3.4"))].into(),
        };
        held.write_manifest(&manifest).unwrap();
        assert_eq!(cache.read_manifest(&uid("1.2.3")).unwrap(), Some(manifest));
        assert_eq!(cache.studies().unwrap(), vec![uid("1.2.3")]);
        drop(held);
        assert!(cache.try_lock_study(&uid("1.2.3")).unwrap().is_some());
    }

    /// `manifest.json` as the versions before typed UIDs wrote it, byte for byte.
    const MANIFEST_WRITTEN_BEFORE: &str = r#"{
  "version": 1,
  "study": {
    "study_uid": "1.2.826.0.1.3680043.2.1125.1",
    "accession": "ACC1",
    "patient_id": "PAT1",
    "issuer_of_patient_id": null,
    "patient_name": "DOE^JANE",
    "study_date": "20240101",
    "study_description": "CT CHEST",
    "modalities": [
      "CT"
    ]
  },
  "roles": [
    {
      "role": "current",
      "requested_as": "ACC1"
    },
    {
      "role": "prior",
      "of": "1.2.826.0.1.3680043.2.1125.9"
    }
  ],
  "fetched_at": "2026-12-03T10:00:00Z",
  "completed_at": "2026-12-03T10:01:00Z",
  "expected": {
    "1.2.826.0.1.3680043.2.1125.1.1.10": "1.2.826.0.1.3680043.2.1125.1.1",
    "1.2.826.0.1.3680043.2.1125.1.1.2": "1.2.826.0.1.3680043.2.1125.1.1",
    "1.2.826.0.1.3680043.2.1125.1.2.1": "1.2.826.0.1.3680043.2.1125.1.2"
  }
}"#;

    #[test]
    fn a_manifest_of_the_previous_version_reads_and_writes_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let study = uid("1.2.826.0.1.3680043.2.1125.1");
        let entry = cache.lock_study(&study, LockMode::Exclusive, || {}).unwrap();
        let path = entry.dir().join("manifest.json");
        fs::create_dir_all(entry.dir()).unwrap();
        fs::write(&path, MANIFEST_WRITTEN_BEFORE).unwrap();

        let manifest = entry.manifest().unwrap().unwrap();
        let series = &manifest.expected[&uid("1.2.826.0.1.3680043.2.1125.1.1.2")];
        assert_eq!(series, &uid("1.2.826.0.1.3680043.2.1125.1.1"));
        fs::remove_file(&path).unwrap();
        entry.write_manifest(&manifest).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), MANIFEST_WRITTEN_BEFORE);
    }

    #[test]
    fn a_manifest_naming_an_invalid_uid_is_refused_as_a_damaged_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let study = uid("1.2.826.0.1.3680043.2.1125.1");
        let study_dir = cache.study_path(&study);
        fs::create_dir_all(&study_dir).unwrap();
        for (good, bad) in [
            ("1.2.826.0.1.3680043.2.1125.1.1.2", "../../x"),
            ("\"1.2.826.0.1.3680043.2.1125.1.2\"", "\"1.2/3\""),
        ] {
            let damaged = MANIFEST_WRITTEN_BEFORE.replace(good, bad);
            fs::write(study_dir.join("manifest.json"), damaged).unwrap();
            let e = format!("{:#}", cache.read_manifest(&study).unwrap_err());
            assert!(e.starts_with("the manifest `"), "{e}");
            assert!(e.contains("is damaged"), "{e}");
            let advice = format!("delete the study's directory `{}`", study_dir.display());
            assert!(e.contains(&advice), "{e}");
            assert!(e.contains("is not a valid DICOM UID"), "{e}");
            // Every reader of the study says the same.
            let e = format!("{:#}", cache.study_status(&study).unwrap_err());
            assert!(e.contains("is damaged"), "{e}");
        }
    }

    #[test]
    fn files_whose_names_are_not_uids_are_no_instances() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let study = cache.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();
        study.put_test_instance(&uid("1.2.3.4"), &uid("1.2.3.4.5"), 1).unwrap();
        fs::write(study.dir().join("series/1.2.3.4/notes.dcm"), b"x").unwrap();
        fs::create_dir_all(study.dir().join("series/x.y")).unwrap();
        fs::write(study.dir().join("series/x.y/1.2.3.4.6.dcm"), b"x").unwrap();
        let present = study.present().unwrap();
        let sops: Vec<&str> = present.keys().map(Uid::as_str).collect();
        assert_eq!(sops, ["1.2.3.4.5"]);
        assert_eq!(present[&uid("1.2.3.4.5")].series, uid("1.2.3.4"));
    }
}
