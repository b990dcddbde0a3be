//! Writing bundles: snapshot a directory ([`pack_dir`]), or re-pack
//! verified entries ([`BundleWriter`]).
//!
//! The body's tar stream goes to the compressor ([`super::frames`]), which
//! cuts it into chunks of [`BODY_CHUNK`] bytes, each an independent zstd
//! frame; the position of each entry's first header goes into the index
//! ([`super::index`]) written at the end, and the manifest frame, padded to
//! [`BODY_ALIGN`], is put in front of the body without copying it where the
//! file system allows. A directory is listed and checked by
//! [`super::tree`] and its files read by [`super::read_ahead`].
//!
//! Invariant: the bytes written depend only on the manifest and the contents,
//! never on the machine, the number of threads, the time, the user or the
//! order files were read in.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use tar::{EntryType, Header};

pub use super::format::{BODY_ALIGN, BODY_CHUNK};
use super::format::{MANIFEST_PATH, pad_to_body_align};
use super::frames::{Frames, Writeback, zstd_encoder, zstd_workers};
use super::index::{self, Index};
use super::read_ahead;
pub use super::tree::{Scanned, prevalidate, scan_dir};
use super::tree::{changed, read_some};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Entry, Kind, MANIFEST_VERSION, Manifest};

type Body = tar::Builder<Frames>;

/// Streams entries into a new bundle in a temporary directory.
pub struct BundleWriter {
    tmp_dir: PathBuf,
    body: Body,
    body_file: tempfile::TempPath,
    entries: Vec<Entry>,
    /// For each body frame so far, the first entry whose header starts in
    /// it and where ([`index::Frame::first`]).
    starts: Vec<Option<(u32, u32)>>,
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
    /// Where the time went, step by step, for `build -v`.
    pub stages: Vec<(&'static str, std::time::Duration)>,
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
        BundleWriter::with_chunk_size(tmp_dir, source_date_epoch, workers, BODY_CHUNK)
    }

    /// [`BundleWriter::with_workers`] with body frames of `chunk_size`
    /// uncompressed bytes instead of [`BODY_CHUNK`] (tests use small frames
    /// to put many frame boundaries in a small bundle).
    pub(crate) fn with_chunk_size(
        tmp_dir: &Path,
        source_date_epoch: i64,
        workers: u32,
        chunk_size: u32,
    ) -> Result<BundleWriter> {
        let (file, body_file) = fs::temp_file_in(tmp_dir)?.into_parts();
        let frames = Frames::new(Writeback::new(file), workers, chunk_size).map_err(write_err(&body_file))?;
        Ok(BundleWriter {
            tmp_dir: tmp_dir.to_path_buf(),
            body: tar::Builder::new(frames),
            body_file,
            entries: Vec::new(),
            starts: Vec::new(),
            source_date_epoch,
            buf: vec![0; READ_BUF],
            workers,
        })
    }

    /// Note where the next entry's first header starts (before `tar` writes
    /// it, with a GNU long-name entry in front when the path needs one).
    fn mark_entry(&mut self) {
        let frames = self.body.get_ref();
        let chunk = frames.chunk_size() as u64;
        let frame = (frames.position() / chunk) as usize;
        let offset = (frames.position() % chunk) as u32;
        if self.starts.len() <= frame {
            self.starts.resize(frame, None);
            self.starts.push(Some((self.entries.len() as u32, offset)));
        }
    }

    pub fn add_dir(&mut self, path: &str) -> Result<()> {
        self.mark_entry();
        let mut h = header(EntryType::Directory, 0o755, 0, self.source_date_epoch);
        self.body
            .append_data(&mut h, path, io::empty())
            .map_err(write_err(&self.body_file))?;
        self.entries.push(Entry::dir(path.to_string()));
        Ok(())
    }

    pub fn add_symlink(&mut self, path: &str, target: &str, external: bool) -> Result<()> {
        self.mark_entry();
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
        self.file_header(path, executable, size)?;
        let mut buf = std::mem::take(&mut self.buf);
        let mut hasher = Hasher::new();
        let mut count = 0u64;
        loop {
            let n = read_some(content, &mut buf, origin)?;
            if n == 0 {
                break;
            }
            if count + n as u64 > size {
                return Err(changed(origin, size));
            }
            hasher.update(&buf[..n]);
            self.file_data(&buf[..n])?;
            count += n as u64;
        }
        self.buf = buf;
        if count != size {
            return Err(changed(origin, size));
        }
        let digest = hasher.finish();
        self.file_end(path, executable, size, digest)?;
        Ok(digest)
    }

    /// Start a file: its tar header, through `tar`, which adds a GNU
    /// long-name entry when the path needs one. The content follows through
    /// [`Self::file_data`] (exactly `size` bytes, hashed by the caller), then
    /// [`Self::file_end`]. Copied here in large pieces, because `tar`'s own
    /// copy moves 8 KiB at a time.
    pub(crate) fn file_header(&mut self, path: &str, executable: bool, size: u64) -> Result<()> {
        self.mark_entry();
        let mode = if executable { 0o755 } else { 0o644 };
        let mut h = header(EntryType::Regular, mode, size, self.source_date_epoch);
        self.body
            .append_data(&mut h, path, io::empty())
            .map_err(write_err(&self.body_file))
    }

    pub(crate) fn file_data(&mut self, chunk: &[u8]) -> Result<()> {
        self.body.get_mut().write_all(chunk).map_err(write_err(&self.body_file))
    }

    /// End a file: pad its content to a tar block and record the entry.
    pub(crate) fn file_end(&mut self, path: &str, executable: bool, size: u64, digest: Digest) -> Result<()> {
        let pad = (512 - size % 512) % 512;
        self.file_data(&[0u8; 512][..pad as usize])?;
        self.entries
            .push(Entry::file(path.to_string(), executable, size, digest));
        Ok(())
    }

    /// Finish the archive: manifest frame first, then the body, then the index.
    ///
    /// # Errors
    /// On I/O failure, or when the entries do not form a valid manifest.
    pub fn finish(self) -> Result<Packed> {
        let BundleWriter {
            tmp_dir,
            body,
            body_file,
            entries,
            mut starts,
            source_date_epoch,
            buf: _,
            workers,
        } = self;
        let frames = body.into_inner().map_err(write_err(&body_file))?;
        let chunk_size = frames.chunk_size() as u32;
        let mut stages = vec![("waiting for a free compressor", frames.waited)];
        let mut clock = std::time::Instant::now();
        let mut lap = |stages: &mut Vec<_>, what| {
            stages.push((what, clock.elapsed()));
            clock = std::time::Instant::now();
        };
        let (mut body, sizes) = frames.finish().map_err(write_err(&body_file))?;
        lap(&mut stages, "the last frames");

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

        let mut prefix = Vec::new();
        {
            let mut enc = zstd_encoder(&mut prefix, workers).map_err(write_err(&body_file))?;
            enc.write_all(&head).map_err(write_err(&body_file))?;
            enc.finish().map_err(write_err(&body_file))?;
        }
        pad_to_body_align(&mut prefix);

        starts.resize(sizes.len(), None);
        let frames = sizes
            .iter()
            .zip(starts)
            .map(|(&size, first)| index::Frame { size, first })
            .collect();
        let index = Index::new(prefix.len() as u64, chunk_size, manifest.entries.len() as u32, frames);
        body.write_all(&index.encode()).map_err(write_err(&body_file))?;
        let body = body.into_file();
        lap(&mut stages, "the manifest");
        let out = prepend(body, body_file, &prefix, &tmp_dir, true)?;
        lap(&mut stages, "putting it in front");
        let out_path = out.path().to_path_buf();
        out.as_file().sync_all().map_err(|e| Error::io("fsync", &out_path, e))?;
        lap(&mut stages, "fsync of the bundle");
        let compressed_size = fs::metadata(&out_path)?.len();
        Ok(Packed {
            manifest,
            file: out,
            compressed_size,
            stages,
        })
    }
}

/// Put `prefix` in front of the body file and return the whole archive as a
/// temporary file. When `try_insert` and the file system can shift a file's
/// blocks (`fallocate(FALLOC_FL_INSERT_RANGE)`: ext4, XFS), the body is not
/// copied at all; elsewhere it is copied once after the prefix into a new
/// file (`copy_file_range`, a reflink where the file system has them). Both
/// give the same bytes.
fn prepend(
    body: File,
    body_path: tempfile::TempPath,
    prefix: &[u8],
    tmp_dir: &Path,
    try_insert: bool,
) -> Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::FileExt;
    let inserted = try_insert
        && prefix.len().is_multiple_of(BODY_ALIGN)
        && rustix::fs::fallocate(&body, rustix::fs::FallocateFlags::INSERT_RANGE, 0, prefix.len() as u64).is_ok();
    if inserted {
        // The inserted range reads as zeros until the prefix is written over it.
        body.write_all_at(prefix, 0).map_err(write_err(&body_path))?;
        return Ok(tempfile::NamedTempFile::from_parts(body, body_path));
    }
    let mut out = fs::temp_file_in(tmp_dir)?;
    let out_path = out.path().to_path_buf();
    out.write_all(prefix).map_err(write_err(&out_path))?;
    let mut body = body;
    body.seek(io::SeekFrom::Start(0))
        .map_err(|e| Error::io("read", &body_path, e))?;
    io::copy(&mut body, out.as_file_mut()).map_err(write_err(&out_path))?;
    Ok(out)
}

/// Snapshot the directory `root` into a bundle file in `tmp_dir`.
///
/// The files are read and hashed on a second thread ([`read_ahead`]) while
/// this one writes headers and contents into the encoder, whose workers
/// compress: no single thread carries all the serial work.
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
    let started = std::time::Instant::now();
    let scanned = scan_dir(root)?;
    prevalidate(&scanned, source_date_epoch, allow_links)?;
    let listed = started.elapsed();
    progress.set_length(scanned.iter().map(|s| s.size).sum());
    let mut w = BundleWriter::new(tmp_dir, source_date_epoch)?;
    let started = std::time::Instant::now();
    let reader_waited = std::thread::scope(|scope| {
        let files = scanned
            .iter()
            .filter(|s| s.kind == Kind::File)
            .map(|s| read_ahead::Wanted {
                path: &s.abs,
                size: s.size,
            })
            .collect();
        let mut ahead = read_ahead::start(scope, files);
        for s in &scanned {
            match s.kind {
                Kind::Dir => w.add_dir(&s.rel)?,
                Kind::Symlink => {
                    let external = allow_links.iter().any(|a| a == &s.rel);
                    w.add_symlink(&s.rel, s.target.as_deref().unwrap_or_default(), external)?
                }
                Kind::File => {
                    w.file_header(&s.rel, s.executable, s.size)?;
                    let digest = loop {
                        match ahead.next_piece()? {
                            read_ahead::Piece::Data(chunk) => w.file_data(chunk)?,
                            read_ahead::Piece::End(digest) => break digest,
                        }
                    };
                    w.file_end(&s.rel, s.executable, s.size, digest)?;
                    progress.inc(s.size);
                }
            }
        }
        Ok::<_, Error>(ahead.waited)
        // `ahead` is dropped here, before the scope joins the reader, which
        // then stops at its next send if it had not finished.
    })?;
    let packing = started.elapsed();
    let mut packed = w.finish()?;
    packed.stages.splice(
        0..0,
        [
            ("listing the tree", listed),
            ("reading, hashing and compressing", packing),
            ("waiting for the reader", reader_waited),
        ],
    );
    Ok(packed)
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
        for workers in [2, 3, 8] {
            assert!(
                one == sample_bundle(tmp.path(), workers),
                "1 and {workers} workers differ"
            );
        }
        let (m, _) = read_bundle(one.as_slice(), "sample", &mut VerifyOnly).unwrap();
        assert_eq!(m.entries.len(), 4);
    }

    #[test]
    fn the_body_is_independent_frames_of_one_chunk_each_then_the_index() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = sample_bundle(tmp.path(), 2);
        let path = tmp.path().join("sample");
        std::fs::write(&path, &bytes).unwrap();
        let (m, _) = read_bundle(bytes.as_slice(), "sample", &mut VerifyOnly).unwrap();
        let file = File::open(&path).unwrap();
        let index = index::read(&file, bytes.len() as u64, &m).expect("an index");
        // 24 MiB of content and 4 headers: 7 frames of 4 MiB.
        assert_eq!(index.chunk_size, BODY_CHUNK);
        assert_eq!(index.frames.len(), 7);
        assert_eq!(index.body_offset as usize % BODY_ALIGN, 0);
        let mut tar = Vec::new();
        for k in 0..index.frames.len() {
            let (from, to) = (index.frame_offset(k) as usize, index.frame_offset(k + 1) as usize);
            // Each frame decodes on its own, to one chunk (the last to the rest).
            let chunk = zstd::decode_all(&bytes[from..to]).unwrap();
            if k + 1 < index.frames.len() {
                assert_eq!(chunk.len(), BODY_CHUNK as usize, "frame {k}");
            }
            tar.extend(chunk);
        }
        // Entry i's header is where the index says: d, d/noise in frame 0,
        // d/text in frame 3 (after two headers and 12 MiB), link in frame 6.
        let starts: Vec<_> = index.frames.iter().map(|f| f.first).collect();
        let text_at = 2 * 512 + (12 << 20);
        let link_at = text_at + 512 + (12 << 20);
        let chunk = BODY_CHUNK as usize;
        assert_eq!(
            starts,
            vec![
                Some((0, 0)),
                None,
                None,
                Some((2, (text_at % chunk) as u32)),
                None,
                None,
                Some((3, (link_at % chunk) as u32)),
            ]
        );
        assert_eq!(&tar[text_at..text_at + 6], b"d/text");
        assert_eq!(&tar[link_at..link_at + 4], b"link");
        // What follows the body is the index frame, the file's last bytes.
        assert_eq!(index.frame_offset(7) as usize + index.encode().len(), bytes.len());
        assert!(bytes.ends_with(b"SLWX"));
    }

    #[test]
    fn prepend_by_insertion_or_by_copy_gives_the_same_file() {
        let tmp = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut prefix = b"the manifest frame".to_vec();
        pad_to_body_align(&mut prefix);
        let mut results = Vec::new();
        for insert in [true, false] {
            let mut f = fs::temp_file_in(tmp.path()).unwrap();
            f.write_all(&body).unwrap();
            let (file, path) = f.into_parts();
            let out = prepend(file, path, &prefix, tmp.path(), insert).unwrap();
            results.push(std::fs::read(out.path()).unwrap());
        }
        assert!(results[0] == [prefix.as_slice(), body.as_slice()].concat());
        assert!(results[0] == results[1]);
    }
}
