//! Reading a whole bundle from any reader ([`read_bundle`]), handing each
//! entry to a [`Visitor`] in manifest order.
//!
//! Invariant: once `read_bundle` returns `Ok`, every byte a visitor saw is
//! vouched for by the manifest whose id it returns; contents a visitor
//! declines are skipped unhashed but whole; and after the end of the archive
//! nothing but at most [`MAX_TRAILING_ZEROS`] of zero padding is accepted.

use std::io::Read;

use super::members::{
    Content, Members, ZSTD_WINDOW_LOG_MAX, check_member, corrupt, damaged, manifest_member, read_file, refused,
    skip_file,
};
use crate::bundle::format::MANIFEST_PATH;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Entry, Kind, Manifest};

/// Zero padding accepted after the end-of-archive block (tar pads archives
/// to whole records, 10 KiB by default).
pub const MAX_TRAILING_ZEROS: u64 = 1024 * 1024;

/// Called with each entry and (for files) its content, in manifest order. The
/// content is verified after the call returns: a consumer must not commit what
/// it read until `read_bundle` has returned `Ok` (or the next entry arrives).
pub trait Visitor {
    /// The manifest, before any entry.
    fn manifest(&mut self, _manifest: &Manifest, _id: Digest) -> Result<()> {
        Ok(())
    }
    /// One entry; `content` is `Some` for files, unless [`Visitor::wants_content`] declined it.
    fn entry(&mut self, entry: &Entry, content: Option<&mut dyn Read>) -> Result<()>;
    /// Whether the visitor reads this file's content. Content it declines is
    /// skipped without being hashed (a push picking a few files out of a
    /// bundle); everything else is verified as always.
    fn wants_content(&mut self, _entry: &Entry) -> bool {
        true
    }
}

/// Read a `.tar.zst` bundle from `input`, verifying everything; `origin` names
/// it in errors. Returns the manifest and its id.
///
/// # Errors
/// Integrity error (exit 5) for any mismatch or damage; the visitor's own errors.
pub fn read_bundle(input: impl Read, origin: &str, visitor: &mut dyn Visitor) -> Result<(Manifest, Digest)> {
    let mut decoder = zstd::stream::read::Decoder::new(input).map_err(|e| corrupt(origin, e))?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|e| corrupt(origin, e))?;
    let mut archive = tar::Archive::new(decoder);
    let (manifest, id) = {
        let entries = archive.entries().map_err(|e| corrupt(origin, e))?.raw(true);
        let mut members = Members { entries, origin };
        let mut first = manifest_member(&mut members, origin)?;
        let size = first.size;
        let mut content = Content::new((&mut first.entry).take(size), size);
        let parsed = Manifest::read(&mut content);
        if let Some(d) = content.damage.take() {
            return Err(corrupt(origin, d));
        }
        if content.ended_early || (parsed.is_ok() && content.inner.count() != size) {
            return Err(damaged(origin, format!("`{MANIFEST_PATH}` is truncated")));
        }
        let (manifest, id) = parsed.map_err(|e| refused(origin, e))?;
        drop(first);
        visitor.manifest(&manifest, id)?;

        for expected in &manifest.entries {
            let Some(mut member) = members.next()? else {
                return Err(damaged(origin, format!("archive ends before `{}`", expected.path)));
            };
            check_member(&member, expected, origin)?;
            if expected.kind == Kind::File && !visitor.wants_content(expected) {
                // Not needed (e.g. the host has it): skip it unhashed, but whole.
                skip_file(&mut member, expected, origin)?;
                visitor.entry(expected, None)?;
            } else if expected.kind == Kind::File {
                read_file(&mut member, expected, origin, |content| {
                    visitor.entry(expected, Some(content))
                })?;
            } else {
                visitor.entry(expected, None)?;
            }
        }
        if let Some(extra) = members.next()? {
            return Err(Error::integrity(format!(
                "bundle `{origin}` has an entry `{}` that is not in its manifest",
                extra.path.escape_debug()
            )));
        }
        (manifest, id)
    };
    // Read what follows the end-of-archive block, so a damaged tail or
    // checksum is noticed; allow a little zero padding, nothing else.
    let mut rest = archive.into_inner().take(MAX_TRAILING_ZEROS + 1);
    let mut buf = [0u8; 8192];
    let mut padding = 0u64;
    loop {
        match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if buf[..n].iter().all(|b| *b == 0) => padding += n as u64,
            Ok(_) => return Err(damaged(origin, "data after the end of the archive")),
            Err(e) => return Err(corrupt(origin, e)),
        }
        if padding > MAX_TRAILING_ZEROS {
            return Err(damaged(
                origin,
                format!("more than {MAX_TRAILING_ZEROS} bytes of padding after the end of the archive"),
            ));
        }
    }
    Ok((manifest, id))
}

/// A visitor that only verifies.
pub struct VerifyOnly;

impl Visitor for VerifyOnly {
    fn entry(&mut self, _entry: &Entry, _content: Option<&mut dyn Read>) -> Result<()> {
        Ok(())
    }
}
