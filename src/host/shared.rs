//! Shared data: paths that live in `<root>/shared/` and are symlinked into
//! every release (uploads, logs, config), so activate, rollback and prune
//! never touch them.
//!
//! Invariant: slipway creates a missing `shared/<path>` (an empty directory or
//! file) and never deletes or modifies anything under `shared/`.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Kind, Manifest, validate_path};

/// Check the shared paths against a release's manifest before staging.
///
/// # Errors
/// When a path is malformed, the bundle has an entry there, or its parent
/// directory is not in the bundle.
pub fn check(manifest: &Manifest, shared: &[String], shared_files: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for p in shared.iter().chain(shared_files) {
        validate_path(p).map_err(|_| {
            Error::usage(format!(
                "shared path `{}` must be a relative path inside the release (no `..`, not absolute)",
                p.escape_debug()
            ))
        })?;
        if !seen.insert(p.as_str()) {
            return Err(Error::usage(format!("shared path `{p}` is listed twice")));
        }
        if let Some(e) = manifest.entries.iter().find(|e| e.path == *p) {
            return Err(Error::other(format!(
                "the bundle has a {} at shared path `{p}`; remove it from the build output or from `shared`",
                match e.kind {
                    Kind::File => "file",
                    Kind::Dir => "directory",
                    Kind::Symlink => "symlink",
                }
            )));
        }
        if let Some((parent, _)) = p.rsplit_once('/')
            && !manifest.entries.iter().any(|e| e.path == parent && e.kind == Kind::Dir)
        {
            return Err(Error::other(format!(
                "shared path `{p}` needs the directory `{parent}` in the bundle"
            )));
        }
    }
    Ok(())
}

/// The relative link target from `releases/<name>/<path>` to `shared/<path>`.
pub fn link_target(path: &str) -> PathBuf {
    let depth = path.split('/').count() + 1;
    let mut t = "../".repeat(depth);
    t.push_str("shared/");
    t.push_str(path);
    PathBuf::from(t)
}

/// Create missing `shared/` paths and link them into the staged `tree`.
///
/// # Errors
/// On I/O failure.
pub fn link_into(layout: &Layout, tree: &Path, shared: &[String], shared_files: &[String]) -> Result<()> {
    for (p, is_dir) in shared
        .iter()
        .map(|p| (p, true))
        .chain(shared_files.iter().map(|p| (p, false)))
    {
        let target = layout.shared_dir().join(p);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        if fs::symlink_metadata_optional(&target)?.is_none() {
            if is_dir {
                fs::create_dir_all(&target)?;
            } else {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o640)
                    .open(&target)
                    .map_err(|e| Error::io("create", &target, e))?;
            }
        }
        fs::symlink(&link_target(p), &tree.join(p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_climb_to_the_root() {
        assert_eq!(link_target("uploads"), PathBuf::from("../../shared/uploads"));
        assert_eq!(
            link_target("config/app.env"),
            PathBuf::from("../../../shared/config/app.env")
        );
    }
}
