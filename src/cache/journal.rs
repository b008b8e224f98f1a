//! The delivery journal of a study for one destination: an append-only file
//! of JSON lines, one per answer the destination gave (or per failure to
//! get one). The last line about an instance is its state. Appending a line
//! is cheap whatever the study's size, and a line torn by a crash is ignored
//! on reading, so the worst a crash can do is have an instance sent again.
//!
//! What a power cut may resend: records reach the disk in groups of at most
//! [`UNSYNCED_MAX`] (and at the end of each association and study, see
//! [`Journal::sync`]), so a power cut forgets the deliveries of at most that
//! many instances per study and destination, which the next run sends again,
//! besides the instances that were in flight. Syncing every record would
//! bound that to the instances in flight, but at one `fdatasync` per
//! instance: 3.6 ms each on the disk this was measured on, against 1.2 ms
//! for the whole C-STORE of a small instance to a destination on the same
//! machine, so three times slower; in groups of 16 it costs 0.2 ms an
//! instance.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::uid::Uid;

/// Where an instance stands with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Stored, status 0000.
    Delivered,
    /// Stored with a warning status (Bxxx and the like): delivered, and said.
    Warning,
    /// Not stored: a failure status, a refused syntax, or no answer.
    Failed,
}

impl DeliveryState {
    pub fn is_delivered(self) -> bool {
        matches!(self, DeliveryState::Delivered | DeliveryState::Warning)
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub sop: Uid,
    pub state: DeliveryState,
    /// The DIMSE status, when the destination answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong or what the warning means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
    /// For a delivery: the fingerprint of the coercion rules the copy sent
    /// was made with; absent when the cached file was sent as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coerced: Option<String>,
}

pub(super) fn path(study_dir: &Path, destination: &str) -> PathBuf {
    study_dir.join("delivered").join(format!("{destination}.jsonl"))
}

pub(super) fn destinations(study_dir: &Path) -> Result<Vec<String>> {
    let dir = study_dir.join("delivered");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", dir.display())),
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".jsonl"))
                .map(str::to_string)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The last record of each instance in the journal at `path`. A line that
/// is whole but names an invalid UID was not written by retriever: the
/// journal is refused rather than the line skipped, since skipping it
/// could forget that an instance was delivered.
pub(super) fn read(path: &Path) -> Result<BTreeMap<Uid, Delivery>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", path.display())),
    };
    let mut out = BTreeMap::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("failed to read `{}`", path.display()))?;
        match serde_json::from_str::<Delivery>(&line) {
            Ok(record) => {
                out.insert(record.sop.clone(), record);
            }
            // A line cut short by a crash does not parse and is skipped.
            Err(_) => {
                if let Some(bad) = invalid_uid(&line) {
                    return Err(damaged(path, n + 1, bad));
                }
            }
        }
    }
    Ok(out)
}

/// The UID error of a whole line whose `sop` is not a valid UID; `None`
/// for a line that does not parse at all (torn by a crash).
fn invalid_uid(line: &str) -> Option<crate::uid::InvalidUid> {
    #[derive(Deserialize)]
    struct Unchecked {
        sop: String,
    }
    let unchecked = serde_json::from_str::<Unchecked>(line).ok()?;
    Uid::parse(&unchecked.sop).err()
}

fn damaged(path: &Path, line: usize, bad: crate::uid::InvalidUid) -> anyhow::Error {
    let study_dir = path.parent().and_then(Path::parent).unwrap_or(path);
    anyhow::Error::new(bad).context(format!(
        "the delivery journal `{}` is damaged (line {line}); this cache entry cannot be trusted: \
         delete the study's directory `{}` and fetch the study again",
        path.display(),
        study_dir.display()
    ))
}

/// Records appended but not yet synced, at most (see the module's comment).
pub const UNSYNCED_MAX: usize = 16;

/// An open journal, locked against other writers until dropped.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Records appended since the last sync.
    unsynced: usize,
}

impl Journal {
    pub(super) fn open(path: &Path) -> Result<Journal> {
        let dir = path.parent().context("journal path has no parent")?;
        super::fsutil::create_dir_all(dir)?;
        let file = super::fsutil::private_options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("failed to open the delivery journal `{}`", path.display()))?;
        file.lock()
            .with_context(|| format!("failed to lock the delivery journal `{}`", path.display()))?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            unsynced: 0,
        };
        journal.heal()?;
        Ok(journal)
    }

    /// Ends a line torn by a crash, so that the next record starts on a line of its own.
    fn heal(&mut self) -> Result<()> {
        let read = |e: io::Error| anyhow::Error::new(e).context(format!("failed to read `{}`", self.path.display()));
        let len = self.file.metadata().map_err(read)?.len();
        let mut last = [b'\n'];
        if len > 0 {
            File::open(&self.path)
                .and_then(|mut f| f.seek(SeekFrom::Start(len - 1)).and_then(|_| f.read_exact(&mut last)))
                .map_err(read)?;
        }
        if last[0] != b'\n' {
            self.file
                .write_all(b"\n")
                .map_err(|e| super::fsutil::write_error(e, "write", &self.path))?;
        }
        Ok(())
    }

    /// The last record of each instance.
    pub fn read(&self) -> Result<BTreeMap<Uid, Delivery>> {
        read(&self.path)
    }

    /// Appends a record. It survives the process being killed at once, and
    /// a power cut once synced: here, when it is the [`UNSYNCED_MAX`]th
    /// unsynced one, else by the next [`Journal::sync`].
    pub fn record(&mut self, delivery: &Delivery) -> Result<()> {
        let mut line = serde_json::to_vec(delivery).context("failed to encode a delivery record")?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| super::fsutil::write_error(e, "write the delivery journal", &self.path))?;
        self.unsynced += 1;
        if self.unsynced >= UNSYNCED_MAX {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes every record appended so far survive a power cut. Called when
    /// an association or a study is done, and before its deliveries are
    /// reported.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced == 0 {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| super::fsutil::write_error(e, "sync the delivery journal", &self.path))?;
        self.unsynced = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn record(sop: &str, state: DeliveryState) -> Delivery {
        Delivery {
            sop: Uid::parse(sop).unwrap(),
            state,
            status: Some(0),
            detail: None,
            at: "2026-11-27T00:00:00Z".into(),
            coerced: None,
        }
    }

    #[test]
    fn last_record_wins_and_torn_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "PACS@host_104");
        {
            let mut j = Journal::open(&path).unwrap();
            j.record(&record("1.1", DeliveryState::Failed)).unwrap();
            j.record(&record("1.2", DeliveryState::Delivered)).unwrap();
            j.record(&record("1.1", DeliveryState::Warning)).unwrap();
        }
        // A crash in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"sop\":\"1.3\",\"sta").unwrap();
        drop(f);
        let mut j = Journal::open(&path).unwrap();
        j.record(&record("1.4", DeliveryState::Delivered)).unwrap();
        let state = j.read().unwrap();
        assert_eq!(state.len(), 3);
        assert_eq!(state["1.1"].state, DeliveryState::Warning);
        assert!(state["1.4"].state.is_delivered());
        assert_eq!(destinations(dir.path()).unwrap(), vec!["PACS@host_104".to_string()]);
    }

    #[test]
    fn records_are_synced_in_groups_of_at_most_unsynced_max() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&path(dir.path(), "PACS@host_104")).unwrap();
        for n in 1..=2 * UNSYNCED_MAX + 3 {
            j.record(&record(&format!("1.{n}"), DeliveryState::Delivered)).unwrap();
            assert_eq!(j.unsynced, n % UNSYNCED_MAX);
        }
        j.sync().unwrap();
        assert_eq!(j.unsynced, 0);
    }

    /// Journal lines as the versions before typed UIDs wrote them.
    const WRITTEN_BEFORE: &str = concat!(
        r#"{"sop":"1.2.826.0.1.3680043.2.1125.1.1.1","state":"failed","status":42752,"detail":"refused","at":"2026-12-03T10:00:00Z"}"#,
        "\n",
        r#"{"sop":"1.2.826.0.1.3680043.2.1125.1.1.1","state":"delivered","status":0,"at":"2026-12-03T10:01:00Z"}"#,
        "\n",
        r#"{"sop":"1.2.826.0.1.3680043.2.1125.1.1.2","state":"warning","status":45056,"detail":"coerced","at":"2026-12-03T10:01:00Z"}"#,
        "\n",
    );

    #[test]
    fn a_journal_of_the_previous_version_reads_and_writes_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let before = path(dir.path(), "PACS@host_104");
        fs::create_dir_all(before.parent().unwrap()).unwrap();
        fs::write(&before, WRITTEN_BEFORE).unwrap();
        let state = read(&before).unwrap();
        assert_eq!(state.len(), 2);
        assert_eq!(
            state["1.2.826.0.1.3680043.2.1125.1.1.1"].state,
            DeliveryState::Delivered
        );

        // Every line, recorded again in order, gives the same bytes.
        let again = path(dir.path(), "OTHER@host_104");
        let mut j = Journal::open(&again).unwrap();
        for line in WRITTEN_BEFORE.lines() {
            j.record(&serde_json::from_str::<Delivery>(line).unwrap()).unwrap();
        }
        drop(j);
        assert_eq!(fs::read_to_string(&again).unwrap(), WRITTEN_BEFORE);
    }

    #[test]
    fn a_journal_naming_an_invalid_uid_is_refused_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "PACS@host_104");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bad = WRITTEN_BEFORE.replace("1.2.826.0.1.3680043.2.1125.1.1.2", "../1.2");
        fs::write(&path, bad).unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(e.starts_with("the delivery journal `"), "{e}");
        assert!(e.contains("is damaged (line 3)"), "{e}");
        assert!(e.contains("delete the study's directory"), "{e}");
        assert!(e.contains("`../1.2` is not a valid DICOM UID"), "{e}");
        // The same through an open journal, which the delivery reads.
        let e = format!("{:#}", Journal::open(&path).unwrap().read().unwrap_err());
        assert!(e.contains("is damaged"), "{e}");
    }
}
