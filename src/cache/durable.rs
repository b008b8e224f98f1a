//! Group commit: instance files are moved into place as soon as the intake
//! gate has checked them, but made durable in batches, with one sync for
//! the batch, as databases have long done for their logs. One `fsync` per
//! file costs more than the download itself on a fast link; one sync per
//! batch costs little more than none.
//!
//! A batch is synced when it holds [`BATCH_BYTES`], when its oldest file
//! has waited [`BATCH_AGE`], when a series' download ends, and when a round
//! of the fetch ends. A file is usable (readable whole, sendable) as soon as
//! it is in place: only its record as durable waits for the sync, and a
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
use std::sync::Mutex;
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

    /// Syncs the batch if it is due (see the module's notes).
    pub fn sync_due(&self) -> Result<()> {
        let due = {
            let batch = self.group.batch.lock().unwrap();
            batch.bytes >= BATCH_BYTES || batch.since.is_some_and(|t| t.elapsed() >= BATCH_AGE)
        };
        if due { self.sync_batch() } else { Ok(()) }
    }

    /// Syncs whatever the batch holds (a series' download or a round ended),
    /// then marks its files durable in the manifest.
    pub fn sync_batch(&self) -> Result<()> {
        // One batch synced and marked at a time, so that the marks are
        // written in the order the batches became durable.
        let _syncing = self.group.syncing.lock().unwrap();
        let files = {
            let mut batch = self.group.batch.lock().unwrap();
            batch.bytes = 0;
            batch.since = None;
            std::mem::take(&mut batch.files)
        };
        if files.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let paths: Vec<&Path> = files.iter().map(|(_, path)| path.as_path()).collect();
        fsutil::sync_files(&self.dir, &paths)?;
        self.update_marks(|marks| marks.extend(files.into_iter().map(|(sop, _)| sop)))?;
        crate::timings::add(&format_args!("fetch of study {}", self.uid), "sync", started.elapsed());
        Ok(())
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
        let _syncing = self.group.syncing.lock().unwrap();
        let present = self.present()?;
        let unmarked = self.unmarked()?;
        let paths: Vec<&Path> = unmarked.values().map(|i| i.path.as_path()).collect();
        if !paths.is_empty() {
            fsutil::sync_files(&self.dir, &paths)?;
        }
        let marks = present.into_keys().collect();
        let _writing = self.group.manifest_lock.lock().unwrap();
        self.write_manifest_with(manifest, Some(&marks))
    }

    /// Records the study complete: every instance file is durable (the
    /// caller synced the last batch), so the marks are dropped and the
    /// manifest reads as any complete study's.
    pub fn write_complete(&self, manifest: &Manifest) -> Result<()> {
        // Whatever is not durable yet (a batch whose sync failed) is synced
        // now: the marks go only when nothing is left unmarked.
        self.sync_batch()?;
        let _syncing = self.group.syncing.lock().unwrap();
        let unmarked = self.unmarked()?;
        let paths: Vec<&Path> = unmarked.values().map(|i| i.path.as_path()).collect();
        if !paths.is_empty() {
            fsutil::sync_files(&self.dir, &paths)?;
        }
        self.sync_dirs();
        let _writing = self.group.manifest_lock.lock().unwrap();
        self.write_manifest_with(manifest, None)
    }

    /// Writes the manifest, keeping the durable marks it has. Marks that
    /// cannot be read are kept as none at all: every file is then checked
    /// again, never taken as durable.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let _writing = self.group.manifest_lock.lock().unwrap();
        let marks = read_marks(&self.manifest_path()).unwrap_or_else(|_| Some(BTreeSet::new()));
        self.write_manifest_with(manifest, marks.as_ref())
    }

    fn write_manifest_with(&self, manifest: &Manifest, marks: Option<&BTreeSet<Uid>>) -> Result<()> {
        fsutil::create_dir_all(&self.dir)?;
        fsutil::write_atomic(&self.manifest_path(), &encode(manifest, marks)?)
    }

    fn update_marks(&self, change: impl FnOnce(&mut BTreeSet<Uid>)) -> Result<()> {
        let _writing = self.group.manifest_lock.lock().unwrap();
        let manifest = self
            .manifest()?
            .context("the study's manifest disappeared from the cache while it was being fetched")?;
        let mut marks = read_marks(&self.manifest_path())?.unwrap_or_default();
        change(&mut marks);
        self.write_manifest_with(&manifest, Some(&marks))
    }
}

/// A study's entry: its batch, and the locks that keep the manifest's
/// read-change-write steps whole across the download threads.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    pub(super) batch: Mutex<Batch>,
    pub(super) syncing: Mutex<()>,
    pub(super) manifest_lock: Mutex<()>,
}

impl StudyEntry {
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
        entry.sync_due().unwrap();
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
