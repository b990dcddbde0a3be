//! `slipway history -t TARGET`: the activation log of every host, newest first.

use serde::Serialize;

use crate::Context;
use crate::cli::HistoryArgs;
use crate::digest::Digest;
use crate::error::Result;
use crate::fleet::Fleet;

/// One record of `history --json` (a stable schema: field order is key order).
#[derive(Serialize)]
struct Row {
    host: String,
    time: String,
    actor: String,
    action: String,
    from: Option<String>,
    to: String,
    id: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db_schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paused_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    marked_bad: Option<String>,
    /// `paused_ms` in seconds, as every other duration of `--json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused_seconds: Option<f64>,
}

/// Records per host when neither `--limit` nor `--all` is given: years of
/// deploys make a log of tens of thousands, which nobody reads at once.
pub const DEFAULT_LIMIT: usize = 100;

/// # Errors
/// When a host cannot be reached.
pub fn run(args: &HistoryArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let limit = if args.all {
        None
    } else {
        Some(args.limit.unwrap_or(DEFAULT_LIMIT))
    };
    let results = fleet.query(|s| s.history(limit));
    let mut rows = Vec::new();
    let mut first_error = None;
    for (host, r) in results {
        match r {
            Ok((records, warnings)) => {
                for w in warnings {
                    ctx.out.warn(&format!("{host}: {w}"));
                }
                rows.extend(records.into_iter().map(|r| Row {
                    host: host.clone(),
                    time: r.time,
                    actor: r.actor,
                    action: r.action,
                    from: r.from,
                    to: r.to,
                    id: r.id,
                    reason: r.reason,
                    signer: r.signer,
                    via: r.via,
                    slot: r.slot,
                    schema: r.schema,
                    db_schema: r.db_schema,
                    backup: r.backup,
                    paused_ms: r.paused_ms,
                    marked_bad: r.marked_bad,
                    paused_seconds: r.paused_ms.map(|ms| ms as f64 / 1000.0),
                }));
            }
            // The first failure is the command's error line; the others are warnings.
            Err(e) => match first_error {
                None => first_error = Some(e),
                Some(_) => ctx.out.warn(&e.to_string()),
            },
        }
    }
    // Newest first across hosts (RFC 3339 UTC sorts as text); stable for equal times.
    rows.sort_by(|a, b| b.time.cmp(&a.time));
    if ctx.out.json {
        ctx.out.json_value(&rows);
    } else if rows.is_empty() {
        ctx.out.info("no activations yet");
    } else {
        let w = rows.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
        ctx.out.data(&format!(
            "{:<24}  {:<w$}  {:<18}  {:<8}  {:<14}  TO",
            "TIME", "HOST", "ACTOR", "ACTION", "FROM"
        ));
        for r in &rows {
            let mut reason = r
                .signer
                .as_deref()
                .map(|x| format!("  signed by {x}"))
                .unwrap_or_default();
            if let Some(x) = &r.slot {
                reason.push_str(&format!("  slot {x}"));
            }
            if let Some(x) = &r.schema {
                reason.push_str(&format!("  schema {x}"));
            }
            if let Some(x) = r.db_schema.as_ref().filter(|d| Some(*d) != r.schema.as_ref()) {
                reason.push_str(&format!("  (database at {x})"));
            }
            if let Some(x) = &r.backup {
                reason.push_str(&format!("  backup {x}"));
            }
            if let Some(ms) = r.paused_ms {
                reason.push_str(&format!("  intake paused {:.2} s", ms as f64 / 1000.0));
            }
            if let Some(x) = &r.reason {
                reason.push_str(&format!("  ({x})"));
            }
            ctx.out.data(&format!(
                "{:<24}  {:<w$}  {:<18}  {:<8}  {:<14}  {} {}{reason}",
                r.time,
                r.host,
                r.actor,
                r.action,
                r.from.as_deref().unwrap_or("-"),
                r.to,
                super::short_id(&r.id)
            ));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
