//! Archive members as the manifest expects them: the raw tar stream read
//! member by member, with GNU long names and links and pax records resolved
//! here under size limits ([`Members`]); each member checked against the
//! manifest entry it must be ([`check_member`]); file contents handed out
//! hashed and counted ([`read_file`]) or skipped whole ([`skip_file`]).
//!
//! Invariant: nothing is read or allocated beyond what the manifest
//! declares — an extension header larger than any legitimate one
//! ([`MAX_EXTENSION`], [`MAX_PAX_HEADER`]) is refused before it is read, a
//! member's data is never read past its entry's size — and a fault of the
//! archive is an integrity error naming the bundle, even when it surfaces
//! as a consumer's error.

use std::io::{self, Read};

use tar::{EntryType, PaxExtensions};

use crate::bundle::format::MANIFEST_PATH;
use crate::digest::HashingReader;
use crate::error::{Error, Result, one_line};
use crate::manifest::{Entry, Kind, MAX_MANIFEST_BYTES, MAX_PATH_BYTES};

/// Largest zstd window accepted: 2^25 = 32 MiB. slipway writes 2 MiB windows;
/// `zstd -19` uses 8 MiB; only `--long` or `--ultra` levels need more.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;
/// Largest pax extended header accepted.
pub const MAX_PAX_HEADER: u64 = 64 * 1024;
/// Largest GNU long name or long link accepted: a path and its NUL.
pub const MAX_EXTENSION: u64 = MAX_PATH_BYTES as u64 + 1;

/// An integrity error: reading bundle `origin` failed with `e`: its stream
/// is damaged or cut short, or asks for a larger zstd window than slipway
/// accepts.
pub(super) fn corrupt(origin: &str, e: io::Error) -> Error {
    if window_too_large(&e) {
        return Error::integrity(format!(
            "bundle `{origin}` was compressed with a zstd window larger than {} MiB, more than slipway accepts; \
             recompress it without `--long` or `--ultra` (or export it again with slipway)",
            (1u64 << ZSTD_WINDOW_LOG_MAX) >> 20
        ));
    }
    damaged(origin, e)
}

/// An integrity error: bundle `origin`'s stream is damaged or cut short, as `what` says.
pub(super) fn damaged(origin: &str, what: impl std::fmt::Display) -> Error {
    Error::integrity(format!(
        "bundle `{origin}` is corrupt or truncated: {}",
        one_line(&crate::error::lowercase_first(&what.to_string()))
    ))
}

/// Whether `e`, or an error it wraps (tar wraps the decoder's), is zstd
/// refusing a frame whose window exceeds [`ZSTD_WINDOW_LOG_MAX`]: the
/// `zstd::Error` code, never its text.
fn window_too_large(e: &io::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|inner| inner as _);
    while let Some(cause) = next {
        if let Some(z) = cause.downcast_ref::<zstd::Error>() {
            return z.is(zstd::zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge);
        }
        next = match cause.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => cause.source(),
        };
    }
    false
}

/// An integrity error: bundle `origin` holds `what`, which no bundle may.
pub(super) fn refused(origin: &str, what: impl std::fmt::Display) -> Error {
    Error::integrity(format!("bundle `{origin}`: {what}"))
}

/// One archive member with its GNU long name/link and pax records applied.
pub(super) struct Member<'a, R: Read> {
    pub(super) entry: tar::Entry<'a, R>,
    pub(super) ty: EntryType,
    pub(super) path: String,
    pub(super) link: Option<Vec<u8>>,
    pub(super) size: u64,
}

/// Strip the NUL padding of a GNU long name or link.
fn strip_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// The raw members of the archive, with extension headers resolved here
/// under size limits (never by the tar crate, which reads them whole).
pub(super) struct Members<'a, R: Read> {
    pub(super) entries: tar::Entries<'a, R>,
    pub(super) origin: &'a str,
}

impl<'a, R: Read> Members<'a, R> {
    fn next_raw(&mut self) -> Result<Option<tar::Entry<'a, R>>> {
        match self.entries.next() {
            None => Ok(None),
            Some(r) => r.map(Some).map_err(|e| corrupt(self.origin, e)),
        }
    }

    /// Read a whole extension header of at most `limit` bytes.
    fn extension(&self, entry: &mut tar::Entry<'a, R>, what: &str, limit: u64, seen: bool) -> Result<Vec<u8>> {
        let size = entry.size();
        if seen {
            return Err(refused(self.origin, format!("two {what}s for one member")));
        }
        if size > limit {
            return Err(refused(
                self.origin,
                format!("a {what} of {size} bytes, more than the limit of {limit}"),
            ));
        }
        let mut buf = vec![0u8; size as usize];
        entry.read_exact(&mut buf).map_err(|e| corrupt(self.origin, e))?;
        Ok(buf)
    }

    pub(super) fn next(&mut self) -> Result<Option<Member<'a, R>>> {
        let origin = self.origin;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        let entry = loop {
            let Some(mut entry) = self.next_raw()? else {
                if long_name.is_some() || long_link.is_some() || pax.is_some() {
                    return Err(damaged(origin, "the archive ends after an extension header"));
                }
                return Ok(None);
            };
            match entry.header().entry_type() {
                EntryType::GNULongName => {
                    let v = self.extension(&mut entry, "GNU long name", MAX_EXTENSION, long_name.is_some())?;
                    long_name = Some(strip_nul(v));
                }
                EntryType::GNULongLink => {
                    let v = self.extension(&mut entry, "GNU long link", MAX_EXTENSION, long_link.is_some())?;
                    long_link = Some(strip_nul(v));
                }
                EntryType::XHeader => {
                    pax = Some(self.extension(&mut entry, "pax header", MAX_PAX_HEADER, pax.is_some())?);
                }
                EntryType::XGlobalHeader => {
                    return Err(Error::integrity(format!(
                        "bundle `{origin}` has a pax global header; slipway bundles have none"
                    )));
                }
                _ => break entry,
            }
        };
        let ty = entry.header().entry_type();
        let size = entry.size();
        let mut path = match long_name {
            Some(n) => n,
            None => entry.path_bytes().into_owned(),
        };
        let mut link = match long_link {
            Some(l) => Some(l),
            None => entry.link_name_bytes().map(|l| l.into_owned()),
        };
        if let Some(pax) = &pax {
            for record in PaxExtensions::new(pax) {
                let record = record.map_err(|e| corrupt(origin, e))?;
                match record.key_bytes() {
                    b"path" => path = record.value_bytes().to_vec(),
                    b"linkpath" => link = Some(record.value_bytes().to_vec()),
                    b"size" => {
                        let declared = record.value().ok().and_then(|v| v.parse::<u64>().ok());
                        if declared != Some(size) {
                            return Err(refused(
                                origin,
                                format!(
                                    "entry `{}`: its pax header says {} bytes, its tar header {size}",
                                    String::from_utf8_lossy(&path).escape_debug(),
                                    String::from_utf8_lossy(record.value_bytes()).escape_debug()
                                ),
                            ));
                        }
                    }
                    k if k.starts_with(b"GNU.sparse.") => {
                        return Err(refused(
                            origin,
                            format!(
                                "entry `{}` is a sparse file; bundles hold only regular files",
                                String::from_utf8_lossy(&path).escape_debug()
                            ),
                        ));
                    }
                    // Times, owners, xattrs, comments: not part of a bundle.
                    _ => {}
                }
            }
        }
        let path = String::from_utf8(path)
            .map_err(|_| Error::integrity(format!("bundle `{origin}` has an entry whose name is not UTF-8")))?;
        Ok(Some(Member {
            entry,
            ty,
            path,
            link,
            size,
        }))
    }
}

/// The content of one file entry as the visitor reads it: hashed and counted,
/// remembering a damaged stream or an early end, so that a visitor's failure
/// caused by the archive is reported as the archive's.
pub(super) struct Content<R> {
    pub(super) inner: HashingReader<R>,
    pub(super) expected: u64,
    /// The stream's own error (the visitor gets a copy of its text).
    pub(super) damage: Option<io::Error>,
    pub(super) ended_early: bool,
}

impl<R: Read> Content<R> {
    pub(super) fn new(inner: R, expected: u64) -> Self {
        Content {
            inner: HashingReader::new(inner),
            expected,
            damage: None,
            ended_early: false,
        }
    }
}

impl<R: Read> Read for Content<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() && self.inner.count() < self.expected => {
                self.ended_early = true;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.damage = Some(e);
                Err(copy)
            }
        }
    }
}

/// The manifest member at the start of an archive: `.slipway/` (optional)
/// then `.slipway/manifest.json`, a regular file of at most
/// [`MAX_MANIFEST_BYTES`].
pub(super) fn manifest_member<'a, R: Read>(members: &mut Members<'a, R>, origin: &str) -> Result<Member<'a, R>> {
    let mut first = members.next()?.ok_or_else(|| damaged(origin, "empty archive"))?;
    if first.ty == EntryType::Directory && first.path.trim_end_matches('/') == ".slipway" && first.size == 0 {
        first = members.next()?.ok_or_else(|| damaged(origin, "no manifest"))?;
    }
    if first.path != MANIFEST_PATH || first.ty != EntryType::Regular {
        return Err(Error::integrity(format!(
            "bundle `{origin}` does not start with `{MANIFEST_PATH}`; it is not a slipway bundle"
        )));
    }
    if first.size > MAX_MANIFEST_BYTES {
        return Err(Error::integrity(format!(
            "bundle `{origin}` declares a manifest of {} bytes, more than the limit of {MAX_MANIFEST_BYTES}",
            first.size
        )));
    }
    Ok(first)
}

/// Skip the content of a file member (already checked against `expected`)
/// without hashing it, but whole: a short member is an error.
pub(super) fn skip_file<R: Read>(member: &mut Member<'_, R>, expected: &Entry, origin: &str) -> Result<()> {
    let skipped =
        io::copy(&mut (&mut member.entry).take(expected.size), &mut io::sink()).map_err(|e| corrupt(origin, e))?;
    if skipped != expected.size {
        return Err(damaged(origin, format!("`{}` is truncated", expected.path)));
    }
    Ok(())
}

/// Hand the content of a file member (already checked against `expected`)
/// to `visit`, then read what it left and check the size and sha256. A
/// damaged stream is reported as the archive's fault even when `visit`
/// failed because of it.
pub(super) fn read_file<R: Read>(
    member: &mut Member<'_, R>,
    expected: &Entry,
    origin: &str,
    visit: impl FnOnce(&mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut reader = Content::new((&mut member.entry).take(expected.size), expected.size);
    let visited = visit(&mut reader);
    if let Some(d) = reader.damage.take() {
        return Err(corrupt(origin, d));
    }
    if reader.ended_early {
        return Err(damaged(origin, format!("`{}` is truncated", expected.path)));
    }
    visited?;
    io::copy(&mut reader, &mut io::sink()).map_err(|e| corrupt(origin, e))?;
    let Content { inner, ended_early, .. } = reader;
    let (_, digest, count) = inner.into_parts();
    if count != expected.size || ended_early {
        return Err(damaged(origin, format!("`{}` is truncated", expected.path)));
    }
    if Some(digest) != expected.sha256 {
        return Err(Error::integrity(format!(
            "bundle `{origin}`: content of `{}` does not match its sha256 (manifest {}, content {digest})",
            expected.path,
            expected.sha256.map(|d| d.to_string()).unwrap_or_default()
        )));
    }
    Ok(())
}

pub(super) fn check_member(member: &Member<'_, impl Read>, expected: &Entry, origin: &str) -> Result<()> {
    let path = if expected.kind == Kind::Dir {
        member.path.trim_end_matches('/')
    } else {
        member.path.as_str()
    };
    let mismatch = |what: &str| {
        Error::integrity(format!(
            "bundle `{origin}`: entry `{}` {what} (manifest expects `{}`)",
            path.escape_debug(),
            expected.path
        ))
    };
    if path != expected.path {
        return Err(mismatch("is not the next manifest entry"));
    }
    let ty = member.ty;
    let size = member.size;
    let carries = || mismatch(&format!("carries {size} bytes of data"));
    match expected.kind {
        Kind::Dir if ty != EntryType::Directory => Err(mismatch("is not a directory")),
        Kind::Dir if size != 0 => Err(carries()),
        Kind::File if ty != EntryType::Regular && ty != EntryType::Continuous => Err(mismatch("is not a regular file")),
        Kind::File if size != expected.size => Err(mismatch(&format!(
            "declares {size} bytes but the manifest says {}",
            expected.size
        ))),
        Kind::Symlink if ty != EntryType::Symlink => Err(mismatch("is not a symlink")),
        Kind::Symlink if size != 0 => Err(carries()),
        Kind::Symlink => {
            let target = member.link.as_deref().unwrap_or_default();
            if Some(target) != expected.target.as_deref().map(str::as_bytes) {
                return Err(mismatch("has a different symlink target"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
