//! Bundles: the deterministic `.tar.zst` form of a release tree.
//!
//! Layout of the archive (byte-identical for a given id): one zstd frame
//! holding the tar headers of `.slipway/` and `.slipway/manifest.json`; one
//! zstd skippable frame padding that to a multiple of [`pack::BODY_ALIGN`]
//! bytes (so a builder can put it in front of the body without copying the
//! body); then one multithreaded zstd stream holding every entry in manifest
//! order and the tar end-of-archive. Plain `tar --zstd -xf` unpacks it. Entries carry
//! uid/gid 0, no user names, the bundle's `source_date_epoch` as mtime, and
//! normalised modes.
//!
//! - [`pack`] writes bundles (from a directory or from verified entries),
//! - [`read_ahead`] reads and hashes a directory's files for [`pack`] on a thread of its own,
//! - [`unpack`] reads them, verifying every entry against the manifest,
//! - [`git`] exports a tag's tree.

pub mod git;
pub mod pack;
pub mod read_ahead;
pub mod unpack;

/// zstd level of every archive and every object stream (pinned: changing it
/// changes exported bytes, never ids).
pub const ZSTD_LEVEL: i32 = 3;

/// Environment variable that sets the number of zstd worker threads.
pub const WORKERS_ENV: &str = "SLIPWAY_ZSTD_WORKERS";

/// Most workers used when [`WORKERS_ENV`] is not set. Memory: zstd holds an
/// 8 MiB input section and, on incompressible data, an 8 MiB output buffer
/// per job in flight, so each worker adds 15-25 MiB resident: on the 1 GiB
/// tree of `scripts/bench-memory.sh`, 2 workers peak near 80 MiB, 4 near
/// 115 MiB, 8 near 150-175 MiB. Speed: compression is about 2/3 of the
/// CPU time of a build and the reading (and hashing) thread about 1/6, so
/// with 4 workers the compressors already keep pace with the reader and
/// more workers add memory, not speed. `SLIPWAY_ZSTD_WORKERS` sets any count.
pub const MAX_DEFAULT_WORKERS: u32 = 4;

/// Worker threads for multithreaded zstd: `$SLIPWAY_ZSTD_WORKERS` when it is
/// a number (clamped to 1..=64), else the number of CPUs up to
/// [`MAX_DEFAULT_WORKERS`]. A tuning knob for speed and memory only: the
/// output is identical for any count >= 1, and 0 (zstd's single-threaded
/// mode, whose output differs) is never used.
pub fn zstd_workers() -> u32 {
    if let Some(n) = std::env::var(WORKERS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        return n.clamp(1, 64);
    }
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .clamp(1, MAX_DEFAULT_WORKERS)
}

/// Path of the manifest inside an archive.
pub const MANIFEST_PATH: &str = ".slipway/manifest.json";
