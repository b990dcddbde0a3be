//! Activation and rollback: point `current` at a release in one atomic
//! rename, and record it.
//!
//! The sequence, always under the host lock: reconcile a crashed
//! predecessor ([`reconcile`]), check `--expect`, write the intent, create
//! `current.<unique>` -> `releases/<name>`, rename it over `current`, fsync
//! the root, append the history record, drop the intent. `ln -sfn` is never
//! used: `current` is at the old or the new release at every instant, never
//! missing, never at a partial tree; history and `current` never disagree
//! once the next switch (or `status`, `history`, `prune`) has reconciled.

use super::history::{self, Intent, PendingIntent};
use super::layout::{HostRelease, Layout};
use crate::digest::looks_like_id;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::validate_name;
use crate::protocol::Record;
use crate::provenance::now_rfc3339_millis;

/// What to switch to and how to record it.
#[derive(Debug, Clone)]
pub struct Switch {
    pub name: String,
    /// The release that must be current (compare-and-swap), by name or id.
    pub expect: Option<String>,
    pub actor: String,
    /// `activate`, `rollback` or `revert`.
    pub action: String,
    pub reason: Option<String>,
    /// Mark the release being left as bad (rollbacks).
    pub mark_left_bad: bool,
    /// Who the host saw connect ([`Record::via`]).
    pub via: Option<String>,
    /// The service slot that takes the traffic ([`Record::slot`]).
    pub slot: Option<String>,
    /// What the record says about the database.
    pub db: crate::protocol::DbFacts,
}

/// What moves the traffic to the release being switched to (given its
/// name), right before `current` is renamed: nothing, for a host without
/// a service.
pub type Traffic<'a> = &'a mut dyn FnMut(&str) -> Result<()>;

/// Resolve REL among this host's releases: a name, or a unique id prefix.
///
/// # Errors
/// When nothing (or more than one release) matches.
pub fn resolve_release(layout: &Layout, rel: &str) -> Result<String> {
    if validate_name(rel).is_ok() && layout.release_meta_path(rel).is_file() {
        return Ok(rel.to_string());
    }
    let is_hex = !rel.is_empty() && rel.bytes().all(|c| c.is_ascii_hexdigit());
    if looks_like_id(rel) || is_hex {
        let mut found = Vec::new();
        for name in layout.release_names()? {
            if let Some(m) = layout.release_meta(&name)?
                && m.id.matches_prefix(rel)
            {
                found.push(name);
            }
        }
        match found.len() {
            1 => return Ok(found.remove(0)),
            0 => {}
            _ => {
                return Err(Error::usage(format!(
                    "`{rel}` is ambiguous on `{}`: it matches {}; give a release name or more digits of the id",
                    layout.root.display(),
                    found.join(", ")
                )));
            }
        }
    }
    validate_name(rel).map_err(|_| {
        Error::usage(format!(
            "`{}` is neither a release name nor a bundle id",
            rel.escape_debug()
        ))
    })?;
    Err(not_here(layout, rel))
}

fn not_here(layout: &Layout, name: &str) -> Error {
    Error::ReleaseNotOnHost {
        release: name.to_string(),
        root: layout.root.clone(),
    }
}

/// The metadata of a release whose tree is complete on this host.
///
/// # Errors
/// When it was never pushed, or its push never finished.
pub fn complete_release(layout: &Layout, name: &str) -> Result<HostRelease> {
    match layout.release_meta(name)? {
        Some(m) if m.pushed_at.is_some() && layout.release_dir(name).is_dir() => Ok(m),
        _ => Err(not_here(layout, name)),
    }
}

/// Point `current` at `releases/<name>` atomically and durably.
///
/// # Errors
/// On I/O failure; `current` is then unchanged.
pub fn point_current(layout: &Layout, name: &str) -> Result<()> {
    let tmp = layout.root.join(format!("current.{}", fs::unique_suffix()));
    fs::symlink(std::path::Path::new(&format!("releases/{name}")), &tmp)?;
    if let Err(e) = fs::rename(&tmp, &layout.current()) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    super::fault::point("after-rename");
    super::fault::error_point("after-rename").map_err(|e| Error::io("fsync", &layout.root, e))?;
    fs::fsync_dir(&layout.root)
}

/// Remove `current.*` leftovers of crashed activations.
fn sweep_leftovers(layout: &Layout) -> Result<()> {
    for (name, path) in fs::read_dir_sorted(&layout.root)? {
        if name.to_string_lossy().starts_with("current.") {
            fs::remove_file_optional(&path)?;
        }
    }
    Ok(())
}

/// Switch `current` (call with the host lock held). Returns the history record.
///
/// # Errors
/// `ExpectMismatch` (exit 6) when `--expect` does not match; the release is
/// missing; I/O failures. Nothing changes on error before the rename.
pub fn switch(layout: &Layout, req: &Switch) -> Result<Record> {
    switch_with(layout, req, &mut |_| Ok(()))
}

/// [`switch`], moving the traffic with `traffic` once every check has
/// passed and right before `current` is renamed; when it fails, nothing
/// has changed (it puts back what it changed itself).
///
/// # Errors
/// As [`switch`], and what `traffic` returns.
pub fn switch_with(layout: &Layout, req: &Switch, traffic: Traffic<'_>) -> Result<Record> {
    reconcile(layout)?;
    sweep_leftovers(layout)?;
    let meta = complete_release(layout, &req.name)?;
    meta.checked_id()?;
    // A host with `allowed_signers` activates only releases signed by a listed key
    // (it may have been added after the release was staged).
    super::signatures::check(layout, &meta)?;
    let current = layout.current_name()?;
    if let Some(expect) = &req.expect {
        let wanted = resolve_release(layout, expect).unwrap_or_else(|_| expect.clone());
        if current.as_deref() != Some(wanted.as_str()) {
            return Err(Error::ExpectMismatch(format!(
                "`{}` is on `{}`, not `{expect}` (--expect); nothing changed",
                layout.root.display(),
                current.as_deref().unwrap_or("no release")
            )));
        }
    }
    let record = Record {
        time: now_rfc3339_millis(),
        actor: req.actor.clone(),
        action: req.action.clone(),
        from: current.clone(),
        to: req.name.clone(),
        id: meta.id,
        reason: req.reason.clone(),
        signer: meta.signed_by.as_ref().map(|s| s.principal.clone()),
        via: req.via.clone(),
        slot: req.slot.clone(),
        schema: req.db.schema.clone(),
        db_schema: req.db.db_schema.clone(),
        backup: req.db.backup.clone(),
        paused_ms: None,
        marked_bad: current.clone().filter(|c| req.mark_left_bad && *c != req.name),
        warning: None,
    };
    traffic(&req.name)?;
    let intent = Intent {
        record,
        mark_left_bad: req.mark_left_bad,
    };
    // On a full disk the way back still works: the reserve is given up
    // for the few blocks the intent, the link and the record need.
    let mut reserve_used = false;
    with_room(layout, &mut reserve_used, || history::write_intent(layout, &intent))?;
    if let Err(e) = with_room(layout, &mut reserve_used, || point_current(layout, &req.name)) {
        // A failure after the rename itself (an fsync) leaves `current`
        // switched: say what it is, never "nothing switched".
        if layout.current_name().ok().flatten().as_deref() != Some(req.name.as_str()) {
            return Err(e);
        }
        return Ok(switched_unrecorded(intent.record, &e));
    }
    super::fault::point("before-history");
    // From here on `current` is the new release, whatever fails: the host
    // answers that it switched, and the intent left behind lets the next
    // command that takes the lock finish the record ([`reconcile`]).
    let recorded = super::fault::error_point("before-history")
        .map_err(|e| Error::io("append to", &layout.history_path(), e))
        .and_then(|()| with_room(layout, &mut reserve_used, || history::append(layout, &intent.record)))
        .and_then(|()| {
            super::fault::point("after-history");
            settle_marks(layout, &intent)
        })
        .and_then(|()| history::clear_intent(layout));
    match recorded {
        Ok(()) if reserve_used => {
            let mut record = intent.record;
            record.warning = Some(format!(
                "`{}` is full: this switch used the space slipway keeps for the way back ({}); free space before the next one (`slipway prune --keep N -t TARGET` removes old releases)",
                layout.root.display(),
                crate::output::human_bytes(super::layout::RESERVE_BYTES)
            ));
            Ok(record)
        }
        Ok(()) => Ok(intent.record),
        Err(e) => Ok(switched_unrecorded(intent.record, &e)),
    }
}

/// Run `op`; when it fails for want of space, give up the host's reserve
/// (once) and run it again.
fn with_room(layout: &Layout, used: &mut bool, mut op: impl FnMut() -> Result<()>) -> Result<()> {
    match op() {
        Err(e) if e.is_no_space() && !*used && layout.release_reserve() => {
            *used = true;
            op()
        }
        other => other,
    }
}

/// The record of a switch that happened but could not be recorded.
fn switched_unrecorded(mut record: Record, e: &Error) -> Record {
    record.warning = Some(format!(
        "switched to `{}`, but recording it failed ({e}); the next command that takes this host's lock records it{}",
        record.to,
        if e.is_no_space() {
            " (free space first: `slipway prune` removes old releases)"
        } else {
            ""
        }
    ));
    record
}

/// Finish what a crashed activation started (call under the lock): if an
/// intent exists and `current` already points at its `to`, make sure the log
/// has its record and the release marks are settled; then drop the intent.
/// (An intent whose rename never happened is dropped: nothing changed.)
/// Returns the record it appended.
///
/// # Errors
/// On I/O failure.
pub fn reconcile(layout: &Layout) -> Result<Option<Record>> {
    let intent = match history::pending_intent(layout)? {
        PendingIntent::Absent => return Ok(None),
        PendingIntent::Unreadable => None,
        PendingIntent::Found(intent) => Some(*intent),
    };
    let mut appended = None;
    if let Some(intent) = intent
        && layout.current_name().ok().flatten().as_deref() == Some(intent.record.to.as_str())
    {
        let (records, _) = history::read(layout)?;
        if records.last() != Some(&intent.record) {
            history::append(layout, &intent.record)?;
            appended = Some(intent.record.clone());
        }
        settle_marks(layout, &intent)?;
    }
    history::clear_intent(layout)?;
    Ok(appended)
}

/// The marks a finished switch leaves: the release switched to is not bad
/// (activating clears its mark); with `mark_left_bad`, the one it left is.
/// Idempotent, so [`reconcile`] can redo it after a crash.
///
/// # Errors
/// On I/O failure.
pub fn settle_marks(layout: &Layout, intent: &Intent) -> Result<()> {
    let r = &intent.record;
    if let Some(mut m) = layout.release_meta(&r.to)?
        && m.bad
    {
        m.bad = false;
        m.bad_reason = None;
        layout.write_release_meta(&m)?;
    }
    if intent.mark_left_bad
        && let Some(left) = r.from.as_deref().filter(|l| *l != r.to)
    {
        mark_bad(
            layout,
            left,
            &format!("left by {} at {} ({})", r.actor, r.time, r.action),
        )?;
    }
    Ok(())
}

/// Mark a release bad, so a plain rollback skips it.
///
/// # Errors
/// On I/O failure.
pub fn mark_bad(layout: &Layout, name: &str, reason: &str) -> Result<()> {
    if let Some(mut m) = layout.release_meta(name)? {
        m.bad = true;
        m.bad_reason = Some(reason.to_string());
        layout.write_release_meta(&m)?;
    }
    Ok(())
}

/// The rollback target: the newest release in the history, other than the
/// current one, that is not marked bad and is still complete on the host.
///
/// # Errors
/// On I/O failure.
pub fn previous(layout: &Layout, records: &[Record], current: Option<&str>) -> Result<Option<String>> {
    for r in records.iter().rev() {
        for candidate in [Some(r.to.as_str()), r.from.as_deref()].into_iter().flatten() {
            if Some(candidate) == current {
                continue;
            }
            if let Ok(m) = complete_release(layout, candidate)
                && !m.bad
            {
                return Ok(Some(candidate.to_string()));
            }
        }
    }
    Ok(None)
}

/// Roll back (call with the lock held): to `to`, or to [`previous`].
///
/// # Errors
/// When there is nothing to roll back to (exit 1), or as [`switch`].
pub fn rollback(
    layout: &Layout,
    to: Option<&str>,
    expect: Option<String>,
    actor: &str,
    reason: Option<String>,
    via: Option<String>,
) -> Result<Record> {
    let name = rollback_target(layout, to)?;
    let mut how = rollback_switch(name, expect, actor, reason, via);
    how.mark_left_bad = moves_back(layout, &how.name, layout.current_name()?.as_deref())?;
    switch(layout, &how)
}

/// What a rollback switches to (call with the lock held, before
/// [`rollback_switch`]): `to`, or [`previous`].
///
/// # Errors
/// When there is nothing to roll back to (exit 1), or `to` is not here.
pub fn rollback_target(layout: &Layout, to: Option<&str>) -> Result<String> {
    reconcile(layout)?;
    let current = layout.current_name()?;
    match to {
        Some(rel) => resolve_release(layout, rel),
        None => {
            let (records, _) = history::read(layout)?;
            previous(layout, &records, current.as_deref())?.ok_or_else(|| Error::NothingToRollBack {
                root: layout.root.clone(),
                current: current.as_deref().unwrap_or("none").to_string(),
            })
        }
    }
}

/// Does a rollback from `current` to `target` move back in the host's
/// history (to a release first live before `current` was), rather than
/// forward again (to one first live after it, or never live here)? Only a
/// move back marks the release it leaves bad.
///
/// # Errors
/// On I/O failure.
pub fn moves_back(layout: &Layout, target: &str, current: Option<&str>) -> Result<bool> {
    let Some(current) = current else { return Ok(false) };
    let (records, _) = history::read(layout)?;
    let first_live = |name: &str| {
        records
            .iter()
            .find(|r| r.to == name && matches!(r.action.as_str(), "activate" | "rollback" | "revert"))
            .map(|r| r.time.clone())
    };
    Ok(match (first_live(target), first_live(current)) {
        (Some(t), Some(c)) => t < c,
        (Some(_), None) => true,
        (None, _) => false,
    })
}

/// The switch of a rollback to `name`: recorded as `rollback`, and the
/// release it leaves is marked bad (the caller clears that when the
/// rollback [`moves_back`] not).
pub fn rollback_switch(
    name: String,
    expect: Option<String>,
    actor: &str,
    reason: Option<String>,
    via: Option<String>,
) -> Switch {
    Switch {
        name,
        expect,
        actor: actor.to_string(),
        action: "rollback".into(),
        reason,
        mark_left_bad: true,
        via,
        slot: None,
        db: crate::protocol::DbFacts::default(),
    }
}

/// Record that `name` (the current release) passed its health check here
/// (call with the host lock held). Promotion gates read these records.
///
/// # Errors
/// When `name` is not the current release, or on I/O failure.
pub fn mark_healthy(layout: &Layout, name: &str, actor: &str, via: Option<String>) -> Result<Record> {
    reconcile(layout)?;
    let meta = complete_release(layout, name)?;
    let current = layout.current_name()?;
    if current.as_deref() != Some(name) {
        return Err(Error::NotHealthy {
            release: name.to_string(),
            root: layout.root.clone(),
            why: "it is not the current release".into(),
        });
    }
    let record = Record {
        time: now_rfc3339_millis(),
        actor: actor.to_string(),
        action: "healthy".into(),
        from: current,
        to: name.to_string(),
        id: meta.id,
        reason: None,
        signer: meta.signed_by.as_ref().map(|s| s.principal.clone()),
        via,
        slot: None,
        schema: None,
        db_schema: None,
        backup: None,
        paused_ms: None,
        marked_bad: None,
        warning: None,
    };
    history::append(layout, &record)?;
    Ok(record)
}
