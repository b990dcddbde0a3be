//! Step 6 of a switch, all or nothing: when a host fails, switch every host
//! that was switched back to the release it was on, and say where each
//! host ended up.
//!
//! Invariant: a host is switched back only from the release this switch
//! put there (`--expect` on the host guards it), and only to the release
//! read under its lock before the switch. A host whose connection broke is
//! reached again before anything is assumed about it; one that cannot be
//! reached is reported as unknown, never as switched back. The error that
//! ends the switch exits 3, 4, 5 or 6 only when every switched host is back.

use std::time::Duration;

use crate::error::{Error, Exit};
use crate::output::Output;
use crate::protocol::ActivateRequest;
use crate::protocol::LockInfo;
use crate::remote::session::HostSession;

use super::connect::{Fleet, each};
use super::hooks::{Hook, HookKind};
use super::member::{Member, Position};
use super::plan::Goal;
use super::report::{Outcome, Phase, lines_joined};
use super::switch::{SwitchOptions, lock_holder};

/// How long a reconnected revert waits for the host's lock: the broken
/// session's `serve` may still hold it until it notices the closed connection.
const REVERT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// What switching back needs on every host.
struct Reverting {
    /// The lock holder (and actor) for hosts reached again.
    me: LockInfo,
    target: String,
    after_activate: Option<Hook>,
    /// Mark the release being left as bad.
    mark_left_bad: bool,
}

impl Fleet<'_> {
    /// Switch back after `host` failed (with `exit`), and build the error
    /// that ends the switch.
    pub(super) fn undo(&mut self, goal: &Goal, opts: &SwitchOptions, host: &str, exit: Exit) -> Error {
        let reverted = self.revert(goal, opts);
        // Services: what was started for the switch stops again, and the
        // warm instances it displaced run again.
        self.abandon_started(&lock_holder(&opts.command));
        let failed = self.members.iter().find(|m| m.spec.label == host);
        let phase = failed.map(|m| m.report.phase).unwrap_or_default();
        let reason = failed.and_then(|m| m.report.reason.clone()).unwrap_or_default();
        let msg = format!("{} failed on {host} ({phase}): {reason}; {reverted}", goal.verb());
        // Exit 3 promises that every switched host is back: a host left
        // on the new release makes it a plain failure. A host refusing the
        // release (an unacceptable signature, a tree that no longer matches)
        // exits 5, as the same refusal does at push (docs/control.md).
        let all_back = self.members.iter().all(|m| !m.switched());
        let exit = if all_back
            && matches!(
                exit,
                Exit::HealthRolledBack | Exit::Locked | Exit::Integrity | Exit::ExpectMismatch | Exit::Usage
            ) {
            exit
        } else {
            Exit::Error
        };
        Error::with_exit(exit, msg)
    }

    /// Switch every switched host back; returns a sentence for the error.
    fn revert(&mut self, goal: &Goal, opts: &SwitchOptions) -> String {
        // The release switched to is marked bad where it is left. A
        // rollback's target only when it failed itself (a hook or the
        // health check), not when a connection or a lock did: re-running
        // a plain rollback after a network failure must aim at the same
        // release, not one further back.
        let release_failed = self
            .members
            .iter()
            .any(|m| m.error.is_some() && m.report.phase.is_hook());
        let how = Reverting {
            me: lock_holder(&opts.command),
            target: self.target.name.clone(),
            after_activate: Hook::of(&self.hooks, HookKind::AfterActivate),
            mark_left_bad: !matches!(goal, Goal::Rollback { .. }) || release_failed,
        };
        let out = &self.ctx.out;
        each(&mut self.members, self.parallel, |m| revert_one(m, &how, out));
        self.revert_summary()
    }

    /// Hosts still on the new release, and hosts whose state is unknown.
    fn revert_summary(&self) -> String {
        let target = &self.target.name;
        let labels = |at: Position| -> Vec<&str> {
            self.members
                .iter()
                .filter(|m| m.position() == Some(at))
                .map(|m| m.spec.label.as_str())
                .collect()
        };
        let stuck = labels(Position::Switched);
        let unknown = labels(Position::Unknown);
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
        let any_back = self
            .members
            .iter()
            .any(|m| m.position() == Some(Position::SwitchedBack));
        if parts.is_empty() && !any_back {
            "no host was switched".into()
        } else if parts.is_empty() {
            "every host that was switched is back on its previous release".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Switch one host back if it was switched (finding out first when its
/// connection broke), and report what happened.
fn revert_one(m: &mut Member, how: &Reverting, out: &Output) {
    if m.plan.is_some() && !m.switched() && m.error.is_none() {
        m.report.result = Outcome::NotStarted;
    }
    // The connection broke during the switch, or after it: whether the
    // host switched is unknown, and the session is gone. Look again.
    if m.broken && (m.switched() || m.report.phase == Phase::Activate) {
        recheck(m, &how.me);
    }
    if !m.switched() {
        return;
    }
    let new = m.plan.as_ref().map(|p| p.to.clone()).unwrap_or_default();
    let Some(back) = m.previous().map(str::to_string) else {
        stay_marked_bad(m, &new);
        return;
    };
    let was_failed = m.error.is_some();
    match switch_back(m, how, &back, &new, out) {
        Ok(()) => {
            m.set_position(Position::SwitchedBack);
            m.report.current = Some(back.clone());
            m.report.result = Outcome::Reverted;
            if !was_failed {
                m.report.phase = Phase::Revert;
                m.report.reason = Some(format!("switched back to `{back}` because another host failed"));
            }
            out.info(&format!("{}: switched back to {back}", m.spec.label));
            if let Some(hook) = &how.after_activate
                && let Some(w) = hook.run_after_revert(m, &back, &new, out)
            {
                out.warn(&w);
            }
        }
        Err(e) => {
            m.report.result = Outcome::Failed;
            let e = e.to_string();
            let e = e.strip_prefix(&format!("{}: ", m.spec.label)).unwrap_or(&e);
            let earlier = match (&m.report.reason, was_failed) {
                (Some(r), true) => format!("{r}; then "),
                _ => String::new(),
            };
            m.report.reason = Some(format!(
                "{earlier}could not switch back to `{back}`: {}; fix by hand with `slipway activate {back} -t {} --hosts {}`",
                lines_joined(e),
                how.target,
                m.spec.label
            ));
        }
    }
}

/// Activate `back` again on a host that is on `new`, reconnecting once if
/// the connection is lost.
fn switch_back(m: &mut Member, how: &Reverting, back: &str, new: &str, out: &Output) -> crate::error::Result<()> {
    let req = ActivateRequest {
        release: back.to_string(),
        expect: Some(new.to_string()),
        actor: how.me.actor.clone(),
        action: "revert".into(),
        reason: Some("another host failed; switching back".into()),
        mark_left_bad: how.mark_left_bad,
        service: m.switch_back_to_slot(),
        db: crate::protocol::DbFacts::default(),
    };
    let mut res = m.session().and_then(|s| s.activate(req.clone()));
    if res.as_ref().is_err_and(Error::is_connection) {
        out.info(&format!(
            "{}: connection lost; reconnecting to switch back to {back}",
            m.spec.label
        ));
        res = m.reopen(&how.me, REVERT_LOCK_WAIT).and_then(|s| s.activate(req));
    }
    res.map(drop)
}

/// A switched host with no release to return to stays on `new`, marked bad.
fn stay_marked_bad(m: &mut Member, new: &str) {
    let r = m
        .session()
        .and_then(|s| s.mark_bad(new, "failed during a fleet switch"));
    m.report.result = Outcome::Failed;
    m.report.reason = Some(match r {
        Ok(()) => format!("stayed on `{new}` (marked bad): there was no release to switch back to"),
        Err(e) => format!("stayed on `{new}`: {}", e.without_host()),
    });
}

/// A host whose connection broke during (or after) its switch: connect
/// again, take its lock (waiting for the broken session's `serve` to let
/// go), and find out whether it is on the new release. If it is, it counts
/// as switched, so that the revert switches it back; if it cannot be
/// reached, its state is unknown and the report says so.
fn recheck(m: &mut Member, me: &LockInfo) {
    let goal = m.plan.as_ref().map(|p| p.to.clone()).unwrap_or_default();
    let wait = m.spec.connect_timeout;
    let again = HostSession::open(&m.spec).and_then(|mut s| {
        s.lock(me, Some(wait))?;
        let st = s.status()?;
        Ok((s, st))
    });
    match again {
        Ok((session, st)) => {
            if let Some(old) = m.session.replace(session) {
                drop(old);
            }
            m.broken = false;
            let on_new = st.current.as_deref() == Some(goal.as_str());
            m.set_position(if on_new {
                Position::Switched
            } else {
                Position::NotSwitched
            });
            m.report.current = st.current;
        }
        Err(e) => {
            m.set_position(Position::Unknown);
            m.report.result = Outcome::Failed;
            let before = m.report.reason.clone().unwrap_or_default();
            m.report.reason = Some(format!(
                "{before}; could not reconnect to check whether it switched to `{goal}`: {}",
                lines_joined(&e.without_host().to_string())
            ));
        }
    }
}
