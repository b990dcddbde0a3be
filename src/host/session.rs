//! One client's session with `serve`: the connection, the root's layout,
//! and what the session may do and holds. Every request handler
//! (`stage`, `requests`) gets one; `serve` makes it after the greeting.
//!
//! Invariants: a session serves exactly one root; only a push creates it
//! when it does not exist yet (`created`), and every other request on a
//! root that does not exist changes nothing and says so; it holds the host lock only between `lock` and
//! `unlock` (or its end: dropping the session releases it); a confined
//! session stays confined.

use std::io::Write;

use super::layout::Layout;
use super::lock::HostLock;
use crate::error::{Error, Result};
use crate::protocol::Channel;

/// What every request handler gets.
pub struct Session<R, W: Write> {
    pub ch: Channel<R, W>,
    /// The root's layout; while `created` is false, only its paths (the
    /// root does not exist yet, or has no `.slipway/`).
    pub layout: Layout,
    /// The root is a slipway root (it existed, or a push of this session made it).
    pub created: bool,
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
    /// Who the host saw connect, recorded with every history record this
    /// session writes ([`crate::protocol::Record::via`]).
    pub via: Option<String>,
    /// Releases whose health check ran in this session, and whether it
    /// passed: a `healthy` record is written only after one that did.
    pub health: std::collections::HashMap<String, bool>,
    /// This session paused intake (`pause`) and has not resumed it: when
    /// it ends, the host resumes it itself.
    pub paused: bool,
}

/// Check an operator name a client sends (`actor`, `pushed_by`, a lock
/// holder): 1 to 256 bytes without control characters, as every record
/// that keeps it is shown to people.
///
/// # Errors
/// Usage error naming the value.
pub fn validate_actor(actor: &str) -> Result<()> {
    if actor.is_empty() || actor.len() > 256 || actor.chars().any(char::is_control) {
        return Err(Error::usage(format!(
            "`{}` is not a valid operator name (user@host, at most 256 characters)",
            actor.escape_debug()
        )));
    }
    Ok(())
}
