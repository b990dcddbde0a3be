//! The client half of `push`: offer a release, send its manifest, then only
//! the contents the host lacks.
//!
//! A push is three steps, so that a fleet can share work between them:
//! [`HostSession::offer`] (the host answers what it lacks), the contents,
//! [`HostSession::finish_push`]. Two ways to send contents
//! (`docs/protocol.md`):
//! - when the host lacks (nearly) all the bytes, the stored bundle itself,
//!   verbatim (nothing is recompressed; the host keeps what it needs),
//!   spliced from the page cache into the connection — for several hosts,
//!   spliced once and duplicated with tee(2) ([`send_bundle_to_all`]);
//! - otherwise batches: the needed objects, read from the frames of the
//!   local bundle that hold them, each batch one zstd frame announced by the
//!   list of its manifest entries. [`send_batches`] produces each batch once
//!   ([`BatchEncoder`], a stream of [`Piece`]s) and writes it to every host
//!   of a group that lacks the same objects.
//!
//! Invariants: memory is bounded by one frame and one compression window,
//! whatever the file sizes; `bytes_sent` counts the data bytes that crossed
//! the connection (manifest and contents, with their frame headers).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock};

use indicatif::ProgressBar;
use serde_json::Value;

use super::session::{HostChannel, HostSession};
use crate::bundle::ZSTD_LEVEL;
use crate::bundle::unpack::read_entries;
use crate::config::LinkMode;
use crate::digest::Digest;
use crate::error::{Error, Result, describe_io};
use crate::fs;
use crate::manifest::{Entry, Kind, Manifest};
use crate::protocol::{DATA_CHUNK, DataHeader, Message, PushOffer, decode_indices};
use crate::provenance::Provenance;
use crate::store::Store;

/// Send the stored bundle verbatim when the host lacks at least this share
/// of the release's bytes (in percent). High on purpose: a re-run of an
/// interrupted push must send only what is still missing, and the host
/// would otherwise decode and hash the whole bundle for a part of it.
pub const BUNDLE_PERCENT: u8 = 95;
/// A batch closes when its contents reach this many bytes…
pub const BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// …or this many objects.
pub const BATCH_OBJECTS: usize = 1000;

/// What to push: one release of the local store.
pub struct PushJob<'a> {
    pub store: &'a Store,
    pub name: &'a str,
    pub id: Digest,
    pub manifest: &'a Manifest,
    pub provenance: Option<Provenance>,
    pub signatures: Vec<Value>,
    /// `user@host` of the operator.
    pub pushed_by: String,
    /// The target's `shared` directories and `shared_files`, linked into the release.
    pub shared: &'a [String],
    pub shared_files: &'a [String],
    /// Repair a damaged release that is already on the host (`verify --repair`).
    pub repair: bool,
    /// The manifest as sent, by the base it was compressed against:
    /// compressed once for all the hosts that offer the same base.
    sent_manifests: Mutex<HashMap<Option<Digest>, Arc<Vec<u8>>>>,
    /// The manifest's canonical bytes, serialised once.
    canonical: OnceLock<Vec<u8>>,
    /// The bytes of the release's distinct objects, summed once.
    object_bytes: OnceLock<u64>,
}

impl<'a> PushJob<'a> {
    /// Stage `record` (its bundle and `manifest` from `store`) on the hosts of
    /// `target`, with the target's shared paths; `repair` rebuilds a damaged
    /// release that is already there.
    pub fn new(
        store: &'a Store,
        record: &'a crate::store::ReleaseRecord,
        manifest: &'a Manifest,
        target: &'a super::Target,
        repair: bool,
    ) -> PushJob<'a> {
        PushJob {
            store,
            name: &record.name,
            id: record.id,
            manifest,
            provenance: record.provenance.clone(),
            signatures: record.signatures.clone(),
            pushed_by: crate::config::actor(),
            shared: &target.config.shared,
            shared_files: &target.config.shared_files,
            repair,
            sent_manifests: Mutex::default(),
            canonical: OnceLock::new(),
            object_bytes: OnceLock::new(),
        }
    }

    fn object_bytes(&self) -> u64 {
        *self
            .object_bytes
            .get_or_init(|| self.manifest.objects().iter().map(|(_, size)| size).sum())
    }

    fn canonical(&self) -> &[u8] {
        self.canonical.get_or_init(|| self.manifest.canonical_bytes())
    }

    /// The manifest compressed against the first of `bases` the local
    /// store has (or alone): `(base, bytes)`. Once per base for all the
    /// hosts of a push: the lock is held while a base is loaded and the
    /// manifest compressed, so the hosts that ask meanwhile (a fleet asks
    /// all at once) wait for that work instead of repeating it.
    fn manifest_for(&self, bases: &[Digest]) -> Result<(Option<Digest>, Arc<Vec<u8>>)> {
        let mut cache = self
            .sent_manifests
            .lock()
            .map_err(|_| Error::other("a push thread panicked"))?;
        if let Some(hit) = bases
            .iter()
            .find_map(|id| cache.get(&Some(*id)).map(|b| (Some(*id), b.clone())))
        {
            return Ok(hit);
        }
        let base = bases.iter().find_map(|id| {
            if !self.store.has_bundle(id) {
                return None;
            }
            self.store.manifest(id).ok().map(|m| (*id, m.canonical_bytes()))
        });
        let key = base.as_ref().map(|(id, _)| *id);
        if let Some(bytes) = cache.get(&key) {
            return Ok((key, bytes.clone()));
        }
        let bytes = Arc::new(compress_manifest(
            self.canonical(),
            base.as_ref().map(|(_, b)| b.as_slice()),
        )?);
        cache.insert(key, bytes.clone());
        Ok((key, bytes))
    }
}

/// What one push did on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// The release was already staged there; nothing was sent.
    pub already: bool,
    pub files: u64,
    /// Bytes of the objects the host lacked (uncompressed).
    pub bytes_needed: u64,
    /// Data bytes that crossed the connection.
    pub bytes_sent: u64,
    pub objects_reused: u64,
}

/// What the host answered to an offer.
#[derive(Debug)]
pub enum Offered {
    /// The release was already staged there: nothing to send.
    Already(PushOutcome),
    /// The host lacks these contents; [`HostSession::finish_push`] follows
    /// once they are sent.
    Need(Needed),
}

/// The contents a host lacks, and how they go.
#[derive(Debug, Clone)]
pub struct Needed {
    /// Manifest indices of the missing objects, ascending.
    pub indices: Vec<u32>,
    pub how: Contents,
    /// Bytes of the missing objects (uncompressed).
    pub bytes: u64,
    pub reused: u64,
    /// The session's data bytes before the push (for `bytes_sent`).
    sent_before: u64,
}

/// How the missing contents are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// Nothing is missing: only the tree needs building.
    Nothing,
    /// The stored bundle, verbatim.
    Bundle,
    /// Batches of the missing objects.
    Batches,
}

impl HostSession {
    /// Stage `job` on this host (request `push`): offer, send what the host
    /// lacks, and wait for `staged`.
    ///
    /// # Errors
    /// The host's refusal (with its exit code), local store damage, or a
    /// broken connection; always naming the host.
    pub fn push(&mut self, job: &PushJob<'_>, link_mode: LinkMode, bar: &ProgressBar) -> Result<PushOutcome> {
        let needed = match self.offer(job, link_mode, bar)? {
            Offered::Already(outcome) => return Ok(outcome),
            Offered::Need(n) => n,
        };
        match needed.how {
            Contents::Nothing => {}
            Contents::Bundle => self.send_bundle(job, bar)?,
            Contents::Batches => {
                let mut one = [(&mut *self, bar.clone())];
                if let Some(e) = send_batches(job, &needed.indices, &mut one).pop().and_then(Result::err) {
                    return Err(e);
                }
            }
        }
        self.finish_push(job, &needed)
    }

    /// Offer `job` and learn what the host lacks (requests `push`,
    /// `manifest`; answers `send_manifest`, `need`).
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn offer(&mut self, job: &PushJob<'_>, link_mode: LinkMode, bar: &ProgressBar) -> Result<Offered> {
        let before = self.ch.data_bytes_sent();
        match offer_on(&mut self.ch, job, link_mode, bar) {
            Ok(Offered::Need(mut n)) => {
                n.sent_before = before;
                Ok(Offered::Need(n))
            }
            Ok(o) => Ok(o),
            Err(e) => Err(self.fail(e, &format!("the push of `{}`", job.name))),
        }
    }

    /// Send the stored bundle of `job` verbatim (after [`HostSession::offer`]).
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn send_bundle(&mut self, job: &PushJob<'_>, bar: &ProgressBar) -> Result<()> {
        send_bundle(&mut self.ch, job, bar).map_err(|e| self.fail(e, &format!("the push of `{}`", job.name)))
    }

    /// End the push once the contents are sent: `done`, then the host's `staged`.
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn finish_push(&mut self, job: &PushJob<'_>, needed: &Needed) -> Result<PushOutcome> {
        self.send_done(job)?;
        self.await_staged(job, needed)
    }

    /// Tell the host every content is sent (`done`): it builds and binds
    /// the release. Several hosts can be told before any is awaited.
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn send_done(&mut self, job: &PushJob<'_>) -> Result<()> {
        let sent = self.ch.send(&Message::Done).and_then(|()| self.ch.flush());
        sent.map_err(|e| self.fail(e, &format!("the push of `{}`", job.name)))
    }

    /// The host's `staged` after [`HostSession::send_done`].
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn await_staged(&mut self, job: &PushJob<'_>, needed: &Needed) -> Result<PushOutcome> {
        let staged = match self.ch.recv() {
            Ok(Message::Staged(s)) => Ok(s),
            Ok(other) => Err(unexpected(&other, "`staged`")),
            Err(e) => Err(e),
        };
        match staged {
            Ok(staged) => Ok(PushOutcome {
                already: false,
                files: staged.files,
                bytes_needed: needed.bytes,
                bytes_sent: self.ch.data_bytes_sent() - needed.sent_before,
                objects_reused: needed.reused,
            }),
            Err(e) => Err(self.fail(e, &format!("the push of `{}`", job.name))),
        }
    }
}

fn unexpected(msg: &Message, wanted: &str) -> Error {
    Error::other(format!(
        "the host answered `{}` where {wanted} was expected",
        msg.name()
    ))
}

fn offer_on(ch: &mut HostChannel, job: &PushJob<'_>, link_mode: LinkMode, bar: &ProgressBar) -> Result<Offered> {
    // Until the host says what it lacks, the whole bundle is the estimate.
    if let Ok(m) = fs::metadata(&job.store.bundle_path(&job.id)) {
        bar.set_length(m.len());
    }
    ch.send(&Message::Push(Box::new(PushOffer {
        name: job.name.to_string(),
        id: job.id,
        provenance: job.provenance.clone(),
        signatures: job.signatures.clone(),
        link_mode,
        pushed_by: job.pushed_by.clone(),
        shared: job.shared.to_vec(),
        shared_files: job.shared_files.to_vec(),
        repair: job.repair,
    })))?;
    let bases = match ch.recv()? {
        Message::Staged(s) if s.already => {
            return Ok(Offered::Already(PushOutcome {
                already: true,
                files: s.files,
                bytes_needed: 0,
                bytes_sent: 0,
                objects_reused: s.objects_reused,
            }));
        }
        Message::SendManifest { bases } => bases,
        other => return Err(unexpected(&other, "`send_manifest`")),
    };
    send_manifest(ch, job, &bases)?;

    let need = match ch.recv()? {
        Message::Need(n) => n,
        other => return Err(unexpected(&other, "`need`")),
    };
    let entries = &job.manifest.entries;
    if need.objects > entries.len() as u64 {
        return Err(Error::other("the host asked for more objects than the release has"));
    }
    let indices = decode_indices(&ch.recv_blob(need.objects * 4, "the list of missing objects")?)?;
    let mut needed_bytes = 0;
    for (n, &i) in indices.iter().enumerate() {
        if n > 0 && indices[n - 1] >= i {
            return Err(Error::other(format!("the host asked for entry {i} out of order")));
        }
        match entries.get(i as usize) {
            Some(e) if e.kind == Kind::File => needed_bytes += e.size,
            _ => {
                return Err(Error::other(format!(
                    "the host asked for entry {i}, which is not a file"
                )));
            }
        }
    }
    let total = job.object_bytes();
    let how = if indices.is_empty() {
        Contents::Nothing
    } else if u128::from(needed_bytes) * 100 >= u128::from(total) * u128::from(BUNDLE_PERCENT) {
        Contents::Bundle
    } else {
        bar.set_length(needed_bytes);
        Contents::Batches
    };
    Ok(Offered::Need(Needed {
        indices,
        how,
        bytes: need.bytes,
        reused: need.reused,
        sent_before: 0,
    }))
}

/// Send the stored bundle of `job` to every session of `group` at once
/// (hosts that lack nearly everything). Each chunk becomes one DATA frame
/// in a pipe of the pusher's own: its header written, its payload spliced
/// from the page cache. Every host but the last is given the frame with
/// tee(2) into its private pipe and a splice from there into its
/// connection; the last gets the frame itself, spliced from the shared
/// pipe. Per host, the kernel only takes references to pages already in a
/// pipe (no page-cache lookups, no copies), and there is no write per host.
/// The hosts advance in step; one that fails is dropped and the others go
/// on. Where pipes cannot do this, each host gets
/// [`HostSession::send_bundle`]. Results in `group`'s order, errors naming
/// their host.
pub fn send_bundle_to_all(job: &PushJob<'_>, group: &mut [(&mut HostSession, ProgressBar)]) -> Vec<Result<()>> {
    let phase = format!("the push of `{}`", job.name);
    let mut failed: Vec<Option<Error>> = group.iter().map(|_| None).collect();
    let shared = match tee_pipes(group.len()) {
        Some(p) if group.len() > 1 => p,
        _ => {
            return group
                .iter_mut()
                .map(|(session, bar)| session.send_bundle(job, bar))
                .collect();
        }
    };
    let streamed = stream_bundle(job, group, &mut failed, &shared);
    stream_results(group, failed, &streamed, &phase)
}

/// Each session's result after a stream shared by `group`: its own
/// failure, else the stream's (a local error: every host gets it).
fn stream_results(
    group: &mut [(&mut HostSession, ProgressBar)],
    failed: Vec<Option<Error>>,
    streamed: &Result<()>,
    phase: &str,
) -> Vec<Result<()>> {
    group
        .iter_mut()
        .zip(failed)
        .map(|((session, _), failed)| match (failed, streamed) {
            (Some(e), _) => Err(session.fail(e, phase)),
            (None, Ok(())) => Ok(()),
            (None, Err(e)) => Err(session.fail(Error::from_kind(e.kind(), e.to_string()), phase)),
        })
        .collect()
}

/// Advance a host's progress bar; a hidden one (`-q`, `--json`, no
/// terminal) is left alone, as its updates would only cost time.
fn advance(bar: &ProgressBar, n: u64) {
    if !bar.is_hidden() {
        bar.inc(n);
    }
}

/// The pipes of [`send_bundle_to_all`]: the shared one (read, write), one
/// per host (read, write), `/dev/null` to drain the shared one when the
/// host taking its frame fails, and the payload size of a DATA frame that
/// every pipe holds whole (a pipe holds its size in page-sized slots; the
/// header takes one of them).
struct TeePipes {
    shared: (std::os::fd::OwnedFd, std::os::fd::OwnedFd),
    hosts: Vec<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
    null: std::fs::File,
    chunk: usize,
}

fn tee_pipes(hosts: usize) -> Option<TeePipes> {
    let pipe = || -> Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd, usize)> {
        let (r, w) = rustix::pipe::pipe().ok()?;
        let _ = rustix::pipe::fcntl_setpipe_size(&w, DATA_CHUNK);
        let size = rustix::pipe::fcntl_getpipe_size(&w).ok()?;
        Some((r, w, size))
    };
    let (r, w, mut size) = pipe()?;
    let mut pipes = Vec::with_capacity(hosts);
    for _ in 0..hosts {
        let (hr, hw, host_size) = pipe()?;
        size = size.min(host_size);
        pipes.push((hr, hw));
    }
    let page = rustix::param::page_size();
    let chunk = (size.min(DATA_CHUNK) / page).checked_sub(1)? * page;
    if chunk == 0 {
        return None;
    }
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null").ok()?;
    Some(TeePipes {
        shared: (r, w),
        hosts: pipes,
        null,
        chunk,
    })
}

/// Splice `n` bytes from `from` to `to`, counting them in `moved`.
fn splice_exactly(
    from: std::os::fd::BorrowedFd<'_>,
    mut offset: Option<&mut u64>,
    to: std::os::fd::BorrowedFd<'_>,
    n: usize,
    moved: &mut usize,
) -> std::io::Result<()> {
    while *moved < n {
        match rustix::pipe::splice(
            from,
            offset.as_deref_mut(),
            to,
            None,
            n - *moved,
            rustix::pipe::SpliceFlags::empty(),
        ) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => *moved += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn stream_bundle(
    job: &PushJob<'_>,
    group: &mut [(&mut HostSession, ProgressBar)],
    failed: &mut [Option<Error>],
    pipes: &TeePipes,
) -> Result<()> {
    use std::os::fd::AsFd;
    let path = job.store.bundle_path(&job.id);
    let file = fs::open(&path)?;
    let size = file.metadata().map_err(|e| Error::io("access", &path, e))?.len();
    for ((session, bar), failed) in group.iter_mut().zip(failed.iter_mut()) {
        bar.set_length(size);
        if let Err(e) = session.ch.send(&Message::Bundle { size }) {
            *failed = Some(e);
        }
    }
    let sending = |e: &std::io::Error| Error::connection(format!("cannot send to the host: {}", describe_io(e)));
    let mut offset = 0u64;
    while offset < size {
        let n = usize::try_from((size - offset).min(pipes.chunk as u64)).unwrap_or(pipes.chunk);
        // The shared pipe is empty: the header and payload fit it whole.
        let header = DataHeader::new(n)?;
        let frame = header.frame_len();
        let head = header.as_bytes();
        let written = match rustix::io::write(&pipes.shared.1, head) {
            Ok(k) if k == head.len() => Ok(()),
            Ok(k) => Err(format!("{k} of {} bytes written", head.len())),
            Err(e) => Err(describe_io(&e.into())),
        };
        if let Err(why) = written {
            return Err(Error::other(format!(
                "this machine's pipe for the bundle stream failed ({why}); nothing was staged, push again"
            )));
        }
        splice_exactly(file.as_fd(), Some(&mut offset), pipes.shared.1.as_fd(), n, &mut 0)
            .map_err(|e| Error::io("read", &path, e))?;
        let Some(last) = failed.iter().rposition(Option::is_none) else {
            return Err(Error::other("every host of the bundle stream failed"));
        };
        for (((session, bar), failed), host) in group.iter_mut().zip(failed.iter_mut()).zip(&pipes.hosts).take(last) {
            if failed.is_some() {
                continue;
            }
            let sent = (|| -> Result<()> {
                // The host's own pipe is empty and holds the frame whole: one tee.
                match rustix::pipe::tee(&pipes.shared.0, &host.1, frame, rustix::pipe::SpliceFlags::empty()) {
                    Ok(k) if k == frame => {}
                    result => {
                        let why = match result {
                            Ok(k) => format!("{k} of {frame} bytes duplicated"),
                            Err(e) => describe_io(&e.into()),
                        };
                        return Err(Error::other(format!(
                            "cannot copy the bundle into this host's stream (tee: {why}); push to this host again (`--hosts`)"
                        )));
                    }
                }
                let out = session.ch.spliced_data(&header)?;
                splice_exactly(host.0.as_fd(), None, out, frame, &mut 0).map_err(|e| sending(&e))?;
                advance(bar, n as u64);
                Ok(())
            })();
            if let Err(e) = sent {
                *failed = Some(e);
            }
        }
        // The last host takes the frame itself, emptying the shared pipe.
        let (session, bar) = &mut group[last];
        let mut moved = 0;
        let sent = session.ch.spliced_data(&header).and_then(|out| {
            splice_exactly(pipes.shared.0.as_fd(), None, out, frame, &mut moved).map_err(|e| sending(&e))
        });
        match sent {
            Ok(()) => advance(bar, n as u64),
            Err(e) => {
                failed[last] = Some(e);
                splice_exactly(pipes.shared.0.as_fd(), None, pipes.null.as_fd(), frame - moved, &mut 0)
                    .map_err(|e| Error::other(format!("cannot drain the bundle pipe: {}", describe_io(&e))))?;
            }
        }
    }
    for ((session, _), failed) in group.iter_mut().zip(failed.iter_mut()) {
        if failed.is_none()
            && let Err(e) = session.ch.send_end()
        {
            *failed = Some(e);
        }
    }
    Ok(())
}

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

/// Send the canonical manifest, compressed against a manifest the host
/// offered when the local store has it too (a new release differs little
/// from the last one, so this is usually a few kilobytes).
fn send_manifest(ch: &mut HostChannel, job: &PushJob<'_>, bases: &[Digest]) -> Result<()> {
    let size = job.canonical().len() as u64;
    let (base, compressed) = job.manifest_for(bases)?;
    ch.send(&Message::Manifest { size, base })?;
    ch.send_data(&compressed)?;
    ch.send_end()
}

/// One zstd frame of `manifest`, with `base` as reference prefix when given.
///
/// # Errors
/// When zstd refuses its parameters.
pub fn compress_manifest(manifest: &[u8], base: Option<&[u8]>) -> Result<Vec<u8>> {
    let fail = |e: std::io::Error| Error::other(format!("cannot compress the manifest: {}", describe_io(&e)));
    let mut out = Vec::new();
    {
        let mut enc = match base {
            Some(prefix) => {
                let mut enc =
                    zstd::stream::write::Encoder::with_ref_prefix(&mut out, ZSTD_LEVEL, prefix).map_err(fail)?;
                // The window must reach back over the whole prefix.
                let span = (prefix.len() + manifest.len()).max(1) as u64;
                let log = (64 - span.leading_zeros()).clamp(10, 27);
                enc.window_log(log).map_err(fail)?;
                // Level 3's hash tables do not reach far into a megabytes-long
                // prefix; long-distance matching does (like `zstd --patch-from`).
                enc.long_distance_matching(true).map_err(fail)?;
                enc
            }
            None => zstd::stream::write::Encoder::new(&mut out, ZSTD_LEVEL).map_err(fail)?,
        };
        enc.write_all(manifest).map_err(fail)?;
        enc.finish().map_err(fail)?;
    }
    Ok(out)
}

fn send_bundle(ch: &mut HostChannel, job: &PushJob<'_>, bar: &ProgressBar) -> Result<()> {
    let path = job.store.bundle_path(&job.id);
    let mut file = fs::open(&path)?;
    let size = file.metadata().map_err(|e| Error::io("access", &path, e))?.len();
    bar.set_length(size);
    ch.send(&Message::Bundle { size })?;
    ch.send_file_data(&mut file, &path, size, &mut |n| advance(bar, n))?;
    ch.send_end()
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
    use crate::manifest::Entry;

    fn manifest(sizes: &[u64]) -> Manifest {
        Manifest {
            version: 1,
            source_date_epoch: 0,
            entries: sizes
                .iter()
                .enumerate()
                .map(|(i, s)| Entry::file(format!("f{i:03}"), false, *s, Digest::of(&i.to_le_bytes())))
                .collect(),
        }
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
    fn a_manifest_compressed_against_its_predecessor_is_small_and_round_trips() {
        let old = manifest(&vec![100; 20000]).canonical_bytes();
        let mut next = manifest(&vec![100; 20000]);
        next.entries[42].size = 7;
        let new = next.canonical_bytes();
        let plain = compress_manifest(&new, None).unwrap();
        let delta = compress_manifest(&new, Some(&old)).unwrap();
        assert!(delta.len() * 20 < plain.len(), "{} vs {}", delta.len(), plain.len());
        let mut dec =
            zstd::stream::read::Decoder::with_ref_prefix(std::io::BufReader::new(delta.as_slice()), &old).unwrap();
        let mut back = Vec::new();
        dec.read_to_end(&mut back).unwrap();
        assert_eq!(back, new);
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
