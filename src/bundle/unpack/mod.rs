//! Reading bundles: every entry is checked against the manifest while it is
//! read, so a consumer never sees a byte that the manifest does not vouch for
//! once [`read_bundle`] returns `Ok` (contents a visitor declines are skipped
//! unhashed: it never sees them). [`read_entries`] reads only some entries,
//! decoding only the body frames that hold them when the bundle has an
//! index ([`super::index`]), with the same checks on what it reads; the
//! index only says where to start decoding, never what the bytes are.
//!
//! Refused (integrity error, exit 5): a missing or non-canonical manifest,
//! entries out of order or not in the manifest, hardlinks, devices, fifos,
//! sparse files, sizes or link targets that differ from the manifest,
//! directories or symlinks carrying data, contents whose sha256 differs,
//! anything but a little zero padding after the last entry, and corrupt or
//! truncated streams.
//!
//! Invariant: the work and memory an archive can cause are bounded by what
//! its manifest declares. The tar stream is read raw: GNU long names and
//! links and pax headers are interpreted here, each refused before it is
//! read when it is larger than any legitimate one ([`MAX_EXTENSION`]); a
//! member's data is never skipped or read beyond the size its manifest entry
//! declares; at most [`MAX_TRAILING_ZEROS`] of padding are read after the end;
//! the zstd window is capped at 2^[`ZSTD_WINDOW_LOG_MAX`] bytes; an index is
//! allocated only once its frame count is bounded by the manifest, and a
//! start in the middle of a frame skips less than one chunk (at most
//! [`super::index::MAX_CHUNK`]) of decoded bytes.
//!
//! - `whole` reads a whole bundle from any reader ([`read_bundle`]),
//! - `entries` reads some entries of a bundle file ([`read_entries`]),
//! - `members` is what both read with: the raw members under limits, each
//!   checked against its manifest entry.
//!
//! `entries` uses `whole` (to read a bundle without an index) and both use
//! `members`; this file only re-exports, so no two files import each other.

mod entries;
mod members;
mod whole;

pub use entries::read_entries;
pub use members::{MAX_EXTENSION, MAX_PAX_HEADER, ZSTD_WINDOW_LOG_MAX};
pub use whole::{MAX_TRAILING_ZEROS, VerifyOnly, Visitor, read_bundle};
