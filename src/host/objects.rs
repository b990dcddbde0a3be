//! Content objects arriving on a host: written into `tmp/<name>.incoming/`,
//! verified, then moved into `.slipway/objects/` in groups.
//!
//! Invariant: a file appears under `objects/` only after its bytes were
//! verified against the sha256 it is named by and made durable (one
//! `syncfs(2)` per group, before the renames), and it never replaces an
//! existing object. So `objects/` holds only complete, correct objects
//! whenever the process dies, and a re-run push finds every group that was
//! moved and sends only the rest. Objects are read-only (0444, or 0555 when
//! executable) and carry the manifest's `source_date_epoch` as mtime.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result, describe_io};
use crate::fs;
use crate::host::layout::Layout;
use crate::manifest::ObjectKey;

/// Move verified objects into `objects/` after this many bytes…
pub const COMMIT_BYTES: u64 = 64 * 1024 * 1024;
/// …or this many objects, whichever comes first (and at the end).
pub const COMMIT_OBJECTS: usize = 2000;

const COPY_BUFFER: usize = 256 * 1024;

/// An object written to the staging directory whose bytes still need a verdict.
#[derive(Debug)]
pub struct Unverified {
    path: PathBuf,
    key: ObjectKey,
    size: u64,
}

/// Receives the objects of one push.
pub struct ObjectSink<'a> {
    layout: &'a Layout,
    dir: PathBuf,
    mtime: i64,
    pending: Vec<Unverified>,
    pending_bytes: u64,
    prefixes: HashSet<String>,
    buf: Vec<u8>,
    counter: u64,
    /// Objects moved into `objects/` by this push.
    pub objects_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
}

impl<'a> ObjectSink<'a> {
    /// Start receiving the objects of release `name` (its staging directory
    /// must not exist; the caller removed leftovers under the release's lock).
    ///
    /// # Errors
    /// When the staging directory cannot be created.
    pub fn new(layout: &'a Layout, name: &str, mtime: i64) -> Result<ObjectSink<'a>> {
        let dir = layout.incoming_dir(name);
        fs::create_dir(&dir, 0o700)?;
        Ok(ObjectSink {
            layout,
            dir,
            mtime,
            pending: Vec::new(),
            pending_bytes: 0,
            prefixes: HashSet::new(),
            buf: vec![0; COPY_BUFFER],
            counter: 0,
            objects_written: 0,
            bytes_written: 0,
        })
    }

    /// Write exactly `size` bytes of `content` to a new staging file,
    /// hashing them when `hash` is set. `what` (a bundle path) names it in errors.
    fn write(
        &mut self,
        key: ObjectKey,
        size: u64,
        content: &mut dyn Read,
        what: &str,
        hash: bool,
    ) -> Result<(Unverified, Option<Digest>)> {
        self.counter += 1;
        let path = self.dir.join(self.counter.to_string());
        let mode = if key.executable { 0o555 } else { 0o444 };
        let mut file = fs::create_new(&path, mode)?;
        let mut hasher = hash.then(Hasher::new);
        let mut left = size;
        while left > 0 {
            let want = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match content.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(Error::integrity(format!(
                        "the content of `{what}` ends after {} of its {size} bytes",
                        size - left
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::integrity(format!(
                        "cannot read the content of `{what}`: {}",
                        describe_io(&e)
                    )));
                }
            };
            if let Some(h) = hasher.as_mut() {
                h.update(&self.buf[..n]);
            }
            std::io::Write::write_all(&mut file, &self.buf[..n]).map_err(|e| Error::io("write", &path, e))?;
            left -= n as u64;
        }
        fs::set_mtime(&file, &path, self.mtime)?;
        Ok((Unverified { path, key, size }, hasher.map(Hasher::finish)))
    }

    /// Write an object, hashing it on the way; refuse it (exit 5) when it
    /// does not match its key.
    ///
    /// # Errors
    /// Integrity error on a mismatch or short content; I/O errors.
    pub fn write_verified(&mut self, key: ObjectKey, size: u64, content: &mut dyn Read, what: &str) -> Result<()> {
        let (obj, digest) = self.write(key, size, content, what, true)?;
        if digest != Some(key.digest) {
            let got = digest.map(|d| d.to_string()).unwrap_or_default();
            return Err(Error::integrity(format!(
                "the content sent for `{what}` does not match its sha256 (manifest {}, received {got}); nothing was staged",
                key.digest
            )));
        }
        self.accept(obj)
    }

    /// Write an object whose bytes someone else verifies (a bundle reader):
    /// hand it back to [`ObjectSink::accept`] once they did.
    ///
    /// # Errors
    /// Short content; I/O errors.
    pub fn write_unverified(
        &mut self,
        key: ObjectKey,
        size: u64,
        content: &mut dyn Read,
        what: &str,
    ) -> Result<Unverified> {
        self.write(key, size, content, what, false).map(|(u, _)| u)
    }

    /// Count a verified object in; move the group into `objects/` when it is large enough.
    ///
    /// # Errors
    /// I/O errors of the move.
    pub fn accept(&mut self, obj: Unverified) -> Result<()> {
        super::fault::point("mid-objects");
        self.pending_bytes += obj.size;
        self.pending.push(obj);
        if self.pending_bytes >= COMMIT_BYTES || self.pending.len() >= COMMIT_OBJECTS {
            self.commit()?;
        }
        Ok(())
    }

    /// Make the verified objects durable (`syncfs`), then rename each into
    /// `objects/` unless an equal object is already there.
    ///
    /// # Errors
    /// I/O errors.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        fs::syncfs(&self.dir)?;
        for obj in std::mem::take(&mut self.pending) {
            let dst = self.layout.object_path(&obj.key);
            let prefix = obj.key.rel_path()[..2].to_string();
            if !self.prefixes.contains(&prefix) {
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent)?;
                }
                self.prefixes.insert(prefix);
            }
            if fs::rename_noreplace(&obj.path, &dst)? {
                self.objects_written += 1;
                self.bytes_written += obj.size;
            } else {
                fs::remove_file(&obj.path)?;
            }
        }
        self.pending_bytes = 0;
        Ok(())
    }
}

impl Drop for ObjectSink<'_> {
    /// Whatever was not moved into `objects/` is thrown away.
    fn drop(&mut self) {
        let _ = fs::remove_tree(&self.dir);
    }
}
