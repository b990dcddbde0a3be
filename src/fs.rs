//! File-system helpers that name the path in every error and own durability:
//! write-to-temp + fsync + rename + fsync of the directory, fsynced appends,
//! many files fsynced at once, and removal of read-only trees.
//!
//! Nothing else in slipway calls `std::fs` for a persistent write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io("read", path, e))
}

pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// Read a file that may not exist: `Ok(None)` when it does not.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// What [`read_small_optional`] found.
#[derive(Debug)]
pub enum Small {
    Missing,
    /// A fifo, device, socket or directory: never read (a fifo could block forever, `/dev/zero` never ends).
    NotRegular,
    /// A regular file longer than the limit: never read; its length.
    TooLarge(u64),
    Bytes(Vec<u8>),
}

/// Read a small regular file that may not exist, without blocking on a fifo
/// and without reading more than `limit` bytes whatever the file is.
///
/// # Errors
/// On I/O failure other than the file being absent.
pub fn read_small_optional(path: &Path, limit: u64) -> Result<Small> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Small::Missing),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io("access", path, e))?;
    if !meta.is_file() {
        return Ok(Small::NotRegular);
    }
    if meta.len() > limit {
        return Ok(Small::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > limit {
        return Ok(Small::TooLarge(bytes.len() as u64));
    }
    Ok(Small::Bytes(bytes))
}

pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io("open", path, e))
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io("create directory", path, e))
}

pub fn metadata(path: &Path) -> Result<fs::Metadata> {
    fs::metadata(path).map_err(|e| Error::io("access", path, e))
}

pub fn symlink_metadata(path: &Path) -> Result<fs::Metadata> {
    fs::symlink_metadata(path).map_err(|e| Error::io("access", path, e))
}

/// `stat` (following symlinks) that maps "not found" to `None`.
pub fn metadata_optional(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("access", path, e)),
    }
}

/// `lstat` that maps "not found" to `None`.
pub fn symlink_metadata_optional(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("access", path, e)),
    }
}

pub fn read_link(path: &Path) -> Result<PathBuf> {
    fs::read_link(path).map_err(|e| Error::io("read link", path, e))
}

/// Directory entries as (file name, path), sorted by name.
pub fn read_dir_sorted(path: &Path) -> Result<Vec<(std::ffi::OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| Error::io("list", path, e))? {
        let entry = entry.map_err(|e| Error::io("list", path, e))?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort();
    Ok(out)
}

pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
}

pub fn hard_link(src: &Path, dst: &Path) -> Result<()> {
    fs::hard_link(src, dst).map_err(|e| Error::io("link", dst, e))
}

/// Link `src` at `dst` unless something is there: `Some(true)` when
/// linked, `Some(false)` when `dst` exists, `None` when no link can be made
/// (another file system, the link limit).
///
/// # Errors
/// Other I/O errors.
pub fn hard_link_noreplace(src: &Path, dst: &Path) -> Result<Option<bool>> {
    match fs::hard_link(src, dst) {
        Ok(()) => Ok(Some(true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Some(false)),
        Err(e)
            if matches!(
                rustix::io::Errno::from_io_error(&e),
                Some(rustix::io::Errno::XDEV | rustix::io::Errno::MLINK)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::io("link", dst, e)),
    }
}

/// fsync a file's contents and metadata.
///
/// # Errors
/// I/O errors.
pub fn fsync_file(path: &Path) -> Result<()> {
    open(path)?.sync_all().map_err(|e| Error::io("sync", path, e))
}

pub fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(|e| Error::io("create symlink", link, e))
}

pub fn remove_file(path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
}

/// Remove a file if it exists.
pub fn remove_file_optional(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::io("chmod", path, e))
}

/// Set the mode of the directory at `path` without following a symlink
/// there: a link planted in place of a directory is refused, never chmodded
/// through (prune and tree removal walk host trees that others may change).
///
/// # Errors
/// When `path` is a symlink or not a directory, or on I/O failure.
pub fn set_dir_mode_nofollow(path: &Path, mode: u32) -> Result<()> {
    use rustix::fs::{CWD, Mode, OFlags, fchmod, openat};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = openat(CWD, path, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => Error::other(format!(
            "`{}` is not a directory (a symlink or file in its place); slipway does not change modes through it",
            path.display()
        )),
        e => Error::io("open", path, e.into()),
    })?;
    // fchmod does not take O_PATH descriptors on every kernel: go through
    // /proc, which names exactly the directory opened above.
    match fchmod(&fd, Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BADF) => {
            let via = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            fs::set_permissions(&via, fs::Permissions::from_mode(mode)).map_err(|e| Error::io("chmod", path, e))
        }
        Err(e) => Err(Error::io("chmod", path, e.into())),
    }
}

/// Set a file's modification time to `epoch` seconds.
pub fn set_mtime(file: &File, path: &Path, epoch: i64) -> Result<()> {
    let t = if epoch >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(epoch as u64)
    } else {
        SystemTime::UNIX_EPOCH
    };
    file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .map_err(|e| Error::io("set the time of", path, e))
}

/// fsync a directory so that renames and creations inside it are durable.
pub fn fsync_dir(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| Error::io("open", path, e))?;
    dir.sync_all().map_err(|e| Error::io("fsync", path, e))
}

/// Start writing `file`'s dirty pages back now, without waiting, so that a
/// later fsync of it finds them written (or on their way) instead of
/// starting all of them at once. `POSIX_FADV_DONTNEED` does exactly that on
/// Linux (`sync_file_range(SYNC_FILE_RANGE_WRITE)` would too, but has no
/// safe binding): pages still dirty or under writeback stay cached. Only
/// a hint: a failure is ignored, the fsync that follows is what counts.
pub fn start_writeback(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
}

/// At most this many fsyncs in flight at once in [`sync_paths`]. Each fsync
/// of a file whose metadata is already committed ends with a cache flush
/// of the device, and the block layer merges the flushes that wait while
/// one is in flight: 20,000 files fsynced one after another cost 20,000
/// flushes (15 s on a loop device here), 64 at a time cost a few hundred
/// (a first push of 20k files: 16 threads 1.9–2.8 s, 64 threads 1.8 s,
/// one `syncfs` 1.4 s). The threads only wait.
const SYNC_THREADS: usize = 64;

/// fsync each of `paths` (files or directories: their contents, metadata
/// and, for a directory, its entries), several at once. Durability exactly
/// for what was written, where `syncfs(2)` would also flush every other
/// writer's dirty data on the file system (a database's, a log shipper's)
/// and make the push wait behind it.
///
/// # Errors
/// The first path that cannot be opened or synced.
pub fn sync_paths(paths: &[PathBuf]) -> Result<()> {
    let sync = |path: &PathBuf| -> Result<()> {
        File::open(path)
            .map_err(|e| Error::io("open", path, e))?
            .sync_all()
            .map_err(|e| Error::io("fsync", path, e))
    };
    let threads = paths.len().div_ceil(4).min(SYNC_THREADS);
    if threads <= 1 {
        return paths.iter().try_for_each(sync);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> Result<()> {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(path) = paths.get(i) else { return Ok(()) };
            if let Err(e) = sync(path) {
                // The others stop at their next path.
                next.store(paths.len(), std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        }
    };
    std::thread::scope(|scope| {
        // A thread that cannot be made (a user's process limit) is one
        // fsync fewer in flight, not an error.
        let helpers: Vec<_> = (1..threads)
            .map_while(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mine = work();
        helpers.into_iter().fold(mine, |acc, h| {
            let theirs = h
                .join()
                .unwrap_or_else(|_| Err(Error::other("an fsync thread failed unexpectedly")));
            acc.and(theirs)
        })
    })
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file in `dir` that is removed unless persisted.
pub fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))
}

/// A temporary file in `dir` holding `bytes` (not synced: scratch input for
/// another program), removed when dropped.
///
/// # Errors
/// When it cannot be created or written.
pub fn write_temp(dir: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = temp_file_in(dir)?;
    tmp.write_all(bytes).map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.flush().map_err(|e| Error::io("write", tmp.path(), e))?;
    Ok(tmp)
}

/// A temporary directory in `dir` (name starting with `prefix`), removed when dropped.
///
/// # Errors
/// When it cannot be created.
pub fn temp_dir_in(dir: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .map_err(|e| Error::io("create a directory in", dir, e))
}

/// A temporary file beside `path` that will become `path`, a file the user
/// asked for (an export, a man page): created with mode 0644 minus the
/// umask, like a file any other program writes, not 0600 like slipway's
/// own scratch files. Errors name `path`, the file the user knows about.
///
/// # Errors
/// When it cannot be created (e.g. the directory of `path` does not exist).
pub fn user_file_for(path: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(parent_of(path))
        .map_err(|e| Error::io("create", path, e))
}

/// [`write_atomic`] for a file the user asked for: mode 0644 minus the umask
/// (see [`user_file_for`]).
///
/// # Errors
/// On any I/O failure; `path` is then unchanged.
pub fn write_user_file(path: &Path, bytes: &[u8]) -> Result<()> {
    persist_atomic(user_file_for(path)?, path, bytes)
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync the directory.
///
/// # Errors
/// On any I/O failure; `path` is then unchanged.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    persist_atomic(temp_file_in(parent_of(path))?, path, bytes)
}

fn persist_atomic(mut tmp: tempfile::NamedTempFile, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_of(path);
    tmp.write_all(bytes).map_err(|e| Error::io("write", path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io("fsync", path, e))?;
    tmp.persist(path).map_err(|e| Error::io("rename into", path, e.error))?;
    fsync_dir(dir)
}

/// Persist a temp file at `path` only if nothing is there yet (link + unlink),
/// then fsync the directory. Returns `false` when `path` already existed.
///
/// # Errors
/// On I/O failures other than "already exists".
pub fn persist_new(tmp: tempfile::NamedTempFile, path: &Path) -> Result<bool> {
    tmp.as_file().sync_all().map_err(|e| Error::io("fsync", path, e))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {
            fsync_dir(parent_of(path))?;
            Ok(true)
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("create", path, e.error)),
    }
}

/// Create `path` with `bytes` only if it does not exist (atomically, durably).
/// Returns `false` when it already existed.
///
/// # Errors
/// On I/O failures other than "already exists".
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<bool> {
    let mut tmp = temp_file_in(parent_of(path))?;
    tmp.write_all(bytes).map_err(|e| Error::io("write", path, e))?;
    persist_new(tmp, path)
}

/// Append one line to a log and fsync it (appends, never rewrites).
///
/// # Errors
/// On I/O failure.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    f.write_all(&buf).map_err(|e| Error::io("append to", path, e))?;
    f.sync_data().map_err(|e| Error::io("fsync", path, e))
}

/// Remove a tree that may contain read-only directories (releases are 0555).
///
/// # Errors
/// On I/O failure other than the tree being absent.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("access", path, e)),
        Ok(m) if !m.is_dir() => return remove_file(path),
        Ok(_) => {}
    }
    make_writable(path)?;
    fs::remove_dir_all(path).map_err(|e| Error::io("remove", path, e))
}

fn make_writable(dir: &Path) -> Result<()> {
    let m = symlink_metadata(dir)?;
    if m.permissions().mode() & 0o700 != 0o700 {
        set_dir_mode_nofollow(dir, 0o755)?;
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let ft = entry.file_type().map_err(|e| Error::io("access", &entry.path(), e))?;
        if ft.is_dir() {
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}

/// Copy everything from `r` into a new file at `path` (no fsync).
pub fn copy_into(r: &mut impl Read, w: &mut impl Write, path: &Path) -> Result<u64> {
    io::copy(r, w).map_err(|e| Error::io("write", path, e))
}

/// Create a new file at `path` with exactly `mode` (under the process umask),
/// failing if anything — even a dangling symlink — is already there.
///
/// # Errors
/// When `path` exists or cannot be created.
pub fn create_new(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

/// Create one directory with `mode` (under the umask); its parent must exist
/// and `path` must not (a symlink there is not followed).
///
/// # Errors
/// When `path` exists or cannot be created.
pub fn create_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| Error::io("create directory", path, e))
}

/// Rename `from` to `to` only if nothing is at `to` (`renameat2(NOREPLACE)`,
/// or link + unlink for files where the file system lacks it). Returns
/// `false`, leaving `from` in place, when `to` already exists.
///
/// # Errors
/// On I/O failures other than "already exists".
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(true),
        Err(Errno::EXIST) => return Ok(false),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
        Err(e) => return Err(Error::io("rename", from, e.into())),
    }
    let is_dir = symlink_metadata(from)?.is_dir();
    if is_dir {
        // No atomic no-replace for directories here: callers hold a lock on the name.
        if symlink_metadata_optional(to)?.is_some() {
            return Ok(false);
        }
        rename(from, to)?;
        return Ok(true);
    }
    match fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::io("link", to, e)),
    }
    remove_file(from)?;
    Ok(true)
}

/// Swap two directory entries atomically (`renameat2(RENAME_EXCHANGE)`):
/// whoever resolves either path sees the old or the new one, never neither.
///
/// # Errors
/// On I/O failure (including file systems without exchange support).
pub fn exchange(a: &Path, b: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(|e| Error::io("swap", b, e.into()))
}

/// How [`link_or_copy`] placed a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Linked,
    Copied,
}

/// Make `dst` (which must not exist) a hardlink of `src`, or — when `copy` is
/// set, the two are on different file systems (`EXDEV`) or `src` has too many
/// links (`EMLINK`) — a copy with `src`'s mode and modification time.
///
/// # Errors
/// When `dst` exists or neither a link nor a copy can be made.
pub fn link_or_copy(src: &Path, dst: &Path, copy: bool) -> Result<Placed> {
    use std::os::unix::fs::MetadataExt;
    if !copy {
        match fs::hard_link(src, dst) {
            Ok(()) => return Ok(Placed::Linked),
            Err(e)
                if matches!(
                    rustix::io::Errno::from_io_error(&e),
                    Some(rustix::io::Errno::XDEV | rustix::io::Errno::MLINK)
                ) => {}
            Err(e) => return Err(Error::io("link", dst, e)),
        }
    }
    let mut input = open(src)?;
    let meta = input.metadata().map_err(|e| Error::io("access", src, e))?;
    let mut out = create_new(dst, meta.mode() & 0o7777)?;
    io::copy(&mut input, &mut out).map_err(|e| Error::io("write", dst, e))?;
    set_mtime(&out, dst, meta.mtime())?;
    Ok(Placed::Copied)
}

/// Bytes available to an unprivileged user on the file system holding
/// `path`, and its allocation unit (every non-empty file takes a multiple).
///
/// # Errors
/// When `statvfs(2)` fails.
pub fn available_bytes(path: &Path) -> Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path).map_err(|e| Error::io("measure free space of", path, e.into()))?;
    Ok((s.f_bavail.saturating_mul(s.f_frsize), s.f_frsize.max(1)))
}

/// Bytes available to an unprivileged user, and the total size, of the file
/// system holding `path`.
///
/// # Errors
/// When `statvfs(2)` fails.
pub fn space(path: &Path) -> Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path).map_err(|e| Error::io("measure free space of", path, e.into()))?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

/// A held `flock(2)` lock, released when dropped or when the process dies.
#[derive(Debug)]
pub struct FileLock(#[allow(dead_code)] File);

/// Open (creating when missing, never truncating) the lock file at `path`.
///
/// # Errors
/// On I/O failure.
pub fn lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io("open", path, e))
}

/// Take a shared lock on `path` (created when missing, never replaced), waiting for it.
///
/// # Errors
/// On I/O failure.
pub fn lock_shared(path: &Path) -> Result<FileLock> {
    let f = lock_file(path)?;
    f.lock_shared().map_err(|e| Error::io("lock", path, e))?;
    Ok(FileLock(f))
}

/// Take an exclusive lock on `path` (created when missing, never replaced), waiting for it.
///
/// # Errors
/// On I/O failure.
pub fn lock_exclusive(path: &Path) -> Result<FileLock> {
    let f = lock_file(path)?;
    f.lock().map_err(|e| Error::io("lock", path, e))?;
    Ok(FileLock(f))
}

/// Take an exclusive lock on `path` if nobody holds it (`None` when
/// someone does), never waiting.
///
/// # Errors
/// On I/O failure.
pub fn try_lock_exclusive(path: &Path) -> Result<Option<FileLock>> {
    let f = lock_file(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(FileLock(f))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
    }
}

impl FileLock {
    /// Say who holds the lock, in the lock file itself (read by whoever
    /// waits for it); best effort: the lock is what counts.
    pub fn note_holder(&mut self, text: &str) {
        use std::io::{Seek, Write};
        let _ = self.0.set_len(0);
        let _ = self.0.seek(std::io::SeekFrom::Start(0));
        let _ = self.0.write_all(text.as_bytes());
    }
}

/// The last `n` bytes of a file, or `None` when it does not exist.
///
/// # Errors
/// On I/O failure other than absence.
pub fn read_optional_tail(path: &Path, n: u64) -> Result<Option<Vec<u8>>> {
    use std::io::{Seek, SeekFrom};
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let len = f.metadata().map_err(|e| Error::io("access", path, e))?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(n)))
        .map_err(|e| Error::io("read", path, e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| Error::io("read", path, e))?;
    Ok(Some(buf))
}

/// A name unique to this process and moment, for temporary siblings (`current.<unique>`).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_paths_syncs_files_and_directories_and_names_the_first_it_cannot_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths: Vec<PathBuf> = (0..300)
            .map(|i| {
                let p = dir.path().join(i.to_string());
                fs::write(&p, b"x").unwrap();
                p
            })
            .collect();
        paths.push(dir.path().to_path_buf());
        sync_paths(&paths).unwrap();
        sync_paths(&paths[..1]).unwrap();
        sync_paths(&[]).unwrap();
        // One missing path among many (and alone): an error naming it.
        let missing = dir.path().join("missing");
        paths.insert(150, missing.clone());
        for set in [&paths[..], std::slice::from_ref(&missing)] {
            let e = sync_paths(set).unwrap_err().to_string();
            assert!(e.contains("missing") && e.contains("open"), "{e}");
        }
    }

    #[test]
    fn rename_noreplace_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        assert!(!rename_noreplace(&a, &b).unwrap());
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "b");
        std::fs::remove_file(&b).unwrap();
        assert!(rename_noreplace(&a, &b).unwrap());
        assert!(!a.exists());
    }

    #[test]
    fn creators_do_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_new(&link, 0o444).is_err());
        assert!(create_dir(&link, 0o755).is_err());
        std::fs::write(dir.path().join("src"), "x").unwrap();
        assert!(link_or_copy(&dir.path().join("src"), &link, true).is_err());
        assert!(!target.exists());
    }
}
