//! What a host has: current and previous release, every release with its id,
//! size, pusher and bad mark, and the lock holder ([`HostStatus`]).
//!
//! Invariant: reading the state changes nothing and takes no lock; every
//! file it reads is replaced atomically, so each is seen whole.

use super::activate::previous;
use super::history;
use super::layout::Layout;
use super::lock;
use crate::error::Result;
use crate::protocol::ReleaseStatus;

// Temporary: `fleet.rs` still imports `host::status::HostStatus`; the type lives in
// `protocol::types`, which is where new code should import it from.
pub use crate::protocol::HostStatus;

/// Read the host's state (no lock needed: every file is replaced atomically).
///
/// # Errors
/// On I/O failure or a `current` that is not a release link.
pub fn status(layout: &Layout) -> Result<HostStatus> {
    let current = layout.current_name()?;
    let (records, mut warnings) = history::read(layout)?;
    // Intake the host had to resume itself is news until the next record.
    if let Some(r) = records.last().filter(|r| r.action == "resume")
        && let Some(why) = &r.reason
    {
        warnings.push(format!(
            "intake was resumed at {} after {:.1} s: {why}",
            r.time,
            r.paused_ms.unwrap_or(0) as f64 / 1000.0
        ));
    }
    let mut releases = Vec::new();
    let mut current_id = None;
    for name in layout.release_names()? {
        let Some(m) = layout.release_meta(&name)? else { continue };
        if current.as_deref() == Some(name.as_str()) {
            current_id = Some(m.id);
        }
        let last_activated = records.iter().rev().find(|r| r.to == name).map(|r| r.time.clone());
        releases.push(ReleaseStatus {
            complete: m.pushed_at.is_some() && layout.release_dir(&name).is_dir(),
            size: m.manifest.total_size(),
            files: m.manifest.file_count(),
            name,
            id: m.id,
            pushed_at: m.pushed_at,
            pushed_by: m.pushed_by,
            bad: m.bad,
            bad_reason: m.bad_reason,
            last_activated,
            signed_by: m.signed_by,
            provenance: m.provenance,
        });
    }
    Ok(HostStatus {
        previous: previous(layout, &records, current.as_deref())?,
        current,
        current_id,
        releases,
        lock: lock::holder(layout)?,
        warnings,
        migration: super::intake::last(layout)?,
        paused_since: super::intake::window(layout)?.map(|w| w.since),
        service: if super::service::in_use(layout) {
            Some(super::service::report(layout, None, false)?)
        } else {
            None
        },
    })
}
