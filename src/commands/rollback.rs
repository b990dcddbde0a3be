//! `slipway rollback -t TARGET [--to REL]`: back to the previous good release
//! on every host, one rename each, all or nothing.

use std::time::Duration;

use crate::Context;
use crate::cli::RollbackArgs;
use crate::error::Result;
use crate::fleet::{Fleet, Goal, SwitchOptions, print_reports};

/// # Errors
/// Nothing to roll back to, hosts that disagree (without `--to`), a held lock (4).
pub fn run(args: &RollbackArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let goal = Goal::Rollback {
        to: args.to.clone(),
        expect: args.expect.clone(),
        reason: args.reason.clone(),
    };
    let opts = SwitchOptions {
        wait: args.switch.wait.map(Duration::from_secs),
        skip_unreachable: args.switch.skip_unreachable,
        batch: None,
        prune_keep: None,
        command: super::command_line(),
    };
    let result = fleet.switch(&goal, &opts);
    print_reports(ctx, &fleet.reports());
    result
}
