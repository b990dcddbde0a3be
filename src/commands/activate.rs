//! `slipway activate REL -t TARGET`: switch `current` on every host, all or nothing.

use std::time::Duration;

use crate::Context;
use crate::cli::ActivateArgs;
use crate::error::Result;
use crate::fleet::{Fleet, Goal, SwitchOptions, print_reports};

/// # Errors
/// Exit 4 (a lock is held), 6 (`--expect`), 3 (health failed, switched back), 1.
pub fn run(args: &ActivateArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let goal = Goal::Activate {
        release: args.rel.clone(),
        expect: args.expect.clone(),
        again: true,
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
