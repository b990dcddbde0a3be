//! The service steps of a switch, on hosts that run the release in A/B
//! slots (docs/ab-deploys.md): `start` (the new release runs beside the
//! live one and passes its check on its own port, before anything
//! switches), the traffic move that rides on each host's switch, `abandon`
//! (what was started is stopped again when the switch does not stand,
//! and the warm instance it displaced is put back) and `settle` (after
//! success, the old instance is drained and stopped unless kept warm).
//!
//! Invariant: a host's traffic moves only with its switch, and only to a
//! slot whose instance passed its check in this command; a host without a
//! service takes none of these steps.

use crate::config::{ServiceMode, ServiceSpec};
use crate::error::Error;
use crate::output::Output;
use crate::protocol::{ServiceOp, ServiceReport, ServiceRequest, ServiceSwitch, SlotStatus, StartFailure};

use super::connect::{Fleet, each};
use crate::protocol::LockInfo;

/// How long a host reached again waits for its lock: the ended session's
/// `serve` may still hold it for a moment.
const REOPEN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
use super::member::Member;
use super::preview::{HostPlan, PlanStep, ServicePlan, SlotStep};
use super::report::Phase;

/// Where a host's release runs for this command.
#[derive(Debug, Clone)]
pub(super) struct SlotPlan {
    /// The slot running the release this command switches to.
    pub(super) slot: String,
    /// The slot that had the traffic before (`None`: none had it yet).
    pub(super) back: Option<String>,
    /// This command started the instance (it was not already running), so
    /// it is abandoned when the switch does not stand.
    pub(super) started: bool,
}

impl Member {
    /// Does this host run the release as a service?
    pub(super) fn runs_service(&self) -> bool {
        !self.spec.service.is_none()
    }

    /// The service definition sent to the host (`None`: it has its own).
    fn service_spec(&self) -> Option<ServiceSpec> {
        match &self.spec.service {
            ServiceMode::Given(spec) => Some(spec.clone()),
            ServiceMode::None | ServiceMode::HostDefined => None,
        }
    }

    /// The traffic part of this host's switch to its new release.
    pub(super) fn switch_to_slot(&self) -> Option<ServiceSwitch> {
        let plan = self.slots.as_ref()?;
        Some(ServiceSwitch {
            slot: Some(plan.slot.clone()),
            spec: self.service_spec(),
        })
    }

    /// The traffic part of switching this host back.
    pub(super) fn switch_back_to_slot(&self) -> Option<ServiceSwitch> {
        let plan = self.slots.as_ref()?;
        Some(ServiceSwitch {
            slot: plan.back.clone(),
            spec: self.service_spec(),
        })
    }

    fn service_request(&self, op: ServiceOp) -> ServiceRequest {
        ServiceRequest {
            op,
            spec: self.service_spec(),
        }
    }
}

/// Start the host's new release in its idle slot and check it there (or
/// find it already running and passing its check); a failure is the
/// host's, in phase `start`, exit 3.
pub(super) fn start_one(m: &mut Member, out: &Output) {
    let Some(name) = m.plan.as_ref().map(|p| p.to.clone()) else {
        return;
    };
    if !m.runs_service() || m.error.is_some() {
        return;
    }
    m.report.phase = Phase::Start;
    let req = m.service_request(ServiceOp::Start { release: name.clone() });
    let report = match m.session().and_then(|s| s.service(req)) {
        Ok(r) => r,
        Err(e) => return m.fail(Phase::Start, e),
    };
    let label = m.spec.label.clone();
    if let Some(st) = report.started {
        if st.reused {
            out.info(&format!(
                "{label}: {name} is already running in slot {} (port {}) and passes its check",
                st.slot, st.port
            ));
        } else {
            out.info(&format!(
                "{label}: started {name} in slot {} (port {}); its check passed",
                st.slot, st.port
            ));
        }
        m.slots = Some(SlotPlan {
            slot: st.slot,
            back: st.live,
            started: !st.reused,
        });
        return;
    }
    let Some(f) = report.failure else {
        return m.fail(
            Phase::Start,
            Error::other("the host answered `service start` with neither an instance nor a failure"),
        );
    };
    m.report.output = Some(failure_output(&f));
    let restored = match f.restored {
        Some(true) => "; the warm instance it displaced runs again",
        Some(false) => "; the warm instance it displaced could not be started again, so a rollback will be cold",
        None => "",
    };
    m.fail(
        Phase::Start,
        Error::HealthRolledBack(format!(
            "{name} failed its check in slot {} (port {}): {}; it took no traffic{restored}",
            f.slot, f.port, f.why
        )),
    );
}

/// The last lines of a failed check's output and of the instance's log.
fn failure_output(f: &StartFailure) -> String {
    let tail = |text: &str, n: usize| {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    let mut parts = Vec::new();
    let check = tail(&f.output, 5);
    if !check.is_empty() {
        parts.push(format!("check output:\n{check}"));
    }
    let log = tail(&f.log, 10);
    if !log.is_empty() {
        parts.push(format!("instance log:\n{log}"));
    }
    parts.join("\n")
}

impl Fleet<'_> {
    /// After a switch that did not stand: on every host where this command
    /// started an instance that has no traffic now, stop it and put back
    /// the warm instance it displaced. A host whose session ended (a host
    /// ends it after refusing a request) is reached again, under the lock.
    pub(super) fn abandon_started(&mut self, me: &LockInfo) {
        let out = &self.ctx.out;
        each(&mut self.members, self.parallel, |m| {
            let Some(plan) = m.slots.clone() else { return };
            if !plan.started || m.switched() {
                return;
            }
            // Switched, then back: the proxy may still be finishing with it.
            let drain = m.position() == Some(super::member::Position::SwitchedBack);
            let req = m.service_request(ServiceOp::Abort {
                slot: plan.slot.clone(),
                drain,
            });
            let mut res = match &mut m.session {
                Some(s) if !m.broken => s.service(req.clone()),
                _ => Err(Error::connection("the session ended")),
            };
            if res.as_ref().is_err_and(Error::is_connection) {
                res = m.reopen(me, REOPEN_LOCK_WAIT).and_then(|s| s.service(req));
            }
            match res {
                Ok(r) => {
                    if let Some(note) = r.note {
                        out.info(&format!("{}: {note}", m.spec.label));
                    }
                }
                Err(e) => out.warn(&format!(
                    "{}: could not stop the new instance in slot {}: {}",
                    m.spec.label,
                    plan.slot,
                    e.without_host()
                )),
            }
        });
    }

    /// After a switch that stood: drain and stop each host's old instance,
    /// unless it is kept warm (the host's definition decides).
    pub(super) fn settle_services(&mut self) {
        let out = &self.ctx.out;
        each(&mut self.members, self.parallel, |m| {
            if m.slots.is_none() || !m.switched() {
                return;
            }
            let req = m.service_request(ServiceOp::Settle);
            match m.session().and_then(|s| s.service(req)) {
                Ok(r) => {
                    if let Some(note) = r.note {
                        out.info(&format!("{}: {note}", m.spec.label));
                    }
                }
                Err(e) => out.warn(&format!(
                    "{}: could not stop the old instance: {}",
                    m.spec.label,
                    e.without_host()
                )),
            }
        });
    }
}

/// What `slipway service` does on each host.
#[derive(Debug, Clone)]
pub enum ServiceAction {
    /// Report each slot, running each instance's check once.
    Status,
    /// Start a slot's release (or every slot's) where it is not running.
    Start(Option<String>),
    /// Stop a slot's instance (`true`: even the live one).
    Stop(String, bool),
    /// Stop a slot's instance and start it again, checked.
    Restart(String, bool),
}

/// One host's answer to a [`ServiceAction`]: the slots after it, and the
/// instances that failed their check on the way.
pub type ServiceOutcome = (ServiceReport, Vec<StartFailure>);

impl Fleet<'_> {
    /// Run `action` on every host, in parallel; results in host order.
    pub fn service(&mut self, action: &ServiceAction) -> Vec<(String, crate::error::Result<ServiceOutcome>)> {
        self.connect_all();
        let results = crate::parallel::map(self.members.iter_mut().collect(), self.parallel, |m| {
            match m.error.take() {
                Some(e) => Err(e),
                None => service_on(m, action),
            }
        });
        self.drop_sessions();
        self.members.iter().map(|m| m.spec.label.clone()).zip(results).collect()
    }
}

fn service_on(m: &mut Member, action: &ServiceAction) -> crate::error::Result<ServiceOutcome> {
    if !m.runs_service() {
        return Err(Error::usage(format!(
            "target `{}` has no `[service]` section for this host",
            m.spec.target
        ))
        .on_host(&m.spec.label));
    }
    let ops = match action {
        ServiceAction::Status => vec![ServiceOp::Status {
            check: true,
            strict: false,
        }],
        ServiceAction::Start(Some(slot)) => vec![ServiceOp::StartSlot { slot: slot.clone() }],
        ServiceAction::Start(None) => {
            let req = m.service_request(ServiceOp::Status {
                check: false,
                strict: false,
            });
            let now = m.session()?.service(req)?;
            // The live slot first: it is the one serving.
            let mut slots: Vec<&SlotStatus> = now.slots.iter().filter(|s| s.release.is_some()).collect();
            slots.sort_by_key(|s| !s.live);
            slots
                .into_iter()
                .map(|s| ServiceOp::StartSlot { slot: s.slot.clone() })
                .collect()
        }
        ServiceAction::Stop(slot, force) => vec![ServiceOp::Stop {
            slot: slot.clone(),
            force: *force,
        }],
        ServiceAction::Restart(slot, force) => vec![
            ServiceOp::Stop {
                slot: slot.clone(),
                force: *force,
            },
            ServiceOp::StartSlot { slot: slot.clone() },
        ],
    };
    let mut failures = Vec::new();
    let mut last = None;
    for op in ops {
        let req = m.service_request(op);
        let mut r = m.session()?.service(req)?;
        failures.extend(r.failure.take());
        last = Some(r);
    }
    let last = match last {
        Some(r) => r,
        None => {
            let req = m.service_request(ServiceOp::Status {
                check: false,
                strict: false,
            });
            m.session()?.service(req)?
        }
    };
    Ok((last, failures))
}

impl Fleet<'_> {
    /// `service start|stop|restart --plan`: each host's slots, read without
    /// its lock, and what `action` would do to them in the order the
    /// command does it; the error the command would end with (the first
    /// failed host's, in the target's order, as the command reports it).
    /// Nothing is started, stopped or written; a start is assumed to pass
    /// its check (whether it does is known only by running it).
    pub(super) fn forecast_service(&mut self, action: &ServiceAction) -> (Vec<HostPlan>, crate::error::Result<()>) {
        self.connect_all();
        self.read_states();
        let services = crate::parallel::map(self.members.iter_mut().collect(), self.parallel, |m| {
            forecast_on(m, action)
        });
        let plans = self
            .members
            .iter()
            .zip(services)
            .map(|(m, service)| {
                let failed = m.error.as_ref();
                let current = m.status.as_ref().and_then(|st| st.current.clone());
                HostPlan {
                    host: m.spec.label.clone(),
                    reached: m.status.is_some(),
                    next: current.clone(),
                    current,
                    lacks_objects: None,
                    lacks_bytes: None,
                    signers: None,
                    signed_by: None,
                    prunes: None,
                    steps: service
                        .as_ref()
                        .map(|s| s.steps.iter().map(|s| s.step).collect())
                        .unwrap_or_default(),
                    exit: failed.map_or(0, |e| e.exit() as u8),
                    refused: m.report.reason.clone().filter(|_| failed.is_some()),
                    service,
                }
            })
            .collect();
        let result = match self.members.iter().find_map(|m| m.error.as_ref()) {
            Some(e) => Err(Error::with_exit(e.exit(), e.to_string())),
            None => Ok(()),
        };
        (plans, result)
    }
}

/// The host's slots, read without its lock; `strict`: refused as a change
/// would be when the host has no service definition it may use.
fn status_of(m: &mut Member, strict: bool) -> crate::error::Result<ServiceReport> {
    let req = m.service_request(ServiceOp::Status { check: false, strict });
    m.session().and_then(|s| s.service(req))
}

/// One host's service plan; a refusal is the host's error (the steps
/// before it, which the command takes, stay in the plan).
fn forecast_on(m: &mut Member, action: &ServiceAction) -> Option<ServicePlan> {
    if m.error.is_some() {
        return None;
    }
    if !m.runs_service() {
        let e = Error::usage(format!(
            "target `{}` has no `[service]` section for this host",
            m.spec.target
        ))
        .on_host(&m.spec.label);
        m.refuse(Phase::Done, e);
        return None;
    }
    // The slots, as the command reads them first (a host without a
    // definition it may use still reports them).
    let report = match status_of(m, false) {
        Ok(r) => r,
        Err(e) => {
            m.refuse(Phase::Done, e);
            return None;
        }
    };
    let ops: Vec<(PlanStep, String, bool)> = match action {
        ServiceAction::Status => Vec::new(),
        ServiceAction::Start(Some(slot)) => vec![(PlanStep::Start, slot.clone(), false)],
        ServiceAction::Start(None) => {
            let mut slots: Vec<&SlotStatus> = report.slots.iter().filter(|s| s.release.is_some()).collect();
            slots.sort_by_key(|s| !s.live);
            slots.iter().map(|s| (PlanStep::Start, s.slot.clone(), false)).collect()
        }
        ServiceAction::Stop(slot, force) => vec![(PlanStep::Stop, slot.clone(), *force)],
        ServiceAction::Restart(slot, force) => vec![
            (PlanStep::Stop, slot.clone(), *force),
            (PlanStep::Start, slot.clone(), false),
        ],
    };
    let mut plan = ServicePlan {
        live: report.live.clone(),
        slots: report.slots.clone(),
        steps: Vec::new(),
    };
    if ops.is_empty() {
        return Some(plan);
    }
    // Each change needs the host's definition, then its lock: the first
    // change is refused without them.
    if let Err(e) = status_of(m, true) {
        m.refuse(Phase::Done, e);
        return Some(plan);
    }
    if let Some(holder) = m.status.as_ref().and_then(|st| st.lock.clone()) {
        // As a deploy's plan says it, but `service` has no `--wait`.
        let e = Error::Locked(format!(
            "the host is locked by {}, running `{}` since {}; retry when it is done",
            holder.actor, holder.command, holder.since
        ));
        m.refuse(Phase::Lock, e.on_host(&m.spec.label));
        return Some(plan);
    }
    // Running, or run by a supervisor (slipway cannot tell): as the host counts it.
    let mut up: Vec<(String, bool)> = report
        .slots
        .iter()
        .map(|s| (s.slot.clone(), s.running != Some(false)))
        .collect();
    for (step, slot, force) in ops {
        let release = report
            .slots
            .iter()
            .find(|s| s.slot == slot)
            .and_then(|s| s.release.clone());
        let Some(is_up) = up.iter_mut().find(|(s, _)| *s == slot).map(|(_, u)| u) else {
            continue;
        };
        match step {
            PlanStep::Stop => {
                if !force && report.live.as_deref() == Some(slot.as_str()) {
                    let e = Error::usage(format!(
                        "slot {slot} has the traffic: stopping it leaves the service unserved; pass --force to do it anyway"
                    ))
                    .on_host(&m.spec.label);
                    m.refuse(Phase::Done, e);
                    break;
                }
                if *is_up {
                    plan.steps.push(SlotStep { step, slot, release });
                    *is_up = false;
                }
            }
            _ => {
                if release.is_none() {
                    let e = Error::usage(format!("slot {slot} holds no release")).on_host(&m.spec.label);
                    m.refuse(Phase::Done, e);
                    break;
                }
                if !*is_up {
                    plan.steps.push(SlotStep { step, slot, release });
                    *is_up = true;
                }
            }
        }
    }
    Some(plan)
}
