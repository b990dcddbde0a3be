//! Read-ahead for [`super::pack::pack_dir`]: one thread opens, reads and
//! hashes the files of a scanned tree, in manifest order, while the packing
//! thread feeds zstd. Contents travel in batches of [`BATCH_BYTES`] that may
//! hold many small files or a piece of a large one, so the two threads meet
//! about once per batch rather than once per file.
//!
//! Invariants: files arrive in the order given, each as its exact bytes
//! followed by its digest; at most [`BATCHES_IN_FLIGHT`] + 2 batches exist at
//! a time (memory does not grow with the tree); a file whose size differs
//! from the listed one, or that cannot be read, ends the stream with an error
//! naming it; the reader stops as soon as the consumer goes away.

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use super::tree::{changed, read_some};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::fs;

/// Bytes of file content per batch.
pub const BATCH_BYTES: usize = 256 * 1024;
/// Full batches waiting for the consumer (1 MiB).
pub const BATCHES_IN_FLIGHT: usize = 4;

/// A file to read: where it is and how big it was when the tree was listed.
pub struct Wanted<'a> {
    pub path: &'a Path,
    pub size: u64,
}

/// Consecutive file contents: `buf[..fill]`, cut into `parts`.
struct Batch {
    buf: Vec<u8>,
    fill: usize,
    parts: Vec<Part>,
}

#[derive(Clone, Copy)]
enum Part {
    /// The next `n` bytes of the current file.
    Data(usize),
    /// The current file is complete; the next part starts another one.
    End(Digest),
}

impl Batch {
    fn new() -> Batch {
        Batch {
            buf: vec![0; BATCH_BYTES],
            fill: 0,
            parts: Vec::new(),
        }
    }
}

/// What a file's content looks like to the consumer.
pub enum Piece<'a> {
    Data(&'a [u8]),
    End(Digest),
}

/// The consumer's side.
pub struct ReadAhead {
    /// Time the consumer spent waiting for the reader (`build -v`).
    pub waited: std::time::Duration,
    full: Receiver<Result<Batch>>,
    empty: Sender<Batch>,
    current: Option<Batch>,
    part: usize,
    offset: usize,
}

/// Start reading `files` on a thread of `scope`; the returned [`ReadAhead`]
/// yields their contents in order. Dropping it stops the reader.
pub fn start<'scope, 'env>(scope: &'scope std::thread::Scope<'scope, 'env>, files: Vec<Wanted<'env>>) -> ReadAhead {
    let (full_tx, full) = sync_channel(BATCHES_IN_FLIGHT);
    let (empty, empty_rx) = channel();
    scope.spawn(move || reader(&files, &full_tx, &empty_rx));
    ReadAhead {
        waited: std::time::Duration::ZERO,
        full,
        empty,
        current: None,
        part: 0,
        offset: 0,
    }
}

impl ReadAhead {
    /// The next piece of the current file: some of its bytes, or its end
    /// and digest.
    ///
    /// # Errors
    /// The reader's error (a file that cannot be read or changed size).
    pub fn next_piece(&mut self) -> Result<Piece<'_>> {
        loop {
            if let Some(batch) = &self.current
                && self.part < batch.parts.len()
            {
                break;
            }
            if let Some(done) = self.current.take() {
                let _ = self.empty.send(done);
            }
            let started = std::time::Instant::now();
            let batch = self.full.recv();
            self.waited += started.elapsed();
            let batch = batch.map_err(|_| Error::other("the file reader stopped before the last file"))??;
            self.current = Some(batch);
            self.part = 0;
            self.offset = 0;
        }
        let Some(batch) = &self.current else {
            return Err(Error::other("the file reader lost a batch"));
        };
        let part = batch.parts[self.part];
        self.part += 1;
        Ok(match part {
            Part::Data(n) => {
                let start = self.offset;
                self.offset += n;
                Piece::Data(&batch.buf[start..start + n])
            }
            Part::End(digest) => Piece::End(digest),
        })
    }
}

/// The reader thread: fill batches with the files in order, send each when
/// it is full, and the last one at the end. Errors are sent on, then it stops.
fn reader(files: &[Wanted<'_>], full: &SyncSender<Result<Batch>>, empty: &Receiver<Batch>) {
    let mut batch = Batch::new();
    for f in files {
        match read_into(f, &mut batch, full, empty) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = full.send(Err(e));
                return;
            }
        }
    }
    if !batch.parts.is_empty() {
        let _ = full.send(Ok(batch));
    }
}

/// Append one file to `batch`, sending batches as they fill. `Ok(false)`
/// when the consumer has gone away.
fn read_into(
    f: &Wanted<'_>,
    batch: &mut Batch,
    full: &SyncSender<Result<Batch>>,
    empty: &Receiver<Batch>,
) -> Result<bool> {
    let mut file = fs::open(f.path)?;
    let mut hasher = Hasher::new();
    let mut count = 0u64;
    loop {
        if batch.fill == batch.buf.len() {
            let mut next = empty.try_recv().unwrap_or_else(|_| Batch::new());
            next.fill = 0;
            next.parts.clear();
            if full.send(Ok(std::mem::replace(batch, next))).is_err() {
                return Ok(false);
            }
        }
        let n = read_some(&mut file, &mut batch.buf[batch.fill..], f.path)?;
        if n == 0 {
            break;
        }
        if count + n as u64 > f.size {
            return Err(changed(f.path, f.size));
        }
        hasher.update(&batch.buf[batch.fill..batch.fill + n]);
        batch.fill += n;
        batch.parts.push(Part::Data(n));
        count += n as u64;
    }
    if count != f.size {
        return Err(changed(f.path, f.size));
    }
    batch.parts.push(Part::End(hasher.finish()));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(files: &[(std::path::PathBuf, u64)]) -> Result<Vec<(Vec<u8>, Digest)>> {
        std::thread::scope(|scope| {
            let wanted = files.iter().map(|(p, size)| Wanted { path: p, size: *size }).collect();
            let mut ahead = start(scope, wanted);
            let mut out = Vec::new();
            for _ in files {
                let mut content = Vec::new();
                loop {
                    match ahead.next_piece()? {
                        Piece::Data(d) => content.extend_from_slice(d),
                        Piece::End(digest) => {
                            out.push((content, digest));
                            break;
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    #[test]
    fn files_of_every_size_arrive_whole_in_order_with_their_digests() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [
            0usize,
            1,
            1000,
            BATCH_BYTES - 1,
            BATCH_BYTES,
            BATCH_BYTES + 1,
            3 * BATCH_BYTES + 17,
            0,
            5,
        ];
        let mut files = Vec::new();
        let mut contents = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let content: Vec<u8> = (0..*size).map(|j| (i * 7 + j * 13) as u8).collect();
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, &content).unwrap();
            files.push((p, *size as u64));
            contents.push(content);
        }
        let got = read_all(&files).unwrap();
        assert_eq!(got.len(), sizes.len());
        for ((content, digest), want) in got.iter().zip(&contents) {
            assert!(content == want);
            assert_eq!(*digest, Digest::of(want));
        }
    }

    #[test]
    fn a_file_that_changed_size_or_vanished_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grew");
        std::fs::write(&p, b"0123456789").unwrap();
        let err = read_all(&[(p.clone(), 4)]).err().unwrap().to_string();
        assert!(
            err.contains("grew") && err.contains("changed while it was being read"),
            "{err}"
        );
        let err = read_all(&[(p, 20)]).err().unwrap().to_string();
        assert!(err.contains("changed while it was being read"), "{err}");
        let gone = dir.path().join("gone");
        let err = read_all(&[(gone, 1)]).err().unwrap().to_string();
        assert!(err.contains("gone"), "{err}");
    }

    #[test]
    fn dropping_the_consumer_stops_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..64 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, vec![i as u8; BATCH_BYTES]).unwrap();
            files.push((p, BATCH_BYTES as u64));
        }
        // The scope only returns once the reader thread has ended.
        std::thread::scope(|scope| {
            let wanted = files.iter().map(|(p, size)| Wanted { path: p, size: *size }).collect();
            let mut ahead = start(scope, wanted);
            assert!(matches!(ahead.next_piece(), Ok(Piece::Data(_))));
            drop(ahead);
        });
    }
}
