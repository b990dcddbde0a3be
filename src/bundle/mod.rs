//! Bundles: the deterministic `.tar.zst` form of a release tree.
//!
//! Layout of the archive (byte-identical for a given id): one zstd frame
//! holding the tar headers of `.slipway/` and `.slipway/manifest.json`, then
//! one multithreaded zstd stream holding every entry in manifest order and the
//! tar end-of-archive. Plain `tar --zstd -xf` unpacks it. Entries carry
//! uid/gid 0, no user names, the bundle's `source_date_epoch` as mtime, and
//! normalised modes.
//!
//! - [`pack`] writes bundles (from a directory or from verified entries),
//! - [`unpack`] reads them, verifying every entry against the manifest,
//! - [`git`] exports a tag's tree.

pub mod git;
pub mod pack;
pub mod unpack;

/// zstd level of every archive and every object stream (pinned: changing it
/// changes exported bytes, never ids).
pub const ZSTD_LEVEL: i32 = 3;

/// Worker threads for multithreaded zstd; the output is identical for any
/// count >= 1, so this only affects speed.
pub fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Path of the manifest inside an archive.
pub const MANIFEST_PATH: &str = ".slipway/manifest.json";
