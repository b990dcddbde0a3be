//! Phase 1 of a deploy: stage a release on every host, in parallel.
//!
//! Two steps, each over every host at once: offer the release (each host
//! answers what it lacks); then send the contents — one stream of the
//! stored bundle to the hosts that lack nearly everything, and to each
//! group of hosts lacking the same objects one stream of batches, read and
//! compressed once and written to every host of the group — and wait for
//! those hosts to stage the release.
//!
//! Invariant: nothing live changes on any host; a host that fails keeps
//! what it staged (a re-run sends only what is missing), and the others
//! finish their push. At most `parallel` streams run at once, and no stream
//! serves more than `parallel` hosts.

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::ProgressBar;

use crate::error::Result;
use crate::remote::push::{Contents, Offered, PushJob, PushOutcome, send_batches, send_bundle_to_all};

use super::connect::{Fleet, each};
use super::member::{Member, PushStage, Sending};
use super::report::{Outcome, Phase, Step};

impl Member {
    /// The push to this host ended well: record its figures.
    fn staged(&mut self, o: &PushOutcome, started: Instant) {
        self.report.bytes_sent = Some(o.bytes_sent);
        self.report.objects_reused = Some(o.objects_reused);
        self.report.result = Outcome::Ok;
        let seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        self.push = PushStage::Staged(*o, seconds);
    }
}

impl Fleet<'_> {
    /// Phase 1 of a deploy: push to every host in parallel (see the module
    /// documentation for how the contents travel).
    ///
    /// # Errors
    /// The first host's failure (every host's outcome is in the report).
    pub fn push(&mut self, job: &PushJob<'_>) -> Result<()> {
        self.push_skipping(job, false)
    }

    /// [`Fleet::push`]; with `skip_unreachable`, hosts that cannot be
    /// reached are left out with a warning (reported `unreachable`).
    ///
    /// # Errors
    /// As [`Fleet::push`]; when skipping, also when no host can be reached.
    pub fn push_skipping(&mut self, job: &PushJob<'_>, skip_unreachable: bool) -> Result<()> {
        let _phase = crate::interrupt::push(&self.target.name);
        self.reach_all(skip_unreachable)?;
        self.offer_all(job);
        let streams = streams(&mut self.members, self.parallel);
        crate::parallel::map(streams, self.parallel, |stream| send_contents(job, stream));
        self.first_error(Step::Push)
    }

    /// Each host's push outcome and seconds (`None` where it did not succeed).
    pub fn push_results(&self) -> Vec<(String, Option<(PushOutcome, f64)>)> {
        self.members
            .iter()
            .map(|m| {
                let staged = match m.push {
                    PushStage::Staged(o, seconds) => Some((o, seconds)),
                    PushStage::Idle | PushStage::Sending(_) => None,
                };
                (m.spec.label.clone(), staged)
            })
            .collect()
    }

    /// Offer the release to every connected host: those that have it are
    /// done, the others start [`PushStage::Sending`].
    fn offer_all(&mut self, job: &PushJob<'_>) {
        let out = &self.ctx.out;
        each(&mut self.members, self.parallel, |m| {
            // Failed, or left out as unreachable.
            if m.error.is_some() || m.session.is_none() {
                return;
            }
            m.report.phase = Phase::Push;
            let started = Instant::now();
            let bar: ProgressBar = out.bytes_bar(0, &m.spec.label);
            let link_mode = m.spec.link_mode;
            match m.session().and_then(|s| s.offer(job, link_mode, &bar)) {
                Ok(Offered::Already(o)) => {
                    bar.finish_and_clear();
                    m.staged(&o, started);
                }
                Ok(Offered::Need(needed)) => m.push = PushStage::Sending(Sending { needed, bar, started }),
                Err(e) => {
                    bar.finish_and_clear();
                    m.fail(Phase::Push, e);
                }
            }
        });
    }
}

/// Hosts lacking the same objects share one batch stream, hosts lacking
/// nearly everything one bundle stream (at most `per_stream` hosts per
/// stream); hosts lacking nothing finish on their own.
fn streams(members: &mut [Member], per_stream: usize) -> Vec<Vec<&mut Member>> {
    let mut streams: Vec<Vec<&mut Member>> = Vec::new();
    let mut groups: BTreeMap<Option<Vec<u32>>, Vec<&mut Member>> = BTreeMap::new();
    for m in members {
        let Some(s) = m.push.sending() else { continue };
        match s.needed.how {
            Contents::Batches => {
                let key = Some(s.needed.indices.clone());
                groups.entry(key).or_default().push(m);
            }
            Contents::Bundle => groups.entry(None).or_default().push(m),
            Contents::Nothing => streams.push(vec![m]),
        }
    }
    for (_, mut group) in groups {
        while group.len() > per_stream {
            let rest = group.split_off(per_stream);
            streams.push(group);
            group = rest;
        }
        streams.push(group);
    }
    streams
}

/// Send the contents one stream of a push carries — one bundle or batch
/// stream to a group of hosts, or nothing — then end the push on its
/// hosts: `done` to all of them, then each one's `staged` (the hosts stage
/// at the same time).
fn send_contents(job: &PushJob<'_>, mut stream: Vec<&mut Member>) {
    let Some((how, indices)) = stream
        .first()
        .and_then(|m| m.push.sending())
        .map(|s| (s.needed.how, s.needed.indices.clone()))
    else {
        return;
    };
    if how != Contents::Nothing {
        send_shared(job, how, &indices, &mut stream);
    }
    for m in &mut stream {
        if m.error.is_none()
            && let Err(e) = m.session().and_then(|s| s.send_done(job))
        {
            m.fail(Phase::Push, e);
        }
    }
    for m in stream {
        await_staged(job, m);
    }
}

/// One stream of the bundle (`how` is [`Contents::Bundle`]) or of the
/// batches of `indices`, written to every host of `stream` at once.
fn send_shared(job: &PushJob<'_>, how: Contents, indices: &[u32], stream: &mut [&mut Member]) {
    let mut group = Vec::new();
    let mut senders = Vec::new();
    for (i, m) in stream.iter_mut().enumerate() {
        let bar = m.push.sending().map(|s| s.bar.clone());
        if let (Some(session), Some(bar)) = (m.session.as_mut(), bar) {
            group.push((session, bar));
            senders.push(i);
        }
    }
    let results = if how == Contents::Bundle {
        send_bundle_to_all(job, &mut group)
    } else {
        send_batches(job, indices, &mut group)
    };
    drop(group);
    for (i, result) in senders.into_iter().zip(results) {
        if let Err(e) = result {
            stream[i].fail(Phase::Push, e);
        }
    }
}

/// Wait for a host that was sent its contents to stage the release.
fn await_staged(job: &PushJob<'_>, m: &mut Member) {
    let PushStage::Sending(s) = std::mem::replace(&mut m.push, PushStage::Idle) else {
        return;
    };
    s.bar.finish_and_clear();
    if m.error.is_some() {
        return;
    }
    match m.session().and_then(|session| session.await_staged(job, &s.needed)) {
        Ok(o) => m.staged(&o, s.started),
        Err(e) => m.fail(Phase::Push, e),
    }
}
