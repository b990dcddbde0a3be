//! A target's hosts as one [`Fleet`]: selecting them (`--hosts`),
//! connecting, read-only queries, closing, and the one error a failed step
//! ends with. The stages (`push`, `plan`, `switch`, `revert`, `hooks`) add
//! their methods to [`Fleet`] in their own files.
//!
//! Invariant: the members are the selected hosts in the target's order, and
//! every per-host list returned keeps that order; a step's error names its
//! failed hosts and exits with the code of the host it quotes first.

use crate::Context;
use crate::config::Hooks;
use crate::error::{Error, Exit, Result};
use crate::remote::session::HostSession;
use crate::remote::{HostSpec, Target};

use super::member::Member;
use super::report::{HostReport, Outcome, Phase, Step, lines_joined};

/// Default `parallel`.
pub const DEFAULT_PARALLEL: usize = 16;

/// A target's hosts, connected as needed.
pub struct Fleet<'a> {
    pub(super) ctx: &'a Context,
    pub(super) target: &'a Target,
    /// One per selected host, in the target's host order.
    pub(super) members: Vec<Member>,
    pub(super) parallel: usize,
    pub(super) hooks: Hooks,
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

/// Run `f` on every member, at most `parallel` at a time.
pub(super) fn each<F>(members: &mut [Member], parallel: usize, f: F)
where
    F: Fn(&mut Member) + Sync,
{
    crate::parallel::map(members.iter_mut().collect(), parallel, f);
}

impl<'a> Fleet<'a> {
    /// # Errors
    /// Usage error for unknown `--hosts` or malformed hook settings.
    pub fn new(ctx: &'a Context, target: &'a Target, only: &[String]) -> Result<Fleet<'a>> {
        let hosts = select_hosts(target, only)?;
        Ok(Fleet {
            ctx,
            target,
            members: hosts.into_iter().map(Member::new).collect(),
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
        let results = crate::parallel::map(self.members.iter_mut().collect(), self.parallel, |m| {
            match m.error.take() {
                Some(e) => Err(e),
                None => m.session().and_then(&f),
            }
        });
        self.drop_sessions();
        self.members.iter().map(|m| m.spec.label.clone()).zip(results).collect()
    }

    /// The per-host report.
    pub fn reports(&self) -> Vec<HostReport> {
        self.members.iter().map(|m| m.report.clone()).collect()
    }

    /// End every session cleanly (waiting for each host's `serve` to exit).
    ///
    /// # Errors
    /// The first host whose `serve` exited unsuccessfully.
    pub fn close(&mut self) -> Result<()> {
        let mut first = None;
        for m in &mut self.members {
            if let Some(s) = m.session.take()
                && let Err(e) = s.close()
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Close every session, ignoring how each ends (their locks go with them).
    pub(super) fn drop_sessions(&mut self) {
        for m in &mut self.members {
            if let Some(s) = m.session.take() {
                let _ = s.close();
            }
        }
    }

    /// After a step failed: read what each host that was reached is on, so
    /// that the report's `current` (and `previous`: nothing switched there)
    /// says it, whatever failed (docs/json.md). A host whose state was read
    /// under its lock keeps it; a host that failed a step is asked over a new
    /// connection (its own may be broken, or mid-way through a push); a host
    /// never reached, or that cannot be asked, keeps null.
    pub fn read_current(&mut self) {
        each(&mut self.members, self.parallel, |m| {
            if m.status.is_some() || m.report.current.is_some() || m.session.is_none() {
                return;
            }
            if m.error.is_some() {
                drop(m.session.take());
                match HostSession::open(&m.spec) {
                    Ok(s) => m.session = Some(s),
                    Err(_) => return,
                }
            }
            if let Some(Ok(st)) = m.session.as_mut().map(HostSession::status) {
                m.report.previous.clone_from(&st.current);
                m.report.current = st.current;
            }
        });
    }

    /// Connect to every host not yet connected (or failed).
    pub(super) fn connect_all(&mut self) {
        each(&mut self.members, self.parallel, |m| {
            if m.session.is_some() || m.error.is_some() {
                return;
            }
            match HostSession::open(&m.spec) {
                Ok(s) => m.session = Some(s),
                Err(e) => m.fail(Phase::Connect, e),
            }
        });
    }

    /// After `step` ran on every host: when any failed, one error naming
    /// them (the hosts that did not finish become `not_started`).
    ///
    /// # Errors
    /// Exit 4, 5 or 6 when a failed host's error has that code (or the one
    /// failed host's own code), 1 otherwise.
    pub(super) fn first_error(&mut self, step: Step) -> Result<()> {
        // Before anything switched, an interrupted switch stops here.
        if step != Step::Push && crate::interrupt::interrupted() {
            return Err(Error::other("stopped before any host switched: nothing changed"));
        }
        let failed: Vec<&Member> = self.members.iter().filter(|m| m.error.is_some()).collect();
        let Some((exit, first)) = quoted_failure(&failed) else {
            return Ok(());
        };
        let msg = if self.members.len() == 1 {
            // A single host: its own error, which names it, is the clearest line.
            first
                .error
                .as_ref()
                .map(|e| lines_joined(&e.to_string()))
                .unwrap_or_default()
        } else {
            let mut hosts: Vec<&str> = vec![first.spec.label.as_str()];
            hosts.extend(
                failed
                    .iter()
                    .map(|m| m.spec.label.as_str())
                    .filter(|l| *l != first.spec.label),
            );
            let detail = first.report.reason.clone().unwrap_or_default();
            // A push activates nothing, but the other hosts keep what they staged.
            let outcome = if step == Step::Push {
                "nothing was activated, and a re-run sends only what is missing"
            } else {
                "nothing changed"
            };
            format!(
                "{step} failed on {} of {} host(s) ({}): {detail}; {outcome}",
                failed.len(),
                self.members.len(),
                hosts.join(", ")
            )
        };
        for m in self.members.iter_mut().filter(|m| m.error.is_none()) {
            if !matches!(m.report.result, Outcome::Ok | Outcome::Unchanged | Outcome::Unreachable) {
                m.report.result = Outcome::NotStarted;
            }
        }
        Err(Error::with_exit(exit, msg))
    }
}

/// The exit code of a step that `failed` hosts failed (`None`: none did),
/// and the host to quote: a lock, integrity or `--expect` failure outranks
/// a plain one, and a single failed host gives its own code.
fn quoted_failure<'m>(failed: &[&'m Member]) -> Option<(Exit, &'m Member)> {
    let first = *failed.first()?;
    let exit = if failed.len() == 1 {
        first.error.as_ref().map_or(Exit::Error, Error::exit)
    } else {
        failed
            .iter()
            .filter_map(|m| m.error.as_ref())
            .map(Error::exit)
            .find(|e| *e == Exit::Locked || *e == Exit::Integrity || *e == Exit::ExpectMismatch)
            .unwrap_or(Exit::Error)
    };
    let quoted = failed
        .iter()
        .find(|m| m.error.as_ref().map(Error::exit) == Some(exit))
        .copied()
        .unwrap_or(first);
    Some((exit, quoted))
}
