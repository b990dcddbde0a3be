//! `slipway fetch REL --from REMOTE`: a published release into the local
//! store, verified, with its provenance and signatures.
//!
//! ```text
//! REL ─▶ id (a name bound once, or an id prefix) ─▶ manifest.zst (its sha256 must be the id)
//!   ─▶ index.zst ─▶ contents not yet in tmp/fetch-<id>/ (a killed fetch resumes there)
//!   ─▶ range GETs, 4 at a time, each object checked (pull.rs) ─▶ tmp/fetch-<id>/<sha256>
//!   ─▶ the bundle re-packed in manifest order (the same bytes `build` makes)
//!   ─▶ store: bundle, then the name, provenance, signatures that verify
//! ```
//!
//! Invariant: nothing is stored or bound unless every byte matched the
//! manifest, and the manifest matched the id.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{self, ReleaseIndex};
use super::names;
use super::pull::{self, Want};
use super::s3::{MAX_SMALL, Remote};
use crate::bundle::pack::BundleWriter;
use crate::digest::{Digest, looks_like_id};
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Kind, MAX_MANIFEST_BYTES, Manifest, validate_name};
use crate::output::Output;
use crate::store::{Bound, ReleaseRecord, Store};

/// What a fetch did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fetched {
    pub name: String,
    pub id: Digest,
    pub remote: String,
    /// The bundle was not in the local store before.
    pub new: bool,
    pub objects_downloaded: u64,
    pub bytes_downloaded: u64,
    pub signatures: usize,
    #[serde(skip)]
    pub dropped: Vec<String>,
}

/// Which id REL means in the remote, and the name when REL is one.
///
/// # Errors
/// Usage error (exit 2) when REL is not published there or an id prefix is
/// ambiguous; integrity error when a name has two ids.
pub fn resolve(remote: &Remote, rel: &str) -> Result<(Digest, Option<String>)> {
    if validate_name(rel).is_ok()
        && let Some(id) = names::bound(remote, rel)?
    {
        return Ok((id, Some(rel.to_string())));
    }
    let hex = rel.strip_prefix("sha256:").unwrap_or(rel);
    let is_hex = !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|c| c.is_ascii_hexdigit());
    if looks_like_id(rel) || is_hex {
        let mut ids: Vec<Digest> = remote
            .list(&format!("releases/{}", hex.to_ascii_lowercase()))?
            .into_iter()
            .filter_map(|l| {
                let rest = l.key.strip_prefix("releases/")?;
                let (id, file) = rest.split_once('/')?;
                (file == "index.zst").then(|| Digest::from_hex(id)).flatten()
            })
            .collect();
        ids.dedup();
        match ids.as_slice() {
            [one] => return Ok((*one, None)),
            [] => {}
            many => {
                let list: Vec<String> = many.iter().map(ToString::to_string).collect();
                return Err(Error::usage(format!(
                    "`{rel}` is ambiguous in remote `{}`: it matches {}; give more digits of the id",
                    remote.name,
                    list.join(", ")
                )));
            }
        }
    }
    if validate_name(rel).is_err() {
        return Err(Error::usage(format!(
            "no release in remote `{}` ({}) has an id starting with `{rel}`",
            remote.name, remote.describe
        )));
    }
    Err(Error::usage(format!(
        "`{rel}` is not published in remote `{}` ({}); `slipway publish {rel} --to {}` puts it there",
        remote.name, remote.describe, remote.name
    )))
}

/// Fetch REL from `remote` into `store` (the caller holds its shared lock),
/// as `name` (default: REL when it is a name).
///
/// # Errors
/// As [`resolve`]; integrity errors (exit 5) for anything that does not
/// match; request failures; a name bound to another id in the local store.
pub fn fetch(store: &Store, remote: &Remote, rel: &str, name: Option<&str>, out: &Output) -> Result<Fetched> {
    let (id, remote_name) = resolve(remote, rel)?;
    let name = match (name, remote_name) {
        (Some(n), _) => n.to_string(),
        (None, Some(n)) => n,
        (None, None) => {
            return Err(Error::usage(format!(
                "`{rel}` is an id: pass `--name NAME` to give the fetched release a name"
            )));
        }
    };
    validate_name(&name)?;
    // A name bound here to another bundle: refuse before downloading it.
    if let Some((bound, _)) = store.resolve(&name).ok().filter(|(d, r)| r.is_some() && *d != id) {
        return Err(Error::StoreRebound {
            release: name,
            bound: bound.to_string(),
            offered: id.to_string(),
        });
    }
    let mut done = Fetched {
        name: name.clone(),
        id,
        remote: remote.name.clone(),
        new: !store.has_bundle(&id),
        objects_downloaded: 0,
        bytes_downloaded: 0,
        signatures: 0,
        dropped: Vec::new(),
    };
    if done.new {
        download_bundle(store, remote, &id, &name, out, &mut done)?;
    }
    let provenance = match remote.get(&format::provenance_key(&id), 1 << 20)? {
        Some(bytes) => match serde_json::from_slice(&bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                done.dropped.push(format!(
                    "not keeping the provenance of {id} from remote `{}`: {e}",
                    remote.name
                ));
                None
            }
        },
        None => None,
    };
    let mut sigs = Vec::new();
    for item in remote.list(&format::signatures_prefix(&id))? {
        if let Some(bytes) = remote.get(&item.key, 1 << 20)? {
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) => sigs.push(v),
                Err(e) => done.dropped.push(format!(
                    "not keeping `{}` from remote `{}`: not JSON ({e})",
                    item.key, remote.name
                )),
            }
        }
    }
    let from = format!("remote `{}`", remote.name);
    let signatures = crate::import::checked_signatures(&sigs, &name, &id, &from, &store.tmp_dir(), &mut done.dropped)?;
    done.signatures = signatures.len();
    let record = ReleaseRecord {
        name: name.clone(),
        id,
        provenance,
        signatures,
        forgotten: false,
    };
    if store.bind(&record)? == Bound::Existing && !record.signatures.is_empty() {
        let _records = store.lock_records()?;
        let mut existing = store.record(&name)?;
        if crate::signature::merge(&mut existing.signatures, record.signatures) {
            store.update_record(&existing)?;
        }
    }
    Ok(done)
}

/// A metadata object of release `id` that must be there.
fn required(remote: &Remote, key: &str, id: &Digest) -> Result<Vec<u8>> {
    remote.get(key, MAX_SMALL)?.ok_or_else(|| {
        Error::Remote(format!(
            "remote `{}` has no `{key}`: {id} was never completely published there",
            remote.name
        ))
    })
}

/// The manifest of `id` from the remote, checked against the id.
///
/// # Errors
/// A missing manifest (an unfinished publish), or one that does not hash to the id.
pub fn manifest(remote: &Remote, id: &Digest) -> Result<Manifest> {
    let key = format::manifest_key(id);
    let bytes = required(remote, &key, id)?;
    let what = format!("remote `{}`: `{key}`", remote.name);
    let raw = format::decompress(&bytes, MAX_MANIFEST_BYTES, &what)?;
    let got = Digest::of(&raw);
    if got != *id {
        return Err(Error::integrity(format!(
            "{what} hashes to {got}, not to {id}: the bucket's copy is damaged or was tampered with"
        )));
    }
    Manifest::parse(&raw).map_err(|e| Error::integrity(format!("{what}: {e}")))
}

/// The index of `id` from the remote, checked against its manifest.
///
/// # Errors
/// A missing or malformed index.
pub fn index(remote: &Remote, id: &Digest, contents: usize) -> Result<ReleaseIndex> {
    let key = format::index_key(id);
    let bytes = required(remote, &key, id)?;
    let what = format!("remote `{}`: `{key}`", remote.name);
    let index = ReleaseIndex::decode(&bytes, MAX_SMALL, &what)?;
    format::check_index(&index, contents, &what)?;
    Ok(index)
}

fn download_bundle(
    store: &Store,
    remote: &Remote,
    id: &Digest,
    name: &str,
    out: &Output,
    done: &mut Fetched,
) -> Result<()> {
    let manifest = manifest(remote, id)?;
    let contents = format::contents(&manifest);
    let index = index(remote, id, contents.len())?;
    let dir = store.tmp_dir().join(format!("fetch-{}", id.hex()));
    fs::create_dir_all(&dir)?;
    let mut wants = Vec::new();
    for ((digest, size), loc) in contents.iter().zip(&index.objects) {
        if !already_here(&dir.join(digest.hex()), *size, digest) {
            wants.push(Want {
                digest: *digest,
                size: *size,
                loc: *loc,
            });
        }
    }
    let total: u64 = wants.iter().map(|w| w.size).sum();
    out.detail(&format!(
        "fetching {} of {} contents of `{name}` ({}) from remote `{}`",
        wants.len(),
        contents.len(),
        crate::output::human_bytes(total),
        remote.name
    ));
    done.objects_downloaded = wants.len() as u64;
    done.bytes_downloaded = wants.iter().map(|w| w.loc.2).sum();
    let bar = out.bytes_bar(total, "fetch");
    let get = |pack: u32, start: u64, len: u64| -> Result<Vec<u8>> {
        let p = &index.packs[pack as usize];
        remote.get_range(&format::pack_key(p), start, len)
    };
    let deliver = |w: &Want, content: Vec<u8>| -> Result<()> {
        write_object(&dir, &w.digest, &content)?;
        super::fault_point("after-object");
        bar.inc(w.size);
        Ok(())
    };
    let what = |w: &Want| {
        format!(
            "remote `{}`: content {} of `{name}` (in `{}` at {})",
            remote.name,
            w.digest,
            remote.full(&format::pack_key(&index.packs[w.loc.0 as usize])),
            w.loc.1
        )
    };
    pull::download(pull::ranges(wants), 4, &get, &deliver, &what)?;
    bar.finish_and_clear();

    let mut writer = BundleWriter::new(&store.tmp_dir(), manifest.source_date_epoch)?;
    for e in &manifest.entries {
        match e.kind {
            Kind::Dir => writer.add_dir(&e.path)?,
            Kind::Symlink => writer.add_symlink(&e.path, e.target.as_deref().unwrap_or_default(), e.external)?,
            Kind::File => {
                let digest = e
                    .sha256
                    .ok_or_else(|| Error::integrity(format!("file `{}` has no sha256", e.path)))?;
                let path = dir.join(digest.hex());
                let mut f = fs::open(&path)?;
                writer.add_file(&e.path, e.executable(), e.size, &mut f, &path)?;
            }
        }
    }
    let packed = writer.finish()?;
    if packed.manifest != manifest {
        return Err(Error::integrity(format!(
            "the contents fetched for `{name}` from remote `{}` do not make {id}; nothing was stored",
            remote.name
        )));
    }
    store.add_bundle(packed)?;
    fs::remove_tree(&dir)?;
    Ok(())
}

/// A content a killed fetch already left, whole and matching.
fn already_here(path: &Path, size: u64, digest: &Digest) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if meta.len() != size {
        return false;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut r = crate::digest::HashingReader::new(file);
    std::io::copy(&mut r, &mut std::io::sink()).is_ok() && r.into_parts().1 == *digest
}

/// Write a checked content as `dir/<sha256>` (temp + rename: a killed
/// fetch leaves whole files or none).
fn write_object(dir: &Path, digest: &Digest, content: &[u8]) -> Result<()> {
    let mut tmp = fs::temp_file_in(dir)?;
    let path: PathBuf = tmp.path().to_path_buf();
    tmp.write_all(content).map_err(|e| Error::io("write", &path, e))?;
    let dest = dir.join(digest.hex());
    tmp.persist(&dest).map_err(|e| Error::io("rename", &dest, e.error))?;
    Ok(())
}
