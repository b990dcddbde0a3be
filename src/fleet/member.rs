//! One host of a fleet through a command: its connection, its line of the
//! report, and what each stage leaves for the next — the push in flight or
//! done ([`PushStage`]), the state read under the lock, and what the host
//! switches to and where it stands ([`Planned`]).
//!
//! Invariant: a member whose `error` is set failed a stage, and its report
//! says so (`failed`, the phase, a one-line reason; [`Member::fail`] sets
//! all three); later stages skip it. Only `--skip-unreachable` clears an
//! error (the host becomes `unreachable`), and a failed switch back is
//! reported without one, since no stage follows it.

use std::time::Instant;

use indicatif::ProgressBar;

use crate::error::{Error, Result};
use crate::protocol::HostStatus;
use crate::protocol::LockInfo;
use crate::remote::HostSpec;
use crate::remote::push::{Needed, PushOutcome};
use crate::remote::session::HostSession;

use super::report::{HostReport, Outcome, Phase, lines_joined};

/// One host of a fleet.
pub(super) struct Member {
    pub(super) spec: HostSpec,
    pub(super) session: Option<HostSession>,
    pub(super) report: HostReport,
    pub(super) error: Option<Error>,
    /// The connection broke (not a refusal): the session is unusable, and a
    /// switch in flight may or may not have happened.
    pub(super) broken: bool,
    /// Where the push to this host is.
    pub(super) push: PushStage,
    /// The host's state, read under its lock (`None` before it is locked).
    pub(super) status: Option<HostStatus>,
    /// What the host switches to (`None`: nothing to do here).
    pub(super) plan: Option<Planned>,
    /// Where its release runs, on a host with a service (after `start`).
    pub(super) slots: Option<super::service::SlotPlan>,
}

/// Where the push to one host is.
pub(super) enum PushStage {
    /// Not pushed: not yet, or the push failed (the report says which).
    Idle,
    /// Offered: the host lacks these contents, and they are on their way.
    Sending(Sending),
    /// Staged on the host: what the push did, and how long it took (seconds).
    Staged(PushOutcome, f64),
}

/// A push between its offer and its end.
pub(super) struct Sending {
    pub(super) needed: Needed,
    pub(super) bar: ProgressBar,
    pub(super) started: Instant,
}

impl PushStage {
    pub(super) fn sending(&self) -> Option<&Sending> {
        match self {
            PushStage::Sending(s) => Some(s),
            PushStage::Idle | PushStage::Staged(..) => None,
        }
    }
}

/// What a host switches to, and how far it got.
pub(super) struct Planned {
    /// The release (a name on the host).
    pub(super) to: String,
    pub(super) at: Position,
}

/// Where a planned host stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Position {
    /// Still on the release it was on (or found there again).
    NotSwitched,
    /// On the new release.
    Switched,
    /// Switched, then switched back.
    SwitchedBack,
    /// Lost during the switch and not reachable again: nobody knows.
    Unknown,
}

impl Planned {
    pub(super) fn new(to: String) -> Planned {
        Planned {
            to,
            at: Position::NotSwitched,
        }
    }
}

impl Member {
    pub(super) fn new(spec: HostSpec) -> Member {
        let report = HostReport {
            host: spec.label.clone(),
            ..HostReport::default()
        };
        Member {
            spec,
            session: None,
            report,
            error: None,
            broken: false,
            push: PushStage::Idle,
            status: None,
            plan: None,
            slots: None,
        }
    }

    /// Record that the host failed in `phase`.
    pub(super) fn fail(&mut self, phase: Phase, e: Error) {
        self.broken |= e.is_connection();
        self.report.phase = phase;
        self.report.result = Outcome::Failed;
        let text = e.to_string();
        let text = text.strip_prefix(&format!("{}: ", self.spec.label)).unwrap_or(&text);
        self.report.reason = Some(lines_joined(text));
        self.error = Some(e);
    }

    /// The open session.
    ///
    /// # Errors
    /// When it was closed after an earlier failure.
    pub(super) fn session(&mut self) -> Result<&mut HostSession> {
        let label = self.spec.label.clone();
        self.session
            .as_mut()
            .ok_or_else(|| Error::other("the connection was closed after an earlier failure").on_host(&label))
    }

    /// The release current before the command (read under the lock).
    pub(super) fn previous(&self) -> Option<&str> {
        self.status.as_ref().and_then(|st| st.current.as_deref())
    }

    /// The bundle id of `release` here, from the status read under the lock.
    pub(super) fn release_id(&self, release: &str) -> Option<String> {
        self.status
            .as_ref()
            .and_then(|st| st.releases.iter().find(|r| r.name == release).map(|r| r.id.to_string()))
    }

    /// Is the host on its new release?
    pub(super) fn switched(&self) -> bool {
        self.position() == Some(Position::Switched)
    }

    pub(super) fn position(&self) -> Option<Position> {
        self.plan.as_ref().map(|p| p.at)
    }

    pub(super) fn set_position(&mut self, at: Position) {
        if let Some(p) = &mut self.plan {
            p.at = at;
        }
    }

    /// Drop a broken session and open a new one holding the host lock,
    /// waiting up to `wait` for the broken session's `serve` to let it go.
    ///
    /// # Errors
    /// When the host cannot be reached or its lock stays held.
    pub(super) fn reopen(&mut self, me: &LockInfo, wait: std::time::Duration) -> Result<&mut HostSession> {
        drop(self.session.take());
        let mut s = HostSession::open(&self.spec)?;
        s.lock(me, Some(wait))?;
        Ok(self.session.insert(s))
    }
}
