//! The directory a bundle is made from: listing it ([`scan_dir`]), checking
//! the listing against the manifest rules before any content is read
//! ([`prevalidate`]), and reading its files (`read_some`, `changed`) —
//! shared by [`super::pack`] and [`super::read_ahead`], which read the
//! files on a thread of its own.
//!
//! Invariant: a listing is sorted bytewise by path and holds only files,
//! directories and symlinks whose names and targets are UTF-8; a file that
//! is read back with another size than it was listed with is an error
//! naming it (`changed`), never a different bundle.

use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Entry, Kind, MANIFEST_VERSION, Manifest};

/// One path found by [`scan_dir`].
pub struct Scanned {
    pub rel: String,
    pub abs: PathBuf,
    pub kind: Kind,
    pub executable: bool,
    pub size: u64,
    pub target: Option<String>,
}

/// Walk `root` and list its entries sorted bytewise by path, refusing special
/// files, non-UTF-8 names and the reserved `.slipway/`.
///
/// # Errors
/// One-line error naming the offending path.
pub fn scan_dir(root: &Path) -> Result<Vec<Scanned>> {
    let meta = fs::metadata(root)?;
    if !meta.is_dir() {
        return Err(Error::usage(format!("`{}` is not a directory", root.display())));
    }
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for (name, abs) in fs::read_dir_sorted(&dir)? {
            let Some(name) = name.to_str() else {
                return Err(Error::NameNotUtf8 { path: abs });
            };
            let rel = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let m = fs::symlink_metadata(&abs)?;
            let ft = m.file_type();
            let (kind, executable, size, target) = if ft.is_dir() {
                stack.push((abs.clone(), rel.clone()));
                (Kind::Dir, false, 0, None)
            } else if ft.is_file() {
                (Kind::File, m.permissions().mode() & 0o111 != 0, m.size(), None)
            } else if ft.is_symlink() {
                let t = fs::read_link(&abs)?;
                let Some(t) = t.to_str() else {
                    return Err(Error::LinkTargetNotUtf8 { path: abs });
                };
                (Kind::Symlink, false, 0, Some(t.to_string()))
            } else {
                return Err(Error::SpecialFile { path: abs });
            };
            out.push(Scanned {
                rel,
                abs,
                kind,
                executable,
                size,
                target,
            });
        }
    }
    out.sort_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    Ok(out)
}

/// Check a scanned tree against the manifest rules before reading any content.
///
/// # Errors
/// Integrity error naming the first bad path.
pub fn prevalidate(scanned: &[Scanned], source_date_epoch: i64, allow_links: &[String]) -> Result<()> {
    let entries = scanned
        .iter()
        .map(|s| to_entry(s, Digest([0; 32]), allow_links))
        .collect();
    Manifest {
        version: MANIFEST_VERSION,
        source_date_epoch,
        entries,
    }
    .validate()
}

fn to_entry(s: &Scanned, digest: Digest, allow_links: &[String]) -> Entry {
    match s.kind {
        Kind::Dir => Entry::dir(s.rel.clone()),
        Kind::File => Entry::file(s.rel.clone(), s.executable, s.size, digest),
        Kind::Symlink => {
            let mut e = Entry::symlink(s.rel.clone(), s.target.clone().unwrap_or_default());
            e.external = allow_links.iter().any(|a| a == &s.rel);
            e
        }
    }
}

/// Read into `buf`, retrying on EINTR; 0 at the end.
pub(crate) fn read_some(content: &mut dyn Read, buf: &mut [u8], origin: &Path) -> Result<usize> {
    loop {
        match content.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", origin, e)),
        }
    }
}

/// The error for a file whose size is not the one it had when it was listed.
pub(crate) fn changed(origin: &Path, size: u64) -> Error {
    Error::ChangedWhileRead {
        path: origin.to_path_buf(),
        size,
    }
}
