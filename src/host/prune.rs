//! Pruning: remove old release trees, then objects no release needs, then
//! stale staging leftovers.
//!
//! Never removed: the current release, the rollback target, pinned releases,
//! releases pushed after the current one was activated (waiting to go live),
//! releases a service slot names (running, or set aside warm),
//! and the `keep` most recently activated that are not marked bad (bad
//! releases go first: `keep` counts releases a rollback could go to). Objects and `tmp/` are collected
//! only while no push holds the staging lock. `shared/` is never touched.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;

use super::activate::{previous, reconcile};
use super::history;
use super::layout::Layout;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::ObjectKey;
use crate::protocol::PruneReport;

/// Which releases `prune --keep keep` removes (call under the host lock).
///
/// # Errors
/// On I/O failure.
pub fn plan(layout: &Layout, keep: usize, pinned: &[String]) -> Result<Vec<String>> {
    let current = layout.current_name()?;
    let (records, _) = history::read(layout)?;
    let prev = previous(layout, &records, current.as_deref())?;
    let current_since = current
        .as_ref()
        .and_then(|c| records.iter().rev().find(|r| &r.to == c).map(|r| r.time.clone()));
    // Most recently activated first, each name once.
    let mut recent: Vec<&str> = Vec::new();
    for r in records.iter().rev() {
        if !recent.contains(&r.to.as_str()) {
            recent.push(&r.to);
        }
    }
    // `keep` counts releases a rollback could go to: bad ones go first.
    let mut good = Vec::new();
    for name in &recent {
        if !layout.release_meta(name)?.is_some_and(|m| m.bad) {
            good.push(name.to_string());
        }
    }
    let mut keep_set: HashSet<String> = good.into_iter().take(keep).collect();
    keep_set.extend(current.clone());
    keep_set.extend(prev);
    keep_set.extend(pinned.iter().cloned());
    // A service slot's release may be running, or set aside warm.
    keep_set.extend(super::service::slot_releases(layout)?);
    let mut out = Vec::new();
    for name in layout.release_names()? {
        if keep_set.contains(&name) {
            continue;
        }
        let Some(meta) = layout.release_meta(&name)? else {
            continue;
        };
        let Some(pushed_at) = &meta.pushed_at else {
            continue; // still staging, or a killed push: the next push of it finishes it
        };
        // Waiting to go live: pushed after the current release was activated.
        let waiting = match &current_since {
            Some(since) => pushed_at.as_str() >= since.as_str() && !recent.contains(&name.as_str()),
            None => !recent.contains(&name.as_str()),
        };
        if !waiting {
            out.push(name);
        }
    }
    Ok(out)
}

/// Prune (call under the host lock). `append_only` hosts refuse.
///
/// # Errors
/// When refused, or on I/O failure.
pub fn prune(layout: &Layout, keep: usize, pinned: &[String], dry_run: bool, append_only: bool) -> Result<PruneReport> {
    if append_only {
        return Err(Error::AppendOnly {
            root: layout.root.clone(),
        });
    }
    reconcile(layout)?;
    let mut report = PruneReport {
        dry_run,
        releases: plan(layout, keep, pinned)?,
        ..PruneReport::default()
    };
    if !dry_run {
        for name in &report.releases {
            remove_release(layout, name)?;
        }
    }
    // Objects and tmp only while no push is staging.
    let stage = fs::lock_file(&layout.stage_lock_path())?;
    if stage.try_lock().is_err() {
        report
            .notes
            .push("a push is in progress: unreferenced objects and staging leftovers were kept".into());
        return Ok(report);
    }
    collect(layout, &mut report)?;
    Ok(report)
}

/// What [`prune`] would remove (`prune --plan`), read-only: no lock, no
/// reconciling of a crashed switch (the next locked operation does that),
/// the staging lock not even tried (a push in progress keeps objects the
/// real prune would then keep too).
///
/// # Errors
/// On I/O failure.
pub fn forecast(layout: &Layout, keep: usize, pinned: &[String]) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: true,
        releases: plan(layout, keep, pinned)?,
        ..PruneReport::default()
    };
    collect(layout, &mut report)?;
    Ok(report)
}

/// The objects no release kept by `report` uses, and the staging
/// leftovers: counted into `report`, and removed unless it is a dry run.
fn collect(layout: &Layout, report: &mut PruneReport) -> Result<()> {
    let dry_run = report.dry_run;
    let removed: BTreeSet<&String> = report.releases.iter().collect();
    let mut referenced: HashSet<ObjectKey> = HashSet::new();
    for name in layout.release_names()? {
        if dry_run && removed.contains(&name) {
            continue;
        }
        if let Some(m) = layout.release_meta(&name)? {
            referenced.extend(m.manifest.entries.iter().filter_map(|e| e.object()));
        }
    }
    for (_, fan) in fs::read_dir_sorted(&layout.objects_dir())? {
        if !fs::symlink_metadata(&fan)?.is_dir() {
            continue;
        }
        for (name, path) in fs::read_dir_sorted(&fan)? {
            let prefix = fan
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = name.to_string_lossy();
            let (hex, executable) = match name.strip_suffix(".x") {
                Some(h) => (format!("{prefix}{h}"), true),
                None => (format!("{prefix}{name}"), false),
            };
            let Some(digest) = crate::digest::Digest::from_hex(&hex) else {
                continue;
            };
            if referenced.contains(&ObjectKey { digest, executable }) {
                continue;
            }
            let meta = fs::symlink_metadata(&path)?;
            if meta.nlink() > 1 {
                continue; // still linked from somewhere: never collect
            }
            report.objects += 1;
            report.object_bytes += meta.len();
            if !dry_run {
                fs::remove_file(&path)?;
            }
        }
    }
    for (name, path) in fs::read_dir_sorted(&layout.tmp_dir())? {
        // `tmp/<name>.lock` is the lock file of a release's pushes, not a
        // leftover: it is not counted. It is removed like the rest, which is
        // safe only because a push takes it while holding `stage.lock`
        // shared, and this prune holds `stage.lock` exclusively: no push
        // holds it or is about to open it.
        if !is_release_lock(&name) {
            report.tmp_entries += 1;
        }
        if !dry_run {
            fs::remove_tree(&path)?;
        }
    }
    if !dry_run {
        fs::fsync_dir(&layout.objects_dir())?;
    }
    Ok(())
}

/// True for `<name>.lock`, the lock file of the pushes of release `<name>`.
fn is_release_lock(file_name: &std::ffi::OsStr) -> bool {
    file_name
        .to_str()
        .and_then(|n| n.strip_suffix(".lock"))
        .is_some_and(|name| crate::manifest::validate_name(name).is_ok())
}

/// Remove one release: move the tree out of `releases/` in one rename, drop
/// its metadata, then delete the tree.
///
/// # Errors
/// On I/O failure.
pub fn remove_release(layout: &Layout, name: &str) -> Result<()> {
    let dir = layout.release_dir(name);
    let doomed = layout
        .tmp_dir()
        .join(format!("{name}.removing-{}", fs::unique_suffix()));
    if let Some(meta) = fs::symlink_metadata_optional(&dir)? {
        // A read-only directory cannot be moved to another parent (its `..`
        // changes). Anything else in its place (a planted symlink) is moved
        // and removed itself, never followed.
        if meta.is_dir() {
            fs::set_dir_mode_nofollow(&dir, 0o755)?;
        }
        fs::rename(&dir, &doomed)?;
        fs::fsync_dir(&layout.releases_dir())?;
        super::fault::point("mid-prune");
    }
    fs::remove_file_optional(&layout.release_meta_path(name))?;
    fs::fsync_dir(&layout.release_meta_dir())?;
    fs::remove_tree(&doomed)
}
