//! `slipway import FILE`: verify a bundle and add it to the store.
//!
//! The archive is re-packed while it is verified, so the stored file is the
//! canonical one for its id whatever produced the input; nothing is stored
//! or bound unless every entry matched the manifest. The sidecar is input
//! too: only a regular file of at most [`MAX_SIDECAR_BYTES`] is read.

use std::io::Read;
use std::path::Path;

use crate::Context;
use crate::bundle::pack::BundleWriter;
use crate::bundle::unpack::{Visitor, read_bundle};
use crate::cli::ImportArgs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fs::{self, Small};
use crate::manifest::{Entry, Kind, Manifest, validate_name};
use crate::store::{Bound, ReleaseRecord};

/// Largest sidecar read (`FILE.meta.json`: name, id, provenance, signatures).
pub const MAX_SIDECAR_BYTES: u64 = 1024 * 1024;

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

/// # Errors
/// Integrity error (exit 5) when the archive is damaged or lies; usage error
/// when no name is known; error when the name is bound to another id.
pub fn run(args: &ImportArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let sidecar_path = super::export::sidecar_path(&args.file);
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
        &args.name,
        sidecar.as_ref().and_then(|s| s.get("name")).and_then(|n| n.as_str()),
    ) {
        (Some(n), _) => n.clone(),
        (None, Some(n)) => n.to_string(),
        (None, None) => {
            return Err(Error::usage(format!(
                "no release name for `{}`: it has no sidecar `{}`; pass `--name NAME`",
                args.file.display(),
                sidecar_path.display()
            )));
        }
    };
    validate_name(&name)?;

    let origin = args.file.display().to_string();
    let tmp_dir = store.tmp_dir();
    let mut repack = Repack {
        tmp_dir: &tmp_dir,
        origin: &args.file,
        writer: None,
    };
    let (manifest, id) = read_bundle(fs::open(&args.file)?, &origin, &mut repack)?;
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
    let mut record = ReleaseRecord {
        name: name.clone(),
        id,
        provenance: None,
        signatures: Vec::new(),
    };
    if let Some(s) = &sidecar {
        if let Some(p) = s.get("provenance") {
            record.provenance = serde_json::from_value(p.clone()).ok();
        }
        if let Some(sig) = s.get("signatures").and_then(|v| v.as_array()) {
            record.signatures = sig.clone();
        }
    }
    store.add_bundle(packed)?;
    let bound = store.bind(&record)?;
    if ctx.out.json {
        ctx.out
            .json_value(&serde_json::json!({"name": name, "id": id, "new": bound == Bound::New}));
    } else {
        ctx.out.data(&id.to_string());
    }
    Ok(())
}
