//! The host layout (`docs/host-layout.md`) and the per-release metadata file.
//!
//! ```text
//! <root>/current -> releases/<name>       relative symlink; only activation changes it
//! <root>/releases/<name>/                 read-only trees of hardlinked objects
//! <root>/shared/<path>                    persistent data, never touched
//! <root>/.slipway/objects/ab/cdef…[.x]    content by sha256 (.x: executable)
//! <root>/.slipway/releases/<name>.json    [`HostRelease`]
//! <root>/.slipway/history.jsonl           append-only activation log
//! <root>/.slipway/allowed_signers         written by the host's owner (never by slipway): when it
//!                                         exists, only releases signed by a key it lists are accepted
//! <root>/.slipway/lock, lock.info         exclusive flock for activate/rollback/prune, and its holder
//! <root>/.slipway/stage.lock              shared flock held by pushes, exclusive for prune
//! <root>/.slipway/tmp/                    staging area:
//!     <name>.lock                         flock held by the push of <name> (two pushes take turns)
//!     <name>.incoming/                    copies on their way into objects/ (link_mode = "copy")
//!     <name>.partial/                     the release tree being built; received objects are written here
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Manifest, ObjectKey};
use crate::protocol::Signer;
use crate::provenance::Provenance;

/// The space a host keeps for the way back (`.slipway/reserve`): an
/// activation's intent, its symlink and its history line need a few blocks.
pub const RESERVE_BYTES: u64 = 1 << 20;

/// Paths of one host root. `root` is canonical (no symlinks, absolute).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

/// Names a root may hold before slipway first uses it: its own layout
/// (e.g. `shared/` prepared by hand) and a file system's `lost+found`.
const LAYOUT_NAMES: [&str; 6] = [".slipway", "current", "releases", "shared", "slots", "lost+found"];

/// Refuse to turn an existing directory holding anything else into a
/// root (a mistyped `-t /etc` or the root of another deploy tool): slipway
/// would add its directories among files it does not own.
fn refuse_foreign(root: &Path) -> Result<()> {
    if fs::symlink_metadata_optional(&root.join(".slipway"))?.is_some() {
        return Ok(());
    }
    let Some(meta) = fs::symlink_metadata_optional(root)? else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(()); // create_dir_all names the problem
    }
    let foreign: Vec<String> = fs::read_dir_sorted(root)?
        .into_iter()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .filter(|n| !LAYOUT_NAMES.contains(&n.as_str()))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let shown = foreign
        .iter()
        .take(3)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let more = if foreign.len() > 3 { ", …" } else { "" };
    Err(Error::NotASlipwayRoot {
        root: root.to_path_buf(),
        holds: format!("{shown}{more}"),
    })
}

impl Layout {
    /// The layout of `root` if it is a slipway root already (it has
    /// `.slipway/`: missing directories of the layout are made), else
    /// `None`, creating nothing: only a push makes a new root
    /// ([`Layout::create`]). An existing directory holding anything else is
    /// refused as `create` would.
    ///
    /// # Errors
    /// A relative root, a foreign directory, or I/O failure.
    pub fn existing(root: &Path) -> Result<Option<Layout>> {
        if !root.is_absolute() {
            return Err(Error::usage(format!(
                "root `{}` must be an absolute path",
                root.display()
            )));
        }
        refuse_foreign(root)?;
        if fs::symlink_metadata_optional(&root.join(".slipway"))?.is_some_and(|m| m.is_dir()) {
            return Layout::create(root).map(Some);
        }
        Ok(None)
    }

    /// Create the root and layout when missing, and canonicalise the root.
    ///
    /// # Errors
    /// When the root cannot be created or is not a directory.
    pub fn create(root: &Path) -> Result<Layout> {
        if !root.is_absolute() {
            return Err(Error::usage(format!(
                "root `{}` must be an absolute path",
                root.display()
            )));
        }
        refuse_foreign(root)?;
        fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root).map_err(|e| Error::io("resolve", root, e))?;
        let l = Layout { root };
        for d in [
            l.releases_dir(),
            l.shared_dir(),
            l.meta_dir(),
            l.objects_dir(),
            l.release_meta_dir(),
            l.tmp_dir(),
        ] {
            fs::create_dir_all(&d)?;
        }
        // Lock files are part of the layout: created once, never replaced or deleted.
        drop(fs::lock_file(&l.stage_lock_path())?);
        l.ensure_reserve();
        Ok(l)
    }

    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }
    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }
    pub fn release_dir(&self, name: &str) -> PathBuf {
        self.releases_dir().join(name)
    }
    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("shared")
    }
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join(".slipway")
    }
    pub fn objects_dir(&self) -> PathBuf {
        self.meta_dir().join("objects")
    }
    pub fn object_path(&self, key: &ObjectKey) -> PathBuf {
        self.objects_dir().join(key.rel_path())
    }
    pub fn release_meta_dir(&self) -> PathBuf {
        self.meta_dir().join("releases")
    }
    pub fn release_meta_path(&self, name: &str) -> PathBuf {
        self.release_meta_dir().join(format!("{name}.json"))
    }
    /// `.slipway/allowed_signers`: OpenSSH allowed_signers, maintained by the
    /// host's owner; see [`super::signatures`].
    pub fn allowed_signers_path(&self) -> PathBuf {
        self.meta_dir().join("allowed_signers")
    }
    pub fn history_path(&self) -> PathBuf {
        self.meta_dir().join("history.jsonl")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.meta_dir().join("lock")
    }
    pub fn lock_info_path(&self) -> PathBuf {
        self.meta_dir().join("lock.info")
    }
    /// Space kept for the way back on a full disk ([`Layout::ensure_reserve`]).
    pub fn reserve_path(&self) -> PathBuf {
        self.meta_dir().join("reserve")
    }

    /// Keep [`RESERVE_BYTES`] of the file system for a switch on a full
    /// disk, when there is room for it (best effort: a push then checks
    /// the space it needs itself).
    pub fn ensure_reserve(&self) {
        let path = self.reserve_path();
        if fs::metadata(&path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
            return;
        }
        let _ = fs::write_atomic(&path, &vec![0u8; RESERVE_BYTES as usize]);
    }

    /// Give the reserve up (a switch found the disk full); true when there
    /// was one to give.
    pub fn release_reserve(&self) -> bool {
        std::fs::remove_file(self.reserve_path()).is_ok()
    }
    pub fn stage_lock_path(&self) -> PathBuf {
        self.meta_dir().join("stage.lock")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.meta_dir().join("tmp")
    }
    /// `tmp/<name>.lock`: held by the push of `name` for its whole duration.
    pub fn name_lock_path(&self, name: &str) -> PathBuf {
        self.tmp_dir().join(format!("{name}.lock"))
    }
    /// `tmp/<name>.incoming/`: copies of the objects of the push of `name`
    /// on their way into `objects/` (`link_mode = "copy"`).
    pub fn incoming_dir(&self, name: &str) -> PathBuf {
        self.tmp_dir().join(format!("{name}.incoming"))
    }
    /// `tmp/<name>.partial/`: the tree of `name` until it is renamed into `releases/`.
    pub fn partial_dir(&self, name: &str) -> PathBuf {
        self.tmp_dir().join(format!("{name}.partial"))
    }

    /// The release `current` points at, if any (`releases/<name>` → `<name>`).
    ///
    /// # Errors
    /// When `current` exists but is not a link into `releases/`.
    pub fn current_name(&self) -> Result<Option<String>> {
        let path = self.current();
        match fs::symlink_metadata_optional(&path)? {
            None => Ok(None),
            Some(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&path)?;
                let t = target.to_string_lossy();
                match t.strip_prefix("releases/") {
                    Some(name) if crate::manifest::validate_name(name).is_ok() => Ok(Some(name.to_string())),
                    _ => Err(Error::CurrentOutsideReleases {
                        path,
                        target: t.to_string(),
                    }),
                }
            }
            Some(_) => Err(Error::CurrentNotASymlink { path }),
        }
    }

    /// The metadata of a release on this host, if it was pushed.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn release_meta(&self, name: &str) -> Result<Option<HostRelease>> {
        let path = self.release_meta_path(name);
        match fs::read_optional(&path)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::Parse { path, source }),
        }
    }

    /// Atomically (re)write a release's metadata.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write_release_meta(&self, meta: &HostRelease) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(meta).map_err(Error::Encode)?;
        fs::write_atomic(&self.release_meta_path(&meta.name), &bytes)
    }

    /// Names of every release with metadata, sorted.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn release_names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (name, _) in fs::read_dir_sorted(&self.release_meta_dir())? {
            if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && crate::manifest::validate_name(n).is_ok()
            {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }
}

/// `.slipway/releases/<name>.json`: what a release on this host is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRelease {
    pub name: String,
    pub id: Digest,
    pub manifest: Manifest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<serde_json::Value>,
    /// RFC 3339 UTC time the release tree became complete (`None` while staging).
    #[serde(default)]
    pub pushed_at: Option<String>,
    /// `user@host` of the operator who pushed it.
    #[serde(default)]
    pub pushed_by: Option<String>,
    /// The signer `allowed_signers` accepted when the release was staged (or
    /// its signatures last changed); `None` when the host enforced nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Signer>,
    /// Shared directories linked into the tree (relative paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
    /// Shared files linked into the tree (relative paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_files: Vec<String>,
    /// Set when a health check failed on it or a rollback left it.
    #[serde(default)]
    pub bad: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_reason: Option<String>,
}

impl HostRelease {
    /// The id the metadata claims, checked against its manifest.
    ///
    /// # Errors
    /// Integrity error when they disagree.
    pub fn checked_id(&self) -> Result<Digest> {
        let id = self.manifest.id();
        if id != self.id {
            return Err(Error::integrity(format!(
                "metadata of release `{}` claims {} but its manifest hashes to {id}",
                self.name, self.id
            )));
        }
        Ok(id)
    }
}
