//! The host's operator lock: an exclusive `flock(2)` on `.slipway/lock` for
//! activate, rollback and prune, with the holder's details in
//! `.slipway/lock.info`.
//!
//! Invariants: the lock file is never replaced or deleted (so every process
//! locks the same inode); a crashed holder never leaves a stale lock, because
//! the kernel drops it with the process. `lock.info` may outlive its holder:
//! it only counts while the lock is really held.

use std::fs::{File, TryLockError};
use std::time::{Duration, Instant};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::fs;

// Temporary: `fleet.rs` still imports `host::lock::LockInfo`; the type lives in
// `protocol::types`, which is where new code should import it from.
pub use crate::protocol::LockInfo;

/// A held exclusive lock; dropped, it is released.
pub struct HostLock {
    _file: File,
}

/// Take the exclusive lock, failing fast (exit 4, naming the holder) or
/// waiting up to `wait`.
///
/// # Errors
/// `Error::Locked` when another operator holds it; I/O errors.
pub fn acquire(layout: &Layout, me: &LockInfo, wait: Option<Duration>) -> Result<HostLock> {
    acquire_telling(layout, me, wait, &mut |_| {})
}

/// [`acquire`], calling `waiting` once with the holder's details when it
/// has to wait for another operator (only with `wait`).
///
/// # Errors
/// As [`acquire`].
pub fn acquire_telling(
    layout: &Layout,
    me: &LockInfo,
    wait: Option<Duration>,
    waiting: &mut dyn FnMut(&LockInfo),
) -> Result<HostLock> {
    let path = layout.lock_path();
    let file = fs::lock_file(&path)?;
    let deadline = wait.map(|w| Instant::now() + w);
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if let Some(d) = deadline
                    && Instant::now() < d
                {
                    if !told {
                        told = true;
                        waiting(&read_info(layout).unwrap_or_else(unknown_holder));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let holder = read_info(layout)
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "another operator".to_string());
                let waited = match wait {
                    Some(w) => format!(" after waiting {} s", w.as_secs()),
                    None => String::new(),
                };
                return Err(Error::Locked(format!(
                    "`{}` is locked by {holder}{waited}; retry when it is done, or pass `--wait SECS`",
                    layout.root.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
    }
    let bytes = serde_json::to_vec(me).map_err(Error::Encode)?;
    write_info(layout, &bytes)?;
    Ok(HostLock { _file: file })
}

/// Write `lock.info`, atomically. On a full disk the lock (an `flock`,
/// which needs no space) must still be taken, so that the way back and
/// read-only commands work: the info is then written over the old one in
/// place (its block is already allocated), or, failing that, removed, so
/// that others see an unknown holder rather than a wrong one.
fn write_info(layout: &Layout, bytes: &[u8]) -> Result<()> {
    let path = layout.lock_info_path();
    match fs::write_atomic(&path, bytes) {
        Err(e) if e.is_no_space() => {}
        other => return other,
    }
    let in_place = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
        f.write_all(bytes)?;
        f.set_len(bytes.len() as u64)?;
        f.sync_data()
    })();
    if in_place.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

fn read_info(layout: &Layout) -> Option<LockInfo> {
    let bytes = fs::read_optional(&layout.lock_info_path()).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// The current holder, if the lock is held right now.
///
/// # Errors
/// On I/O failure.
pub fn holder(layout: &Layout) -> Result<Option<LockInfo>> {
    let path = layout.lock_path();
    let file = fs::lock_file(&path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => Ok(Some(read_info(layout).unwrap_or_else(unknown_holder))),
        Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

/// A holder whose `lock.info` cannot be read.
fn unknown_holder() -> LockInfo {
    LockInfo {
        actor: "unknown".into(),
        command: "unknown".into(),
        pid: 0,
        since: "unknown".into(),
    }
}
