//! Small filesystem helpers whose errors name the path, and the atomic
//! write (temporary name, fsync, rename) every cache write goes through.
//!
//! The cache holds patient data, so on Unix everything in it is created
//! private to the account running retriever, whatever its umask: directories
//! 0700, files 0600. (On Windows the cache inherits the ACL of
//! `%LOCALAPPDATA%`, which is the user's own.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow};

/// Mode of every directory the cache creates (Unix).
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;
/// Mode of every file the cache creates (Unix).
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

/// Creates `path` and its missing parents, private to this account.
pub fn create_dir_all(path: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder
        .create(path)
        .with_context(|| format!("failed to create the directory `{}`", path.display()))
}

/// Options that create a file private to this account (read and write
/// still to be chosen).
pub fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// Takes away what other accounts may do with the directory `dir` (Unix):
/// a cache made by an older retriever, or by hand, followed the umask.
/// Closing the root is enough: nothing under it can be reached any more.
pub fn make_private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)
            .with_context(|| format!("failed to read the permissions of `{}`", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode & !0o077)).with_context(|| {
                format!(
                    "the cache directory `{}` is open to other users (mode {:o}) and could not be made \
                     private; run `chmod 700` on it as its owner, or pass --cache DIR",
                    dir.display(),
                    mode & 0o777
                )
            })?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A file name that no other thread or process is using right now.
pub fn unique_name(stem: &str, ext: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{stem}.{}.{n}.{ext}", std::process::id())
}

/// A failed write of `path` in the cache (`what`: "write", "sync", ...).
/// A full disk says so, and what to do about it, whichever write found it.
pub fn write_error(e: io::Error, what: &str, path: &Path) -> anyhow::Error {
    if let Some(low) = e.get_ref().and_then(|i| i.downcast_ref::<LowSpace>()) {
        anyhow!(
            "the disk holding the cache is full: {} left, and retriever keeps {} free (failed to {what} `{}`); \
             free space (`retriever prune` removes studies past their retention) or move the cache elsewhere \
             with --cache DIR",
            crate::format::binary_size(low.available),
            crate::format::binary_size(low.reserve),
            path.display()
        )
    } else if e.kind() == io::ErrorKind::StorageFull {
        anyhow!(
            "the disk holding the cache is full (failed to {what} `{}`); free space (`retriever prune` \
             removes studies past their retention) or move the cache elsewhere with --cache DIR",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("failed to {what} `{}`", path.display()))
    }
}

/// Writing stopped because the disk would fall below the free-space reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowSpace {
    pub available: u64,
    pub reserve: u64,
}

impl std::fmt::Display for LowSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} free, less than the {} kept free",
            crate::format::binary_size(self.available),
            crate::format::binary_size(self.reserve)
        )
    }
}

impl std::error::Error for LowSpace {}

/// Fails with [`LowSpace`] (as a "storage full" error) when writing `more`
/// bytes into `dir` would leave less than `reserve` free. A filesystem that
/// cannot tell its free space is not held against the write.
pub fn check_free_space(dir: &Path, more: u64, reserve: u64) -> io::Result<()> {
    let Ok(available) = fs4::available_space(dir) else {
        return Ok(());
    };
    if available.saturating_sub(more) < reserve {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            LowSpace { available, reserve },
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` so that readers see either the old content or
/// the new one, never a mix, even after a crash or power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_as(path, bytes, private_options())
}

/// As [`write_atomic`], for a file outside the cache that another account
/// reads (a metrics file for a collector): created as the umask allows,
/// not private. Nothing about a patient may go in it.
pub fn write_atomic_readable(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_as(path, bytes, OpenOptions::new())
}

fn write_atomic_as(path: &Path, bytes: &[u8], mut options: OpenOptions) -> Result<()> {
    let dir = path.parent().context("atomic write target has no parent directory")?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(unique_name(name, "tmp"));
    let result = (|| {
        let mut file = options
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| write_error(e, "create", &tmp))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| write_error(e, "write", &tmp))?;
        rename(&tmp, path)?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).with_context(|| format!("failed to rename `{}` to `{}`", from.display(), to.display()))
}

/// Makes a rename in `dir` durable. Only meaningful (and possible) on Unix;
/// on Windows the rename is journaled by NTFS.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Makes the instance files `files`, and their names, durable: one sync
/// for all of them (group commit, see `durable`). On Linux that is one
/// `syncfs(2)` of the filesystem holding `dir`, which writes back the files
/// and the renames together; elsewhere each file is synced (on Windows
/// `FlushFileBuffers`, there being nothing better) and then the directories
/// holding them. A single file is synced alone on Linux too: `syncfs` also
/// waits for whatever other programs wrote, which is worth it only when it
/// saves syncs.
pub fn sync_files(dir: &Path, files: &[&Path]) -> Result<()> {
    #[cfg(target_os = "linux")]
    if files.len() > 1 {
        use std::os::fd::AsRawFd;
        let d = File::open(dir).with_context(|| format!("failed to open `{}`", dir.display()))?;
        // SAFETY: syncfs takes any open file descriptor and touches no memory.
        if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
            return Ok(());
        }
        // A filesystem that cannot (an old kernel's network mount): file by file.
    }
    let mut dirs: Vec<&Path> = Vec::new();
    for path in files {
        let mut options = OpenOptions::new();
        // FlushFileBuffers needs a handle open for writing.
        options.read(true).write(cfg!(windows));
        options
            .open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| write_error(e, "sync", path))?;
        if let Some(parent) = path.parent()
            && !dirs.contains(&parent)
        {
            dirs.push(parent);
        }
    }
    for d in dirs {
        sync_dir(d);
        if let Some(series_root) = d.parent() {
            sync_dir(series_root);
        }
    }
    sync_dir(dir);
    Ok(())
}

/// Starts writing `file`'s data back to the disk without waiting for it
/// (Linux), so that the sync of its batch has less left to do.
pub fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range takes an open file descriptor and touches
        // no memory; a failure only leaves the work to the batch's sync.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// True when `file` is still the file named `path`: not deleted, nor
/// replaced by another file of that name, since it was opened. When that
/// cannot be told, true.
pub fn still_named(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => false,
            _ => true,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// The name `write_atomic` gives its temporary file, `NAME.PID.N.tmp`
/// (see [`unique_name`]): the leftover of a write that never finished.
pub fn is_atomic_temporary(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".tmp") else {
        return false;
    };
    let mut parts = stem.rsplitn(3, '.');
    let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next()) && parts.next().is_some_and(|p| !p.is_empty())
}

/// The latest modification time of anything under `path` (itself included).
pub fn newest_mtime(path: &Path) -> Option<std::time::SystemTime> {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter_map(|m| m.modified().ok())
        .max()
}

/// Deletes the tree at `path` as far as it can: a file another program
/// holds open (Windows) stays, and so do the directories holding it. What
/// is gone already is fine (another process may be deleting it too).
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return ignore_not_found(fs::remove_file(path)),
        Ok(_) => {}
    }
    // Files first, each on its own, so that one that cannot be deleted
    // does not keep the others; then the directories, deepest first.
    let mut first_error = None;
    let mut dirs = Vec::new();
    for entry in walkdir::WalkDir::new(path).contents_first(true) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
            Err(e) => {
                first_error.get_or_insert(std::io::Error::other(e));
                continue;
            }
        };
        let result = if entry.file_type().is_dir() {
            dirs.push(entry.into_path());
            continue;
        } else {
            ignore_not_found(fs::remove_file(entry.path()))
        };
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    for dir in dirs {
        if let Err(e) = ignore_not_found(fs::remove_dir(&dir)) {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn ignore_not_found(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Size of everything under `dir`, in bytes.
pub fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// True when both files hold the same bytes.
pub fn same_contents(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let open = |p: &Path| File::open(p).with_context(|| format!("failed to open `{}`", p.display()));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (la, lb) = (fa.metadata()?.len(), fb.metadata()?.len());
    if la != lb {
        return Ok(false);
    }
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = fa
            .read(&mut ba)
            .with_context(|| format!("failed to read `{}`", a.display()))?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])
            .with_context(|| format!("failed to read `{}`", b.display()))?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Opens (creating it if needed) a file used only for its lock.
/// Opens the lock file `path` and takes its exclusive lock if no one holds
/// it; `None` if another process does.
pub fn try_lock(path: &Path) -> Result<Option<File>> {
    let file = open_lock(path).with_context(|| format!("failed to open the lock file `{}`", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("failed to lock `{}`", path.display())),
    }
}

pub fn open_lock(path: &Path) -> std::io::Result<File> {
    private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}
