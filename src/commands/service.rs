//! `slipway service status|start|stop|restart -t TARGET`: the service
//! slots of a target's hosts (docs/ab-deploys.md), without SSHing in.
//! `start`, `stop` and `restart` have a `--plan` (`commands/plan.rs`).

use serde::Serialize;

use crate::Context;
use crate::cli::{PlanArgs, ServiceArgs, ServiceCommand};
use crate::error::{Error, Result};
use crate::fleet::{Fleet, Forecast, ServiceAction, SwitchOptions};
use crate::protocol::{ServiceReport, StartFailure};

#[derive(Serialize)]
struct HostJson {
    host: String,
    #[serde(flatten)]
    report: Option<ServiceReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<StartFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// # Errors
/// Exit 2 for a target without `[service]` or a missing `--slot`; 3 when
/// an instance failed its check; 4 when a host's lock is held; 1 when a
/// host cannot be reached, or (for `status`) its live instance is not
/// running or fails its check; with `--expect-plan`, 6 when the plan moved.
pub fn run(cmd: &ServiceCommand, ctx: &Context) -> Result<()> {
    let (args, action, plan, verb) = match cmd {
        ServiceCommand::Status(a) => (a, ServiceAction::Status, None, "status"),
        ServiceCommand::Start(a) => (
            &a.service,
            ServiceAction::Start(a.service.slot.clone()),
            Some(&a.plan),
            "start",
        ),
        ServiceCommand::Stop(a) => (
            &a.service,
            ServiceAction::Stop(slot(&a.service, "stop")?, a.service.force),
            Some(&a.plan),
            "stop",
        ),
        ServiceCommand::Restart(a) => (
            &a.service,
            ServiceAction::Restart(slot(&a.service, "restart")?, a.service.force),
            Some(&a.plan),
            "restart",
        ),
    };
    let mut target = super::load_target(ctx, &args.target.target)?;
    // A target without `[service]` (an ssh:// URL or a path, say) uses
    // each host's own `.slipway/service.toml`: what `@reboot` runs.
    if target.hosts.iter().all(|h| h.service.is_none()) {
        for h in &mut target.hosts {
            h.service = crate::config::ServiceMode::HostDefined;
        }
    }
    if let Some(plan) = plan.filter(|p| super::plan::wanted(p)) {
        planned(ctx, &target, args, plan, &action, verb)?;
        if plan.plan {
            return Ok(());
        }
    }
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let mut first_error = None;
    let mut rows = Vec::new();
    for (host, r) in fleet.service(&action) {
        match r {
            Ok((report, failures)) => {
                if let Some(f) = failures.first() {
                    first_error.get_or_insert(Error::HealthRolledBack(format!(
                        "{host}: the instance in slot {} (port {}) failed its check: {}",
                        f.slot, f.port, f.why
                    )));
                }
                if matches!(action, ServiceAction::Status)
                    && let Some(why) = live_problem(&report)
                {
                    first_error.get_or_insert(Error::other(format!("{host}: {why}")));
                }
                rows.push(HostJson {
                    host,
                    report: Some(report),
                    failures,
                    error: None,
                });
            }
            Err(e) => {
                rows.push(HostJson {
                    host,
                    report: None,
                    failures: Vec::new(),
                    error: Some(e.without_host().to_string()),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    if ctx.out.json {
        ctx.out.json_value(&rows);
    } else {
        print_text(ctx, &rows);
    }
    first_error.map_or(Ok(()), Err)
}

/// `--plan` (print it, and end as the command would), or `--expect-plan`
/// (go on only when the plan is still that one). The plan is checked
/// before the command's first request: a change made in between is not
/// seen (docs/ab-deploys.md says so).
fn planned(
    ctx: &Context,
    target: &crate::remote::Target,
    args: &ServiceArgs,
    plan: &PlanArgs,
    action: &ServiceAction,
    verb: &str,
) -> Result<()> {
    let command = format!("service {verb}");
    let planned = super::plan::Planned {
        command: &command,
        release: None,
        gate: None,
        gate_error: None,
    };
    let what = Forecast {
        job: None,
        goal: None,
        opts: SwitchOptions::default(),
        prune: false,
        prune_only: None,
        service: Some(action.clone()),
    };
    let hosts = &args.target.hosts;
    match &plan.expect_plan {
        None => super::plan::show(ctx, target, hosts, planned, &what),
        Some(wanted) => super::plan::expect(ctx, target, hosts, wanted, planned, &what).map(drop),
    }
}

fn slot(a: &ServiceArgs, verb: &str) -> Result<String> {
    a.slot
        .clone()
        .ok_or_else(|| Error::usage(format!("`service {verb}` needs `--slot a` or `--slot b`")))
}

/// What is wrong with the slot that has the traffic, if anything.
fn live_problem(r: &ServiceReport) -> Option<String> {
    let live = r.slots.iter().find(|s| s.live)?;
    if live.running == Some(false) {
        return Some(format!(
            "the instance in slot {} has the traffic but is not running; start it with `slipway service start`",
            live.slot
        ));
    }
    (live.check == Some(false))
        .then(|| format!("the instance in slot {} has the traffic but fails its check", live.slot))
}

fn print_text(ctx: &Context, rows: &[HostJson]) {
    let out = &ctx.out;
    let w = rows.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
    out.data(&format!(
        "{:<w$}  SLOT  {:<20} {:<6} {:<8} {:<7} {:<8} SINCE",
        "HOST", "RELEASE", "PORT", "INSTANCE", "CHECK", "TRAFFIC"
    ));
    for r in rows {
        let Some(report) = &r.report else {
            out.data(&format!("{:<w$}  error: {}", r.host, r.error.as_deref().unwrap_or("")));
            continue;
        };
        for s in &report.slots {
            let instance = match (s.running, s.pid) {
                (Some(true), Some(pid)) => format!("pid {pid}"),
                (Some(true), None) => "running".into(),
                (Some(false), _) => "stopped".into(),
                (None, _) => "managed".into(),
            };
            let check = match s.check {
                Some(true) => "ok",
                Some(false) => "FAILING",
                None => "-",
            };
            out.data(&format!(
                "{:<w$}  {:<4}  {:<20} {:<6} {:<8} {:<7} {:<8} {}",
                r.host,
                s.slot,
                s.release.as_deref().unwrap_or("-"),
                s.port.map_or("-".to_string(), |p| p.to_string()),
                instance,
                check,
                if s.live { "live" } else { "-" },
                s.since.as_deref().unwrap_or("-"),
            ));
        }
        if let Some(note) = &report.note {
            out.info(&format!("{}: {note}", r.host));
        }
        for f in &r.failures {
            out.info(&format!(
                "{}: slot {} (port {}) failed its check: {}",
                r.host, f.slot, f.port, f.why
            ));
            for line in f.log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
                out.info(&format!("{}:   | {line}", r.host));
            }
        }
    }
}
