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
/// [`contents`] order), where it is. Stored as [`IndexFile`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseIndex {
    pub format: u32,
    pub packs: Vec<String>,
    pub objects: Vec<Loc>,
}

/// How a [`ReleaseIndex`] is written: each object as `[pack, gap, length]`,
/// where `gap` is its offset minus the end of the previous object of the
/// same pack. Objects a publish packed in order have gap 0, so the index of
/// a 20,000-file release compresses to a few bytes per object: every
/// pulling host reads it whole, whatever it lacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexFile {
    format: u32,
    packs: Vec<String>,
    objects: Vec<(u32, i64, u64)>,
}

impl ReleaseIndex {
    /// zstd-compressed [`IndexFile`].
    ///
    /// # Errors
    /// When it cannot be encoded.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut ends = vec![0u64; self.packs.len()];
        let objects = self
            .objects
            .iter()
            .map(|l| {
                let end = ends
                    .get_mut(l.0 as usize)
                    .map_or(0, |e| std::mem::replace(e, l.1 + l.2));
                (l.0, l.1 as i64 - end as i64, l.2)
            })
            .collect();
        encode(&IndexFile {
            format: self.format,
            packs: self.packs.clone(),
            objects,
        })
    }

    /// Read an index written by [`ReleaseIndex::encode`]; `what` names it in errors.
    ///
    /// # Errors
    /// Integrity error when it does not decompress, parse, or name its packs.
    pub fn decode(bytes: &[u8], limit: u64, what: &str) -> Result<ReleaseIndex> {
        let file: IndexFile = decode(bytes, limit, what)?;
        let mut ends = vec![0u64; file.packs.len()];
        let mut objects = Vec::with_capacity(file.objects.len());
        for (pack, gap, len) in file.objects {
            let end = ends
                .get_mut(pack as usize)
                .ok_or_else(|| Error::integrity(format!("{what} names pack number {pack} of {}", file.packs.len())))?;
            let offset = u64::try_from(*end as i64 + gap)
                .map_err(|_| Error::integrity(format!("{what} places an object before the start of its pack")))?;
            *end = offset.saturating_add(len);
            objects.push(Loc(pack, offset, len));
        }
        Ok(ReleaseIndex {
            format: file.format,
            packs: file.packs,
            objects,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_reads_back_as_written_and_packed_objects_cost_little() {
        let packs = vec!["a".repeat(64), "b".repeat(64)];
        let mut objects = Vec::new();
        let mut off = 0;
        for i in 0..20_000u64 {
            let len = 100 + (i * 7919) % 5000;
            objects.push(Loc(0, off, len));
            off += len;
        }
        // An object of another pack, and one out of order.
        objects.push(Loc(1, 4096, 10));
        objects.push(Loc(0, 5, 7));
        let index = ReleaseIndex {
            format: FORMAT,
            packs,
            objects,
        };
        let bytes = index.encode().unwrap();
        assert_eq!(ReleaseIndex::decode(&bytes, 1 << 20, "i").unwrap(), index);
        assert!(bytes.len() < 3 * 20_000, "{} bytes", bytes.len());
        let bad = encode(&IndexFile {
            format: FORMAT,
            packs: vec!["a".repeat(64)],
            objects: vec![(0, -1, 5)],
        })
        .unwrap();
        assert!(ReleaseIndex::decode(&bad, 1 << 20, "i").is_err());
    }
}
