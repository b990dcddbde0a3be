//! Staging a release on a host: the host half of `push`.
//!
//! ```text
//! push offer ─▶ name checks, locks, signatures (allowed_signers) ─▶ send_manifest ─▶ manifest (parsed, id checked)
//!   ─▶ need (objects missing from objects/) ─▶ tmp/<name>.partial and its dirs
//!   ─▶ bundle | batch… (each missing object written as its file in the tree,
//!      verified, linked into objects/ by groups once fsynced; meanwhile the
//!      other files are linked from objects/, symlinks made) ─▶ done
//!   ─▶ second files of received objects, dirs 0555 ─▶ fsync of the tree's dirs (and copies)
//!   ─▶ .slipway/releases/<name>.json ─▶ rename to releases/<name> ─▶ fsync releases/
//! ```
//!
//! **The staging pipeline** (while the contents arrive): four threads and
//! two bounded queues, all in one `std::thread::scope`, so none outlives the
//! push and the first error stops the others.
//!
//! ```text
//!  [1 reader]  this thread: reads frames, decompresses, checks each sha256 as it
//!      │        arrives (a bundle or a batch, or a pull: [`super::sources`]), hands bytes on
//!      │  Feed: at most PIECES_IN_FLIGHT pieces of PIECE bytes (16 MiB), spare
//!      ▼        buffers returned on a second queue of the same size (objects.rs)
//!  [2 writer]  objects::spawn: writes each missing object as its file in
//!      │        tmp/<name>.partial/<path>, with its mode and mtime
//!      │  groups: a queue of one group of COMMIT_OBJECTS objects or COMMIT_BYTES
//!      ▼
//!  [3 committer] fsyncs the group's files, then hard-links them into objects/
//!
//!  [4 tree]    Tree::fill: meanwhile links every file whose object the host
//!              already had, and makes the symlinks (reads nothing from 1–3)
//! ```
//!
//! Invariants: a name is never rebound to another id; on a host with
//! `.slipway/allowed_signers`, nothing is received for (or bound to) a release
//! without an acceptable signature ([`super::signatures::check`]); nothing outside
//! `.slipway/tmp/` changes until every byte has been verified (and
//! `objects/` only ever gains verified objects, see [`super::objects`]);
//! `releases/<name>` appears by one rename, complete and durable, after its
//! metadata binds the name; `current` is never touched. A push holds the
//! shared staging lock for its whole duration (prune takes it exclusively)
//! and the release's own lock `tmp/<name>.lock` (two pushes of one release
//! take turns; leftovers of killed pushes are removed under it).

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use super::layout::{HostRelease, Layout};
use super::objects::{self, ObjectSink};
use super::session::{Session, validate_actor};
use super::signatures;
use super::sources::{Incoming, MAX_WINDOW_LOG, Pulling, pull_into, receive_batch, receive_bundle, receive_locations};
use crate::config::LinkMode;
use crate::digest::Digest;
use crate::error::{Error, Result, describe_io};
use crate::fs;
use crate::manifest::{Kind, MAX_MANIFEST_BYTES, Manifest, ObjectKey, validate_name};
use crate::protocol::{Channel, MAX_LOCATIONS, Message, Need, PushOffer, Staged, encode_indices};
use crate::signature;

/// How many manifests of earlier releases the host offers as compression bases.
const MAX_BASES: usize = 4;

/// Handle a `push` request: the whole exchange, ending with `staged`.
///
/// # Errors
/// Usage error for a bad name; error (exit 1) when the name is bound to
/// another id or space is short; integrity error (exit 5) for a manifest or
/// content that does not match, or when the host's `allowed_signers`
/// accepts none of the release's signatures; connection errors.
pub fn push<R: Read, W: Write>(session: &mut Session<R, W>, offer: PushOffer) -> Result<Message> {
    validate_name(&offer.name)?;
    validate_actor(&offer.pushed_by)?;
    let layout = session.layout.clone();
    let confined = session.confined;
    let ch = &mut session.ch;
    let name_owned = offer.name.clone();
    let name = name_owned.as_str();
    signatures::check_offered(name, &offer.signatures)?;
    let _staging = fs::lock_shared(&layout.stage_lock_path())?;
    let _release = name_lock(&layout, name, offer.command.as_deref())?;

    let admitted = admit(&layout, &offer, true)?;
    if let Some(mut staged) = admitted.already {
        staged.signatures_added = Some(admitted.added);
        // Signed after it was pushed: record the new signatures (and signer).
        if let Some(mut meta) = admitted.existing
            && (admitted.added > 0 || meta.signed_by != admitted.signed_by)
        {
            meta.signatures = admitted.signatures;
            meta.signed_by = admitted.signed_by;
            layout.write_release_meta(&meta)?;
        }
        return Ok(Message::Staged(staged));
    }
    let _leftovers = Leftovers::clear(&layout, name)?;

    let agent = crate::bucket::s3::agent();
    let mut downloaded_bytes = 0;
    let (manifest, manifest_size) = match &offer.source {
        // Pull mode: the manifest comes from the bucket, not the client.
        Some(src) => {
            super::pull::check_source(&layout, src, &offer.id, confined)?;
            // A client that assists sends the manifest compressed against
            // one this host has, when that is small (a few kilobytes for a
            // release that changed a few files).
            let bases = if src.assist {
                base_candidates(&layout)?
            } else {
                HashMap::new()
            };
            let sent = if bases.is_empty() {
                None
            } else {
                ch.send(&Message::SendManifest {
                    bases: bases.keys().copied().collect(),
                    pull: true,
                })?;
                match ch.recv()? {
                    Message::Manifest { size, base } => Some(read_manifest(ch, &layout, &bases, &offer, size, base)?),
                    Message::PullManifest => None,
                    other => return Err(unexpected(&other, "`manifest` or `pull_manifest`")),
                }
            };
            match sent {
                Some(m) => m,
                None => {
                    let (m, size, downloaded) = super::pull::manifest(&agent, src, &offer.id, name)?;
                    downloaded_bytes = downloaded;
                    (m, size)
                }
            }
        }
        None => {
            let bases = base_candidates(&layout)?;
            ch.send(&Message::SendManifest {
                bases: bases.keys().copied().collect(),
                pull: false,
            })?;
            receive_manifest(ch, &layout, &bases, &offer)?
        }
    };
    super::shared::check(&manifest, &offer.shared, &offer.shared_files)?;
    super::links::check(&layout, name, &manifest)?;
    if offer.repair {
        drop_damaged_objects(&layout, &manifest)?;
    }

    let plan = Plan::new(&layout, &manifest)?;
    super::space::check(&layout, name, &plan, &manifest, manifest_size, offer.link_mode)?;
    // A few missing objects: their locations from the client cost less
    // than the release's whole index from the bucket.
    let locations = offer.source.as_ref().is_some_and(|s| s.assist)
        && !plan.missing.is_empty()
        && plan.missing.len() as u64 <= MAX_LOCATIONS;
    ch.send(&Message::Need(Need {
        objects: plan.missing.len() as u64,
        bytes: plan.bytes_needed,
        reused: plan.reused,
        locations,
    }))?;
    // An assisted pull's client needs the list only to locate the objects
    // (4 bytes per missing file: 80 KB for 20,000 files, from every host).
    let listed = offer.source.as_ref().is_none_or(|s| !s.assist || locations);
    ch.send_blob(&encode_indices(if listed { &plan.missing } else { &[] }))?;
    let pulling = match &offer.source {
        Some(src) => Some(Pulling {
            agent: &agent,
            src,
            located: if locations {
                Some(receive_locations(ch, &plan.missing)?)
            } else {
                None
            },
        }),
        None => None,
    };

    let copy = offer.link_mode == LinkMode::Copy;
    // The directories first: the missing files are written straight into them.
    let tree = Tree::new(&layout, name, &manifest, copy)?;
    let (objects_written, bytes_written, early, downloaded) =
        receive_contents(ch, &layout, &offer, &manifest, &tree, plan.wanted, pulling)?;
    downloaded_bytes += downloaded;
    super::fault::point("after-objects");

    tree.finish(&layout, &manifest, &offer, &early)?;
    let files = manifest.file_count() as u64;
    let signatures_added = Some(admitted.added);
    bind(&layout, offer, manifest, admitted.signatures, admitted.signed_by)?;
    Ok(Message::Staged(Staged {
        already: false,
        files,
        objects_reused: plan.reused,
        objects_written,
        bytes_written,
        bytes_downloaded: downloaded_bytes,
        signatures_added,
    }))
}

/// How long a push waits for another push of the same release into this
/// root (they take turns) before it gives up, saying who holds it.
const NAME_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Take `tmp/<name>.lock`: two pushes of one release take turns. A push of
/// the same command holding it means the target reaches this root twice
/// (`/srv/a` and `/srv/./a`, two names of one machine): that would wait
/// forever for content the client sends only once both answered, so it is
/// refused at once; anyone else is waited for, up to [`NAME_LOCK_WAIT`].
///
/// # Errors
/// Usage error (exit 2) for a root reached twice; [`Error::Locked`] after
/// the wait; I/O errors.
fn name_lock(layout: &Layout, name: &str, command: Option<&str>) -> Result<fs::FileLock> {
    let path = layout.name_lock_path(name);
    let deadline = std::time::Instant::now() + NAME_LOCK_WAIT;
    loop {
        if let Some(mut lock) = fs::try_lock_exclusive(&path)? {
            lock.note_holder(command.unwrap_or_default());
            return Ok(lock);
        }
        let holder = String::from_utf8_lossy(&fs::read_optional(&path)?.unwrap_or_default()).into_owned();
        if command.is_some_and(|c| !c.is_empty() && c == holder) {
            return Err(Error::usage(format!(
                "`{}` is already staging `{name}` for this same command: the target reaches this one root through two of its entries (e.g. `/srv/a` and `/srv/./a`, or two names of one machine); remove one of them",
                layout.root.display()
            )));
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Locked(format!(
                "another push of `{name}` into `{}` has held it for {} minutes ({}); try again when it has finished",
                layout.root.display(),
                NAME_LOCK_WAIT.as_secs() / 60,
                crate::error::one_line(&holder)
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// What the host decided about an offer before any content arrives.
pub(super) struct Admitted {
    /// The release's record on this host, if the name is bound here.
    existing: Option<HostRelease>,
    /// `Some` when the release is already complete here (not for a repair).
    pub(super) already: Option<Staged>,
    /// The host's signatures and the offered ones, one per key.
    signatures: Vec<serde_json::Value>,
    /// How many signatures the offer added or replaced (one per key).
    added: u64,
    /// The signer `allowed_signers` accepts (`None`: nothing enforced).
    pub(super) signed_by: Option<crate::protocol::Signer>,
}

/// Check an offer against what the host has, before a byte of content: a
/// repair needs the same bundle, a bound name another bundle is refused,
/// and the signatures (the host's and the offered ones, one per key, at
/// most [`signatures::MAX_SIGNATURES`]) must satisfy `allowed_signers`.
pub(super) fn admit(layout: &Layout, offer: &PushOffer, heal: bool) -> Result<Admitted> {
    let name = offer.name.as_str();
    let existing = layout.release_meta(name)?;
    if offer.repair {
        match &existing {
            Some(meta) if meta.id == offer.id => {}
            Some(meta) => {
                return Err(Error::RepairOtherBundle {
                    release: name.to_string(),
                    bound: meta.id.to_string(),
                    offered: offer.id.to_string(),
                });
            }
            None => {
                return Err(Error::RepairMissing {
                    release: name.to_string(),
                });
            }
        }
    }
    let already = if offer.repair {
        None
    } else {
        already_staged(layout, offer, existing.as_ref(), heal)?
    };
    let had = existing.as_ref().map(|m| m.signatures.clone()).unwrap_or_default();
    let mut signatures = had.clone();
    signature::merge(&mut signatures, offer.signatures.iter().cloned());
    // What the merge kept that the host did not have: a new key's signature,
    // or a newer one replacing a key's (at most MAX_SIGNATURES of each).
    let added = signatures.iter().filter(|s| !had.contains(s)).count() as u64;
    if signatures.len() > signatures::MAX_SIGNATURES {
        return Err(Error::integrity(format!(
            "release `{name}` refused: with the push's signatures it would carry {}, more than the {} a host keeps",
            signatures.len(),
            signatures::MAX_SIGNATURES
        )));
    }
    let signed_by = signatures::check_signatures(layout, name, &offer.id, &signatures)?;
    Ok(Admitted {
        existing,
        already,
        signatures,
        added,
        signed_by,
    })
}

/// Receive the missing contents (the staging pipeline of the module docs):
/// returns the objects and bytes written, the entries the tree thread left
/// for later (their objects were among the missing), and in pull mode the
/// bytes downloaded.
///
/// # Errors
/// A connection or verification error, the writer's own error when it
/// stopped, or content the client said it sent but never did.
fn receive_contents<R: Read, W: Write>(
    ch: &mut crate::protocol::Channel<R, W>,
    layout: &Layout,
    offer: &PushOffer,
    manifest: &Manifest,
    tree: &Tree,
    mut wanted: HashMap<ObjectKey, u32>,
    pulling: Option<Pulling<'_>>,
) -> Result<(u64, u64, Vec<usize>, u64)> {
    let sink = ObjectSink::new(layout, &offer.name, manifest.source_date_epoch, tree.copy)?;
    // While the missing contents arrive, a second thread links the files
    // already here into the tree, and a third writes the files this one
    // reads, decompresses and hashes.
    let missing: HashSet<ObjectKey> = wanted.keys().copied().collect();
    let stop = AtomicBool::new(false);
    let mut downloaded = 0;
    let (received, written, early) = std::thread::scope(|scope| {
        let early = scope.spawn(|| tree.fill(layout, manifest, &missing, &stop));
        let (mut feed, writer) = objects::spawn(scope, sink);
        let mut incoming = Incoming {
            tree: &tree.partial,
            wanted: &mut wanted,
            feed: &mut feed,
        };
        let received = (|| -> Result<()> {
            if let Some(pulling) = &pulling {
                downloaded = pull_into(pulling, manifest, &offer.name, &mut incoming)?;
                return match ch.recv()? {
                    Message::Done => incoming.feed.finish(),
                    other => Err(unexpected(&other, "`done`")),
                };
            }
            loop {
                match ch.recv()? {
                    Message::Bundle { .. } => receive_bundle(ch, offer, &mut incoming)?,
                    Message::Batch { entries } => receive_batch(ch, manifest, &entries, &mut incoming)?,
                    Message::Done => return incoming.feed.finish(),
                    other => return Err(unexpected(&other, "`bundle`, `batch` or `done`")),
                }
            }
        })();
        // A failed push drops the feed: the writer throws away what it holds.
        drop(feed);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::other("writing the objects failed unexpectedly")));
        if received.is_err() || written.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let early = early
            .join()
            .unwrap_or_else(|_| Err(Error::other("building the release tree failed unexpectedly")));
        (received, written, early)
    });
    let (objects_written, bytes_written) = match (received, written) {
        (Ok(()), Ok(w)) => w,
        // The reader only saw the writer stop (through the feed, the one
        // thread it hands work to); the writer's error says why.
        (Err(Error::ThreadStopped(_)), Err(w)) => return Err(w),
        (Err(e), _) | (Ok(()), Err(e)) => return Err(e),
    };
    if let Some(index) = wanted.values().min() {
        let path = &manifest.entries[*index as usize].path;
        return Err(Error::integrity(format!(
            "the client said it was done but never sent the content of `{path}`; nothing was staged"
        )));
    }
    Ok((objects_written, bytes_written, early?, downloaded))
}

/// Bind the name (write `.slipway/releases/<name>.json`), then make the
/// finished tree `releases/<name>` in one rename. A repair keeps the old
/// record's push time, pusher and marks: it restores bytes, it is not a
/// new push.
fn bind(
    layout: &Layout,
    offer: PushOffer,
    manifest: Manifest,
    signatures: Vec<serde_json::Value>,
    signed_by: Option<crate::protocol::Signer>,
) -> Result<()> {
    let name = offer.name.clone();
    let mut meta = HostRelease {
        name: name.clone(),
        id: offer.id,
        manifest,
        provenance: offer.provenance,
        signatures,
        pushed_at: Some(crate::provenance::now_rfc3339()),
        pushed_by: Some(offer.pushed_by),
        signed_by,
        shared: offer.shared,
        shared_files: offer.shared_files,
        bad: false,
        bad_reason: None,
    };
    if offer.repair
        && let Some(old) = layout.release_meta(&name)?
    {
        meta.pushed_at = old.pushed_at.or(meta.pushed_at);
        meta.pushed_by = old.pushed_by.or(meta.pushed_by);
        meta.bad = old.bad;
        meta.bad_reason = old.bad_reason;
    }
    layout.write_release_meta(&meta)?;
    publish(layout, &name, offer.repair)
}

fn unexpected(msg: &Message, wanted: &str) -> Error {
    Error::UnexpectedRequest {
        got: msg.name(),
        wanted: wanted.to_string(),
    }
}

/// The name binding: `Some` when the release is already complete here with
/// the same id; an error when the name is bound to another id.
fn already_staged(
    layout: &Layout,
    offer: &PushOffer,
    existing: Option<&HostRelease>,
    heal: bool,
) -> Result<Option<Staged>> {
    let name = &offer.name;
    let tree = fs::symlink_metadata_optional(&layout.release_dir(name))?;
    match existing {
        Some(meta) if meta.id != offer.id => Err(Error::HostRebound {
            release: name.to_string(),
            bound: meta.id.to_string(),
            offered: offer.id.to_string(),
        }),
        Some(meta) => match tree {
            Some(t) if t.is_dir() => {
                if heal {
                    heal_mode(layout, name, &t)?;
                }
                Ok(Some(Staged {
                    already: true,
                    files: meta.manifest.file_count() as u64,
                    objects_reused: meta.manifest.objects().len() as u64,
                    objects_written: 0,
                    bytes_written: 0,
                    bytes_downloaded: 0,
                    signatures_added: None,
                }))
            }
            // Bound but its tree never appeared (killed before the rename): stage it again.
            None => Ok(None),
            Some(_) => Err(Error::ReleaseNotADirectory {
                path: layout.release_dir(name),
            }),
        },
        None if tree.is_some() => Err(Error::TreeWithoutMeta {
            tree: layout.release_dir(name),
            meta: layout.release_meta_path(name),
        }),
        None => Ok(None),
    }
}

/// A push killed between the rename into `releases/` and the `chmod` left
/// the top directory of a complete tree writable: finish the job.
fn heal_mode(layout: &Layout, name: &str, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o7777 == 0o555 {
        return Ok(());
    }
    let dest = layout.release_dir(name);
    fs::set_mode(&dest, 0o555)?;
    fs::fsync_dir(&dest)?;
    fs::fsync_dir(&layout.releases_dir())
}

/// Removes `tmp/<name>.partial` and `tmp/<name>.incoming` now (leftovers of
/// a killed push) and again when dropped (this push's, if it failed).
struct Leftovers<'a> {
    layout: &'a Layout,
    name: &'a str,
}

impl<'a> Leftovers<'a> {
    fn clear(layout: &'a Layout, name: &'a str) -> Result<Leftovers<'a>> {
        fs::remove_tree(&layout.partial_dir(name))?;
        fs::remove_tree(&layout.incoming_dir(name))?;
        Ok(Leftovers { layout, name })
    }
}

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_tree(&self.layout.partial_dir(self.name));
        let _ = fs::remove_tree(&self.layout.incoming_dir(self.name));
    }
}

#[derive(Deserialize)]
struct IdOnly {
    id: Digest,
}

/// Manifests the client may compress against: the current release and the
/// most recently pushed ones (by id, with the name that holds them).
pub(super) fn base_candidates(layout: &Layout) -> Result<HashMap<Digest, String>> {
    let mut names = Vec::new();
    if let Ok(Some(current)) = layout.current_name() {
        names.push(current);
    }
    let mut recent = Vec::new();
    for name in layout.release_names()? {
        let modified = fs::metadata(&layout.release_meta_path(&name))?.modified().ok();
        recent.push((modified, name));
    }
    recent.sort_by(|a, b| b.cmp(a));
    names.extend(recent.into_iter().map(|(_, n)| n));
    let mut out = HashMap::new();
    for name in names {
        if out.len() >= MAX_BASES {
            break;
        }
        if !fs::symlink_metadata_optional(&layout.release_dir(&name))?.is_some_and(|m| m.is_dir()) {
            continue;
        }
        let Some(bytes) = fs::read_optional(&layout.release_meta_path(&name))? else {
            continue;
        };
        if let Ok(IdOnly { id }) = serde_json::from_slice(&bytes) {
            out.entry(id).or_insert(name);
        }
    }
    Ok(out)
}

pub(super) fn receive_manifest<R: Read, W: Write>(
    ch: &mut Channel<R, W>,
    layout: &Layout,
    bases: &HashMap<Digest, String>,
    offer: &PushOffer,
) -> Result<(Manifest, u64)> {
    let (size, base) = match ch.recv()? {
        Message::Manifest { size, base } => (size, base),
        other => return Err(unexpected(&other, "`manifest`")),
    };
    read_manifest(ch, layout, bases, offer, size, base)
}

/// The manifest data after `manifest { size, base }`, checked against the offered id.
fn read_manifest<R: Read, W: Write>(
    ch: &mut Channel<R, W>,
    layout: &Layout,
    bases: &HashMap<Digest, String>,
    offer: &PushOffer,
    size: u64,
    base: Option<Digest>,
) -> Result<(Manifest, u64)> {
    let name = &offer.name;
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::integrity(format!(
            "the manifest of `{name}` is {size} bytes, more than the limit of {MAX_MANIFEST_BYTES}"
        )));
    }
    let prefix = match base {
        None => None,
        Some(id) => {
            let base_name = bases.get(&id).ok_or_else(|| Error::BaseNotOffered {
                release: name.to_string(),
                base: id.to_string(),
            })?;
            let meta = layout.release_meta(base_name)?.ok_or_else(|| Error::BaseVanished {
                release: base_name.clone(),
            })?;
            meta.checked_id()?;
            Some(meta.manifest.canonical_bytes())
        }
    };
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(64 << 20)).unwrap_or(0));
    let mut reader = ch.data_reader();
    let res = (|| -> std::io::Result<()> {
        let input = BufReader::new(&mut reader);
        let mut dec = match &prefix {
            Some(p) => zstd::stream::read::Decoder::with_ref_prefix(input, p)?,
            None => zstd::stream::read::Decoder::with_buffer(input)?,
        };
        dec.window_log_max(MAX_WINDOW_LOG)?;
        (&mut dec).take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes)?;
        Ok(())
    })();
    if let Some(e) = reader.take_error() {
        return Err(e);
    }
    res.map_err(|e| {
        Error::integrity(format!(
            "the manifest of `{name}` sent by the client is corrupt: {}",
            describe_io(&e)
        ))
    })?;
    reader.finish()?;
    if bytes.len() as u64 != size {
        return Err(Error::integrity(format!(
            "the manifest of `{name}` is {} bytes, not the {size} the client announced",
            bytes.len()
        )));
    }
    let got = Digest::of(&bytes);
    if got != offer.id {
        return Err(Error::integrity(format!(
            "the manifest sent for `{name}` hashes to {got}, not to the offered id {}",
            offer.id
        )));
    }
    let manifest =
        Manifest::parse(&bytes).map_err(|e| Error::integrity(format!("release `{name}` ({}): {e}", offer.id)))?;
    Ok((manifest, size))
}

/// What the host lacks, from `objects/` alone.
pub(super) struct Plan {
    /// Entry index of the first file of each missing object, ascending.
    pub(super) missing: Vec<u32>,
    /// Missing objects still to receive, with that entry index.
    pub(super) wanted: HashMap<ObjectKey, u32>,
    pub(super) bytes_needed: u64,
    pub(super) reused: u64,
}

impl Plan {
    pub(super) fn new(layout: &Layout, manifest: &Manifest) -> Result<Plan> {
        if u32::try_from(manifest.entries.len()).is_err() {
            return Err(Error::integrity(
                "the manifest has more entries than the protocol can address",
            ));
        }
        let mut seen = HashSet::new();
        let mut plan = Plan {
            missing: Vec::new(),
            wanted: HashMap::new(),
            bytes_needed: 0,
            reused: 0,
        };
        for (i, e) in manifest.entries.iter().enumerate() {
            let Some(key) = e.object() else { continue };
            if !seen.insert(key) {
                continue;
            }
            if fs::symlink_metadata_optional(&layout.object_path(&key))?.is_some() {
                plan.reused += 1;
            } else {
                plan.missing.push(i as u32);
                plan.wanted.insert(key, i as u32);
                plan.bytes_needed += e.size;
            }
        }
        Ok(plan)
    }
}

/// Re-hash every object of `manifest` and remove the ones whose content is
/// damaged (e.g. a release file edited in place: it is the same inode), so
/// that the plan asks the client for them again.
fn drop_damaged_objects(layout: &Layout, manifest: &Manifest) -> Result<()> {
    for (key, size) in manifest.objects() {
        let path = layout.object_path(&key);
        let Some(meta) = fs::symlink_metadata_optional(&path)? else {
            continue;
        };
        let ok = meta.is_file() && meta.len() == size && {
            let mut r = crate::digest::HashingReader::new(fs::open(&path)?);
            std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| Error::io("read", &path, e))?;
            r.into_parts().1 == key.digest
        };
        if !ok {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// `tmp/<name>.partial` being built from objects: directories, hardlinks
/// (or copies), symlinks; then its directories made read-only and, with
/// every copy it made, fsynced (the files a push wrote itself were fsynced
/// before they were linked into `objects/`; the hardlinks and symlinks are
/// entries of the directories). Exactly what the push created is made
/// durable, nothing else on the file system.
///
/// Built in two steps so that most of it is done while the missing
/// contents are still arriving: [`Tree::start`] makes everything but the
/// files whose objects are missing, [`Tree::finish`] links those once they
/// are verified and in `objects/`.
///
/// Safe by construction: the manifest was validated (relative paths without
/// `..`, parents are directories created here, nothing goes through a
/// symlink), and every creation fails rather than follow or replace
/// whatever might already be at its path.
struct Tree {
    partial: std::path::PathBuf,
    copy: bool,
    dirs: Vec<std::path::PathBuf>,
    /// Files copied into the tree (`link_mode = "copy"`, or a link that
    /// could not be made): new data, fsynced by [`Tree::finish`].
    copies: std::sync::Mutex<Vec<std::path::PathBuf>>,
}

impl Tree {
    /// `tmp/<name>.partial` and its directories.
    fn new(layout: &Layout, name: &str, manifest: &Manifest, copy: bool) -> Result<Tree> {
        let partial = layout.partial_dir(name);
        fs::create_dir(&partial, 0o755)?;
        let mut dirs = Vec::new();
        for e in manifest.entries.iter().filter(|e| e.kind == Kind::Dir) {
            let path = partial.join(&e.path);
            fs::create_dir(&path, 0o755)?;
            dirs.push(path);
        }
        Ok(Tree {
            partial,
            copy,
            dirs,
            copies: std::sync::Mutex::default(),
        })
    }

    /// The symlinks, and the files whose object is here already; returns
    /// the other files (entry indices), whose objects are in `missing`.
    /// Stops early (with an error) when `stop` is set.
    fn fill(
        &self,
        layout: &Layout,
        manifest: &Manifest,
        missing: &HashSet<ObjectKey>,
        stop: &AtomicBool,
    ) -> Result<Vec<usize>> {
        let mut deferred = Vec::new();
        for (i, e) in manifest.entries.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::other("the push ended before the release tree was built"));
            }
            let path = self.partial.join(&e.path);
            match e.kind {
                Kind::Dir => {}
                Kind::File => match e.object() {
                    Some(key) if missing.contains(&key) => deferred.push(i),
                    Some(key) => self.place(&layout.object_path(&key), path)?,
                    None => return Err(Error::integrity(format!("file `{}` has no sha256", e.path))),
                },
                Kind::Symlink => {
                    let target = e.target.as_deref().unwrap_or_default();
                    fs::symlink(Path::new(target), &path)?;
                }
            }
        }
        Ok(deferred)
    }

    /// The `deferred` files not written by the push itself (those whose
    /// object also appears at an earlier path), the shared paths,
    /// read-only directories, and all of it made durable.
    fn finish(&self, layout: &Layout, manifest: &Manifest, offer: &PushOffer, deferred: &[usize]) -> Result<()> {
        let mut first = HashSet::new();
        for &i in deferred {
            let e = &manifest.entries[i];
            let key = e
                .object()
                .ok_or_else(|| Error::integrity(format!("file `{}` has no sha256", e.path)))?;
            // The first file of each missing object is the one received.
            if first.insert(key) {
                continue;
            }
            self.place(&layout.object_path(&key), self.partial.join(&e.path))?;
        }
        super::shared::link_into(layout, &self.partial, &offer.shared, &offer.shared_files)?;
        for dir in self.dirs.iter().rev() {
            fs::set_mode(dir, 0o555)?;
        }
        let mut durable = std::mem::take(&mut *self.copies.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        durable.extend(self.dirs.iter().cloned());
        durable.push(self.partial.clone());
        fs::sync_paths(&durable)
    }

    /// Link the object `src` at `path` in the tree (or copy it there, and
    /// remember the copy for [`Tree::finish`]).
    fn place(&self, src: &Path, path: std::path::PathBuf) -> Result<()> {
        if fs::link_or_copy(src, &path, self.copy)? == fs::Placed::Copied {
            self.copies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(path);
        }
        Ok(())
    }
}

/// Rename the finished tree into `releases/<name>`; make its top directory
/// read-only (after the rename: moving a directory needs write access to it)
/// and fsync it and `releases/`.
fn publish(layout: &Layout, name: &str, repair: bool) -> Result<()> {
    let partial = layout.partial_dir(name);
    let dest = layout.release_dir(name);
    super::fault::point("before-rename");
    if repair && fs::symlink_metadata_optional(&dest)?.is_some() {
        // Swap the rebuilt tree in: `current` (if it points here) never dangles.
        fs::exchange(&partial, &dest)?;
        fs::set_mode(&dest, 0o555)?;
        fs::fsync_dir(&dest)?;
        fs::fsync_dir(&layout.releases_dir())?;
        return fs::remove_tree(&partial);
    }
    if !fs::rename_noreplace(&partial, &dest)? {
        // The record written by `bind` must not name a tree this push did
        // not make: without it, the next push refuses that directory
        // (`TreeWithoutMeta`) instead of calling it staged.
        fs::remove_file_optional(&layout.release_meta_path(name))?;
        fs::fsync_dir(&layout.release_meta_dir())?;
        return Err(Error::AppearedWhileStaging {
            path: dest,
            release: name.to_string(),
        });
    }
    super::fault::point("after-publish");
    fs::set_mode(&dest, 0o555)?;
    fs::fsync_dir(&dest)?;
    fs::fsync_dir(&layout.releases_dir())
}
