//! What a host says when its file system is full: what uses the space, and
//! the `slipway prune --keep N` that would make room (computed from the
//! same plan `prune` follows), so that "no space" always comes with a next
//! step; and the estimate a push is checked against before any content
//! arrives ([`check`]).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use super::layout::Layout;
use super::stage::Plan;
use crate::config::LinkMode;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Kind, Manifest, ObjectKey};
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

/// Refuse early, in one line, when the file system cannot hold the push.
pub(super) fn check(
    layout: &Layout,
    name: &str,
    plan: &Plan,
    manifest: &Manifest,
    manifest_size: u64,
    mode: LinkMode,
) -> Result<()> {
    let (available, block) = fs::available_bytes(&layout.objects_dir())?;
    let needed = space_needed(plan, manifest, manifest_size, mode, block);
    if needed > available {
        return Err(Error::NoSpace {
            release: name.to_string(),
            root: layout.root.clone(),
            detail: format!(
                "it needs {} but {} are free; {}",
                human_bytes(needed),
                human_bytes(available),
                advice(layout, needed)
            ),
        });
    }
    Ok(())
}

/// What a push takes on a file system of `block`-byte blocks: the missing
/// contents rounded up to whole blocks (a thousand 100-byte files take a
/// thousand blocks), a block (at least 4 KiB) per directory and one for the
/// tree's top, twice the manifest (the metadata file holds it
/// pretty-printed), and with `link_mode = "copy"` every file of the tree
/// again.
fn space_needed(plan: &Plan, manifest: &Manifest, manifest_size: u64, mode: LinkMode, block: u64) -> u64 {
    let blocks = |size: u64| size.div_ceil(block).saturating_mul(block);
    let dirs = manifest.entries.iter().filter(|e| e.kind == Kind::Dir).count() as u64 + 1;
    let contents: u64 = plan
        .wanted
        .values()
        .filter_map(|i| manifest.entries.get(*i as usize))
        .map(|e| blocks(e.size))
        .sum();
    let mut needed = contents + dirs * block.max(4096) + 2 * manifest_size;
    if mode == LinkMode::Copy {
        needed += manifest
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| blocks(e.size))
            .sum::<u64>();
    }
    needed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::manifest::Entry;

    #[test]
    fn space_needed_counts_whole_blocks_directories_the_manifest_and_copies() {
        let f = |path: &str, size: u64, byte: u8| Entry::file(path.into(), false, size, Digest::of(&[byte]));
        let manifest = Manifest {
            version: 1,
            source_date_epoch: 0,
            entries: vec![
                Entry::dir("d".into()),
                Entry::dir("d/e".into()),
                f("d/a", 1, 1),
                f("d/b", 4096, 2),
                f("d/e/c", 4097, 3),
                f("here", 10_000, 4),
                Entry::symlink("l".into(), "here".into()),
            ],
        };
        // Entries 2, 3 and 4 missing; `here` (entry 5) is already in objects/.
        let plan = Plan {
            missing: vec![2, 3, 4],
            wanted: [2u32, 3, 4]
                .into_iter()
                .map(|i| (manifest.entries[i as usize].object().unwrap(), i))
                .collect(),
            bytes_needed: 1 + 4096 + 4097,
            reused: 1,
        };
        // Contents 1 + 1 + 2 blocks, 3 directories (with the top), the manifest twice.
        let hardlinked = 4 * 4096 + 3 * 4096 + 2 * 700;
        assert_eq!(
            space_needed(&plan, &manifest, 700, LinkMode::Hardlink, 4096),
            hardlinked
        );
        // Every file again, the one already here too (1 + 1 + 2 + 3 blocks).
        assert_eq!(
            space_needed(&plan, &manifest, 700, LinkMode::Copy, 4096),
            hardlinked + 7 * 4096
        );
        // Blocks of 1 KiB: contents 1 + 4 + 5 KiB, directories still 4 KiB each.
        assert_eq!(
            space_needed(&plan, &manifest, 700, LinkMode::Hardlink, 1024),
            10 * 1024 + 3 * 4096 + 1400
        );
        // Blocks of 64 KiB: a directory takes a whole block.
        assert_eq!(
            space_needed(&plan, &manifest, 0, LinkMode::Hardlink, 65536),
            3 * 65536 + 3 * 65536
        );
    }
}
