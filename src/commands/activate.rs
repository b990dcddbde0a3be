//! `slipway activate REL -t TARGET`: switch `current` on every host, all or
//! nothing. With `--plan`, only what it would do (`commands/plan.rs`).

use crate::Context;
use crate::cli::ActivateArgs;
use crate::error::Result;
use crate::fleet::{Fleet, Forecast, Goal};

use super::plan::{self, GateForecast, Planned};

/// # Errors
/// Exit 4 (a lock is held), 6 (`--expect`), 3 (health failed, switched back), 1.
pub fn run(args: &ActivateArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let gate = match &target.config.require_healthy_on {
        Some(_) => gate_subject(ctx, &args.rel).and_then(|(name, id)| {
            super::gate::check(ctx, &target, &name, id, args.override_gate, args.reason.as_deref())
        }),
        None => Ok(args.reason.clone()),
    };
    let goal = |reason| Goal::Activate {
        release: args.rel.clone(),
        expect: args.expect.clone(),
        again: true,
        reason,
    };
    let mut approved = None;
    if plan::wanted(&args.plan) {
        let what = Forecast {
            job: None,
            goal: Some(goal(None)),
            opts: super::switch_options(&args.switch),
            prune: false,
            prune_only: None,
            service: None,
        };
        let planned = Planned {
            command: "activate",
            release: Some(&args.rel),
            gate: GateForecast::of(&target, &gate),
            gate_error: None,
        };
        let hosts = &args.target.hosts;
        match &args.plan.expect_plan {
            None => {
                let planned = Planned {
                    gate_error: gate.err(),
                    ..planned
                };
                return plan::show(ctx, &target, hosts, planned, &what);
            }
            Some(wanted) if gate.is_ok() => {
                approved = Some(plan::expect(ctx, &target, hosts, wanted, planned, &what)?);
            }
            Some(_) => {}
        }
    }
    let reason = gate?;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    super::switch_and_report(ctx, &mut fleet, &goal(reason), &args.switch, approved)
}

/// The name and id behind REL, from the local store (a gate is checked by id).
fn gate_subject(ctx: &Context, rel: &str) -> Result<(String, crate::digest::Digest)> {
    let store = ctx.store()?;
    let (id, record) = store.resolve(rel).map_err(|e| {
        crate::error::Error::other(format!(
            "cannot check the promotion gate: {e}; import the bundle of `{rel}` first"
        ))
    })?;
    Ok((record.map(|r| r.name).unwrap_or_else(|| rel.to_string()), id))
}
