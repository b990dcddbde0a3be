//! The types the host's answers carry: its state (`status_report`), the
//! activation log (`switched`, `history_report`), the lock holder (`lock`,
//! and in `Locked` errors), what prune removed, drifted paths, who signed a
//! release, and the facts `slipway host check` judges.
//!
//! They are the wire form and, for [`Record`], [`LockInfo`] and [`Signer`],
//! also what the host keeps in its files (`history.jsonl`, `lock.info`,
//! `releases/<name>.json`); the host fills them in, the client reads them,
//! and neither side's code is needed to understand them.
//!
//! Invariant: their serde shape is the wire format. Renaming or retyping a
//! field is a protocol change ([`PROTOCOL`](super::version::PROTOCOL)); a
//! field added later needs a serde default, so that answers from older
//! hosts, and the files they wrote, still parse.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::provenance::Provenance;

/// One activation (host, time, actor, action, from, to, id): a line of
/// `.slipway/history.jsonl`, and what `switched` and `history_report` carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 UTC.
    pub time: String,
    /// `user@host` of the operator.
    pub actor: String,
    /// `activate`, `rollback`, `revert` (a fleet switching a host back), or
    /// `healthy` (the release passed its health check here; `from` = `to`).
    pub action: String,
    /// The release that was current before (`None` on the first activation).
    pub from: Option<String>,
    pub to: String,
    /// The bundle id of `to`.
    pub id: Digest,
    /// Why (rollback reason, gate override reason), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The principal whose signature the host accepted for `to`, if it checks signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Who the host saw connect (its account, the ssh peer address, and the
    /// key name its forced command gives), beside the `actor` the client
    /// claims. Absent in records written before slipway recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The service slot (`a` or `b`) that took the traffic with this
    /// switch, on a host that runs the release as a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The schema version `to` expects (its `schema` hook), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The version the database was at after this switch's migration (or
    /// when it switched), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_schema: Option<String>,
    /// The backup taken before this switch's migration (what `backup` printed last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// `resume` records: how long intake was paused, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_ms: Option<u64>,
    /// The release this switch marked bad (the one it left), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked_bad: Option<String>,
    /// On the answer to a switch only, never in `history.jsonl`: the switch
    /// happened (`current` is `to`) but recording it failed; the next
    /// command that takes the host's lock records it from the intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// One run of `migrate` or `migrate_down` on a host: a line of
/// `.slipway/migrations.jsonl` (`started`, then `ok` or `failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    pub time: String,
    /// `migrate` or `migrate_down`.
    pub kind: String,
    /// The release it ran in.
    pub release: String,
    /// `started`, `ok` or `failed`.
    pub state: String,
    /// The schema the migration brings the database to, as the client said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The backup taken before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The last KiB of its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// Who holds (or asks for) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// `user@host` of the operator.
    pub actor: String,
    /// The operator's command, e.g. `slipway activate v2`.
    pub command: String,
    /// pid of the process holding the lock on the host.
    pub pid: u32,
    /// RFC 3339 UTC.
    pub since: String,
}

/// Who, what and since when, for a person: `alice@laptop, running `slipway
/// deploy v2 -t production` since 2026-01-01T10:00:00Z (12 min ago; host pid
/// 4242)`. The operator and their machine come first; the pid is the host's
/// `serve` (the holder's own process is on the operator's machine), so it
/// comes last, for an administrator on that host.
impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, running `{}` since {}", self.actor, self.command, self.since)?;
        let age = chrono::DateTime::parse_from_rfc3339(&self.since)
            .ok()
            .and_then(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).to_std().ok())
            .map(|d| format!("{} ago", ago(d)));
        let pid = (self.pid != 0).then(|| format!("host pid {}", self.pid));
        let notes: Vec<String> = age.into_iter().chain(pid).collect();
        if !notes.is_empty() {
            write!(f, " ({})", notes.join("; "))?;
        }
        Ok(())
    }
}

/// A duration the way a person says it: `40 s`, `12 min`, `3 h 5 min`, `2 days`.
fn ago(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 if s % 3600 >= 60 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        3600..86400 => format!("{} h", s / 3600),
        86400..172800 => "1 day".to_string(),
        _ => format!("{} days", s / 86400),
    }
}

/// The host's state: the answer to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub current: Option<String>,
    pub current_id: Option<Digest>,
    pub previous: Option<String>,
    pub releases: Vec<ReleaseStatus>,
    pub lock: Option<LockInfo>,
    /// Problems noticed while reading (e.g. a torn history line).
    pub warnings: Vec<String>,
    /// The service slots, on a host that has run the release as a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceReport>,
    /// The newest migration run on this host (`migrate_on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// When intake was paused, while a window is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<String>,
}

/// The service slots of a host (`service` answers, and `status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// The slot with the traffic.
    pub live: Option<String>,
    /// Slot a, slot b.
    pub slots: Vec<SlotStatus>,
    /// What a `start` started (or found running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Started>,
    /// Why a `start` failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StartFailure>,
    /// Something the operator should know (a warm instance restored, or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotStatus {
    pub slot: String,
    /// The release the slot points at.
    pub release: Option<String>,
    pub port: Option<u16>,
    /// Whether its instance runs (`None`: a supervisor runs it; slipway
    /// cannot tell).
    pub running: Option<bool>,
    pub pid: Option<u32>,
    /// RFC 3339 time its instance started.
    pub since: Option<String>,
    /// Whether its check passes now (`None`: not checked).
    pub check: Option<bool>,
    /// It has the traffic.
    pub live: bool,
}

/// Where a deploy's new instance runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub slot: String,
    pub port: u16,
    pub pid: Option<u32>,
    /// Already running (warm): nothing was started.
    pub reused: bool,
    /// The warm release this start displaced from the slot.
    pub displaced: Option<String>,
    /// The slot that had the traffic when it started.
    pub live: Option<String>,
}

/// Why a new instance did not pass its check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartFailure {
    pub slot: String,
    pub port: u16,
    /// One line.
    pub why: String,
    /// The last check's output (its tail).
    pub output: String,
    /// The tail of the instance's log.
    pub log: String,
    /// Whether the warm instance it displaced runs again (`None`: there was none).
    pub restored: Option<bool>,
}

/// One release on a host, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub signed_by: Option<Signer>,
    /// How the bundle was built (tag, commit, builder, …), as pushed.
    #[serde(default)]
    pub provenance: Option<Provenance>,
}

/// Who signed a release, as this host's `allowed_signers` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// The principal `allowed_signers` lists for the key.
    pub principal: String,
    /// `SHA256:…` of the key.
    pub key_fingerprint: String,
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.principal, self.key_fingerprint)
    }
}

/// What prune removed (or would): the answer to `prune`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Release names removed (or that would be).
    pub releases: Vec<String>,
    pub objects: usize,
    pub object_bytes: u64,
    /// Leftovers of killed pushes in `tmp/` (release lock files are not counted).
    pub tmp_entries: usize,
    /// Why some things were kept (e.g. a push in progress).
    pub notes: Vec<String>,
}

/// One drifted path of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub release: String,
    pub path: String,
    /// `changed`, `missing`, `extra`, `mode` or `kind`.
    pub problem: String,
}

/// The answer to `check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The host's slipway version and protocol.
    pub version: String,
    pub protocol: u32,
    /// `uname -s` and `uname -m` of the host.
    pub os: String,
    pub arch: String,
    /// The canonical root.
    pub root: String,
    /// The effective user of `serve` (the deploy user), and its name when known.
    pub uid: u32,
    #[serde(default)]
    pub user: Option<String>,
    /// The owner of the root, and its name when known.
    pub owner_uid: u32,
    #[serde(default)]
    pub owner: Option<String>,
    /// Permission bits of the root (e.g. 0o755).
    pub mode: u32,
    /// Bytes available to the deploy user, and the size of the file system.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// What `current` is.
    pub current: CurrentState,
    /// True when `current` is absent or a relative link to a complete release.
    pub current_ok: bool,
    /// Anything else wrong under the root, each with its fix.
    pub problems: Vec<Finding>,
    /// Whether the root has an `allowed_signers` (a host older than this
    /// field says nothing, read as `false`).
    #[serde(default)]
    pub enforces_signatures: bool,
    /// The releases on the host its `allowed_signers` would refuse to
    /// activate or roll back to, each with why.
    #[serde(default)]
    pub refused_by_signers: Vec<Finding>,
    /// False when the root does not exist yet (the first push creates it):
    /// `owner_uid`, `mode` and the space are then those of its nearest
    /// existing parent, `root` is as given. A host older than this field
    /// created the root before answering: read as `true`.
    #[serde(default = "yes")]
    pub exists: bool,
}

fn yes() -> bool {
    true
}

/// One problem the host noticed, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub problem: String,
    pub fix: String,
}

/// The state of `<root>/current`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CurrentState {
    /// No release was ever activated.
    Absent,
    /// `current -> releases/<release>`, a complete release.
    Ok { release: String },
    /// `current` exists but is not a symlink.
    NotSymlink,
    /// A symlink, but not to `releases/<name>` (absolute, or elsewhere).
    Unmanaged { target: String },
    /// A link to `releases/<release>`, which does not exist.
    Missing { release: String },
    /// A link to a release whose push never finished, or without metadata.
    Incomplete { release: String },
}

impl CurrentState {
    /// Absent, or a link to a complete release.
    pub fn is_ok(&self) -> bool {
        matches!(self, CurrentState::Absent | CurrentState::Ok { .. })
    }
}

/// A user as `check` findings and `slipway host check` name one:
/// `` `name` (uid N) ``, or `uid N` when the name is unknown.
pub fn who(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("`{n}` (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LockInfo, ago};

    #[test]
    fn a_lock_holder_reads_who_what_since_when_and_the_host_pid_last() {
        let mut holder = LockInfo {
            actor: "alice@laptop".into(),
            command: "slipway deploy v2 -t production".into(),
            pid: 4242,
            since: (chrono::Utc::now() - chrono::Duration::seconds(125))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let text = holder.to_string();
        assert!(
            text.starts_with("alice@laptop, running `slipway deploy v2 -t production` since "),
            "{text}"
        );
        assert!(text.ends_with(" (2 min ago; host pid 4242)"), "{text}");
        // A holder whose details could not be read: no age, no pid.
        holder.since = "unknown".into();
        holder.pid = 0;
        assert_eq!(
            holder.to_string(),
            "alice@laptop, running `slipway deploy v2 -t production` since unknown"
        );
    }

    #[test]
    fn ages_read_the_way_a_person_says_them() {
        let s = Duration::from_secs;
        assert_eq!(ago(s(0)), "0 s");
        assert_eq!(ago(s(59)), "59 s");
        assert_eq!(ago(s(60)), "1 min");
        assert_eq!(ago(s(3599)), "59 min");
        assert_eq!(ago(s(3600)), "1 h");
        assert_eq!(ago(s(3659)), "1 h");
        assert_eq!(ago(s(3660)), "1 h 1 min");
        assert_eq!(ago(s(86399)), "23 h 59 min");
        assert_eq!(ago(s(86400)), "1 day");
        assert_eq!(ago(s(172_799)), "1 day");
        assert_eq!(ago(s(172_800)), "2 days");
    }
}

/// `push_plan`: what a push of an offer would do on a host (`plan_push`),
/// found without changing anything there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPlan {
    /// The release is already complete here: a push would send nothing.
    pub already: bool,
    /// Objects (distinct contents) the host lacks, and their bytes: what a
    /// push would send.
    pub objects: u64,
    pub bytes: u64,
    /// Objects of the release the host already has.
    pub reused: u64,
    /// The signer the host's `allowed_signers` accepts (`None`: the host
    /// enforces no signatures, or refuses the release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<Signer>,
    /// The host has an `allowed_signers`.
    #[serde(default)]
    pub enforces_signatures: bool,
    /// Why the push (or an activation of the release) would be refused,
    /// with the kind of the error it would fail with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

/// A refusal a host predicts: the error (kind and one line) a request would fail with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: super::kind::ErrorKind,
    pub message: String,
}
