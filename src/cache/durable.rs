//! Group commit: instance files are moved into place as soon as the intake
//! gate has checked them, but made durable in batches, with one sync for
//! the batch, as databases have long done for their logs. One `fsync` per
//! file costs more than the download itself on a fast link; one sync per
//! batch costs little more than none.
//!
//! A batch is synced when it holds [`BATCH_BYTES`], when its oldest file
//! has waited [`BATCH_AGE`], when a series' download ends, and when a round
//! of the fetch ends, on a thread of the study's own, so that no download
//! waits for the disk. A file is usable (readable whole, sendable) as soon
//! as it is in place: only its record as durable waits for the sync, and a
//! destination that got it from the page cache got it whole.
//!
//! The manifest records which instance files are durable (its `durable`
//! list, written only after their batch was synced; absent once the study
//! is complete, or when it was written by a version that synced each file).
//! A power cut between the rename and the sync can leave a file that is in
//! place but empty or torn: a file the manifest does not mark durable is
//! therefore checked again (its size and the intake gate's structure walk)
//! before a resumed fetch counts it, see [`StudyEntry::unmarked`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Instance, Manifest, StudyEntry, fsutil};
use crate::uid::Uid;

/// A batch is synced once it holds this many bytes.
pub const BATCH_BYTES: u64 = 32 << 20;
/// A batch is synced once its oldest file has waited this long.
pub const BATCH_AGE: Duration = Duration::from_millis(200);

/// What a study's entry keeps of the batch being filled: the instance
/// files in place and not yet durable.
#[derive(Debug, Default)]
pub(super) struct Batch {
    files: Vec<(Uid, PathBuf)>,
    bytes: u64,
    since: Option<Instant>,
}

/// The durable marks as the manifest file holds them, next to the fields of
/// [`Manifest`], which knows nothing of them: only this module changes them.
#[derive(Serialize)]
struct Written<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    #[serde(skip_serializing_if = "Option::is_none")]
    durable: Option<&'a BTreeSet<Uid>>,
}

#[derive(Deserialize)]
struct Marks {
    #[serde(default)]
    durable: Option<BTreeSet<Uid>>,
}

/// The bytes of the manifest file for `manifest` with these durable marks.
pub(super) fn encode(manifest: &Manifest, durable: Option<&BTreeSet<Uid>>) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(&Written { manifest, durable }).context("failed to encode a manifest")
}

/// The durable marks of the manifest file at `path`: `None` when it has none
/// (every instance file present is durable) or when there is no manifest.
pub(super) fn read_marks(path: &Path) -> Result<Option<BTreeSet<Uid>>> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", path.display())),
    };
    let marks: Marks = serde_json::from_slice(&text).with_context(|| {
        format!(
            "the manifest `{}` is damaged; delete the study's directory and fetch the study again",
            path.display()
        )
    })?;
    Ok(marks.durable)
}

impl StudyEntry {
    /// Adds an instance file just moved into place to the batch being filled.
    pub(super) fn enlist(&self, sop: &Uid, path: &Path, bytes: u64) {
        let mut batch = self.group.batch.lock().unwrap();
        batch.since.get_or_insert_with(Instant::now);
        batch.bytes += bytes;
        batch.files.push((sop.clone(), path.to_path_buf()));
    }

    /// Hands the batch to the study's syncer if it is due (see the module's
    /// notes), without waiting for the sync.
    pub fn sync_due(&self) {
        let due = {
            let batch = self.group.batch.lock().unwrap();
            batch.bytes >= BATCH_BYTES || batch.since.is_some_and(|t| t.elapsed() >= BATCH_AGE)
        };
        if due {
            self.sync_soon();
        }
    }

    /// Hands whatever the batch holds to the study's syncer (a series'
    /// download ended), without waiting for the sync.
    pub fn sync_soon(&self) {
        let files = {
            let mut batch = self.group.batch.lock().unwrap();
            batch.bytes = 0;
            batch.since = None;
            std::mem::take(&mut batch.files)
        };
        if files.is_empty() {
            return;
        }
        let mut syncer = self.group.syncer.lock().unwrap();
        let syncer = syncer.get_or_insert_with(|| Syncer::start(self.group.marker.clone()));
        if let Err(returned) = syncer.to.send(files) {
            // The syncer stopped at an error: this batch is synced here, and
            // the error still comes out of `sync_batch`.
            let _ = self.group.marker.sync_and_mark(returned.0);
        }
    }

    /// Syncs whatever the batch holds and waits for every batch handed over
    /// before to be synced and marked durable (a round ended).
    pub fn sync_batch(&self) -> Result<()> {
        self.sync_soon();
        let syncer = self.group.syncer.lock().unwrap().take();
        match syncer {
            Some(syncer) => syncer.finish(),
            None => Ok(()),
        }
    }

    /// The instance files present that the manifest does not mark durable:
    /// a power cut may have left them empty or torn, so they must be
    /// checked again before they count. Empty when the manifest has no
    /// marks (every file present was made durable before it was kept).
    pub fn unmarked(&self) -> Result<BTreeMap<Uid, Instance>> {
        let Some(marks) = read_marks(&self.manifest_path())? else {
            return Ok(BTreeMap::new());
        };
        let mut present = self.present()?;
        present.retain(|sop, _| !marks.contains(sop));
        Ok(present)
    }

    /// The manifest marks which files are durable (a fetch is under way,
    /// or was cut short): it is not recorded complete yet.
    pub fn has_durable_marks(&self) -> Result<bool> {
        Ok(read_marks(&self.manifest_path())?.is_some())
    }

    /// Writes the manifest of a fetch that begins, marking every instance
    /// file present durable (and syncing those that were not): the files
    /// [`StudyEntry::unmarked`] named must have been checked again, and the
    /// bad ones removed. From here on the marks follow each batch, so a
    /// file renamed into place before its batch is synced is never taken
    /// for durable.
    pub fn begin_fetch(&self, manifest: &Manifest) -> Result<()> {
        self.sync_batch()?;
        let present = self.present()?;
        let unmarked = self.unmarked()?;
        let paths: Vec<&Path> = unmarked.values().map(|i| i.path.as_path()).collect();
        if !paths.is_empty() {
            fsutil::sync_files(&self.dir, &paths)?;
        }
        let marks = present.into_keys().collect();
        let marker = &self.group.marker;
        let _writing = marker.manifest_lock.lock().unwrap();
        marker.write(manifest, Some(&marks))
    }

    /// Records the study complete: every instance file is durable (the
    /// caller synced the last batch), so the marks are dropped and the
    /// manifest reads as any complete study's.
    pub fn write_complete(&self, manifest: &Manifest) -> Result<()> {
        self.sync_batch()?;
        // Whatever is still not marked (a batch whose sync failed before) is
        // synced now: the marks go only when nothing is left unmarked.
        let unmarked = self.unmarked()?;
        let paths: Vec<&Path> = unmarked.values().map(|i| i.path.as_path()).collect();
        if !paths.is_empty() {
            fsutil::sync_files(&self.dir, &paths)?;
        }
        self.sync_dirs();
        let marker = &self.group.marker;
        let _writing = marker.manifest_lock.lock().unwrap();
        marker.write(manifest, None)
    }

    /// Writes the manifest, keeping the durable marks it has. Marks that
    /// cannot be read are kept as none at all: every file is then checked
    /// again, never taken as durable.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let marker = &self.group.marker;
        let _writing = marker.manifest_lock.lock().unwrap();
        let marks = read_marks(&self.manifest_path()).unwrap_or_else(|_| Some(BTreeSet::new()));
        marker.write(manifest, marks.as_ref())
    }

    /// Removes an instance file that a check found empty or torn (see
    /// [`StudyEntry::unmarked`]), so that it is downloaded again.
    pub fn discard(&self, instance: &Instance) -> Result<()> {
        match fs::remove_file(&instance.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("failed to remove `{}`", instance.path.display()))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
}

/// A study entry's group commit: the batch being filled, and the thread
/// that syncs the batches handed to it, so that neither a download nor the
/// thread moving files into place waits for the disk. The entry waits for
/// it when dropped, before its lock goes.
#[derive(Debug)]
pub(super) struct GroupCommit {
    batch: Mutex<Batch>,
    marker: Arc<Marker>,
    syncer: Mutex<Option<Syncer>>,
}

impl GroupCommit {
    pub(super) fn new(dir: PathBuf, study: Uid) -> GroupCommit {
        GroupCommit {
            batch: Mutex::new(Batch::default()),
            marker: Arc::new(Marker {
                dir,
                study,
                manifest_lock: Mutex::new(()),
            }),
            syncer: Mutex::new(None),
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        if let Some(syncer) = self.syncer.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = syncer.finish();
        }
    }
}

/// What syncs a batch and marks it durable: the study's directory, and the
/// lock that keeps the manifest's read-change-write steps whole across the
/// download threads and the syncer.
#[derive(Debug)]
struct Marker {
    dir: PathBuf,
    study: Uid,
    manifest_lock: Mutex<()>,
}

impl Marker {
    fn path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    /// Writes the manifest file; the caller holds `manifest_lock`.
    fn write(&self, manifest: &Manifest, marks: Option<&BTreeSet<Uid>>) -> Result<()> {
        fsutil::create_dir_all(&self.dir)?;
        fsutil::write_atomic(&self.path(), &encode(manifest, marks)?)
    }

    fn sync_and_mark(&self, files: Vec<(Uid, PathBuf)>) -> Result<()> {
        let started = Instant::now();
        let paths: Vec<&Path> = files.iter().map(|(_, path)| path.as_path()).collect();
        fsutil::sync_files(&self.dir, &paths)?;
        let _writing = self.manifest_lock.lock().unwrap();
        let manifest = super::read_manifest_in(&self.dir)?
            .context("the study's manifest disappeared from the cache while it was being fetched")?;
        let mut marks = read_marks(&self.path())?.unwrap_or_default();
        marks.extend(files.into_iter().map(|(sop, _)| sop));
        self.write(&manifest, Some(&marks))?;
        crate::timings::add(
            &format_args!("fetch of study {}", self.study),
            "sync in the background",
            started.elapsed(),
        );
        Ok(())
    }
}

/// The thread syncing a study's batches, one after the other, in the order
/// they were handed over, so that the marks follow the order the batches
/// became durable. After an error it marks nothing more.
#[derive(Debug)]
struct Syncer {
    to: mpsc::Sender<Vec<(Uid, PathBuf)>>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Syncer {
    fn start(marker: Arc<Marker>) -> Syncer {
        let (to, batches) = mpsc::channel::<Vec<(Uid, PathBuf)>>();
        let thread = std::thread::spawn(move || {
            for files in batches {
                marker.sync_and_mark(files)?;
            }
            Ok(())
        });
        Syncer { to, thread }
    }

    /// Waits for every batch handed over to be synced and marked.
    fn finish(self) -> Result<()> {
        drop(self.to);
        self.thread.join().unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the thread syncing the cache failed (a bug in retriever)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, Commit, LockMode, StudyInfo};

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    fn manifest(study: &str) -> Manifest {
        Manifest {
            version: Manifest::VERSION,
            study: StudyInfo::new(uid(study)),
            roles: vec![],
            fetched_at: "2026-12-03T10:00:00Z".into(),
            completed_at: None,
            expected: BTreeMap::new(),
        }
    }

    #[test]
    fn an_instance_is_marked_durable_only_once_its_batch_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let entry = cache.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();
        entry.begin_fetch(&manifest("1.2.3")).unwrap();
        assert!(entry.unmarked().unwrap().is_empty());

        // In place at once, marked once the batch fills, ages, or ends.
        for (sop, fill) in [("1.2.3.4.1", 1), ("1.2.3.4.2", 2)] {
            assert!(matches!(
                entry.put_test_instance(&uid("1.2.3.4"), &uid(sop), fill).unwrap(),
                Commit::Stored { .. }
            ));
        }
        entry.sync_due();
        let unmarked: Vec<String> = entry.unmarked().unwrap().into_keys().map(|u| u.to_string()).collect();
        assert_eq!(unmarked, ["1.2.3.4.1", "1.2.3.4.2"], "a small, young batch is not due");
        entry.sync_batch().unwrap();
        assert!(entry.unmarked().unwrap().is_empty());

        // Other writers of the manifest keep the marks.
        let mut m = entry.manifest().unwrap().unwrap();
        m.roles.push(crate::cache::Role::Current {
            requested_as: "ACC".into(),
        });
        entry.write_manifest(&m).unwrap();
        let marks = read_marks(&entry.manifest_path()).unwrap().unwrap();
        assert_eq!(marks.len(), 2);

        // Complete: the marks go, and the manifest reads as before.
        entry.write_complete(&m).unwrap();
        assert_eq!(read_marks(&entry.manifest_path()).unwrap(), None);
        assert_eq!(entry.manifest().unwrap().unwrap(), m);
    }

    #[test]
    fn files_of_a_manifest_without_marks_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let entry = cache.lock_study(&uid("1.2.3"), LockMode::Exclusive, || {}).unwrap();
        entry.write_manifest(&manifest("1.2.3")).unwrap();
        entry.put_test_instance(&uid("1.2.3.4"), &uid("1.2.3.4.1"), 1).unwrap();
        assert!(entry.unmarked().unwrap().is_empty());
        entry.begin_fetch(&manifest("1.2.3")).unwrap();
        let marks = read_marks(&entry.manifest_path()).unwrap().unwrap();
        assert_eq!(marks, [uid("1.2.3.4.1")].into());
    }
}
