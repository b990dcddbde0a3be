//! `slipway provenance [REL] -t TARGET`: what exactly runs on a target and
//! where it came from — id, tag, commit, builder, signer, where it passed its
//! health check (the promotion gate), and when it went live on each host.

use crate::Context;
use crate::cli::ProvenanceArgs;
use crate::error::Result;
use crate::fleet::{Fleet, provenance};

/// # Errors
/// When the release is on no host of the target, or a host is unreachable.
pub fn run(args: &ProvenanceArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let mut report = provenance::gather(&mut fleet, &target.name, args.rel.as_deref())?;
    if let Some(gate) = &target.config.require_healthy_on
        && let Ok(gate_target) = super::load_target(ctx, gate)
    {
        let mut gate_fleet = Fleet::new(ctx, &gate_target, &[])?;
        report.tested_on = provenance::tested_on(&mut gate_fleet, gate, report.id);
        for other in &mut report.others {
            other.tested_on = provenance::tested_on(&mut gate_fleet, gate, other.id);
        }
    }
    if ctx.out.json {
        ctx.out.json_value(&report);
        return Ok(());
    }
    print(ctx, &report);
    if !report.others.is_empty() {
        let names: Vec<&str> = std::iter::once(report.release.as_str())
            .chain(report.others.iter().map(|o| o.release.as_str()))
            .collect();
        ctx.out.warn(&format!(
            "the hosts of `{}` run different releases ({}): each is shown",
            target.name,
            names.join(", ")
        ));
    }
    for other in &report.others {
        ctx.out.data("");
        print(ctx, other);
    }
    Ok(())
}

/// One release's report, as text.
fn print(ctx: &Context, report: &provenance::Report) {
    let line = |k: &str, v: String| ctx.out.data(&format!("{k:<11}{v}"));
    line("release", report.release.clone());
    line("id", report.id.to_string());
    if let Some(p) = &report.provenance {
        if let Some(tag) = &p.tag {
            line("tag", format!("{tag} (commit {})", p.commit.as_deref().unwrap_or("?")));
        }
        if let Some(dir) = &p.dir {
            line("directory", dir.clone());
        }
        line(
            "built",
            format!(
                "by {} at {} with slipway {}",
                p.builder, p.finished_at, p.slipway_version
            ),
        );
        if let Some(c) = &p.build_command {
            line("command", c.clone());
        }
    }
    // Each host's allowed_signers decides; when they disagree, say so per host.
    let staged: Vec<&provenance::HostLive> = report.hosts.iter().filter(|h| h.has_release).collect();
    let agree = staged.windows(2).all(|w| w[0].signed_by == w[1].signed_by);
    let signer = |s: &Option<crate::protocol::Signer>| {
        s.as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "not checked (no allowed_signers on the host)".into())
    };
    if agree {
        line("signed by", signer(&report.signed_by));
    } else {
        for h in &staged {
            line("signed by", format!("{}: {}", h.host, signer(&h.signed_by)));
        }
    }
    if report.tested_on.is_empty() {
        line("tested on", "no promotion gate on this target".into());
    }
    for t in &report.tested_on {
        line(
            "tested on",
            format!(
                "{} {}: {}",
                t.target,
                t.host,
                t.healthy_at
                    .as_deref()
                    .map(|h| format!("healthy at {h}"))
                    .unwrap_or_else(|| "never healthy".into())
            ),
        );
    }
    for h in &report.hosts {
        let state = if h.current {
            format!(
                "current, live since {}",
                h.activated_at.last().map(String::as_str).unwrap_or("?")
            )
        } else {
            format!("not current (on {})", h.current_release.as_deref().unwrap_or("nothing"))
        };
        line("host", format!("{}: {state}", h.host));
    }
    for r in &report.reasons {
        line("note", r.clone());
    }
}
