//! One client's session with `serve`: the connection, the root's layout,
//! and what the session may do and holds. Every request handler
//! (`stage`, `requests`) gets one; `serve` makes it after the greeting.
//!
//! Invariants: a session serves exactly one root (the layout, created
//! before the first request); it holds the host lock only between `lock` and
//! `unlock` (or its end: dropping the session releases it); a confined
//! session stays confined.

use std::io::Write;

use super::layout::Layout;
use super::lock::HostLock;
use crate::protocol::Channel;

/// What every request handler gets.
pub struct Session<R, W: Write> {
    pub ch: Channel<R, W>,
    pub layout: Layout,
    /// `--append-only`: refuse prune and any deletion of releases or objects.
    pub append_only: bool,
    /// The client's slipway version, from its `hello`.
    pub client_version: String,
    /// The host lock, while this session holds it (`lock` … `unlock`).
    pub lock: Option<HostLock>,
    /// Confined (the default): only the host's own hooks
    /// (`.slipway/hooks.toml`) run, with the host's timeouts and environment,
    /// never commands, variables or time budgets sent by the client. Only
    /// `serve --trust-client`, outside a forced command, lifts it.
    pub confined: bool,
}
