//! The layout of a remote store (docs/remote-store.md has it in full).
//!
//! ```text
//! packs/<sha256 of the pack>.pack          objects, each its own zstd frame, back to back
//! packs/<sha256 of the pack>.idx           zstd JSON: [sha256, size, offset, compressed length] per object
//! releases/<id>/manifest.zst               the canonical manifest (its sha256 is the id)
//! releases/<id>/index.zst                  zstd JSON: the packs, and where each object of the release is
//! releases/<id>/provenance.json
//! releases/<id>/signatures/<sha256>.json   one object per signature (a merge is a union)
//! names/<name>/<id>.claim                  "I am publishing <id> as <name>"
//! names/<name>/<id>                        the name, bound (written only by a claim that was alone)
//! locks/<kind>-<millis>-<random>           a publish or gc in progress
//! ```
//!
//! Invariant: no key is ever written twice with different bytes (every key
//! holds its own content's hash or an id), so correctness never depends on
//! a store honouring conditional writes.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// Version of the index formats; a newer one is refused, never guessed at.
pub const FORMAT: u32 = 1;
/// New objects go into packs of about this many compressed bytes.
pub const PACK_TARGET: u64 = 32 << 20;
/// zstd level of each object (the level bundles use).
pub const LEVEL: i32 = 3;

pub fn pack_key(pack: &str) -> String {
    format!("packs/{pack}.pack")
}
pub fn pack_index_key(pack: &str) -> String {
    format!("packs/{pack}.idx")
}
pub fn manifest_key(id: &Digest) -> String {
    format!("releases/{}/manifest.zst", id.hex())
}
pub fn index_key(id: &Digest) -> String {
    format!("releases/{}/index.zst", id.hex())
}
pub fn provenance_key(id: &Digest) -> String {
    format!("releases/{}/provenance.json", id.hex())
}
pub fn signatures_prefix(id: &Digest) -> String {
    format!("releases/{}/signatures/", id.hex())
}
pub fn names_prefix(name: &str) -> String {
    format!("names/{name}/")
}
pub fn claim_key(name: &str, id: &Digest) -> String {
    format!("names/{name}/{}.claim", id.hex())
}
pub fn bound_key(name: &str, id: &Digest) -> String {
    format!("names/{name}/{}", id.hex())
}

/// Where one object is: a pack (by its number in a list of packs), the
/// offset of its zstd frame in that pack, and the frame's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loc(pub u32, pub u64, pub u64);

/// `packs/<p>.idx`: what one pack holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackIndex {
    pub format: u32,
    /// `(sha256 hex, size, offset, compressed length)`.
    pub objects: Vec<(String, u64, u64, u64)>,
}

/// `releases/<id>/index.zst`: for each distinct content of the release (in
/// [`contents`] order), where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseIndex {
    pub format: u32,
    pub packs: Vec<String>,
    pub objects: Vec<Loc>,
}

/// `names/<name>/<id>` and its claim: who published, when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameRecord {
    pub name: String,
    pub id: Digest,
    pub published_at: String,
    pub published_by: String,
}

/// The distinct contents of a manifest (by sha256 alone: the executable bit
/// is the manifest's business), in first-use order, with their sizes.
pub fn contents(manifest: &Manifest) -> Vec<(Digest, u64)> {
    let mut seen = std::collections::HashSet::new();
    manifest
        .objects()
        .into_iter()
        .filter(|(k, _)| seen.insert(k.digest))
        .map(|(k, size)| (k.digest, size))
        .collect()
}

/// zstd-compressed JSON.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(value).map_err(Error::Encode)?;
    zstd::bulk::compress(&json, LEVEL).map_err(|e| Error::other(format!("cannot compress: {e}")))
}

/// Decode zstd-compressed JSON of at most `limit` bytes; `what` names it in errors.
///
/// # Errors
/// Integrity error when it does not decompress or parse.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], limit: u64, what: &str) -> Result<T> {
    let raw = decompress(bytes, limit, what)?;
    serde_json::from_slice(&raw).map_err(|e| Error::integrity(format!("{what} does not parse: {e}")))
}

/// Decompress one zstd frame (or several) of at most `limit` bytes.
///
/// # Errors
/// Integrity error when it is damaged or larger than `limit`.
pub fn decompress(bytes: &[u8], limit: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut dec = zstd::stream::read::Decoder::with_buffer(bytes)
        .map_err(|e| Error::integrity(format!("{what} is damaged: {e}")))?;
    (&mut dec)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::integrity(format!("{what} is damaged: {}", crate::error::describe_io(&e))))?;
    if out.len() as u64 > limit {
        return Err(Error::integrity(format!("{what} is larger than {limit} bytes")));
    }
    Ok(out)
}

/// Check an index against its release: one location per content, packs
/// that exist in its list, pack names that are hashes.
///
/// # Errors
/// Integrity error naming what is wrong.
pub fn check_index(index: &ReleaseIndex, contents: usize, what: &str) -> Result<()> {
    if index.format != FORMAT {
        return Err(Error::other(format!(
            "{what} has format {}, which this slipway does not read (it reads {FORMAT}); upgrade slipway",
            index.format
        )));
    }
    if index.objects.len() != contents {
        return Err(Error::integrity(format!(
            "{what} lists {} objects, but the release has {contents}",
            index.objects.len()
        )));
    }
    if let Some(p) = index.packs.iter().find(|p| Digest::from_hex(p).is_none()) {
        return Err(Error::integrity(format!(
            "{what} names a pack `{}` that is not a sha256",
            crate::error::one_line(p)
        )));
    }
    if let Some(l) = index.objects.iter().find(|l| l.0 as usize >= index.packs.len()) {
        return Err(Error::integrity(format!(
            "{what} names pack number {} of {}",
            l.0,
            index.packs.len()
        )));
    }
    Ok(())
}
