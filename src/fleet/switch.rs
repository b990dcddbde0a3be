//! The two-phase switch of `current` across a fleet (steps 1–5 and the
//! prune after success; step 6, switching back, is [`super::revert`]).
//!
//! Invariant: nothing switches anywhere before every selected host is
//! connected, locked, planned and through `before_activate`; then hosts
//! switch batch by batch, and the first batch with a failed host is the
//! last. Every session (and so every host lock) is closed when the switch
//! ends, whatever happened.

use std::time::Duration;

use crate::error::{Error, Exit, Result};
use crate::output::Output;
use crate::protocol::LockInfo;
use crate::protocol::Record;
use crate::protocol::{ActivateRequest, RollbackRequest, ServiceSwitch};
use crate::remote::session::HostSession;

use super::connect::{Fleet, each};
use super::hooks::{Hook, HookKind};
use super::member::{Member, Position};
use super::plan::Goal;
use super::report::{Outcome, Phase, Step};

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
    /// Switch to a release that expects another schema than the database
    /// is at, with no migration to bring it there (else exit 7).
    pub allow_schema_rollback: bool,
    /// Run the migration even though it already succeeded here.
    pub migrate_again: bool,
    /// `--expect-plan`: the release each host ran in the approved plan,
    /// checked again under the hosts' locks (exit 6 where it moved since).
    pub approved: Option<Approved>,
}

/// The release each host (by label) runs in an approved plan.
pub type Approved = Vec<(String, Option<String>)>;

/// Who holds a host's lock during a switch (the details others see).
pub(super) fn lock_holder(command: &str) -> LockInfo {
    LockInfo {
        actor: crate::config::actor(),
        command: command.to_string(),
        pid: 0,
        since: crate::provenance::now_rfc3339(),
    }
}

/// What every host of a batch is asked to do, and the hooks that follow.
struct Switching {
    rollback: bool,
    expect: Option<String>,
    reason: Option<String>,
    actor: String,
    after_activate: Option<Hook>,
    health: Option<Hook>,
    /// What each switch's history record says about the database.
    db: crate::protocol::DbFacts,
}

impl Switching {
    /// Switch a host's `current` (and its traffic, with `service`) to `name`.
    fn send(&self, s: &mut HostSession, name: &str, service: Option<ServiceSwitch>) -> Result<Record> {
        if self.rollback {
            s.rollback(RollbackRequest {
                to: Some(name.to_string()),
                expect: self.expect.clone(),
                actor: self.actor.clone(),
                reason: self.reason.clone(),
                service,
                db: self.db.clone(),
            })
        } else {
            s.activate(ActivateRequest {
                release: name.to_string(),
                expect: self.expect.clone(),
                actor: self.actor.clone(),
                action: "activate".into(),
                reason: self.reason.clone(),
                mark_left_bad: false,
                service,
                db: self.db.clone(),
            })
        }
    }
}

impl Fleet<'_> {
    /// Switch `current` on every host: all or nothing.
    ///
    /// # Errors
    /// Exit 4 when a lock is held, 6 when `--expect` does not match, 3 when a
    /// health check (or a service's check) failed and the hosts were
    /// switched back, 7 when the release expects another schema than the
    /// database is at and nothing brings it there, 1 otherwise.
    ///
    /// Interrupted (Ctrl-C, SIGTERM; exit 130): the switch ends as a
    /// failed check would, and the error says how it ended.
    pub fn switch(&mut self, goal: &Goal, opts: &SwitchOptions) -> Result<()> {
        let phase = crate::interrupt::switch(&self.target.name);
        let result = self.switch_inner(goal, opts);
        if result.is_err() {
            self.read_current();
        }
        // Locks go with the sessions: close them all, whatever happened.
        self.drop_sessions();
        drop(phase);
        if !crate::interrupt::interrupted() {
            return result;
        }
        Err(Error::Interrupted(match result {
            Err(e) => format!("interrupted: {}", e.without_host()),
            Ok(()) => format!(
                "interrupted after the switch had finished: every host of `{}` is on the release it was switched to",
                self.target.name
            ),
        }))
    }

    fn switch_inner(&mut self, goal: &Goal, opts: &SwitchOptions) -> Result<()> {
        let verb = goal.verb();
        // What an earlier phase (the push) reported is not this phase's result.
        for m in self.members.iter_mut().filter(|m| m.error.is_none()) {
            m.report.result = Outcome::NotStarted;
        }
        // 1. Reach every host.
        self.reach_all(opts.skip_unreachable)?;
        self.first_error(Step::Connect(verb))?;
        // 2. Lock every host.
        self.lock_all(&lock_holder(&opts.command), opts.wait);
        self.first_error(Step::Lock(verb))?;
        // 3. Decide each host's goal (as approved with --expect-plan).
        self.check_approved(goal, opts.approved.as_ref());
        self.plan(goal)?;
        self.first_error(Step::Plan(verb))?;
        // The database: what the release expects, and what runs (exit 7
        // here, before any hook runs).
        let mut db = self.plan_db(goal, opts)?;
        // 4. before_activate in the staged release, everywhere, before anything switches.
        if matches!(goal, Goal::Activate { .. })
            && let Some(hook) = Hook::of(&self.hooks, HookKind::BeforeActivate)
        {
            self.run_hook_everywhere(&hook);
            self.first_error(Step::BeforeActivate(verb))?;
        }
        // 5. Switch, batch by batch (a migration right before the first);
        // 6. all or nothing; and intake resumed, whatever happened.
        if let Some((host, exit)) = self.switch_batches(goal, opts, &mut db) {
            let e = self.undo(goal, opts, &host, exit);
            if let Some(p) = &mut db
                && let Err(r) = self.resume_paused(p)
            {
                self.ctx.out.warn(&r.to_string());
            }
            return Err(after_migration(e, db.as_ref()));
        }
        // The switch stood; a host whose intake stays paused fails the
        // command (after the steps that follow a switch that stood).
        let resumed = match &mut db {
            Some(p) => self.resume_paused(p),
            None => Ok(()),
        };
        for m in self
            .members
            .iter_mut()
            .filter(|m| m.plan.is_none() && m.report.result == Outcome::NotStarted)
        {
            m.report.result = Outcome::Unchanged;
            m.report.phase = Phase::Done;
        }
        // Services: the old instances drain and stop, unless kept warm.
        self.settle_services();
        // 7. Prune after a fully successful deploy.
        if let Some(keep) = opts.prune_keep
            && resumed.is_ok()
        {
            self.prune(keep);
        }
        resumed
    }

    /// Connect to every host; with `skip_unreachable`, leave out (with a
    /// warning) those that cannot be reached.
    ///
    /// # Errors
    /// When skipping and no host at all could be reached.
    pub(super) fn reach_all(&mut self, skip_unreachable: bool) -> Result<()> {
        self.connect_all();
        if !skip_unreachable {
            return Ok(());
        }
        for m in self.members.iter_mut().filter(|m| m.error.is_some()) {
            m.report.result = Outcome::Unreachable;
            m.error = None;
            self.ctx.out.warn(&format!(
                "skipping {}: {}",
                m.spec.label,
                m.report.reason.clone().unwrap_or_default()
            ));
        }
        if self.members.iter().all(|m| m.session.is_none()) {
            return Err(Error::NoHostReached {
                target: self.target.name.clone(),
            });
        }
        Ok(())
    }

    /// Take every connected host's lock as `me`, and read its state under it.
    fn lock_all(&mut self, me: &LockInfo, wait: Option<Duration>) {
        let out = &self.ctx.out;
        each(&mut self.members, self.parallel, |m| {
            if m.session.is_none() {
                return;
            }
            m.report.phase = Phase::Lock;
            let r = m.session().and_then(|s| {
                s.lock_or_wait(me, wait, out)?;
                s.status()
            });
            match r {
                Ok(st) => {
                    for w in &st.warnings {
                        out.warn(&format!("{}: {w}", m.spec.label));
                    }
                    m.report.previous = st.current.clone();
                    m.report.current = st.current.clone();
                    m.status = Some(st);
                }
                Err(e) => m.fail(Phase::Lock, e),
            }
        });
    }

    /// `--expect-plan`: a host that runs another release than in the
    /// approved plan, now that it is locked, stops the switch (exit 6):
    /// the plan was checked before the locks (and a deploy's push) were
    /// taken, and someone may have switched a host in between.
    fn check_approved(&mut self, goal: &Goal, approved: Option<&Approved>) {
        let Some(approved) = approved else { return };
        let phase = goal.verb().phase();
        for m in self.members.iter_mut().filter(|m| m.error.is_none()) {
            let Some(st) = &m.status else { continue };
            let Some((_, was)) = approved.iter().find(|(host, _)| *host == m.spec.label) else {
                continue;
            };
            if st.current != *was {
                let msg = format!(
                    "the host is on `{}`, not `{}` as in the approved plan (--expect-plan): it was switched since the plan was checked",
                    st.current.as_deref().unwrap_or("no release"),
                    was.as_deref().unwrap_or("no release")
                );
                let e = Error::ExpectMismatch(msg).on_host(&m.spec.label);
                m.fail(phase, e);
            }
        }
    }

    /// Switch the planned hosts, batch by batch; the first batch with a
    /// failed host is the last. Returns that host and the exit code its
    /// failure calls for.
    fn switch_batches(
        &mut self,
        goal: &Goal,
        opts: &SwitchOptions,
        db: &mut Option<super::db::DbPlan>,
    ) -> Option<(String, Exit)> {
        let active: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].plan.is_some())
            .collect();
        let batch = opts.batch.unwrap_or(active.len()).max(1);
        let mut how = Switching {
            rollback: matches!(goal, Goal::Rollback { .. }),
            expect: goal.expect().cloned(),
            reason: goal.reason().cloned(),
            actor: crate::config::actor(),
            after_activate: Hook::of(&self.hooks, HookKind::AfterActivate),
            health: Hook::of(&self.hooks, HookKind::Health),
            db: db.as_ref().map(|p| p.facts.clone()).unwrap_or_default(),
        };
        for (n, chunk) in active.chunks(batch).enumerate() {
            if opts.batch.is_some() {
                let labels: Vec<&str> = chunk.iter().map(|i| self.members[*i].spec.label.as_str()).collect();
                self.ctx.out.info(&format!("batch {}: {}", n + 1, labels.join(", ")));
            }
            let out = &self.ctx.out;
            // The database, once, before the first host switches: before the
            // new instances start when they cannot pass their check on the
            // old schema, else right after they did.
            let migrate_first = self.hooks.start_after_migrate;
            for before_start in [true, false] {
                if before_start == migrate_first
                    && n == 0
                    && let Some(plan) = db.as_mut()
                {
                    if let Some(failed) = self.migrate_before_switch(plan, opts.migrate_again) {
                        return Some(failed);
                    }
                    how.db = plan.facts.clone();
                }
                if before_start {
                    // Services: every host of the batch runs its new release,
                    // checked, before any of them switches.
                    let members = members_of(&mut self.members, chunk);
                    crate::parallel::map(members, self.parallel, |m| super::service::start_one(m, out));
                    if let Some(failed) = self.batch_failure() {
                        return Some(failed);
                    }
                }
            }
            let members = members_of(&mut self.members, chunk);
            crate::parallel::map(members, self.parallel, |m| switch_one(m, &how, out));
            if let Some(failed) = self.batch_failure() {
                return Some(failed);
            }
        }
        None
    }

    /// The first failed host, and the exit code its failure calls for.
    fn batch_failure(&self) -> Option<(String, Exit)> {
        let bad = self.members.iter().find(|m| m.error.is_some())?;
        let lost = bad.error.as_ref().is_some_and(Error::is_connection);
        let exit = match bad.report.phase {
            Phase::Health if !lost => Exit::HealthRolledBack,
            _ => bad.error.as_ref().map_or(Exit::Error, Error::exit),
        };
        Some((bad.spec.label.clone(), exit))
    }

    /// Prune beyond `keep` on every host (failures are only warnings).
    fn prune(&mut self, keep: usize) {
        let pinned = self.target.config.pinned.clone();
        let out = &self.ctx.out;
        each(&mut self.members, self.parallel, |m| {
            let Ok(s) = m.session() else { return };
            match s.prune(keep, &pinned, false) {
                Ok(r) if !r.releases.is_empty() => {
                    out.info(&format!("{}: pruned {}", m.spec.label, r.releases.join(", ")));
                }
                Ok(_) => {}
                Err(e) => out.warn(&format!("{}: prune failed: {}", m.spec.label, e.without_host())),
            }
        });
    }
}

/// The members at the indices of `chunk`.
fn members_of<'m>(members: &'m mut [Member], chunk: &[usize]) -> Vec<&'m mut Member> {
    members
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| chunk.contains(i))
        .map(|(_, m)| m)
        .collect()
}

/// Switch one host, then run `after_activate` and the health check there;
/// a failure is recorded on the host and ends its turn.
fn switch_one(m: &mut Member, how: &Switching, out: &Output) {
    let Some(name) = m.plan.as_ref().map(|p| p.to.clone()) else {
        return;
    };
    m.report.phase = Phase::Activate;
    let service = m.switch_to_slot();
    match m.session().and_then(|s| how.send(s, &name, service)) {
        Ok(record) => {
            m.set_position(Position::Switched);
            m.report.current = Some(record.to.clone());
            if let Some(w) = &record.warning {
                out.warn(&format!("{}: {}", m.spec.label, crate::error::one_line(w)));
            }
            out.info(&format!(
                "{}: {} -> {}",
                m.spec.label,
                record.from.as_deref().unwrap_or("(none)"),
                record.to
            ));
            if how.rollback
                && record.marked_bad.is_none()
                && let Some(from) = record.from.as_deref().filter(|f| *f != record.to)
            {
                out.info(&format!(
                    "{}: {from} is not marked bad: {} went live after it (rolling forward)",
                    m.spec.label, record.to
                ));
            }
        }
        Err(e) => return m.fail(Phase::Activate, e),
    }
    if let Some(hook) = &how.after_activate {
        m.report.phase = Phase::AfterActivate;
        if !hook.run(m, &name, out) {
            return;
        }
    }
    if let Some(hook) = &how.health {
        m.report.phase = Phase::Health;
        if !hook.run(m, &name, out) {
            return;
        }
        // The record promotion gates read (`require_healthy_on`).
        if let Err(e) = m.session().and_then(|s| s.mark_healthy(&name, &how.actor)) {
            out.warn(&format!(
                "{}: could not record the health check: {}",
                m.spec.label,
                e.without_host()
            ));
        }
    }
    m.report.phase = Phase::Done;
    m.report.result = Outcome::Ok;
}

/// The error of a switch that failed after a migration: it says plainly
/// that the database was migrated, what the backup was, and the options.
fn after_migration(e: Error, db: Option<&super::db::DbPlan>) -> Error {
    let Some(plan) = db.filter(|p| p.migrated) else {
        return e;
    };
    let schema = plan.facts.db_schema.as_deref().unwrap_or("its new schema");
    let backup = plan
        .facts
        .backup
        .as_deref()
        .map_or("no backup was taken".to_string(), |b| {
            format!("the backup taken before it is {b}")
        });
    let msg = format!(
        "{e}; note: the database was migrated to schema {schema} and stays there ({backup}): the hosts run the previous release on it,          which is fine when the migration only added what the old release ignores (expand/contract); otherwise fix forward with a new release,          or restore the backup"
    );
    e.reworded(msg)
}
