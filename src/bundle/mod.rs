//! Bundles: the deterministic `.tar.zst` form of a release tree.
//!
//! Layout of the archive (byte-identical for a given id and slipway
//! version; `docs/bundles.md` has it byte by byte):
//!
//! 1. one zstd frame holding the tar headers of `.slipway/` and
//!    `.slipway/manifest.json` and the manifest;
//! 2. one zstd skippable frame padding that to a multiple of
//!    [`pack::BODY_ALIGN`] bytes (so a builder can put it in front of the
//!    body without copying the body);
//! 3. the body: every entry in manifest order and the tar end-of-archive,
//!    as a sequence of independent zstd frames, one per
//!    [`pack::BODY_CHUNK`] bytes of the tar stream;
//! 4. the [`index`]: one zstd skippable frame ending in a fixed-size footer,
//!    saying where each body frame is and which entry's header starts in it.
//!
//! Plain `tar --zstd -xf` unpacks it (every zstd decoder skips skippable
//! frames). Entries carry uid/gid 0, no user names, the bundle's
//! `source_date_epoch` as mtime, and normalised modes. Bundles written
//! before the index existed (one body frame, no index) are read as before.
//!
//! - [`pack`] writes bundles (from a directory or from verified entries),
//! - [`read_ahead`] reads and hashes a directory's files for [`pack`] on a thread of its own,
//! - [`unpack`] reads them, verifying every entry against the manifest:
//!   whole ([`unpack::read_bundle`]) or only some entries, decoding only the
//!   frames that hold them ([`unpack::read_entries`]),
//! - [`index`] owns the index format (a hint: never trusted for content),
//! - [`git`] exports a tag's tree.

pub mod git;
pub mod index;
pub mod pack;
pub mod read_ahead;
pub mod unpack;

/// zstd level of every archive and every object stream (pinned: changing it
/// changes exported bytes, never ids).
pub const ZSTD_LEVEL: i32 = 3;

/// Environment variable that sets the number of zstd worker threads.
pub const WORKERS_ENV: &str = "SLIPWAY_ZSTD_WORKERS";

/// Most workers used when [`WORKERS_ENV`] is not set. Memory: each worker
/// has up to two 4 MiB chunks of the body in flight, each with its
/// compressed frame (up to 4 MiB more on incompressible data), and a
/// compressor of a few MiB, so each worker adds 13-17 MiB resident: on the
/// 1 GiB tree of `scripts/bench-memory.sh`, 2 workers peak near 52 MiB, 4
/// near 86 MiB, 8 near 138 MiB. Speed:
/// compression is about 2/3 of the CPU time of a build and the reading
/// (and hashing) thread about 1/6, so with 4 workers the compressors
/// already keep pace with the reader and more workers add memory, not
/// speed. `SLIPWAY_ZSTD_WORKERS` sets any count.
pub const MAX_DEFAULT_WORKERS: u32 = 4;

/// Compressor threads of a build: `$SLIPWAY_ZSTD_WORKERS` when it is a
/// number (clamped to 1..=64), else the number of CPUs up to
/// [`MAX_DEFAULT_WORKERS`]. A tuning knob for speed and memory only: the
/// output is identical for any count >= 1 (the body's frames are each
/// compressed by a single-threaded compressor; the manifest frame in zstd's
/// multithreaded mode, whose output does not depend on the count, and 0,
/// its single-threaded mode, whose output differs, is never used for it).
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
