//! `slipway provenance [REL] -t TARGET`: what exactly runs on a target and
//! where it came from — id, tag, commit, builder, signer, where it passed its
//! health check (the promotion gate), and when it went live on each host.

use serde::Serialize;

use crate::Context;
use crate::cli::ProvenanceArgs;
use crate::digest::{Digest, looks_like_id};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::protocol::{HostStatus, Record, Signer};
use crate::provenance::Provenance;

#[derive(Serialize)]
struct HostLive {
    host: String,
    /// Whether the release is current there now.
    current: bool,
    /// What is current there.
    current_release: Option<String>,
    /// Every time it became current there (oldest first).
    activated_at: Vec<String>,
}

#[derive(Serialize)]
struct Tested {
    target: String,
    host: String,
    healthy_at: Option<String>,
}

#[derive(Serialize)]
struct Report {
    release: String,
    id: Digest,
    provenance: Option<Provenance>,
    signed_by: Option<Signer>,
    tested_on: Vec<Tested>,
    hosts: Vec<HostLive>,
    /// History reasons recorded with its activations (gate overrides, rollbacks).
    reasons: Vec<String>,
}

/// # Errors
/// When the release is on no host of the target, or a host is unreachable.
pub fn run(args: &ProvenanceArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let mut hosts: Vec<(String, HostStatus, Vec<Record>)> = Vec::new();
    for (host, r) in fleet.query(|s| s.status()) {
        hosts.push((host, r?, Vec::new()));
    }
    let wanted = match &args.rel {
        Some(r) => r.clone(),
        None => hosts
            .iter()
            .find_map(|(_, st, _)| st.current.clone())
            .ok_or_else(|| Error::NothingCurrent {
                target: target.name.clone(),
            })?,
    };
    let found = hosts.iter().find_map(|(_, st, _)| {
        st.releases
            .iter()
            .find(|r| r.name == wanted || (looks_like_id(&wanted) && r.id.matches_prefix(&wanted)))
            .cloned()
    });
    let Some(rel) = found else {
        return Err(Error::ReleaseOnNoHost {
            release: wanted,
            target: target.name.clone(),
        });
    };
    // Only this bundle's records: the host filters, so a long log costs little.
    for ((_, _, hist), (_, r)) in hosts.iter_mut().zip(fleet.query(|s| s.history_of(rel.id))) {
        *hist = r?;
    }
    let mut report = Report {
        release: rel.name.clone(),
        id: rel.id,
        provenance: rel.provenance.clone(),
        signed_by: rel.signed_by.clone(),
        tested_on: Vec::new(),
        hosts: Vec::new(),
        reasons: Vec::new(),
    };
    for (host, st, hist) in &hosts {
        let mine: Vec<&Record> = hist
            .iter()
            .rev()
            .filter(|r| r.id == rel.id && r.action != "healthy")
            .collect();
        for r in &mine {
            if let Some(reason) = &r.reason {
                report.reasons.push(format!("{host} {}: {reason}", r.time));
            }
        }
        report.hosts.push(HostLive {
            host: host.clone(),
            current: st.current_id == Some(rel.id),
            current_release: st.current.clone(),
            activated_at: mine.iter().map(|r| r.time.clone()).collect(),
        });
    }
    if let Some(gate) = &target.config.require_healthy_on
        && let Ok(gate_target) = super::load_target(ctx, gate)
    {
        let mut gf = Fleet::new(ctx, &gate_target, &[])?;
        for (host, r) in gf.query(|s| s.history_of(rel.id)) {
            let healthy_at = r.ok().and_then(|recs| {
                recs.into_iter()
                    .find(|x| x.action == "healthy" && x.id == rel.id)
                    .map(|x| x.time)
            });
            report.tested_on.push(Tested {
                target: gate.clone(),
                host,
                healthy_at,
            });
        }
    }
    if ctx.out.json {
        ctx.out.json_value(&report);
        return Ok(());
    }
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
    line(
        "signed by",
        report
            .signed_by
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "not checked (no allowed_signers on the host)".into()),
    );
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
    Ok(())
}
