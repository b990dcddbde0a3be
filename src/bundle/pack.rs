//! Writing bundles: snapshot a directory, or re-pack verified entries.
//!
//! The body's tar stream is cut into chunks of [`BODY_CHUNK`] bytes, each
//! compressed into an independent zstd frame by a pool of single-threaded
//! compressors (`Frames`) and written in order; the position of each
//! entry's first header goes into the index ([`super::index`]) written at
//! the end.
//!
//! Invariant: the bytes written depend only on the manifest and the contents,
//! never on the machine, the number of threads, the time, the user or the
//! order files were read in.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::num::NonZeroU64;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use indicatif::ProgressBar;
use tar::{EntryType, Header};

use super::index::{self, Index};
use super::{MANIFEST_PATH, ZSTD_LEVEL, read_ahead, zstd_workers};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Entry, Kind, MANIFEST_VERSION, Manifest};

type Body = tar::Builder<Frames>;

/// The body file, written front to back. Every [`WRITEBACK_STEP`] bytes the
/// range just written is handed to the kernel for writeback, so the disk
/// works while the CPUs compress and the fsync at the end finds little left
/// to write (it used to wait for the whole bundle).
struct Writeback {
    file: File,
    written: u64,
    kicked: u64,
}

const WRITEBACK_STEP: u64 = 8 << 20;

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.kicked >= WRITEBACK_STEP {
            // POSIX_FADV_DONTNEED starts writeback of the range's dirty pages
            // without waiting for it. Only advice: a failure costs nothing
            // but speed, and the final fsync is what makes the file durable.
            let _ = rustix::fs::fadvise(
                &self.file,
                self.kicked,
                NonZeroU64::new(self.written - self.kicked),
                rustix::fs::Advice::DontNeed,
            );
            self.kicked = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Uncompressed bytes of the body's tar stream per zstd frame. Each frame is
/// compressed on its own, so a reader can start decoding at any frame; the
/// price is the history each frame starts without. On the 300 MiB /
/// 20,000-file tree of `scripts/bench-build.sh`, against the previous single
/// multithreaded stream: 1 MiB frames +0.53 %, 2 MiB +0.25 %, 4 MiB +0.11 %,
/// 8 MiB +0.04 % (docs/bundles.md). A reader wanting one entry decodes half
/// a frame before it on average, a few milliseconds at 4 MiB.
pub const BODY_CHUNK: u32 = 4 << 20;

/// Chunks handed to the compressors and not yet written, per worker: enough
/// that a worker finishing early finds the next chunk waiting, few enough
/// that memory stays at a few chunks (input and output) per worker.
const CHUNKS_PER_WORKER: usize = 2;

/// One chunk for a compressor: its sequence number, the input, and an
/// output buffer to fill (recycled from an earlier frame when possible).
struct Job {
    seq: u64,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// A compressed chunk coming back, with its buffers.
struct Done {
    seq: u64,
    input: Vec<u8>,
    output: io::Result<Vec<u8>>,
}

/// The body's compressor: a [`Write`] that cuts the tar stream into
/// [`BODY_CHUNK`]-byte chunks, has `workers` threads compress each into an
/// independent zstd frame (level [`ZSTD_LEVEL`], checksum, content size,
/// single-threaded compressors: the bytes of a frame depend only on its
/// chunk), and writes the frames in order. At most
/// `workers × CHUNKS_PER_WORKER` chunks are in flight.
struct Frames {
    out: Writeback,
    chunk_size: usize,
    chunk: Vec<u8>,
    /// Uncompressed bytes accepted so far: the position in the tar stream.
    position: u64,
    pool: Pool,
    /// Chunks submitted, and chunks written (so `submitted - written` are in flight).
    submitted: u64,
    written: u64,
    limit: u64,
    /// Compressed frames that finished before an earlier one.
    ready: BTreeMap<u64, Vec<u8>>,
    /// Spare buffers.
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
    /// Compressed size of each frame written, in order.
    sizes: Vec<u32>,
}

/// The compressor threads: jobs go in, finished frames come back. Dropping
/// it stops and joins them.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(workers: usize, queue: usize) -> io::Result<Pool> {
        let (jobs, jobs_rx) = sync_channel::<Job>(queue);
        let (done_tx, done) = channel();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut pool = Pool {
            jobs: Some(jobs),
            done,
            threads: Vec::with_capacity(workers),
        };
        for _ in 0..workers {
            let (rx, tx) = (jobs_rx.clone(), done_tx.clone());
            pool.threads.push(
                std::thread::Builder::new()
                    .name("slipway-zstd".into())
                    .spawn(move || compress_worker(&rx, &tx))?,
            );
        }
        Ok(pool)
    }

    fn send(&self, job: Job) -> io::Result<()> {
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => Ok(()),
            _ => Err(stopped()),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the zstd compressor threads stopped")
}

fn compress_worker(jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>) {
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).and_then(|mut c| {
        c.include_checksum(true)?;
        c.include_contentsize(true)?;
        Ok(c)
    });
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(Job { seq, input, mut output }) = job else {
            return;
        };
        output.clear();
        output.reserve(zstd::zstd_safe::compress_bound(input.len()));
        let output = match &mut compressor {
            Ok(c) => c.compress_to_buffer(&input, &mut output).map(|_| output),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        if done.send(Done { seq, input, output }).is_err() {
            return;
        }
    }
}

impl Frames {
    fn new(out: Writeback, workers: u32, chunk_size: u32) -> io::Result<Frames> {
        let workers = workers.max(1) as usize;
        let limit = workers * CHUNKS_PER_WORKER;
        Ok(Frames {
            out,
            chunk_size: chunk_size as usize,
            chunk: Vec::with_capacity(chunk_size as usize),
            position: 0,
            pool: Pool::new(workers, limit)?,
            submitted: 0,
            written: 0,
            limit: limit as u64,
            ready: BTreeMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            sizes: Vec::new(),
        })
    }

    /// Hand the current chunk to the compressors, first waiting for (and
    /// writing) the oldest when `limit` chunks are in flight.
    fn submit(&mut self) -> io::Result<()> {
        while self.submitted - self.written >= self.limit {
            self.wait_one()?;
        }
        let next = self.inputs.pop().unwrap_or_else(|| Vec::with_capacity(self.chunk_size));
        let input = std::mem::replace(&mut self.chunk, next);
        let job = Job {
            seq: self.submitted,
            input,
            output: self.outputs.pop().unwrap_or_default(),
        };
        self.submitted += 1;
        self.pool.send(job)?;
        // Write whatever is already done, so the disk starts early.
        while let Ok(done) = self.pool.done.try_recv() {
            self.accept(done)?;
        }
        Ok(())
    }

    /// Wait for one compressed chunk and write what is now in order.
    fn wait_one(&mut self) -> io::Result<()> {
        loop {
            match self.pool.done.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(done) => return self.accept(done),
                // Workers only end when the pool is dropped: one that ended
                // now panicked, and its chunk will never come back.
                Err(RecvTimeoutError::Timeout) if !self.pool.threads.iter().any(|t| t.is_finished()) => {}
                Err(_) => return Err(stopped()),
            }
        }
    }

    fn accept(&mut self, done: Done) -> io::Result<()> {
        let Done { seq, mut input, output } = done;
        input.clear();
        self.inputs.push(input);
        self.ready.insert(seq, output?);
        while let Some(frame) = self.ready.remove(&self.written) {
            self.out.write_all(&frame)?;
            let size = u32::try_from(frame.len()).map_err(|_| io::Error::other("a zstd frame over 4 GiB"))?;
            self.sizes.push(size);
            self.written += 1;
            self.outputs.push(frame);
        }
        Ok(())
    }

    /// Compress the last chunk, write every frame, stop the threads; the
    /// file and the compressed size of each frame.
    fn finish(mut self) -> io::Result<(Writeback, Vec<u32>)> {
        if !self.chunk.is_empty() {
            self.submit()?;
        }
        while self.written < self.submitted {
            self.wait_one()?;
        }
        let Frames { out, sizes, .. } = self;
        Ok((out, sizes))
    }
}

impl Write for Frames {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk_size - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        self.position += n as u64;
        if self.chunk.len() == self.chunk_size {
            self.submit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Output buffer of the manifest frame's encoder. Each write drains at most
/// this much of the finished jobs' output; zstd's default 32 KiB drained 8
/// times slower than 256 KiB writes bring input, so every job's 8 MiB output
/// buffer stayed allocated until the job table filled up (when the body went
/// through this encoder too: about 30 MiB resident more with 2 workers,
/// 100 MiB more with 8).
const ENCODER_OUT_BUF: usize = 1 << 20;

/// The encoder of the manifest frame: level [`ZSTD_LEVEL`], checksum, and
/// always the multithreaded mode (`workers` >= 1), whose output does not
/// depend on the number of workers (a manifest of a few hundred MiB is
/// compressed in parallel too). The body's frames are [`Frames`]'.
fn zstd_encoder<W: Write>(w: W, workers: u32) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let raw = zstd::stream::raw::Encoder::new(ZSTD_LEVEL)?;
    let mut enc = zstd::stream::write::Encoder::with_writer(zstd::stream::zio::Writer::new_with_capacity(
        w,
        raw,
        ENCODER_OUT_BUF,
    ));
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
        let file = Writeback {
            file,
            written: 0,
            kicked: 0,
        };
        let frames = Frames::new(file, workers, chunk_size).map_err(write_err(&body_file))?;
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
        let chunk = frames.chunk_size as u64;
        let frame = (frames.position / chunk) as usize;
        let offset = (frames.position % chunk) as u32;
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
        let chunk_size = frames.chunk_size as u32;
        let (mut body, sizes) = frames.finish().map_err(write_err(&body_file))?;

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
        let body = body.file;
        let out = prepend(body, body_file, &prefix, &tmp_dir, true)?;
        let out_path = out.path().to_path_buf();
        out.as_file().sync_all().map_err(|e| Error::io("fsync", &out_path, e))?;
        let compressed_size = fs::metadata(&out_path)?.len();
        Ok(Packed {
            manifest,
            file: out,
            compressed_size,
        })
    }
}

/// Read into `buf`, retrying on EINTR; 0 at the end.
pub(crate) fn read_some(content: &mut dyn Read, buf: &mut [u8], origin: &Path) -> Result<usize> {
    loop {
        match content.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", origin, e)),
        }
    }
}

/// The error for a file whose size is not the one it had when it was listed.
pub(crate) fn changed(origin: &Path, size: u64) -> Error {
    Error::other(format!(
        "`{}` changed while it was being read (expected {size} bytes); rerun when nothing writes to it",
        origin.display()
    ))
}

/// Where the body starts in an archive: the manifest frame is followed by a
/// zstd skippable frame (ignored by every zstd decoder) that pads it to a
/// multiple of this. A constant, so the bytes stay the same on every machine
/// and file system; 4 KiB is a multiple of the block size of common file
/// systems, which lets [`prepend`] insert the prefix without copying the body.
pub const BODY_ALIGN: usize = 4096;

/// Magic number of the zstd skippable frame used as padding (0x184D2A50,
/// the first of the sixteen the format reserves).
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

/// Append one skippable frame to `prefix` so that its length becomes a
/// multiple of [`BODY_ALIGN`] (8 to `BODY_ALIGN + 7` bytes).
fn pad_to_body_align(prefix: &mut Vec<u8>) {
    let pad = (BODY_ALIGN - (prefix.len() + 8) % BODY_ALIGN) % BODY_ALIGN;
    prefix.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    prefix.extend_from_slice(&(pad as u32).to_le_bytes());
    prefix.resize(prefix.len() + pad, 0);
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
    let scanned = scan_dir(root)?;
    prevalidate(&scanned, source_date_epoch, allow_links)?;
    progress.set_length(scanned.iter().map(|s| s.size).sum());
    let mut w = BundleWriter::new(tmp_dir, source_date_epoch)?;
    std::thread::scope(|scope| {
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
        Ok::<(), Error>(())
        // `ahead` is dropped here, before the scope joins the reader, which
        // then stops at its next send if it had not finished.
    })?;
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
    fn padding_is_one_skippable_frame_ending_at_the_body_alignment() {
        for len in [0usize, 1, 100, 4087, 4088, 4089, 4096, 10_000] {
            let mut p = vec![7u8; len];
            pad_to_body_align(&mut p);
            assert_eq!(p.len() % BODY_ALIGN, 0, "{len}");
            assert!(p.len() >= len + 8 && p.len() < len + 8 + BODY_ALIGN, "{len}");
            assert_eq!(p[len..len + 4], SKIPPABLE_MAGIC.to_le_bytes());
            let size = u32::from_le_bytes([p[len + 4], p[len + 5], p[len + 6], p[len + 7]]) as usize;
            assert_eq!(len + 8 + size, p.len());
            assert!(p[len + 8..].iter().all(|b| *b == 0));
        }
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
