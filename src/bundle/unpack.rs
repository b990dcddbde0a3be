//! Reading bundles: every entry is checked against the manifest while it is
//! read, so a consumer never sees a byte that the manifest does not vouch for
//! once [`read_bundle`] returns `Ok` (contents a visitor declines are skipped
//! unhashed: it never sees them).
//!
//! Refused (integrity error, exit 5): a missing or non-canonical manifest,
//! entries out of order or not in the manifest, hardlinks, devices, fifos,
//! sizes or link targets that differ from the manifest, contents whose sha256
//! differs, anything after the last entry, and corrupt or truncated streams.

use std::io::{self, Read};

use tar::EntryType;

use super::MANIFEST_PATH;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::manifest::{Entry, Kind, MAX_MANIFEST_BYTES, Manifest};

/// Called with each entry and (for files) its content, in manifest order. The
/// content is verified after the call returns: a consumer must not commit what
/// it read until `read_bundle` has returned `Ok` (or the next entry arrives).
pub trait Visitor {
    /// The manifest, before any entry.
    fn manifest(&mut self, _manifest: &Manifest, _id: Digest) -> Result<()> {
        Ok(())
    }
    /// One entry; `content` is `Some` for files, unless [`Visitor::wants_content`] declined it.
    fn entry(&mut self, entry: &Entry, content: Option<&mut dyn Read>) -> Result<()>;
    /// Whether the visitor reads this file's content. Content it declines is
    /// skipped without being hashed (a push picking a few files out of a
    /// bundle); everything else is verified as always.
    fn wants_content(&mut self, _entry: &Entry) -> bool {
        true
    }
}

fn corrupt(origin: &str, e: impl std::fmt::Display) -> Error {
    Error::integrity(format!("bundle `{origin}` is corrupt or truncated: {e}"))
}

fn entry_path(e: &tar::Entry<'_, impl Read>, origin: &str) -> Result<String> {
    let p = e.path_bytes();
    String::from_utf8(p.into_owned())
        .map_err(|_| Error::integrity(format!("bundle `{origin}` has an entry whose name is not UTF-8")))
}

/// Read a `.tar.zst` bundle from `input`, verifying everything; `origin` names
/// it in errors. Returns the manifest and its id.
///
/// # Errors
/// Integrity error (exit 5) for any mismatch or damage; the visitor's own errors.
pub fn read_bundle(input: impl Read, origin: &str, visitor: &mut dyn Visitor) -> Result<(Manifest, Digest)> {
    let decoder = zstd::stream::read::Decoder::new(input).map_err(|e| corrupt(origin, e))?;
    let mut archive = tar::Archive::new(decoder);
    let (manifest, id) = {
        let mut entries = archive.entries().map_err(|e| corrupt(origin, e))?;
        let mut next = || -> Result<Option<tar::Entry<'_, _>>> {
            match entries.next() {
                None => Ok(None),
                Some(r) => r.map(Some).map_err(|e| corrupt(origin, e)),
            }
        };
        // `.slipway/` (optional) then `.slipway/manifest.json`.
        let mut first = next()?.ok_or_else(|| corrupt(origin, "empty archive"))?;
        if first.header().entry_type() == EntryType::Directory
            && entry_path(&first, origin)?.trim_end_matches('/') == ".slipway"
        {
            first = next()?.ok_or_else(|| corrupt(origin, "no manifest"))?;
        }
        if entry_path(&first, origin)? != MANIFEST_PATH || first.header().entry_type() != EntryType::Regular {
            return Err(Error::integrity(format!(
                "bundle `{origin}` does not start with `{MANIFEST_PATH}`; it is not a slipway bundle"
            )));
        }
        let size = first.header().size().map_err(|e| corrupt(origin, e))?;
        if size > MAX_MANIFEST_BYTES {
            return Err(Error::integrity(format!(
                "bundle `{origin}` declares a manifest of {size} bytes, more than the limit of {MAX_MANIFEST_BYTES}"
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut first)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(origin, e))?;
        drop(first);
        let manifest = Manifest::parse(&bytes)?;
        let id = Digest::of(&bytes);
        visitor.manifest(&manifest, id)?;

        for expected in &manifest.entries {
            let Some(mut entry) = next()? else {
                return Err(corrupt(origin, format!("archive ends before `{}`", expected.path)));
            };
            check_entry(&entry, expected, origin)?;
            if expected.kind == Kind::File && !visitor.wants_content(expected) {
                let skipped =
                    io::copy(&mut (&mut entry).take(expected.size), &mut io::sink()).map_err(|e| corrupt(origin, e))?;
                if skipped != expected.size {
                    return Err(corrupt(origin, format!("`{}` is truncated", expected.path)));
                }
                visitor.entry(expected, None)?;
            } else if expected.kind == Kind::File {
                let mut reader = HashingReader::new((&mut entry).take(expected.size));
                visitor.entry(expected, Some(&mut reader))?;
                io::copy(&mut reader, &mut io::sink()).map_err(|e| corrupt(origin, e))?;
                let (_, digest, count) = reader.into_parts();
                if count != expected.size {
                    return Err(corrupt(origin, format!("`{}` is truncated", expected.path)));
                }
                if Some(digest) != expected.sha256 {
                    return Err(Error::integrity(format!(
                        "bundle `{origin}`: content of `{}` does not match its sha256 (manifest {}, content {digest})",
                        expected.path,
                        expected.sha256.map(|d| d.to_string()).unwrap_or_default()
                    )));
                }
            } else {
                visitor.entry(expected, None)?;
            }
        }
        if let Some(extra) = next()? {
            return Err(Error::integrity(format!(
                "bundle `{origin}` has an entry `{}` that is not in its manifest",
                entry_path(&extra, origin)?
            )));
        }
        (manifest, id)
    };
    // Drain the rest of the stream so a damaged tail or checksum is noticed.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 8192];
    loop {
        match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if buf[..n].iter().all(|b| *b == 0) => {}
            Ok(_) => return Err(corrupt(origin, "data after the end of the archive")),
            Err(e) => return Err(corrupt(origin, e)),
        }
    }
    Ok((manifest, id))
}

fn check_entry(entry: &tar::Entry<'_, impl Read>, expected: &Entry, origin: &str) -> Result<()> {
    let path = entry_path(entry, origin)?;
    let path = if expected.kind == Kind::Dir {
        path.trim_end_matches('/').to_string()
    } else {
        path
    };
    let mismatch = |what: &str| {
        Error::integrity(format!(
            "bundle `{origin}`: entry `{}` {what} (manifest expects `{}`)",
            path.escape_debug(),
            expected.path
        ))
    };
    if path != expected.path {
        return Err(mismatch("is not the next manifest entry"));
    }
    let ty = entry.header().entry_type();
    let size = entry.header().size().map_err(|e| corrupt(origin, e))?;
    match expected.kind {
        Kind::Dir if ty != EntryType::Directory => Err(mismatch("is not a directory")),
        Kind::File if ty != EntryType::Regular && ty != EntryType::Continuous => Err(mismatch("is not a regular file")),
        Kind::File if size != expected.size => Err(mismatch(&format!(
            "declares {size} bytes but the manifest says {}",
            expected.size
        ))),
        Kind::Symlink => {
            if ty != EntryType::Symlink {
                return Err(mismatch("is not a symlink"));
            }
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if Some(target.as_str()) != expected.target.as_deref() {
                return Err(mismatch("has a different symlink target"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A visitor that only verifies.
pub struct VerifyOnly;

impl Visitor for VerifyOnly {
    fn entry(&mut self, _entry: &Entry, _content: Option<&mut dyn Read>) -> Result<()> {
        Ok(())
    }
}
