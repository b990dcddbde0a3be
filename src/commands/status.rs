//! `slipway status -t TARGET`: what each host runs, its rollback target, its
//! releases and its lock; on a fleet, a converged/diverged line first.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Context;
use crate::cli::StatusArgs;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::protocol::HostStatus;

#[derive(Serialize)]
struct HostJson {
    host: String,
    #[serde(flatten)]
    status: Option<HostStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// # Errors
/// When a host cannot be reached (the others are still shown).
pub fn run(args: &StatusArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let results = fleet.query(|s| s.status());
    let mut first_error = None;
    let mut rows = Vec::new();
    for (host, r) in results {
        match r {
            Ok(st) => rows.push(HostJson {
                host,
                status: Some(st),
                error: None,
            }),
            Err(e) => {
                rows.push(HostJson {
                    host,
                    status: None,
                    // `host` names it already.
                    error: Some(e.without_host().to_string()),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    if ctx.out.json {
        ctx.out.json_value(&rows);
    } else {
        print_text(ctx, &rows);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn print_text(ctx: &Context, rows: &[HostJson]) {
    let out = &ctx.out;
    if rows.len() > 1 {
        out.data(&summary(rows));
        out.data("");
    }
    for r in rows {
        let Some(st) = &r.status else {
            out.data(&format!(
                "{}: unreachable: {}",
                r.host,
                r.error.as_deref().unwrap_or("")
            ));
            continue;
        };
        let current = match (&st.current, &st.current_id) {
            (Some(c), Some(id)) => format!("{c} ({})", super::short_id(id)),
            (Some(c), None) => c.clone(),
            _ => "none".into(),
        };
        out.data(&r.host);
        out.data(&format!("  current   {current}"));
        out.data(&format!(
            "  previous  {}",
            st.previous.as_deref().unwrap_or("none (nothing to roll back to)")
        ));
        if let Some(svc) = &st.service {
            for slot in &svc.slots {
                let instance = match (slot.running, slot.pid) {
                    (Some(true), Some(pid)) => format!("running (pid {pid})"),
                    (Some(true), None) => "running".into(),
                    (Some(false), _) => "stopped".into(),
                    (None, _) => "run by its supervisor".into(),
                };
                out.data(&format!(
                    "  slot {}    {}  port {}  {instance}{}",
                    slot.slot,
                    slot.release.as_deref().unwrap_or("empty"),
                    slot.port.map_or("-".to_string(), |p| p.to_string()),
                    if slot.live { "  [traffic]" } else { "" }
                ));
            }
        }
        if let Some(since) = &st.paused_since {
            out.data(&format!(
                "  intake    PAUSED since {since} (the next command on this host resumes it)"
            ));
        }
        if let Some(m) = &st.migration {
            out.data(&format!(
                "  database  {} {} of {}{}{} at {}",
                m.kind,
                m.state,
                m.release,
                m.schema
                    .as_deref()
                    .map(|s| format!(" (schema {s})"))
                    .unwrap_or_default(),
                m.backup.as_deref().map(|b| format!(", backup {b}")).unwrap_or_default(),
                m.time
            ));
        }
        if let Some(l) = &st.lock {
            out.data(&format!("  lock      held by {l}"));
        }
        for w in &st.warnings {
            out.data(&format!("  warning   {w}"));
        }
        for rel in &st.releases {
            let mut marks = Vec::new();
            if st.current.as_deref() == Some(rel.name.as_str()) {
                marks.push("current".to_string());
            }
            if rel.bad {
                marks.push("bad".into());
            }
            if !rel.complete {
                marks.push("incomplete".into());
            }
            if let Some(signer) = &rel.signed_by {
                marks.push(format!("signed by {}", signer.principal));
            }
            out.data(&format!(
                "  {:<20} {}  {:>10}  pushed {} by {}{}",
                rel.name,
                super::short_id(&rel.id),
                crate::output::human_bytes(rel.size),
                rel.pushed_at.as_deref().unwrap_or("-"),
                rel.pushed_by.as_deref().unwrap_or("-"),
                if marks.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", marks.join(", "))
                }
            ));
        }
    }
}

/// `converged: …` or `diverged: …` — which hosts are not on the release most hosts run.
fn summary(rows: &[HostJson]) -> String {
    let mut counts: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in rows {
        let cur = match &r.status {
            Some(st) => st.current.clone().unwrap_or_else(|| "(none)".into()),
            None => "(unreachable)".into(),
        };
        counts.entry(cur).or_default().push(&r.host);
    }
    let Some((majority, _)) = counts
        .iter()
        .filter(|(k, _)| k.as_str() != "(unreachable)")
        .max_by_key(|(_, hosts)| hosts.len())
    else {
        return "diverged: no host could be reached".into();
    };
    if counts.len() == 1 {
        return format!("converged: all {} hosts on {majority}", rows.len());
    }
    let others: Vec<String> = counts
        .iter()
        .filter(|(k, _)| *k != majority)
        .map(|(k, hosts)| format!("{} on {k}", hosts.join(", ")))
        .collect();
    format!(
        "diverged: {} of {} hosts on {majority}; {}",
        counts[majority].len(),
        rows.len(),
        others.join("; ")
    )
}
