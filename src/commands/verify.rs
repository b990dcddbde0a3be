//! `slipway verify REL`: re-hash a stored bundle (exit 5 on any mismatch).

use crate::Context;
use crate::bundle::unpack::{VerifyOnly, read_bundle};
use crate::cli::VerifyArgs;
use crate::error::{Error, Result};

/// # Errors
/// Integrity error naming the first bad path or the damage.
pub fn run(args: &VerifyArgs, ctx: &Context) -> Result<()> {
    if let Some(t) = &args.target {
        return on_target(args, t, ctx);
    }
    let rel = args.rel.clone().unwrap_or_default();
    let store = ctx.store()?;
    let (id, record) = store.resolve(&rel)?;
    let path = store.bundle_path(&id);
    let (m, got) = read_bundle(crate::fs::open(&path)?, &path.display().to_string(), &mut VerifyOnly)?;
    if got != id {
        return Err(Error::integrity(format!(
            "bundle `{}` holds {got}, not {id}",
            path.display()
        )));
    }
    store.manifest(&id)?;
    let name = record.map(|r| r.name).unwrap_or_else(|| id.to_string());
    if ctx.out.json {
        ctx.out
            .json_value(&serde_json::json!({"release": name, "id": id, "ok": true, "entries": m.entries.len()}));
    } else {
        ctx.out
            .data(&format!("ok {name} {id} ({} entries verified)", m.entries.len()));
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct HostVerify {
    host: String,
    ok: bool,
    releases: Vec<String>,
    drift: Vec<crate::protocol::Drift>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `verify -t TARGET [REL]`: re-hash release trees on the hosts.
fn on_target(args: &VerifyArgs, target: &str, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, target)?;
    let mut fleet = crate::fleet::Fleet::new(ctx, &target, &args.hosts)?;
    let rel = args.rel.clone();
    let results = fleet.query(|s| s.verify(rel.as_deref()));
    let mut rows = Vec::new();
    let mut first_error = None;
    let mut drifted = 0;
    for (host, r) in results {
        match r {
            Ok((releases, drift)) => {
                drifted += drift.len();
                rows.push(HostVerify {
                    host,
                    ok: drift.is_empty(),
                    releases,
                    drift,
                    error: None,
                });
            }
            Err(e) => {
                rows.push(HostVerify {
                    host,
                    ok: false,
                    releases: vec![],
                    drift: vec![],
                    // `host` names it already.
                    error: Some(e.without_host().to_string()),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    if args.repair && drifted > 0 && first_error.is_none() {
        for r in &rows {
            for d in &r.drift {
                ctx.out
                    .info(&format!("{}: {} {}/{}", r.host, d.problem, d.release, d.path));
            }
        }
    } else if ctx.out.json {
        ctx.out.json_value(&rows);
    } else {
        for r in &rows {
            if let Some(e) = &r.error {
                ctx.out.data(&format!("{}: {e}", r.host));
                continue;
            }
            if r.ok && r.releases.is_empty() {
                ctx.out.data(&format!("{}: ok (no releases to verify)", r.host));
            } else if r.ok {
                ctx.out.data(&format!(
                    "{}: ok ({} release(s) verified: {})",
                    r.host,
                    r.releases.len(),
                    r.releases.join(", ")
                ));
            }
            for d in &r.drift {
                ctx.out
                    .data(&format!("{}: {} {}/{}", r.host, d.problem, d.release, d.path));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if drifted > 0 && args.repair {
        repair(&rows, &target, ctx)?;
        ctx.out.info("repaired; verifying again");
        let again = VerifyArgs {
            rel: args.rel.clone(),
            target: args.target.clone(),
            hosts: args.hosts.clone(),
            repair: false,
        };
        return run(&again, ctx);
    }
    if drifted > 0 {
        let hosts: Vec<&str> = rows.iter().filter(|r| !r.ok).map(|r| r.host.as_str()).collect();
        return Err(Error::integrity(format!(
            "{drifted} drifted path(s) on {}; find out who changed them, then restore them with `slipway verify -t {}{} --repair`",
            hosts.join(", "),
            target.name,
            args.rel.as_deref().map(|r| format!(" {r}")).unwrap_or_default()
        )));
    }
    Ok(())
}

/// Re-push every drifted release to its host in repair mode.
fn repair(rows: &[HostVerify], target: &crate::remote::Target, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    for row in rows.iter().filter(|r| !r.ok) {
        let Some(spec) = target.hosts.iter().find(|h| h.label == row.host) else {
            continue;
        };
        let mut names: Vec<&str> = row.drift.iter().map(|d| d.release.as_str()).collect();
        names.dedup();
        for name in names {
            let (id, record) = store.resolve(name).map_err(|_| {
                Error::other(format!(
                    "cannot repair `{name}` on {}: it is not in the local store `{}`; import or build it first",
                    row.host,
                    store.root().display()
                ))
            })?;
            let record = record.ok_or_else(|| Error::other(format!("`{name}` is not a release name in the store")))?;
            let manifest = store.manifest(&id)?;
            let job = crate::remote::push::PushJob::new(&store, &record, &manifest, target, true);
            let bar = ctx.out.bytes_bar(0, &row.host);
            let mut session = crate::remote::session::HostSession::open(spec)?;
            let outcome = session.push(&job, spec.link_mode, &bar)?;
            session.close()?;
            bar.finish_and_clear();
            ctx.out.info(&format!(
                "{}: rebuilt {name} ({} re-sent)",
                row.host,
                super::human_bytes(outcome.bytes_sent)
            ));
        }
    }
    Ok(())
}
