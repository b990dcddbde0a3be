//! `slipway gc --remote REMOTE`: remove what no name needs.
//!
//! ```text
//! lock (gc; refused while a publish's lock is fresh, and publishes wait for it)
//!   ─▶ live ids: every bound name ─▶ live packs: every live id's index
//!   ─▶ claims (no publish runs, so every claim is a killed publish's) ─▶ removed
//!   ─▶ releases/<id>/… of ids no name binds ─▶ removed
//!   ─▶ packs/<p>.pack and .idx no live index names ─▶ removed
//! ```
//!
//! Invariant: nothing a bound name needs is ever removed (names are never
//! removed, and a publish never runs beside a gc, so no publish can come to
//! rely on a pack this gc is removing; docs/remote-store.md says why).

use std::collections::HashSet;

use super::format::{self, ReleaseIndex};
use super::names::RemoteLock;
use super::s3::{MAX_SMALL, Remote};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// What a remote gc removed (or would, with `dry_run`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Collected {
    pub remote: String,
    pub releases: Vec<Digest>,
    pub packs: usize,
    pub bytes: u64,
    pub claims: usize,
    /// Locks left by killed publishes and gcs.
    pub locks: usize,
    pub dry_run: bool,
}

/// Collect `remote`.
///
/// # Errors
/// [`Error::Locked`] while a publish runs; request failures; an index of a
/// live release that cannot be read (nothing is removed then).
pub fn gc(remote: &Remote, dry_run: bool) -> Result<Collected> {
    let _lock = RemoteLock::take(remote, "gc", "publish")?;
    let mut done = Collected {
        remote: remote.name.clone(),
        dry_run,
        ..Collected::default()
    };
    let mut live: HashSet<Digest> = HashSet::new();
    let mut claims = Vec::new();
    for item in remote.list("names/")? {
        let Some((_, last)) = item.key.rsplit_once('/') else {
            continue;
        };
        match last.strip_suffix(".claim") {
            Some(_) => claims.push(item.key),
            None => live.extend(Digest::from_hex(last)),
        }
    }
    let mut live_packs: HashSet<String> = HashSet::new();
    for id in &live {
        let key = format::index_key(id);
        let bytes = remote.get(&key, MAX_SMALL)?.ok_or_else(|| {
            Error::Remote(format!(
                "remote `{}`: a name binds {id} but `{key}` is missing; not collecting anything",
                remote.name
            ))
        })?;
        let index = ReleaseIndex::decode(&bytes, MAX_SMALL, &format!("remote `{}`: `{key}`", remote.name))?;
        live_packs.extend(index.packs);
    }
    let mut doomed = Vec::new();
    done.claims = claims.len();
    doomed.extend(claims);
    let mut dead_releases = HashSet::new();
    for item in remote.list("releases/")? {
        let id = item
            .key
            .strip_prefix("releases/")
            .and_then(|r| r.split_once('/'))
            .and_then(|(id, _)| Digest::from_hex(id));
        if let Some(id) = id
            && !live.contains(&id)
        {
            dead_releases.insert(id);
            doomed.push(item.key);
        }
    }
    // Locks of killed processes (not renewed for LOCK_STALE): nobody holds them.
    let stale = super::names::stale_locks(remote)?;
    done.locks = stale.len();
    doomed.extend(stale);
    for item in remote.list("packs/")? {
        let pack = item
            .key
            .strip_prefix("packs/")
            .and_then(|k| k.strip_suffix(".pack").or_else(|| k.strip_suffix(".idx")));
        if let Some(p) = pack
            && !live_packs.contains(p)
        {
            if item.key.ends_with(".pack") {
                done.packs += 1;
            }
            done.bytes += item.size;
            doomed.push(item.key);
        }
    }
    done.releases = dead_releases.into_iter().collect();
    done.releases.sort();
    if !dry_run {
        for key in &doomed {
            remote.delete(key)?;
        }
    }
    Ok(done)
}
