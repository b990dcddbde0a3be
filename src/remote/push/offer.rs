//! The exchange around the contents, one host at a time: offer the release
//! (`push`), send the manifest the host asks for, learn what it lacks
//! (`need` and the index list) and decide how that goes; after the
//! contents, `done` and the host's `staged`.
//!
//! Invariant: nothing the host says is trusted for the local side: the
//! entries it asks for must be files of the release, ascending, no more than
//! it has, or the push stops before any content is sent.

use indicatif::ProgressBar;

use super::job::{Contents, Needed, Offered, PushJob, PushOutcome};
use crate::config::LinkMode;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::Kind;
use crate::protocol::{MAX_LOCATIONS, Message, PushOffer, PushPlan, decode_indices, encode_locations};
use crate::remote::session::{HostChannel, HostSession};

/// Send the stored bundle verbatim when the host lacks at least this share
/// of the release's bytes (in percent). High on purpose: a re-run of an
/// interrupted push must send only what is still missing, and the host
/// would otherwise decode and hash the whole bundle for a part of it.
pub const BUNDLE_PERCENT: u8 = 95;

impl HostSession {
    /// Offer `job` and learn what the host lacks (requests `push`,
    /// `manifest`; answers `send_manifest`, `need`).
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn offer(&mut self, job: &PushJob<'_>, link_mode: LinkMode, bar: &ProgressBar) -> Result<Offered> {
        let before = self.ch.data_bytes_sent();
        match offer_on(&mut self.ch, job, link_mode, bar) {
            Ok(Offered::Need(mut n)) => {
                n.sent_before = before;
                Ok(Offered::Need(n))
            }
            Ok(o) => Ok(o),
            Err(e) => Err(self.fail(e, &format!("the push of `{}`", job.name))),
        }
    }

    /// End the push once the contents are sent: `done`, then the host's `staged`.
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn finish_push(&mut self, job: &PushJob<'_>, needed: &Needed) -> Result<PushOutcome> {
        self.send_done(job)?;
        self.await_staged(job, needed)
    }

    /// Tell the host every content is sent (`done`): it builds and binds
    /// the release. Several hosts can be told before any is awaited.
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn send_done(&mut self, job: &PushJob<'_>) -> Result<()> {
        let sent = self.ch.send(&Message::Done).and_then(|()| self.ch.flush());
        sent.map_err(|e| self.fail(e, &format!("the push of `{}`", job.name)))
    }

    /// The host's `staged` after [`HostSession::send_done`].
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn await_staged(&mut self, job: &PushJob<'_>, needed: &Needed) -> Result<PushOutcome> {
        let staged = match self.ch.recv() {
            Ok(Message::Staged(s)) => Ok(s),
            Ok(other) => Err(unexpected(&other, "`staged`")),
            Err(e) => Err(e),
        };
        match staged {
            Ok(staged) => Ok(PushOutcome {
                already: false,
                files: staged.files,
                bytes_needed: needed.bytes,
                bytes_sent: self.ch.data_bytes_sent() - needed.sent_before,
                objects_reused: needed.reused,
                bytes_downloaded: staged.bytes_downloaded,
                signatures_added: staged.signatures_added,
            }),
            Err(e) => Err(self.fail(e, &format!("the push of `{}`", job.name))),
        }
    }
}

/// The `push` offer of `job`.
fn offer_of(job: &PushJob<'_>, link_mode: LinkMode) -> PushOffer {
    PushOffer {
        name: job.name.to_string(),
        id: job.id,
        provenance: job.provenance.clone(),
        signatures: job.signatures.clone(),
        link_mode,
        pushed_by: job.pushed_by.clone(),
        shared: job.shared.to_vec(),
        shared_files: job.shared_files.to_vec(),
        repair: job.repair,
        source: job.pull.clone(),
        command: Some(job.command.clone()),
    }
}

impl HostSession {
    /// What a push of `job` would do here, without doing it (requests
    /// `plan_push`, `manifest`; answers `send_manifest`, `push_plan`):
    /// the host changes nothing. In pull mode the figures are what the host
    /// would download instead of receive.
    ///
    /// # Errors
    /// A host too old to know `plan_push` ([`Error::UnknownRequest`]), a
    /// manifest the host rejects, a broken connection.
    pub fn plan_push(&mut self, job: &PushJob<'_>, link_mode: LinkMode) -> Result<PushPlan> {
        let mut offer = offer_of(job, link_mode);
        // The host compares the client's manifest; where it would come from does not matter.
        offer.source = None;
        let r = plan_on(&mut self.ch, job, offer);
        r.map_err(|e| self.fail(e, &format!("the plan of a push of `{}`", job.name)))
    }
}

impl HostSession {
    /// Would this host accept release `name` (bundle `id`), which it has
    /// staged, now — its signatures against today's `allowed_signers` — as
    /// an activation checks it? A `plan_push` of the release with nothing
    /// new: the host answers from what it has, changing nothing.
    ///
    /// # Errors
    /// As [`HostSession::plan_push`]; also when the host does not have the
    /// release complete (it asks for the manifest).
    pub fn plan_staged(&mut self, name: &str, id: Digest) -> Result<PushPlan> {
        let offer = PushOffer {
            name: name.to_string(),
            id,
            provenance: None,
            signatures: Vec::new(),
            link_mode: LinkMode::default(),
            pushed_by: crate::config::actor(),
            shared: Vec::new(),
            shared_files: Vec::new(),
            repair: false,
            source: None,
            command: None,
        };
        let r = self
            .ch
            .send(&Message::PlanPush(Box::new(offer)))
            .and_then(|()| self.ch.recv());
        match r {
            Ok(Message::PushPlan(p)) => Ok(*p),
            Ok(other) => Err(self.fail(unexpected(&other, "`push_plan`"), "the plan")),
            Err(e) => Err(self.fail(e, "the plan")),
        }
    }
}

fn plan_on(ch: &mut HostChannel, job: &PushJob<'_>, offer: PushOffer) -> Result<PushPlan> {
    ch.send(&Message::PlanPush(Box::new(offer)))?;
    ch.flush()?;
    let answer = match ch.recv()? {
        Message::SendManifest { bases, .. } => {
            send_manifest(ch, job, &bases)?;
            ch.flush()?;
            ch.recv()?
        }
        other => other,
    };
    match answer {
        Message::PushPlan(p) => Ok(*p),
        other => Err(unexpected(&other, "`push_plan`")),
    }
}

fn unexpected(msg: &Message, wanted: &str) -> Error {
    Error::UnexpectedAnswer {
        got: msg.name(),
        wanted: wanted.to_string(),
    }
}

fn offer_on(ch: &mut HostChannel, job: &PushJob<'_>, link_mode: LinkMode, bar: &ProgressBar) -> Result<Offered> {
    // Until the host says what it lacks, the whole bundle is the estimate.
    if let Ok(m) = fs::metadata(&job.store.bundle_path(&job.id)) {
        bar.set_length(m.len());
    }
    ch.send(&Message::Push(Box::new(offer_of(job, link_mode))))?;
    let need = match (ch.recv()?, job.pull.is_some()) {
        (Message::Staged(s), _) if s.already => {
            return Ok(Offered::Already(PushOutcome {
                already: true,
                files: s.files,
                bytes_needed: 0,
                bytes_sent: 0,
                objects_reused: s.objects_reused,
                bytes_downloaded: 0,
                signatures_added: s.signatures_added,
            }));
        }
        (Message::SendManifest { bases, .. }, false) => {
            send_manifest(ch, job, &bases)?;
            match ch.recv()? {
                Message::Need(n) => n,
                other => return Err(unexpected(&other, "`need`")),
            }
        }
        // Pull mode: the host read the manifest from the bucket itself.
        (Message::Need(n), true) => n,
        // Pull mode, assisted: the host has earlier releases.
        (Message::SendManifest { bases, pull: true }, true) if job.assist.is_some() => {
            send_pull_manifest(ch, job, &bases)?;
            match ch.recv()? {
                Message::Need(n) => n,
                other => return Err(unexpected(&other, "`need`")),
            }
        }
        (Message::SendManifest { .. }, true) => {
            return Err(Error::UnknownRequest(
                "this host's slipway cannot pull from a remote store (it asked for the manifest); upgrade it with `slipway host install`, or deploy without `--from`".to_string(),
            ));
        }
        (other, false) => return Err(unexpected(&other, "`send_manifest`")),
        (other, true) => return Err(unexpected(&other, "`need`")),
    };
    let entries = &job.manifest.entries;
    if need.objects > entries.len() as u64 {
        return Err(Error::other("the host asked for more objects than the release has"));
    }
    let indices = decode_indices(&ch.recv_blob(need.objects * 4, "the list of missing objects")?)?;
    let mut needed_bytes = 0;
    for (n, &i) in indices.iter().enumerate() {
        if n > 0 && indices[n - 1] >= i {
            return Err(Error::other(format!("the host asked for entry {i} out of order")));
        }
        match entries.get(i as usize) {
            Some(e) if e.kind == Kind::File => needed_bytes += e.size,
            _ => {
                return Err(Error::other(format!(
                    "the host asked for entry {i}, which is not a file"
                )));
            }
        }
    }
    if need.locations {
        send_locations(ch, job, &indices)?;
    }
    let total = job.object_bytes();
    let how = if indices.is_empty() || job.pull.is_some() {
        // Nothing to send: or the host pulls what it lacks itself.
        Contents::Nothing
    } else if u128::from(needed_bytes) * 100 >= u128::from(total) * u128::from(BUNDLE_PERCENT) {
        Contents::Bundle
    } else {
        bar.set_length(needed_bytes);
        Contents::Batches
    };
    Ok(Offered::Need(Needed {
        indices,
        how,
        bytes: need.bytes,
        reused: need.reused,
        sent_before: 0,
    }))
}

/// Send the canonical manifest, compressed against a manifest the host
/// offered when the local store has it too (a new release differs little
/// from the last one, so this is usually a few kilobytes).
fn send_manifest(ch: &mut HostChannel, job: &PushJob<'_>, bases: &[Digest]) -> Result<()> {
    let size = job.canonical().len() as u64;
    let (base, compressed) = job.manifest_for(bases)?;
    ch.send(&Message::Manifest { size, base })?;
    ch.send_data(&compressed)?;
    ch.send_end()
}

/// The largest manifest delta sent in pull mode: past it the host reads
/// the manifest from the remote store (a change that large brings
/// contents many times its manifest's size anyway).
pub const MAX_PULL_MANIFEST: usize = 48 * 1024;

/// Pull mode: send the manifest compressed against one the host offered
/// when the local or the remote store has that one too and the result is
/// small; else tell the host to read it from the remote store.
fn send_pull_manifest(ch: &mut HostChannel, job: &PushJob<'_>, bases: &[Digest]) -> Result<()> {
    match job.manifest_for(bases)? {
        (Some(base), compressed) if compressed.len() <= MAX_PULL_MANIFEST => {
            ch.send(&Message::Manifest {
                size: job.canonical().len() as u64,
                base: Some(base),
            })?;
            ch.send_data(&compressed)?;
            ch.send_end()
        }
        _ => ch.send(&Message::PullManifest),
    }
}

/// Pull mode: where each object the host lacks is (one per entry of its
/// list, in order), from the release's index the client read.
fn send_locations(ch: &mut HostChannel, job: &PushJob<'_>, indices: &[u32]) -> Result<()> {
    let Some(assist) = job.pull.as_ref().and(job.assist.as_ref()) else {
        return Err(Error::other(
            "the host asked where the missing objects are, but this is not an assisted pull",
        ));
    };
    if indices.len() as u64 > MAX_LOCATIONS {
        return Err(Error::other(format!(
            "the host asked where {} objects are, more than the {MAX_LOCATIONS} a client sends",
            indices.len()
        )));
    }
    let mut locations = Vec::with_capacity(indices.len());
    for &i in indices {
        let entry = &job.manifest.entries[i as usize];
        let Some(l) = entry.sha256.and_then(|d| assist.locations.get(&d)) else {
            return Err(Error::other(format!(
                "the release's index in the remote store has no location for `{}`",
                entry.path
            )));
        };
        locations.push(*l);
    }
    ch.send(&Message::Locations {
        objects: locations.len() as u64,
    })?;
    ch.send_blob(&encode_locations(&locations))
}
