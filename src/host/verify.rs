//! Drift check: re-hash release trees (and so the objects they link) against
//! their manifests, and report every path that differs ([`Drift`]).
//!
//! Invariant: it only reads; a damaged release is repaired by a push
//! (`verify --repair`), never here.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use super::layout::{HostRelease, Layout};
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::Kind;
use crate::protocol::Drift;

/// Verify one release tree. Returns the drifted paths (empty: intact).
///
/// # Errors
/// When the release is not complete on the host.
pub fn verify_release(layout: &Layout, meta: &HostRelease) -> Result<Vec<Drift>> {
    meta.checked_id()?;
    let root = layout.release_dir(&meta.name);
    if !root.is_dir() {
        return Err(Error::NoReleaseTree {
            release: meta.name.clone(),
            releases: layout.releases_dir(),
        });
    }
    let mut drift = Vec::new();
    let d = |path: &str, problem: &str| Drift {
        release: meta.name.clone(),
        path: path.to_string(),
        problem: problem.to_string(),
    };
    let shared: HashSet<&str> = meta
        .shared
        .iter()
        .chain(meta.shared_files.iter())
        .map(String::as_str)
        .collect();
    let mut expected: HashSet<&str> = HashSet::new();
    let mut buf = vec![0u8; 1 << 16];
    for e in &meta.manifest.entries {
        expected.insert(&e.path);
        let path = root.join(&e.path);
        let Some(m) = fs::symlink_metadata_optional(&path)? else {
            drift.push(d(&e.path, "missing"));
            continue;
        };
        let ft = m.file_type();
        match e.kind {
            Kind::Dir if !ft.is_dir() => drift.push(d(&e.path, "kind")),
            Kind::Symlink if !ft.is_symlink() => drift.push(d(&e.path, "kind")),
            Kind::File if !ft.is_file() => drift.push(d(&e.path, "kind")),
            Kind::Symlink => {
                if fs::read_link(&path)?.to_str() != e.target.as_deref() {
                    drift.push(d(&e.path, "changed"));
                }
            }
            Kind::File => {
                let mode = m.permissions().mode() & 0o7777;
                let want = if e.executable() { 0o555 } else { 0o444 };
                let mut f = fs::open(&path)?;
                let mut h = Hasher::new();
                let mut n = 0u64;
                loop {
                    let k = f.read(&mut buf).map_err(|err| Error::io("read", &path, err))?;
                    if k == 0 {
                        break;
                    }
                    h.update(&buf[..k]);
                    n += k as u64;
                }
                if n != e.size || Some(h.finish()) != e.sha256 {
                    drift.push(d(&e.path, "changed"));
                } else if mode != want {
                    drift.push(d(&e.path, "mode"));
                }
            }
            Kind::Dir => {}
        }
    }
    // Extra paths: anything in the tree that the manifest (or the shared links) does not list.
    let mut stack = vec![(root.clone(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for (name, path) in fs::read_dir_sorted(&dir)? {
            let rel = if prefix.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{prefix}/{}", name.to_string_lossy())
            };
            if shared.contains(rel.as_str()) {
                continue;
            }
            if !expected.contains(rel.as_str()) {
                drift.push(d(&rel, "extra"));
                continue;
            }
            if fs::symlink_metadata(&path)?.is_dir() {
                stack.push((path, rel));
            }
        }
    }
    drift.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(drift)
}
