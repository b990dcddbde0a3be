//! What a host has: current and previous release, every release with its id,
//! size, pusher and bad mark, and the lock holder.

use serde::Serialize;

use super::activate::previous;
use super::history;
use super::layout::Layout;
use super::lock::{self, LockInfo};
use crate::digest::Digest;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ReleaseStatus {
    pub name: String,
    pub id: Digest,
    pub size: u64,
    pub files: usize,
    pub pushed_at: Option<String>,
    pub pushed_by: Option<String>,
    pub bad: bool,
    pub bad_reason: Option<String>,
    /// False while a push is staging it (or was killed before it finished).
    pub complete: bool,
    /// RFC 3339 time it last became current, if ever.
    pub last_activated: Option<String>,
    /// Who signed it (the principal accepted by the host's `allowed_signers`).
    #[serde(default)]
    pub signed_by: Option<super::signatures::Signer>,
    /// How the bundle was built (tag, commit, builder, …), as pushed.
    #[serde(default)]
    pub provenance: Option<crate::provenance::Provenance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct HostStatus {
    pub current: Option<String>,
    pub current_id: Option<Digest>,
    pub previous: Option<String>,
    pub releases: Vec<ReleaseStatus>,
    pub lock: Option<LockInfo>,
    /// Problems noticed while reading (e.g. a torn history line).
    pub warnings: Vec<String>,
}

/// Read the host's state (no lock needed: every file is replaced atomically).
///
/// # Errors
/// On I/O failure or a `current` that is not a release link.
pub fn status(layout: &Layout) -> Result<HostStatus> {
    let current = layout.current_name()?;
    let (records, warnings) = history::read(layout)?;
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
    })
}
