//! `--plan`: what a command that changes hosts would do on each of them,
//! found by the same stages the command runs (`connect`, the push's offer,
//! `plan`, `db`), each asked read-only, and what that plan's id is.
//!
//! Invariant: nothing changes on any host. No lock is taken (a held one is
//! read from the host's status and reported, as the command would stop on
//! it), no push is offered (the host answers `plan_push` from what it has),
//! no hook runs but the read-only `schema` and `db_schema`. The plan fails
//! with the error the command would fail with — the same exit code, from
//! the same checks in the same order — and its id is a hash of what it
//! shows, so `--expect-plan` can tell whether anything moved since.

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::protocol::{ErrorKind, HostStatus, LockInfo, PruneReport, PushPlan, ReleaseStatus, SlotStatus};
use crate::remote::push::PushJob;
use crate::remote::session::HostSession;

use super::connect::Fleet;
use super::db::DbPlan;
use super::hooks::{Hook, HookKind};
use super::member::Member;
use super::plan::Goal;
use super::report::{Phase, Step};
use super::service::ServiceAction;
use super::switch::SwitchOptions;

/// What a plan is of: the push a command makes, the switch it makes, or both.
pub struct Forecast<'j> {
    /// `push` and `deploy`: the release offered to every host.
    pub job: Option<&'j PushJob<'j>>,
    /// `deploy`, `activate`, `rollback`: the switch.
    pub goal: Option<Goal>,
    pub opts: SwitchOptions,
    /// `deploy` prunes after a switch that stood.
    pub prune: bool,
    /// `prune`: its `keep` and pinned releases (nothing else is planned).
    pub prune_only: Option<(usize, Vec<String>)>,
    /// `service start|stop|restart` (nothing else is planned).
    pub service: Option<ServiceAction>,
}

/// One step a command would take on a host, in the order it takes them
/// (`docs/operations.md`, "Before you deploy: diff and plan").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStep {
    /// Send what the host lacks and stage the release.
    Push,
    BeforeActivate,
    /// Start the release in the idle service slot and check it there.
    Start,
    Backup,
    Pause,
    Migrate,
    MigrateDown,
    /// Switch `current` (and a service's traffic with it).
    Switch,
    AfterActivate,
    Health,
    Resume,
    /// Drain and stop the old service instance (unless the host keeps it warm).
    Settle,
    /// (`service stop|restart`) stop a slot's instance.
    Stop,
    /// Remove releases beyond `keep`.
    Prune,
}

impl PlanStep {
    fn as_str(self) -> &'static str {
        match self {
            PlanStep::Push => "push",
            PlanStep::BeforeActivate => "before_activate",
            PlanStep::Start => "start",
            PlanStep::Backup => "backup",
            PlanStep::Pause => "pause",
            PlanStep::Migrate => "migrate",
            PlanStep::MigrateDown => "migrate_down",
            PlanStep::Switch => "switch",
            PlanStep::AfterActivate => "after_activate",
            PlanStep::Health => "health",
            PlanStep::Resume => "resume",
            PlanStep::Settle => "settle",
            PlanStep::Stop => "stop",
            PlanStep::Prune => "prune",
        }
    }
}

/// What the host's `allowed_signers` says of the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signers {
    /// The host has no `allowed_signers`: nothing is checked.
    NotEnforced,
    Accepted,
    Refused,
}

/// One host's plan (`--plan --json`: one object of `hosts`).
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    /// The host answered (false: it could not be reached, and is left out
    /// with `--skip-unreachable`, or fails the command).
    pub reached: bool,
    /// The release current there now.
    pub current: Option<String>,
    /// The release current there after the command (`null`: it would not
    /// get that far).
    pub next: Option<String>,
    /// Objects and bytes a push would send (`null` for a command that
    /// pushes nothing, or a host that cannot say).
    pub lacks_objects: Option<u64>,
    pub lacks_bytes: Option<u64>,
    pub signers: Option<Signers>,
    /// Who signed the release, as the host's `allowed_signers` names them.
    pub signed_by: Option<String>,
    /// (`prune`) what it would remove here.
    pub prunes: Option<PruneReport>,
    /// The steps that would run here, in order.
    pub steps: Vec<PlanStep>,
    /// The exit code the command would fail with because of this host (0: none).
    pub exit: u8,
    /// Why the command would stop here.
    pub refused: Option<String>,
    /// (`service start|stop|restart`) the slots now and what would be done
    /// to them; absent from the plans of other commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServicePlan>,
}

/// A host's service slots in a `service start|stop|restart` plan.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    /// The slot with the traffic now (it keeps it: these commands move no traffic).
    pub live: Option<String>,
    /// Each slot now, as `service status --json` shows it, without a check.
    pub slots: Vec<SlotStatus>,
    /// What the command would do, in order (`steps` of the host, with the slot each acts on).
    pub steps: Vec<SlotStep>,
}

/// One step of a service plan.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStep {
    /// `stop` or `start` (a start is checked: it passes its check or the command exits 3).
    pub step: PlanStep,
    pub slot: String,
    /// The release whose instance it stops or starts.
    pub release: Option<String>,
}

/// What the command does to the database (targets with database hooks).
#[derive(Debug, Clone, Serialize)]
pub struct DbForecast {
    /// The host that runs `backup` and the migration (`migrate_on`).
    pub on: String,
    /// `migrate`, `migrate_down`, or null (nothing runs).
    pub runs: Option<PlanStep>,
    /// The schema the release expects, and the one the database is at
    /// (null when unknown: no such hook, or the release is not on that
    /// host yet).
    pub schema: Option<String>,
    pub db_schema: Option<String>,
    /// False when the release is not staged on the `migrate_on` host yet:
    /// the schemas are read after the push, and the plan assumes `migrate`.
    pub known: bool,
}

impl Member {
    /// Fail the host in `phase` for the plan, unless it failed already.
    pub(super) fn refuse(&mut self, phase: Phase, e: Error) {
        if self.error.is_none() {
            self.fail(phase, e);
        }
    }
}

/// A host whose slipway does not know `plan_push` cannot be planned: say how to fix it.
fn too_old(e: Error) -> Error {
    if !matches!(e.without_host(), Error::UnknownRequest(_)) {
        return e;
    }
    let msg = format!(
        "{e}; this host's slipway is too old to say what a command would do (`plan_push`): upgrade it with `slipway host install -t TARGET`"
    );
    e.reworded(msg)
}

/// The refusal of a host whose lock `holder` holds, as a plan shows it:
/// without "how long ago", so that the plan's id does not change with the clock.
fn locked_by(holder: &LockInfo) -> Error {
    Error::Locked(format!(
        "the host is locked by {}, running `{}` since {}; retry when it is done, or pass `--wait SECS`",
        holder.actor, holder.command, holder.since
    ))
}

/// An empty state: a root that does not exist yet (a push creates it).
fn no_root() -> HostStatus {
    HostStatus {
        current: None,
        current_id: None,
        previous: None,
        releases: Vec::new(),
        lock: None,
        warnings: Vec::new(),
        service: None,
        migration: None,
        paused_since: None,
    }
}

/// The release `name` (bundle `id`) as a host would list it once staged.
fn staged_release(name: &str, id: Digest) -> ReleaseStatus {
    ReleaseStatus {
        name: name.to_string(),
        id,
        size: 0,
        files: 0,
        pushed_at: None,
        pushed_by: None,
        bad: false,
        bad_reason: None,
        complete: true,
        last_activated: None,
        signed_by: None,
        provenance: None,
    }
}

/// What `allowed_signers` says, from a host's answer (`None`: the host
/// refused the release for another reason before it looked).
fn signers_of(p: &PushPlan) -> Option<Signers> {
    match (p.enforces_signatures, &p.refused, &p.signed_by) {
        (false, _, _) => Some(Signers::NotEnforced),
        (true, None, Some(_)) => Some(Signers::Accepted),
        (true, Some(r), _) if r.kind != ErrorKind::Integrity => None,
        (true, _, _) => Some(Signers::Refused),
    }
}

impl Fleet<'_> {
    /// What `what` would do on every host, asked read-only, and the error
    /// the command would end with (the first stage that fails, as the
    /// command runs them).
    pub fn forecast(&mut self, what: &Forecast<'_>) -> (Vec<HostPlan>, Option<DbForecast>, Result<()>) {
        if let Some(action) = &what.service {
            let (plans, result) = self.forecast_service(action);
            self.drop_sessions();
            return (plans, None, result);
        }
        let mut pushes: Vec<Option<PushPlan>> = Vec::new();
        let mut db = None;
        let mut prunes = Vec::new();
        let result = match &what.prune_only {
            Some((keep, pinned)) => self.forecast_prune(*keep, pinned, what.opts.wait.is_some(), &mut prunes),
            None => self.forecast_stages(what, &mut pushes, &mut db),
        };
        let mut plans = self.host_plans(what, &pushes, db.as_ref());
        // A switch refused anywhere switches nothing: only the push (which
        // goes on where it can) still happens.
        if result.is_err() && what.prune_only.is_none() {
            for p in &mut plans {
                p.steps.retain(|s| *s == PlanStep::Push);
                if p.exit == 0 {
                    p.next.clone_from(&p.current);
                }
            }
        }
        for (plan, report) in plans.iter_mut().zip(prunes) {
            if plan.exit == 0 && report.is_some() {
                plan.steps = vec![PlanStep::Prune];
            }
            plan.prunes = report;
        }
        self.drop_sessions();
        (plans, db, result)
    }

    fn forecast_stages(
        &mut self,
        what: &Forecast<'_>,
        pushes: &mut Vec<Option<PushPlan>>,
        db: &mut Option<DbForecast>,
    ) -> Result<()> {
        self.reach_all(what.opts.skip_unreachable)?;
        self.read_states();
        // The push: what each host lacks, or why it would refuse the release.
        if let Some(job) = what.job {
            *pushes = crate::parallel::map(self.members.iter_mut().collect(), self.parallel, |m| {
                if m.error.is_some() || m.session.is_none() {
                    return None;
                }
                let link_mode = m.spec.link_mode;
                match m.session().and_then(|s| s.plan_push(job, link_mode)) {
                    Ok(p) => {
                        if let Some(r) = &p.refused {
                            let e = r.kind.error(r.message.clone()).on_host(&m.spec.label);
                            m.refuse(Phase::Push, e);
                        }
                        Some(p)
                    }
                    Err(e) => {
                        m.refuse(Phase::Push, too_old(e));
                        None
                    }
                }
            });
            self.first_error(Step::Push)?;
        }
        let Some(goal) = &what.goal else { return Ok(()) };
        let verb = goal.verb();
        // A lock someone holds stops the switch (unless it is waited for).
        if what.opts.wait.is_none() {
            for m in self.members.iter_mut().filter(|m| m.error.is_none()) {
                let Some(holder) = m.status.as_ref().and_then(|st| st.lock.clone()) else {
                    continue;
                };
                let e = locked_by(&holder).on_host(&m.spec.label);
                m.refuse(Phase::Lock, e);
            }
        }
        self.first_error(Step::Lock(verb))?;
        // The release the push stages is on every host that takes it.
        if let Some(job) = what.job {
            for (m, p) in self.members.iter_mut().zip(pushes.iter()) {
                if let (Some(st), Some(p)) = (m.status.as_mut(), p)
                    && !p.already
                    && p.refused.is_none()
                {
                    st.releases.retain(|r| r.name != job.name);
                    st.releases.push(staged_release(job.name, job.id));
                }
            }
        }
        self.plan(goal)?;
        self.first_error(Step::Plan(verb))?;
        // Signatures, as the host checks them when it switches (a push
        // checked them already).
        if what.job.is_none() {
            let ids: Vec<Option<(String, Digest)>> = self
                .members
                .iter()
                .map(|m| {
                    let to = m.plan.as_ref()?.to.clone();
                    let id = m.status.as_ref()?.releases.iter().find(|r| r.name == to)?.id;
                    Some((to, id))
                })
                .collect();
            *pushes = crate::parallel::map(self.members.iter_mut().zip(ids).collect(), self.parallel, |(m, id)| {
                let (to, id) = id?;
                if m.error.is_some() {
                    return None;
                }
                match m.session().and_then(|s| s.plan_staged(&to, id)) {
                    Ok(p) => {
                        if let Some(r) = &p.refused {
                            let e = r.kind.error(r.message.clone()).on_host(&m.spec.label);
                            m.refuse(verb.phase(), e);
                        }
                        Some(p)
                    }
                    Err(e) => {
                        m.refuse(verb.phase(), too_old(e));
                        None
                    }
                }
            });
            self.first_error(Step::Plan(verb))?;
        }
        // The database: read the schemas where the release already is.
        *db = self.forecast_db(goal, &what.opts)?;
        Ok(())
    }

    /// `prune`: what each host would remove; as the command, a lock someone
    /// holds stops it there (exit 4) unless waited for, and the first
    /// failed host in the target's order gives the error.
    fn forecast_prune(
        &mut self,
        keep: usize,
        pinned: &[String],
        wait: bool,
        prunes: &mut Vec<Option<PruneReport>>,
    ) -> Result<()> {
        self.connect_all();
        self.read_states();
        *prunes = crate::parallel::map(self.members.iter_mut().collect(), self.parallel, |m| {
            if m.error.is_some() {
                return None;
            }
            if !wait && let Some(holder) = m.status.as_ref().and_then(|st| st.lock.clone()) {
                m.refuse(Phase::Lock, locked_by(&holder).on_host(&m.spec.label));
                return None;
            }
            match m.session().and_then(|s| s.plan_prune(keep, pinned)) {
                Ok(r) => Some(r),
                Err(e) => {
                    m.refuse(Phase::Done, too_old(e));
                    None
                }
            }
        });
        // The command's error: the first failed host's, in the target's order.
        match self.members.iter().find_map(|m| m.error.as_ref()) {
            Some(e) => Err(Error::with_exit(e.exit(), e.to_string())),
            None => Ok(()),
        }
    }

    /// Each reached host's state, read without its lock; a root that does
    /// not exist yet has nothing (a push would create it).
    pub(super) fn read_states(&mut self) {
        super::connect::each(&mut self.members, self.parallel, |m| {
            if m.error.is_some() || m.session.is_none() {
                return;
            }
            match m.session().and_then(|s| s.status()) {
                Ok(st) => {
                    m.report.current.clone_from(&st.current);
                    m.status = Some(st);
                }
                // The host ended that session: a new one for the next requests.
                Err(e) if e.is_root_missing() => match HostSession::open(&m.spec) {
                    Ok(s) => {
                        m.session = Some(s);
                        m.status = Some(no_root());
                    }
                    Err(e) => m.refuse(Phase::Connect, e),
                },
                Err(e) => m.refuse(Phase::Connect, e),
            }
        });
    }

    fn forecast_db(&mut self, goal: &Goal, opts: &SwitchOptions) -> Result<Option<DbForecast>> {
        let Some((release, on_label)) = self.db_release_and_host() else {
            return Ok(None);
        };
        // Staged on the migrate_on host (not just planned to be): the schemas can be read.
        let known = self.members.iter().any(|m| {
            m.spec.label == on_label
                && m.status
                    .as_ref()
                    .and_then(|st| st.releases.iter().find(|r| r.name == release))
                    .is_some_and(|r| r.pushed_at.is_some() || r.size > 0 || r.files > 0)
        });
        if !known {
            let runs = self.hooks.migrate.is_some() && matches!(goal, Goal::Activate { .. });
            return Ok(Some(DbForecast {
                on: on_label,
                runs: runs.then_some(PlanStep::Migrate),
                schema: None,
                db_schema: None,
                known: false,
            }));
        }
        let plan: Option<DbPlan> = self.plan_db(goal, opts)?;
        Ok(plan.map(|p| {
            let (on, run) = p.summary();
            DbForecast {
                on: self.members[on].spec.label.clone(),
                runs: run.map(|k| match k {
                    HookKind::MigrateDown => PlanStep::MigrateDown,
                    _ => PlanStep::Migrate,
                }),
                schema: p.facts.schema.clone(),
                db_schema: p.facts.db_schema.clone(),
                known: true,
            }
        }))
    }

    /// Each host's plan, from what the stages found.
    fn host_plans(&self, what: &Forecast<'_>, pushes: &[Option<PushPlan>], db: Option<&DbForecast>) -> Vec<HostPlan> {
        let has = |k: HookKind| Hook::of(&self.hooks, k).is_some();
        let activating = matches!(what.goal, Some(Goal::Activate { .. }));
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let push = pushes.get(i).and_then(Option::as_ref);
                let current = m.status.as_ref().and_then(|st| st.current.clone());
                let to = m.plan.as_ref().map(|p| p.to.clone());
                let mut steps = Vec::new();
                let pushes_here = what.job.is_some() && push.is_some_and(|p| !p.already);
                if pushes_here {
                    steps.push(PlanStep::Push);
                }
                if what.goal.is_some() && to.is_some() {
                    let on_db = db.is_some_and(|d| d.on == m.spec.label);
                    let migration = db.and_then(|d| d.runs);
                    let mut db_steps = Vec::new();
                    if let Some(run) = migration {
                        if on_db && has(HookKind::Backup) {
                            db_steps.push(PlanStep::Backup);
                        }
                        if has(HookKind::Pause) {
                            db_steps.push(PlanStep::Pause);
                        }
                        if on_db {
                            db_steps.push(run);
                        }
                    }
                    if activating && has(HookKind::BeforeActivate) {
                        steps.push(PlanStep::BeforeActivate);
                    }
                    let service = m.runs_service();
                    if self.hooks.start_after_migrate {
                        steps.append(&mut db_steps);
                    }
                    if service {
                        steps.push(PlanStep::Start);
                    }
                    steps.append(&mut db_steps);
                    steps.push(PlanStep::Switch);
                    if has(HookKind::AfterActivate) {
                        steps.push(PlanStep::AfterActivate);
                    }
                    if has(HookKind::Health) {
                        steps.push(PlanStep::Health);
                    }
                    if migration.is_some() && has(HookKind::Pause) && has(HookKind::Resume) {
                        steps.push(PlanStep::Resume);
                    }
                    if service {
                        steps.push(PlanStep::Settle);
                    }
                }
                // A deploy that stood prunes every host, those it left alone too.
                if what.prune && m.status.is_some() {
                    steps.push(PlanStep::Prune);
                }
                let failed = m.error.as_ref();
                let next = if failed.is_some() {
                    None
                } else if what.goal.is_some() {
                    to.clone().or_else(|| current.clone())
                } else {
                    current.clone()
                };
                HostPlan {
                    host: m.spec.label.clone(),
                    reached: m.status.is_some(),
                    current,
                    next,
                    lacks_objects: push.filter(|_| what.job.is_some()).map(|p| p.objects),
                    lacks_bytes: push.filter(|_| what.job.is_some()).map(|p| p.bytes),
                    signers: push.and_then(signers_of),
                    signed_by: push.and_then(|p| p.signed_by.as_ref()).map(ToString::to_string),
                    prunes: None,
                    steps: if failed.is_some() { Vec::new() } else { steps },
                    exit: failed.map_or(0, |e| e.exit() as u8),
                    refused: m.report.reason.clone().filter(|_| failed.is_some()),
                    service: None,
                }
            })
            .collect()
    }
}

/// The id of a plan: the first 12 hex digits of the sha256 of its JSON
/// (what it shows, in a fixed key order: the same on every machine).
pub fn plan_id<T: Serialize>(shown: &T) -> String {
    let bytes = serde_json::to_vec(shown).unwrap_or_default();
    Digest::of(&bytes).hex()[..12].to_string()
}

/// The steps of a plan, for the text output (`push, switch, health`).
pub fn steps_text(steps: &[PlanStep]) -> String {
    let words: Vec<&str> = steps.iter().map(|s| s.as_str()).collect();
    words.join(", ")
}
