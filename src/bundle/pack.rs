//! Writing bundles: snapshot a directory, or re-pack verified entries.
//!
//! Invariant: the bytes written depend only on the manifest and the contents,
//! never on the machine, the time, the user or the order files were read in.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use tar::{EntryType, Header};

use super::{MANIFEST_PATH, ZSTD_LEVEL, zstd_workers};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Entry, Kind, MANIFEST_VERSION, Manifest};

type Body = tar::Builder<zstd::stream::write::Encoder<'static, BufWriter<File>>>;

/// The one encoder configuration of every archive: level [`ZSTD_LEVEL`],
/// checksums, and always the multithreaded mode (`workers` >= 1), whose
/// output does not depend on the number of workers.
fn zstd_encoder<W: Write>(w: W, workers: u32) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
    enc.include_checksum(true)?;
    enc.multithread(workers.max(1))?;
    Ok(enc)
}

/// Streams entries into a new bundle in a temporary directory.
pub struct BundleWriter {
    tmp_dir: PathBuf,
    body: Body,
    body_file: tempfile::TempPath,
    entries: Vec<Entry>,
    source_date_epoch: i64,
    /// Read buffer for file contents.
    buf: Vec<u8>,
    workers: u32,
}

/// Bytes read from a file at a time: large enough that system calls and
/// encoder calls are rare, small enough to stay in a core's cache while it
/// is hashed and handed to the encoder.
const READ_BUF: usize = 256 * 1024;

/// A finished bundle file, not yet in any store.
pub struct Packed {
    pub manifest: Manifest,
    pub file: tempfile::NamedTempFile,
    pub compressed_size: u64,
}

fn header(kind: EntryType, mode: u32, size: u64, mtime: i64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime.max(0) as u64);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn write_err(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::io("write", path, e)
}

impl BundleWriter {
    /// Start a bundle whose temporary files live in `tmp_dir`.
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub fn new(tmp_dir: &Path, source_date_epoch: i64) -> Result<BundleWriter> {
        BundleWriter::with_workers(tmp_dir, source_date_epoch, zstd_workers())
    }

    /// [`BundleWriter::new`] with an explicit number of zstd workers (speed
    /// and memory only: the bytes are the same for any count).
    ///
    /// # Errors
    /// When the temporary file cannot be created.
    pub fn with_workers(tmp_dir: &Path, source_date_epoch: i64, workers: u32) -> Result<BundleWriter> {
        let (file, body_file) = fs::temp_file_in(tmp_dir)?.into_parts();
        let enc = zstd_encoder(BufWriter::with_capacity(1 << 20, file), workers).map_err(write_err(&body_file))?;
        Ok(BundleWriter {
            tmp_dir: tmp_dir.to_path_buf(),
            body: tar::Builder::new(enc),
            body_file,
            entries: Vec::new(),
            source_date_epoch,
            buf: vec![0; READ_BUF],
            workers,
        })
    }

    pub fn add_dir(&mut self, path: &str) -> Result<()> {
        let mut h = header(EntryType::Directory, 0o755, 0, self.source_date_epoch);
        self.body
            .append_data(&mut h, path, io::empty())
            .map_err(write_err(&self.body_file))?;
        self.entries.push(Entry::dir(path.to_string()));
        Ok(())
    }

    pub fn add_symlink(&mut self, path: &str, target: &str, external: bool) -> Result<()> {
        let mut h = header(EntryType::Symlink, 0o777, 0, self.source_date_epoch);
        self.body
            .append_link(&mut h, path, target)
            .map_err(write_err(&self.body_file))?;
        let mut e = Entry::symlink(path.to_string(), target.to_string());
        e.external = external;
        self.entries.push(e);
        Ok(())
    }

    /// Add a file of exactly `size` bytes read from `content`; returns its digest.
    ///
    /// The header goes through `tar` (which adds a GNU long-name entry when
    /// the path needs one); the content is copied here with a large buffer,
    /// hashed on the way, because `tar`'s own copy moves 8 KiB at a time.
    ///
    /// # Errors
    /// When `content` yields fewer or more than `size` bytes (`origin` names it).
    pub fn add_file(
        &mut self,
        path: &str,
        executable: bool,
        size: u64,
        content: &mut dyn Read,
        origin: &Path,
    ) -> Result<Digest> {
        let mode = if executable { 0o755 } else { 0o644 };
        let mut h = header(EntryType::Regular, mode, size, self.source_date_epoch);
        self.body
            .append_data(&mut h, path, io::empty())
            .map_err(write_err(&self.body_file))?;
        let enc = self.body.get_mut();
        let mut hasher = Hasher::new();
        let mut count = 0u64;
        let changed = || {
            Error::other(format!(
                "`{}` changed while it was being read (expected {size} bytes); rerun when nothing writes to it",
                origin.display()
            ))
        };
        loop {
            let n = match content.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", origin, e)),
            };
            if count + n as u64 > size {
                return Err(changed());
            }
            let chunk = &self.buf[..n];
            hasher.update(chunk);
            enc.write_all(chunk).map_err(write_err(&self.body_file))?;
            count += n as u64;
        }
        if count != size {
            return Err(changed());
        }
        let pad = (512 - size % 512) % 512;
        enc.write_all(&[0u8; 512][..pad as usize])
            .map_err(write_err(&self.body_file))?;
        let digest = hasher.finish();
        self.entries
            .push(Entry::file(path.to_string(), executable, size, digest));
        Ok(digest)
    }

    /// Finish the archive: manifest frame first, then the body.
    ///
    /// # Errors
    /// On I/O failure, or when the entries do not form a valid manifest.
    pub fn finish(self) -> Result<Packed> {
        let BundleWriter {
            tmp_dir,
            body,
            body_file,
            entries,
            source_date_epoch,
            buf: _,
            workers,
        } = self;
        let enc = body.into_inner().map_err(write_err(&body_file))?;
        let mut bw = enc.finish().map_err(write_err(&body_file))?;
        bw.flush().map_err(write_err(&body_file))?;
        drop(bw);

        let manifest = Manifest {
            version: MANIFEST_VERSION,
            source_date_epoch,
            entries,
        };
        manifest.validate()?;
        let bytes = manifest.canonical_bytes();

        let mut head = tar::Builder::new(Vec::new());
        let mut h = header(EntryType::Directory, 0o755, 0, source_date_epoch);
        head.append_data(&mut h, ".slipway", io::empty())
            .map_err(write_err(&body_file))?;
        let mut h = header(EntryType::Regular, 0o644, bytes.len() as u64, source_date_epoch);
        head.append_data(&mut h, MANIFEST_PATH, bytes.as_slice())
            .map_err(write_err(&body_file))?;
        let mut head = head.into_inner().map_err(write_err(&body_file))?;
        head.truncate(head.len() - 1024); // drop the end-of-archive blocks: the body follows

        let mut out = fs::temp_file_in(&tmp_dir)?;
        let out_path = out.path().to_path_buf();
        {
            let mut enc = zstd_encoder(out.as_file_mut(), workers).map_err(write_err(&out_path))?;
            enc.write_all(&head).map_err(write_err(&out_path))?;
            enc.finish().map_err(write_err(&out_path))?;
        }
        let mut body_in = fs::open(&body_file)?;
        io::copy(&mut body_in, out.as_file_mut()).map_err(write_err(&out_path))?;
        out.as_file().sync_all().map_err(|e| Error::io("fsync", &out_path, e))?;
        let compressed_size = fs::metadata(&out_path)?.len();
        drop(body_file);
        Ok(Packed {
            manifest,
            file: out,
            compressed_size,
        })
    }
}

/// One path found by [`scan_dir`].
pub struct Scanned {
    pub rel: String,
    pub abs: PathBuf,
    pub kind: Kind,
    pub executable: bool,
    pub size: u64,
    pub target: Option<String>,
}

/// Walk `root` and list its entries sorted bytewise by path, refusing special
/// files, non-UTF-8 names and the reserved `.slipway/`.
///
/// # Errors
/// One-line error naming the offending path.
pub fn scan_dir(root: &Path) -> Result<Vec<Scanned>> {
    let meta = fs::metadata(root)?;
    if !meta.is_dir() {
        return Err(Error::usage(format!("`{}` is not a directory", root.display())));
    }
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for (name, abs) in fs::read_dir_sorted(&dir)? {
            let Some(name) = name.to_str() else {
                return Err(Error::other(format!(
                    "`{}` has a name that is not valid UTF-8; rename it",
                    abs.display()
                )));
            };
            let rel = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let m = fs::symlink_metadata(&abs)?;
            let ft = m.file_type();
            let (kind, executable, size, target) = if ft.is_dir() {
                stack.push((abs.clone(), rel.clone()));
                (Kind::Dir, false, 0, None)
            } else if ft.is_file() {
                (Kind::File, m.permissions().mode() & 0o111 != 0, m.size(), None)
            } else if ft.is_symlink() {
                let t = fs::read_link(&abs)?;
                let Some(t) = t.to_str() else {
                    return Err(Error::other(format!(
                        "symlink `{}` has a target that is not valid UTF-8",
                        abs.display()
                    )));
                };
                (Kind::Symlink, false, 0, Some(t.to_string()))
            } else {
                return Err(Error::other(format!(
                    "`{}` is a special file (device, fifo or socket); bundles hold only files, directories and symlinks",
                    abs.display()
                )));
            };
            out.push(Scanned {
                rel,
                abs,
                kind,
                executable,
                size,
                target,
            });
        }
    }
    out.sort_by(|a, b| a.rel.as_bytes().cmp(b.rel.as_bytes()));
    Ok(out)
}

/// Check a scanned tree against the manifest rules before reading any content.
///
/// # Errors
/// Integrity error naming the first bad path.
pub fn prevalidate(scanned: &[Scanned], source_date_epoch: i64, allow_links: &[String]) -> Result<()> {
    let entries = scanned
        .iter()
        .map(|s| to_entry(s, Digest([0; 32]), allow_links))
        .collect();
    Manifest {
        version: MANIFEST_VERSION,
        source_date_epoch,
        entries,
    }
    .validate()
}

fn to_entry(s: &Scanned, digest: Digest, allow_links: &[String]) -> Entry {
    match s.kind {
        Kind::Dir => Entry::dir(s.rel.clone()),
        Kind::File => Entry::file(s.rel.clone(), s.executable, s.size, digest),
        Kind::Symlink => {
            let mut e = Entry::symlink(s.rel.clone(), s.target.clone().unwrap_or_default());
            e.external = allow_links.iter().any(|a| a == &s.rel);
            e
        }
    }
}

/// Snapshot the directory `root` into a bundle file in `tmp_dir`.
///
/// # Errors
/// When the tree breaks a bundle rule or cannot be read.
pub fn pack_dir(
    root: &Path,
    tmp_dir: &Path,
    source_date_epoch: i64,
    allow_links: &[String],
    progress: &ProgressBar,
) -> Result<Packed> {
    let scanned = scan_dir(root)?;
    prevalidate(&scanned, source_date_epoch, allow_links)?;
    progress.set_length(scanned.iter().map(|s| s.size).sum());
    let mut w = BundleWriter::new(tmp_dir, source_date_epoch)?;
    for s in &scanned {
        match s.kind {
            Kind::Dir => w.add_dir(&s.rel)?,
            Kind::Symlink => {
                let external = allow_links.iter().any(|a| a == &s.rel);
                w.add_symlink(&s.rel, s.target.as_deref().unwrap_or_default(), external)?
            }
            Kind::File => {
                let mut f = fs::open(&s.abs)?;
                w.add_file(&s.rel, s.executable, s.size, &mut f, &s.abs)?;
                progress.inc(s.size);
            }
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::unpack::{VerifyOnly, read_bundle};

    /// A bundle big enough for several zstd jobs (8 MiB each at level 3), so
    /// that the number of workers would show in the output if it could.
    fn sample_bundle(tmp: &Path, workers: u32) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..(12 << 20))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let text: Vec<u8> = (0..(12 << 20))
            .map(|i: u32| b"slipway bundles "[(i % 16) as usize] ^ (i >> 20) as u8)
            .collect();
        let mut w = BundleWriter::with_workers(tmp, 315_532_800, workers).unwrap();
        w.add_dir("d").unwrap();
        w.add_file(
            "d/noise",
            false,
            noise.len() as u64,
            &mut noise.as_slice(),
            Path::new("noise"),
        )
        .unwrap();
        w.add_file(
            "d/text",
            true,
            text.len() as u64,
            &mut text.as_slice(),
            Path::new("text"),
        )
        .unwrap();
        w.add_symlink("link", "d/text", false).unwrap();
        let packed = w.finish().unwrap();
        std::fs::read(packed.file.path()).unwrap()
    }

    #[test]
    fn archive_bytes_do_not_depend_on_the_number_of_zstd_workers() {
        let tmp = tempfile::tempdir().unwrap();
        let one = sample_bundle(tmp.path(), 1);
        assert!(one == sample_bundle(tmp.path(), 2), "1 and 2 workers differ");
        assert!(one == sample_bundle(tmp.path(), 3), "1 and 3 workers differ");
        let (m, _) = read_bundle(one.as_slice(), "sample", &mut VerifyOnly).unwrap();
        assert_eq!(m.entries.len(), 4);
    }
}
