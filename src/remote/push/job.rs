//! What a push is and what it reports: the job (one release of the local
//! store, with its manifest serialised and compressed once for every host),
//! the outcome per host, and the helpers the shared streams use to report
//! per host.
//!
//! Invariant: work that is the same for every host (the canonical manifest,
//! each compressed form of it) is done once per push, whatever the number
//! of hosts asking for it at the same time.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use indicatif::ProgressBar;
use serde_json::Value;

use crate::bundle::ZSTD_LEVEL;
use crate::digest::Digest;
use crate::error::{Error, Result, describe_io};
use crate::manifest::Manifest;
use crate::provenance::Provenance;
use crate::remote::Target;
use crate::remote::session::HostSession;
use crate::store::Store;

/// What to push: one release of the local store.
pub struct PushJob<'a> {
    pub store: &'a Store,
    pub name: &'a str,
    pub id: Digest,
    pub manifest: &'a Manifest,
    pub provenance: Option<Provenance>,
    pub signatures: Vec<Value>,
    /// `user@host` of the operator.
    pub pushed_by: String,
    /// The target's `shared` directories and `shared_files`, linked into the release.
    pub shared: &'a [String],
    pub shared_files: &'a [String],
    /// Repair a damaged release that is already on the host (`verify --repair`).
    pub repair: bool,
    /// Pull mode: each host downloads the release from a remote store
    /// (`--from`), and this connection carries control messages only.
    pub pull: Option<crate::protocol::PullSource>,
    /// Pull mode: what the client knows that spares each host a download
    /// (`PullSource::assist`).
    pub assist: Option<PullAssist<'a>>,
    /// Tells the hosts apart from a root reached twice (see `PushOffer::command`).
    pub command: String,
    /// Bases looked for and not found (neither in the local store nor,
    /// in pull mode, in the remote store): not looked for again.
    missing_bases: Mutex<std::collections::HashSet<Digest>>,
    /// The manifest as sent, by the base it was compressed against:
    /// compressed once for all the hosts that offer the same base.
    sent_manifests: Mutex<HashMap<Option<Digest>, Arc<Vec<u8>>>>,
    /// The manifest's canonical bytes, serialised once.
    canonical: OnceLock<Vec<u8>>,
    /// The bytes of the release's distinct objects, summed once.
    object_bytes: OnceLock<u64>,
}

impl<'a> PushJob<'a> {
    /// Stage `record` (its bundle and `manifest` from `store`) on the hosts of
    /// `target`, with the target's shared paths; `repair` rebuilds a damaged
    /// release that is already there.
    pub fn new(
        store: &'a Store,
        record: &'a crate::store::ReleaseRecord,
        manifest: &'a Manifest,
        target: &'a Target,
        repair: bool,
    ) -> PushJob<'a> {
        PushJob {
            store,
            name: &record.name,
            id: record.id,
            manifest,
            provenance: record.provenance.clone(),
            signatures: record.signatures.clone(),
            pushed_by: crate::config::actor(),
            shared: &target.config.shared,
            shared_files: &target.config.shared_files,
            repair,
            pull: None,
            assist: None,
            command: command_token(),
            missing_bases: Mutex::default(),
            sent_manifests: Mutex::default(),
            canonical: OnceLock::new(),
            object_bytes: OnceLock::new(),
        }
    }

    pub(super) fn object_bytes(&self) -> u64 {
        *self
            .object_bytes
            .get_or_init(|| self.manifest.objects().iter().map(|(_, size)| size).sum())
    }

    pub(super) fn canonical(&self) -> &[u8] {
        self.canonical.get_or_init(|| self.manifest.canonical_bytes())
    }

    /// The manifest compressed against the first of `bases` the local
    /// store has (or alone): `(base, bytes)`. Once per base for all the
    /// hosts of a push: the lock is held while a base is loaded and the
    /// manifest compressed, so the hosts that ask meanwhile (a fleet asks
    /// all at once) wait for that work instead of repeating it.
    pub(super) fn manifest_for(&self, bases: &[Digest]) -> Result<(Option<Digest>, Arc<Vec<u8>>)> {
        let mut cache = self
            .sent_manifests
            .lock()
            .map_err(|_| Error::other("a push thread panicked"))?;
        if let Some(hit) = bases
            .iter()
            .find_map(|id| cache.get(&Some(*id)).map(|b| (Some(*id), b.clone())))
        {
            return Ok(hit);
        }
        let base = bases.iter().find_map(|id| self.base_manifest(id).map(|b| (*id, b)));
        let key = base.as_ref().map(|(id, _)| *id);
        if let Some(bytes) = cache.get(&key) {
            return Ok((key, bytes.clone()));
        }
        let bytes = Arc::new(compress_manifest(
            self.canonical(),
            base.as_ref().map(|(_, b)| b.as_slice()),
        )?);
        cache.insert(key, bytes.clone());
        Ok((key, bytes))
    }
}

impl PushJob<'_> {
    /// The canonical manifest of `id` from the local store, else (pull
    /// mode) from the remote store; `None` when neither has it.
    fn base_manifest(&self, id: &Digest) -> Option<Vec<u8>> {
        let mut missing = self.missing_bases.lock().ok()?;
        if missing.contains(id) {
            return None;
        }
        let found = if self.store.has_bundle(id) {
            self.store.manifest(id).ok().map(|m| m.canonical_bytes())
        } else {
            None
        };
        let found = found.or_else(|| self.assist.as_ref().and_then(|a| (a.base)(id)));
        if found.is_none() {
            missing.insert(*id);
        }
        found
    }
}

/// Pull mode: what the client knows that spares each host a download
/// (docs/protocol.md, "Pull mode").
pub struct PullAssist<'a> {
    /// Where each content of the release is in the remote store (the pack
    /// is its number in the pull's `packs`).
    pub locations: HashMap<Digest, crate::protocol::Location>,
    /// The canonical manifest of an earlier release the local store lacks,
    /// from the remote store and checked against its id: the base a host
    /// offers for the manifest's delta.
    pub base: Box<BaseSource<'a>>,
}

/// Gives the canonical manifest of a release by id, when it can.
pub type BaseSource<'a> = dyn Fn(&Digest) -> Option<Vec<u8>> + Send + Sync + 'a;

/// A token for one command, the same for all its hosts: the operator, the
/// process and the time.
fn command_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}/{}/{nanos}", crate::config::actor(), std::process::id())
}

/// What one push did on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// The release was already staged there; nothing was sent.
    pub already: bool,
    pub files: u64,
    /// Bytes of the objects the host lacked (uncompressed).
    pub bytes_needed: u64,
    /// Data bytes that crossed the connection.
    pub bytes_sent: u64,
    pub objects_reused: u64,
    /// Pull mode: bytes the host downloaded from the remote store.
    pub bytes_downloaded: u64,
    /// Signatures the host recorded that it did not have (`None`: a host
    /// too old to say).
    pub signatures_added: Option<u64>,
}

/// What the host answered to an offer.
#[derive(Debug)]
pub enum Offered {
    /// The release was already staged there: nothing to send.
    Already(PushOutcome),
    /// The host lacks these contents; [`HostSession::finish_push`] follows
    /// once they are sent.
    Need(Needed),
}

/// The contents a host lacks, and how they go.
#[derive(Debug, Clone)]
pub struct Needed {
    /// Manifest indices of the missing objects, ascending.
    pub indices: Vec<u32>,
    pub how: Contents,
    /// Bytes of the missing objects (uncompressed).
    pub bytes: u64,
    pub reused: u64,
    /// The session's data bytes before the push (for `bytes_sent`).
    pub(super) sent_before: u64,
}

/// How the missing contents are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// Nothing is missing: only the tree needs building.
    Nothing,
    /// The stored bundle, verbatim.
    Bundle,
    /// Batches of the missing objects.
    Batches,
}

/// One zstd frame of `manifest`, with `base` as reference prefix when given.
///
/// # Errors
/// When zstd refuses its parameters.
pub fn compress_manifest(manifest: &[u8], base: Option<&[u8]>) -> Result<Vec<u8>> {
    let fail = |e: std::io::Error| Error::other(format!("cannot compress the manifest: {}", describe_io(&e)));
    let mut out = Vec::new();
    {
        let mut enc = match base {
            Some(prefix) => {
                let mut enc =
                    zstd::stream::write::Encoder::with_ref_prefix(&mut out, ZSTD_LEVEL, prefix).map_err(fail)?;
                // The window must reach back over the whole prefix.
                let span = (prefix.len() + manifest.len()).max(1) as u64;
                let log = (64 - span.leading_zeros()).clamp(10, 27);
                enc.window_log(log).map_err(fail)?;
                // Level 3's hash tables do not reach far into a megabytes-long
                // prefix; long-distance matching does (like `zstd --patch-from`).
                enc.long_distance_matching(true).map_err(fail)?;
                enc
            }
            None => zstd::stream::write::Encoder::new(&mut out, ZSTD_LEVEL).map_err(fail)?,
        };
        enc.write_all(manifest).map_err(fail)?;
        enc.finish().map_err(fail)?;
    }
    Ok(out)
}

/// Each session's result after a stream shared by `group`: its own
/// failure, else the stream's (a local error: every host gets it).
pub(super) fn stream_results(
    group: &mut [(&mut HostSession, ProgressBar)],
    failed: Vec<Option<Error>>,
    streamed: &Result<()>,
    phase: &str,
) -> Vec<Result<()>> {
    group
        .iter_mut()
        .zip(failed)
        .map(|((session, _), failed)| match (failed, streamed) {
            (Some(e), _) => Err(session.fail(e, phase)),
            (None, Ok(())) => Ok(()),
            (None, Err(e)) => Err(session.fail(e.reworded(e.to_string()), phase)),
        })
        .collect()
}

/// Advance a host's progress bar; a hidden one (`-q`, `--json`, no
/// terminal) is left alone, as its updates would only cost time.
pub(super) fn advance(bar: &ProgressBar, n: u64) {
    if !bar.is_hidden() {
        bar.inc(n);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn manifest(sizes: &[u64]) -> Manifest {
        crate::manifest::sized_for_tests(sizes)
    }

    #[test]
    fn a_manifest_compressed_against_its_predecessor_is_small_and_round_trips() {
        let old = manifest(&vec![100; 20000]).canonical_bytes();
        let mut next = manifest(&vec![100; 20000]);
        next.entries[42].size = 7;
        let new = next.canonical_bytes();
        let plain = compress_manifest(&new, None).unwrap();
        let delta = compress_manifest(&new, Some(&old)).unwrap();
        assert!(delta.len() * 20 < plain.len(), "{} vs {}", delta.len(), plain.len());
        let mut dec =
            zstd::stream::read::Decoder::with_ref_prefix(std::io::BufReader::new(delta.as_slice()), &old).unwrap();
        let mut back = Vec::new();
        dec.read_to_end(&mut back).unwrap();
        assert_eq!(back, new);
    }
}
