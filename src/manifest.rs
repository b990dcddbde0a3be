//! The manifest: the sorted list of a bundle's entries, its canonical bytes
//! (whose sha256 is the bundle id), and the validation every receiver runs.
//!
//! Invariant: a [`Manifest`] that passed [`Manifest::validate`] has relative,
//! normalised, UTF-8, strictly sorted, unique paths; every entry's parent is a
//! directory entry; no path goes through a symlink; file modes are 0644/0755,
//! directories 0755; every symlink resolves inside the tree (or is marked
//! `external` by a builder that allowed it).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The manifest format version written into every manifest.
pub const MANIFEST_VERSION: u32 = 1;
/// The directory inside an archive (and reserved at the top of a tree) for slipway's metadata.
pub const META_DIR: &str = ".slipway";
/// Largest manifest accepted anywhere (bytes of canonical JSON).
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// Longest path accepted in a bundle.
pub const MAX_PATH_BYTES: usize = 4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One path of the tree. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    #[serde(with = "octal_mode")]
    pub mode: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A symlink that points outside the tree, allowed by the builder's config.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

mod octal_mode {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(m: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{m:04o}"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        u32::from_str_radix(&s, 8).map_err(|_| serde::de::Error::custom(format!("bad mode `{s}`")))
    }
}

impl Entry {
    pub fn dir(path: String) -> Entry {
        Entry {
            path,
            kind: Kind::Dir,
            mode: 0o755,
            size: 0,
            sha256: None,
            target: None,
            external: false,
        }
    }
    pub fn file(path: String, executable: bool, size: u64, sha256: Digest) -> Entry {
        Entry {
            path,
            kind: Kind::File,
            mode: if executable { 0o755 } else { 0o644 },
            size,
            sha256: Some(sha256),
            target: None,
            external: false,
        }
    }
    pub fn symlink(path: String, target: String) -> Entry {
        Entry {
            path,
            kind: Kind::Symlink,
            mode: 0o777,
            size: 0,
            sha256: None,
            target: Some(target),
            external: false,
        }
    }
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
    /// The content object key: digest plus whether it is executable.
    pub fn object(&self) -> Option<ObjectKey> {
        match (self.kind, self.sha256) {
            (Kind::File, Some(d)) => Some(ObjectKey {
                digest: d,
                executable: self.executable(),
            }),
            _ => None,
        }
    }
}

/// A content object: same bytes with different modes are different objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub digest: Digest,
    pub executable: bool,
}

impl ObjectKey {
    /// Relative path under `objects/`: `ab/cdef…` (`.x` suffix for executables).
    pub fn rel_path(&self) -> String {
        let hex = self.digest.hex();
        let suffix = if self.executable { ".x" } else { "" };
        format!("{}/{}{}", &hex[..2], &hex[2..], suffix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub source_date_epoch: i64,
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// The canonical bytes: compact JSON, fields in declaration order, entries sorted.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The bundle id: sha256 of the canonical bytes.
    pub fn id(&self) -> Digest {
        Digest::of(&self.canonical_bytes())
    }

    /// Parse manifest bytes and check that they are canonical and valid.
    ///
    /// # Errors
    /// Integrity error when the bytes are not a valid, canonical manifest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::integrity(format!(
                "manifest is {} bytes, more than the limit of {MAX_MANIFEST_BYTES}",
                bytes.len()
            )));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| Error::integrity(format!("manifest is not valid: {e}")))?;
        if m.version != MANIFEST_VERSION {
            return Err(Error::integrity(format!(
                "manifest version {} is not supported (this slipway reads version {MANIFEST_VERSION}); upgrade slipway",
                m.version
            )));
        }
        m.validate()?;
        if m.canonical_bytes() != bytes {
            return Err(Error::integrity("manifest is not in canonical form"));
        }
        Ok(m)
    }

    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    pub fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| e.kind == Kind::File).count()
    }

    /// Distinct content objects, in first-use order.
    pub fn objects(&self) -> Vec<(ObjectKey, u64)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for e in &self.entries {
            if let Some(k) = e.object()
                && seen.insert(k)
            {
                out.push((k, e.size));
            }
        }
        out
    }

    /// Check every rule of the module doc.
    ///
    /// # Errors
    /// Integrity error naming the first offending path.
    pub fn validate(&self) -> Result<()> {
        let mut kinds: HashMap<&str, &Entry> = HashMap::with_capacity(self.entries.len());
        let mut prev: Option<&str> = None;
        for e in &self.entries {
            validate_path(&e.path)?;
            if let Some(p) = prev
                && p.as_bytes() >= e.path.as_bytes()
            {
                return Err(if p == e.path {
                    bad(&e.path, "duplicate entry")
                } else {
                    bad(&e.path, "entries are not sorted")
                });
            }
            prev = Some(&e.path);
            if let Some((parent, _)) = e.path.rsplit_once('/') {
                match kinds.get(parent) {
                    Some(p) if p.kind == Kind::Dir => {}
                    Some(_) => return Err(bad(&e.path, "path goes through a file or symlink")),
                    None => return Err(bad(&e.path, "parent directory is not in the manifest")),
                }
            }
            match e.kind {
                Kind::Dir => {
                    if e.mode != 0o755 || e.size != 0 || e.sha256.is_some() || e.target.is_some() || e.external {
                        return Err(bad(&e.path, "directory entry has file fields"));
                    }
                }
                Kind::File => {
                    if (e.mode != 0o644 && e.mode != 0o755) || e.sha256.is_none() || e.target.is_some() || e.external {
                        return Err(bad(&e.path, "file entry must have mode 0644 or 0755 and a sha256"));
                    }
                }
                Kind::Symlink => {
                    let Some(t) = &e.target else {
                        return Err(bad(&e.path, "symlink without a target"));
                    };
                    if e.mode != 0o777 || e.size != 0 || e.sha256.is_some() || t.is_empty() || t.contains('\0') {
                        return Err(bad(&e.path, "symlink entry is malformed"));
                    }
                }
            }
            kinds.insert(&e.path, e);
        }
        for e in &self.entries {
            if e.kind == Kind::Symlink && !e.external {
                let target = e.target.as_deref().unwrap_or_default();
                if !link_stays_inside(&kinds, &e.path, target) {
                    return Err(bad(
                        &e.path,
                        &format!("symlink target `{target}` leaves the release tree"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn bad(path: &str, why: &str) -> Error {
    Error::integrity(format!("bad entry `{}`: {why}", path.escape_debug()))
}

/// Check a relative bundle path: no empty, `.` or `..` components, not absolute,
/// no NUL or control characters, not inside the reserved `.slipway/`.
///
/// # Errors
/// Integrity error naming the path.
pub fn validate_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(bad(path, "empty path"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(bad(path, "path is too long"));
    }
    if path.starts_with('/') {
        return Err(bad(path, "absolute path"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(bad(path, "path contains a control character"));
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err(bad(path, "empty path component")),
            "." | ".." => return Err(bad(path, "`.` or `..` component")),
            _ => {}
        }
    }
    if path == META_DIR || path.starts_with(".slipway/") {
        return Err(bad(path, "`.slipway` is reserved for slipway's metadata"));
    }
    Ok(())
}

/// Resolve `target` of the symlink at `link` the way the kernel would, through
/// the symlinks of the manifest, and say whether it stays inside the tree.
fn link_stays_inside(kinds: &HashMap<&str, &Entry>, link: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut stack: Vec<String> = link.split('/').map(str::to_string).collect();
    stack.pop();
    let mut budget = 40usize;
    resolve(kinds, &mut stack, target, false, &mut budget)
}

/// Walk `target` from the directory `stack`; symlinks met on the way are
/// expanded (the last component too when `expand_last`, because the caller
/// goes on through it).
fn resolve(
    kinds: &HashMap<&str, &Entry>,
    stack: &mut Vec<String>,
    target: &str,
    expand_last: bool,
    budget: &mut usize,
) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    for (i, comp) in comps.iter().enumerate() {
        if *comp == ".." {
            if stack.pop().is_none() {
                return false;
            }
            continue;
        }
        stack.push((*comp).to_string());
        if i + 1 == comps.len() && !expand_last {
            break;
        }
        let here = stack.join("/");
        if let Some(e) = kinds.get(here.as_str())
            && e.kind == Kind::Symlink
        {
            if e.external || *budget == 0 {
                return false;
            }
            *budget -= 1;
            stack.pop();
            let inner = e.target.clone().unwrap_or_default();
            if !resolve(kinds, stack, &inner, true, budget) {
                return false;
            }
        }
    }
    true
}

/// Validate a release name: 1–128 of `A-Z a-z 0-9 . _ + -`, starting with a letter or digit.
///
/// # Errors
/// Usage error naming the bad name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "`{}` is not a valid release name: use 1-128 characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit",
            name.escape_debug()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(entries: Vec<Entry>) -> Manifest {
        Manifest {
            version: 1,
            source_date_epoch: 0,
            entries,
        }
    }
    fn f(p: &str) -> Entry {
        Entry::file(p.into(), false, 1, Digest::of(b"x"))
    }
    fn d(p: &str) -> Entry {
        Entry::dir(p.into())
    }
    fn l(p: &str, t: &str) -> Entry {
        Entry::symlink(p.into(), t.into())
    }

    #[test]
    fn canonical_round_trip() {
        let man = m(vec![d("a"), f("a/b"), l("c", "a/b")]);
        man.validate().unwrap();
        let bytes = man.canonical_bytes();
        assert_eq!(Manifest::parse(&bytes).unwrap(), man);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(
                r#"{"version":1,"source_date_epoch":0,"entries":[{"path":"a","kind":"dir","mode":"0755"}"#
            )
        );
    }

    #[test]
    fn rejects_bad_paths() {
        for p in ["/etc/passwd", "../x", "a/../b", "a//b", "a/", ".slipway/x", "a\nb", "."] {
            assert!(validate_path(p).is_err(), "{p}");
        }
        assert!(
            m(vec![f("a"), f("a")])
                .validate()
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
        assert!(m(vec![f("b"), f("a")]).validate().is_err());
        assert!(m(vec![f("a/b")]).validate().is_err());
        assert!(m(vec![l("a", "x"), f("a/b")]).validate().is_err());
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(m(vec![l("a", "../x")]).validate().is_err());
        assert!(m(vec![l("a", "/etc")]).validate().is_err());
        assert!(m(vec![d("d"), l("d/a", "../x")]).validate().is_ok());
        assert!(m(vec![d("d"), l("d/a", "../../x")]).validate().is_err());
        // `s -> .` then `b -> s/../x` escapes although it looks lexically fine.
        assert!(m(vec![l("b", "s/../x"), l("s", ".")]).validate().is_err());
        // each link stays inside on its own, but the chain climbs out
        assert!(
            m(vec![l("b", "s1/../x"), d("d"), l("d/s2", ".."), l("s1", "d/s2")])
                .validate()
                .is_err()
        );
        assert!(m(vec![d("d"), l("d/s2", ".."), l("s1", "d/s2")]).validate().is_ok());
        // a loop cannot be proven to stay inside: refused
        assert!(m(vec![l("a", "b/x"), l("b", "a/x")]).validate().is_err());
        let mut ext = l("a", "/etc/app.conf");
        ext.external = true;
        assert!(m(vec![ext]).validate().is_ok());
    }

    #[test]
    fn names() {
        for ok in ["v1.4.2", "1", "a_b+c-d"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-x", ".x", "a/b", "..", "a b", "x\n", &"a".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
