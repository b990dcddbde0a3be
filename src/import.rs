//! Importing a bundle file into the local store: the archive is verified
//! and re-packed while it is read, so the stored file is the canonical one
//! for its id whatever produced the input, and nothing is stored or bound
//! unless every entry matched the manifest. The sidecar (`FILE.meta.json`,
//! written by `export`) names it and carries its provenance and
//! signatures; signatures are kept only when they verify for the imported
//! name and id. The sidecar is input too: only a regular file of at most
//! [`MAX_SIDECAR_BYTES`] is read.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::bundle::pack::BundleWriter;
use crate::bundle::unpack::{Visitor, read_bundle};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fs::{self, Small};
use crate::manifest::{Entry, Kind, Manifest, validate_name};
use crate::signature::{self, Signature};
use crate::store::{Bound, ReleaseRecord, Store};

/// Largest sidecar read (`FILE.meta.json`: name, id, provenance, signatures).
pub const MAX_SIDECAR_BYTES: u64 = 1024 * 1024;

/// `FILE.meta.json`: the sidecar `export` writes beside `FILE`.
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_os_string();
    s.push(".meta.json");
    PathBuf::from(s)
}

/// What an import did.
pub struct Imported {
    pub name: String,
    pub id: Digest,
    /// The name was bound here by this import.
    pub new: bool,
    pub manifest: Manifest,
    /// One line per sidecar signature not imported, and why.
    pub dropped: Vec<String>,
}

struct Repack<'a> {
    tmp_dir: &'a Path,
    origin: &'a Path,
    writer: Option<BundleWriter>,
}

impl Visitor for Repack<'_> {
    fn manifest(&mut self, manifest: &Manifest, _id: Digest) -> Result<()> {
        self.writer = Some(BundleWriter::new(self.tmp_dir, manifest.source_date_epoch)?);
        Ok(())
    }

    fn entry(&mut self, e: &Entry, content: Option<&mut dyn Read>) -> Result<()> {
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::integrity("entry before the manifest"))?;
        match (e.kind, content) {
            (Kind::Dir, _) => w.add_dir(&e.path),
            (Kind::Symlink, _) => w.add_symlink(&e.path, e.target.as_deref().unwrap_or_default(), e.external),
            (Kind::File, Some(c)) => w.add_file(&e.path, e.executable(), e.size, c, self.origin).map(|_| ()),
            (Kind::File, None) => Err(Error::integrity(format!("file `{}` without content", e.path))),
        }
    }
}

/// The sidecar's signatures that verify for `name` = `id` (signatures in a
/// format this slipway does not know are kept as they are); each one dropped
/// is named in `dropped`. `from` says where they came from (a sidecar's
/// path, a remote).
pub(crate) fn checked_signatures(
    sigs: &[Value],
    name: &str,
    id: &Digest,
    from: &str,
    tmp_dir: &Path,
    dropped: &mut Vec<String>,
) -> Result<Vec<Value>> {
    let mut kept = Vec::new();
    for value in sigs {
        let why = match Signature::from_value(value) {
            None if value.get("format").and_then(Value::as_str) != Some(signature::FORMAT) => {
                kept.push(value.clone());
                continue;
            }
            None => "it is malformed".to_string(),
            Some(sig) => match signature::verify_own(&sig, name, id, tmp_dir)? {
                Ok(()) => {
                    kept.push(value.clone());
                    continue;
                }
                Err(why) => format!("the signature by `{}` {why}", signature::clean(&sig.key_fingerprint)),
            },
        };
        dropped.push(format!(
            "not importing a signature from `{from}` for `{name}` {id}: {why}",
        ));
    }
    Ok(kept)
}

/// Import the bundle file at `file_path` as release `name` (default: the
/// sidecar's name) into `store` (the caller holds its shared lock).
///
/// # Errors
/// Integrity error (exit 5) when the archive is damaged or lies; usage error
/// when no name is known or the file or sidecar is not what it should be;
/// error when the name is bound to another id.
pub fn import(store: &Store, file_path: &Path, name: Option<&str>) -> Result<Imported> {
    // The file first: a mistyped path is the problem to report, not its sidecar.
    match fs::metadata_optional(file_path)? {
        None => {
            return Err(Error::usage(format!(
                "bundle file `{}` does not exist",
                file_path.display()
            )));
        }
        Some(m) if m.is_dir() => {
            return Err(Error::usage(format!(
                "`{}` is a directory; pass a bundle file (`slipway export` writes one)",
                file_path.display()
            )));
        }
        Some(_) => {}
    }
    let file = fs::open(file_path)?;
    let sidecar_path = sidecar_path(file_path);
    let sidecar: Option<serde_json::Value> = match fs::read_small_optional(&sidecar_path, MAX_SIDECAR_BYTES)? {
        Small::Bytes(b) => Some(
            serde_json::from_slice(&b)
                .map_err(|e| Error::usage(format!("sidecar `{}` is not valid JSON: {e}", sidecar_path.display())))?,
        ),
        Small::Missing => None,
        Small::NotRegular => {
            return Err(Error::usage(format!(
                "sidecar `{}` is not a regular file; remove it or pass a bundle without one",
                sidecar_path.display()
            )));
        }
        Small::TooLarge(n) => {
            return Err(Error::usage(format!(
                "sidecar `{}` is {n} bytes, more than the limit of {MAX_SIDECAR_BYTES}; it is not one slipway wrote",
                sidecar_path.display()
            )));
        }
    };
    let name = match (
        name,
        sidecar.as_ref().and_then(|s| s.get("name")).and_then(|n| n.as_str()),
    ) {
        (Some(n), _) => n.to_string(),
        (None, Some(n)) => n.to_string(),
        (None, None) => {
            return Err(Error::usage(format!(
                "no release name for `{}`: it has no sidecar `{}`; pass `--name NAME`",
                file_path.display(),
                sidecar_path.display()
            )));
        }
    };
    validate_name(&name)?;

    let origin = file_path.display().to_string();
    let tmp_dir = store.tmp_dir();
    let mut repack = Repack {
        tmp_dir: &tmp_dir,
        origin: file_path,
        writer: None,
    };
    let (manifest, id) = read_bundle(file, &origin, &mut repack)?;
    let packed = repack
        .writer
        .take()
        .ok_or_else(|| Error::integrity(format!("bundle `{origin}` has no manifest")))?
        .finish()?;
    if packed.manifest != manifest {
        return Err(Error::integrity(format!(
            "bundle `{origin}`: re-packed manifest differs from the archive's"
        )));
    }
    if let Some(claimed) = sidecar.as_ref().and_then(|s| s.get("id")).and_then(|v| v.as_str())
        && claimed != id.to_string()
    {
        return Err(Error::integrity(format!(
            "sidecar `{}` claims {claimed} but `{origin}` holds {id}",
            sidecar_path.display()
        )));
    }
    let mut dropped = Vec::new();
    let mut record = ReleaseRecord {
        name: name.clone(),
        id,
        provenance: None,
        signatures: Vec::new(),
        forgotten: false,
    };
    if let Some(s) = &sidecar {
        if let Some(p) = s.get("provenance") {
            record.provenance = serde_json::from_value(p.clone()).ok();
        }
        if let Some(sigs) = s.get("signatures").and_then(|v| v.as_array()) {
            record.signatures = checked_signatures(
                sigs,
                &name,
                &id,
                &sidecar_path.display().to_string(),
                &tmp_dir,
                &mut dropped,
            )?;
        }
    }
    store.add_bundle(packed)?;
    let bound = store.bind(&record)?;
    if bound == Bound::Existing && !record.signatures.is_empty() {
        // Signatures made elsewhere join those already here.
        let _records = store.lock_records()?;
        let mut existing = store.record(&name)?;
        if signature::merge(&mut existing.signatures, record.signatures) {
            store.update_record(&existing)?;
        }
    }
    Ok(Imported {
        name,
        id,
        new: bound == Bound::New,
        manifest,
        dropped,
    })
}
