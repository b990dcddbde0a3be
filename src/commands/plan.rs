//! `--plan` and `--expect-plan ID` of the commands that change hosts
//! (`push`, `deploy`, `activate`, `rollback`, `prune`, `service
//! start|stop|restart`): show what the command would
//! do on each host, or check that it still would, before it does anything.
//!
//! The plan is found by [`crate::fleet::Fleet::forecast`] (read-only on
//! every host); this file prints it (`docs/json.md`, "`slipway deploy|push|
//! activate|rollback|prune|service … --plan --json`") and hashes it into its id.
//! Invariant: the id covers everything the plan shows and nothing that
//! depends on the machine or the clock, so the same state of the same
//! hosts gives the same id to every operator.

use serde::Serialize;

use crate::Context;
use crate::cli::PlanArgs;
use crate::error::{Error, Result};
use crate::fleet::{Approved, DbForecast, Fleet, Forecast, HostPlan, ServicePlan, plan_id, steps_text};
use crate::output::human_bytes;
use crate::remote::Target;

/// The promotion gate, as the plan shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GateForecast {
    /// The target whose hosts must have run the bundle healthy (`require_healthy_on`).
    pub required: String,
    /// Met (or overridden): the command would go on.
    pub met: bool,
    /// Why not, when not met.
    pub reason: Option<String>,
}

impl GateForecast {
    /// The gate of `target` after its check ended with `checked` (`None`: no gate).
    pub fn of<T>(target: &Target, checked: &Result<T>) -> Option<GateForecast> {
        let required = target.config.require_healthy_on.clone()?;
        Some(GateForecast {
            required,
            met: checked.is_ok(),
            reason: checked.as_ref().err().map(ToString::to_string),
        })
    }
}

/// What a plan shows, in the order `--json` prints it; its id is the hash
/// of all of it.
#[derive(Debug, Serialize)]
struct Shown<'a> {
    command: &'a str,
    target: &'a str,
    release: Option<&'a str>,
    /// The exit code the command would end with (0: it would succeed).
    exit: u8,
    gate: Option<GateForecast>,
    database: Option<DbForecast>,
    hosts: Vec<HostPlan>,
}

/// `--plan --json`: the plan's id first, then what it shows.
#[derive(Serialize)]
struct PlanJson<'a> {
    plan: &'a str,
    #[serde(flatten)]
    shown: &'a Shown<'a>,
}

/// A command that changes hosts, as its plan names it.
pub struct Planned<'a> {
    pub command: &'a str,
    pub release: Option<&'a str>,
    /// The gate's check, run as the command runs it (before any host).
    pub gate: Option<GateForecast>,
    /// The error that check ended with: the plan's own, before any host's.
    pub gate_error: Option<Error>,
}

/// Find the plan of `what` on `target`'s hosts: its id, what it shows, and
/// the error the command would end with.
fn forecast(
    ctx: &Context,
    target: &Target,
    hosts: &[String],
    planned: Planned<'_>,
    what: &Forecast<'_>,
) -> Result<(String, String, Result<()>, Approved)> {
    let mut fleet = Fleet::new(ctx, target, hosts)?;
    let (mut hosts, database, result) = fleet.forecast(what);
    let result = match planned.gate_error {
        // The gate is checked before any host is contacted: nothing runs anywhere.
        Some(e) => {
            for h in &mut hosts {
                h.steps.clear();
                h.next.clone_from(&h.current);
            }
            Err(e)
        }
        None => result,
    };
    let shown = Shown {
        command: planned.command,
        target: &target.name,
        release: planned.release,
        exit: result.as_ref().err().map_or(0, |e| e.exit() as u8),
        gate: planned.gate,
        database,
        hosts,
    };
    let id = plan_id(&shown);
    let approved = shown
        .hosts
        .iter()
        .map(|h| (h.host.clone(), h.current.clone()))
        .collect();
    let printed = if ctx.out.json {
        serde_json::to_string_pretty(&PlanJson {
            plan: &id,
            shown: &shown,
        })
        .map_err(Error::Encode)?
    } else {
        text(&shown, &id)
    };
    Ok((id, printed, result, approved))
}

/// `--plan`: print the plan and end as the command would (its exit code),
/// having changed nothing.
///
/// # Errors
/// The error the command would end with; a target that cannot be used.
pub fn show(ctx: &Context, target: &Target, hosts: &[String], planned: Planned<'_>, what: &Forecast<'_>) -> Result<()> {
    let (_, printed, result, _) = forecast(ctx, target, hosts, planned, what)?;
    for line in printed.lines() {
        ctx.out.data(line);
    }
    result
}

/// `--expect-plan ID`: the plan found now must have that id. Returns the
/// release each host runs in it, which a switch checks again under the
/// hosts' locks ([`crate::fleet::SwitchOptions::approved`]).
///
/// # Errors
/// Exit 6 when it does not (nothing was changed on any host).
pub fn expect(
    ctx: &Context,
    target: &Target,
    hosts: &[String],
    wanted: &str,
    planned: Planned<'_>,
    what: &Forecast<'_>,
) -> Result<Approved> {
    let command = planned.command.to_string();
    let (id, _, _, approved) = forecast(ctx, target, hosts, planned, what)?;
    if id.eq_ignore_ascii_case(wanted.trim()) {
        return Ok(approved);
    }
    Err(Error::ExpectMismatch(format!(
        "the plan of this {command} is now {id}, not {wanted} (--expect-plan): something changed on the hosts of `{}` since it was shown; nothing was changed. See what with `--plan`",
        target.name
    )))
}

/// A host's slots and the service steps, for the text output
/// (`slots: a v1 running live, b v2 stopped; steps: start b (v2)`).
fn service_text(sv: &ServicePlan) -> Vec<String> {
    let slots: Vec<String> = sv
        .slots
        .iter()
        .map(|s| {
            let state = match s.running {
                Some(true) => "running",
                Some(false) => "stopped",
                None => "managed",
            };
            let live = if s.live { " live" } else { "" };
            format!("{} {} {state}{live}", s.slot, s.release.as_deref().unwrap_or("(empty)"))
        })
        .collect();
    let steps: Vec<String> = sv
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} {} ({})",
                steps_text(&[s.step]),
                s.slot,
                s.release.as_deref().unwrap_or("-")
            )
        })
        .collect();
    vec![
        format!("slots: {}", slots.join(", ")),
        if steps.is_empty() {
            "steps: none".to_string()
        } else {
            format!("steps: {}", steps.join(", "))
        },
    ]
}

/// Whether `args` asks for a plan (`--plan`) or checks one (`--expect-plan`).
pub fn wanted(args: &PlanArgs) -> bool {
    args.plan || args.expect_plan.is_some()
}

/// The plan as text: one line per host, then the gate, the database and
/// the verdict, then its id.
fn text(shown: &Shown<'_>, id: &str) -> String {
    let mut lines = Vec::new();
    let what = match shown.release {
        Some(r) => format!("{} {r}", shown.command),
        None => shown.command.to_string(),
    };
    lines.push(format!("plan of `{what}` on `{}` (nothing was changed):", shown.target));
    for h in &shown.hosts {
        let now = h.current.as_deref().unwrap_or("(none)");
        let mut parts = Vec::new();
        match (&h.refused, &h.next) {
            (Some(why), _) => parts.push(format!("refused (exit {}): {why}", h.exit)),
            (None, _) if !h.reached => parts.push("not reached: left out (--skip-unreachable)".to_string()),
            (None, Some(next)) if h.current.as_ref() == Some(next) => parts.push(format!("stays on {now}")),
            (None, Some(next)) => parts.push(format!("{now} -> {next}")),
            (None, None) => parts.push(now.to_string()),
        }
        if let (Some(objects), Some(bytes)) = (h.lacks_objects, h.lacks_bytes) {
            parts.push(format!("lacks {objects} object(s), {}", human_bytes(bytes)));
        }
        if let Some(s) = h.signers {
            let by = h.signed_by.as_deref().map(|b| format!(" ({b})")).unwrap_or_default();
            parts.push(format!(
                "signatures: {}{by}",
                match s {
                    crate::fleet::Signers::NotEnforced => "not enforced",
                    crate::fleet::Signers::Accepted => "accepted",
                    crate::fleet::Signers::Refused => "refused",
                }
            ));
        }
        if let Some(p) = &h.prunes {
            let rels = if p.releases.is_empty() {
                "no releases".to_string()
            } else {
                p.releases.join(", ")
            };
            parts.push(format!(
                "would remove {rels}; {} object(s), {}; {} staging leftover(s)",
                p.objects,
                human_bytes(p.object_bytes),
                p.tmp_entries
            ));
        }
        match &h.service {
            Some(sv) => parts.extend(service_text(sv)),
            None if !h.steps.is_empty() => parts.push(format!("steps: {}", steps_text(&h.steps))),
            None => {}
        }
        lines.push(format!("  {}: {}", h.host, parts.join("; ")));
    }
    if let Some(g) = &shown.gate {
        lines.push(match &g.reason {
            None => format!("gate: `{}` met", g.required),
            Some(why) => format!("gate: `{}` not met: {why}", g.required),
        });
    }
    if let Some(d) = &shown.database {
        let schemas = match (&d.schema, &d.db_schema) {
            (Some(s), Some(db)) => format!(" (database at schema {db}, release expects {s})"),
            _ if !d.known => " (schemas are read once the release is staged there)".to_string(),
            _ => String::new(),
        };
        lines.push(match d.runs {
            Some(step) => format!("database: {} on {}{schemas}", steps_text(&[step]), d.on),
            None => format!("database: no migration{schemas}"),
        });
    }
    lines.push(match shown.exit {
        0 => "the command would succeed".to_string(),
        code => format!("the command would be refused (exit {code})"),
    });
    lines.push(format!("plan id: {id}"));
    lines.join("\n")
}
