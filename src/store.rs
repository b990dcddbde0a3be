//! The local content-addressed store of bundles.
//!
//! ```text
//! <store>/bundles/<hex>.tar.zst        the bundle (its presence is the commit point)
//! <store>/bundles/<hex>.manifest.json  its canonical manifest, for fast inspection
//! <store>/names/<name>.json            a release: name -> id, provenance, signatures
//! <store>/tmp/                         work in progress; removed by `gc`
//! <store>/lock                         flock: builds, imports and signing shared, gc exclusive
//! <store>/records.lock                 flock: read-modify-write of a release record (sign, import)
//! ```
//!
//! Invariants: every write is atomic (temp + fsync + rename); a name, once
//! bound to an id, is never rebound; a stored bundle file is never rewritten
//! (bundles built by the same slipway version are byte-identical for an id);
//! a record's signatures only change under `records.lock`, so two signers
//! never lose each other's signature.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::pack::Packed;
use crate::digest::{Digest, looks_like_id};
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Manifest, validate_name};
use crate::provenance::Provenance;

/// `names/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub name: String,
    pub id: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<serde_json::Value>,
    /// `slipway forget`: the release is gone from the store, but its name
    /// stays bound to its id (a tombstone), so it is never rebound to
    /// another bundle; building or fetching the same id brings it back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forgotten: bool,
}

pub struct Store {
    root: PathBuf,
}

/// Outcome of binding a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    New,
    Existing,
}

/// A held store lock (released on drop, or by the kernel if we die).
pub struct StoreLock(#[allow(dead_code)] File);

/// Of `names`, the one closest to `rel` when it is close enough to be a
/// typo of it (`v1.4.2` for `v1.42`): for "did you mean".
pub fn closest<'a>(rel: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    names
        .map(|name| (strsim::damerau_levenshtein(rel, name), name))
        .filter(|(d, name)| *d <= 2.max(name.len() / 4))
        .min()
        .map(|(_, name)| name.to_string())
}

impl Store {
    /// Open (creating when missing) the store at `root`.
    ///
    /// # Errors
    /// When the directories cannot be created.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in ["bundles", "names", "tmp"] {
            fs::create_dir_all(&root.join(sub))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn lock_file(&self) -> Result<File> {
        fs::lock_file(&self.root.join("lock"))
    }

    /// Shared lock: builds and imports (they may run together).
    ///
    /// # Errors
    /// On I/O failure.
    pub fn lock_shared(&self) -> Result<StoreLock> {
        let f = self.lock_file()?;
        f.lock_shared()
            .map_err(|e| Error::io("lock", &self.root.join("lock"), e))?;
        Ok(StoreLock(f))
    }

    /// Exclusive lock: `gc`.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn lock_exclusive(&self) -> Result<StoreLock> {
        let f = self.lock_file()?;
        f.lock().map_err(|e| Error::io("lock", &self.root.join("lock"), e))?;
        Ok(StoreLock(f))
    }

    /// Exclusive lock for updating a bound record (re-read it after taking it).
    ///
    /// # Errors
    /// On I/O failure.
    pub fn lock_records(&self) -> Result<fs::FileLock> {
        fs::lock_exclusive(&self.root.join("records.lock"))
    }

    pub fn bundle_path(&self, id: &Digest) -> PathBuf {
        self.root.join("bundles").join(format!("{}.tar.zst", id.hex()))
    }

    fn manifest_path(&self, id: &Digest) -> PathBuf {
        self.root.join("bundles").join(format!("{}.manifest.json", id.hex()))
    }

    fn name_path(&self, name: &str) -> PathBuf {
        self.root.join("names").join(format!("{name}.json"))
    }

    pub fn has_bundle(&self, id: &Digest) -> bool {
        self.bundle_path(id).is_file()
    }

    /// Move a packed bundle into the store (a no-op when the id is already there).
    ///
    /// # Errors
    /// On I/O failure.
    pub fn add_bundle(&self, packed: Packed) -> Result<Digest> {
        let id = packed.manifest.id();
        if self.has_bundle(&id) {
            return Ok(id);
        }
        let mpath = self.manifest_path(&id);
        fs::write_atomic(&mpath, &packed.manifest.canonical_bytes())?;
        fs::persist_new(packed.file, &self.bundle_path(&id))?;
        Ok(id)
    }

    /// The manifest of a stored bundle.
    ///
    /// # Errors
    /// Integrity error when the stored manifest does not hash to `id`.
    pub fn manifest(&self, id: &Digest) -> Result<Manifest> {
        let path = self.manifest_path(id);
        let bytes = match fs::read_optional(&path)? {
            Some(b) => b,
            None => return self.manifest_from_bundle(id),
        };
        if Digest::of(&bytes) != *id {
            return Err(Error::integrity(format!(
                "stored manifest `{}` does not hash to {id}; run `slipway verify {id}`",
                path.display()
            )));
        }
        Manifest::parse(&bytes)
    }

    fn manifest_from_bundle(&self, id: &Digest) -> Result<Manifest> {
        let path = self.bundle_path(id);
        let (m, got) = crate::bundle::unpack::read_bundle(
            fs::open(&path)?,
            &path.display().to_string(),
            &mut crate::bundle::unpack::VerifyOnly,
        )?;
        if got != *id {
            return Err(Error::integrity(format!(
                "bundle `{}` holds {got}, not {id}",
                path.display()
            )));
        }
        fs::write_atomic(&self.manifest_path(id), &m.canonical_bytes())?;
        Ok(m)
    }

    /// Bind `name` to `id`: new, or already bound to the same id.
    ///
    /// # Errors
    /// When the name is bound to a different id (never rebound).
    pub fn bind(&self, record: &ReleaseRecord) -> Result<Bound> {
        validate_name(&record.name)?;
        let path = self.name_path(&record.name);
        let bytes = serde_json::to_vec_pretty(record).map_err(Error::Encode)?;
        if fs::write_new(&path, &bytes)? {
            return Ok(Bound::New);
        }
        let existing = self.record(&record.name)?;
        if existing.id == record.id && existing.forgotten {
            // The same bundle again, after `forget`: the release is back.
            let _records = self.lock_records()?;
            fs::write_atomic(&path, &bytes)?;
            Ok(Bound::New)
        } else if existing.id == record.id {
            Ok(Bound::Existing)
        } else {
            Err(Error::StoreRebound {
                release: record.name.clone(),
                bound: existing.id.to_string(),
                offered: record.id.to_string(),
            })
        }
    }

    /// Replace the record of an already bound name (same id: provenance, signatures).
    ///
    /// # Errors
    /// When the id differs from the bound one.
    pub fn update_record(&self, record: &ReleaseRecord) -> Result<()> {
        let existing = self.record(&record.name)?;
        if existing.id != record.id {
            return Err(Error::other(format!(
                "release `{}` is bound to {}",
                record.name, existing.id
            )));
        }
        let bytes = serde_json::to_vec_pretty(record).map_err(Error::Encode)?;
        fs::write_atomic(&self.name_path(&record.name), &bytes)
    }

    /// The record of a bound name.
    ///
    /// # Errors
    /// When it is missing or unreadable.
    pub fn record(&self, name: &str) -> Result<ReleaseRecord> {
        let path = self.name_path(name);
        let bytes = fs::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Parse { path, source })
    }

    /// Forget release `name`: its record becomes a tombstone (the name
    /// stays bound to its id), and its bundle is removed unless another
    /// release uses it. Returns whether the bundle was removed.
    ///
    /// # Errors
    /// When the name is not a release here; on I/O failure.
    pub fn forget(&self, name: &str, dry_run: bool) -> Result<bool> {
        let _lock = self.lock_exclusive()?;
        let mut record = {
            let _records = self.lock_records()?;
            let mut r = self.record(name)?;
            if !dry_run {
                r.forgotten = true;
                let bytes = serde_json::to_vec_pretty(&r).map_err(Error::Encode)?;
                fs::write_atomic(&self.name_path(name), &bytes)?;
            }
            r
        };
        record.forgotten = true;
        let used = self
            .records()?
            .iter()
            .any(|r| r.id == record.id && r.name != record.name);
        if used || !self.has_bundle(&record.id) {
            return Ok(false);
        }
        if !dry_run {
            fs::remove_file(&self.bundle_path(&record.id))?;
            fs::remove_file_optional(&self.manifest_path(&record.id))?;
        }
        Ok(true)
    }

    /// All bound releases, sorted by name.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn records(&self) -> Result<Vec<ReleaseRecord>> {
        let mut out = Vec::new();
        for (name, _) in fs::read_dir_sorted(&self.root.join("names"))? {
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".json")
                && validate_name(n).is_ok()
            {
                let r = self.record(n)?;
                if !r.forgotten {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Every bundle id in the store.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn bundle_ids(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for (name, _) in fs::read_dir_sorted(&self.root.join("bundles"))? {
            if let Some(hex) = name.to_string_lossy().strip_suffix(".tar.zst")
                && let Some(d) = Digest::from_hex(hex)
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Resolve REL: a bound name, else a unique id prefix (`sha256:…` or bare hex).
    /// Returns the record when REL is a name (or the id has exactly one name).
    ///
    /// # Errors
    /// When nothing matches, or a prefix is ambiguous (listing the candidates).
    pub fn resolve(&self, rel: &str) -> Result<(Digest, Option<ReleaseRecord>)> {
        if validate_name(rel).is_ok() && self.name_path(rel).is_file() {
            let r = self.record(rel)?;
            if r.forgotten {
                return Err(Error::usage(format!(
                    "release `{rel}` was forgotten (`slipway forget`): its bundle is gone from this store; build the same tag, `import` or `fetch` it to bring {} back",
                    r.id
                )));
            }
            return Ok((r.id, Some(r)));
        }
        let is_hex = !rel.is_empty() && rel.bytes().all(|c| c.is_ascii_hexdigit());
        if looks_like_id(rel) || is_hex {
            let matches: Vec<Digest> = self
                .bundle_ids()?
                .into_iter()
                .filter(|d| d.matches_prefix(rel))
                .collect();
            match matches.as_slice() {
                [one] => {
                    let named: Vec<ReleaseRecord> = self.records()?.into_iter().filter(|r| r.id == *one).collect();
                    let record = if named.len() == 1 {
                        named.into_iter().next()
                    } else {
                        None
                    };
                    return Ok((*one, record));
                }
                [] => {}
                many => {
                    let list: Vec<String> = many.iter().map(|d| d.to_string()).collect();
                    return Err(Error::usage(format!(
                        "`{rel}` is ambiguous: it matches {}; give more digits of the id",
                        list.join(", ")
                    )));
                }
            }
        }
        // A typo of a stored name gets a suggestion (`v1.4.2` for `v1.42`).
        let records = self.records().unwrap_or_default();
        let closest = closest(rel, records.iter().map(|r| r.name.as_str()));
        Err(Error::NotInStore {
            rel: rel.to_string(),
            store: self.root.clone(),
            closest,
        })
    }

    /// Remove bundles no name refers to and leftovers in `tmp/`.
    /// Returns the removed ids.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn gc(&self, dry_run: bool) -> Result<(Vec<Digest>, usize)> {
        let _lock = self.lock_exclusive()?;
        let named: std::collections::HashSet<Digest> = self.records()?.into_iter().map(|r| r.id).collect();
        let mut removed = Vec::new();
        for id in self.bundle_ids()? {
            if !named.contains(&id) {
                if !dry_run {
                    fs::remove_file(&self.bundle_path(&id))?;
                    fs::remove_file_optional(&self.manifest_path(&id))?;
                }
                removed.push(id);
            }
        }
        let mut tmp = 0;
        for (_, path) in fs::read_dir_sorted(&self.tmp_dir())? {
            if !dry_run {
                fs::remove_tree(&path)?;
            }
            tmp += 1;
        }
        // Manifests whose bundle never arrived (a crash between the two writes).
        for (name, path) in fs::read_dir_sorted(&self.root.join("bundles"))? {
            if let Some(hex) = name.to_string_lossy().strip_suffix(".manifest.json")
                && let Some(d) = Digest::from_hex(hex)
                && !self.has_bundle(&d)
                && !dry_run
            {
                fs::remove_file(&path)?;
            }
        }
        if !dry_run {
            fs::fsync_dir(&self.root.join("bundles"))?;
        }
        Ok((removed, tmp))
    }
}
