//! `slipway rollback -t TARGET [--to REL]`: back to the previous good release
//! on every host, one rename each, all or nothing.

use crate::Context;
use crate::cli::RollbackArgs;
use crate::error::Result;
use crate::fleet::{Fleet, Goal};

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
    super::switch_and_report(ctx, &mut fleet, &goal, &args.switch)
}
