//! `slipway publish REL --to REMOTE`: put a release of the local store in
//! a remote store, uploading only what the bucket does not have.
//!
//! ```text
//! lock (publish) ─▶ name: bound or claimed elsewhere? refused before any upload
//!   ─▶ what the bucket has (packs/*.idx) ─▶ read the local bundle, verified:
//!      each missing content, hashed again and compressed as its own zstd
//!      frame, into packs of ~32 MiB ─▶ [2 uploaders] pack, then its .idx
//!   ─▶ manifest.zst, index.zst, provenance.json ─▶ signatures not yet there
//!   ─▶ bind the name (names.rs) ─▶ unlock
//! ```
//!
//! Invariants: everything a name needs is in the bucket before the name is
//! bound; a content goes into a pack only after its sha256 matched the
//! manifest (so an `.idx` never lies about a pack this slipway wrote); no
//! key is ever overwritten with other bytes.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, Write};
use std::sync::mpsc;

use super::format::{self, Loc, PackIndex, ReleaseIndex};
use super::names::{self, RemoteLock};
use super::s3::{MAX_SMALL, Remote};
use crate::bundle::unpack::{Visitor, read_bundle};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Entry, Kind};
use crate::output::Output;
use crate::store::{ReleaseRecord, Store};

/// What a publish did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    pub name: String,
    pub id: Digest,
    pub remote: String,
    /// The name was bound by this publish (not already there).
    pub new: bool,
    pub objects_uploaded: u64,
    /// Compressed bytes of content uploaded.
    pub bytes_uploaded: u64,
    pub objects_reused: u64,
    pub packs_uploaded: u64,
    pub signatures_added: u64,
}

/// What a publish would do (`publish --plan`), found with listings and
/// reads only (`docs/remote-store.md`, "See a publish before it happens").
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishPlan {
    pub name: String,
    pub id: Digest,
    pub remote: String,
    /// The id the name is bound to there now (null: unbound).
    pub bound: Option<Digest>,
    /// The publish would bind the name (it is unbound, and nothing refuses it).
    pub binds: bool,
    /// Contents of the release the bucket lacks: what would be packed and uploaded.
    pub objects_missing: u64,
    /// Their bytes, before compression.
    pub bytes_missing: u64,
    pub objects_reused: u64,
    /// The other objects it would write, by key in the remote (manifest,
    /// index, provenance, signatures), in the order it writes them; the
    /// packs and the name's own objects are not listed.
    pub writes: Vec<String>,
    /// Signatures of the local store the bucket lacks.
    pub signatures_added: u64,
    /// The exit code the publish would end with (0: it would succeed).
    pub exit: u8,
    /// Why it would be refused.
    pub refused: Option<String>,
}

/// What publishing `record` to `remote` would do, without the remote's
/// lock and without writing anything to the bucket (a fresh `gc` lock is
/// reported as the refusal it would be). Returns the plan and the error the
/// publish would end with.
///
/// # Errors
/// Request failures, and a local store that cannot be read (the plan itself
/// cannot be made).
pub fn plan(store: &Store, record: &ReleaseRecord, remote: &Remote) -> Result<(PublishPlan, Result<()>)> {
    let id = record.id;
    let contents = format::contents(&store.manifest(&id)?);
    let mut plan = PublishPlan {
        name: record.name.clone(),
        id,
        remote: remote.name.clone(),
        bound: None,
        binds: false,
        objects_missing: 0,
        bytes_missing: 0,
        objects_reused: contents.len() as u64,
        writes: Vec::new(),
        signatures_added: 0,
        exit: 0,
        refused: None,
    };
    let refuse = |plan: &mut PublishPlan, e: Error| {
        plan.exit = e.exit().code();
        plan.refused = Some(e.to_string());
        Err(e)
    };
    // As `RemoteLock::take` would refuse it, without the age (the plan's id
    // does not change with the clock).
    if names::held(remote, "gc")? {
        let e = Error::Locked(format!(
            "a gc of remote `{}` is running; try again when it has finished (a lock not renewed for {} minutes is ignored)",
            remote.name,
            names::LOCK_STALE.as_secs() / 60
        ));
        let result = refuse(&mut plan, e);
        return Ok((plan, result));
    }
    let bound = match names::check(remote, &record.name, &id) {
        Ok(b) => b,
        // Refused (another id holds or claims the name, two ids are bound):
        // the publish's own refusal.
        Err(e) if matches!(e, Error::RemoteRebound(_) | Error::Integrity(_)) => {
            let result = refuse(&mut plan, e);
            return Ok((plan, result));
        }
        Err(e) => return Err(e),
    };
    plan.bound = bound;
    if bound.is_none() && !complete_there(store, remote, &id)? {
        // The `.idx` cache is read where it exists, never created by a plan.
        let have = bucket_contents(remote, &store.tmp_dir().join("remote-idx"))?;
        let missing: Vec<&(Digest, u64)> = contents.iter().filter(|(d, _)| !have.contains_key(d)).collect();
        plan.objects_missing = missing.len() as u64;
        plan.bytes_missing = missing.iter().map(|(_, s)| *s).sum();
        plan.objects_reused = (contents.len() - missing.len()) as u64;
        plan.writes.push(format::manifest_key(&id));
        plan.writes.push(format::index_key(&id));
    }
    if record.provenance.is_some() && !remote.exists(&format::provenance_key(&id))? {
        plan.writes.push(format::provenance_key(&id));
    }
    let prefix = format::signatures_prefix(&id);
    let there: HashSet<String> = remote.list(&prefix)?.into_iter().map(|l| l.key).collect();
    for sig in &record.signatures {
        let bytes = serde_json::to_vec(sig).map_err(Error::Encode)?;
        let key = format!("{prefix}{}.json", Digest::of(&bytes).hex());
        if !there.contains(&key) {
            plan.writes.push(key);
            plan.signatures_added += 1;
        }
    }
    plan.binds = bound.is_none();
    Ok((plan, Ok(())))
}

/// Where each content the bucket has is: pack, offset, compressed length.
type Have = HashMap<Digest, (String, u64, u64)>;

/// Publish `record` (its bundle is in `store`) to `remote`.
///
/// # Errors
/// [`Error::RemoteRebound`] when the name is bound to (or claimed by)
/// another id there;
/// [`Error::Locked`] while a gc runs; request failures; integrity errors
/// from the local bundle.
pub fn publish(store: &Store, record: &ReleaseRecord, remote: &Remote, out: &Output) -> Result<Published> {
    let name = record.name.as_str();
    let id = record.id;
    let _lock = RemoteLock::take(remote, "publish", "gc")?;
    let mut done = Published {
        name: name.to_string(),
        id,
        remote: remote.name.clone(),
        new: false,
        objects_uploaded: 0,
        bytes_uploaded: 0,
        objects_reused: 0,
        packs_uploaded: 0,
        signatures_added: 0,
    };
    let bound = names::check(remote, name, &id)?;
    if bound.is_none() && !complete_there(store, remote, &id)? {
        upload_release(store, record, remote, out, &mut done)?;
    } else {
        done.objects_reused = format::contents(&store.manifest(&id)?).len() as u64;
    }
    if record.provenance.is_some() && !remote.exists(&format::provenance_key(&id))? {
        let bytes = serde_json::to_vec_pretty(&record.provenance).map_err(Error::Encode)?;
        remote.put(&format::provenance_key(&id), &bytes)?;
    }
    done.signatures_added = add_signatures(record, remote)?;
    if bound.is_none() {
        done.new = names::bind(remote, name, &id)?;
    }
    Ok(done)
}

/// An unbound release whose index, manifest and every pack are in the
/// bucket already (a publish that stopped before binding its name) needs
/// no upload; one that a killed `gc` left half removed does.
fn complete_there(store: &Store, remote: &Remote, id: &Digest) -> Result<bool> {
    if !remote.exists(&format::index_key(id))? || !remote.exists(&format::manifest_key(id))? {
        return Ok(false);
    }
    let contents = format::contents(&store.manifest(id)?).len();
    let Ok(index) = super::fetch::index(remote, id, contents) else {
        return Ok(false);
    };
    let packs: HashSet<String> = remote.list("packs/")?.into_iter().map(|l| l.key).collect();
    Ok(index.packs.iter().all(|p| packs.contains(&format::pack_key(p))))
}

/// Signatures of `record` not yet in the bucket, one object each.
fn add_signatures(record: &ReleaseRecord, remote: &Remote) -> Result<u64> {
    let prefix = format::signatures_prefix(&record.id);
    let there: HashSet<String> = remote.list(&prefix)?.into_iter().map(|l| l.key).collect();
    let mut added = 0;
    for sig in &record.signatures {
        let bytes = serde_json::to_vec(sig).map_err(Error::Encode)?;
        let key = format!("{prefix}{}.json", Digest::of(&bytes).hex());
        if !there.contains(&key) {
            remote.put(&key, &bytes)?;
            added += 1;
        }
    }
    Ok(added)
}

/// What the bucket has, from every pack's `.idx` whose pack is there. An
/// `.idx` is read once per machine: packs never change, so it is kept in
/// `<store>/tmp/remote-idx/` (a hint only, like the bucket's own copy:
/// what a host receives is checked against the manifest).
fn bucket_contents(remote: &Remote, cache: &std::path::Path) -> Result<Have> {
    let listed = remote.list("packs/")?;
    let packs: HashSet<&str> = listed
        .iter()
        .filter_map(|l| l.key.strip_prefix("packs/")?.strip_suffix(".pack"))
        .collect();
    let mut have = Have::new();
    for l in &listed {
        let Some(pack) = l.key.strip_prefix("packs/").and_then(|k| k.strip_suffix(".idx")) else {
            continue;
        };
        if !packs.contains(pack) || Digest::from_hex(pack).is_none() {
            continue;
        }
        let cached = cache.join(format!("{pack}.idx"));
        let bytes = match fs::read_optional(&cached)? {
            Some(b) => b,
            None => {
                let Some(b) = remote.get(&l.key, MAX_SMALL)? else {
                    continue;
                };
                // A cache: losing it costs a download, so no fsync.
                let _ = std::fs::write(&cached, &b);
                b
            }
        };
        let what = format!("remote `{}`: `{}`", remote.name, l.key);
        let idx: PackIndex = format::decode(&bytes, MAX_SMALL, &what)?;
        for (hex, _size, offset, clen) in idx.objects {
            if let Some(d) = Digest::from_hex(&hex) {
                have.entry(d).or_insert((pack.to_string(), offset, clen));
            }
        }
    }
    Ok(have)
}

fn upload_release(
    store: &Store,
    record: &ReleaseRecord,
    remote: &Remote,
    out: &Output,
    done: &mut Published,
) -> Result<()> {
    let id = record.id;
    let manifest = store.manifest(&id)?;
    let contents = format::contents(&manifest);
    let cache = store.tmp_dir().join("remote-idx");
    fs::create_dir_all(&cache)?;
    let have = bucket_contents(remote, &cache)?;
    let todo: HashSet<Digest> = contents
        .iter()
        .filter(|(d, _)| !have.contains_key(d))
        .map(|(d, _)| *d)
        .collect();
    let todo_bytes: u64 = contents.iter().filter(|(d, _)| todo.contains(d)).map(|(_, s)| *s).sum();
    done.objects_reused = (contents.len() - todo.len()) as u64;
    out.detail(&format!(
        "remote `{}` has {} of {} contents; uploading {} ({})",
        remote.name,
        contents.len() - todo.len(),
        contents.len(),
        todo.len(),
        crate::output::human_bytes(todo_bytes)
    ));

    let bar = out.bytes_bar(todo_bytes, "publish");
    let tmp = store.tmp_dir();
    let (tx, rx) = mpsc::sync_channel::<Finished>(1);
    let rx = std::sync::Mutex::new(rx);
    let mut placed: HashMap<Digest, (String, u64, u64)> = HashMap::new();
    let (packed, uploaded) = std::thread::scope(|scope| {
        let uploaders: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| -> Result<(u64, u64)> {
                    let mut n = (0u64, 0u64);
                    loop {
                        let next = rx.lock().map_err(|_| Error::other("uploader lock poisoned"))?.recv();
                        let Ok(pack) = next else { return Ok(n) };
                        upload_pack(remote, &pack)?;
                        n.0 += 1;
                        n.1 += pack.size;
                    }
                })
            })
            .collect();
        let mut packer = Packer {
            todo: &todo,
            tmp: &tmp,
            current: None,
            placed: &mut placed,
            tx: Some(tx),
            bar: &bar,
            objects: 0,
        };
        let bundle = store.bundle_path(&id);
        let read =
            read_bundle(fs::open(&bundle)?, &bundle.display().to_string(), &mut packer).and_then(|_| packer.flush());
        let objects = packer.objects;
        drop(packer);
        let mut uploaded = (0, 0);
        let mut first_err = None;
        for u in uploaders {
            match u
                .join()
                .unwrap_or_else(|_| Err(Error::other("an uploader stopped unexpectedly")))
            {
                Ok((p, b)) => {
                    uploaded.0 += p;
                    uploaded.1 += b;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (read, first_err) {
            (Err(Error::ThreadStopped(_)), Some(e)) | (Ok(()), Some(e)) | (Err(e), _) => Err(e),
            (Ok(()), None) => Ok((objects, uploaded)),
        }
    })?;
    bar.finish_and_clear();
    done.objects_uploaded = packed;
    done.packs_uploaded = uploaded.0;
    done.bytes_uploaded = uploaded.1;

    // The release's index: its packs, and where each of its contents is.
    let mut packs: Vec<String> = Vec::new();
    let mut number: HashMap<String, u32> = HashMap::new();
    let mut objects = Vec::with_capacity(contents.len());
    for (d, _) in &contents {
        let (pack, offset, clen) = placed
            .get(d)
            .or_else(|| have.get(d))
            .ok_or_else(|| Error::other(format!("content {d} of `{}` was never placed in a pack", record.name)))?;
        let n = *number.entry(pack.clone()).or_insert_with(|| {
            packs.push(pack.clone());
            (packs.len() - 1) as u32
        });
        objects.push(Loc(n, *offset, *clen));
    }
    let index = ReleaseIndex {
        format: format::FORMAT,
        packs,
        objects,
    };
    let manifest_bytes = zstd::bulk::compress(&manifest.canonical_bytes(), 19)
        .map_err(|e| Error::other(format!("cannot compress the manifest: {e}")))?;
    remote.put(&format::manifest_key(&id), &manifest_bytes)?;
    remote.put(&format::index_key(&id), &index.encode()?)?;
    Ok(())
}

/// A pack being written to a temporary file.
struct Building {
    file: tempfile::NamedTempFile,
    hasher: Hasher,
    size: u64,
    objects: Vec<(String, u64, u64, u64)>,
}

/// A pack ready to upload.
struct Finished {
    file: tempfile::NamedTempFile,
    name: String,
    size: u64,
    index: PackIndex,
}

/// Keeps the contents the bucket lacks, each verified and compressed into
/// the current pack; full packs go to the uploaders.
struct Packer<'a> {
    todo: &'a HashSet<Digest>,
    tmp: &'a std::path::Path,
    current: Option<Building>,
    placed: &'a mut HashMap<Digest, (String, u64, u64)>,
    tx: Option<mpsc::SyncSender<Finished>>,
    bar: &'a indicatif::ProgressBar,
    objects: u64,
}

/// Pending locations of the current pack's objects (its name is its hash,
/// known only when it is full).
const PENDING: &str = "";

impl Packer<'_> {
    fn wanted(&self, e: &Entry) -> Option<Digest> {
        let d = e.sha256.filter(|_| e.kind == Kind::File)?;
        (self.todo.contains(&d) && !self.placed.contains_key(&d)).then_some(d)
    }

    fn add(&mut self, e: &Entry, digest: Digest, content: &mut dyn Read) -> Result<()> {
        if self.current.is_none() {
            self.current = Some(Building {
                file: fs::temp_file_in(self.tmp)?,
                hasher: Hasher::new(),
                size: 0,
                objects: Vec::new(),
            });
        }
        let pack = self.current.as_mut().ok_or_else(|| Error::other("no pack"))?;
        let path = pack.file.path().to_path_buf();
        let wr = |err: std::io::Error| Error::io("write", &path, err);
        let mut frame = Vec::new();
        let mut enc = zstd::stream::write::Encoder::new(&mut frame, format::LEVEL).map_err(wr)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut count = 0u64;
        loop {
            let n = content.read(&mut buf).map_err(|err| {
                Error::integrity(format!(
                    "cannot read `{}` from the bundle: {}",
                    e.path,
                    crate::error::describe_io(&err)
                ))
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            enc.write_all(&buf[..n]).map_err(wr)?;
            count += n as u64;
            // A large file is written out as it goes, never held whole.
            if frame_len(&enc) > (8 << 20) {
                let chunk = std::mem::take(*enc.get_mut());
                pack.file.write_all(&chunk).map_err(wr)?;
                pack.hasher.update(&chunk);
            }
        }
        enc.finish().map_err(wr)?;
        if count != e.size || hasher.finish() != digest {
            return Err(Error::integrity(format!(
                "`{}` in the local bundle does not match its sha256; nothing was published (`slipway verify` checks the store)",
                e.path
            )));
        }
        pack.file.write_all(&frame).map_err(wr)?;
        pack.hasher.update(&frame);
        let start = pack.size;
        // The frame's length: what was flushed early plus the rest.
        let end = pack.file.as_file_mut().stream_position().map_err(wr)?;
        pack.size = end;
        pack.objects.push((digest.hex(), e.size, start, end - start));
        self.placed.insert(digest, (PENDING.to_string(), start, end - start));
        self.objects += 1;
        self.bar.inc(e.size);
        if pack.size >= format::PACK_TARGET {
            self.flush()?;
        }
        Ok(())
    }

    /// Finish the current pack (if any) and hand it to the uploaders.
    fn flush(&mut self) -> Result<()> {
        let Some(pack) = self.current.take() else { return Ok(()) };
        let name = pack.hasher.finish().hex();
        for (hex, _, _, _) in &pack.objects {
            if let Some(d) = Digest::from_hex(hex)
                && let Some(p) = self.placed.get_mut(&d)
            {
                p.0.clone_from(&name);
            }
        }
        let finished = Finished {
            file: pack.file,
            name,
            size: pack.size,
            index: PackIndex {
                format: format::FORMAT,
                objects: pack.objects,
            },
        };
        self.tx
            .as_ref()
            .ok_or_else(|| Error::other("no uploader"))?
            .send(finished)
            .map_err(|_| Error::ThreadStopped("uploading the packs"))
    }
}

fn frame_len(enc: &zstd::stream::write::Encoder<'_, &mut Vec<u8>>) -> usize {
    enc.get_ref().len()
}

impl Visitor for Packer<'_> {
    fn wants_content(&mut self, entry: &Entry) -> bool {
        self.wanted(entry).is_some()
    }

    fn entry(&mut self, entry: &Entry, content: Option<&mut dyn Read>) -> Result<()> {
        if let (Some(d), Some(c)) = (self.wanted(entry), content) {
            self.add(entry, d, c)?;
        }
        Ok(())
    }
}

impl Drop for Packer<'_> {
    fn drop(&mut self) {
        // Closing the channel ends the uploaders once they are through.
        self.tx.take();
    }
}

/// Upload one pack, then its index (an `.idx` is only ever written for a
/// pack that is there).
fn upload_pack(remote: &Remote, pack: &Finished) -> Result<()> {
    remote.put_file(&format::pack_key(&pack.name), pack.file.path(), pack.size)?;
    remote.put(&format::pack_index_key(&pack.name), &format::encode(&pack.index)?)?;
    Ok(())
}
