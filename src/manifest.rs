//! The manifest: the sorted list of a bundle's entries, its canonical bytes
//! (whose sha256 is the bundle id), and the validation every receiver runs.
//!
//! Invariant: a [`Manifest`] that passed [`Manifest::validate`] has relative,
//! normalised, UTF-8, strictly sorted, unique paths; every entry's parent is a
//! directory entry; no path goes through a symlink; file modes are 0644/0755,
//! directories 0755; every symlink resolves inside the tree (or is marked
//! `external` by a builder that allowed it).
//!
//! Receivers get manifests from strangers, so reading and checking one costs
//! time and memory linear in its size, with hard limits: [`MAX_MANIFEST_BYTES`]
//! of JSON, [`MAX_ENTRIES`] entries, paths and symlink targets of at most
//! [`MAX_PATH_BYTES`].

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

use serde::{Deserialize, Deserializer, Serialize};

use crate::digest::{Digest, Hasher, HashingReader};
use crate::error::{Error, Result};

/// The manifest format version written into every manifest.
pub const MANIFEST_VERSION: u32 = 1;
/// The directory inside an archive (and reserved at the top of a tree) for slipway's metadata.
pub const META_DIR: &str = ".slipway";
/// Largest manifest accepted anywhere (bytes of canonical JSON).
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// Longest path (and symlink target) accepted in a bundle.
pub const MAX_PATH_BYTES: usize = 4000;
/// Most entries accepted in one manifest. A parsed entry costs about 150
/// bytes of memory, so this bounds what a hostile manifest can make a
/// receiver allocate; a release tree of more than a million paths should be
/// split.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Most symlinks followed while resolving one link (the kernel's limit).
const MAX_LINKS: u32 = 40;
/// Start of the deserialiser's error when [`MAX_ENTRIES`] is passed.
const TOO_MANY: &str = "too many manifest entries";

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
    #[serde(deserialize_with = "bounded_entries")]
    pub entries: Vec<Entry>,
}

/// The entry list, refused as soon as it passes [`MAX_ENTRIES`] (before it
/// is all in memory).
fn bounded_entries<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Entry>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<Entry>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_ENTRIES} entries")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<Entry>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(e) = seq.next_element()? {
                if out.len() == MAX_ENTRIES {
                    return Err(serde::de::Error::custom(TOO_MANY));
                }
                out.push(e);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded)
}

fn invalid(e: serde_json::Error) -> Error {
    let text = e.to_string();
    if text.starts_with(TOO_MANY) {
        too_many()
    } else {
        Error::integrity(format!("manifest is not valid: {text}"))
    }
}

fn too_many() -> Error {
    Error::integrity(format!(
        "manifest has more than {MAX_ENTRIES} entries, the limit; split the release into smaller trees"
    ))
}

/// A writer that only hashes and counts (canonical bytes, never held in memory).
struct HashWriter {
    hasher: Hasher,
    count: u64,
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.count += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
        let m = serde_json::from_slice(bytes).map_err(invalid)?;
        Manifest::checked(m, Digest::of(bytes), bytes.len() as u64)
    }

    /// Read a manifest from `input` as it streams (the bytes are hashed, never
    /// held), check that it is valid and canonical, and return it with its id.
    /// Memory is bounded by [`MAX_ENTRIES`] whatever the input.
    ///
    /// # Errors
    /// Integrity error when the input is not a valid, canonical manifest of at
    /// most [`MAX_MANIFEST_BYTES`] and [`MAX_ENTRIES`]; read errors of `input`
    /// are reported as an invalid manifest (callers that can tell damage from
    /// lies check their reader first).
    pub fn read(input: impl Read) -> Result<(Manifest, Digest)> {
        let mut hashing = HashingReader::new(input.take(MAX_MANIFEST_BYTES + 1));
        let parsed: std::result::Result<Manifest, _> =
            serde_json::from_reader(io::BufReader::with_capacity(64 * 1024, &mut hashing));
        if hashing.count() > MAX_MANIFEST_BYTES {
            return Err(Error::integrity(format!(
                "manifest is more than {MAX_MANIFEST_BYTES} bytes, the limit"
            )));
        }
        let m = parsed.map_err(invalid)?;
        let (_, digest, count) = hashing.into_parts();
        let m = Manifest::checked(m, digest, count)?;
        Ok((m, digest))
    }

    /// The checks after parsing: version, rules, and canonical form (the
    /// re-serialisation must hash to `digest` over `count` bytes).
    fn checked(m: Manifest, digest: Digest, count: u64) -> Result<Manifest> {
        if m.version != MANIFEST_VERSION {
            return Err(Error::integrity(format!(
                "manifest version {} is not supported (this slipway reads version {MANIFEST_VERSION}); upgrade slipway",
                m.version
            )));
        }
        m.validate()?;
        let mut canonical = HashWriter {
            hasher: Hasher::new(),
            count: 0,
        };
        serde_json::to_writer(&mut canonical, &m)
            .and_then(|()| canonical.write_all(b"\n").map_err(serde_json::Error::io))
            .map_err(|e| Error::integrity(format!("manifest cannot be serialised: {e}")))?;
        if canonical.count != count || canonical.hasher.finish() != digest {
            return Err(Error::integrity("manifest is not in canonical form"));
        }
        Ok(m)
    }

    /// Sum of the file sizes (saturating: a hostile manifest may declare
    /// sizes whose sum does not fit).
    pub fn total_size(&self) -> u64 {
        self.entries.iter().fold(0u64, |sum, e| sum.saturating_add(e.size))
    }

    /// Every symlink its builder allowed to leave the release
    /// (`external`), as `PATH -> TARGET`: the receivers name them, and a host
    /// accepts one only where its owner lists it.
    pub fn external_links(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::Symlink && e.external)
            .map(|e| format!("{} -> {}", e.path, e.target.as_deref().unwrap_or_default()))
            .collect()
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
        if self.entries.len() > MAX_ENTRIES {
            return Err(too_many());
        }
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(self.entries.len());
        let mut prev: Option<&str> = None;
        let mut links = false;
        for (i, e) in self.entries.iter().enumerate() {
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
                match index.get(parent).map(|&p| self.entries[p].kind) {
                    Some(Kind::Dir) => {}
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
                    if t.len() > MAX_PATH_BYTES {
                        return Err(bad(&e.path, "symlink target is too long"));
                    }
                    links |= !e.external;
                }
            }
            index.insert(&e.path, i);
        }
        if !links {
            return Ok(());
        }
        let mut tree = Tree::new(&self.entries, &index);
        for (i, e) in self.entries.iter().enumerate() {
            if e.kind == Kind::Symlink && !e.external {
                let target = e.target.as_deref().unwrap_or_default();
                let from = Loc {
                    node: tree.parent[i + 1],
                    virt: 0,
                };
                match tree.walk(from, target, false, MAX_LINKS) {
                    Walk::Inside(..) => {}
                    Walk::Outside => {
                        return Err(bad(
                            &e.path,
                            &format!(
                                "symlink target `{}` leaves the release tree, which only links listed in `[build] allow_links` may",
                                target.escape_debug()
                            ),
                        ));
                    }
                    Walk::Loops => {
                        return Err(bad(
                            &e.path,
                            &format!(
                                "symlink target `{}` loops or goes through more than {MAX_LINKS} links",
                                target.escape_debug()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where a walk through the tree stands: a node (0 is the release directory,
/// entry `i` is node `i + 1`) and how deep below it the walk has gone through
/// names that are not in the manifest (nothing can exist below those).
#[derive(Debug, Clone, Copy)]
struct Loc {
    node: usize,
    virt: usize,
}

enum Walk {
    /// Stays inside, ending at `Loc` after following this many links.
    Inside(Loc, u32),
    /// Climbs above the release directory, or through an absolute or external link.
    Outside,
    /// A cycle, or more than the links allowed.
    Loops,
}

/// What resolving a symlink (all the way) gave; computed once per link.
#[derive(Debug, Clone, Copy)]
enum Resolved {
    Unknown,
    /// Being resolved: meeting it again means a cycle.
    Pending,
    Inside(Loc, u32),
    Outside,
    Loops,
}

/// The manifest as a tree, for resolving symlinks the way the kernel does, in
/// time linear in the manifest's size: each step is one lookup of one name
/// under one node, and each link is resolved once (memoised).
struct Tree<'a> {
    entries: &'a [Entry],
    parent: Vec<usize>,
    children: HashMap<(usize, &'a str), usize>,
    resolved: Vec<Resolved>,
}

impl<'a> Tree<'a> {
    fn new(entries: &'a [Entry], index: &HashMap<&str, usize>) -> Tree<'a> {
        let mut parent = vec![0; entries.len() + 1];
        let mut children = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let (p, name) = match e.path.rsplit_once('/') {
                Some((dir, name)) => (index.get(dir).map_or(0, |&d| d + 1), name),
                None => (0, e.path.as_str()),
            };
            parent[i + 1] = p;
            children.insert((p, name), i + 1);
        }
        Tree {
            entries,
            parent,
            children,
            resolved: vec![Resolved::Unknown; entries.len() + 1],
        }
    }

    fn symlink(&self, node: usize) -> Option<&'a Entry> {
        let e = self.entries.get(node.checked_sub(1)?)?;
        (e.kind == Kind::Symlink).then_some(e)
    }

    /// Walk `target` from `from`, following at most `budget` links; the last
    /// component is followed too when `follow_last` (the caller goes on through it).
    fn walk(&mut self, from: Loc, target: &str, follow_last: bool, budget: u32) -> Walk {
        if target.starts_with('/') {
            return Walk::Outside;
        }
        let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        let mut at = from;
        let mut used = 0u32;
        for (i, comp) in comps.iter().enumerate() {
            if *comp == ".." {
                if at.virt > 0 {
                    at.virt -= 1;
                } else if at.node == 0 {
                    return Walk::Outside;
                } else {
                    at.node = self.parent[at.node];
                }
                continue;
            }
            if at.virt > 0 {
                at.virt += 1;
                continue;
            }
            let Some(&child) = self.children.get(&(at.node, *comp)) else {
                at.virt = 1;
                continue;
            };
            at.node = child;
            if self.symlink(child).is_some() && (i + 1 < comps.len() || follow_last) {
                match self.resolve(child, budget - used) {
                    Resolved::Inside(to, n) => {
                        at = to;
                        used += n;
                    }
                    Resolved::Outside => return Walk::Outside,
                    _ => return Walk::Loops,
                }
            }
        }
        Walk::Inside(at, used)
    }

    /// Where the symlink `node` finally points, and how many links that takes
    /// (itself included), within `budget` links.
    fn resolve(&mut self, node: usize, budget: u32) -> Resolved {
        match self.resolved[node] {
            Resolved::Inside(loc, n) if n <= budget => return Resolved::Inside(loc, n),
            Resolved::Inside(..) => return Resolved::Loops,
            Resolved::Pending => return Resolved::Loops,
            r @ (Resolved::Outside | Resolved::Loops) => return r,
            Resolved::Unknown => {}
        }
        if budget == 0 {
            return Resolved::Loops;
        }
        let Some(e) = self.symlink(node) else {
            return Resolved::Outside;
        };
        if e.external {
            self.resolved[node] = Resolved::Outside;
            return Resolved::Outside;
        }
        let target = e.target.as_deref().unwrap_or_default();
        self.resolved[node] = Resolved::Pending;
        let from = Loc {
            node: self.parent[node],
            virt: 0,
        };
        let r = match self.walk(from, target, true, budget - 1) {
            Walk::Inside(loc, n) => Resolved::Inside(loc, n + 1),
            Walk::Outside => Resolved::Outside,
            Walk::Loops => Resolved::Loops,
        };
        // Running out of a caller's reduced budget says nothing about the
        // link itself: forget it, so a later walk with more budget retries.
        self.resolved[node] = match r {
            Resolved::Loops if budget < MAX_LINKS => Resolved::Unknown,
            r => r,
        };
        r
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

/// A manifest of files `f000`, `f001`, … with these sizes (unit tests).
/// Check a target's shared paths against a release's manifest: each a
/// valid relative path, listed once, with no entry of the bundle there and
/// its parent directory in the bundle.
///
/// # Errors
/// When a path is malformed, the bundle has an entry there, or its parent
/// directory is not in the bundle.
pub fn check_shared(manifest: &Manifest, shared: &[String], shared_files: &[String]) -> Result<()> {
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
            return Err(Error::SharedInBundle {
                path: p.clone(),
                kind: match e.kind {
                    Kind::File => "file",
                    Kind::Dir => "directory",
                    Kind::Symlink => "symlink",
                },
            });
        }
        if let Some((parent, _)) = p.rsplit_once('/')
            && !manifest.entries.iter().any(|e| e.path == parent && e.kind == Kind::Dir)
        {
            return Err(Error::SharedWithoutParent {
                path: p.clone(),
                parent: parent.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn sized_for_tests(sizes: &[u64]) -> Manifest {
    Manifest {
        version: 1,
        source_date_epoch: 0,
        entries: sizes
            .iter()
            .enumerate()
            .map(|(i, s)| Entry::file(format!("f{i:03}"), false, *s, Digest::of(&i.to_le_bytes())))
            .collect(),
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
    fn symlink_checks_take_linear_time() {
        // Regression (hostile manifests): the check used to join the whole
        // path at every step and re-walk every link it met, so deep targets
        // and chains of links cost quadratic (or worse) time: a CPU bomb for
        // any receiver. A deep directory chain, links that bounce down and
        // up it, and a long chain of links through each other.
        let depth = 1000;
        let mut entries = Vec::new();
        let mut path = String::new();
        for _ in 0..depth {
            path.push_str(if path.is_empty() { "a" } else { "/a" });
            entries.push(d(&path));
        }
        let down = "a/".repeat(depth - 1) + "a";
        let bounce = format!("{down}/{}", "x/../".repeat(390));
        assert!(bounce.len() <= MAX_PATH_BYTES);
        for i in 0..2000 {
            entries.push(l(&format!("b{i:05}"), &bounce));
        }
        for i in 0..2000 {
            let next = if i + 1 < 2000 {
                format!("c{:05}", i + 1)
            } else {
                down.clone()
            };
            entries.push(l(&format!("c{i:05}"), &next));
        }
        for i in 0..2000 {
            entries.push(l(&format!("e{i:05}"), &format!("c{:05}/../a", 1990 - i % 30)));
        }
        entries.sort_by(|x, y| x.path.cmp(&y.path));
        // 356 s before (debug build), about 2 s now; the bound leaves room
        // for a loaded machine.
        let start = std::time::Instant::now();
        m(entries).validate().unwrap();
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );

        // Through a whole chain 2000 links deep: refused, not walked 2000 times.
        let mut chain: Vec<Entry> = (0..2000)
            .map(|i| l(&format!("c{i:05}"), &format!("c{:05}", i + 1)))
            .collect();
        chain.push(f("c02000"));
        chain.push(l("f", "c00000/../a"));
        let err = m(chain).validate().unwrap_err().to_string();
        assert!(
            err.contains("bad entry `f`") && err.contains("more than 40 links"),
            "{err}"
        );
    }

    #[test]
    fn symlink_chains_count_every_link_once() {
        // 40 links in a row resolve; 41 do not (the kernel's ELOOP).
        for (n, ok) in [(40, true), (41, false)] {
            let mut entries = vec![f("z")];
            for i in 0..n {
                let next = if i + 1 < n {
                    format!("c{:02}", i + 1)
                } else {
                    "z".into()
                };
                entries.push(l(&format!("c{i:02}"), &next));
            }
            entries.push(l("y", "c00/x/.."));
            entries.sort_by(|x, y| x.path.cmp(&y.path));
            assert_eq!(m(entries).validate().is_ok(), ok, "{n}");
        }
    }

    #[test]
    fn limits_on_targets_entries_and_sizes() {
        assert!(m(vec![l("a", &"b/".repeat(2001))]).validate().is_err());
        assert!(m(vec![f("a"), l("b", &"./".repeat(1000))]).validate().is_ok());
        let mut big = f("a");
        big.size = u64::MAX;
        let man = m(vec![
            big.clone(),
            Entry {
                path: "b".into(),
                ..big
            },
        ]);
        assert_eq!(man.total_size(), u64::MAX);
        let many = format!(
            r#"{{"version":1,"source_date_epoch":0,"entries":[{}]}}"#,
            vec![r#"{"path":"a","kind":"dir","mode":"0755"}"#; MAX_ENTRIES + 1].join(",")
        );
        let err = Manifest::parse(many.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("manifest has more than 1000000 entries"), "{err}");
    }

    #[test]
    fn read_streams_and_returns_the_id() {
        let man = m(vec![d("a"), f("a/b"), l("c", "a/b")]);
        let bytes = man.canonical_bytes();
        let (read, id) = Manifest::read(bytes.as_slice()).unwrap();
        assert_eq!((read, id), (man.clone(), man.id()));
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"\n");
        assert!(
            Manifest::read(longer.as_slice())
                .unwrap_err()
                .to_string()
                .contains("canonical")
        );
        assert!(Manifest::read(&bytes[..bytes.len() - 2]).is_err());
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
