//! The archive's fixed geometry, shared by everything that writes or reads
//! bundles: where the manifest is ([`MANIFEST_PATH`]), the zstd level, how
//! the body's tar stream is cut into frames ([`BODY_CHUNK`]) and where the
//! body starts ([`BODY_ALIGN`], reached with one skippable padding frame).
//!
//! Invariant: these values are part of the bytes of every exported bundle,
//! the same on every machine; changing one changes exported bytes, never
//! ids. This module depends on no other part of `bundle`, so the writers
//! ([`super::pack`]) and the readers ([`super::index`], [`super::unpack`])
//! share it without depending on each other.

/// Path of the manifest inside an archive.
pub const MANIFEST_PATH: &str = ".slipway/manifest.json";

/// zstd level of every archive and every object stream (pinned: changing it
/// changes exported bytes, never ids).
pub const ZSTD_LEVEL: i32 = 3;

/// Uncompressed bytes of the body's tar stream per zstd frame. Each frame is
/// compressed on its own, so a reader can start decoding at any frame; the
/// price is the history each frame starts without. On the 300 MiB /
/// 20,000-file tree of `scripts/bench-build.sh`, against the previous single
/// multithreaded stream: 1 MiB frames +0.53 %, 2 MiB +0.25 %, 4 MiB +0.11 %,
/// 8 MiB +0.04 % (docs/bundles.md). A reader wanting one entry decodes half
/// a frame before it on average, a few milliseconds at 4 MiB.
pub const BODY_CHUNK: u32 = 4 << 20;

/// Where the body starts in an archive: the manifest frame is followed by a
/// zstd skippable frame (ignored by every zstd decoder) that pads it to a
/// multiple of this. A constant, so the bytes stay the same on every machine
/// and file system; 4 KiB is a multiple of the block size of common file
/// systems, which lets a builder insert the prefix in front of a body already
/// written without copying the body (`pack::prepend`).
pub const BODY_ALIGN: usize = 4096;

/// Magic number of the zstd skippable frame used as padding (0x184D2A50,
/// the first of the sixteen the format reserves).
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

/// Append one skippable frame to `prefix` so that its length becomes a
/// multiple of [`BODY_ALIGN`] (8 to `BODY_ALIGN + 7` bytes).
pub(crate) fn pad_to_body_align(prefix: &mut Vec<u8>) {
    let pad = (BODY_ALIGN - (prefix.len() + 8) % BODY_ALIGN) % BODY_ALIGN;
    prefix.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    prefix.extend_from_slice(&(pad as u32).to_le_bytes());
    prefix.resize(prefix.len() + pad, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_one_skippable_frame_ending_at_the_body_alignment() {
        for len in [0usize, 1, 100, 4087, 4088, 4089, 4096, 10_000] {
            let mut p = vec![7u8; len];
            pad_to_body_align(&mut p);
            assert_eq!(p.len() % BODY_ALIGN, 0, "{len}");
            assert!(p.len() >= len + 8 && p.len() < len + 8 + BODY_ALIGN, "{len}");
            assert_eq!(p[len..len + 4], SKIPPABLE_MAGIC.to_le_bytes());
            let size = u32::from_le_bytes([p[len + 4], p[len + 5], p[len + 6], p[len + 7]]) as usize;
            assert_eq!(len + 8 + size, p.len());
            assert!(p[len + 8..].iter().all(|b| *b == 0));
        }
    }
}
