//! `.slipway/history.jsonl`: the append-only activation log, and the intent
//! record that keeps it in step with `current` across crashes.
//!
//! Invariants: records are only ever appended, each with one fsynced write
//! that starts on a fresh line (a torn last line from a crash is closed off
//! first, and skipped with a warning when read). Before `current` is renamed,
//! the record to be appended is written to `.slipway/intent.json`, with what
//! the switch does to release marks afterwards; whoever takes the lock next
//! finishes the switch if `current` moved ([`super::activate::reconcile`]:
//! appends the record if the log lacks it and settles the marks, both
//! idempotent), then drops the intent. This file only keeps the log and the
//! intent; what a switch does is `activate`'s.

use serde::{Deserialize, Serialize};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::fs;
use crate::protocol::Record;

/// `.slipway/intent.json`: a switch that has started and not yet finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The history record the switch appends.
    #[serde(flatten)]
    pub record: Record,
    /// The switch marks the release it leaves bad (rollbacks, reverts).
    #[serde(default)]
    pub mark_left_bad: bool,
}

fn intent_path(layout: &Layout) -> std::path::PathBuf {
    layout.meta_dir().join("intent.json")
}

/// True when a switch started and has not finished (or crashed).
pub fn intent_pending(layout: &Layout) -> bool {
    intent_path(layout).exists()
}

/// Append one record, fsynced, on a line of its own.
///
/// # Errors
/// On I/O failure.
pub fn append(layout: &Layout, record: &Record) -> Result<()> {
    let path = layout.history_path();
    let line = serde_json::to_string(record).map_err(|e| Error::other(e.to_string()))?;
    let torn = match fs::read_optional_tail(&path, 1)? {
        Some(last) => last.first() != Some(&b'\n') && !last.is_empty(),
        None => false,
    };
    let line = if torn { format!("\n{line}") } else { line };
    fs::append_line(&path, &line)
}

/// Every record, oldest first, plus one warning per line that could not be read.
///
/// # Errors
/// When the log cannot be read at all.
pub fn read(layout: &Layout) -> Result<(Vec<Record>, Vec<String>)> {
    let path = layout.history_path();
    let Some(bytes) = fs::read_optional(&path)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => records.push(r),
            Err(_) => warnings.push(format!(
                "`{}` line {}: unreadable record skipped (torn write or damage)",
                path.display(),
                i + 1
            )),
        }
    }
    Ok((records, warnings))
}

/// Write the intent before `current` changes.
///
/// # Errors
/// On I/O failure.
pub fn write_intent(layout: &Layout, intent: &Intent) -> Result<()> {
    let bytes = serde_json::to_vec(intent).map_err(|e| Error::other(e.to_string()))?;
    fs::write_atomic(&intent_path(layout), &bytes)
}

/// What `.slipway/intent.json` holds.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingIntent {
    /// No switch is in progress, and none crashed.
    Absent,
    /// A switch started and has not finished (or crashed).
    Found(Box<Intent>),
    /// The file exists but is not an intent (torn or damaged): dropped like
    /// an intent whose rename never happened.
    Unreadable,
}

/// Read the intent a switch left, if any.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn pending_intent(layout: &Layout) -> Result<PendingIntent> {
    let Some(bytes) = fs::read_optional(&intent_path(layout))? else {
        return Ok(PendingIntent::Absent);
    };
    Ok(match serde_json::from_slice(&bytes) {
        Ok(intent) => PendingIntent::Found(Box::new(intent)),
        Err(_) => PendingIntent::Unreadable,
    })
}

/// Remove the intent once its record is in the log.
///
/// # Errors
/// On I/O failure.
pub fn clear_intent(layout: &Layout) -> Result<()> {
    fs::remove_file_optional(&intent_path(layout))?;
    fs::fsync_dir(&layout.meta_dir())
}
