//! The body index: where each body frame starts in the file and which
//! manifest entry's tar header starts in it, so a reader can decode only the
//! frames around the entries it needs.
//!
//! It is the last thing in a bundle: one zstd skippable frame (magic
//! [`INDEX_MAGIC`], skipped by every zstd decoder, `tar --zstd` included)
//! whose last [`FOOTER_LEN`] bytes are a fixed-size footer, so a reader finds
//! it from the end of the file. Byte by byte (all integers little-endian):
//!
//! ```text
//! 0         u32  0x184D2A5B      zstd skippable frame magic
//! 4         u32  28 + 12 × F     length of what follows
//! 8         u64  body_offset     file offset of the first body frame (a multiple of 4096)
//! 16        u32  chunk_size      uncompressed bytes per body frame (the last holds the rest)
//! 20        u32  entries         number of manifest entries
//! 24 + 12k  u32  compressed size of body frame k          ┐
//!           u32  first entry: manifest index of the first │ for k in 0..F
//!                entry whose header starts in frame k,    │
//!                or 0xFFFFFFFF (none)                     │
//!           u32  offset of that header in the frame's     │
//!                uncompressed bytes (0 when none)         ┘
//! 24 + 12F  u32  F               number of body frames
//!           u32  1               index format version
//!           4 B  "SLWX"          footer magic
//! ```
//!
//! An entry's header is its first tar header: a GNU long-name or long-link
//! entry when the path or link needs one, else the entry's own header.
//!
//! Invariant: the index is only a hint. [`read`] returns `None` for anything
//! that is not a structurally valid index for this file and manifest (the
//! caller then reads the whole bundle), and a valid-looking index that
//! points at the wrong place makes the reader find a member that is not the
//! expected entry, which is an integrity error: contents are always checked
//! against the manifest, never trusted because of the index. Nothing is
//! allocated from the file's numbers before they are checked against bounds
//! derived from the manifest and the file size.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::format::BODY_ALIGN;
use crate::manifest::Manifest;

/// zstd skippable frame magic of the index (0x184D2A5B: one of the sixteen
/// the format reserves; the padding frame uses 0x184D2A50).
pub const INDEX_MAGIC: u32 = 0x184D_2A5B;
/// The footer's magic, the last four bytes of an indexed bundle.
pub const FOOTER_MAGIC: [u8; 4] = *b"SLWX";
/// Index format version.
pub const INDEX_VERSION: u32 = 1;
/// Bytes of the footer: frame count, version, magic.
pub const FOOTER_LEN: usize = 12;
/// Bytes before the frame table: skippable frame header, body offset, chunk size, entries.
const HEAD_LEN: usize = 24;
/// Bytes per frame in the table.
const FRAME_LEN: usize = 12;
/// Marks a frame in which no entry's header starts.
pub const NO_ENTRY: u32 = u32::MAX;
/// Smallest and largest chunk size a reader accepts.
pub const MIN_CHUNK: u32 = 4096;
pub const MAX_CHUNK: u32 = 64 << 20;

/// One body frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Compressed bytes.
    pub size: u32,
    /// The first entry whose header starts in this frame, and where; `None`
    /// when a file's content covers the whole frame.
    pub first: Option<(u32, u32)>,
}

/// A parsed, validated index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub body_offset: u64,
    pub chunk_size: u32,
    pub entries: u32,
    pub frames: Vec<Frame>,
    /// File offset of each frame, and of the end of the body.
    offsets: Vec<u64>,
    /// `(first entry, offset, frame)` of the frames in which a header starts.
    starts: Vec<(u32, u32, usize)>,
}

impl Index {
    pub fn new(body_offset: u64, chunk_size: u32, entries: u32, frames: Vec<Frame>) -> Index {
        let mut offsets = Vec::with_capacity(frames.len() + 1);
        let mut at = body_offset;
        offsets.push(at);
        for f in &frames {
            at = at.saturating_add(u64::from(f.size));
            offsets.push(at);
        }
        let starts = frames
            .iter()
            .enumerate()
            .filter_map(|(k, f)| f.first.map(|(first, offset)| (first, offset, k)))
            .collect();
        Index {
            body_offset,
            chunk_size,
            entries,
            frames,
            offsets,
            starts,
        }
    }

    /// The index frame's bytes, footer included.
    pub fn encode(&self) -> Vec<u8> {
        let content = HEAD_LEN - 8 + FRAME_LEN * self.frames.len() + FOOTER_LEN;
        let mut out = Vec::with_capacity(8 + content);
        out.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
        out.extend_from_slice(&(content as u32).to_le_bytes());
        out.extend_from_slice(&self.body_offset.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&self.entries.to_le_bytes());
        for f in &self.frames {
            let (first, offset) = f.first.unwrap_or((NO_ENTRY, 0));
            out.extend_from_slice(&f.size.to_le_bytes());
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&FOOTER_MAGIC);
        out
    }

    /// Where frame `k` starts in the file (`k` = the frame count: the end of the body).
    pub fn frame_offset(&self, k: usize) -> u64 {
        self.offsets[k]
    }

    /// The frame in which entry `j`'s header starts: the last frame whose
    /// first entry is `j` or before; with that first entry and its header's
    /// offset in the frame.
    pub fn frame_of(&self, j: u32) -> Option<(usize, u32, u32)> {
        // First entries increase from frame to frame (checked by `parse`).
        let n = self.starts.partition_point(|&(first, _, _)| first <= j);
        let (first, offset, k) = *self.starts.get(n.checked_sub(1)?)?;
        Some((k, first, offset))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// An upper bound on the length of the body's tar stream for `manifest`:
/// per entry a header, a GNU long-name and a long-link entry at most, and the
/// content rounded up to blocks; then the end-of-archive blocks.
fn tar_len_bound(manifest: &Manifest) -> u64 {
    let blocks = |n: u64| n.div_ceil(512) * 512;
    manifest
        .entries
        .iter()
        .map(|e| {
            let target = e.target.as_ref().map_or(0, |t| t.len() as u64);
            3 * 512 + blocks(e.path.len() as u64 + 1) + blocks(target + 1) + blocks(e.size)
        })
        .fold(1024u64, u64::saturating_add)
}

/// Read and validate the index at the end of `file` (`file_len` bytes) for a
/// bundle of `manifest`. `None` when there is none (bundles written before
/// the index existed) or it is not a valid index for this file and
/// manifest: the caller then reads the bundle from the start.
pub fn read(file: &File, file_len: u64, manifest: &Manifest) -> Option<Index> {
    let mut footer = [0u8; FOOTER_LEN];
    let footer_at = file_len.checked_sub(FOOTER_LEN as u64)?;
    file.read_exact_at(&mut footer, footer_at).ok()?;
    if footer[8..] != FOOTER_MAGIC || u32_at(&footer, 4) != INDEX_VERSION {
        return None;
    }
    let count = u64::from(u32_at(&footer, 0));
    // Bound the frame count before reading (and allocating) the table: the
    // body cannot hold more frames than its tar stream has chunks of the
    // smallest accepted size, nor more than the file has room for.
    let most = tar_len_bound(manifest) / u64::from(MIN_CHUNK) + 1;
    let len = (HEAD_LEN + FOOTER_LEN) as u64 + count * FRAME_LEN as u64;
    if count == 0 || count > most || len > file_len {
        return None;
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, file_len - len).ok()?;
    parse(&bytes, file_len, manifest)
}

/// Validate the index frame `bytes` (the last bytes of a file of `file_len`).
pub fn parse(bytes: &[u8], file_len: u64, manifest: &Manifest) -> Option<Index> {
    if bytes.len() < HEAD_LEN + FOOTER_LEN || !(bytes.len() - HEAD_LEN - FOOTER_LEN).is_multiple_of(FRAME_LEN) {
        return None;
    }
    let count = (bytes.len() - HEAD_LEN - FOOTER_LEN) / FRAME_LEN;
    if count == 0 {
        return None;
    }
    let footer = &bytes[bytes.len() - FOOTER_LEN..];
    if u32_at(bytes, 0) != INDEX_MAGIC
        || u32_at(bytes, 4) as usize != bytes.len() - 8
        || u32_at(footer, 0) as usize != count
        || u32_at(footer, 4) != INDEX_VERSION
        || footer[8..] != FOOTER_MAGIC
    {
        return None;
    }
    let body_offset = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let chunk_size = u32_at(bytes, 16);
    let entries = u32_at(bytes, 20);
    if body_offset == 0
        || !body_offset.is_multiple_of(BODY_ALIGN as u64)
        || !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size)
        || entries as usize != manifest.entries.len()
    {
        return None;
    }
    // The body's tar stream is at least `(count - 1) * chunk_size` bytes.
    if (count as u64 - 1) * u64::from(chunk_size) >= tar_len_bound(manifest) {
        return None;
    }
    let mut frames = Vec::with_capacity(count);
    let mut body_len = 0u64;
    let mut last_first: Option<u32> = None;
    for k in 0..count {
        let at = HEAD_LEN + k * FRAME_LEN;
        let (size, first, offset) = (u32_at(bytes, at), u32_at(bytes, at + 4), u32_at(bytes, at + 8));
        if size == 0 {
            return None;
        }
        body_len += u64::from(size);
        let first = if first == NO_ENTRY {
            if offset != 0 {
                return None;
            }
            None
        } else {
            if first >= entries || offset >= chunk_size || last_first.is_some_and(|l| first <= l) {
                return None;
            }
            last_first = Some(first);
            Some((first, offset))
        };
        frames.push(Frame { size, first });
    }
    // The first entry's header opens the body.
    if entries > 0 && frames[0].first != Some((0, 0)) {
        return None;
    }
    if body_offset.checked_add(body_len)?.checked_add(bytes.len() as u64)? != file_len {
        return None;
    }
    Some(Index::new(body_offset, chunk_size, entries, frames))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::manifest::Entry;

    fn manifest(n: usize) -> Manifest {
        Manifest {
            version: 1,
            source_date_epoch: 0,
            entries: (0..n)
                .map(|i| Entry::file(format!("f{i:04}"), false, 100_000, Digest::of(&i.to_le_bytes())))
                .collect(),
        }
    }

    fn sample() -> Index {
        Index::new(
            8192,
            MIN_CHUNK * 16,
            10,
            vec![
                Frame {
                    size: 1000,
                    first: Some((0, 0)),
                },
                Frame { size: 900, first: None },
                Frame {
                    size: 800,
                    first: Some((3, 77)),
                },
                Frame {
                    size: 700,
                    first: Some((4, 5000)),
                },
            ],
        )
    }

    fn file_len(i: &Index) -> u64 {
        i.frame_offset(i.frames.len()) + i.encode().len() as u64
    }

    #[test]
    fn an_index_round_trips_and_ends_with_its_footer() {
        let i = sample();
        let bytes = i.encode();
        assert_eq!(bytes.len(), 8 + 28 + 12 * 4);
        assert_eq!(bytes[..4], [0x5B, 0x2A, 0x4D, 0x18]);
        assert!(bytes.ends_with(b"\x04\0\0\0\x01\0\0\0SLWX"));
        assert_eq!(parse(&bytes, file_len(&i), &manifest(10)), Some(i));
    }

    #[test]
    fn the_frame_of_an_entry_is_the_last_one_starting_at_or_before_it() {
        let i = sample();
        assert_eq!(i.frame_of(0), Some((0, 0, 0)));
        assert_eq!(i.frame_of(2), Some((0, 0, 0)));
        assert_eq!(i.frame_of(3), Some((2, 3, 77)));
        assert_eq!(i.frame_of(4), Some((3, 4, 5000)));
        assert_eq!(i.frame_of(9), Some((3, 4, 5000)));
        assert_eq!(i.frame_offset(2), 8192 + 1900);
        let many = Index::new(
            8192,
            MIN_CHUNK,
            100,
            (0..100)
                .map(|k| Frame {
                    size: 1,
                    first: (k % 3 == 0).then_some((k, 1)),
                })
                .collect(),
        );
        for j in 0..100 {
            assert_eq!(many.frame_of(j), Some((j as usize / 3 * 3, j / 3 * 3, 1)), "{j}");
        }
    }

    #[test]
    fn a_malformed_index_is_no_index() {
        let i = sample();
        let len = file_len(&i);
        let m = manifest(10);
        let bytes = i.encode();
        assert!(parse(&bytes, len + 1, &m).is_none(), "sizes must add up");
        assert!(parse(&bytes, len, &manifest(11)).is_none(), "entry count");
        let mutate = |f: &dyn Fn(&mut Index)| {
            let mut i = sample();
            f(&mut i);
            let i = Index::new(i.body_offset, i.chunk_size, i.entries, i.frames);
            let len = file_len(&i);
            parse(&i.encode(), len, &m)
        };
        assert!(mutate(&|i| i.body_offset = 100).is_none());
        assert!(mutate(&|i| i.chunk_size = 100).is_none());
        assert!(mutate(&|i| i.chunk_size = MAX_CHUNK + 1).is_none());
        assert!(
            mutate(&|i| i.frames[2].first = Some((0, 1))).is_none(),
            "not increasing"
        );
        assert!(
            mutate(&|i| i.frames[3].first = Some((10, 1))).is_none(),
            "beyond the entries"
        );
        assert!(
            mutate(&|i| i.frames[3].first = Some((4, MIN_CHUNK * 16))).is_none(),
            "offset"
        );
        assert!(
            mutate(&|i| i.frames[0].first = Some((0, 512))).is_none(),
            "first header"
        );
        assert!(mutate(&|i| i.frames[1].size = 0).is_none());
        assert!(mutate(&|i| i.frames = Vec::new()).is_none());
        assert!(
            mutate(&|i| i.chunk_size = MIN_CHUNK).is_none(),
            "more frames than the manifest's tar stream has chunks"
        );
        for at in [0, 4, 8, bytes.len() - 12, bytes.len() - 8, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[at] ^= 1;
            assert!(parse(&b, len, &m).is_none(), "flipped byte {at}");
        }
        assert!(parse(&bytes[1..], len, &m).is_none());
    }

    #[test]
    fn read_finds_the_index_from_the_end_and_bounds_the_frame_count_first() {
        let dir = tempfile::tempdir().unwrap();
        let i = sample();
        let mut file = vec![7u8; i.frame_offset(4) as usize];
        file.extend(i.encode());
        let path = dir.path().join("b");
        std::fs::write(&path, &file).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(read(&f, file.len() as u64, &manifest(10)), Some(i));
        // A footer claiming 2^32 - 1 frames is refused before anything is read.
        let n = file.len();
        file[n - 12..n - 8].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &file).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(read(&f, file.len() as u64, &manifest(10)), None);
        // Too short to hold a footer.
        std::fs::write(&path, b"SLWX").unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(read(&f, 4, &manifest(10)), None);
    }
}
