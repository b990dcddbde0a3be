//! `slipway serve`: the host end of the protocol over stdin/stdout.
//!
//! One session per connection: `hello` both ways, then requests, each handled
//! by one function (`Message::Push` → [`super::stage::push`]; activation,
//! status and the rest slot in beside it) and answered by its reply or by one
//! `error` message, after which the host closes the connection.
//!
//! Invariants: stdout carries only protocol frames; everything written is
//! under `--root` (names, manifest paths and links are validated before use);
//! files are created with exact modes (umask 022, nothing group- or
//! world-writable).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use super::layout::Layout;
use super::{requests, stage};
use crate::error::{Error, Result};
use crate::protocol::{Channel, Message, Peer, check_hello};

/// What every request handler gets.
pub struct Session<R, W: Write> {
    pub ch: Channel<R, W>,
    pub layout: Layout,
    /// `--append-only`: refuse prune and any deletion of releases or objects.
    pub append_only: bool,
    /// The client's slipway version, from its `hello`.
    pub client_version: String,
    /// The host lock, while this session holds it (`lock` … `unlock`).
    pub lock: Option<super::lock::HostLock>,
}

/// Serve the protocol on this process's stdin and stdout.
///
/// # Errors
/// Whatever ended the session (it was also sent to the client when possible).
pub fn serve_stdio(root: &Path, append_only: bool) -> Result<()> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dup = |fd: std::io::Result<std::os::fd::OwnedFd>, what: &str| {
        fd.map(File::from)
            .map_err(|e| Error::other(format!("cannot use {what}: {}", crate::error::describe_io(&e))))
    };
    let input = dup(std::io::stdin().as_fd().try_clone_to_owned(), "stdin")?;
    let output = dup(std::io::stdout().as_fd().try_clone_to_owned(), "stdout")?;
    serve(root, append_only, BufReader::with_capacity(256 * 1024, input), output)
}

/// Serve one session on `reader`/`writer`.
///
/// # Errors
/// Whatever ended the session (it was also sent to the client when possible).
pub fn serve<R: Read, W: Write>(root: &Path, append_only: bool, reader: R, writer: W) -> Result<()> {
    let mut ch = Channel::new(reader, writer, Peer::Client);
    ch.send(&Message::hello())?;
    let Some(first) = ch.recv_optional()? else {
        return Ok(());
    };
    let client_version = match check_hello(first, Peer::Client) {
        Ok(v) => v,
        Err(e) => return fail(&mut ch, e),
    };
    let layout = match Layout::create(root) {
        Ok(l) => l,
        Err(e) => return fail(&mut ch, e),
    };
    let mut session = Session {
        ch,
        layout,
        append_only,
        client_version,
        lock: None,
    };
    while let Some(request) = session.ch.recv_optional()? {
        let reply = match request {
            Message::Push(offer) => stage::push(&mut session, *offer),
            Message::Lock { holder, wait_ms } => requests::take_lock(&mut session, holder, wait_ms),
            Message::Unlock => Ok(requests::release_lock(&mut session)),
            Message::Activate(req) => requests::activate(&mut session, *req),
            Message::Rollback(req) => requests::rollback(&mut session, *req),
            Message::MarkBad { name, reason } => requests::mark_bad(&mut session, &name, &reason),
            Message::Status => requests::status(&session),
            Message::History { limit } => requests::history(&session, limit),
            Message::Prune { keep, pinned, dry_run } => requests::prune(&mut session, keep, &pinned, dry_run),
            Message::Verify { release } => requests::verify(&session, release.as_deref()),
            Message::Hook(req) => requests::hook(&session, &req),
            other => Err(Error::other(format!(
                "`{}` is not a request this host understands (slipway {})",
                other.name(),
                crate::protocol::VERSION
            ))),
        };
        match reply {
            Ok(msg) => session.ch.send(&msg)?,
            Err(e) => return fail(&mut session.ch, e),
        }
    }
    Ok(())
}

/// Tell the client, then end the session with `e`.
fn fail<R: Read, W: Write>(ch: &mut Channel<R, W>, e: Error) -> Result<()> {
    if !e.is_connection() {
        let _ = ch.send(&Message::error(&e));
        let _ = ch.flush();
    }
    Err(e)
}
