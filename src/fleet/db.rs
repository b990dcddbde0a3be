//! The database steps of a switch (docs/ab-deploys.md, "Complex A/B"):
//! before anything switches, learn the schema the release expects and the
//! one the database is at; when they differ, migrate (once, on the
//! `migrate_on` host, after `backup`, with intake paused on every host), or
//! refuse (exit 7) a switch nothing would bring there; after the switch,
//! or any failure, resume intake everywhere it was paused.
//!
//! Invariant: `migrate` and `migrate_down` run on one host per command;
//! `resume` runs on every host where `pause` ran (or was tried), whatever
//! happened in between, and a host whose session ends with intake paused
//! resumes it itself.

use std::time::Instant;

use crate::error::{Error, Exit, Result};
use crate::output::Output;
use crate::protocol::DbFacts;
use crate::protocol::{HookRequest, HookResult};

use super::connect::Fleet;
use super::hooks::{Hook, HookKind, OUTPUT_TAIL, last_lines, show_output};
use super::member::Member;
use super::plan::Goal;
use super::switch::SwitchOptions;

/// What a switch does to the database.
#[derive(Debug, Clone)]
pub(super) struct DbPlan {
    /// The member that runs `backup`, `migrate`, `migrate_down`.
    on: usize,
    /// `Migrate` (in the release switched to) or `MigrateDown` (in the
    /// release being left), when one is due.
    run: Option<HookKind>,
    /// The release the migration runs in.
    run_in: String,
    /// What each switch's history record says.
    pub(super) facts: DbFacts,
    /// The members where `pause` ran or was tried.
    paused: Vec<usize>,
    /// When the first `pause` started.
    window: Option<Instant>,
    /// The migration ran (the database may be at a new schema).
    pub(super) migrated: bool,
}

impl DbPlan {
    /// The member that runs the migration, and which one runs (`--plan`).
    pub(super) fn summary(&self) -> (usize, Option<HookKind>) {
        (self.on, self.run)
    }
}

impl Fleet<'_> {
    /// The release a switch would move to and the label of the host that
    /// runs the database steps (`migrate_on`, else the target's first), when
    /// the target has database hooks and the switch moves some host.
    pub(super) fn db_release_and_host(&self) -> Option<(String, String)> {
        let h = &self.hooks;
        if h.migrate.is_none() && h.schema.is_none() && h.db_schema.is_none() && h.migrate_down.is_none() {
            return None;
        }
        let release = self
            .members
            .iter()
            .find_map(|m| m.plan.as_ref().map(|p| p.to.clone()))?;
        let on_label = self
            .target
            .config
            .migrate_on
            .clone()
            .or_else(|| self.target.hosts.first().map(|h| h.label.clone()))
            .unwrap_or_default();
        Some((release, on_label))
    }

    /// Decide what the switch does to the database (read-only: runs the
    /// `schema` and `db_schema` hooks). `None` when the target has no
    /// database hooks or no host switches.
    ///
    /// # Errors
    /// Exit 7 when the release expects another schema than the database is
    /// at and nothing would bring it there (unless `--allow-schema-rollback`);
    /// exit 2 when a migration is due and `--hosts` leaves out the
    /// `migrate_on` host; a failing `schema` / `db_schema` hook.
    pub(super) fn plan_db(&mut self, goal: &Goal, opts: &SwitchOptions) -> Result<Option<DbPlan>> {
        let Some((release, on_label)) = self.db_release_and_host() else {
            return Ok(None);
        };
        let h = &self.hooks;
        let Some(on) = self.members.iter().position(|m| m.spec.label == on_label) else {
            if h.migrate.is_some() || h.migrate_down.is_some() {
                return Err(Error::usage(format!(
                    "database migrations of target `{}` run on `{on_label}` (`migrate_on`), which --hosts leaves out: include it, or deploy to the whole target",
                    self.target.name
                )));
            }
            return Ok(None);
        };
        let left = self.members[on].previous().map(str::to_string);
        let expected = self.capture(on, HookKind::Schema, &release)?;
        let db_now = match self.capture(on, HookKind::DbSchema, left.as_deref().unwrap_or(&release))? {
            Some(v) => Some(v),
            None => self.members[on]
                .status
                .as_ref()
                .and_then(|st| st.migration.as_ref())
                .filter(|m| m.state == "ok")
                .and_then(|m| m.schema.clone()),
        };
        let differ = matches!((&expected, &db_now), (Some(e), Some(d)) if e != d);
        // Going back: a rollback, or activating a release that was live here
        // before. Its `migrate` is not run to take the database back down
        // (a migration tool brings a database up to a release, not back).
        let seen_before = self.members[on]
            .status
            .as_ref()
            .and_then(|st| st.releases.iter().find(|r| r.name == release))
            .is_some_and(|r| r.last_activated.is_some());
        let rollback = matches!(goal, Goal::Rollback { .. }) || (seen_before && !opts.migrate_again);
        let mut run = None;
        let mut run_in = release.clone();
        if rollback && differ {
            if self.hooks.migrate_down.is_some() && left.is_some() {
                run = Some(HookKind::MigrateDown);
                run_in = left.clone().unwrap_or_default();
            }
        } else if !rollback && self.hooks.migrate.is_some() && (differ || expected.is_none() || opts.migrate_again) {
            run = Some(HookKind::Migrate);
        }
        if differ && run.is_none() && !opts.allow_schema_rollback {
            let (e, d) = (expected.unwrap_or_default(), db_now.unwrap_or_default());
            let down = if self.hooks.migrate_down.is_some() {
                String::new()
            } else {
                ", or set `migrate_down` so the release being left can take the database back".to_string()
            };
            return Err(Error::SchemaMismatch(format!(
                "{release} expects schema {e}, but the database is at schema {d}, and no migration here brings it there: \
                 {release} would run on a schema it does not know; nothing was switched. Ways forward: deploy a release that expects schema {d}{down}, \
                 or restore a backup taken at schema {e} and pass --allow-schema-rollback"
            )));
        }
        Ok(Some(DbPlan {
            on,
            run,
            run_in,
            facts: DbFacts {
                schema: expected,
                db_schema: db_now,
                backup: None,
            },
            paused: Vec::new(),
            window: None,
            migrated: false,
        }))
    }

    /// Run `kind` on member `on` in `release` and return the last line it
    /// printed (`None`: the target has no such hook, or the host skipped it).
    fn capture(&mut self, on: usize, kind: HookKind, release: &str) -> Result<Option<String>> {
        let Some(hook) = Hook::of(&self.hooks, kind) else {
            return Ok(None);
        };
        let m = &mut self.members[on];
        let req = hook.request(m, release, m.previous());
        let started = Instant::now();
        let r = m.session()?.hook(req)?;
        if r.attempts == 0 {
            return Ok(None);
        }
        if !r.ok {
            return Err(Error::other(format!(
                "{}: {}: {}",
                m.spec.label,
                hook.why_failed(&r, started),
                last_lines(&r.output, 3).replace('\n', " / ")
            )));
        }
        Ok(last_line(&r.output))
    }

    /// Right before the first host switches: `backup`, `pause` on every
    /// host that switches, then the migration, once. A failure is recorded
    /// on its host; returns that host and the exit code.
    pub(super) fn migrate_before_switch(&mut self, plan: &mut DbPlan, again: bool) -> Option<(String, Exit)> {
        self.db_steps(plan, again).err()
    }

    fn db_steps(&mut self, plan: &mut DbPlan, again: bool) -> std::result::Result<(), (String, Exit)> {
        let Some(kind) = plan.run else { return Ok(()) };
        let ctx = self.ctx;
        let out = &ctx.out;
        // backup, on the migrate_on host
        if let Some(hook) = Hook::of(&self.hooks, HookKind::Backup) {
            let m = &mut self.members[plan.on];
            let req = hook.request(m, &plan.run_in, m.previous());
            let r = step(m, &hook, req, out, "nothing was migrated or switched")?;
            plan.facts.backup = last_line(&r.output);
        }
        // pause, everywhere that switches
        if let Some(pause) = Hook::of(&self.hooks, HookKind::Pause) {
            plan.window = Some(Instant::now());
            plan.paused = (0..self.members.len())
                .filter(|i| self.members[*i].plan.is_some() && self.members[*i].error.is_none())
                .collect();
            // Every host at once: the window is as short as the slowest `pause`.
            let undo = self.hooks.resume.clone();
            let members: Vec<&mut Member> = self
                .members
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| plan.paused.contains(i))
                .map(|(_, m)| m)
                .collect();
            let results = crate::parallel::map(members, self.parallel, |m| {
                let release = m.plan.as_ref().map(|p| p.to.clone()).unwrap_or_default();
                let mut req = pause.request(m, &release, m.previous());
                req.undo = undo.clone();
                step(m, &pause, req, out, "nothing was migrated or switched")
            });
            if let Some(Err(failed)) = results.into_iter().find(Result::is_err) {
                return Err(failed);
            }
            out.info(&format!("intake paused on {} host(s)", plan.paused.len()));
        }
        // the migration, once
        let Some(hook) = Hook::of(&self.hooks, kind) else {
            return Ok(());
        };
        let m = &mut self.members[plan.on];
        let mut req = hook.request(m, &plan.run_in, m.previous());
        req.again = matches!(kind, HookKind::Migrate) && again;
        if let Some(s) = &plan.facts.schema {
            req.env.insert("SLIPWAY_SCHEMA".into(), s.clone());
        }
        if let Some(b) = &plan.facts.backup {
            req.env.insert("SLIPWAY_BACKUP".into(), b.clone());
        }
        out.info(&format!("{}: running {kind} in {}", m.spec.label, plan.run_in));
        // attempts 0: the host found this migration already done.
        plan.migrated = step(m, &hook, req, out, "nothing was switched")?.attempts > 0;
        // where the database is now
        let on = plan.on;
        let release = plan.run_in.clone();
        match self.capture(on, HookKind::DbSchema, &release) {
            Ok(Some(v)) => plan.facts.db_schema = Some(v),
            Ok(None) => {
                plan.facts.db_schema = if kind == HookKind::MigrateDown {
                    None
                } else {
                    plan.facts.schema.clone()
                }
            }
            Err(e) => out.warn(&format!(
                "could not read the database's schema after the migration: {e}"
            )),
        }
        Ok(())
    }

    /// `resume` on every host where `pause` ran, whatever happened; prints
    /// how long intake was off. A host where it fails keeps its window: its
    /// `serve` resumes it when this session ends.
    pub(super) fn resume_paused(&mut self, plan: &mut DbPlan) -> Result<()> {
        let Some(hook) = Hook::of(&self.hooks, HookKind::Resume) else {
            return Ok(());
        };
        if plan.paused.is_empty() {
            return Ok(());
        }
        let ctx = self.ctx;
        let out = &ctx.out;
        // Every host at once, as `pause` ran.
        let paused = std::mem::take(&mut plan.paused);
        let members: Vec<&mut Member> = self
            .members
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| paused.contains(i))
            .map(|(_, m)| m)
            .collect();
        let failed: Vec<String> = crate::parallel::map(members, self.parallel, |m| {
            let release = m.report.current.clone().unwrap_or_default();
            let req = hook.request(m, &release, m.previous());
            let started = Instant::now();
            match m.session().and_then(|s| s.hook(req)) {
                Ok(r) if r.ok => {
                    show_output(out, &m.spec.label, &r.output);
                    None
                }
                Ok(r) => {
                    show_output(out, &m.spec.label, &r.output);
                    Some(format!("{}: {}", m.spec.label, hook.why_failed(&r, started)))
                }
                Err(e) => Some(format!("{}: resume: {}", m.spec.label, e.without_host())),
            }
        })
        .into_iter()
        .flatten()
        .collect();
        if let Some(t) = plan.window.take() {
            out.info(&format!("intake was paused for {:.2} s", t.elapsed().as_secs_f64()));
        }
        if failed.is_empty() {
            return Ok(());
        }
        Err(Error::other(format!(
            "{}; intake is still paused there: the host runs `resume` again when this session ends and when the next command takes its lock (`slipway status` shows `intake PAUSED`)",
            failed.join("; ")
        )))
    }
}

/// Run one database step on `m`; its output is shown under the host. On
/// failure the host fails in the step's phase (the reason ends with
/// `then`: what did not happen) and the host and exit code are returned.
fn step(
    m: &mut Member,
    hook: &Hook,
    mut req: HookRequest,
    out: &Output,
    then: &str,
) -> Result<HookResult, (String, Exit)> {
    let phase = hook.kind.phase();
    m.report.phase = phase;
    let started = Instant::now();
    // Long steps show their output as it comes, under the host's name.
    req.stream = matches!(hook.kind, HookKind::Backup | HookKind::Migrate | HookKind::MigrateDown);
    let label = m.spec.label.clone();
    let mut streamed = false;
    let mut show = |line: &str| {
        streamed = true;
        if !line.trim().is_empty() {
            out.info(&format!("[{label}] {line}"));
        }
    };
    let result = m.session().and_then(|s| s.hook_streaming(req, &mut show));
    match result {
        Ok(r) if r.ok => {
            if !streamed {
                show_output(out, &m.spec.label, &r.output);
            }
            Ok(r)
        }
        Ok(r) => {
            m.report.output = Some(last_lines(&r.output, OUTPUT_TAIL));
            let why = hook.why_failed(&r, started);
            m.fail(phase, Error::other(format!("{why}; {then}")));
            Err((m.spec.label.clone(), Exit::Error))
        }
        Err(e) => {
            m.fail(phase, e);
            Err((m.spec.label.clone(), Exit::Error))
        }
    }
}

/// The last non-blank line of `text`, trimmed.
fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}
