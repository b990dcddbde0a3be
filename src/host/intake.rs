//! Database steps on a host: the intake window (`pause` … `resume`) and the
//! record of migrations (docs/ab-deploys.md, "Complex A/B").
//!
//! ```text
//! <root>/.slipway/intake.json       an open intake window: since when, and the `resume` that closes it
//! <root>/.slipway/migrations.jsonl  every migration run here: started, then ok or failed (append-only)
//! ```
//!
//! Invariants: the window is written before `pause` runs and removed only
//! after a `resume` succeeded, so intake is never left off unknowingly:
//! the session that paused resumes when it ends however it ends (its client
//! gone, an error), and whoever takes the lock next resumes a window left by
//! a `serve` that was killed. A migration is recorded as started before it
//! runs and with its result after, and a release whose migration succeeded
//! is not migrated again unless asked.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::fs;
use crate::protocol::{HookRequest, HookResult, Migration, Record};
use crate::provenance::{now_rfc3339, now_rfc3339_millis};

/// `.slipway/intake.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Milliseconds since the epoch.
    pub since_ms: u64,
    pub since: String,
    /// What closes it.
    pub resume: HookRequest,
}

fn window_path(layout: &Layout) -> std::path::PathBuf {
    layout.meta_dir().join("intake.json")
}

fn migrations_path(layout: &Layout) -> std::path::PathBuf {
    layout.meta_dir().join("migrations.jsonl")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The open window, if any.
///
/// # Errors
/// On I/O failure or an unreadable file.
pub fn window(layout: &Layout) -> Result<Option<Window>> {
    let Some(bytes) = fs::read_optional(&window_path(layout))? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::other(format!("`{}` is unreadable: {e}", window_path(layout).display())))
}

/// Record an open window (before `pause` runs). A window already open is
/// kept: it started earlier.
///
/// # Errors
/// On I/O failure.
pub fn open(layout: &Layout, resume: HookRequest) -> Result<()> {
    if window(layout)?.is_some() {
        return Ok(());
    }
    let w = Window {
        since_ms: now_ms(),
        since: now_rfc3339(),
        resume,
    };
    let bytes = serde_json::to_vec_pretty(&w).map_err(Error::Encode)?;
    fs::write_atomic(&window_path(layout), &bytes)
}

/// Close the window after a successful `resume`: remove it and append a
/// `resume` record (how long intake was off) to the history. Returns that
/// length.
///
/// # Errors
/// On I/O failure.
pub fn close(layout: &Layout, actor: &str, via: Option<String>, reason: Option<String>) -> Result<Option<u64>> {
    let Some(w) = window(layout)? else {
        return Ok(None);
    };
    let paused_ms = now_ms().saturating_sub(w.since_ms);
    let release = layout.current_name()?.unwrap_or_else(|| w.resume.release.clone());
    if let Some(meta) = layout.release_meta(&release)? {
        let record = Record {
            time: now_rfc3339_millis(),
            actor: actor.to_string(),
            action: "resume".into(),
            from: Some(release.clone()),
            to: release,
            id: meta.id,
            reason,
            signer: None,
            via,
            slot: None,
            schema: None,
            db_schema: None,
            backup: None,
            paused_ms: Some(paused_ms),
            marked_bad: None,
            warning: None,
        };
        super::history::append(layout, &record)?;
    }
    fs::remove_file_optional(&window_path(layout))?;
    fs::fsync_dir(&layout.meta_dir())?;
    Ok(Some(paused_ms))
}

/// Run the open window's `resume` and close the window when it succeeds
/// (a session that ends with intake off, or a window a killed `serve`
/// left). Returns the result, or `None` when no window is open.
///
/// # Errors
/// When `resume` cannot be started, or on I/O failure.
pub fn resume_left_open(layout: &Layout, via: Option<String>, why: &str) -> Result<Option<HookResult>> {
    let Some(w) = window(layout)? else {
        return Ok(None);
    };
    let r = super::hooks::run(layout, &w.resume)?;
    if r.ok {
        close(layout, "slipway", via, Some(why.to_string()))?;
    }
    Ok(Some(r))
}

/// Append one migration record.
///
/// # Errors
/// On I/O failure.
pub fn record(layout: &Layout, m: &Migration) -> Result<()> {
    let line = serde_json::to_string(m).map_err(Error::Encode)?;
    fs::append_line(&migrations_path(layout), &line)
}

/// Every migration record, oldest first (unreadable lines are skipped).
///
/// # Errors
/// On I/O failure.
pub fn migrations(layout: &Layout) -> Result<Vec<Migration>> {
    let Some(bytes) = fs::read_optional(&migrations_path(layout))? else {
        return Ok(Vec::new());
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The newest migration record: its result, or `started` when the `serve`
/// that ran it was killed before it ended.
///
/// # Errors
/// On I/O failure.
pub fn last(layout: &Layout) -> Result<Option<Migration>> {
    Ok(migrations(layout)?.pop())
}

/// Did `release`'s `kind` migration already succeed here?
///
/// # Errors
/// On I/O failure.
pub fn succeeded(layout: &Layout, kind: &str, release: &str) -> Result<Option<Migration>> {
    Ok(migrations(layout)?
        .into_iter()
        .rev()
        .find(|m| m.kind == kind && m.release == release && m.state == "ok"))
}

/// A migration's record before it runs.
pub fn started(req: &HookRequest) -> Migration {
    let env = |k: &str| req.env.get(k).cloned().filter(|v| !v.is_empty());
    Migration {
        time: now_rfc3339_millis(),
        kind: req.kind.clone(),
        release: req.release.clone(),
        state: "started".into(),
        schema: env("SLIPWAY_SCHEMA"),
        backup: env("SLIPWAY_BACKUP"),
        seconds: None,
        output: None,
    }
}

/// The record of a migration that ended with `r`.
pub fn ended(start: &Migration, r: &HookResult) -> Migration {
    let tail: String = r
        .output
        .chars()
        .rev()
        .take(1024)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Migration {
        time: now_rfc3339_millis(),
        state: if r.ok { "ok" } else { "failed" }.into(),
        seconds: Some(r.seconds),
        output: Some(tail),
        ..start.clone()
    }
}
