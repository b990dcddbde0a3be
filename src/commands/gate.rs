//! Promotion gates: a target with `require_healthy_on = "staging"` accepts
//! only bundle ids that were activated and passed their health check on every
//! host of `staging`, according to those hosts' histories (`healthy` records).

use crate::Context;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::remote::Target;

/// Check `target`'s gate for bundle `id` (release `name`). Returns the reason
/// to record in the history when the gate is overridden.
///
/// # Errors
/// Exit 1 naming the gate and the hosts where `id` has not passed; exit 2 for
/// `--override-gate` without `--reason`.
pub fn check(
    ctx: &Context,
    target: &Target,
    name: &str,
    id: Digest,
    override_gate: bool,
    reason: Option<&str>,
) -> Result<Option<String>> {
    let Some(gate) = target.config.require_healthy_on.clone() else {
        return Ok(reason.map(str::to_string));
    };
    if override_gate {
        let why = reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
            Error::usage("`--override-gate` needs `--reason \"...\"`: the reason is recorded in the history")
        })?;
        ctx.out.warn(&format!(
            "overriding the gate of `{}` (require_healthy_on = \"{gate}\"): {why}",
            target.name
        ));
        return Ok(Some(format!("gate `{gate}` overridden: {why}")));
    }
    if gate == target.name {
        return Err(Error::usage(format!(
            "target `{}` cannot require itself (`require_healthy_on = \"{gate}\"`)",
            target.name
        )));
    }
    let gate_target = super::load_target(ctx, &gate).map_err(|e| {
        Error::usage(format!(
            "target `{}` requires `{gate}` (require_healthy_on), which cannot be used: {e}",
            target.name
        ))
    })?;
    let mut fleet = Fleet::new(ctx, &gate_target, &[])?;
    let results = fleet.query(|s| s.history_of(id));
    let mut missing = Vec::new();
    for (host, r) in results {
        match r {
            Ok(records) if records.iter().any(|r| r.action == "healthy" && r.id == id) => {}
            Ok(_) => missing.push(host),
            // Nothing was ever pushed there: not healthy, but reachable.
            Err(e) if e.is_root_missing() => missing.push(host),
            Err(e) => missing.push(format!("{host} (unreachable: {})", e.without_host())),
        }
    }
    if missing.is_empty() {
        return Ok(reason.map(str::to_string));
    }
    Err(Error::other(format!(
        "gate: `{}` requires a bundle healthy on every host of `{gate}`, and `{name}` ({id}) has not passed its health check on {}; deploy it to `{gate}` first, or pass `--override-gate --reason \"...\"`",
        target.name,
        missing.join(", ")
    )))
}
