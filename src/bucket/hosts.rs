//! What the client hands hosts in pull mode (`deploy`/`push --from`): the
//! release as the remote has it, and URLs presigned for exactly its
//! objects, so hosts need neither credentials nor an S3 client.
//!
//! Invariant: the release the hosts are told to stage is the one the name
//! is bound to in the remote; when the local store knows the name too, it
//! must be bound to the same id there, or nothing is offered.

use std::collections::HashMap;
use std::time::Duration;

use super::format;
use super::s3::Remote;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::protocol::{Location, PullSource};
use crate::store::{ReleaseRecord, Store};

/// How long presigned URLs stay valid by default: they must outlast the
/// slowest host's download (`url_lifetime` in `[remotes.NAME]`).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A release to stage from a remote.
pub struct Pulled {
    pub record: ReleaseRecord,
    pub manifest: Manifest,
    pub source: PullSource,
    /// Where each content is (the pack by its number in `source.packs`),
    /// from the release's index: the client sends a host the locations of
    /// the few objects it lacks instead of the whole index.
    pub locations: HashMap<Digest, Location>,
}

/// Resolve REL for hosts to pull from `remote`.
///
/// # Errors
/// Usage error when REL is not published there (or is an id without a
/// name); [`Error::RemoteRebound`] when the local store binds the name to
/// another id; request failures; a manifest or index that does not match.
pub fn pulled(store: &Store, remote: &Remote, rel: &str, lifetime: Duration) -> Result<Pulled> {
    let local = store.resolve(rel).ok().and_then(|(_, r)| r);
    let (id, name) = match &local {
        Some(r) => match super::names::bound(remote, &r.name)? {
            Some(id) if id == r.id => (id, r.name.clone()),
            Some(other) => {
                return Err(Error::RemoteRebound(format!(
                    "release `{}` is {} in the local store but {other} in remote `{}`; deploy one of them by id or under another name",
                    r.name, r.id, remote.name
                )));
            }
            None => {
                return Err(Error::usage(format!(
                    "`{}` is not published in remote `{}`: `slipway publish {} --to {}` first",
                    r.name, remote.name, r.name, remote.name
                )));
            }
        },
        None => match super::fetch::resolve(remote, rel)? {
            (id, Some(name)) => (id, name),
            (id, None) => {
                return Err(Error::usage(format!(
                    "`{rel}` is {id}, which has no name in remote `{}`; deploy it by name",
                    remote.name
                )));
            }
        },
    };
    let manifest = if store.has_bundle(&id) {
        store.manifest(&id)?
    } else {
        super::fetch::manifest(remote, &id)?
    };
    let contents = format::contents(&manifest);
    let index = super::fetch::index(remote, &id, contents.len())?;
    let locations = contents
        .iter()
        .zip(&index.objects)
        .map(|((d, _), l)| {
            (
                *d,
                Location {
                    pack: l.0,
                    offset: l.1,
                    len: l.2,
                },
            )
        })
        .collect();
    let mut signatures = local.as_ref().map(|r| r.signatures.clone()).unwrap_or_default();
    crate::signature::merge(&mut signatures, remote_signatures(remote, &id)?);
    let provenance = match local.as_ref().and_then(|r| r.provenance.clone()) {
        Some(p) => Some(p),
        None => remote
            .get(&format::provenance_key(&id), 1 << 20)?
            .and_then(|b| serde_json::from_slice(&b).ok()),
    };
    let source = PullSource {
        remote: remote.name.clone(),
        manifest: remote.presign_get(&format::manifest_key(&id), lifetime),
        index: remote.presign_get(&format::index_key(&id), lifetime),
        packs: index
            .packs
            .iter()
            .map(|p| remote.presign_get(&format::pack_key(p), lifetime))
            .collect(),
        assist: true,
    };
    Ok(Pulled {
        record: ReleaseRecord {
            name,
            id,
            provenance,
            signatures,
            forgotten: false,
        },
        manifest,
        source,
        locations,
    })
}

/// The signatures the remote keeps for `id` (unparsable ones are left out:
/// the hosts check every signature they are given anyway).
///
/// # Errors
/// Request failures.
pub fn remote_signatures(remote: &Remote, id: &Digest) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for item in remote.list(&format::signatures_prefix(id))? {
        if let Some(bytes) = remote.get(&item.key, 1 << 20)?
            && let Ok(v) = serde_json::from_slice(&bytes)
        {
            out.push(v);
        }
    }
    Ok(out)
}
