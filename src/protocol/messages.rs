//! The messages: every control message either side sends, the requests'
//! and answers' payloads, the greeting check, and the index list that
//! follows `need`.
//!
//! Invariants: a message's wire name is its variant in snake_case (the
//! `type` key); the shapes of `hello` and `error` never change, so any two
//! slipway versions can tell each other that they cannot talk; an `error`
//! carries its [`ErrorKind`], so the variant (and the exit code) survives
//! the trip.

use serde::{Deserialize, Serialize};

use super::codec::Peer;
use super::kind::ErrorKind;
use super::types::{CheckReport, Drift, HostStatus, LockInfo, PruneReport, PushPlan, Record, ServiceReport};
use super::version::{PROTOCOL, VERSION};
use crate::config::{LinkMode, ServiceSpec};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::provenance::Provenance;

/// Every control message. On the wire: `{"type": "<snake_case name>", …fields}`.
///
/// Requests (client → host) start an exchange and have one host handler each
/// (`host::serve`); the exchange ends with the request's answer or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// First frame in both directions. Its shape never changes.
    Hello { protocol: u32, version: String },
    /// Host → client: the exchange failed. `kind` says which error, so the
    /// client rebuilds it (and its exit code) without reading `message`.
    /// Its shape never changes.
    Error { kind: ErrorKind, message: String },

    /// Request: stage a release (`push`).
    Push(Box<PushOffer>),
    /// Host → client: the release is not staged yet; send its manifest,
    /// optionally compressed against one of these manifests the host has.
    /// `pull`: in pull mode with `assist` (a host that knows `source`); the
    /// client may answer `pull_manifest` instead.
    SendManifest {
        bases: Vec<Digest>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pull: bool,
    },
    /// Client → host: the canonical manifest follows as one zstd frame of
    /// `size` bytes (uncompressed), with `base`'s manifest as reference prefix.
    Manifest {
        size: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<Digest>,
    },
    /// Client → host, pull mode with `assist` (instead of `manifest`): no
    /// base the host offered would make the manifest small; read it from
    /// the remote store.
    PullManifest,
    /// Host → client: what is missing; the manifest entry indices of one file
    /// per missing object follow as data (u32 big-endian each).
    Need(Need),
    /// Client → host: the stored bundle `.tar.zst` follows verbatim as data.
    Bundle { size: u64 },
    /// Client → host: one zstd frame follows as data, holding the contents of
    /// these manifest entries (ascending) back to back.
    Batch { entries: Vec<u32> },
    /// Client → host, pull mode, when `need` asked for them: where each
    /// missing object is in the remote store, in the order of the need's
    /// list (see [`encode_locations`]), so the host downloads only them and
    /// not the release's whole index.
    Locations { objects: u64 },
    /// Client → host: every content has been sent.
    Done,
    /// Client → host, while a `health` or `before_activate` hook runs: the
    /// operator interrupted the command; the host stops the hook and
    /// answers its `hook_result` (failed) at once. No answer of its own;
    /// a host that is not running such a hook ignores it.
    Cancel,
    /// Host → client: the release is complete at `releases/<name>`.
    Staged(Staged),
    /// Request (`--plan`): what a `push` of this offer would do here, read
    /// only: nothing is created, locked or written. The host may first ask
    /// `send_manifest` (answered with `manifest`, as in a push). Answer:
    /// `push_plan`.
    PlanPush(Box<PushOffer>),
    /// Host → client: what that push would send, or why it would be refused.
    PushPlan(Box<PushPlan>),

    /// Request: take the host's operator lock for this session (held until
    /// `unlock` or the end of the session). Answer: `locked`.
    Lock {
        holder: LockInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
        /// Send `lock_waiting` before waiting for another holder (a host
        /// older than this field sends none).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        notify: bool,
    },
    /// Host → client, before `locked`, when `lock` asked to `notify` and has
    /// to wait: who holds the lock now.
    LockWaiting { holder: LockInfo },
    /// Host → client: the lock is held by this session.
    Locked,
    /// Request: release the lock. Answer: `unlocked`.
    Unlock,
    /// Host → client: the lock is released.
    Unlocked,
    /// Request: point `current` at a release (needs the lock). Answer: `switched`.
    Activate(Box<ActivateRequest>),
    /// Request: roll back to `to`, or to the previous good release (needs the lock). Answer: `switched`.
    Rollback(Box<RollbackRequest>),
    /// Host → client: `current` changed; the history record.
    Switched(Box<Record>),
    /// Request: record that the current release `name` passed its health
    /// check (needs the lock). Answer: `switched` (the `healthy` record).
    MarkHealthy { name: String, actor: String },
    /// Request: mark a release bad (needs the lock). Answer: `marked`.
    MarkBad { name: String, reason: String },
    /// Host → client: done.
    Marked,
    /// Request: the host's state. Answer: `status_report`.
    Status,
    /// Host → client: the host's state.
    StatusReport(Box<HostStatus>),
    /// Request: the activation log, newest first, at most `limit` records,
    /// only those of bundle `id` when given (a host older than `id` ignores
    /// it and sends them all: the client filters again). Answer: `history_report`.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Digest>,
    },
    /// Host → client: history records (newest first) and warnings about unreadable lines.
    HistoryReport {
        records: Vec<Record>,
        warnings: Vec<String>,
    },
    /// Request: remove old releases and unreferenced objects (needs the lock). Answer: `pruned`.
    Prune {
        keep: usize,
        pinned: Vec<String>,
        dry_run: bool,
    },
    /// Host → client: what prune removed (or would).
    Pruned(Box<PruneReport>),
    /// Request (`prune --plan`): what `prune` would remove, read only: no
    /// lock (not even the staging lock), nothing reconciled or removed.
    /// Answer: `pruned` (with `dry_run`).
    PlanPrune { keep: usize, pinned: Vec<String> },
    /// Request: re-hash release trees (`release`, or all). Answer: `verified`.
    Verify {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<String>,
    },
    /// Host → client: releases checked and every drifted path.
    Verified { releases: Vec<String>, drift: Vec<Drift> },
    /// Request: run a hook in a release directory. Answer: `hook_result`.
    Hook(Box<HookRequest>),
    /// Host → client: how the hook ended.
    HookResult(Box<HookResult>),
    /// Host → client: a line a hook printed, while it runs (when the
    /// request asked for `stream`); `hook_result` follows.
    HookOutput { line: String },
    /// Request: the facts `slipway host check` judges (owner, mode, free
    /// space, `current`). Answer: `check_report`.
    Check,
    /// Host → client: those facts.
    CheckReport(Box<CheckReport>),
    /// Request: start, check, stop or report the service slots (needs the
    /// lock, except `status`). Answer: `service_report`.
    Service(Box<ServiceRequest>),
    /// Host → client: the slots after the request.
    ServiceReport(Box<ServiceReport>),
}

impl Message {
    /// The wire name of the message (its `type`).
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Error { .. } => "error",
            Message::Push(_) => "push",
            Message::SendManifest { .. } => "send_manifest",
            Message::Manifest { .. } => "manifest",
            Message::PullManifest => "pull_manifest",
            Message::Need(_) => "need",
            Message::Bundle { .. } => "bundle",
            Message::Batch { .. } => "batch",
            Message::Locations { .. } => "locations",
            Message::Done => "done",
            Message::Cancel => "cancel",
            Message::Staged(_) => "staged",
            Message::PlanPush(_) => "plan_push",
            Message::PushPlan(_) => "push_plan",
            Message::Lock { .. } => "lock",
            Message::LockWaiting { .. } => "lock_waiting",
            Message::Locked => "locked",
            Message::Unlock => "unlock",
            Message::Unlocked => "unlocked",
            Message::Activate(_) => "activate",
            Message::Rollback(_) => "rollback",
            Message::Switched(_) => "switched",
            Message::MarkHealthy { .. } => "mark_healthy",
            Message::MarkBad { .. } => "mark_bad",
            Message::Marked => "marked",
            Message::Status => "status",
            Message::StatusReport(_) => "status_report",
            Message::History { .. } => "history",
            Message::HistoryReport { .. } => "history_report",
            Message::Prune { .. } => "prune",
            Message::Pruned(_) => "pruned",
            Message::PlanPrune { .. } => "plan_prune",
            Message::Verify { .. } => "verify",
            Message::Verified { .. } => "verified",
            Message::Hook(_) => "hook",
            Message::HookResult(_) => "hook_result",
            Message::HookOutput { .. } => "hook_output",
            Message::Check => "check",
            Message::CheckReport(_) => "check_report",
            Message::Service(_) => "service",
            Message::ServiceReport(_) => "service_report",
        }
    }

    /// This side's `hello`.
    pub fn hello() -> Message {
        Message::Hello {
            protocol: PROTOCOL,
            version: VERSION.to_string(),
        }
    }

    /// The `error` message carrying `e`.
    pub fn error(e: &Error) -> Message {
        Message::Error {
            kind: ErrorKind::of(e),
            message: e.to_string(),
        }
    }
}

/// `push`: what the client offers. The manifest itself follows on request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushOffer {
    pub name: String,
    pub id: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<serde_json::Value>,
    #[serde(default)]
    pub link_mode: LinkMode,
    /// `user@host` of the operator (recorded as `pushed_by`).
    pub pushed_by: String,
    /// The target's `shared` directories, linked into the release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
    /// The target's `shared_files`, linked into the release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_files: Vec<String>,
    /// `verify --repair`: the release is already here but damaged; re-check
    /// its objects, receive the bad ones and swap in a rebuilt tree.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
    /// Pull mode: the host downloads the manifest and the contents it
    /// lacks from a remote store, instead of receiving them on this
    /// connection (docs/remote-store.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PullSource>,
    /// The same for every host of one command (`push`, `deploy`): a host
    /// that finds its release's staging lock held by the same command knows
    /// the target reaches this root twice, and says so instead of waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// Where a host pulls a release from: URLs presigned by the client for
/// exactly the objects of this release (the host holds no credentials).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullSource {
    /// The remote's name in the operator's `slipway.toml` (for messages).
    pub remote: String,
    /// `releases/<id>/manifest.zst`.
    pub manifest: String,
    /// `releases/<id>/index.zst`.
    pub index: String,
    /// `packs/<p>.pack` of every pack the index names, in its order.
    pub packs: Vec<String>,
    /// The client can help a host that has an earlier release: it sends
    /// the manifest compressed against one the host has (`send_manifest`
    /// is answered with `manifest` or `pull_manifest`), and the locations
    /// of a few missing objects (`need.locations`), so that a small change
    /// costs the host a small download (docs/protocol.md, "Pull mode").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub assist: bool,
}

/// `activate`: switch `current` to `release` (a name or id prefix on the host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivateRequest {
    pub release: String,
    /// Compare-and-swap: the release that must be current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// `user@host` of the operator.
    pub actor: String,
    /// `activate` or `revert` (a fleet switching a host back).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Mark the release being left as bad (reverts).
    #[serde(default)]
    pub mark_left_bad: bool,
    /// Move the traffic with the switch, to a service slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSwitch>,
    /// The database facts the history records with the switch.
    #[serde(default, skip_serializing_if = "DbFacts::is_empty")]
    pub db: DbFacts,
}

/// What a switch's history record says about the database: the schema the
/// release expects, the version the database is at, the backup taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

impl DbFacts {
    pub fn is_empty(&self) -> bool {
        *self == DbFacts::default()
    }
}

/// The traffic part of a switch on a host that runs a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSwitch {
    /// The slot that takes the traffic (it must run the release); `None`:
    /// put back what the proxy had before slipway's first switch there.
    pub slot: Option<String>,
    /// The client's service definition (a confined host uses its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
}

/// `service`: what to do with the slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub op: ServiceOp,
    /// The client's service definition (a confined host uses its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
}

/// `service.op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServiceOp {
    /// Run `release` checked in a slot without traffic (a deploy's start).
    Start { release: String },
    /// Stop what a deploy started in `slot` and restore the instance it
    /// displaced; with `drain`, after the definition's `drain` (the
    /// instance had traffic, and the proxy may still be finishing with it).
    Abort {
        slot: String,
        #[serde(default)]
        drain: bool,
    },
    /// After a deploy: unless `keep_warm`, drain and stop the idle instance.
    Settle,
    /// Start the release a slot names, if its instance is not running.
    StartSlot { slot: String },
    /// Stop a slot's instance (the live one only with `force`).
    Stop {
        slot: String,
        #[serde(default)]
        force: bool,
    },
    /// Each slot's state; with `check`, run each instance's check once.
    /// With `strict`, fail as the other ops would when the host has no
    /// service definition it may use (a `--plan`; a host older than this
    /// field ignores it and reports the slots).
    Status {
        check: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        strict: bool,
    },
}

/// `rollback`: to `to`, or to the previous good release from the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Move the traffic with the switch, to a service slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSwitch>,
    /// The database facts the history records with the switch.
    #[serde(default, skip_serializing_if = "DbFacts::is_empty")]
    pub db: DbFacts,
}

/// `hook`: run `command` with `sh -c` in `releases/<release>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRequest {
    /// `before_activate`, `after_activate` or `health` (names it in output and errors).
    pub kind: String,
    pub release: String,
    pub command: String,
    /// Extra environment (`SLIPWAY_HOST`, `SLIPWAY_PREVIOUS`, …).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Each attempt is killed after this long.
    pub timeout_ms: u64,
    /// Retry failed attempts (one second apart) until this long has passed (health checks).
    #[serde(default)]
    pub retry_for_ms: u64,
    /// `pause`: the command that undoes it (`resume`), which the host runs
    /// itself when the session ends with intake still off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    /// `migrate`: run even though this release's migration already
    /// succeeded here (`--migrate-again`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub again: bool,
    /// Send each line of output as a `hook_output` message while the hook
    /// runs (a host older than this field sends only the result).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// `hook_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    pub ok: bool,
    /// Exit status of the last attempt (`None`: killed by a signal or the timeout).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub attempts: u32,
    pub seconds: f64,
    /// The last few KiB of the last attempt's combined stdout and stderr.
    pub output: String,
    /// `resume`: how long intake was paused (the window the host recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_ms: Option<u64>,
}

/// `need`: the host's answer to a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// Missing content objects (entries in the index list that follows).
    pub objects: u64,
    /// Their total size, uncompressed.
    pub bytes: u64,
    /// Objects of the release the host already has.
    pub reused: u64,
    /// Pull mode with `assist`: the host asks the client where the missing
    /// objects are (`locations` follows the list) instead of downloading
    /// the release's whole index.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locations: bool,
}

/// `staged`: the release is on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// True when it was already there (nothing was sent).
    pub already: bool,
    pub files: u64,
    pub objects_reused: u64,
    pub objects_written: u64,
    pub bytes_written: u64,
    /// Pull mode: bytes the host downloaded from the remote store
    /// (manifest, index and object ranges, as sent by the store).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_downloaded: u64,
    /// Signatures the host recorded that it did not have (a new key's, or
    /// a newer one by a key it had): all of them on a first push, the new
    /// ones when a staged release is pushed again after `slipway sign`.
    /// `None` from a host older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures_added: Option<u64>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Check the other side's `hello`; returns its slipway version.
///
/// # Errors
/// As [`check_hello_for`], with `TARGET` standing for the target in the fix.
pub fn check_hello(msg: Message, peer: Peer) -> Result<String> {
    check_hello_for(msg, peer, None)
}

/// Check the other side's `hello`; returns its slipway version. `target` is
/// the client's `-t TARGET`, named in the fix of a mismatch.
///
/// # Errors
/// One error naming both versions, what to upgrade, and the `slipway host
/// install` command that puts the client's slipway on the host, when the
/// protocols differ; an error when the first message is not a `hello`.
pub fn check_hello_for(msg: Message, peer: Peer, target: Option<&str>) -> Result<String> {
    let (protocol, version) = match msg {
        Message::Hello { protocol, version } => (protocol, version),
        other => {
            return Err(Error::other(format!(
                "the {peer} opened with `{}` instead of `hello`; it does not speak the slipway protocol",
                other.name()
            )));
        }
    };
    if protocol == PROTOCOL {
        return Ok(version);
    }
    Err(Error::other(mismatch_text(peer, protocol, &version, target)))
}

fn mismatch_text(peer: Peer, theirs: u32, their_version: &str, target: Option<&str>) -> String {
    let their_version = their_version.escape_debug();
    let (us, upgrade_them, upgrade_us) = match peer {
        Peer::Host => ("this client", "on the host", "on this machine (the client)"),
        Peer::Client => ("this host", "on the client machine", "on this host"),
    };
    let (side, to) = if theirs < PROTOCOL {
        (upgrade_them, VERSION.to_string())
    } else {
        (upgrade_us, their_version.to_string())
    };
    let install = format!("slipway host install -t {}", target.unwrap_or("TARGET"));
    let fix = match (peer, theirs < PROTOCOL) {
        (Peer::Host, true) => format!(": run `{install}`"),
        (Peer::Host, false) => format!(", or run `{install}` to put this slipway ({VERSION}) on the host"),
        (Peer::Client, _) => format!(", or run `{install}` on the client machine to put its slipway here"),
    };
    format!(
        "the {peer} runs slipway {their_version} (protocol {theirs}) but {us} runs slipway {VERSION} (protocol {PROTOCOL}): upgrade slipway {side} to {to}{fix}"
    )
}

/// Encode manifest entry indices as the data of `need` (u32 big-endian each).
pub fn encode_indices(indices: &[u32]) -> Vec<u8> {
    indices.iter().flat_map(|i| i.to_be_bytes()).collect()
}

/// Decode the data of `need`.
///
/// # Errors
/// When the length is not a multiple of 4.
pub fn decode_indices(bytes: &[u8]) -> Result<Vec<u32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::other("the list of missing objects is malformed"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A host asks for the locations of at most this many missing objects
/// (20 bytes each on the connection); beyond it, it reads the release's
/// index from the remote store, which is then small beside the contents.
pub const MAX_LOCATIONS: u64 = 1024;

/// Where a missing object is in the remote store: a pack (its number in
/// the pull's `packs`), the offset of its zstd frame, the frame's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: u32,
    pub offset: u64,
    pub len: u64,
}

/// The data of `locations`: 20 bytes per object (pack u32, offset u64,
/// length u64, big-endian).
pub fn encode_locations(locations: &[Location]) -> Vec<u8> {
    let mut out = Vec::with_capacity(locations.len() * 20);
    for l in locations {
        out.extend_from_slice(&l.pack.to_be_bytes());
        out.extend_from_slice(&l.offset.to_be_bytes());
        out.extend_from_slice(&l.len.to_be_bytes());
    }
    out
}

/// Decode the data of `locations`.
///
/// # Errors
/// When the length is not a multiple of 20.
pub fn decode_locations(bytes: &[u8]) -> Result<Vec<Location>> {
    if !bytes.len().is_multiple_of(20) {
        return Err(Error::other("the list of object locations is malformed"));
    }
    Ok(bytes
        .chunks_exact(20)
        .map(|c| {
            let u64_at = |i: usize| u64::from_be_bytes(c[i..i + 8].try_into().unwrap_or([0; 8]));
            Location {
                pack: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                offset: u64_at(4),
                len: u64_at(12),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_back_as_written() {
        let l = vec![
            Location {
                pack: 0,
                offset: 0,
                len: 9,
            },
            Location {
                pack: u32::MAX,
                offset: u64::MAX - 1,
                len: 1 << 40,
            },
        ];
        let bytes = encode_locations(&l);
        assert_eq!(bytes.len(), 40);
        assert_eq!(decode_locations(&bytes).unwrap(), l);
        assert!(decode_locations(&bytes[..39]).is_err());
    }

    #[test]
    fn a_version_mismatch_names_both_versions_and_what_to_upgrade() {
        let old = Message::Hello {
            protocol: 0,
            version: "0.0.1".into(),
        };
        let e = check_hello(old, Peer::Host).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "the host runs slipway 0.0.1 (protocol 0) but this client runs slipway {VERSION} (protocol 1): upgrade slipway on the host to {VERSION}: run `slipway host install -t TARGET`"
            )
        );
        let old = Message::Hello {
            protocol: 0,
            version: "0.0.1".into(),
        };
        let e = check_hello_for(old, Peer::Host, Some("prod")).unwrap_err().to_string();
        assert!(e.ends_with(": run `slipway host install -t prod`"), "{e}");
        let new = Message::Hello {
            protocol: 9,
            version: "9.0.0".into(),
        };
        let e = check_hello(new.clone(), Peer::Host).unwrap_err().to_string();
        assert!(
            e.ends_with(&format!(
                "upgrade slipway on this machine (the client) to 9.0.0, or run `slipway host install -t TARGET` to put this slipway ({VERSION}) on the host"
            )),
            "{e}"
        );
        let e = check_hello(new, Peer::Client).unwrap_err().to_string();
        assert!(e.starts_with("the client runs slipway 9.0.0 (protocol 9)"), "{e}");
        assert_eq!(check_hello(Message::hello(), Peer::Host).unwrap(), VERSION);
    }

    #[test]
    fn wire_names_match() {
        let m = Message::Batch { entries: vec![1, 2] };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"type":"batch","entries":[1,2]}"#);
        assert_eq!(m.name(), "batch");
        assert_eq!(serde_json::to_string(&Message::Done).unwrap(), r#"{"type":"done"}"#);
        assert_eq!(decode_indices(&encode_indices(&[0, 70000])).unwrap(), vec![0, 70000]);
    }
}
