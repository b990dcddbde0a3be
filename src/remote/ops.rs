//! Client methods for the requests after staging: one method per request,
//! each a single round trip on the session's connection.

use super::session::HostSession;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::protocol::{
    ActivateRequest, CheckReport, Drift, HookRequest, HookResult, HostStatus, LockInfo, Message, PruneReport, Record,
    RollbackRequest, ServiceReport, ServiceRequest,
};

impl HostSession {
    /// Send one request and read its answer; a refusal ends the session.
    fn request(&mut self, msg: Message, phase: &str) -> Result<Message> {
        let sent = self.ch.send(&msg).and_then(|()| self.ch.recv());
        sent.map_err(|e| self.fail(e, phase))
    }

    fn unexpected(&mut self, got: &Message, wanted: &str) -> Error {
        let e = Error::UnexpectedAnswer {
            got: got.name(),
            wanted: format!("`{wanted}`"),
        };
        self.fail(e, wanted)
    }

    /// Take the host lock for this session (`wait`: how long to wait for it).
    ///
    /// # Errors
    /// `Locked` (exit 4) naming the holder.
    pub fn lock(&mut self, holder: &LockInfo, wait: Option<std::time::Duration>) -> Result<()> {
        self.lock_telling(holder, wait, None)
    }

    /// [`HostSession::lock`], telling the operator on stderr (`out.info`)
    /// who holds the lock when the host has to wait for them (a host older
    /// than `lock_waiting` says nothing).
    ///
    /// # Errors
    /// As [`HostSession::lock`].
    pub fn lock_or_wait(
        &mut self,
        holder: &LockInfo,
        wait: Option<std::time::Duration>,
        out: &crate::output::Output,
    ) -> Result<()> {
        let Some(w) = wait else {
            return self.lock(holder, None);
        };
        let label = self.label().to_string();
        let mut note = |h: &LockInfo| {
            out.info(&format!(
                "{label}: waiting up to {} s for the lock, held by {h}",
                w.as_secs()
            ));
        };
        self.lock_telling(holder, wait, Some(&mut note))
    }

    /// [`HostSession::lock`]; when the host has to wait for another
    /// operator, it says who that is and `waiting` hears it (a host older
    /// than `lock_waiting` says nothing).
    ///
    /// # Errors
    /// As [`HostSession::lock`].
    pub fn lock_telling(
        &mut self,
        holder: &LockInfo,
        wait: Option<std::time::Duration>,
        mut waiting: Option<&mut dyn FnMut(&LockInfo)>,
    ) -> Result<()> {
        let msg = Message::Lock {
            holder: holder.clone(),
            wait_ms: wait.map(|w| w.as_millis() as u64),
            notify: waiting.is_some(),
        };
        let mut answer = self.request(msg, "locking")?;
        loop {
            match answer {
                Message::Locked => return Ok(()),
                Message::LockWaiting { holder } => {
                    if let Some(w) = waiting.as_mut() {
                        w(&holder);
                    }
                    answer = self.ch.recv().map_err(|e| self.fail(e, "locking"))?;
                }
                other => return Err(self.unexpected(&other, "locked")),
            }
        }
    }

    /// Release the host lock.
    ///
    /// # Errors
    /// On a broken connection.
    pub fn unlock(&mut self) -> Result<()> {
        match self.request(Message::Unlock, "unlocking")? {
            Message::Unlocked => Ok(()),
            other => Err(self.unexpected(&other, "unlocked")),
        }
    }

    /// Point `current` at a release.
    ///
    /// # Errors
    /// The host's refusal (`--expect` mismatch: exit 6; missing release).
    pub fn activate(&mut self, req: ActivateRequest) -> Result<Record> {
        let phase = format!("the activation of `{}`", req.release);
        match self.request(Message::Activate(Box::new(req)), &phase)? {
            Message::Switched(r) => Ok(*r),
            other => Err(self.unexpected(&other, "switched")),
        }
    }

    /// Roll back.
    ///
    /// # Errors
    /// The host's refusal (nothing to roll back to: exit 1).
    pub fn rollback(&mut self, req: RollbackRequest) -> Result<Record> {
        match self.request(Message::Rollback(Box::new(req)), "the rollback")? {
            Message::Switched(r) => Ok(*r),
            other => Err(self.unexpected(&other, "switched")),
        }
    }

    /// Record that the current release passed its health check.
    ///
    /// # Errors
    /// On refusal or a broken connection.
    pub fn mark_healthy(&mut self, name: &str, actor: &str) -> Result<Record> {
        let msg = Message::MarkHealthy {
            name: name.to_string(),
            actor: actor.to_string(),
        };
        match self.request(msg, "recording the health check")? {
            Message::Switched(r) => Ok(*r),
            other => Err(self.unexpected(&other, "switched")),
        }
    }

    /// Mark a release bad on the host.
    ///
    /// # Errors
    /// On refusal or a broken connection.
    pub fn mark_bad(&mut self, name: &str, reason: &str) -> Result<()> {
        let msg = Message::MarkBad {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        match self.request(msg, "marking a release bad")? {
            Message::Marked => Ok(()),
            other => Err(self.unexpected(&other, "marked")),
        }
    }

    /// The host's state.
    ///
    /// # Errors
    /// On refusal or a broken connection.
    pub fn status(&mut self) -> Result<HostStatus> {
        match self.request(Message::Status, "status")? {
            Message::StatusReport(s) => Ok(*s),
            other => Err(self.unexpected(&other, "status_report")),
        }
    }

    /// History records, newest first, and warnings about unreadable lines.
    ///
    /// # Errors
    /// On refusal or a broken connection.
    pub fn history(&mut self, limit: Option<usize>) -> Result<(Vec<Record>, Vec<String>)> {
        match self.request(Message::History { limit, id: None }, "history")? {
            Message::HistoryReport { records, warnings } => Ok((records, warnings)),
            other => Err(self.unexpected(&other, "history_report")),
        }
    }

    /// The history records of bundle `id`, newest first (the host filters;
    /// an older host sends every record and this filters them).
    ///
    /// # Errors
    /// On refusal or a broken connection.
    pub fn history_of(&mut self, id: Digest) -> Result<Vec<Record>> {
        match self.request(
            Message::History {
                limit: None,
                id: Some(id),
            },
            "history",
        )? {
            Message::HistoryReport { records, .. } => Ok(records.into_iter().filter(|r| r.id == id).collect()),
            other => Err(self.unexpected(&other, "history_report")),
        }
    }

    /// Prune old releases and unreferenced objects.
    ///
    /// # Errors
    /// Refused on `--append-only` hosts; a held lock (exit 4).
    pub fn prune(&mut self, keep: usize, pinned: &[String], dry_run: bool) -> Result<PruneReport> {
        let msg = Message::Prune {
            keep,
            pinned: pinned.to_vec(),
            dry_run,
        };
        match self.request(msg, "prune")? {
            Message::Pruned(r) => Ok(*r),
            other => Err(self.unexpected(&other, "pruned")),
        }
    }

    /// What `prune` would remove, read-only (`prune --plan`).
    ///
    /// # Errors
    /// An `--append-only` host, a host too old to know `plan_prune`.
    pub fn plan_prune(&mut self, keep: usize, pinned: &[String]) -> Result<PruneReport> {
        let msg = Message::PlanPrune {
            keep,
            pinned: pinned.to_vec(),
        };
        match self.request(msg, "the plan of a prune")? {
            Message::Pruned(r) => Ok(*r),
            other => Err(self.unexpected(&other, "pruned")),
        }
    }

    /// Re-hash release trees on the host.
    ///
    /// # Errors
    /// When the named release is not there.
    pub fn verify(&mut self, release: Option<&str>) -> Result<(Vec<String>, Vec<Drift>)> {
        let msg = Message::Verify {
            release: release.map(str::to_string),
        };
        match self.request(msg, "verify")? {
            Message::Verified { releases, drift } => Ok((releases, drift)),
            other => Err(self.unexpected(&other, "verified")),
        }
    }

    /// Run a hook on the host.
    ///
    /// # Errors
    /// When the hook cannot be started (a failing hook is `ok: false`).
    pub fn hook(&mut self, req: HookRequest) -> Result<HookResult> {
        self.hook_streaming(req, &mut |_| {})
    }

    /// Run a hook on the host, handing each line it prints to `on_line` as
    /// it comes when the request asks for `stream`.
    ///
    /// # Errors
    /// As [`HostSession::hook`].
    pub fn hook_streaming(&mut self, req: HookRequest, on_line: &mut dyn FnMut(&str)) -> Result<HookResult> {
        let phase = format!("the {} hook", req.kind);
        // Checks that decide whether a switch goes ahead or stands end early
        // when the operator interrupts; the others run to their end.
        let cancellable = matches!(req.kind.as_str(), "health" | "before_activate");
        let mut cancelled = false;
        let sent = self.ch.send(&Message::Hook(Box::new(req)));
        sent.map_err(|e| self.fail(e, &phase))?;
        loop {
            let answer = if cancellable {
                self.recv_or_cancel(&mut cancelled)
            } else {
                self.ch.recv()
            };
            match answer.map_err(|e| self.fail(e, &phase))? {
                Message::HookResult(r) => return Ok(*r),
                Message::HookOutput { line } => on_line(&line),
                other => return Err(self.unexpected(&other, "hook_result")),
            }
        }
    }

    /// The next message; while waiting for it, tell the host `cancel` once
    /// when the operator interrupts the command.
    fn recv_or_cancel(&mut self, cancelled: &mut bool) -> Result<Message> {
        use std::os::fd::AsFd;

        use rustix::event::{PollFd, PollFlags, Timespec};
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // The request must be on its way before the answer is waited for.
        self.ch.flush()?;
        loop {
            if !self.ch.reader().buffer().is_empty() {
                break;
            }
            if !*cancelled && crate::interrupt::interrupted() {
                self.ch.send(&Message::Cancel)?;
                self.ch.flush()?;
                *cancelled = true;
            }
            let fd = self.ch.reader().get_ref().as_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&tick)) {
                Ok(0) => {}
                // Readable, closed or failed: the read says which.
                Ok(_) => break,
                Err(e) if e == rustix::io::Errno::INTR => {}
                Err(_) => break,
            }
        }
        self.ch.recv()
    }

    /// The facts `slipway host check` judges.
    ///
    /// # Errors
    /// On refusal (a host too old to know `check`) or a broken connection.
    pub fn check(&mut self) -> Result<CheckReport> {
        match self.request(Message::Check, "check")? {
            Message::CheckReport(r) => Ok(*r),
            other => Err(self.unexpected(&other, "check_report")),
        }
    }

    /// Start, abandon, settle or report the service slots.
    ///
    /// # Errors
    /// On refusal (no service definition, a host too old to know `service`)
    /// or a broken connection. A new instance failing its check is a report
    /// with a `failure`.
    pub fn service(&mut self, req: ServiceRequest) -> Result<ServiceReport> {
        // A deploy's start (the new instance and its check, without
        // traffic) ends early when the operator interrupts.
        let answer = if matches!(req.op, crate::protocol::ServiceOp::Start { .. }) {
            let sent = self.ch.send(&Message::Service(Box::new(req)));
            sent.and_then(|()| self.recv_or_cancel(&mut false))
                .map_err(|e| self.fail(e, "the service request"))?
        } else {
            self.request(Message::Service(Box::new(req)), "the service request")?
        };
        match answer {
            Message::ServiceReport(r) => Ok(*r),
            other => Err(self.unexpected(&other, "service_report")),
        }
    }
}
