//! Bundles: the deterministic `.tar.zst` form of a release tree.
//!
//! Layout of the archive (byte-identical for a given id and slipway
//! version; `docs/bundles.md` has it byte by byte):
//!
//! 1. one zstd frame holding the tar headers of `.slipway/` and
//!    `.slipway/manifest.json` and the manifest;
//! 2. one zstd skippable frame padding that to a multiple of
//!    [`format::BODY_ALIGN`] bytes (so a builder can put it in front of the
//!    body without copying the body);
//! 3. the body: every entry in manifest order and the tar end-of-archive,
//!    as a sequence of independent zstd frames, one per
//!    [`format::BODY_CHUNK`] bytes of the tar stream;
//! 4. the [`index`]: one zstd skippable frame ending in a fixed-size footer,
//!    saying where each body frame is and which entry's header starts in it.
//!
//! Plain `tar --zstd -xf` unpacks it (every zstd decoder skips skippable
//! frames). Entries carry uid/gid 0, no user names, the bundle's
//! `source_date_epoch` as mtime, and normalised modes. Bundles written
//! before the index existed (one body frame, no index) are read as before.
//!
//! - [`pack`] writes bundles (from a directory or from verified entries),
//!   through [`frames`], the pool of threads that compresses the body,
//! - [`tree`] lists and checks a directory and reads its files, and
//!   [`read_ahead`] reads and hashes them for [`pack`] on a thread of its own,
//! - [`unpack`] reads bundles, verifying every entry against the manifest:
//!   whole ([`unpack::read_bundle`]) or only some entries, decoding only the
//!   frames that hold them ([`unpack::read_entries`]),
//! - [`index`] owns the index format (a hint: never trusted for content),
//! - [`format`](mod@format) holds the geometry all of them share (manifest path, zstd
//!   level, chunk size, body alignment),
//! - [`git`] exports a tag's tree.
//!
//! Imports point downwards only, so no two of these modules import each
//! other: `pack` uses `frames`, `read_ahead`, `tree` and `index`;
//! `read_ahead` uses `tree`; `unpack` uses `index`; and `frames`, `index`,
//! `pack` and `unpack` use `format`, which uses none of them.

pub mod format;
pub mod frames;
pub mod git;
pub mod index;
pub mod pack;
pub mod read_ahead;
pub mod tree;
pub mod unpack;

pub use format::{MANIFEST_PATH, ZSTD_LEVEL};
pub use frames::{MAX_DEFAULT_WORKERS, WORKERS_ENV, zstd_workers};
