//! Fault injection, a test-only knob: `SLIPWAY_FAULT=<point>` in the
//! environment of `slipway serve` makes it stop dead at that named point of
//! the host side — `exit(99)` with no destructor, no cleanup and no reply to
//! the client — which is what a power cut or a `kill -9` looks like to the
//! file system. Unset (always, in production) it costs one environment
//! lookup per process.
//!
//! The points are the instants random kills rarely hit (between the steps
//! of an activation, see [`super::activate`], and of staging); `tests/cli/faults.rs` stops `serve` at each
//! and checks that nothing is lost, and `scripts/torture.sh` mixes them with
//! random kills. The variable reaches a local-path target's `serve` (a child
//! of the client) by inheritance; over SSH, sshd does not forward it, so a
//! test sets it in the remote command (`SLIPWAY_REMOTE_BIN="env
//! SLIPWAY_FAULT=after-objects slipway"`). `<point>@<root>` stops only the
//! `serve` of that root (one host of a fleet of local roots), and with
//! `SLIPWAY_FAULT_ONCE=<file>` only the first process to reach the point
//! stops (it creates the file; later ones see it and go on), so that a
//! command's second session — a fleet switching a host back — runs through.
//! A host only ever runs a point that whoever controls its environment
//! asked for.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable naming the point to stop at.
pub const ENV: &str = "SLIPWAY_FAULT";

/// The environment variable naming a marker file: stop only once.
pub const ONCE_ENV: &str = "SLIPWAY_FAULT_ONCE";

/// Exit status of a process stopped by a fault point.
pub const EXIT: i32 = 99;

/// Every point, in the order a push and an activation reach them, with what
/// has happened by then.
pub const POINTS: &[(&str, &str)] = &[
    (
        "after-pause-window",
        "pause: the intake window recorded, `pause` not yet run",
    ),
    (
        "mid-objects",
        "push: one object received and verified, the others still arriving",
    ),
    (
        "after-commit",
        "push: a group of received objects is linked into objects/, the rest still arriving",
    ),
    (
        "after-objects",
        "push: every object is verified and in objects/, the release tree not yet built",
    ),
    (
        "before-rename",
        "push: tree built and synced, metadata written, not yet renamed into releases/",
    ),
    (
        "after-publish",
        "push: renamed into releases/, not yet made read-only or fsynced",
    ),
    (
        "after-rename",
        "activate/rollback: `current` renamed, the root not yet fsynced, no history record",
    ),
    (
        "before-history",
        "activate/rollback: `current` renamed and fsynced, the history record not appended",
    ),
    (
        "after-history",
        "activate/rollback: history record appended, the intent record not yet removed",
    ),
    (
        "mid-prune",
        "prune: a release tree moved out of releases/, its metadata not yet removed",
    ),
];

static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The point asked for, and the root it is limited to.
fn wanted() -> Option<&'static (String, Option<PathBuf>)> {
    static WANTED: OnceLock<Option<(String, Option<PathBuf>)>> = OnceLock::new();
    WANTED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok().filter(|v| !v.is_empty())?;
            Some(match v.split_once('@') {
                Some((point, root)) => (
                    point.to_string(),
                    Some(std::fs::canonicalize(root).unwrap_or_else(|_| PathBuf::from(root))),
                ),
                None => (v, None),
            })
        })
        .as_ref()
}

/// Tell the fault points which root this process serves (for `<point>@<root>`).
pub fn set_root(root: &Path) {
    let _ = ROOT.set(root.to_path_buf());
}

/// With `SLIPWAY_FAULT=enospc:<point>` (or `enospc:<point>@<root>`): an
/// I/O error "no space left on device" at that point instead of a stop,
/// for the steps whose failure must be reported, not just survived.
///
/// # Errors
/// The injected error, when asked for.
pub fn error_point(name: &'static str) -> std::io::Result<()> {
    debug_assert!(POINTS.iter().any(|(p, _)| *p == name), "unknown fault point {name}");
    let Some((point, root)) = wanted() else {
        return Ok(());
    };
    if point.strip_prefix("enospc:") != Some(name) || root.as_ref().is_some_and(|r| ROOT.get() != Some(r)) {
        return Ok(());
    }
    Err(std::io::Error::from_raw_os_error(28))
}

/// Stop the process here if `SLIPWAY_FAULT` names this point (and this root).
pub fn point(name: &'static str) {
    debug_assert!(POINTS.iter().any(|(p, _)| *p == name), "unknown fault point {name}");
    let Some((point, root)) = wanted() else {
        return;
    };
    if point != name || root.as_ref().is_some_and(|r| ROOT.get() != Some(r)) {
        return;
    }
    if let Some(marker) = std::env::var_os(ONCE_ENV)
        && std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .is_err()
    {
        return;
    }
    // One line for the client's "the host said: …"; then die without unwinding.
    eprintln!("fault injected at `{name}` ({ENV}): stopping without cleanup");
    std::process::exit(EXIT);
}
