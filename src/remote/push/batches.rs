//! Batches: the objects a host lacks, read from the frames of the local
//! bundle that hold them and compressed, each batch one zstd frame
//! announced by the list of its manifest entries. [`send_batches`] produces
//! each batch once ([`BatchEncoder`], a stream of [`Piece`]s) and writes it
//! to every host of a group that lacks the same objects.
//!
//! Invariants: memory is bounded by one batch's compression window and one
//! DATA chunk, whatever the file sizes (a file larger than [`BATCH_BYTES`]
//! is a batch of its own, streamed); entries go in ascending order, as
//! planned, or the encoder refuses them.

use std::io::{Read, Write};

use indicatif::ProgressBar;

use super::job::{PushJob, stream_results};
use crate::bundle::ZSTD_LEVEL;
use crate::bundle::unpack::read_entries;
use crate::error::{Error, Result, describe_io};
use crate::manifest::{Entry, Manifest};
use crate::protocol::{DATA_CHUNK, Message};
use crate::remote::session::HostSession;

/// A batch closes when its contents reach this many bytes…
pub const BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// …or this many objects.
pub const BATCH_OBJECTS: usize = 1000;

/// Send the batches of the objects at `indices` to every session of
/// `group` (hosts that lack the same objects): each batch is read from the
/// bundle and compressed once, and its bytes are written to every session.
/// A session that fails is dropped from the stream and the others go on;
/// the results are in `group`'s order, errors naming their host.
pub fn send_batches(
    job: &PushJob<'_>,
    indices: &[u32],
    group: &mut [(&mut HostSession, ProgressBar)],
) -> Vec<Result<()>> {
    let batches = plan_batches(job.manifest, indices);
    let path = job.store.bundle_path(&job.id);
    let mut failed: Vec<Option<Error>> = group.iter().map(|_| None).collect();
    let progress = ProgressBar::hidden();
    progress.set_length(batches.iter().map(|b| b.bytes).sum());
    let read = {
        let mut encoder = BatchEncoder::new(&batches, &progress, |piece: Piece<'_>| {
            for ((session, bar), failed) in group.iter_mut().zip(failed.iter_mut()) {
                if failed.is_some() {
                    continue;
                }
                let sent = match piece {
                    Piece::Start(entries) => session.ch.send(&Message::Batch {
                        entries: entries.to_vec(),
                    }),
                    Piece::Data(bytes) => session.ch.send_data(bytes),
                    Piece::End => session.ch.send_end(),
                };
                match sent {
                    Ok(()) => bar.set_position(progress.position()),
                    Err(e) => *failed = Some(e),
                }
            }
            if failed.iter().all(Option::is_some) {
                return Err(Error::other("every host of the batch stream failed"));
            }
            Ok(())
        });
        let read = read_entries(&path, job.manifest, job.id, indices, &mut |i, entry, content| {
            encoder.entry(i, entry, content)
        });
        match read {
            Err(Error::Integrity(msg)) => Err(Error::integrity(format!("{msg}; run `slipway verify {}`", job.name))),
            Err(e) => Err(e),
            Ok(()) if !encoder.complete() => Err(Error::integrity(format!(
                "bundle `{}` does not hold {}; run `slipway verify {}`",
                path.display(),
                job.id,
                job.name
            ))),
            Ok(()) => Ok(()),
        }
    };
    stream_results(group, failed, &read, &format!("the push of `{}`", job.name))
}

/// A planned batch: manifest entries (ascending) and their total size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub entries: Vec<u32>,
    pub bytes: u64,
}

/// Group the needed entries (ascending) into batches by size and count; a
/// file larger than [`BATCH_BYTES`] is a batch of its own (streamed, never
/// held in memory).
pub fn plan_batches(manifest: &Manifest, indices: &[u32]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut current = Batch {
        entries: Vec::new(),
        bytes: 0,
    };
    for &i in indices {
        let size = manifest.entries.get(i as usize).map_or(0, |e| e.size);
        if !current.entries.is_empty() && (current.bytes + size > BATCH_BYTES || current.entries.len() >= BATCH_OBJECTS)
        {
            out.push(std::mem::replace(
                &mut current,
                Batch {
                    entries: Vec::new(),
                    bytes: 0,
                },
            ));
        }
        current.entries.push(i);
        current.bytes += size;
    }
    if !current.entries.is_empty() {
        out.push(current);
    }
    out
}

/// A piece of the batch stream: sent as-is to every host that needs it.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    /// A batch begins (the `batch` message with these entries).
    Start(&'a [u32]),
    /// Compressed bytes of the current batch (DATA frames).
    Data(&'a [u8]),
    /// The batch's zstd frame is complete (END).
    End,
}

/// Compresses the planned batches, each into one zstd frame, from the
/// planned entries' contents (fed by [`BatchEncoder::entry`], e.g. from
/// [`read_entries`]), handing the pieces to `emit`.
pub struct BatchEncoder<'a, F> {
    batches: &'a [Batch],
    emit: F,
    bar: &'a ProgressBar,
    batch: usize,
    pos: usize,
    enc: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    buf: Vec<u8>,
}

impl<'a, F: FnMut(Piece<'_>) -> Result<()>> BatchEncoder<'a, F> {
    pub fn new(batches: &'a [Batch], bar: &'a ProgressBar, emit: F) -> BatchEncoder<'a, F> {
        BatchEncoder {
            batches,
            emit,
            bar,
            batch: 0,
            pos: 0,
            enc: None,
            buf: vec![0; 256 * 1024],
        }
    }

    /// True when every planned batch was emitted.
    pub fn complete(&self) -> bool {
        self.batch == self.batches.len()
    }
}

fn zstd_error(e: std::io::Error) -> Error {
    Error::other(format!("cannot compress a batch: {}", describe_io(&e)))
}

impl<F: FnMut(Piece<'_>) -> Result<()>> BatchEncoder<'_, F> {
    /// Compress planned entry `index` (`entry`, its `content`). Entries come
    /// in plan order (the batches' entries, one after the other); a batch's
    /// pieces are emitted as it fills, its end after its last entry.
    ///
    /// # Errors
    /// An entry out of plan order; `content` failing (an integrity error
    /// naming the entry); `emit`'s own errors.
    pub fn entry(&mut self, index: u32, entry: &Entry, content: &mut dyn Read) -> Result<()> {
        let Some(batch) = self.batches.get(self.batch) else {
            return Err(Error::other(format!("entry {index} was not planned for any batch")));
        };
        if batch.entries.get(self.pos) != Some(&index) {
            return Err(Error::other(format!(
                "entry {index} came out of the planned order of the batches"
            )));
        }
        if self.pos == 0 {
            (self.emit)(Piece::Start(&batch.entries))?;
            // One thread on purpose: multithreaded zstd buffers whole jobs
            // (over 100 MiB for one large file), and with the host decoding
            // on the same cores it was slower on loopback.
            let enc =
                zstd::stream::write::Encoder::new(Vec::with_capacity(DATA_CHUNK), ZSTD_LEVEL).map_err(zstd_error)?;
            self.enc = Some(enc);
        }
        let Some(enc) = self.enc.as_mut() else {
            return Err(Error::other("batch encoder lost its state"));
        };
        loop {
            let n = match content.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::integrity(format!(
                        "cannot read `{}` from the local bundle: {}",
                        entry.path,
                        describe_io(&e)
                    )));
                }
            };
            enc.write_all(&self.buf[..n]).map_err(zstd_error)?;
            self.bar.inc(n as u64);
            if enc.get_ref().len() >= DATA_CHUNK {
                (self.emit)(Piece::Data(enc.get_ref()))?;
                enc.get_mut().clear();
            }
        }
        self.pos += 1;
        if self.pos == batch.entries.len() {
            self.pos = 0;
            self.batch += 1;
            if let Some(enc) = self.enc.take() {
                let out = enc.finish().map_err(zstd_error)?;
                (self.emit)(Piece::Data(&out))?;
            }
            (self.emit)(Piece::End)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(sizes: &[u64]) -> Manifest {
        crate::manifest::sized_for_tests(sizes)
    }

    #[test]
    fn batches_close_on_size_and_count_and_big_files_go_alone() {
        let m = manifest(&[10, BATCH_BYTES, 10, 10]);
        let b = plan_batches(&m, &[0, 1, 2, 3]);
        let entries: Vec<Vec<u32>> = b.iter().map(|b| b.entries.clone()).collect();
        assert_eq!(entries, vec![vec![0], vec![1], vec![2, 3]]);
        assert_eq!(b[2].bytes, 20);
        let many = manifest(&vec![1; BATCH_OBJECTS + 1]);
        let all: Vec<u32> = (0..=BATCH_OBJECTS as u32).collect();
        assert_eq!(plan_batches(&many, &all).len(), 2);
        assert!(plan_batches(&many, &[]).is_empty());
    }

    #[test]
    fn batches_are_encoded_from_the_entries_read_out_of_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = crate::bundle::pack::BundleWriter::with_chunk_size(dir.path(), 0, 2, 8192).unwrap();
        let contents: Vec<Vec<u8>> = (0..40u32)
            .map(|i| (0..(i * 997) % 20_000).map(|j| (j * 7 + i) as u8).collect())
            .collect();
        for (i, c) in contents.iter().enumerate() {
            let path = format!("f{i:03}");
            w.add_file(
                &path,
                false,
                c.len() as u64,
                &mut c.as_slice(),
                std::path::Path::new(&path),
            )
            .unwrap();
        }
        let packed = w.finish().unwrap();
        let m = packed.manifest;
        let wanted: Vec<u32> = (0..40).filter(|i| i % 3 != 1).collect();
        let mut batches = plan_batches(&m, &wanted);
        // Small batches, so that several are encoded.
        batches = batches
            .iter()
            .flat_map(|b| b.entries.chunks(5))
            .map(|e| Batch {
                entries: e.to_vec(),
                bytes: e.iter().map(|&i| contents[i as usize].len() as u64).sum(),
            })
            .collect();
        let bar = ProgressBar::hidden();
        let mut got: Vec<(Vec<u32>, Vec<u8>, bool)> = Vec::new();
        let mut encoder = BatchEncoder::new(&batches, &bar, |piece: Piece<'_>| {
            match piece {
                Piece::Start(e) => got.push((e.to_vec(), Vec::new(), false)),
                Piece::Data(d) => got.last_mut().unwrap().1.extend_from_slice(d),
                Piece::End => got.last_mut().unwrap().2 = true,
            }
            Ok(())
        });
        crate::bundle::unpack::read_entries(packed.file.path(), &m, m.id(), &wanted, &mut |i, e, c| {
            encoder.entry(i, e, c)
        })
        .unwrap();
        assert!(encoder.complete());
        // An entry out of plan order is refused.
        assert!(encoder.entry(0, &m.entries[0], &mut std::io::empty()).is_err());
        drop(encoder);
        assert_eq!(got.len(), batches.len());
        for ((entries, frame, ended), batch) in got.iter().zip(&batches) {
            assert_eq!(entries, &batch.entries);
            assert!(ended);
            let want: Vec<u8> = entries.iter().flat_map(|&i| contents[i as usize].clone()).collect();
            assert!(zstd::decode_all(frame.as_slice()).unwrap() == want);
        }
    }
}
