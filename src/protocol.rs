//! The wire protocol between the client (`slipway push`, …) and the host
//! (`slipway serve`): frames, messages and the handshake, shared by both sides
//! and by both transports. `docs/protocol.md` is its specification.
//!
//! Every byte in either direction belongs to a frame:
//!
//! ```text
//! u32 big-endian payload length | u8 frame type | payload
//!   1 MESSAGE  one JSON object with a "type" key: a [`Message`]
//!   2 DATA     a chunk of a byte sequence (manifest, bundle, batch of objects, index list)
//!   3 END      the end of that byte sequence (empty payload)
//! ```
//!
//! Invariants: no frame is larger than [`MAX_FRAME`] (checked before anything
//! is allocated) and unknown frame types are refused; memory per connection is
//! bounded by one frame whatever the size of the files. The first frame each
//! way is `hello`, and the shapes of `hello` and `error` never change, so any
//! two slipway versions can tell each other that they cannot talk.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::LinkMode;
use crate::digest::Digest;
use crate::error::{Error, Result, describe_io};
use crate::host::check::CheckReport;
use crate::host::history::Record;
use crate::host::lock::LockInfo;
use crate::host::prune::PruneReport;
use crate::host::status::HostStatus;
use crate::host::verify::Drift;
use crate::provenance::Provenance;

/// The protocol version; bumped whenever a message or sequence changes incompatibly.
pub const PROTOCOL: u32 = 1;
/// This slipway's version, sent in `hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest frame payload accepted (16 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Payload size of the DATA frames slipway writes (1 MiB).
pub const DATA_CHUNK: usize = 1024 * 1024;
/// Bytes of a frame header (length and type).
pub const FRAME_HEADER: usize = 5;

/// The kind of a frame (its type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Message,
    Data,
    End,
}

impl FrameType {
    pub fn code(self) -> u8 {
        match self {
            FrameType::Message => 1,
            FrameType::Data => 2,
            FrameType::End => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<FrameType> {
        match code {
            1 => Some(FrameType::Message),
            2 => Some(FrameType::Data),
            3 => Some(FrameType::End),
            _ => None,
        }
    }
}

/// Who is on the other end of a channel (named in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Host,
    Client,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Host => "host",
            Peer::Client => "client",
        })
    }
}

/// Every control message. On the wire: `{"type": "<snake_case name>", …fields}`.
///
/// Requests (client → host) start an exchange and have one host handler each
/// (`host::serve`); the exchange ends with the request's answer or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// First frame in both directions. Its shape never changes.
    Hello { protocol: u32, version: String },
    /// Host → client: the exchange failed. `kind` is [`Error::kind`], so the
    /// exit code survives the trip. Its shape never changes.
    Error { kind: String, message: String },

    /// Request: stage a release (`push`).
    Push(Box<PushOffer>),
    /// Host → client: the release is not staged yet; send its manifest,
    /// optionally compressed against one of these manifests the host has.
    SendManifest { bases: Vec<Digest> },
    /// Client → host: the canonical manifest follows as one zstd frame of
    /// `size` bytes (uncompressed), with `base`'s manifest as reference prefix.
    Manifest {
        size: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<Digest>,
    },
    /// Host → client: what is missing; the manifest entry indices of one file
    /// per missing object follow as data (u32 big-endian each).
    Need(Need),
    /// Client → host: the stored bundle `.tar.zst` follows verbatim as data.
    Bundle { size: u64 },
    /// Client → host: one zstd frame follows as data, holding the contents of
    /// these manifest entries (ascending) back to back.
    Batch { entries: Vec<u32> },
    /// Client → host: every content has been sent.
    Done,
    /// Host → client: the release is complete at `releases/<name>`.
    Staged(Staged),

    /// Request: take the host's operator lock for this session (held until
    /// `unlock` or the end of the session). Answer: `locked`.
    Lock {
        holder: LockInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    /// Host → client: the lock is held by this session.
    Locked,
    /// Request: release the lock. Answer: `unlocked`.
    Unlock,
    /// Host → client: the lock is released.
    Unlocked,
    /// Request: point `current` at a release (needs the lock). Answer: `switched`.
    Activate(Box<ActivateRequest>),
    /// Request: roll back to `to`, or to the previous good release (needs the lock). Answer: `switched`.
    Rollback(Box<RollbackRequest>),
    /// Host → client: `current` changed; the history record.
    Switched(Box<Record>),
    /// Request: record that the current release `name` passed its health
    /// check (needs the lock). Answer: `switched` (the `healthy` record).
    MarkHealthy { name: String, actor: String },
    /// Request: mark a release bad (needs the lock). Answer: `marked`.
    MarkBad { name: String, reason: String },
    /// Host → client: done.
    Marked,
    /// Request: the host's state. Answer: `status_report`.
    Status,
    /// Host → client: the host's state.
    StatusReport(Box<HostStatus>),
    /// Request: the activation log, newest first, at most `limit` records. Answer: `history_report`.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Host → client: history records (newest first) and warnings about unreadable lines.
    HistoryReport {
        records: Vec<Record>,
        warnings: Vec<String>,
    },
    /// Request: remove old releases and unreferenced objects (needs the lock). Answer: `pruned`.
    Prune {
        keep: usize,
        pinned: Vec<String>,
        dry_run: bool,
    },
    /// Host → client: what prune removed (or would).
    Pruned(Box<PruneReport>),
    /// Request: re-hash release trees (`release`, or all). Answer: `verified`.
    Verify {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<String>,
    },
    /// Host → client: releases checked and every drifted path.
    Verified { releases: Vec<String>, drift: Vec<Drift> },
    /// Request: run a hook in a release directory. Answer: `hook_result`.
    Hook(Box<HookRequest>),
    /// Host → client: how the hook ended.
    HookResult(Box<HookResult>),
    /// Request: the facts `slipway host check` judges (owner, mode, free
    /// space, `current`). Answer: `check_report`.
    Check,
    /// Host → client: those facts.
    CheckReport(Box<CheckReport>),
}

impl Message {
    /// The wire name of the message (its `type`).
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Error { .. } => "error",
            Message::Push(_) => "push",
            Message::SendManifest { .. } => "send_manifest",
            Message::Manifest { .. } => "manifest",
            Message::Need(_) => "need",
            Message::Bundle { .. } => "bundle",
            Message::Batch { .. } => "batch",
            Message::Done => "done",
            Message::Staged(_) => "staged",
            Message::Lock { .. } => "lock",
            Message::Locked => "locked",
            Message::Unlock => "unlock",
            Message::Unlocked => "unlocked",
            Message::Activate(_) => "activate",
            Message::Rollback(_) => "rollback",
            Message::Switched(_) => "switched",
            Message::MarkHealthy { .. } => "mark_healthy",
            Message::MarkBad { .. } => "mark_bad",
            Message::Marked => "marked",
            Message::Status => "status",
            Message::StatusReport(_) => "status_report",
            Message::History { .. } => "history",
            Message::HistoryReport { .. } => "history_report",
            Message::Prune { .. } => "prune",
            Message::Pruned(_) => "pruned",
            Message::Verify { .. } => "verify",
            Message::Verified { .. } => "verified",
            Message::Hook(_) => "hook",
            Message::HookResult(_) => "hook_result",
            Message::Check => "check",
            Message::CheckReport(_) => "check_report",
        }
    }

    /// This side's `hello`.
    pub fn hello() -> Message {
        Message::Hello {
            protocol: PROTOCOL,
            version: VERSION.to_string(),
        }
    }

    /// The `error` message carrying `e`.
    pub fn error(e: &Error) -> Message {
        Message::Error {
            kind: e.kind().to_string(),
            message: e.to_string(),
        }
    }
}

/// `push`: what the client offers. The manifest itself follows on request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushOffer {
    pub name: String,
    pub id: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<serde_json::Value>,
    #[serde(default)]
    pub link_mode: LinkMode,
    /// `user@host` of the operator (recorded as `pushed_by`).
    pub pushed_by: String,
    /// The target's `shared` directories, linked into the release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
    /// The target's `shared_files`, linked into the release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_files: Vec<String>,
    /// `verify --repair`: the release is already here but damaged; re-check
    /// its objects, receive the bad ones and swap in a rebuilt tree.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
}

/// `activate`: switch `current` to `release` (a name or id prefix on the host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivateRequest {
    pub release: String,
    /// Compare-and-swap: the release that must be current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// `user@host` of the operator.
    pub actor: String,
    /// `activate` or `revert` (a fleet switching a host back).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Mark the release being left as bad (reverts).
    #[serde(default)]
    pub mark_left_bad: bool,
}

/// `rollback`: to `to`, or to the previous good release from the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `hook`: run `command` with `sh -c` in `releases/<release>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRequest {
    /// `before_activate`, `after_activate` or `health` (names it in output and errors).
    pub kind: String,
    pub release: String,
    pub command: String,
    /// Extra environment (`SLIPWAY_HOST`, `SLIPWAY_PREVIOUS`, …).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Each attempt is killed after this long.
    pub timeout_ms: u64,
    /// Retry failed attempts (one second apart) until this long has passed (health checks).
    #[serde(default)]
    pub retry_for_ms: u64,
}

/// `hook_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    pub ok: bool,
    /// Exit status of the last attempt (`None`: killed by a signal or the timeout).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub attempts: u32,
    pub seconds: f64,
    /// The last few KiB of the last attempt's combined stdout and stderr.
    pub output: String,
}

/// `need`: the host's answer to a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// Missing content objects (entries in the index list that follows).
    pub objects: u64,
    /// Their total size, uncompressed.
    pub bytes: u64,
    /// Objects of the release the host already has.
    pub reused: u64,
}

/// `staged`: the release is on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// True when it was already there (nothing was sent).
    pub already: bool,
    pub files: u64,
    pub objects_reused: u64,
    pub objects_written: u64,
    pub bytes_written: u64,
}

/// Check the other side's `hello`; returns its slipway version.
///
/// # Errors
/// As [`check_hello_for`], with `TARGET` standing for the target in the fix.
pub fn check_hello(msg: Message, peer: Peer) -> Result<String> {
    check_hello_for(msg, peer, None)
}

/// Check the other side's `hello`; returns its slipway version. `target` is
/// the client's `-t TARGET`, named in the fix of a mismatch.
///
/// # Errors
/// One error naming both versions, what to upgrade, and the `slipway host
/// install` command that puts the client's slipway on the host, when the
/// protocols differ; an error when the first message is not a `hello`.
pub fn check_hello_for(msg: Message, peer: Peer, target: Option<&str>) -> Result<String> {
    let (protocol, version) = match msg {
        Message::Hello { protocol, version } => (protocol, version),
        other => {
            return Err(Error::other(format!(
                "the {peer} opened with `{}` instead of `hello`; it does not speak the slipway protocol",
                other.name()
            )));
        }
    };
    if protocol == PROTOCOL {
        return Ok(version);
    }
    Err(Error::other(mismatch_text(peer, protocol, &version, target)))
}

fn mismatch_text(peer: Peer, theirs: u32, their_version: &str, target: Option<&str>) -> String {
    let their_version = their_version.escape_debug();
    let (us, upgrade_them, upgrade_us) = match peer {
        Peer::Host => ("this client", "on the host", "on this machine (the client)"),
        Peer::Client => ("this host", "on the client machine", "on this host"),
    };
    let (side, to) = if theirs < PROTOCOL {
        (upgrade_them, VERSION.to_string())
    } else {
        (upgrade_us, their_version.to_string())
    };
    let install = format!("slipway host install -t {}", target.unwrap_or("TARGET"));
    let fix = match (peer, theirs < PROTOCOL) {
        (Peer::Host, true) => format!(": run `{install}`"),
        (Peer::Host, false) => format!(", or run `{install}` to put this slipway ({VERSION}) on the host"),
        (Peer::Client, _) => format!(", or run `{install}` on the client machine to put its slipway here"),
    };
    format!(
        "the {peer} runs slipway {their_version} (protocol {theirs}) but {us} runs slipway {VERSION} (protocol {PROTOCOL}): upgrade slipway {side} to {to}{fix}"
    )
}

/// Reads frames, refusing oversized and unknown ones.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    len: usize,
    peer: Peer,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, peer: Peer) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: Vec::new(),
            len: 0,
            peer,
        }
    }

    /// The next frame's type; its payload is [`FrameReader::payload`].
    /// `None` at a clean end of the stream (between frames).
    ///
    /// # Errors
    /// Connection error on I/O failure or a stream cut inside a frame;
    /// "oversized frame" and "unknown frame type" errors.
    pub fn next_frame(&mut self) -> Result<Option<FrameType>> {
        let peer = self.peer;
        let mut head = [0u8; FRAME_HEADER];
        let mut got = 0;
        while got < FRAME_HEADER {
            match self.inner.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(truncated(peer)),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(peer, &e)),
            }
        }
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let ty = FrameType::from_code(head[4]).ok_or_else(|| {
            Error::other(format!(
                "unknown frame type {} from the {peer} (protocol {PROTOCOL} knows types 1-3)",
                head[4]
            ))
        })?;
        if len > MAX_FRAME {
            return Err(Error::other(format!(
                "oversized frame from the {peer}: {len} bytes, more than the limit of {MAX_FRAME}"
            )));
        }
        if ty == FrameType::End && len != 0 {
            return Err(Error::other(format!("the {peer} sent an END frame with a payload")));
        }
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        self.inner.read_exact(&mut self.buf[..len]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                truncated(peer)
            } else {
                read_error(peer, &e)
            }
        })?;
        self.len = len;
        Ok(Some(ty))
    }

    /// The payload of the last frame read.
    pub fn payload(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn truncated(peer: Peer) -> Error {
    Error::connection(format!("the {peer} closed the connection in the middle of a transfer"))
}

fn read_error(peer: Peer, e: &io::Error) -> Error {
    Error::connection(format!("cannot read from the {peer}: {}", describe_io(e)))
}

fn write_error(peer: Peer, e: &io::Error) -> Error {
    Error::connection(format!("cannot send to the {peer}: {}", describe_io(e)))
}

/// The header of a frame of type `ty` carrying `len` bytes.
/// The header of a DATA frame of `len` payload bytes, for a frame the
/// caller assembles itself (see [`FrameWriter::spliced_data`]).
pub fn data_frame_header(len: usize) -> [u8; FRAME_HEADER] {
    frame_header(FrameType::Data, len)
}

fn frame_header(ty: FrameType, len: usize) -> [u8; FRAME_HEADER] {
    let mut head = [0u8; FRAME_HEADER];
    head[..4].copy_from_slice(&(len as u32).to_be_bytes());
    head[4] = ty.code();
    head
}

/// Writes frames (buffered) and counts the data bytes written.
pub struct FrameWriter<W: Write> {
    inner: io::BufWriter<W>,
    peer: Peer,
    data_bytes: u64,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W, peer: Peer) -> FrameWriter<W> {
        FrameWriter {
            inner: io::BufWriter::with_capacity(64 * 1024, inner),
            peer,
            data_bytes: 0,
        }
    }

    fn frame(&mut self, ty: FrameType, payload: &[u8]) -> Result<()> {
        if payload.len() > MAX_FRAME {
            return Err(Error::other(format!(
                "cannot send a {} byte frame: the limit is {MAX_FRAME}",
                payload.len()
            )));
        }
        let head = frame_header(ty, payload.len());
        self.inner
            .write_all(&head)
            .and_then(|()| self.inner.write_all(payload))
            .map_err(|e| write_error(self.peer, &e))
    }

    /// Send one control message.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn message(&mut self, msg: &Message) -> Result<()> {
        let json = serde_json::to_vec(msg).map_err(|e| Error::other(format!("cannot encode a message: {e}")))?;
        self.frame(FrameType::Message, &json)
    }

    /// Send `bytes` as DATA frames of at most [`DATA_CHUNK`] bytes.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn data(&mut self, bytes: &[u8]) -> Result<()> {
        for chunk in bytes.chunks(DATA_CHUNK) {
            self.frame(FrameType::Data, chunk)?;
            self.data_bytes += (FRAME_HEADER + chunk.len()) as u64;
        }
        Ok(())
    }

    /// End a data sequence.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn end(&mut self) -> Result<()> {
        self.frame(FrameType::End, &[])?;
        self.data_bytes += FRAME_HEADER as u64;
        Ok(())
    }

    /// # Errors
    /// Connection error on I/O failure.
    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(|e| write_error(self.peer, &e))
    }

    /// Bytes of DATA and END frames (headers included) written so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }
}

impl<W: Write + AsFd> FrameWriter<W> {
    /// Hand the connection to the caller for one whole DATA frame of
    /// `len` payload bytes (header included, see [`data_frame_header`])
    /// that it moves there itself, e.g. with splice(2) from a pipe: pending
    /// frames are flushed first, and the frame counts as sent.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn spliced_data(&mut self, len: usize) -> Result<std::os::fd::BorrowedFd<'_>> {
        let peer = self.peer;
        self.inner.flush().map_err(|e| write_error(peer, &e))?;
        self.data_bytes += (FRAME_HEADER + len) as u64;
        Ok(self.inner.get_ref().as_fd())
    }

    /// Send the next `len` bytes of `file` (from its current position) as
    /// DATA frames. Where the connection is a pipe (both transports), the
    /// bytes move with splice(2): the kernel hands the page-cache pages to
    /// the pipe and this process copies nothing, so pushing one bundle to
    /// many hosts costs each host a few system calls, not a pass over the
    /// bytes. Elsewhere, or where the file system cannot splice, they are
    /// read and written.
    ///
    /// # Errors
    /// Connection error when the connection breaks; an error naming `path`
    /// when the file cannot be read or ends before `len` bytes.
    pub fn file_data(&mut self, file: &mut File, path: &Path, len: u64, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let peer = self.peer;
        let mut splice = rustix::fs::fstat(self.inner.get_ref())
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo);
        let mut buf = Vec::new();
        let short = || Error::integrity(format!("`{}` ended before its announced size", path.display()));
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(DATA_CHUNK as u64)).unwrap_or(DATA_CHUNK);
            let head = frame_header(FrameType::Data, n);
            self.inner.write_all(&head).map_err(|e| write_error(peer, &e))?;
            let mut sent = 0;
            if splice {
                // The header must reach the pipe before the spliced bytes.
                self.inner.flush().map_err(|e| write_error(peer, &e))?;
            }
            while sent < n {
                if splice {
                    match rustix::pipe::splice(
                        &*file,
                        None,
                        self.inner.get_ref(),
                        None,
                        n - sent,
                        rustix::pipe::SpliceFlags::empty(),
                    ) {
                        Ok(0) => return Err(short()),
                        Ok(k) => {
                            sent += k;
                            progress(k as u64);
                            continue;
                        }
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET) => {
                            return Err(write_error(peer, &io::Error::from(io::ErrorKind::BrokenPipe)));
                        }
                        // Not spliceable here (file system, kernel): copy the rest.
                        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::AGAIN) => {
                            splice = false;
                        }
                        Err(e) => return Err(Error::io("read", path, e.into())),
                    }
                }
                if buf.is_empty() {
                    buf = vec![0u8; DATA_CHUNK];
                }
                let want = n - sent;
                let k = match file.read(&mut buf[..want]) {
                    Ok(0) => return Err(short()),
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read", path, e)),
                };
                self.inner.write_all(&buf[..k]).map_err(|e| write_error(peer, &e))?;
                sent += k;
                progress(k as u64);
            }
            self.data_bytes += (FRAME_HEADER + n) as u64;
            left -= n as u64;
        }
        Ok(())
    }
}

/// Both directions of one connection.
pub struct Channel<R, W: Write> {
    reader: FrameReader<R>,
    writer: Option<FrameWriter<W>>,
    peer: Peer,
    peer_failed: bool,
    data_bytes_closed: u64,
}

impl<R: Read, W: Write> Channel<R, W> {
    /// A channel to `peer` over `reader`/`writer`.
    pub fn new(reader: R, writer: W, peer: Peer) -> Channel<R, W> {
        Channel {
            reader: FrameReader::new(reader, peer),
            writer: Some(FrameWriter::new(writer, peer)),
            peer,
            peer_failed: false,
            data_bytes_closed: 0,
        }
    }

    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// True once the peer sent an `error` message.
    pub fn peer_failed(&self) -> bool {
        self.peer_failed
    }

    fn writer(&mut self) -> Result<&mut FrameWriter<W>> {
        let peer = self.peer;
        self.writer
            .as_mut()
            .ok_or_else(|| Error::connection(format!("the connection to the {peer} is closed")))
    }

    /// Send a control message (buffered until the next receive or flush).
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        self.writer()?.message(msg)
    }

    /// Send `bytes` as a data sequence (DATA frames, then END).
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn send_blob(&mut self, bytes: &[u8]) -> Result<()> {
        let w = self.writer()?;
        w.data(bytes)?;
        w.end()
    }

    /// Send `bytes` as DATA frames (part of a sequence ended by [`Channel::send_end`]).
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn send_data(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer()?.data(bytes)
    }

    /// See [`FrameWriter::spliced_data`].
    ///
    /// # Errors
    /// As [`FrameWriter::spliced_data`], or when this side of the
    /// connection is closed.
    pub fn spliced_data(&mut self, len: usize) -> Result<std::os::fd::BorrowedFd<'_>>
    where
        W: AsFd,
    {
        self.writer()?.spliced_data(len)
    }

    /// Send `len` bytes of `file` as DATA frames (see [`FrameWriter::file_data`]).
    ///
    /// # Errors
    /// As [`FrameWriter::file_data`].
    pub fn send_file_data(
        &mut self,
        file: &mut File,
        path: &Path,
        len: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()>
    where
        W: AsFd,
    {
        self.writer()?.file_data(file, path, len, progress)
    }

    /// End a data sequence.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn send_end(&mut self) -> Result<()> {
        self.writer()?.end()
    }

    /// # Errors
    /// Connection error on I/O failure.
    pub fn flush(&mut self) -> Result<()> {
        self.writer()?.flush()
    }

    /// Read whatever the peer still sends until it closes, and return its
    /// `error` message if there is one (after a broken exchange, it explains why).
    pub fn drain_for_error(&mut self) -> Option<Error> {
        loop {
            match self.reader.next_frame() {
                Ok(Some(FrameType::Message)) => {
                    if let Err(e) = self.decode()
                        && self.peer_failed
                    {
                        return Some(e);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Flush and close the sending direction: the peer reads end-of-stream.
    pub fn close_write(&mut self) {
        if let Some(mut w) = self.writer.take() {
            let _ = w.flush();
            self.data_bytes_closed = w.data_bytes();
        }
    }

    /// Bytes of DATA and END frames sent so far (what `bytes_sent` reports).
    pub fn data_bytes_sent(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(self.data_bytes_closed, FrameWriter::data_bytes)
    }

    fn decode(&mut self) -> Result<Message> {
        let peer = self.peer;
        let msg: Message = serde_json::from_slice(self.reader.payload()).map_err(|e| {
            Error::other(format!(
                "the {peer} sent a message this slipway does not understand: {e}"
            ))
        })?;
        if let Message::Error { kind, message } = msg {
            self.peer_failed = true;
            return Err(Error::from_kind(&kind, message));
        }
        Ok(msg)
    }

    /// The next control message, or `None` at a clean end of the stream.
    /// An `error` message from the peer comes back as `Err` with its kind.
    ///
    /// # Errors
    /// The peer's error; connection errors; a DATA or END frame where a
    /// message was expected.
    pub fn recv_optional(&mut self) -> Result<Option<Message>> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        let peer = self.peer;
        match self.reader.next_frame()? {
            None => Ok(None),
            Some(FrameType::Message) => self.decode().map(Some),
            Some(_) => Err(Error::other(format!(
                "the {peer} sent data where a message was expected"
            ))),
        }
    }

    /// The next control message; end of stream is a connection error.
    ///
    /// # Errors
    /// As [`Channel::recv_optional`], and when the peer closed the connection.
    pub fn recv(&mut self) -> Result<Message> {
        let peer = self.peer;
        self.recv_optional()?
            .ok_or_else(|| Error::connection(format!("the {peer} closed the connection")))
    }

    /// Read a whole data sequence of at most `limit` bytes; `what` names it in errors.
    ///
    /// # Errors
    /// When it is longer than `limit`, or on connection errors.
    pub fn recv_blob(&mut self, limit: u64, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut reader = self.data_reader();
        let res = (&mut reader).take(limit.saturating_add(1)).read_to_end(&mut out);
        if let Some(e) = reader.take_error() {
            return Err(e);
        }
        res.map_err(|e| Error::connection(format!("cannot read {what}: {}", describe_io(&e))))?;
        if out.len() as u64 > limit {
            return Err(Error::other(format!(
                "{what} is larger than the limit of {limit} bytes"
            )));
        }
        reader.finish()?;
        Ok(out)
    }

    /// A reader over the next data sequence (DATA frames up to END).
    pub fn data_reader(&mut self) -> DataReader<'_, R, W> {
        DataReader {
            ch: self,
            pos: 0,
            len: 0,
            done: false,
            error: None,
        }
    }

    /// A writer that sends what it is given as DATA frames; [`DataWriter::finish`] sends END.
    pub fn data_writer(&mut self) -> DataWriter<'_, R, W> {
        DataWriter {
            ch: self,
            buf: Vec::with_capacity(DATA_CHUNK),
            error: None,
        }
    }
}

/// `Read` over one data sequence. Protocol failures are kept: after an
/// `io::Error`, [`DataReader::take_error`] returns the real one.
pub struct DataReader<'a, R, W: Write> {
    ch: &'a mut Channel<R, W>,
    pos: usize,
    len: usize,
    done: bool,
    error: Option<Error>,
}

impl<R: Read, W: Write> DataReader<'_, R, W> {
    /// The error behind the last `io::Error`, if it came from the protocol.
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn fail(&mut self, e: Error) -> io::Error {
        let text = e.to_string();
        self.error = Some(e);
        io::Error::other(text)
    }

    /// Read up to END, refusing any data left over.
    ///
    /// # Errors
    /// When data remains, or on connection errors.
    pub fn finish(&mut self) -> Result<()> {
        let mut probe = [0u8; 1];
        match self.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => {
                let peer = self.ch.peer;
                Err(Error::other(format!("the {peer} sent more data than it announced")))
            }
            Err(e) => Err(self.take_error().unwrap_or_else(|| Error::connection(describe_io(&e)))),
        }
    }
}

impl<R: Read, W: Write> Read for DataReader<'_, R, W> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.len {
                let n = out.len().min(self.len - self.pos);
                out[..n].copy_from_slice(&self.ch.reader.payload()[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            let peer = self.ch.peer;
            match self.ch.reader.next_frame() {
                Ok(Some(FrameType::Data)) => {
                    self.pos = 0;
                    self.len = self.ch.reader.payload().len();
                }
                Ok(Some(FrameType::End)) => {
                    self.done = true;
                    return Ok(0);
                }
                Ok(Some(FrameType::Message)) => {
                    let e = match self.ch.decode() {
                        Err(e) => e,
                        Ok(m) => Error::other(format!(
                            "the {peer} sent `{}` in the middle of a data sequence",
                            m.name()
                        )),
                    };
                    return Err(self.fail(e));
                }
                Ok(None) => {
                    return Err(self.fail(Error::connection(format!(
                        "the {peer} closed the connection in the middle of a transfer"
                    ))));
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }
}

/// `Write` into DATA frames of [`DATA_CHUNK`] bytes. Protocol failures are
/// kept: after an `io::Error`, [`DataWriter::take_error`] returns the real one.
pub struct DataWriter<'a, R, W: Write> {
    ch: &'a mut Channel<R, W>,
    buf: Vec<u8>,
    error: Option<Error>,
}

impl<R: Read, W: Write> DataWriter<'_, R, W> {
    /// The error behind the last `io::Error`, if it came from the protocol.
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = self.ch.writer().and_then(|w| w.data(&self.buf));
        self.buf.clear();
        res.map_err(|e| {
            let text = e.to_string();
            self.error = Some(e);
            io::Error::other(text)
        })
    }

    /// Send what is buffered, then END.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn finish(mut self) -> Result<()> {
        if let Err(e) = self.emit() {
            return Err(self.take_error().unwrap_or_else(|| Error::connection(describe_io(&e))));
        }
        self.ch.writer()?.end()
    }
}

impl<R: Read, W: Write> Write for DataWriter<'_, R, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(DATA_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == DATA_CHUNK {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encode manifest entry indices as the data of `need` (u32 big-endian each).
pub fn encode_indices(indices: &[u32]) -> Vec<u8> {
    indices.iter().flat_map(|i| i.to_be_bytes()).collect()
}

/// Decode the data of `need`.
///
/// # Errors
/// When the length is not a multiple of 4.
pub fn decode_indices(bytes: &[u8]) -> Result<Vec<u32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::other("the list of missing objects is malformed"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8]) -> FrameReader<&[u8]> {
        FrameReader::new(bytes, Peer::Client)
    }

    /// A file sent through a pipe (spliced) and through a regular file
    /// (read and written) gives the same frames and the same byte count.
    #[test]
    fn file_data_is_the_same_frames_spliced_or_copied() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let content: Vec<u8> = (0..(DATA_CHUNK * 2 + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &content).unwrap();
        let len = content.len() as u64;

        let (mut rx, tx) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            rx.read_to_end(&mut all).unwrap();
            all
        });
        let mut w = FrameWriter::new(tx, Peer::Host);
        let mut progress = 0;
        w.file_data(&mut File::open(&src).unwrap(), &src, len, &mut |n| progress += n)
            .unwrap();
        w.end().unwrap();
        let spliced_bytes = w.data_bytes();
        drop(w);
        let spliced = reader.join().unwrap();
        assert_eq!(progress, len);

        let out = dir.path().join("out");
        let mut w = FrameWriter::new(File::create(&out).unwrap(), Peer::Host);
        w.file_data(&mut File::open(&src).unwrap(), &src, len, &mut |_| {})
            .unwrap();
        w.end().unwrap();
        assert_eq!(w.data_bytes(), spliced_bytes);
        drop(w);
        assert_eq!(std::fs::read(&out).unwrap(), spliced);

        let mut r = frames(&spliced);
        let mut got = Vec::new();
        while let Some(FrameType::Data) = r.next_frame().unwrap() {
            got.extend_from_slice(r.payload());
        }
        assert_eq!(got, content);

        // A file shorter than announced is an error naming it.
        let mut w = FrameWriter::new(File::create(dir.path().join("short")).unwrap(), Peer::Host);
        let e = w
            .file_data(&mut File::open(&src).unwrap(), &src, len + 1, &mut |_| {})
            .unwrap_err();
        assert!(e.to_string().contains("ended before its announced size"), "{e}");
    }

    #[test]
    fn frames_round_trip_and_count_data() {
        let mut ch = Channel::new(io::empty(), Vec::new(), Peer::Host);
        ch.send(&Message::hello()).unwrap();
        ch.send_blob(&vec![7u8; DATA_CHUNK + 10]).unwrap();
        assert_eq!(ch.data_bytes_sent(), (3 * FRAME_HEADER + DATA_CHUNK + 10) as u64);
        ch.flush().unwrap();
        let bytes = ch.writer.take().unwrap().inner.into_inner().unwrap();
        let mut back = Channel::new(bytes.as_slice(), io::sink(), Peer::Client);
        assert_eq!(back.recv().unwrap(), Message::hello());
        assert_eq!(back.recv_blob(1 << 30, "x").unwrap().len(), DATA_CHUNK + 10);
        assert!(back.recv_optional().unwrap().is_none());
    }

    #[test]
    fn oversized_unknown_and_truncated_frames_are_refused() {
        let mut big = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        big.push(2);
        let e = frames(&big).next_frame().unwrap_err().to_string();
        assert!(e.starts_with("oversized frame from the client"), "{e}");
        let e = frames(&[0, 0, 0, 0, 9]).next_frame().unwrap_err().to_string();
        assert!(e.contains("unknown frame type 9"), "{e}");
        let e = frames(&[0, 0, 0, 4, 2, 1]).next_frame().unwrap_err();
        assert!(e.is_connection(), "{e}");
        assert!(frames(&[]).next_frame().unwrap().is_none());
    }

    #[test]
    fn errors_keep_their_kind() {
        let mut ch = Channel::new(io::empty(), Vec::new(), Peer::Client);
        ch.send(&Message::error(&Error::integrity("bad bytes"))).unwrap();
        ch.flush().unwrap();
        let bytes = ch.writer.take().unwrap().inner.into_inner().unwrap();
        let mut back = Channel::new(bytes.as_slice(), io::sink(), Peer::Host);
        let e = back.recv().unwrap_err();
        assert_eq!(e.exit().code(), 5);
        assert_eq!(e.to_string(), "bad bytes");
        assert!(back.peer_failed());
    }

    #[test]
    fn a_version_mismatch_names_both_versions_and_what_to_upgrade() {
        let old = Message::Hello {
            protocol: 0,
            version: "0.0.1".into(),
        };
        let e = check_hello(old, Peer::Host).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "the host runs slipway 0.0.1 (protocol 0) but this client runs slipway {VERSION} (protocol 1): upgrade slipway on the host to {VERSION}: run `slipway host install -t TARGET`"
            )
        );
        let old = Message::Hello {
            protocol: 0,
            version: "0.0.1".into(),
        };
        let e = check_hello_for(old, Peer::Host, Some("prod")).unwrap_err().to_string();
        assert!(e.ends_with(": run `slipway host install -t prod`"), "{e}");
        let new = Message::Hello {
            protocol: 9,
            version: "9.0.0".into(),
        };
        let e = check_hello(new.clone(), Peer::Host).unwrap_err().to_string();
        assert!(
            e.ends_with(&format!(
                "upgrade slipway on this machine (the client) to 9.0.0, or run `slipway host install -t TARGET` to put this slipway ({VERSION}) on the host"
            )),
            "{e}"
        );
        let e = check_hello(new, Peer::Client).unwrap_err().to_string();
        assert!(e.starts_with("the client runs slipway 9.0.0 (protocol 9)"), "{e}");
        assert_eq!(check_hello(Message::hello(), Peer::Host).unwrap(), VERSION);
    }

    #[test]
    fn wire_names_match() {
        let m = Message::Batch { entries: vec![1, 2] };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"type":"batch","entries":[1,2]}"#);
        assert_eq!(m.name(), "batch");
        assert_eq!(serde_json::to_string(&Message::Done).unwrap(), r#"{"type":"done"}"#);
        assert_eq!(decode_indices(&encode_indices(&[0, 70000])).unwrap(), vec![0, 70000]);
    }
}
