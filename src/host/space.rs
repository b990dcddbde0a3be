//! What a host says when its file system is full: what uses the space, and
//! the `slipway prune --keep N` that would make room (computed from the
//! same plan `prune` follows), so that "no space" always comes with a next
//! step.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use super::layout::Layout;
use crate::fs;
use crate::manifest::ObjectKey;
use crate::output::human_bytes;

/// The next step for a push (or any write) that needs `needed` more bytes
/// than are free on `layout`'s file system: the least pruning that makes
/// room, or, when pruning cannot, what slipway's own data takes. Never
/// fails: an advice that cannot be worked out is a general one.
pub fn advice(layout: &Layout, needed: u64) -> String {
    let general = "free space on it (`slipway prune --keep N -t TARGET` removes old releases; `--dry-run` shows what)"
        .to_string();
    let Ok((available, _)) = fs::available_bytes(&layout.objects_dir()) else {
        return general;
    };
    let Ok(names) = layout.release_names() else {
        return general;
    };
    let mut best = None;
    for keep in (0..names.len()).rev() {
        let Ok(removed) = super::prune::plan(layout, keep, &[]) else {
            return general;
        };
        if removed.is_empty() {
            continue;
        }
        let freed = freed_by(layout, &removed);
        best = Some((keep, removed, freed));
        if available.saturating_add(freed) >= needed.max(1) {
            break;
        }
    }
    let used = objects_bytes(layout);
    match best {
        Some((keep, removed, freed)) if available.saturating_add(freed) >= needed.max(1) => format!(
            "`slipway prune --keep {keep} -t TARGET` frees {} (removes {}); slipway's objects take {} of it",
            human_bytes(freed),
            removed.join(", "),
            human_bytes(used)
        ),
        Some((_, removed, freed)) => format!(
            "pruning every old release ({}) would free only {}: slipway's objects take {} of it, other files the rest; free space outside slipway",
            removed.join(", "),
            human_bytes(freed),
            human_bytes(used)
        ),
        None => format!(
            "no old release to prune (slipway's objects take {} of it): free space outside slipway",
            human_bytes(used)
        ),
    }
}

/// The blocks of the objects only `removed` use (what pruning them frees).
fn freed_by(layout: &Layout, removed: &[String]) -> u64 {
    let objects = |name: &str| -> Vec<ObjectKey> {
        layout
            .release_meta(name)
            .ok()
            .flatten()
            .map(|m| m.manifest.entries.iter().filter_map(|e| e.object()).collect())
            .unwrap_or_default()
    };
    let mut kept: HashSet<ObjectKey> = HashSet::new();
    for name in layout.release_names().unwrap_or_default() {
        if !removed.contains(&name) {
            kept.extend(objects(&name));
        }
    }
    let mut counted = HashSet::new();
    let mut bytes = 0u64;
    for name in removed {
        for key in objects(name) {
            if kept.contains(&key) || !counted.insert(key) {
                continue;
            }
            if let Ok(m) = std::fs::symlink_metadata(layout.object_path(&key)) {
                bytes += m.blocks() * 512;
            }
        }
    }
    bytes
}

/// The blocks `objects/` takes.
fn objects_bytes(layout: &Layout) -> u64 {
    let mut total = 0;
    for (_, fan) in fs::read_dir_sorted(&layout.objects_dir()).unwrap_or_default() {
        for (_, path) in fs::read_dir_sorted(&fan).unwrap_or_default() {
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                total += m.blocks() * 512;
            }
        }
    }
    total
}
