//! Many hosts at once: parallel push, then a two-phase, all-or-nothing
//! switch of `current` with hooks and health checks.
//!
//! Every command that changes `current` on a target goes through
//! [`Fleet::switch`], one host or many:
//!
//! 1. connect to every host (unreachable: stop, unless `--skip-unreachable`);
//! 2. take every host's lock (one held by someone else: stop, exit 4);
//! 3. read each host's state and decide what it switches to;
//! 4. run `before_activate` everywhere (deploy/activate only);
//! 5. per batch: switch, run `after_activate`, check `health`;
//! 6. on any failure, switch every switched host back (marking the new
//!    release bad there) and run `after_activate` again.
//!
//! Invariant: either every selected host ends on the new release, or every
//! host that was switched is back where it was; the report says which for
//! each host. Nothing is switched anywhere before every host is locked and
//! ready.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;

use crate::Context;
use crate::config::Hooks;
use crate::error::{Error, Exit, Result};
use crate::host::lock::LockInfo;
use crate::host::status::HostStatus;
use crate::protocol::{ActivateRequest, HookRequest, RollbackRequest};
use crate::remote::push::{Contents, Needed, Offered, PushJob, PushOutcome, send_batches, send_bundle_to_all};
use crate::remote::session::HostSession;
use crate::remote::{HostSpec, Target};

/// Default `parallel`.
pub const DEFAULT_PARALLEL: usize = 16;

/// The last phase a host reached in a fleet command (`phase` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Connect,
    Push,
    Lock,
    BeforeActivate,
    Activate,
    Rollback,
    AfterActivate,
    Health,
    Revert,
    Done,
}

impl Phase {
    /// The name in reports and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Push => "push",
            Phase::Lock => "lock",
            Phase::BeforeActivate => "before_activate",
            Phase::Activate => "activate",
            Phase::Rollback => "rollback",
            Phase::AfterActivate => "after_activate",
            Phase::Health => "health",
            Phase::Revert => "revert",
            Phase::Done => "done",
        }
    }

    /// A hook's phase: a failure here is the release's own, not the network's.
    fn is_hook(self) -> bool {
        matches!(self, Phase::BeforeActivate | Phase::AfterActivate | Phase::Health)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that table widths (`{:<15}`) apply.
        f.pad(self.as_str())
    }
}

/// How a host fared in a fleet command (`result` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Already on the release: nothing to do.
    Unchanged,
    Failed,
    /// Switched, then switched back because a host failed.
    Reverted,
    /// Stopped before this host's turn.
    #[default]
    NotStarted,
    /// Skipped with `--skip-unreachable`.
    Unreachable,
}

impl Outcome {
    /// The name in reports and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Reverted => "reverted",
            Outcome::NotStarted => "not_started",
            Outcome::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A hook the fleet runs on each host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookKind {
    BeforeActivate,
    AfterActivate,
    Health,
}

impl HookKind {
    /// The name on the wire (`HookRequest::kind`) and in messages.
    fn as_str(self) -> &'static str {
        match self {
            HookKind::BeforeActivate => "before_activate",
            HookKind::AfterActivate => "after_activate",
            HookKind::Health => "health",
        }
    }

    fn phase(self) -> Phase {
        match self {
            HookKind::BeforeActivate => Phase::BeforeActivate,
            HookKind::AfterActivate => Phase::AfterActivate,
            HookKind::Health => Phase::Health,
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a switch is, in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Activation,
    Rollback,
}

impl Verb {
    /// The phase a host that cannot do this is reported in.
    fn phase(self) -> Phase {
        match self {
            Verb::Activation => Phase::Activate,
            Verb::Rollback => Phase::Rollback,
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verb::Activation => "activation",
            Verb::Rollback => "rollback",
        })
    }
}

/// The step a fleet command stops at when a host fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Push,
    Connect(Verb),
    Lock(Verb),
    Plan(Verb),
    BeforeActivate(Verb),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Push => f.write_str("push"),
            Step::Connect(v) => write!(f, "{v}: connecting"),
            Step::Lock(v) => write!(f, "{v}: locking"),
            Step::Plan(v) => write!(f, "{v}"),
            Step::BeforeActivate(v) => write!(f, "{v}: before_activate"),
        }
    }
}

/// One host's line of a fleet report (`--json`: one object per host).
#[derive(Debug, Clone, Serialize, Default)]
pub struct HostReport {
    pub host: String,
    /// The last phase the host reached: `connect`, `push`, `lock`,
    /// `before_activate`, `activate`, `after_activate`, `health`, `revert`, `done`.
    pub phase: Phase,
    /// `ok`, `unchanged` (already on the release), `failed`, `reverted`,
    /// `not_started` (stopped because another host failed), `unreachable`
    /// (skipped with `--skip-unreachable`).
    pub result: Outcome,
    /// The release current on the host when the command ended.
    pub current: Option<String>,
    /// The release current before the command.
    pub previous: Option<String>,
    /// What went wrong (failed hosts) or what happened (reverted hosts).
    pub reason: Option<String>,
    /// The tail of a failed hook's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Push figures (deploy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_reused: Option<u64>,
}

/// What a switch does on each host.
#[derive(Debug, Clone)]
pub enum Goal {
    /// Activate this release (name or id prefix) everywhere. With `again`,
    /// hosts already on it activate it anyway (recorded); otherwise they skip.
    Activate {
        release: String,
        expect: Option<String>,
        again: bool,
        /// Recorded in the history (e.g. a gate override's reason).
        reason: Option<String>,
    },
    /// Roll back to `to`, or each host's previous good release.
    Rollback {
        to: Option<String>,
        expect: Option<String>,
        reason: Option<String>,
    },
}

impl Goal {
    fn verb(&self) -> Verb {
        match self {
            Goal::Activate { .. } => Verb::Activation,
            Goal::Rollback { .. } => Verb::Rollback,
        }
    }
}

/// Options of a switch.
#[derive(Debug, Clone, Default)]
pub struct SwitchOptions {
    pub wait: Option<Duration>,
    pub skip_unreachable: bool,
    /// Hosts per batch (rolling); `None`: all at once.
    pub batch: Option<usize>,
    /// Prune beyond `keep` after a fully successful switch.
    pub prune_keep: Option<usize>,
    /// The command line, for the lock holder's details.
    pub command: String,
}

struct Slot {
    spec: HostSpec,
    session: Option<HostSession>,
    report: HostReport,
    /// What this host switches to (`None`: nothing to do here).
    goal: Option<String>,
    /// The release it was on before (for reverts).
    from: Option<String>,
    switched: bool,
    error: Option<Error>,
    status: Option<HostStatus>,
    /// In the batch being switched now.
    in_batch: bool,
    /// What the push did here, and how long it took (seconds).
    pushed: Option<(PushOutcome, f64)>,
    /// A push between its offer and its end: what the host lacks, its
    /// progress bar, and when it started.
    pushing: Option<(Needed, ProgressBar, Instant)>,
    /// The connection broke (not a refusal): the session is unusable, and a
    /// switch in flight may or may not have happened.
    broken: bool,
    /// Broken during a switch and not reachable again: its state is unknown.
    unknown: bool,
}

impl Slot {
    fn new(spec: HostSpec) -> Slot {
        let report = HostReport {
            host: spec.label.clone(),
            phase: Phase::Connect,
            result: Outcome::NotStarted,
            ..HostReport::default()
        };
        Slot {
            spec,
            session: None,
            report,
            goal: None,
            from: None,
            switched: false,
            error: None,
            status: None,
            in_batch: false,
            pushed: None,
            pushing: None,
            broken: false,
            unknown: false,
        }
    }

    fn fail(&mut self, phase: Phase, e: Error) {
        self.broken |= e.is_connection();
        self.report.phase = phase;
        self.report.result = Outcome::Failed;
        let text = e.to_string();
        let text = text.strip_prefix(&format!("{}: ", self.spec.label)).unwrap_or(&text);
        self.report.reason = Some(one_line(text));
        self.error = Some(e);
    }

    fn pushed_now(&mut self, o: &PushOutcome, clock: Instant) {
        record_push(&mut self.report, o);
        let seconds = (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        self.pushed = Some((*o, seconds));
    }

    fn session(&mut self) -> Result<&mut HostSession> {
        let label = self.spec.label.clone();
        self.session
            .as_mut()
            .ok_or_else(|| Error::other("the connection was closed after an earlier failure").on_host(&label))
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Run `f` on every slot, at most `parallel` at a time.
fn each<F>(slots: &mut [Slot], parallel: usize, f: F)
where
    F: Fn(&mut Slot) + Sync,
{
    crate::parallel::map(slots.iter_mut().collect(), parallel, f);
}

/// A target's hosts, connected as needed.
pub struct Fleet<'a> {
    ctx: &'a Context,
    target: &'a Target,
    slots: Vec<Slot>,
    parallel: usize,
    hooks: Hooks,
}

/// Select `--hosts` from a target.
///
/// # Errors
/// Usage error naming an unknown host and the target's hosts.
pub fn select_hosts(target: &Target, only: &[String]) -> Result<Vec<HostSpec>> {
    if only.is_empty() {
        return Ok(target.hosts.clone());
    }
    let mut out = Vec::new();
    for want in only {
        match target.hosts.iter().find(|h| &h.label == want) {
            Some(h) => out.push(h.clone()),
            None => {
                let known: Vec<&str> = target.hosts.iter().map(|h| h.label.as_str()).collect();
                return Err(Error::usage(format!(
                    "`{want}` is not a host of target `{}` (its hosts: {})",
                    target.name,
                    known.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

impl<'a> Fleet<'a> {
    /// # Errors
    /// Usage error for unknown `--hosts` or malformed hook settings.
    pub fn new(ctx: &'a Context, target: &'a Target, only: &[String]) -> Result<Fleet<'a>> {
        let hosts = select_hosts(target, only)?;
        Ok(Fleet {
            ctx,
            target,
            slots: hosts.into_iter().map(Slot::new).collect(),
            parallel: target.config.parallel.unwrap_or(DEFAULT_PARALLEL).max(1),
            hooks: Hooks::from_config(&target.name, &target.config)?,
        })
    }

    /// Run `f` on every host's session in parallel (connecting first);
    /// results in the target's host order.
    pub fn query<T, F>(&mut self, f: F) -> Vec<(String, Result<T>)>
    where
        T: Send,
        F: Fn(&mut HostSession) -> Result<T> + Sync,
    {
        self.connect_all();
        let results = crate::parallel::map(self.slots.iter_mut().collect(), self.parallel, |slot| {
            match slot.error.take() {
                Some(e) => Err(e),
                None => slot.session().and_then(&f),
            }
        });
        for slot in &mut self.slots {
            if let Some(s) = slot.session.take() {
                let _ = s.close();
            }
        }
        self.slots.iter().map(|s| s.spec.label.clone()).zip(results).collect()
    }

    /// The per-host report.
    pub fn reports(&self) -> Vec<HostReport> {
        self.slots.iter().map(|s| s.report.clone()).collect()
    }

    fn connect_all(&mut self) {
        each(&mut self.slots, self.parallel, |slot| {
            if slot.session.is_some() || slot.error.is_some() {
                return;
            }
            match HostSession::open(&slot.spec) {
                Ok(s) => slot.session = Some(s),
                Err(e) => slot.fail(Phase::Connect, e),
            }
        });
    }

    /// Phase 1 of a deploy: push to every host in parallel.
    ///
    /// Two steps, each over every host at once: offer the release (each
    /// host answers what it lacks); then send the contents — one stream of
    /// the stored bundle to the hosts that lack nearly everything, and to
    /// each group of hosts lacking the same objects one stream of batches,
    /// read and compressed once and written to every host of the group —
    /// and wait for those hosts to stage the release.
    ///
    /// # Errors
    /// The first host's failure (every host's outcome is in the report).
    pub fn push(&mut self, job: &PushJob<'_>) -> Result<()> {
        self.connect_all();
        let out = &self.ctx.out;
        each(&mut self.slots, self.parallel, |slot| {
            if slot.error.is_some() {
                return;
            }
            slot.report.phase = Phase::Push;
            let clock = Instant::now();
            let bar: ProgressBar = out.bytes_bar(0, &slot.spec.label);
            let link_mode = slot.spec.link_mode;
            match slot.session().and_then(|s| s.offer(job, link_mode, &bar)) {
                Ok(Offered::Already(o)) => {
                    bar.finish_and_clear();
                    slot.pushed_now(&o, clock);
                }
                Ok(Offered::Need(needed)) => slot.pushing = Some((needed, bar, clock)),
                Err(e) => {
                    bar.finish_and_clear();
                    slot.fail(Phase::Push, e);
                }
            }
        });

        // Hosts lacking the same objects share one batch stream, hosts
        // lacking nearly everything one bundle stream (at most `parallel`
        // hosts per stream); hosts lacking nothing finish on their own.
        let mut streams: Vec<Vec<&mut Slot>> = Vec::new();
        let mut groups: BTreeMap<Option<Vec<u32>>, Vec<&mut Slot>> = BTreeMap::new();
        for slot in &mut self.slots {
            match &slot.pushing {
                Some((n, _, _)) if n.how == Contents::Batches => {
                    groups.entry(Some(n.indices.clone())).or_default().push(slot);
                }
                Some((n, _, _)) if n.how == Contents::Bundle => groups.entry(None).or_default().push(slot),
                Some(_) => streams.push(vec![slot]),
                None => {}
            }
        }
        for (_, mut group) in groups {
            while group.len() > self.parallel {
                let rest = group.split_off(self.parallel);
                streams.push(group);
                group = rest;
            }
            streams.push(group);
        }
        crate::parallel::map(streams, self.parallel, |stream| send_contents(job, stream));

        self.first_error(Step::Push)
    }

    /// Each host's push outcome and seconds (`None` where it did not succeed).
    pub fn push_results(&self) -> Vec<(String, Option<(PushOutcome, f64)>)> {
        self.slots.iter().map(|s| (s.spec.label.clone(), s.pushed)).collect()
    }

    /// End every session cleanly (waiting for each host's `serve` to exit).
    ///
    /// # Errors
    /// The first host whose `serve` exited unsuccessfully.
    pub fn close(&mut self) -> Result<()> {
        let mut first = None;
        for slot in &mut self.slots {
            if let Some(s) = slot.session.take()
                && let Err(e) = s.close()
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn first_error(&mut self, what: Step) -> Result<()> {
        let failed: Vec<&Slot> = self.slots.iter().filter(|s| s.error.is_some()).collect();
        let Some(first) = failed.first() else {
            return Ok(());
        };
        let exit = failed
            .iter()
            .filter_map(|s| s.error.as_ref())
            .map(Error::exit)
            .find(|e| *e == Exit::Locked || *e == Exit::Integrity || *e == Exit::ExpectMismatch)
            .unwrap_or(Exit::Error);
        let exit = if failed.len() == 1 {
            first.error.as_ref().map(Error::exit).unwrap_or(exit)
        } else {
            exit
        };
        // The reason quoted is that of a host whose error gives the exit
        // code (named first), so message and exit status agree.
        let first = failed
            .iter()
            .find(|s| s.error.as_ref().map(Error::exit) == Some(exit))
            .unwrap_or(first);
        let mut hosts: Vec<&str> = vec![first.spec.label.as_str()];
        hosts.extend(
            failed
                .iter()
                .map(|s| s.spec.label.as_str())
                .filter(|l| *l != first.spec.label),
        );
        let msg = if self.slots.len() == 1 {
            // A single host: its own error, which names it, is the clearest line.
            first
                .error
                .as_ref()
                .map(|e| one_line(&e.to_string()))
                .unwrap_or_default()
        } else {
            let detail = first.report.reason.clone().unwrap_or_default();
            // A push activates nothing, but the other hosts keep what they staged.
            let outcome = if what == Step::Push {
                "nothing was activated, and a re-run sends only what is missing"
            } else {
                "nothing changed"
            };
            format!(
                "{what} failed on {} of {} host(s) ({}): {detail}; {outcome}",
                failed.len(),
                self.slots.len(),
                hosts.join(", ")
            )
        };
        for s in self.slots.iter_mut().filter(|s| s.error.is_none()) {
            if !matches!(s.report.result, Outcome::Ok | Outcome::Unchanged | Outcome::Unreachable) {
                s.report.result = Outcome::NotStarted;
            }
        }
        Err(with_exit(exit, msg))
    }

    /// Switch `current` on every host: all or nothing.
    ///
    /// # Errors
    /// Exit 4 when a lock is held, 6 when `--expect` does not match, 3 when a
    /// health check failed and the hosts were switched back, 1 otherwise.
    pub fn switch(&mut self, goal: &Goal, opts: &SwitchOptions) -> Result<()> {
        let result = self.switch_inner(goal, opts);
        // Locks go with the sessions: close them all, whatever happened.
        for slot in &mut self.slots {
            if let Some(s) = slot.session.take() {
                let _ = s.close();
            }
        }
        result
    }

    fn switch_inner(&mut self, goal: &Goal, opts: &SwitchOptions) -> Result<()> {
        let verb = goal.verb();
        // What an earlier phase (the push) reported is not this phase's result.
        for s in self.slots.iter_mut().filter(|s| s.error.is_none()) {
            s.report.result = Outcome::NotStarted;
        }
        // 1. Reach every host.
        self.connect_all();
        if opts.skip_unreachable {
            for s in self.slots.iter_mut().filter(|s| s.error.is_some()) {
                s.report.result = Outcome::Unreachable;
                s.error = None;
                s.goal = None;
                self.ctx.out.warn(&format!(
                    "skipping {}: {}",
                    s.spec.label,
                    s.report.reason.clone().unwrap_or_default()
                ));
            }
            if self.slots.iter().all(|s| s.session.is_none()) {
                return Err(Error::other(format!(
                    "no host of `{}` could be reached; nothing changed",
                    self.target.name
                )));
            }
        }
        self.first_error(Step::Connect(verb))?;

        // 2. Lock every host.
        let me = LockInfo {
            actor: crate::config::actor(),
            command: opts.command.clone(),
            pid: 0,
            since: crate::provenance::now_rfc3339(),
        };
        each(&mut self.slots, self.parallel, |slot| {
            if slot.session.is_none() {
                return;
            }
            slot.report.phase = Phase::Lock;
            let r = slot.session().and_then(|s| {
                s.lock(&me, opts.wait)?;
                s.status()
            });
            match r {
                Ok(st) => {
                    slot.from = st.current.clone();
                    slot.report.previous = st.current.clone();
                    slot.report.current = st.current.clone();
                    slot.status = Some(st);
                }
                Err(e) => slot.fail(Phase::Lock, e),
            }
        });
        self.first_error(Step::Lock(verb))?;

        // 3. Decide each host's goal.
        self.plan(goal)?;
        self.first_error(Step::Plan(verb))?;

        // 4. before_activate in the staged release, everywhere, before anything switches.
        if matches!(goal, Goal::Activate { .. })
            && let Some(cmd) = self.hooks.before_activate.clone()
        {
            self.run_hook_everywhere(HookKind::BeforeActivate, &cmd, self.hooks.timeouts.hook);
            self.first_error(Step::BeforeActivate(verb))?;
        }

        // 5. Switch, batch by batch.
        let active: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].goal.is_some())
            .collect();
        let batch = opts.batch.unwrap_or(active.len()).max(1);
        let (expect, action_reason) = match goal {
            Goal::Activate { expect, reason, .. } => (expect.clone(), reason.clone()),
            Goal::Rollback { expect, reason, .. } => (expect.clone(), reason.clone()),
        };
        let mut failure: Option<(String, Exit)> = None;
        for (n, chunk) in active.chunks(batch).enumerate() {
            if opts.batch.is_some() {
                self.ctx
                    .out
                    .info(&format!("batch {}: {}", n + 1, self.labels(chunk).join(", ")));
            }
            let actor = crate::config::actor();
            let is_rollback = matches!(goal, Goal::Rollback { .. });
            let hooks = self.hooks.clone();
            let out = &self.ctx.out;
            for (i, slot) in self.slots.iter_mut().enumerate() {
                slot.in_batch = chunk.contains(&i);
            }
            each(&mut self.slots, self.parallel, |slot| {
                if !slot.in_batch {
                    return;
                }
                let Some(name) = slot.goal.clone() else { return };
                slot.report.phase = Phase::Activate;
                let res = slot.session().and_then(|s| {
                    if is_rollback {
                        s.rollback(RollbackRequest {
                            to: Some(name.clone()),
                            expect: expect.clone(),
                            actor: actor.clone(),
                            reason: action_reason.clone(),
                        })
                    } else {
                        s.activate(ActivateRequest {
                            release: name.clone(),
                            expect: expect.clone(),
                            actor: actor.clone(),
                            action: "activate".into(),
                            reason: action_reason.clone(),
                            mark_left_bad: false,
                        })
                    }
                });
                match res {
                    Ok(record) => {
                        slot.switched = true;
                        slot.report.current = Some(record.to.clone());
                        out.info(&format!(
                            "{}: {} -> {}",
                            slot.spec.label,
                            record.from.as_deref().unwrap_or("(none)"),
                            record.to
                        ));
                    }
                    Err(e) => return slot.fail(Phase::Activate, e),
                }
                if let Some(cmd) = &hooks.after_activate {
                    slot.report.phase = Phase::AfterActivate;
                    if !run_hook(
                        slot,
                        HookKind::AfterActivate,
                        cmd,
                        &name,
                        hooks.timeouts.hook,
                        Duration::ZERO,
                        out,
                    ) {
                        return;
                    }
                }
                if let Some(cmd) = &hooks.health {
                    slot.report.phase = Phase::Health;
                    let timeout = hooks.timeouts.health_attempt();
                    if !run_hook(slot, HookKind::Health, cmd, &name, timeout, hooks.timeouts.health, out) {
                        return;
                    }
                    // The record promotion gates read (`require_healthy_on`).
                    if let Err(e) = slot.session().and_then(|s| s.mark_healthy(&name, &actor)) {
                        out.warn(&format!(
                            "{}: could not record the health check: {}",
                            slot.spec.label,
                            e.without_host()
                        ));
                    }
                }
                slot.report.phase = Phase::Done;
                slot.report.result = Outcome::Ok;
            });
            if let Some(bad) = self.slots.iter().find(|s| s.error.is_some()) {
                let lost = bad.error.as_ref().is_some_and(Error::is_connection);
                let exit = match bad.report.phase {
                    Phase::Health if !lost => Exit::HealthRolledBack,
                    _ => bad.error.as_ref().map(Error::exit).unwrap_or(Exit::Error),
                };
                failure = Some((bad.spec.label.clone(), exit));
                break;
            }
        }

        // 6. All or nothing.
        if let Some((host, exit)) = failure {
            let reverted = self.revert(goal, opts);
            let phase = self
                .slots
                .iter()
                .find(|s| s.spec.label == host)
                .map(|s| s.report.phase)
                .unwrap_or_default();
            let reason = self
                .slots
                .iter()
                .find(|s| s.spec.label == host)
                .and_then(|s| s.report.reason.clone())
                .unwrap_or_default();
            let msg = format!("{verb} failed on {host} ({phase}): {reason}; {reverted}",);
            // Exit 3 promises that every switched host is back: a host left
            // on the new release makes it a plain failure.
            let all_back = self.slots.iter().all(|s| !s.switched);
            let exit = if all_back
                && (exit == Exit::HealthRolledBack || exit == Exit::Locked || exit == Exit::ExpectMismatch)
            {
                exit
            } else {
                Exit::Error
            };
            return Err(with_exit(exit, msg));
        }
        for s in self
            .slots
            .iter_mut()
            .filter(|s| s.goal.is_none() && s.report.result == Outcome::NotStarted)
        {
            s.report.result = Outcome::Unchanged;
            s.report.phase = Phase::Done;
        }

        // 7. Prune after a fully successful deploy.
        if let Some(keep) = opts.prune_keep {
            let pinned = self.target.config.pinned.clone();
            let out = &self.ctx.out;
            each(&mut self.slots, self.parallel, |slot| {
                let Ok(s) = slot.session() else { return };
                match s.prune(keep, &pinned, false) {
                    Ok(r) if !r.releases.is_empty() => {
                        out.info(&format!("{}: pruned {}", slot.spec.label, r.releases.join(", ")));
                    }
                    Ok(_) => {}
                    Err(e) => out.warn(&format!("{}: prune failed: {}", slot.spec.label, e.without_host())),
                }
            });
        }
        Ok(())
    }

    fn labels(&self, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|i| self.slots[*i].spec.label.clone()).collect()
    }

    /// Decide per host what to switch to; hosts already there do nothing.
    fn plan(&mut self, goal: &Goal) -> Result<()> {
        match goal {
            Goal::Activate { release, again, .. } => {
                for slot in self.slots.iter_mut().filter(|s| s.session.is_some()) {
                    let Some(st) = &slot.status else { continue };
                    let found = st.releases.iter().find(|r| {
                        &r.name == release || (crate::digest::looks_like_id(release) && r.id.matches_prefix(release))
                    });
                    match found {
                        Some(r) if !r.complete => slot.fail(
                            Phase::Activate,
                            Error::other(format!("release `{}` is still being staged here; push it again", r.name))
                                .on_host(&slot.spec.label),
                        ),
                        Some(r) if !again && st.current.as_deref() == Some(r.name.as_str()) => {
                            slot.report.result = Outcome::Unchanged;
                            slot.report.phase = Phase::Done;
                        }
                        Some(r) => slot.goal = Some(r.name.clone()),
                        None => slot.fail(
                            Phase::Activate,
                            Error::other(format!(
                                "release `{release}` is not on this host; push it first with `slipway push {release} -t {}`",
                                self.target.name
                            ))
                            .on_host(&slot.spec.label),
                        ),
                    }
                }
            }
            Goal::Rollback { to, .. } => {
                for slot in self.slots.iter_mut().filter(|s| s.session.is_some()) {
                    let Some(st) = &slot.status else { continue };
                    let name = match to {
                        Some(rel) => st
                            .releases
                            .iter()
                            .find(|r| &r.name == rel || (crate::digest::looks_like_id(rel) && r.id.matches_prefix(rel)))
                            .map(|r| r.name.clone()),
                        None => st.previous.clone(),
                    };
                    match name {
                        Some(n) => slot.goal = Some(n),
                        None => {
                            let why = match to {
                                Some(rel) => format!(
                                    "release `{rel}` is not on this host; `slipway status -t {}` lists the releases there",
                                    self.target.name
                                ),
                                None => format!(
                                    "nothing to roll back to: no earlier good release in its history (current: {}); name one with `--to REL`",
                                    st.current.as_deref().unwrap_or("none")
                                ),
                            };
                            slot.fail(Phase::Rollback, Error::other(why).on_host(&slot.spec.label));
                        }
                    }
                }
                if to.is_none() {
                    let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for s in self.slots.iter().filter(|s| s.goal.is_some()) {
                        let cur = s.from.clone().unwrap_or_else(|| "none".into());
                        targets
                            .entry(s.goal.clone().unwrap_or_default())
                            .or_default()
                            .push(format!("{} (on {cur})", s.spec.label));
                    }
                    if targets.len() > 1 {
                        let detail: Vec<String> = targets
                            .iter()
                            .map(|(t, hosts)| format!("{} -> {t}", hosts.join(", ")))
                            .collect();
                        return Err(Error::other(format!(
                            "the hosts of `{}` disagree about what to roll back to: {}; choose one with `--to REL`",
                            self.target.name,
                            detail.join("; ")
                        )));
                    }
                }
            }
        }
        self.check_expect(goal);
        Ok(())
    }

    /// `--expect` against each host's state, read under its lock: a host on
    /// another release stops the switch before any host is touched (exit 6),
    /// so no host switches, runs hooks and is switched back (its new release
    /// marked bad) over a mismatch known in advance. Hosts with nothing to
    /// do are not checked; the host checks again when it switches.
    fn check_expect(&mut self, goal: &Goal) {
        let phase = goal.verb().phase();
        let (Goal::Activate { expect, .. } | Goal::Rollback { expect, .. }) = goal;
        let Some(expect) = expect else { return };
        for slot in self.slots.iter_mut().filter(|s| s.goal.is_some() && s.error.is_none()) {
            let Some(st) = &slot.status else { continue };
            let wanted = st
                .releases
                .iter()
                .find(|r| &r.name == expect || (crate::digest::looks_like_id(expect) && r.id.matches_prefix(expect)))
                .map_or(expect.as_str(), |r| r.name.as_str());
            if st.current.as_deref() != Some(wanted) {
                let msg = format!(
                    "the host is on `{}`, not `{expect}` (--expect)",
                    st.current.as_deref().unwrap_or("no release")
                );
                slot.fail(phase, Error::ExpectMismatch(msg).on_host(&slot.spec.label));
            }
        }
    }

    fn run_hook_everywhere(&mut self, kind: HookKind, cmd: &str, timeout: Duration) {
        let out = &self.ctx.out;
        each(&mut self.slots, self.parallel, |slot| {
            let Some(name) = slot.goal.clone() else { return };
            if slot.error.is_some() {
                return;
            }
            slot.report.phase = kind.phase();
            run_hook(slot, kind, cmd, &name, timeout, Duration::ZERO, out);
        });
    }

    /// Switch every switched host back; returns a sentence for the error.
    fn revert(&mut self, goal: &Goal, opts: &SwitchOptions) -> String {
        let actor = crate::config::actor();
        let me = LockInfo {
            actor: actor.clone(),
            command: opts.command.clone(),
            pid: 0,
            since: crate::provenance::now_rfc3339(),
        };
        let target = self.target.name.clone();
        let hooks = self.hooks.clone();
        let out = &self.ctx.out;
        // The release switched to is marked bad where it is left. A
        // rollback's target only when it failed itself (a hook or the
        // health check), not when a connection or a lock did: re-running
        // a plain rollback after a network failure must aim at the same
        // release, not one further back.
        let release_failed = self.slots.iter().any(|s| s.error.is_some() && s.report.phase.is_hook());
        let mark_left_bad = !matches!(goal, Goal::Rollback { .. }) || release_failed;
        each(&mut self.slots, self.parallel, |slot| {
            if slot.goal.is_some() && !slot.switched && slot.error.is_none() {
                slot.report.result = Outcome::NotStarted;
            }
            // The connection broke during the switch, or after it: whether
            // the host switched is unknown, and the session is gone. Look again.
            if slot.broken && (slot.switched || slot.report.phase == Phase::Activate) {
                recheck(slot, &me);
            }
            if !slot.switched {
                return;
            }
            let new = slot.goal.clone().unwrap_or_default();
            let Some(back) = slot.from.clone() else {
                // Nothing to return to: the host had no release before.
                let r = slot
                    .session()
                    .and_then(|s| s.mark_bad(&new, "failed during a fleet switch"));
                slot.report.result = Outcome::Failed;
                slot.report.reason = Some(match r {
                    Ok(()) => format!("stayed on `{new}` (marked bad): there was no release to switch back to"),
                    Err(e) => format!("stayed on `{new}`: {}", e.without_host()),
                });
                return;
            };
            let was_failed = slot.error.is_some();
            let req = ActivateRequest {
                release: back.clone(),
                expect: Some(new.clone()),
                actor: actor.clone(),
                action: "revert".into(),
                reason: Some("another host failed; switching back".into()),
                mark_left_bad,
            };
            let mut res = slot.session().and_then(|s| s.activate(req.clone()));
            if res.as_ref().is_err_and(Error::is_connection) {
                out.info(&format!(
                    "{}: connection lost; reconnecting to switch back to {back}",
                    slot.spec.label
                ));
                res = reopen(slot, &me).and_then(|s| s.activate(req));
            }
            match res {
                Ok(_) => {
                    slot.switched = false;
                    slot.report.current = Some(back.clone());
                    if !was_failed {
                        slot.report.phase = Phase::Revert;
                        slot.report.result = Outcome::Reverted;
                        slot.report.reason = Some(format!("switched back to `{back}` because another host failed"));
                    } else {
                        slot.report.result = Outcome::Reverted;
                    }
                    out.info(&format!("{}: switched back to {back}", slot.spec.label));
                    if let Some(cmd) = &hooks.after_activate
                        && let Some(w) = after_revert_hook(slot, cmd, &back, &new, hooks.timeouts.hook, out)
                    {
                        out.warn(&w);
                    }
                }
                Err(e) => {
                    slot.report.result = Outcome::Failed;
                    let e = e.to_string();
                    let e = e.strip_prefix(&format!("{}: ", slot.spec.label)).unwrap_or(&e);
                    let earlier = match (&slot.report.reason, was_failed) {
                        (Some(r), true) => format!("{r}; then "),
                        _ => String::new(),
                    };
                    slot.report.reason = Some(format!(
                        "{earlier}could not switch back to `{back}`: {}; fix by hand with `slipway activate {back} -t {target} --hosts {}`",
                        one_line(e),
                        slot.spec.label
                    ));
                }
            }
        });
        let labels = |f: fn(&Slot) -> bool| -> Vec<&str> {
            self.slots
                .iter()
                .filter(|s| f(s))
                .map(|s| s.spec.label.as_str())
                .collect()
        };
        let stuck = labels(|s| s.switched);
        let unknown = labels(|s| s.unknown);
        let mut parts = Vec::new();
        if !stuck.is_empty() {
            parts.push(format!("these hosts could not be switched back: {}", stuck.join(", ")));
        }
        if !unknown.is_empty() {
            parts.push(format!(
                "these hosts were lost during the switch and could not be checked: {} (check them with `slipway status -t {target}`)",
                unknown.join(", ")
            ));
        }
        if parts.is_empty() {
            "every host that was switched is back on its previous release".into()
        } else {
            parts.join("; ")
        }
    }
}

/// A host whose connection broke during (or after) its switch: connect
/// again, take its lock (waiting for the broken session's `serve` to let
/// go), and find out whether it is on the new release. If it is, it counts
/// as switched, so that the revert switches it back; if it cannot be
/// reached, its state is unknown and the report says so.
fn recheck(slot: &mut Slot, me: &LockInfo) {
    let goal = slot.goal.clone().unwrap_or_default();
    let wait = slot.spec.connect_timeout;
    let again = HostSession::open(&slot.spec).and_then(|mut s| {
        s.lock(me, Some(wait))?;
        let st = s.status()?;
        Ok((s, st))
    });
    match again {
        Ok((session, st)) => {
            if let Some(old) = slot.session.replace(session) {
                drop(old);
            }
            slot.broken = false;
            slot.switched = st.current.as_deref() == Some(goal.as_str());
            slot.report.current = st.current;
        }
        Err(e) => {
            slot.switched = false;
            slot.unknown = true;
            slot.report.result = Outcome::Failed;
            let before = slot.report.reason.clone().unwrap_or_default();
            slot.report.reason = Some(format!(
                "{before}; could not reconnect to check whether it switched to `{goal}`: {}",
                one_line(&e.without_host().to_string())
            ));
        }
    }
}

/// How long a reconnected revert waits for the host's lock: the broken
/// session's `serve` may still hold it until it notices the closed connection.
const REVERT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Drop a slot's broken session and open a new one holding the host lock.
fn reopen<'s>(slot: &'s mut Slot, me: &LockInfo) -> Result<&'s mut HostSession> {
    drop(slot.session.take());
    let mut s = HostSession::open(&slot.spec)?;
    s.lock(me, Some(REVERT_LOCK_WAIT))?;
    Ok(slot.session.insert(s))
}

/// Run `after_activate` on a host that was just switched back from `left`
/// to `back`, with the environment of that switch (`SLIPWAY_PREVIOUS` is the
/// release it left); returns a warning when the hook fails.
fn after_revert_hook(
    slot: &mut Slot,
    cmd: &str,
    back: &str,
    left: &str,
    timeout: Duration,
    out: &crate::output::Output,
) -> Option<String> {
    let label = slot.spec.label.clone();
    let mut req = hook_request(
        &label,
        HookKind::AfterActivate,
        cmd,
        back,
        Some(left),
        timeout,
        Duration::ZERO,
    );
    if let Some(id) = release_id(slot, back) {
        req.env.insert("SLIPWAY_ID".into(), id);
    }
    match slot.session().and_then(|s| s.hook(req)) {
        Ok(r) => {
            show_output(out, &label, &r.output);
            (!r.ok).then(|| format!("{label}: after_activate failed after switching back to {back}"))
        }
        Err(e) => Some(format!("{label}: after_activate: {}", e.without_host())),
    }
}

/// The bundle id of `release` on a slot's host, from the status read under the lock.
fn release_id(slot: &Slot, release: &str) -> Option<String> {
    slot.status
        .as_ref()
        .and_then(|st| st.releases.iter().find(|r| r.name == release).map(|r| r.id.to_string()))
}

fn hook_request(
    label: &str,
    kind: HookKind,
    cmd: &str,
    release: &str,
    previous: Option<&str>,
    timeout: Duration,
    retry: Duration,
) -> HookRequest {
    let mut env = BTreeMap::new();
    env.insert("SLIPWAY_HOST".to_string(), label.to_string());
    env.insert("SLIPWAY_PREVIOUS".to_string(), previous.unwrap_or_default().to_string());
    HookRequest {
        kind: kind.as_str().into(),
        release: release.into(),
        command: cmd.into(),
        env,
        timeout_ms: timeout.as_millis() as u64,
        retry_for_ms: retry.as_millis() as u64,
    }
}

fn show_output(out: &crate::output::Output, label: &str, output: &str) {
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        out.info(&format!("[{label}] {line}"));
    }
}

/// Run one hook on a slot; on failure record it and return false.
fn run_hook(
    slot: &mut Slot,
    kind: HookKind,
    cmd: &str,
    release: &str,
    timeout: Duration,
    retry: Duration,
    out: &crate::output::Output,
) -> bool {
    let label = slot.spec.label.clone();
    let previous = slot.from.clone();
    let id_env = release_id(slot, release);
    let mut req = hook_request(&label, kind, cmd, release, previous.as_deref(), timeout, retry);
    if let Some(id) = id_env {
        req.env.insert("SLIPWAY_ID".into(), id);
    }
    let started = Instant::now();
    match slot.session().and_then(|s| s.hook(req)) {
        Ok(r) => {
            show_output(out, &label, &r.output);
            if r.ok {
                return true;
            }
            let why = if r.timed_out {
                format!(
                    "{kind} hook `{cmd}` was killed after {:.0} s",
                    started.elapsed().as_secs_f64()
                )
            } else {
                match r.exit_code {
                    Some(c) => format!(
                        "{kind} hook `{cmd}` failed with exit status {c} after {} attempt(s)",
                        r.attempts
                    ),
                    None => format!("{kind} hook `{cmd}` was killed by a signal"),
                }
            };
            let tail: String = r
                .output
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            slot.report.output = Some(tail);
            slot.fail(kind.phase(), Error::other(why));
            false
        }
        Err(e) => {
            slot.fail(kind.phase(), e);
            false
        }
    }
}

fn with_exit(exit: Exit, msg: String) -> Error {
    match exit {
        Exit::Locked => Error::Locked(msg),
        Exit::Integrity => Error::Integrity(msg),
        Exit::ExpectMismatch => Error::ExpectMismatch(msg),
        Exit::HealthRolledBack => Error::HealthRolledBack(msg),
        Exit::Usage => Error::Usage(msg),
        Exit::Success | Exit::Error => Error::Other(msg),
    }
}

/// Send the contents one stream of a push carries (see [`Fleet::push`]) —
/// one bundle or batch stream to a group of hosts, or nothing — then end the push on its hosts: `done` to all of them, then
/// each one's `staged` (the hosts stage at the same time).
fn send_contents(job: &PushJob<'_>, mut stream: Vec<&mut Slot>) {
    let Some((how, indices)) = stream
        .first()
        .and_then(|s| s.pushing.as_ref())
        .map(|(n, _, _)| (n.how, n.indices.clone()))
    else {
        return;
    };
    match how {
        Contents::Nothing => {}
        Contents::Bundle | Contents::Batches => {
            let mut group = Vec::new();
            let mut members = Vec::new();
            for (i, slot) in stream.iter_mut().enumerate() {
                let bar = slot.pushing.as_ref().map(|(_, bar, _)| bar.clone());
                if let (Some(session), Some(bar)) = (slot.session.as_mut(), bar) {
                    group.push((session, bar));
                    members.push(i);
                }
            }
            let results = if how == Contents::Bundle {
                send_bundle_to_all(job, &mut group)
            } else {
                send_batches(job, &indices, &mut group)
            };
            drop(group);
            for (i, result) in members.into_iter().zip(results) {
                if let Err(e) = result {
                    stream[i].fail(Phase::Push, e);
                }
            }
        }
    }
    for slot in &mut stream {
        if slot.error.is_none()
            && let Err(e) = slot.session().and_then(|s| s.send_done(job))
        {
            slot.fail(Phase::Push, e);
        }
    }
    for slot in stream {
        let Some((needed, bar, clock)) = slot.pushing.take() else {
            continue;
        };
        bar.finish_and_clear();
        if slot.error.is_some() {
            continue;
        }
        match slot.session().and_then(|s| s.await_staged(job, &needed)) {
            Ok(o) => slot.pushed_now(&o, clock),
            Err(e) => slot.fail(Phase::Push, e),
        }
    }
}

fn record_push(report: &mut HostReport, o: &PushOutcome) {
    report.bytes_sent = Some(o.bytes_sent);
    report.objects_reused = Some(o.objects_reused);
    report.result = Outcome::Ok;
}

/// A one-line summary of a push.
pub fn describe_push(name: &str, o: &PushOutcome) -> String {
    if o.already {
        return format!("{name} already staged");
    }
    format!(
        "staged {name}: {} files, {} needed, {} sent",
        o.files,
        crate::output::human_bytes(o.bytes_needed),
        crate::output::human_bytes(o.bytes_sent)
    )
}

/// Print a fleet report: a table on stdout, or JSON with `--json`.
pub fn print_reports(ctx: &Context, reports: &[HostReport]) {
    if ctx.out.json {
        ctx.out.json_value(&reports);
        return;
    }
    let w = reports.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
    ctx.out.data(&format!(
        "{:<w$}  {:<15}  {:<11}  {:<12}  DETAIL",
        "HOST", "PHASE", "RESULT", "CURRENT"
    ));
    for r in reports {
        ctx.out.data(&format!(
            "{:<w$}  {:<15}  {:<11}  {:<12}  {}",
            r.host,
            r.phase,
            r.result,
            r.current.as_deref().unwrap_or("-"),
            r.reason.as_deref().unwrap_or("")
        ));
        if let Some(o) = &r.output {
            for line in o.lines() {
                ctx.out.data(&format!("{:<w$}    | {line}", ""));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, Phase};

    #[test]
    fn phases_and_outcomes_serialize_as_their_report_names() {
        use Phase::*;
        for p in [
            Connect,
            Push,
            Lock,
            BeforeActivate,
            Activate,
            Rollback,
            AfterActivate,
            Health,
            Revert,
            Done,
        ] {
            assert_eq!(serde_json::to_value(p).ok(), Some(p.as_str().into()));
        }
        use Outcome::*;
        for o in [Ok, Unchanged, Failed, Reverted, NotStarted, Unreachable] {
            assert_eq!(serde_json::to_value(o).ok(), Some(o.as_str().into()));
        }
        assert_eq!(format!("[{:<8}]", Phase::Lock), "[lock    ]");
    }
}
