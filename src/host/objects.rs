//! Content objects arriving on a host: each is written straight to its
//! place in the release tree being built (`tmp/<name>.partial/<path>`),
//! verified, then linked into `.slipway/objects/` in groups (with
//! `link_mode = "copy"`, a copy is made in `tmp/<name>.incoming/` and
//! renamed there instead).
//!
//! The writing runs on a thread of its own ([`spawn`]), fed through a
//! [`Feed`] by the thread that reads, decompresses and hashes the
//! connection, so the two halves of the work overlap as `zstd -d | tar -x`
//! would; a third thread makes each group durable and links it, so the
//! writing never waits for the disk. Each file takes one create and one
//! link (a rename into `objects/` and a link back into the tree would be
//! two more).
//!
//! Durability costs what the push wrote, nothing more: when a group is
//! committed, the writeback of each of its files is started
//! ([`fs::start_writeback`]), then they are fsynced ([`fs::sync_paths`],
//! many at once), and after the last group the `objects/` directories it
//! linked into. Nothing flushes the whole file system (`syncfs(2)` would
//! also write back every other process's dirty data there, and wait for
//! it).
//!
//! Invariant: a file appears under `objects/` only after its bytes were
//! verified against the sha256 it is named by and made durable (fsynced,
//! before the links), and it never replaces an existing object. So
//! `objects/` holds only complete, correct objects whenever the process
//! dies, and a re-run push finds every group that was
//! linked and sends only the rest. Objects are read-only (0444, or 0555 when
//! executable; created so) and carry the manifest's `source_date_epoch` as
//! mtime.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result, describe_io};
use crate::fs;
use crate::host::layout::Layout;
use crate::manifest::ObjectKey;

/// Link verified objects into `objects/` after this many bytes…
pub const COMMIT_BYTES: u64 = 64 * 1024 * 1024;
/// …or this many objects, whichever comes first (and at the end).
pub const COMMIT_OBJECTS: usize = 2000;

/// Content travels from the reading thread to the writing one in pieces
/// of at most this many bytes…
const PIECE: usize = 256 * 1024;
/// …with at most this many in flight (16 MiB).
const PIECES_IN_FLIGHT: usize = 64;

/// An object written into the release tree whose bytes still need a verdict.
#[derive(Debug)]
struct Unverified {
    path: PathBuf,
    key: ObjectKey,
    size: u64,
}

/// Receives the objects of one push.
pub struct ObjectSink<'a> {
    layout: &'a Layout,
    /// `tmp/<name>.incoming/`, for copies.
    dir: PathBuf,
    mtime: i64,
    /// Objects are copies of the tree's files, not the same inodes.
    copy: bool,
    prefixes: HashSet<String>,
    counter: u64,
    /// Objects placed in `objects/` by this push.
    pub objects_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
}

impl<'a> ObjectSink<'a> {
    /// Start receiving the objects of release `name` (its staging directory
    /// must not exist; the caller removed leftovers under the release's
    /// lock). With `copy`, objects are copies of the tree's files.
    ///
    /// # Errors
    /// When the staging directory cannot be created.
    pub fn new(layout: &'a Layout, name: &str, mtime: i64, copy: bool) -> Result<ObjectSink<'a>> {
        let dir = layout.incoming_dir(name);
        fs::create_dir(&dir, 0o700)?;
        Ok(ObjectSink {
            layout,
            dir,
            mtime,
            copy,
            prefixes: HashSet::new(),
            counter: 0,
            objects_written: 0,
            bytes_written: 0,
        })
    }

    /// Create the file of a new object at `path` in the release tree
    /// (read-only from the start: the open handle writes it).
    ///
    /// # Errors
    /// I/O errors.
    fn create(key: ObjectKey, size: u64, path: PathBuf) -> Result<(File, Unverified)> {
        let mode = if key.executable { 0o555 } else { 0o444 };
        let file = fs::create_new(&path, mode)?;
        Ok((file, Unverified { path, key, size }))
    }

    /// A copy of `src` in the staging directory (mode and mtime kept).
    fn copy_of(&mut self, src: &Path) -> Result<PathBuf> {
        self.counter += 1;
        let path = self.dir.join(self.counter.to_string());
        fs::link_or_copy(src, &path, true)?;
        Ok(path)
    }

    /// Make the verified objects durable (each file fsynced, and each copy),
    /// then link each into `objects/` (or rename its copy there) unless an
    /// equal object is already there.
    ///
    /// # Errors
    /// I/O errors.
    fn commit(&mut self, pending: &[Unverified]) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let copies = if self.copy {
            pending
                .iter()
                .map(|obj| self.copy_of(&obj.path))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let written: Vec<PathBuf> = pending
            .iter()
            .map(|obj| obj.path.clone())
            .chain(copies.iter().cloned())
            .collect();
        // Start every file's writeback first, so that the fsyncs find their
        // data written or on its way (here rather than as each file is
        // closed: that kept the writing thread from writing).
        for path in &written {
            if let Ok(file) = File::open(path) {
                fs::start_writeback(&file);
            }
        }
        fs::sync_paths(&written)?;
        for (i, obj) in pending.iter().enumerate() {
            let dst = self.layout.object_path(&obj.key);
            let prefix = obj.key.rel_path()[..2].to_string();
            if !self.prefixes.contains(&prefix) {
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent)?;
                }
                self.prefixes.insert(prefix);
            }
            let placed = match copies.get(i) {
                Some(copy) => self.rename_in(copy, &dst)?,
                None => match fs::hard_link_noreplace(&obj.path, &dst)? {
                    Some(placed) => placed,
                    // Another file system (or the link limit): a durable copy.
                    None => {
                        let copy = self.copy_of(&obj.path)?;
                        fs::fsync_file(&copy)?;
                        self.rename_in(&copy, &dst)?
                    }
                },
            };
            if placed {
                self.objects_written += 1;
                self.bytes_written += obj.size;
            }
        }
        super::fault::point("after-commit");
        Ok(())
    }

    /// Make the links of this push in `objects/` durable: the directories
    /// it linked into, and `objects/` itself (which may have gained some).
    fn sync_dirs(&self) -> Result<()> {
        if self.prefixes.is_empty() {
            return Ok(());
        }
        let objects = self.layout.objects_dir();
        let mut dirs: Vec<PathBuf> = self.prefixes.iter().map(|p| objects.join(p)).collect();
        dirs.push(objects);
        fs::sync_paths(&dirs)
    }

    /// Rename the copy `from` to the object `to`, unless it is already there.
    fn rename_in(&self, from: &Path, to: &Path) -> Result<bool> {
        let placed = fs::rename_noreplace(from, to)?;
        if !placed {
            fs::remove_file(from)?;
        }
        Ok(placed)
    }
}

/// What the reading thread tells the writing one, in order.
enum Job {
    /// A new object of `size` bytes, to be written at `path` in the release
    /// tree: its content follows as `Data`.
    Begin { key: ObjectKey, size: u64, path: PathBuf },
    /// The next bytes of the object begun last: the first `.1` of `.0`.
    Data(Vec<u8>, usize),
    /// The oldest object written and not yet accepted is verified.
    Accept,
    /// Every object was sent: commit the last group and stop.
    Finish,
}

/// Start writing the objects of `sink` on a thread of `scope`. The thread
/// returns the objects and bytes it linked into `objects/`, or its first
/// error (after which the [`Feed`] fails too). When the feed is dropped
/// without [`Feed::finish`] (the push failed), what was not linked into
/// `objects/` is left to the caller's clean-up of the staging area.
pub fn spawn<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    sink: ObjectSink<'env>,
) -> (Feed, ScopedJoinHandle<'scope, Result<(u64, u64)>>) {
    let (tx, rx) = sync_channel(PIECES_IN_FLIGHT);
    let (spare_tx, spare_rx) = sync_channel(PIECES_IN_FLIGHT);
    let writer = scope.spawn(move || write_objects(sink, &rx, &spare_tx));
    let feed = Feed {
        tx: Some(tx),
        spare: spare_rx,
    };
    (feed, writer)
}

fn write_objects(sink: ObjectSink<'_>, rx: &Receiver<Job>, spare: &SyncSender<Vec<u8>>) -> Result<(u64, u64)> {
    let mtime = sink.mtime;
    // Groups go to a third thread, so the writing goes on while a group is
    // made durable and linked.
    std::thread::scope(|scope| {
        let (groups, to_commit) = sync_channel::<Vec<Unverified>>(1);
        let committer = scope.spawn(move || {
            let mut sink = sink;
            for group in to_commit {
                sink.commit(&group)?;
            }
            sink.sync_dirs()?;
            Ok((sink.objects_written, sink.bytes_written))
        });
        let written = write_files(mtime, rx, spare, &groups);
        drop(groups);
        let committed = committer
            .join()
            .unwrap_or_else(|_| Err(Error::other("linking the objects failed unexpectedly")));
        match (written, committed) {
            (Ok(true), Ok(counts)) => Ok(counts),
            (Ok(false), Ok(_)) => Err(Error::other("the push stopped while its objects were written")),
            // The writer only saw the committer stop (the one thread it
            // hands work to); the committer's error says why.
            (Err(Error::ThreadStopped(_)), Err(c)) => Err(c),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// What the committing thread does, as its [`Error::ThreadStopped`] names it.
const COMMITTER: &str = "linking the objects";
/// What the writing thread does, as its [`Error::ThreadStopped`] names it.
const WRITER: &str = "writing the objects";

/// Write the files the feed sends; hand each group of verified ones to
/// `groups`. `Ok(true)` once the feed finished, `Ok(false)` when it was
/// dropped without finishing (the push failed).
fn write_files(
    mtime: i64,
    rx: &Receiver<Job>,
    spare: &SyncSender<Vec<u8>>,
    groups: &SyncSender<Vec<Unverified>>,
) -> Result<bool> {
    let mut open: Option<(File, Unverified, u64)> = None;
    let mut written: VecDeque<Unverified> = VecDeque::new();
    let mut group: Vec<Unverified> = Vec::new();
    let mut group_bytes = 0;
    let close = |file: File, obj: Unverified, written: &mut VecDeque<Unverified>| -> Result<()> {
        fs::set_mtime(&file, &obj.path, mtime)?;
        written.push_back(obj);
        Ok(())
    };
    let commit = |group: &mut Vec<Unverified>| -> Result<()> {
        groups
            .send(std::mem::take(group))
            .map_err(|_| Error::ThreadStopped(COMMITTER))
    };
    while let Ok(job) = rx.recv() {
        match job {
            Job::Begin { key, size, path } => {
                let (file, obj) = ObjectSink::create(key, size, path)?;
                if size == 0 {
                    close(file, obj, &mut written)?;
                } else {
                    open = Some((file, obj, size));
                }
            }
            Job::Data(buf, n) => {
                let Some((mut file, obj, left)) = open.take() else {
                    return Err(Error::other("object content arrived before its object"));
                };
                file.write_all(&buf[..n])
                    .map_err(|e| Error::io("write", &obj.path, e))?;
                // Back to the reader for the next piece; a full pool (or a
                // reader already done) just lets it go.
                let _ = spare.try_send(buf);
                let left = left.saturating_sub(n as u64);
                if left == 0 {
                    close(file, obj, &mut written)?;
                } else {
                    open = Some((file, obj, left));
                }
            }
            Job::Accept => {
                let obj = written
                    .pop_front()
                    .ok_or_else(|| Error::other("an object was accepted before it was written"))?;
                super::fault::point("mid-objects");
                group_bytes += obj.size;
                group.push(obj);
                if group_bytes >= COMMIT_BYTES || group.len() >= COMMIT_OBJECTS {
                    commit(&mut group)?;
                    group_bytes = 0;
                }
            }
            Job::Finish => {
                commit(&mut group)?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The reading end of [`spawn`]: hands objects to the writing thread.
pub struct Feed {
    tx: Option<SyncSender<Job>>,
    spare: Receiver<Vec<u8>>,
}

impl Feed {
    fn send(&mut self, job: Job) -> Result<()> {
        let stopped = || Error::ThreadStopped(WRITER);
        self.tx.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())
    }

    /// Send an object to be written at `path` (a new file in the release
    /// tree): exactly `size` bytes of `content`, hashed on the way when
    /// `hash` is set (the digest is returned). `what` (a bundle path) names
    /// it in errors. The object counts only once [`Feed::accept`]ed.
    ///
    /// # Errors
    /// Integrity error for short or unreadable content; a
    /// [`Error::ThreadStopped`] when the writing thread failed (its own
    /// error says why).
    pub fn write(
        &mut self,
        key: ObjectKey,
        size: u64,
        path: PathBuf,
        content: &mut dyn Read,
        what: &str,
        hash: bool,
    ) -> Result<Option<Digest>> {
        let mut hasher = hash.then(Hasher::new);
        self.send(Job::Begin { key, size, path })?;
        let mut left = size;
        while left > 0 {
            let mut buf = self.spare.try_recv().unwrap_or_else(|_| vec![0; PIECE]);
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let mut n = 0;
            while n < want {
                match content.read(&mut buf[n..want]) {
                    Ok(0) => {
                        return Err(Error::integrity(format!(
                            "the content of `{what}` ends after {} of its {size} bytes",
                            size - left + n as u64
                        )));
                    }
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Error::integrity(format!(
                            "cannot read the content of `{what}`: {}",
                            describe_io(&e)
                        )));
                    }
                }
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
            self.send(Job::Data(buf, n))?;
            left -= n as u64;
        }
        Ok(hasher.map(Hasher::finish))
    }

    /// The oldest object sent and not yet accepted is verified.
    ///
    /// # Errors
    /// [`Error::ThreadStopped`] when the writing thread failed.
    pub fn accept(&mut self) -> Result<()> {
        self.send(Job::Accept)
    }

    /// Every object was sent and accepted: the writing thread commits the
    /// last group and returns.
    ///
    /// # Errors
    /// [`Error::ThreadStopped`] when the writing thread failed.
    pub fn finish(&mut self) -> Result<()> {
        let sent = self.send(Job::Finish);
        self.tx = None;
        sent
    }
}

impl Drop for ObjectSink<'_> {
    /// Copies not renamed into `objects/` are thrown away (the tree's
    /// files go with `tmp/<name>.partial`, see `stage`).
    fn drop(&mut self) {
        let _ = fs::remove_tree(&self.dir);
    }
}
