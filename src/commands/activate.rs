//! `slipway activate REL -t TARGET`: switch `current` on every host, all or nothing.

use crate::Context;
use crate::cli::ActivateArgs;
use crate::error::Result;
use crate::fleet::{Fleet, Goal};

/// # Errors
/// Exit 4 (a lock is held), 6 (`--expect`), 3 (health failed, switched back), 1.
pub fn run(args: &ActivateArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let reason = match &target.config.require_healthy_on {
        Some(_) => {
            let (name, id) = gate_subject(ctx, &args.rel)?;
            super::gate::check(ctx, &target, &name, id, args.override_gate, args.reason.as_deref())?
        }
        None => args.reason.clone(),
    };
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let goal = Goal::Activate {
        release: args.rel.clone(),
        expect: args.expect.clone(),
        again: true,
        reason,
    };
    super::switch_and_report(ctx, &mut fleet, &goal, &args.switch)
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
