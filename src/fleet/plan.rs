//! Deciding, from each host's state read under its lock, what the host
//! switches to — before anything switches anywhere.
//!
//! Invariant: planning changes nothing on any host. A host that cannot do
//! what is asked (release missing or half-staged, nothing to roll back to,
//! `--expect` not met) fails here, so the switch stops before it starts;
//! a host already on the release has nothing to do (`unchanged`); a plain
//! rollback where hosts disagree on the release to go back to is refused.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::protocol::{HostStatus, ReleaseStatus};

use super::connect::Fleet;
use super::member::{Member, Planned};
use super::report::{Outcome, Phase, Verb};

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
    pub(super) fn verb(&self) -> Verb {
        match self {
            Goal::Activate { .. } => Verb::Activation,
            Goal::Rollback { .. } => Verb::Rollback,
        }
    }

    /// `--expect`: the release that must be current on each host.
    pub(super) fn expect(&self) -> Option<&String> {
        match self {
            Goal::Activate { expect, .. } | Goal::Rollback { expect, .. } => expect.as_ref(),
        }
    }

    /// Why, for the history (e.g. a gate override's reason).
    pub(super) fn reason(&self) -> Option<&String> {
        match self {
            Goal::Activate { reason, .. } | Goal::Rollback { reason, .. } => reason.as_ref(),
        }
    }
}

/// The release `rel` among a host's releases: by name, else by a unique
/// id prefix, with or without `sha256:` (as the host resolves it).
fn find<'s>(st: &'s HostStatus, rel: &str) -> Option<&'s ReleaseStatus> {
    if let Some(r) = st.releases.iter().find(|r| r.name == rel) {
        return Some(r);
    }
    let bare_hex = !rel.is_empty() && rel.bytes().all(|c| c.is_ascii_hexdigit());
    if !crate::digest::looks_like_id(rel) && !bare_hex {
        return None;
    }
    let mut matching = st.releases.iter().filter(|r| r.id.matches_prefix(rel));
    let first = matching.next()?;
    matching.next().is_none().then_some(first)
}

impl Fleet<'_> {
    /// Decide per host what to switch to; hosts already there do nothing.
    ///
    /// # Errors
    /// When a plain rollback's hosts disagree about the release to go back
    /// to. A host that cannot do its part fails on its own (in the report).
    pub(super) fn plan(&mut self, goal: &Goal) -> Result<()> {
        let target = self.target.name.as_str();
        // A release the local store knows was not pushed; one it does not
        // know may be a typo of a release the host has.
        let named = match goal {
            Goal::Activate { release, .. } => Some(release.as_str()),
            Goal::Rollback { to, .. } => to.as_deref(),
        };
        let typo = named.is_some_and(|rel| self.ctx.store().is_ok_and(|s| s.resolve(rel).is_err()));
        for m in self.members.iter_mut().filter(|m| m.session.is_some()) {
            match goal {
                Goal::Activate { release, again, .. } => plan_activate(m, release, *again, target, typo),
                Goal::Rollback { to, .. } => plan_rollback(m, to.as_deref(), target, typo),
            }
        }
        if let Goal::Rollback { to: None, .. } = goal {
            self.agree_on_rollback()?;
        }
        self.check_expect(goal);
        Ok(())
    }

    /// A plain rollback goes back to one release everywhere: hosts whose
    /// histories lead to different releases need `--to`.
    fn agree_on_rollback(&self) -> Result<()> {
        let mut targets: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for m in &self.members {
            let Some(plan) = &m.plan else { continue };
            let cur = m.previous().unwrap_or("none");
            targets
                .entry(plan.to.as_str())
                .or_default()
                .push(format!("{} (on {cur})", m.spec.label));
        }
        if targets.len() <= 1 {
            return Ok(());
        }
        let detail: Vec<String> = targets
            .iter()
            .map(|(t, hosts)| format!("{} -> {t}", hosts.join(", ")))
            .collect();
        Err(Error::RollbackDisagrees {
            target: self.target.name.clone(),
            choices: detail.join("; "),
        })
    }

    /// `--expect` against each host's state, read under its lock: a host on
    /// another release stops the switch before any host is touched (exit 6),
    /// so no host switches, runs hooks and is switched back (its new release
    /// marked bad) over a mismatch known in advance. Hosts with nothing to
    /// do are not checked; the host checks again when it switches.
    fn check_expect(&mut self, goal: &Goal) {
        let Some(expect) = goal.expect() else { return };
        let phase = goal.verb().phase();
        for m in self
            .members
            .iter_mut()
            .filter(|m| m.plan.is_some() && m.error.is_none())
        {
            let Some(st) = &m.status else { continue };
            let wanted = find(st, expect).map_or(expect.as_str(), |r| r.name.as_str());
            if st.current.as_deref() != Some(wanted) {
                let msg = format!(
                    "the host is on `{}`, not `{expect}` (--expect)",
                    st.current.as_deref().unwrap_or("no release")
                );
                let e = Error::ExpectMismatch(msg).on_host(&m.spec.label);
                m.fail(phase, e);
            }
        }
    }
}

/// ` (did you mean `v1.4.2`?)` when `rel` may be a typo (the local store
/// does not know it either) of a release the host has.
fn did_you_mean(st: &HostStatus, rel: &str, typo: bool) -> String {
    if !typo {
        return String::new();
    }
    crate::store::closest(rel, st.releases.iter().map(|r| r.name.as_str()))
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Activate `release` on a host: it must be there and complete; a host
/// already on it has nothing to do unless `again`.
fn plan_activate(m: &mut Member, release: &str, again: bool, target: &str, typo: bool) {
    let Some(st) = &m.status else { return };
    let why = match find(st, release) {
        Some(r) if !r.complete => format!("release `{}` is still being staged here; push it again", r.name),
        Some(r) if !again && st.current.as_deref() == Some(r.name.as_str()) => {
            m.report.result = Outcome::Unchanged;
            m.report.phase = Phase::Done;
            return;
        }
        Some(r) => {
            m.plan = Some(Planned::new(r.name.clone()));
            return;
        }
        None => format!(
            "release `{release}` is not on this host{}; push it first with `slipway push {release} -t {target}`",
            did_you_mean(st, release, typo)
        ),
    };
    let e = Error::other(why).on_host(&m.spec.label);
    m.fail(Phase::Activate, e);
}

/// Roll a host back to `to`, or to its previous good release.
fn plan_rollback(m: &mut Member, to: Option<&str>, target: &str, typo: bool) {
    let Some(st) = &m.status else { return };
    let name = match to {
        Some(rel) => find(st, rel).map(|r| r.name.clone()),
        None => st.previous.clone(),
    };
    if let Some(n) = name {
        m.plan = Some(Planned::new(n));
        return;
    }
    let why = match to {
        Some(rel) => {
            format!(
                "release `{rel}` is not on this host{}; `slipway status -t {target}` lists the releases there",
                did_you_mean(st, rel, typo)
            )
        }
        None => format!(
            "nothing to roll back to: no earlier good release in its history (current: {}); name one with `--to REL`",
            st.current.as_deref().unwrap_or("none")
        ),
    };
    let e = Error::other(why).on_host(&m.spec.label);
    m.fail(Phase::Rollback, e);
}

#[cfg(test)]
mod tests {
    use super::find;
    use crate::protocol::{HostStatus, ReleaseStatus};

    fn release(name: &str, hex: &str) -> ReleaseStatus {
        ReleaseStatus {
            name: name.into(),
            id: crate::digest::Digest::from_hex(hex).unwrap(),
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

    #[test]
    fn a_release_is_found_by_name_or_by_a_unique_id_prefix_with_or_without_sha256() {
        let st = HostStatus {
            current: None,
            current_id: None,
            previous: None,
            releases: vec![
                release("v1", &format!("ab12{}", "0".repeat(60))),
                release("v2", &format!("ab34{}", "0".repeat(60))),
                release("ab34", &format!("cd{}", "0".repeat(62))),
            ],
            lock: None,
            warnings: Vec::new(),
            service: None,
            migration: None,
            paused_since: None,
        };
        let name = |rel: &str| find(&st, rel).map(|r| r.name.clone());
        assert_eq!(name("v1").as_deref(), Some("v1"));
        assert_eq!(name("ab12").as_deref(), Some("v1"));
        assert_eq!(name("sha256:ab12").as_deref(), Some("v1"));
        assert_eq!(name("AB12").as_deref(), Some("v1"));
        // A name wins over an id prefix; an ambiguous prefix finds nothing.
        assert_eq!(name("ab34").as_deref(), Some("ab34"));
        assert_eq!(name("ab"), None);
        assert_eq!(name("v3"), None);
    }
}
