//! Running a target's hooks (`before_activate`, `after_activate`, `health`)
//! on a fleet's hosts, through each host's session.
//!
//! Invariant: every hook runs inside the release it is about, with
//! `SLIPWAY_HOST`, `SLIPWAY_PREVIOUS` (the release the host was on) and,
//! when the host knows the release, `SLIPWAY_ID` set; its output is shown
//! line by line under the host's label. A failed hook fails its host in the
//! hook's own phase, keeping the last lines of its output for the report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::Hooks;
use crate::error::Error;
use crate::output::Output;
use crate::protocol::{HookRequest, HookResult};

use super::connect::{Fleet, each};
use super::member::Member;
use super::report::Phase;

/// How many lines of a failed hook's output the report keeps.
pub(super) const OUTPUT_TAIL: usize = 10;

/// A hook the fleet runs on each host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookKind {
    BeforeActivate,
    AfterActivate,
    Health,
    Backup,
    Pause,
    Resume,
    Migrate,
    MigrateDown,
    Schema,
    DbSchema,
}

impl HookKind {
    /// The name on the wire (`HookRequest::kind`) and in messages.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            HookKind::BeforeActivate => "before_activate",
            HookKind::AfterActivate => "after_activate",
            HookKind::Health => "health",
            HookKind::Backup => "backup",
            HookKind::Pause => "pause",
            HookKind::Resume => "resume",
            HookKind::Migrate => "migrate",
            HookKind::MigrateDown => "migrate_down",
            HookKind::Schema => "schema",
            HookKind::DbSchema => "db_schema",
        }
    }

    /// The phase a host is in while this hook runs.
    pub(super) fn phase(self) -> Phase {
        match self {
            HookKind::BeforeActivate => Phase::BeforeActivate,
            HookKind::AfterActivate => Phase::AfterActivate,
            HookKind::Health => Phase::Health,
            HookKind::Backup => Phase::Backup,
            HookKind::Pause => Phase::Pause,
            HookKind::Resume => Phase::Resume,
            HookKind::Migrate | HookKind::MigrateDown | HookKind::Schema | HookKind::DbSchema => Phase::Migrate,
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of a target's hooks, ready to run: its command and time limits.
#[derive(Debug, Clone)]
pub(super) struct Hook {
    pub(super) kind: HookKind,
    command: String,
    /// Each attempt is killed after this long.
    timeout: Duration,
    /// Failed attempts are retried until this long has passed (health).
    retry: Duration,
}

impl Hook {
    /// The target's `kind` hook; `None` when it has none.
    pub(super) fn of(hooks: &Hooks, kind: HookKind) -> Option<Hook> {
        let command = match kind {
            HookKind::BeforeActivate => &hooks.before_activate,
            HookKind::AfterActivate => &hooks.after_activate,
            HookKind::Health => &hooks.health,
            HookKind::Backup => &hooks.backup,
            HookKind::Pause => &hooks.pause,
            HookKind::Resume => &hooks.resume,
            HookKind::Migrate => &hooks.migrate,
            HookKind::MigrateDown => &hooks.migrate_down,
            HookKind::Schema => &hooks.schema,
            HookKind::DbSchema => &hooks.db_schema,
        };
        let (timeout, retry) = match kind {
            HookKind::Health => (hooks.timeouts.health_attempt(), hooks.timeouts.health),
            _ => (hooks.timeouts.hook, Duration::ZERO),
        };
        Some(Hook {
            kind,
            command: command.clone()?,
            timeout,
            retry,
        })
    }

    /// Run the hook on a host for `release`; on failure record it on the
    /// host (in the hook's phase) and return false.
    pub(super) fn run(&self, m: &mut Member, release: &str, out: &Output) -> bool {
        let req = self.request(m, release, m.previous());
        let started = Instant::now();
        let r = match m.session().and_then(|s| s.hook(req)) {
            Ok(r) => r,
            Err(e) => {
                m.fail(self.kind.phase(), e);
                return false;
            }
        };
        show_output(out, &m.spec.label, &r.output);
        if r.ok {
            return true;
        }
        let why = self.why_failed(&r, started);
        m.report.output = Some(last_lines(&r.output, OUTPUT_TAIL));
        m.fail(self.kind.phase(), Error::other(why));
        false
    }

    /// Run the hook on a host just switched back from `left` to `back`,
    /// with the environment of that switch (`SLIPWAY_PREVIOUS` is the
    /// release it left); a warning when the hook fails. The host's report
    /// is left alone: the switch back is what it reports.
    pub(super) fn run_after_revert(&self, m: &mut Member, back: &str, left: &str, out: &Output) -> Option<String> {
        let label = m.spec.label.clone();
        let req = self.request(m, back, Some(left));
        match m.session().and_then(|s| s.hook(req)) {
            Ok(r) => {
                show_output(out, &label, &r.output);
                (!r.ok).then(|| format!("{label}: {} failed after switching back to {back}", self.kind))
            }
            Err(e) => Some(format!("{label}: {}: {}", self.kind, e.without_host())),
        }
    }

    pub(super) fn request(&self, m: &Member, release: &str, previous: Option<&str>) -> HookRequest {
        let mut env = BTreeMap::new();
        env.insert("SLIPWAY_HOST".to_string(), m.spec.label.clone());
        env.insert("SLIPWAY_PREVIOUS".to_string(), previous.unwrap_or_default().to_string());
        if let Some(id) = m.release_id(release) {
            env.insert("SLIPWAY_ID".into(), id);
        }
        HookRequest {
            kind: self.kind.as_str().into(),
            release: release.into(),
            command: self.command.clone(),
            env,
            timeout_ms: self.timeout.as_millis() as u64,
            retry_for_ms: self.retry.as_millis() as u64,
            undo: None,
            again: false,
            stream: false,
        }
    }

    /// Why a run that did not succeed failed, for the host's report.
    pub(super) fn why_failed(&self, r: &HookResult, started: Instant) -> String {
        let (kind, cmd) = (self.kind, &self.command);
        if r.timed_out {
            return format!(
                "{kind} hook `{cmd}` was killed after {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        match r.exit_code {
            Some(c) => format!(
                "{kind} hook `{cmd}` failed with exit status {c} after {} attempt(s)",
                r.attempts
            ),
            None if crate::interrupt::interrupted() => {
                format!("{kind} hook `{cmd}` was stopped on the operator's interrupt")
            }
            None => format!("{kind} hook `{cmd}` was killed by a signal"),
        }
    }
}

impl Fleet<'_> {
    /// Run `hook` on every host that has a release to switch to and has not
    /// failed, each in that release.
    pub(super) fn run_hook_everywhere(&mut self, hook: &Hook) {
        let out = &self.ctx.out;
        each(&mut self.members, self.parallel, |m| {
            let Some(name) = m.plan.as_ref().map(|p| p.to.clone()) else {
                return;
            };
            if m.error.is_some() {
                return;
            }
            m.report.phase = hook.kind.phase();
            hook.run(m, &name, out);
        });
    }
}

/// A hook's output on stderr, each non-blank line under the host's label.
pub(super) fn show_output(out: &Output, label: &str, output: &str) {
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        out.info(&format!("[{label}] {line}"));
    }
}

/// The last `n` lines of `text`.
pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn a_failed_hook_keeps_its_last_lines() {
        let text: String = (1..=12).map(|i| format!("line {i}\n")).collect();
        assert_eq!(last_lines(&text, 2), "line 11\nline 12");
        assert_eq!(last_lines("only\n", 10), "only");
        assert_eq!(last_lines("", 10), "");
    }
}
