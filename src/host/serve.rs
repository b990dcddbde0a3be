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
use super::session::Session;
use super::{requests, stage};
use crate::error::{Error, Result};
use crate::protocol::{Channel, Message, Peer, check_hello};

/// Whether `serve` may run what its client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Run only what the host's own configuration defines (the default).
    Confined,
    /// Run the client's hook commands with its environment and timeouts
    /// (`--trust-client`: the client started `serve` itself).
    Client,
}

/// Serve the protocol on this process's stdin and stdout.
///
/// # Errors
/// Whatever ended the session (it was also sent to the client when possible).
pub fn serve_stdio(root: &Path, append_only: bool, trust_client: bool, key_name: Option<&str>) -> Result<()> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dup = |fd: std::io::Result<std::os::fd::OwnedFd>, what: &str| {
        fd.map(File::from)
            .map_err(|e| Error::other(format!("cannot use {what}: {}", crate::error::describe_io(&e))))
    };
    let input = dup(std::io::stdin().as_fd().try_clone_to_owned(), "stdin")?;
    // Checks stop when the client goes away (or cancels) while they run.
    if let Ok(watch) = input.try_clone() {
        super::hooks::watch_client(watch);
    }
    let output = dup(std::io::stdout().as_fd().try_clone_to_owned(), "stdout")?;
    // sshd sets SSH_ORIGINAL_COMMAND when it runs a forced command for an
    // exec or subsystem request, but not for a shell request (`ssh -T host`):
    // its absence proves nothing, so confinement is the default and only our
    // own command line lifts it; a forced command stays confined even if its
    // line carries `--trust-client`.
    let forced = std::env::var_os("SSH_ORIGINAL_COMMAND").map(|c| c.to_string_lossy().into_owned());
    let trust = if trust_client && forced.is_none() {
        Trust::Client
    } else {
        Trust::Confined
    };
    let via = connected_via(forced.is_some(), key_name);
    serve(
        root,
        &Options {
            append_only,
            trust,
            forced,
            via: Some(via),
        },
        BufReader::with_capacity(256 * 1024, input),
        output,
    )
}

/// How `serve` was started, beyond its root.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--append-only`: refuse prune and every deletion.
    pub append_only: bool,
    pub trust: Trust,
    /// `SSH_ORIGINAL_COMMAND` when sshd runs `serve` as a forced command for
    /// an exec or subsystem request (what the client asked for).
    pub forced: Option<String>,
    /// Who the host saw connect (see [`connected_via`]).
    pub via: Option<String>,
}

/// What this host knows about who connected, independent of what the client
/// claims: the account `serve` runs as, the ssh peer (`SSH_CONNECTION`), and
/// the key name a forced command line gives (`--key-name`), e.g.
/// `deploy, ssh from 10.0.0.5, key ci@build`.
pub fn connected_via(forced: bool, key_name: Option<&str>) -> String {
    let mut parts = Vec::new();
    let uid = rustix::process::getuid().as_raw();
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64 && !u.chars().any(char::is_control))
        .unwrap_or_else(|| format!("uid {uid}"));
    parts.push(user);
    match std::env::var("SSH_CONNECTION") {
        Ok(c) => {
            let peer = c.split_whitespace().next().unwrap_or("?");
            let peer: String = peer
                .chars()
                .filter(|c| c.is_ascii_hexdigit() || ".:".contains(*c))
                .take(45)
                .collect();
            parts.push(format!("ssh from {peer}"));
        }
        Err(_) => parts.push("local".into()),
    }
    if let Some(k) = key_name {
        parts.push(format!("key {k}"));
    } else if forced {
        parts.push("a restricted key".into());
    }
    parts.join(", ")
}

/// Check what the client asked for against the forced command: only `serve`,
/// only this root (the forced `--root` wins; asking for another is an error,
/// not silence), only the flags `--root`, `--append-only`, `--key-name` and
/// `--trust-client` (which a forced command ignores: it stays confined).
///
/// # Errors
/// [`Error::Restricted`] (exit 2) naming what was asked and what this key
/// allows.
pub fn check_forced(root: &Path, asked: &str) -> Result<()> {
    let words = shell_words(asked);
    let allowed = format!("this key may only run `slipway serve --root {}`", root.display());
    let Some(at) = words.iter().position(|w| w == "serve") else {
        return Err(Error::Restricted(format!(
            "{allowed}; it asked for `{}`",
            asked.escape_debug()
        )));
    };
    let mut rest = words[at + 1..].iter();
    while let Some(w) = rest.next() {
        match w.as_str() {
            "--append-only" | "--trust-client" => {}
            "--key-name" => {
                if rest.next().is_none() {
                    return Err(Error::Restricted(format!("{allowed}; `--key-name` without a value")));
                }
            }
            "--root" => {
                let Some(r) = rest.next() else {
                    return Err(Error::Restricted(format!("{allowed}; `--root` without a value")));
                };
                let wanted = std::fs::canonicalize(r).unwrap_or_else(|_| Path::new(r).to_path_buf());
                let own = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
                if wanted != own {
                    return Err(Error::Restricted(format!(
                        "this key is restricted to the root `{}`; the client asked for `{}`: point the target at `{}`, or use a key allowed there",
                        root.display(),
                        r.escape_debug(),
                        root.display()
                    )));
                }
            }
            other => {
                return Err(Error::Restricted(format!(
                    "{allowed}; the flag `{}` is not allowed",
                    other.escape_debug()
                )));
            }
        }
    }
    Ok(())
}

/// Split a command line the way a POSIX shell would for plain words and
/// single/double quotes (enough to read back what the client sent).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                any = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                any = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                any = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                any = true;
                cur.push(c);
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Serve one session on `reader`/`writer`.
///
/// # Errors
/// Whatever ended the session (it was also sent to the client when possible).
pub fn serve<R: Read, W: Write>(root: &Path, opts: &Options, reader: R, writer: W) -> Result<()> {
    let mut ch = Channel::new(reader, writer, Peer::Client);
    ch.send(&Message::hello())?;
    if let Some(asked) = &opts.forced
        && let Err(e) = check_forced(root, asked)
    {
        return fail(&mut ch, e);
    }
    let Some(first) = ch.recv_optional()? else {
        return Ok(());
    };
    let client_version = match check_hello(first, Peer::Client) {
        Ok(v) => v,
        Err(e) => return fail(&mut ch, e),
    };
    // Only a push creates a root that does not exist yet.
    let (layout, created) = match Layout::existing(root) {
        Ok(Some(l)) => (l, true),
        Ok(None) => (
            Layout {
                root: root.to_path_buf(),
            },
            false,
        ),
        Err(e) => return fail(&mut ch, e),
    };
    super::fault::set_root(&layout.root);
    let mut session = Session {
        ch,
        layout,
        created,
        append_only: opts.append_only,
        client_version,
        lock: None,
        confined: opts.trust == Trust::Confined || opts.forced.is_some(),
        via: opts.via.clone(),
        health: std::collections::HashMap::new(),
        paused: false,
    };
    let result = requests_of(&mut session);
    // However the session ends (its client gone, an error), intake it
    // paused does not stay off.
    if session.paused {
        let _ = super::intake::resume_left_open(
            &session.layout,
            session.via.clone(),
            "resumed by the host: the session that paused intake ended without resuming it",
        );
    }
    result
}

/// Answer `session`'s requests until the client closes it or one fails.
fn requests_of<R: Read, W: Write>(session: &mut Session<R, W>) -> Result<()> {
    while let Some(request) = session.ch.recv_optional()? {
        // A `cancel` that came after the check it was meant for ended.
        if matches!(request, Message::Cancel) {
            continue;
        }
        if !session.created {
            match &request {
                Message::Push(_) => match Layout::create(&session.layout.root) {
                    Ok(l) => {
                        super::fault::set_root(&l.root);
                        session.layout = l;
                        session.created = true;
                    }
                    Err(e) => return fail(&mut session.ch, e),
                },
                // A check reports the root missing, a plan finds it lacks
                // everything; nothing else has anything to work on.
                Message::Check | Message::PlanPush(_) => {}
                other => {
                    let e = Error::root_missing(&session.layout.root, other.name());
                    return fail(&mut session.ch, e);
                }
            }
        }
        let reply = match request {
            Message::Push(offer) => stage::push(session, *offer),
            Message::PlanPush(offer) => super::plan_push::plan_push(session, &offer),
            Message::Lock {
                holder,
                wait_ms,
                notify,
            } => requests::take_lock(session, holder, wait_ms, notify),
            Message::Unlock => Ok(requests::release_lock(session)),
            Message::Activate(req) => requests::activate(session, *req),
            Message::Rollback(req) => requests::rollback(session, *req),
            Message::MarkBad { name, reason } => requests::mark_bad(session, &name, &reason),
            Message::MarkHealthy { name, actor } => requests::mark_healthy(session, &name, &actor),
            Message::Status => requests::status(session),
            Message::History { limit, id } => requests::history(session, limit, id.as_ref()),
            Message::Prune { keep, pinned, dry_run } => requests::prune(session, keep, &pinned, dry_run),
            Message::PlanPrune { keep, pinned } => requests::plan_prune(session, keep, &pinned),
            Message::Verify { release } => requests::verify(session, release.as_deref()),
            Message::Hook(req) => requests::hook(session, &req),
            Message::Check => requests::check(session),
            Message::Service(req) => requests::service(session, *req),
            other => Err(Error::UnknownRequest(format!(
                "`{}` is not a request this host understands (slipway {})",
                other.name(),
                crate::protocol::VERSION
            ))),
        };
        match reply {
            Ok(msg) => session.ch.send(&msg)?,
            Err(e) if e.is_no_space() => {
                // A full disk: say what uses it and what would make room.
                let advice = super::space::advice(&session.layout, 0);
                let msg = format!("{e}; `{}` is full: {advice}", session.layout.root.display());
                return fail(&mut session.ch, e.reworded(msg));
            }
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

#[cfg(test)]
mod forced_tests {
    use super::*;

    #[test]
    fn only_serve_on_this_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir(&root).unwrap();
        let r = root.display().to_string();
        check_forced(&root, &format!("slipway serve --root '{r}'")).unwrap();
        check_forced(&root, &format!("/usr/bin/slipway serve --root {r} --append-only")).unwrap();
        check_forced(&root, &format!("slipway serve --root {r} --trust-client")).unwrap();
        let other = check_forced(&root, "slipway serve --root '/srv/other'")
            .unwrap_err()
            .to_string();
        assert!(other.contains("restricted to the root"), "{other}");
        assert!(check_forced(&root, "sh -c 'cat /etc/shadow'").is_err());
        assert!(check_forced(&root, &format!("slipway serve --root {r} --exec x")).is_err());
        assert_eq!(shell_words("a 'b c' \"d e\" f\\ g"), vec!["a", "b c", "d e", "f g"]);
    }
}
