//! Names in a remote store, immutable on every engine, and the locks that
//! keep `gc` and `publish` apart.
//!
//! Binding `name` to `id` (the design and why: docs/remote-store.md):
//!
//! ```text
//! list names/<name>/     bound to another id ─▶ refused; to this id ─▶ done
//!                        another id's claim  ─▶ refused (a publish in progress, or killed)
//! put  names/<name>/<id>.claim
//! list names/<name>/     anything of another id ─▶ delete our claim, refused
//! put  names/<name>/<id>                     ─▶ bound
//! delete our claim
//! ```
//!
//! Invariant: given a store whose listings show every write that finished
//! before the listing started (S3's strong read-after-write consistency,
//! which Garage and SeaweedFS give too), two publishers of different ids
//! can never both bind a name: whichever of them lists second sees the
//! other's claim. Both may lose (each saw the other's); neither overwrites
//! anything, so a store that ignores `If-None-Match` changes nothing.
//! A reader that finds two bound ids refuses to choose.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::format::{NameRecord, bound_key, claim_key, names_prefix};
use super::s3::Remote;
use crate::digest::Digest;
use crate::error::{Error, Result};

/// What `names/<name>/` holds.
#[derive(Debug, Default)]
pub struct NameState {
    pub bound: Vec<Digest>,
    pub claims: Vec<Digest>,
}

/// List a name's bound ids and claims.
///
/// # Errors
/// A failed listing.
pub fn state(remote: &Remote, name: &str) -> Result<NameState> {
    let prefix = names_prefix(name);
    let mut st = NameState::default();
    for item in remote.list(&prefix)? {
        let Some(rest) = item.key.strip_prefix(&prefix) else {
            continue;
        };
        match rest.strip_suffix(".claim") {
            Some(hex) => st.claims.extend(Digest::from_hex(hex)),
            None => st.bound.extend(Digest::from_hex(rest)),
        }
    }
    Ok(st)
}

/// The one id `name` is bound to in the remote, or `None`.
///
/// # Errors
/// Integrity error when two ids are bound (refusing to choose).
pub fn bound(remote: &Remote, name: &str) -> Result<Option<Digest>> {
    one_bound(remote, name, &state(remote, name)?)
}

fn one_bound(remote: &Remote, name: &str, st: &NameState) -> Result<Option<Digest>> {
    match st.bound.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => {
            let ids: Vec<String> = many.iter().map(ToString::to_string).collect();
            Err(Error::integrity(format!(
                "remote `{}` binds `{name}` to {} ids ({}); names are bound once, so this store was written by something else or damaged: refusing to choose",
                remote.name,
                many.len(),
                ids.join(", ")
            )))
        }
    }
}

fn refused(remote: &Remote, name: &str, id: &Digest, other: &Digest, how: &str) -> Error {
    Error::RemoteRebound(format!(
        "release `{name}` {how} {other} in remote `{}`, not {id}; a name is never rebound: publish this build under another name",
        remote.name
    ))
}

fn claimed(remote: &Remote, name: &str, id: &Digest, other: &Digest) -> Error {
    Error::RemoteRebound(format!(
        "release `{name}` is being published as {other} to remote `{}` by someone else, or such a publish was killed; not publishing {id} under that name (`slipway gc --remote {}` removes the claims of publishes that are no longer running)",
        remote.name, remote.name
    ))
}

/// Before a publish uploads anything: the id `name` is bound to (`None`
/// when unbound), refused when another id is bound or claims it (what
/// [`bind`] would refuse once everything was uploaded).
///
/// # Errors
/// [`Error::RemoteRebound`]; as [`bound`].
pub fn check(remote: &Remote, name: &str, id: &Digest) -> Result<Option<Digest>> {
    let st = state(remote, name)?;
    let bound = one_bound(remote, name, &st)?;
    if let Some(other) = bound.filter(|b| b != id) {
        return Err(refused(remote, name, id, &other, "is already published as"));
    }
    if let Some(other) = st.claims.iter().find(|c| *c != id).filter(|_| bound.is_none()) {
        return Err(claimed(remote, name, id, other));
    }
    Ok(bound)
}

/// Bind `name` to `id` in the remote (the protocol of the module docs).
/// Returns `false` when it was bound to `id` already.
///
/// # Errors
/// [`Error::RemoteRebound`] when another id holds or claims the name.
pub fn bind(remote: &Remote, name: &str, id: &Digest) -> Result<bool> {
    let st = state(remote, name)?;
    if let Some(other) = st.bound.iter().find(|b| *b != id) {
        return Err(refused(remote, name, id, other, "is already published as"));
    }
    if !st.bound.is_empty() {
        return Ok(false);
    }
    if let Some(other) = st.claims.iter().find(|c| *c != id) {
        return Err(claimed(remote, name, id, other));
    }
    let record = NameRecord {
        name: name.to_string(),
        id: *id,
        published_at: crate::provenance::now_rfc3339(),
        published_by: crate::config::actor(),
    };
    let bytes = serde_json::to_vec_pretty(&record).map_err(Error::Encode)?;
    super::fault_point("before-claim");
    remote.put(&claim_key(name, id), &bytes)?;
    super::fault_point("after-claim");
    let st = state(remote, name)?;
    if let Some(other) = st.bound.iter().chain(&st.claims).find(|o| *o != id) {
        remote.delete(&claim_key(name, id))?;
        return Err(refused(remote, name, id, other, "was published at the same moment as"));
    }
    remote.put(&bound_key(name, id), &bytes)?;
    // Bound: a claim of the same id left behind (the delete failed) is
    // harmless, readers and publishers look at the bound key, and `gc
    // --remote` removes it. The publish succeeded either way.
    let _ = remote.delete(&claim_key(name, id));
    Ok(true)
}

/// A lock older than this was left by a killed process.
pub const LOCK_STALE: Duration = Duration::from_secs(10 * 60);
/// How often a held lock is renewed.
const LOCK_RENEW: Duration = Duration::from_secs(60);

fn millis_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A `publish` or `gc` in progress (`locks/<kind>-<millis>-<pid>-<nanos>`),
/// renewed every minute by a thread and removed when dropped. A publish
/// and a gc never run together; publishes run together freely.
pub struct RemoteLock<'r> {
    remote: &'r Remote,
    key: std::sync::Arc<std::sync::Mutex<String>>,
    stop: std::sync::mpsc::Sender<()>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

fn lock_key(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("locks/{kind}-{}-{}-{nanos}", millis_now(), std::process::id())
}

/// The keys of every lock (of any kind) not renewed for [`LOCK_STALE`].
///
/// # Errors
/// A failed listing.
pub fn stale_locks(remote: &Remote) -> Result<Vec<String>> {
    let now = millis_now();
    Ok(remote
        .list("locks/")?
        .into_iter()
        .filter(|item| {
            let stamp: u128 = item
                .key
                .rsplit('/')
                .next()
                .and_then(|k| k.split('-').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Duration::from_millis(u64::try_from(now.saturating_sub(stamp)).unwrap_or(u64::MAX)) >= LOCK_STALE
        })
        .map(|item| item.key)
        .collect())
}

/// The fresh locks of `kind` (other than `mine`), with their age.
fn fresh(remote: &Remote, kind: &str, mine: &str) -> Result<Vec<Duration>> {
    let prefix = format!("locks/{kind}-");
    let now = millis_now();
    let mut out = Vec::new();
    for item in remote.list(&prefix)? {
        if item.key == mine {
            continue;
        }
        let stamp: u128 = item.key[prefix.len()..]
            .split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let age = Duration::from_millis(u64::try_from(now.saturating_sub(stamp)).unwrap_or(u64::MAX));
        if age < LOCK_STALE {
            out.push(age);
        }
    }
    Ok(out)
}

/// Whether a lock of `kind` (`gc`, `publish`) is fresh in the remote:
/// what [`RemoteLock::take`] would be refused for, found by a listing only.
///
/// # Errors
/// A failed listing.
pub fn held(remote: &Remote, kind: &str) -> Result<bool> {
    Ok(!fresh(remote, kind, "")?.is_empty())
}

impl<'r> RemoteLock<'r> {
    /// Take a lock of `kind` (`publish` or `gc`), refused while a lock of
    /// `against` is fresh.
    ///
    /// # Errors
    /// [`Error::Locked`] (exit 4) naming what runs; a failed request.
    pub fn take(remote: &'r Remote, kind: &str, against: &str) -> Result<RemoteLock<'r>> {
        let key = lock_key(kind);
        remote.put(&key, crate::config::actor().as_bytes())?;
        let others = match fresh(remote, against, &key) {
            Ok(o) => o,
            Err(e) => {
                let _ = remote.delete(&key);
                return Err(e);
            }
        };
        if let Some(age) = others.iter().min() {
            remote.delete(&key)?;
            return Err(Error::Locked(format!(
                "a {against} of remote `{}` is running (its lock was renewed {} s ago); try again when it has finished (a lock not renewed for {} minutes is ignored)",
                remote.name,
                age.as_secs(),
                LOCK_STALE.as_secs() / 60
            )));
        }
        let key = std::sync::Arc::new(std::sync::Mutex::new(key));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let renewer = {
            let key = key.clone();
            let kind = kind.to_string();
            // The renewer needs its own handle on the remote's settings: a
            // `Remote` is cheap to describe again but not to share across a
            // thread's lifetime, so it gets a clone of what it needs.
            let renew = remote.clone();
            std::thread::spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LOCK_RENEW) {
                    let next = lock_key(&kind);
                    if renew.put(&next, b"renewed").is_ok()
                        && let Ok(mut k) = key.lock()
                    {
                        let old = std::mem::replace(&mut *k, next);
                        let _ = renew.delete(&old);
                    }
                }
            })
        };
        Ok(RemoteLock {
            remote,
            key,
            stop,
            renewer: Some(renewer),
        })
    }
}

impl Drop for RemoteLock<'_> {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if let Ok(k) = self.key.lock() {
            let _ = self.remote.delete(&k);
        }
    }
}
