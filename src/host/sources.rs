//! Where a release's missing contents come from, both feeding the one
//! staging path of [`super::stage`] through [`Incoming`]: the push stream
//! (a verbatim bundle or batches, read and checked here) or a remote store
//! (pull mode, [`super::pull`]).
//!
//! Invariant: an object reaches the writer only with its verdict owed (the
//! bundle reader's, a batch's sha256, or the pull's check on arrival), and
//! only while it is still wanted.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use super::objects::Feed;
use crate::bundle::unpack::{Visitor, read_bundle};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result, describe_io};
use crate::manifest::{Entry, Kind, Manifest, ObjectKey};
use crate::protocol::{Channel, Location, Message, PullSource, PushOffer, decode_locations};

/// Largest zstd window a client may make the host allocate (128 MiB).
pub(super) const MAX_WINDOW_LOG: u32 = 27;

/// Where the missing objects go: the files of the tree being built.
pub(super) struct Incoming<'a> {
    /// `tmp/<name>.partial`.
    pub(super) tree: &'a Path,
    /// Missing objects still to receive, with the entry to write each at.
    pub(super) wanted: &'a mut HashMap<ObjectKey, u32>,
    pub(super) feed: &'a mut Feed,
}

impl Incoming<'_> {
    /// Send the content of `entry` to the writer when its object is still
    /// wanted; returns whether it was (so the caller owes a verdict).
    fn take(&mut self, entry: &Entry, content: &mut dyn Read, hash: bool) -> Result<Option<Option<Digest>>> {
        let Some(key) = entry.object() else { return Ok(None) };
        if self.wanted.remove(&key).is_none() {
            return Ok(None);
        }
        let path = self.tree.join(&entry.path);
        self.feed
            .write(key, entry.size, path, content, &entry.path, hash)
            .map(Some)
    }
}

/// Keeps the objects it wants from a verbatim bundle; each is verified by
/// [`read_bundle`] before the next entry arrives (its documented contract),
/// so it is accepted then, or after `read_bundle` returns `Ok`.
struct BundleKeeper<'s, 'a> {
    id: Digest,
    incoming: &'s mut Incoming<'a>,
    /// An object was sent and awaits its verdict.
    pending: bool,
}

impl Visitor for BundleKeeper<'_, '_> {
    fn manifest(&mut self, _manifest: &Manifest, id: Digest) -> Result<()> {
        if id != self.id {
            return Err(Error::integrity(format!(
                "the bundle sent by the client holds {id}, not the offered {}",
                self.id
            )));
        }
        Ok(())
    }

    /// Objects the host has (or already took from this bundle) are skipped unhashed.
    fn wants_content(&mut self, entry: &Entry) -> bool {
        entry
            .object()
            .is_some_and(|key| self.incoming.wanted.contains_key(&key))
    }

    fn entry(&mut self, entry: &Entry, content: Option<&mut dyn Read>) -> Result<()> {
        if std::mem::take(&mut self.pending) {
            self.incoming.feed.accept()?;
        }
        if let Some(content) = content {
            self.pending = self.incoming.take(entry, content, false)?.is_some();
        }
        Ok(())
    }
}

pub(super) fn receive_bundle<R: Read, W: Write>(
    ch: &mut Channel<R, W>,
    offer: &PushOffer,
    incoming: &mut Incoming<'_>,
) -> Result<()> {
    let mut reader = ch.data_reader();
    let mut keeper = BundleKeeper {
        id: offer.id,
        incoming,
        pending: false,
    };
    let origin = format!("sent for `{}`", offer.name);
    let res = read_bundle(&mut reader, &origin, &mut keeper);
    if let Some(e) = reader.take_error() {
        return Err(e);
    }
    res?;
    if keeper.pending {
        keeper.incoming.feed.accept()?;
    }
    reader.finish()
}

pub(super) fn receive_batch<R: Read, W: Write>(
    ch: &mut Channel<R, W>,
    manifest: &Manifest,
    entries: &[u32],
    incoming: &mut Incoming<'_>,
) -> Result<()> {
    let mut prev: Option<u32> = None;
    for &i in entries {
        let ok = prev.is_none_or(|p| p < i) && manifest.entries.get(i as usize).is_some_and(|e| e.kind == Kind::File);
        if !ok {
            return Err(Error::integrity(format!(
                "the client sent a batch naming entry {i}, which is not a file of the manifest in order"
            )));
        }
        prev = Some(i);
    }
    let mut reader = ch.data_reader();
    let res = (|| -> Result<()> {
        let mut dec = zstd::stream::read::Decoder::with_buffer(BufReader::new(&mut reader))
            .map_err(|e| Error::integrity(format!("cannot decode a batch: {}", describe_io(&e))))?;
        dec.window_log_max(MAX_WINDOW_LOG)
            .map_err(|e| Error::other(describe_io(&e)))?;
        for &i in entries {
            let e = &manifest.entries[i as usize];
            let Some(key) = e.object() else { continue };
            match incoming.take(e, &mut dec, true)? {
                Some(digest) if digest == Some(key.digest) => incoming.feed.accept()?,
                Some(digest) => {
                    let got = digest.map(|d| d.to_string()).unwrap_or_default();
                    return Err(Error::integrity(format!(
                        "the content sent for `{}` does not match its sha256 (manifest {}, received {got}); nothing was staged",
                        e.path, key.digest
                    )));
                }
                None => discard_verified(&mut dec, e)?,
            }
        }
        let mut probe = [0u8; 1];
        match dec.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Error::integrity(
                "a batch from the client holds more bytes than its entries",
            )),
            Err(e) => Err(Error::integrity(format!(
                "a batch from the client is corrupt: {}",
                describe_io(&e)
            ))),
        }
    })();
    if let Some(e) = reader.take_error() {
        return Err(e);
    }
    res?;
    reader.finish()
}

/// Read and check an object the host does not need (already there or sent twice).
fn discard_verified(content: &mut dyn Read, e: &Entry) -> Result<()> {
    let mut hasher = Hasher::new();
    let mut left = e.size;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = content.read(&mut buf[..want]).map_err(|err| {
            Error::integrity(format!(
                "cannot read the content of `{}`: {}",
                e.path,
                describe_io(&err)
            ))
        })?;
        if n == 0 {
            return Err(Error::integrity(format!("the content of `{}` is truncated", e.path)));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    if Some(hasher.finish()) != e.sha256 {
        return Err(Error::integrity(format!(
            "the content sent for `{}` does not match its sha256; nothing was staged",
            e.path
        )));
    }
    Ok(())
}

/// Pull mode: where the contents come from (URLs presigned by the
/// client), and, when the host asked for them, the location of each
/// missing object: `(entry index, location)`, in the need's order.
pub(super) struct Pulling<'a> {
    pub(super) agent: &'a ureq::Agent,
    pub(super) src: &'a PullSource,
    pub(super) located: Option<Vec<(u32, Location)>>,
}

/// Pull mode: the client's `locations` for the `missing` entries the host
/// listed in its need, one each, in that order.
///
/// # Errors
/// A connection error, or an answer that is not `locations` for exactly
/// that many objects.
pub(super) fn receive_locations<R: Read, W: Write>(
    ch: &mut Channel<R, W>,
    missing: &[u32],
) -> Result<Vec<(u32, Location)>> {
    let n = missing.len() as u64;
    match ch.recv()? {
        Message::Locations { objects } if objects == n => {}
        Message::Locations { objects } => {
            return Err(Error::integrity(format!(
                "the client sent the locations of {objects} objects for the {n} this host lacks"
            )));
        }
        other => {
            return Err(Error::UnexpectedAnswer {
                got: other.name(),
                wanted: "`locations`".to_string(),
            });
        }
    }
    let locations = decode_locations(&ch.recv_blob(n * 20, "the locations of the missing objects")?)?;
    if locations.len() != missing.len() {
        return Err(Error::integrity(format!(
            "the client sent {} object locations for the {n} this host lacks",
            locations.len()
        )));
    }
    Ok(missing.iter().copied().zip(locations).collect())
}

/// Pull mode: download what is still wanted from the remote store and hand
/// each checked object to the writer, as a push's batch would; returns the
/// bytes downloaded.
pub(super) fn pull_into(
    pulling: &Pulling<'_>,
    manifest: &Manifest,
    name: &str,
    incoming: &mut Incoming<'_>,
) -> Result<u64> {
    let mut keys: HashMap<Digest, Vec<ObjectKey>> = HashMap::new();
    let mut sizes: HashMap<Digest, u64> = HashMap::new();
    for (key, &i) in incoming.wanted.iter() {
        keys.entry(key.digest).or_default().push(*key);
        sizes.insert(key.digest, manifest.entries[i as usize].size);
    }
    let mut deliver = |digest: Digest, content: Vec<u8>| -> Result<()> {
        for key in keys.get(&digest).map(Vec::as_slice).unwrap_or_default() {
            let Some(&i) = incoming.wanted.get(key) else { continue };
            let entry = &manifest.entries[i as usize];
            // Checked against its sha256 on arrival (bucket::pull).
            if incoming.take(entry, &mut content.as_slice(), false)?.is_some() {
                incoming.feed.accept()?;
            }
        }
        Ok(())
    };
    super::pull::contents(
        pulling.agent,
        pulling.src,
        manifest,
        name,
        &sizes,
        pulling.located.as_deref(),
        &mut deliver,
    )
}
