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
use crate::digest::Digest;
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
    let line = serde_json::to_string(record).map_err(Error::Encode)?;
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
    let mut records = Vec::new();
    let warnings = each_record(layout, |r| records.push(r))?;
    Ok((records, warnings))
}

/// Longest history line read, in bytes: a record is well under 2 KiB (a
/// host bounds what clients send); a longer line, e.g. from a slipway that
/// bounded nothing, is skipped with a warning instead of being held whole.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Most bytes of records one `history` answer carries (the frame limit is
/// 16 MiB); older records beyond it are left out with a warning.
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// The newest `limit` records (all, when `None`) with bundle id `id` (any,
/// when `None`), newest first, plus warnings. Memory is bounded by what is
/// returned, whatever the size of the log.
///
/// # Errors
/// When the log cannot be read at all.
pub fn newest(layout: &Layout, limit: Option<usize>, id: Option<&Digest>) -> Result<(Vec<Record>, Vec<String>)> {
    let mut kept = std::collections::VecDeque::new();
    let mut bytes = 0usize;
    let mut dropped = 0usize;
    let mut warnings = each_record(layout, |r| {
        if id.is_some_and(|id| &r.id != id) {
            return;
        }
        bytes += record_size(&r);
        kept.push_back(r);
        // Older records make way for newer ones: past the limit silently,
        // past the reply's size with a warning.
        if limit.is_some_and(|n| kept.len() > n)
            && let Some(old) = kept.pop_front()
        {
            bytes -= record_size(&old);
        }
        while bytes > MAX_REPLY_BYTES && kept.len() > 1 {
            if let Some(old) = kept.pop_front() {
                bytes -= record_size(&old);
                dropped += 1;
            }
        }
    })?;
    if dropped > 0 {
        warnings.push(format!(
            "{dropped} older record(s) left out: the answer is limited to {} MiB; ask for fewer with `--limit`",
            MAX_REPLY_BYTES / (1024 * 1024)
        ));
    }
    Ok((kept.into_iter().rev().collect(), warnings))
}

/// About how many bytes `r` takes in an answer (its strings, and a fixed
/// allowance for the keys, time and id).
fn record_size(r: &Record) -> usize {
    256 + r.actor.len()
        + r.reason.as_ref().map_or(0, String::len)
        + r.via.as_ref().map_or(0, String::len)
        + r.signer.as_ref().map_or(0, String::len)
}

/// Call `each` with every readable record, oldest first, reading the log
/// line by line; returns one warning per line that could not be read.
fn each_record(layout: &Layout, mut each: impl FnMut(Record)) -> Result<Vec<String>> {
    let path = layout.history_path();
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
    let mut warnings = Vec::new();
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let (ended, too_long) = read_line(&mut reader, &mut line).map_err(|e| Error::io("read", &path, e))?;
        if ended && line.is_empty() && !too_long {
            break;
        }
        number += 1;
        let blank = line.iter().all(u8::is_ascii_whitespace);
        if too_long {
            warnings.push(format!(
                "`{}` line {number}: record longer than {MAX_LINE_BYTES} bytes skipped",
                path.display()
            ));
        } else if !blank {
            match serde_json::from_slice::<Record>(&line) {
                Ok(r) => each(r),
                Err(_) => warnings.push(format!(
                    "`{}` line {number}: unreadable record skipped (torn write or damage)",
                    path.display()
                )),
            }
        }
        if ended {
            break;
        }
    }
    Ok(warnings)
}

/// Read one line (without its newline) into `line`, keeping at most
/// [`MAX_LINE_BYTES`]; returns (end of file reached, line was too long).
fn read_line(reader: &mut impl std::io::BufRead, line: &mut Vec<u8>) -> std::io::Result<(bool, bool)> {
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((true, too_long));
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        if !too_long && line.len() + chunk.len() <= MAX_LINE_BYTES {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        let used = found.map_or(chunk.len(), |i| i + 1);
        reader.consume(used);
        if found.is_some() {
            return Ok((false, too_long));
        }
    }
}

/// Write the intent before `current` changes.
///
/// # Errors
/// On I/O failure.
pub fn write_intent(layout: &Layout, intent: &Intent) -> Result<()> {
    let bytes = serde_json::to_vec(intent).map_err(Error::Encode)?;
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
