//! Shared data: paths that live in `<root>/shared/` and are symlinked into
//! every release (uploads, logs, config), so activate, rollback and prune
//! never touch them.
//!
//! Invariant: slipway creates a missing `shared/<path>` (an empty directory or
//! file) and never deletes or modifies anything under `shared/`; it never
//! creates anything through a symlink below `shared/` (the application can
//! write there), so a planted link cannot make it write outside the root.

use std::path::{Path, PathBuf};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::Manifest;

/// Check the shared paths against a release's manifest before staging
/// (the client checks the same before contacting any host:
/// [`crate::manifest::check_shared`]).
///
/// # Errors
/// As [`crate::manifest::check_shared`].
pub fn check(manifest: &Manifest, shared: &[String], shared_files: &[String]) -> Result<()> {
    crate::manifest::check_shared(manifest, shared, shared_files)
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
/// When a missing path would have to be created through a symlink below
/// `shared/` (see `prepare`), or on I/O failure.
pub fn link_into(layout: &Layout, tree: &Path, shared: &[String], shared_files: &[String]) -> Result<()> {
    for (p, is_dir) in shared
        .iter()
        .map(|p| (p, true))
        .chain(shared_files.iter().map(|p| (p, false)))
    {
        prepare(layout, p, is_dir)?;
        fs::symlink(&link_target(p), &tree.join(p))?;
    }
    Ok(())
}

/// Make `shared/<path>` exist: an empty directory (`is_dir`) or an empty
/// 0640 file, with its missing parent directories.
///
/// `shared/` is writable by the application, so nothing is created through
/// a symlink below it: each component is opened relative to its parent with
/// `O_NOFOLLOW`. A path that already exists through such a link (one the
/// owner planted, e.g. `shared/data -> /mnt/data` with `/mnt/data/uploads`
/// made by hand) is used as it is; one that would have to be created
/// through it is refused, naming the link. `shared` itself is the root
/// owner's and is followed.
fn prepare(layout: &Layout, path: &str, is_dir: bool) -> Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, mkdirat, openat, statat};
    use rustix::io::Errno;
    let base = layout.shared_dir();
    fs::create_dir_all(&base)?;
    let full = base.join(path);
    let open_dir = |at: &dyn std::os::fd::AsFd, name: &str, shown: &Path| {
        openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", shown, e.into()))
    };
    let mut dir = openat(
        rustix::fs::CWD,
        &base,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", &base, e.into()))?;
    let parts: Vec<&str> = path.split('/').collect();
    for (i, name) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let here = base.join(parts[..=i].join("/"));
        match statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                if full.exists() {
                    return Ok(()); // the owner's link, and what it leads to exists
                }
                return Err(Error::SharedThroughLink {
                    path: path.to_string(),
                    base,
                    at: here,
                });
            }
            Ok(_) if last => return Ok(()),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                dir = open_dir(&dir, name, &here)?;
            }
            Ok(_) => {
                return Err(Error::SharedNotADirectory {
                    path: path.to_string(),
                    at: here,
                });
            }
            Err(Errno::NOENT) if last && !is_dir => {
                openat(
                    &dir,
                    *name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o640),
                )
                .map_err(|e| Error::io("create", &here, e.into()))?;
                // Durable before the release that links to it appears.
                rustix::fs::fsync(&dir).map_err(|e| Error::io("fsync", here.parent().unwrap_or(&base), e.into()))?;
            }
            Err(Errno::NOENT) => {
                match mkdirat(&dir, *name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => rustix::fs::fsync(&dir)
                        .map_err(|e| Error::io("fsync", here.parent().unwrap_or(&base), e.into()))?,
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(Error::io("create directory", &here, e.into())),
                }
                if !last {
                    dir = open_dir(&dir, name, &here)?;
                }
            }
            Err(e) => return Err(Error::io("access", &here, e.into())),
        }
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
