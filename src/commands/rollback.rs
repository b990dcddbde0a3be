//! `slipway rollback -t TARGET [--to REL]`: back to the previous good release
//! on every host, one rename each, all or nothing. With `--plan`, only what
//! it would do (`commands/plan.rs`).

use crate::Context;
use crate::cli::RollbackArgs;
use crate::error::Result;
use crate::fleet::{Fleet, Forecast, Goal};

use super::plan::{self, Planned};

/// # Errors
/// Nothing to roll back to, hosts that disagree (without `--to`), a held lock (4).
pub fn run(args: &RollbackArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let mut approved = None;
    if plan::wanted(&args.plan) {
        let what = Forecast {
            job: None,
            goal: Some(Goal::Rollback {
                to: args.to.clone(),
                expect: args.expect.clone(),
                reason: None,
            }),
            opts: super::switch_options(&args.switch),
            prune: false,
            prune_only: None,
            service: None,
        };
        let planned = Planned {
            command: "rollback",
            release: args.to.as_deref(),
            gate: None,
            gate_error: None,
        };
        let hosts = &args.target.hosts;
        match &args.plan.expect_plan {
            None => return plan::show(ctx, &target, hosts, planned, &what),
            Some(wanted) => approved = Some(plan::expect(ctx, &target, hosts, wanted, planned, &what)?),
        }
    }
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let goal = Goal::Rollback {
        to: args.to.clone(),
        expect: args.expect.clone(),
        reason: args.reason.clone(),
    };
    super::switch_and_report(ctx, &mut fleet, &goal, &args.switch, approved)
}
