//! The body's compressor: `Frames` is a [`Write`] that cuts the tar
//! stream into chunks of a fixed size (`BODY_CHUNK` in a bundle), has a
//! pool of threads compress each chunk into an independent zstd frame, and
//! writes the frames in order to a `Writeback` file; `zstd_encoder`
//! makes the manifest frame; [`zstd_workers`] says how many threads a build
//! uses.
//!
//! Invariant: the bytes written depend only on the tar stream and the chunk
//! size — never on the number of workers or the order they finish in (each
//! frame is compressed by a single-threaded compressor, and frames are
//! written by sequence number); at most `workers × CHUNKS_PER_WORKER`
//! chunks are in flight, so memory does not grow with the tree.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroU64;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::format::ZSTD_LEVEL;

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

/// The body file, written front to back. Every [`WRITEBACK_STEP`] bytes the
/// range just written is handed to the kernel for writeback, so the disk
/// works while the CPUs compress and the fsync at the end finds little left
/// to write (it used to wait for the whole bundle).
pub(crate) struct Writeback {
    file: File,
    written: u64,
    kicked: u64,
}

impl Writeback {
    pub(crate) fn new(file: File) -> Writeback {
        Writeback {
            file,
            written: 0,
            kicked: 0,
        }
    }

    pub(crate) fn into_file(self) -> File {
        self.file
    }
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
/// [`BODY_CHUNK`](super::format::BODY_CHUNK)-byte chunks, has `workers` threads compress each into an
/// independent zstd frame (level [`ZSTD_LEVEL`], checksum, content size,
/// single-threaded compressors: the bytes of a frame depend only on its
/// chunk), and writes the frames in order. At most
/// `workers × CHUNKS_PER_WORKER` chunks are in flight.
pub(crate) struct Frames {
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
    /// Time spent waiting for a compressor with every one busy (`build -v`).
    pub(crate) waited: std::time::Duration,
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
    pub(crate) fn new(out: Writeback, workers: u32, chunk_size: u32) -> io::Result<Frames> {
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
            waited: std::time::Duration::ZERO,
            inputs: Vec::new(),
            outputs: Vec::new(),
            sizes: Vec::new(),
        })
    }

    /// Uncompressed bytes per frame.
    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Uncompressed bytes accepted so far: the position in the tar stream.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Hand the current chunk to the compressors, first waiting for (and
    /// writing) the oldest when `limit` chunks are in flight.
    fn submit(&mut self) -> io::Result<()> {
        let started = std::time::Instant::now();
        while self.submitted - self.written >= self.limit {
            self.wait_one()?;
        }
        self.waited += started.elapsed();
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
    pub(crate) fn finish(mut self) -> io::Result<(Writeback, Vec<u32>)> {
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
pub(crate) fn zstd_encoder<W: Write>(w: W, workers: u32) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
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
