//! Symlinks that leave a release: accepted only where the host's owner
//! allows them.
//!
//! A bundle marks a symlink `external` when its builder allowed it to point
//! outside the release (`[build] allow_links`). The receiving host cannot
//! know what the builder allowed, so it accepts such a link only when its
//! own `<root>/.slipway/allowed_links` lists it exactly (`PATH -> TARGET`,
//! one per line, `#` comments), and never one that leads into the root's
//! `.slipway/` (slipway's own state), listed or not.
//!
//! Invariant: a release with an external link the host does not allow is
//! refused (exit 5) before any of its content is received.

use std::path::{Component, Path, PathBuf};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::manifest::{Kind, Manifest};

/// The file that lists the external links a host accepts.
pub fn allowed_links_path(layout: &Layout) -> PathBuf {
    layout.meta_dir().join("allowed_links")
}

/// Check the external links of release `name` against this host's list.
///
/// # Errors
/// Integrity error (exit 5) naming the first link that is not allowed, or
/// that leads into `.slipway/`; an error when the list cannot be read.
pub fn check(layout: &Layout, name: &str, manifest: &Manifest) -> Result<()> {
    let links: Vec<_> = manifest
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Symlink && e.external)
        .collect();
    if links.is_empty() {
        return Ok(());
    }
    let list_path = allowed_links_path(layout);
    let allowed: Vec<String> = match crate::fs::read_optional(&list_path)? {
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(normalise_line)
            .collect(),
        None => Vec::new(),
    };
    for e in links {
        let target = e.target.as_deref().unwrap_or_default();
        let line = format!("{} -> {target}", e.path);
        if leads_into_meta(layout, name, &e.path, target) {
            return Err(Error::integrity(format!(
                "release `{name}` refused: its symlink `{}` leads into `{}`, slipway's own state, which no release may link to",
                line.escape_debug(),
                layout.meta_dir().display()
            )));
        }
        if !allowed.contains(&line) {
            return Err(Error::integrity(format!(
                "release `{name}` refused: its symlink `{}` points outside the release, and `{}` does not list it; \
                 if this host should accept it, add the line `{}` there",
                line.escape_debug(),
                list_path.display(),
                line.escape_debug()
            )));
        }
    }
    Ok(())
}

/// `PATH   ->   TARGET` → `PATH -> TARGET`.
fn normalise_line(line: &str) -> String {
    match line.split_once("->") {
        Some((p, t)) => format!("{} -> {}", p.trim(), t.trim()),
        None => line.to_string(),
    }
}

/// Where the link `path -> target` in `releases/<name>/` leads, lexically
/// and (when it exists) through the file system, is inside `.slipway/`.
fn leads_into_meta(layout: &Layout, name: &str, path: &str, target: &str) -> bool {
    let dir = layout.release_dir(name);
    let link_parent = match Path::new(path).parent() {
        Some(p) => dir.join(p),
        None => dir,
    };
    let joined = if Path::new(target).is_absolute() {
        PathBuf::from(target)
    } else {
        link_parent.join(target)
    };
    let lexical = lexical_normal(&joined);
    let meta = layout.meta_dir();
    if lexical.starts_with(&meta) {
        return true;
    }
    // Through other links on this host (e.g. `../../shared/x` where
    // `shared/x` leads back into the root).
    std::fs::canonicalize(&lexical).is_ok_and(|real| real.starts_with(&meta))
}

/// `a/b/../c/./d` → `a/c/d`, without touching the file system.
fn lexical_normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_into_the_metadata_are_found_lexically() {
        let layout = Layout {
            root: PathBuf::from("/srv/app"),
        };
        assert!(leads_into_meta(
            &layout,
            "v1",
            "signers",
            "../../.slipway/allowed_signers"
        ));
        assert!(leads_into_meta(&layout, "v1", "a/b/s", "../../../../.slipway/x"));
        assert!(!leads_into_meta(&layout, "v1", "a/b/s", "../../../../../.slipway/x"));
        assert!(leads_into_meta(&layout, "v1", "s", "/srv/app/.slipway"));
        assert!(!leads_into_meta(&layout, "v1", "certs", "/etc/ssl/certs"));
        assert!(!leads_into_meta(&layout, "v1", "up", "../../shared/uploads"));
        assert_eq!(normalise_line("a   ->/etc/x "), "a -> /etc/x");
    }
}
