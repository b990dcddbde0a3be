//! The client end of the protocol: one [`HostSession`] per host and command.
//!
//! Opening a session starts one `slipway serve` on the host (through either
//! transport) and exchanges `hello`; each request is one method (`push` is in
//! [`super::push`]). Invariants: one remote process per host per command, and
//! every error leaving a session names the host — when the connection breaks,
//! the host's own `error` message (or the last line of its stderr) replaces
//! the transport's complaint.

use std::io::BufReader;

use super::{HostSpec, RemoteProcess};
use crate::error::{Error, Result};
use crate::protocol::{Channel, Message, Peer, check_hello_for};

/// The channel type of a client session (both transports are boxed streams).
pub type HostChannel = Channel<BufReader<Box<dyn super::Inbound>>, Box<dyn super::Outbound>>;

/// A connection to one host's `slipway serve`, past the `hello`.
pub struct HostSession {
    label: String,
    pub(crate) ch: HostChannel,
    process: Box<dyn RemoteProcess>,
    host_version: String,
    finished: bool,
}

impl HostSession {
    /// Start `serve` for `spec` and greet it.
    ///
    /// # Errors
    /// When the host cannot be reached, does not answer with a `hello`, or
    /// speaks another protocol version (one error naming both versions).
    pub fn open(spec: &HostSpec) -> Result<HostSession> {
        HostSession::greet(spec, super::connect(spec)?)
    }

    /// Greet the `serve` at the other end of `conn` (from [`super::connect`]),
    /// so that a caller can tell an unreachable host from one whose slipway
    /// is missing or speaks another protocol.
    ///
    /// # Errors
    /// As [`HostSession::open`], except reaching the host.
    pub fn greet(spec: &HostSpec, conn: super::Connection) -> Result<HostSession> {
        let reader = BufReader::with_capacity(256 * 1024, conn.reader);
        let mut session = HostSession {
            label: spec.label.clone(),
            ch: Channel::new(reader, conn.writer, Peer::Host),
            process: conn.process,
            host_version: String::new(),
            finished: false,
        };
        let greeting = session.ch.send(&Message::hello()).and_then(|()| session.ch.recv());
        let hello = match greeting {
            Ok(msg) => check_hello_for(msg, Peer::Host, Some(&spec.target)),
            Err(e) if e.is_connection() || session.ch.peer_failed() => Err(e),
            Err(e) => Err(Error::other(format!(
                "the host did not answer with a slipway hello ({e}); is something else writing to the stdout of `slipway serve`, such as the login shell?"
            ))),
        };
        match hello {
            Ok(v) => {
                session.host_version = v;
                Ok(session)
            }
            Err(e) => Err(session.fail_greeting(e)),
        }
    }

    /// Like [`HostSession::fail`], for a connection that broke before any
    /// `hello`: the remote command never ran as `serve`, so how it exited
    /// (e.g. ``slipway` was not found on the host (exit 127)`, with what to
    /// do) is the explanation, when it exited unsuccessfully.
    fn fail_greeting(&mut self, e: Error) -> Error {
        if !e.is_connection() || self.ch.peer_failed() {
            return self.fail(e, "the greeting");
        }
        self.finished = true;
        self.ch.close_write();
        if let Some(he) = self.ch.drain_for_error() {
            let _ = self.process.finish();
            return he.on_host(&self.label);
        }
        match self.process.finish() {
            Err(exit) => exit.on_host(&self.label),
            Ok(()) => {
                let stderr = self.process.stderr_text();
                let said = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
                let why = if said.is_empty() {
                    String::new()
                } else {
                    format!(" (the host said: {})", said.trim())
                };
                Error::connection(format!("connection lost during the greeting: {e}{why}")).on_host(&self.label)
            }
        }
    }

    /// How the host is named in output.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The slipway version the host runs.
    pub fn host_version(&self) -> &str {
        &self.host_version
    }

    /// End the session: close our side and wait for `serve` to exit.
    ///
    /// # Errors
    /// When `serve` exits unsuccessfully.
    pub fn close(mut self) -> Result<()> {
        self.finished = true;
        self.ch.close_write();
        self.process.finish().map_err(|e| e.on_host(&self.label))
    }

    /// The error to report for an exchange that failed with `e` during
    /// `phase`; the session is over afterwards.
    pub(crate) fn fail(&mut self, e: Error, phase: &str) -> Error {
        self.finished = true;
        self.ch.close_write();
        if self.ch.peer_failed() {
            // The host's own refusal, with its kind (and exit code).
            let _ = self.process.finish();
            return e.on_host(&self.label);
        }
        let host_error = self.ch.drain_for_error();
        let status = self.process.finish();
        if !e.is_connection() {
            return e.on_host(&self.label);
        }
        if let Some(he) = host_error {
            return he.on_host(&self.label);
        }
        let stderr = self.process.stderr_text();
        let said = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        let why = match (said.is_empty(), status) {
            (false, _) => format!(" (the host said: {})", said.trim()),
            (true, Err(s)) => format!(" ({})", s.without_host()),
            (true, Ok(())) => String::new(),
        };
        Error::connection(format!("connection lost during {phase}: {e}{why}")).on_host(&self.label)
    }
}

impl Drop for HostSession {
    fn drop(&mut self) {
        if !self.finished {
            self.ch.close_write();
            self.process.kill();
        }
    }
}
