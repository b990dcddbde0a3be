//! `slipway host check -t TARGET`: is each host ready? One line per check —
//! ssh, slipway (version and protocol, from the `hello`), root (owner and
//! mode), space, current — with `ok`, `note` or `PROBLEM`, and a fix for each
//! problem. Exit 1 when there is any problem.
//!
//! The host reports facts (the `check` request); the judgement and the fixes
//! are made here, where the target's name is known. A check that cannot run
//! because an earlier one failed is `skipped`.

use serde::Serialize;

use super::reach::ssh_fix;
use crate::Context;
use crate::cli::HostCheckArgs;
use crate::error::{Error, Result};
use crate::fleet::{DEFAULT_PARALLEL, select_hosts};
use crate::protocol::{CheckReport, CurrentState, PROTOCOL, VERSION, who};
use crate::remote::session::HostSession;
use crate::remote::{HostSpec, Location};

/// Free space below this is a problem, whatever the size of the file system.
const MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;
/// Free space below this percentage of the file system is a problem.
const MIN_FREE_PERCENT: u64 = 2;

/// The free space `host check` expects on a root's file system of `total`
/// bytes: 256 MiB or 2% of it, whichever is more (docs/operations.md). A
/// floor, not what a given release needs: `push` works that out from the
/// content the host lacks, and refuses up front when it does not fit.
fn expected_free(total: u64) -> u64 {
    MIN_FREE_BYTES.max(total.saturating_mul(MIN_FREE_PERCENT) / 100)
}

/// How a check came out (`--json`: lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Note,
    Problem,
    Skipped,
}

/// One line of the report (a stable `--json` schema: field order is key order).
#[derive(Debug, Serialize)]
struct Line {
    check: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    /// (`space` only) the free space expected, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    needs_bytes: Option<u64>,
}

/// One element of `host check --json`.
#[derive(Debug, Serialize)]
struct HostCheck {
    host: String,
    ok: bool,
    checks: Vec<Line>,
    /// The host's own facts, when it could be asked.
    report: Option<CheckReport>,
}

const CHECKS: [&str; 6] = ["ssh", "slipway", "root", "space", "current", "signed"];

struct Lines(Vec<Line>);

impl Lines {
    fn push(&mut self, check: &'static str, status: Status, detail: String, fix: Option<String>) {
        self.0.push(Line {
            check,
            status,
            detail,
            fix,
            needs_bytes: None,
        });
    }
    fn ok(&mut self, check: &'static str, detail: String) {
        self.push(check, Status::Ok, detail, None);
    }
    fn problem(&mut self, check: &'static str, detail: String, fix: String) {
        self.push(check, Status::Problem, detail, Some(fix));
    }
    /// Mark every check not done yet as skipped, because `why`.
    fn skip_rest(&mut self, why: &str) {
        for check in CHECKS {
            if !self.0.iter().any(|l| l.check == check) {
                self.push(check, Status::Skipped, format!("not checked: {why}"), None);
            }
        }
    }
}

/// # Errors
/// Exit 1 when any check found a problem (every host is still reported);
/// usage errors for an unknown target or `--hosts`.
pub fn check(args: &HostCheckArgs, ctx: &Context) -> Result<()> {
    let target = crate::commands::load_target(ctx, &args.target.target)?;
    let hosts = select_hosts(&target, &args.target.hosts)?;
    let parallel = target.config.parallel.unwrap_or(DEFAULT_PARALLEL);
    let results = crate::parallel::map(hosts.iter().collect(), parallel, check_host);
    if ctx.out.json {
        ctx.out.json_value(&results);
    } else {
        print_text(ctx, &results);
    }
    let problems: usize = results
        .iter()
        .map(|r| r.checks.iter().filter(|l| l.status == Status::Problem).count())
        .sum();
    if problems == 0 {
        ctx.out.info(&format!("{} host(s) ready", results.len()));
        return Ok(());
    }
    let bad: Vec<&str> = results.iter().filter(|r| !r.ok).map(|r| r.host.as_str()).collect();
    Err(Error::other(format!(
        "{problems} problem(s) on {}: apply the fixes above, then run `slipway host check -t {}` again",
        bad.join(", "),
        target.name
    )))
}

fn print_text(ctx: &Context, results: &[HostCheck]) {
    for r in results {
        ctx.out.data(&r.host);
        for l in &r.checks {
            let status = match l.status {
                Status::Ok => "ok",
                Status::Note => "note",
                Status::Problem => "PROBLEM",
                Status::Skipped => "-",
            };
            ctx.out.data(&format!("  {status:<8} {:<8} {}", l.check, l.detail));
            if let Some(fix) = &l.fix {
                ctx.out.data(&format!("  {:<8} {:<8} fix: {fix}", "", ""));
            }
        }
    }
}

fn check_host(spec: &HostSpec) -> HostCheck {
    let mut lines = Lines(Vec::new());
    let report = run_checks(spec, &mut lines);
    lines.skip_rest("an earlier check failed");
    HostCheck {
        host: spec.label.clone(),
        ok: !lines.0.iter().any(|l| l.status == Status::Problem),
        checks: lines.0,
        report,
    }
}

fn run_checks(spec: &HostSpec, lines: &mut Lines) -> Option<CheckReport> {
    let install = format!("run `slipway host install -t {}`", spec.target);
    let conn = match crate::remote::connect(spec) {
        Ok(c) => c,
        Err(e) => {
            let fix = match spec.location {
                Location::Ssh { .. } => ssh_fix(spec),
                Location::Local { .. } => "check that this slipway can run `slipway serve` here".into(),
            };
            lines.problem("ssh", e.without_host().to_string(), fix);
            return None;
        }
    };
    lines.ok(
        "ssh",
        match spec.location {
            Location::Ssh { .. } => "reachable".into(),
            Location::Local { .. } => "a local path: no ssh needed".into(),
        },
    );

    let mut session = match HostSession::greet(spec, conn) {
        Ok(s) => s,
        Err(e) => {
            let fix = if spec.remote_bin == "slipway" {
                install
            } else {
                format!(
                    "{install} (or point the target's `remote_bin`, now `{}`, at slipway there)",
                    spec.remote_bin
                )
            };
            lines.problem("slipway", e.without_host().to_string(), fix);
            return None;
        }
    };
    let theirs = session.host_version().to_string();
    if theirs == VERSION {
        lines.ok(
            "slipway",
            format!("slipway {theirs}, protocol {PROTOCOL}, as this client"),
        );
    } else {
        lines.push(
            "slipway",
            Status::Note,
            format!("slipway {theirs} on the host, {VERSION} here (both protocol {PROTOCOL}: they work together)"),
            Some(format!("{install} to run one version everywhere")),
        );
    }

    let report = match session.check() {
        Ok(r) => r,
        Err(e) => {
            let fix = if matches!(e.without_host(), Error::UnknownRequest(_)) {
                install
            } else {
                root_fix(spec)
            };
            lines.problem("root", e.without_host().to_string(), fix);
            return None;
        }
    };
    let _ = session.close();
    judge(spec, &report, lines);
    Some(report)
}

/// The fix for a root that `serve` could not open or create.
fn root_fix(spec: &HostSpec) -> String {
    match &spec.location {
        Location::Ssh { user, root, .. } => format!(
            "create it for the deploy user on the host: sudo install -d -o {} {root}",
            user.as_deref().unwrap_or("DEPLOY_USER")
        ),
        Location::Local { root } => format!("create `{}` and make it yours", root.display()),
    }
}

fn judge(spec: &HostSpec, r: &CheckReport, lines: &mut Lines) {
    let t = &spec.target;
    let root = &r.root;
    let deploy_user = who(r.uid, r.user.as_deref());
    if !r.exists {
        // Nothing was created: where will the first push put it?
        if r.problems.is_empty() {
            lines.ok(
                "root",
                format!(
                    "`{root}` is not a slipway root yet: the first `slipway push` or `deploy` makes it one (is that the right path?)"
                ),
            );
        }
    } else if r.owner_uid != r.uid {
        lines.problem(
            "root",
            format!(
                "`{root}` is owned by {}, not by the deploy user {deploy_user}",
                who(r.owner_uid, r.owner.as_deref())
            ),
            format!(
                "sudo chown -R {} {root}",
                r.user.clone().unwrap_or_else(|| r.uid.to_string())
            ),
        );
    } else if r.mode & 0o002 != 0 {
        lines.problem(
            "root",
            format!("`{root}` is writable by everyone (mode {:04o})", r.mode),
            format!("chmod o-w {root}"),
        );
    } else {
        lines.ok(
            "root",
            format!(
                "`{root}` is owned by the deploy user {deploy_user}, mode {:04o}",
                r.mode
            ),
        );
    }
    for p in &r.problems {
        lines.problem("root", p.problem.clone(), p.fix.clone());
    }

    let free = crate::output::human_bytes(r.free_bytes);
    let total = crate::output::human_bytes(r.total_bytes);
    let percent = r.free_bytes.saturating_mul(100).checked_div(r.total_bytes).unwrap_or(0);
    let needs = expected_free(r.total_bytes);
    let expects = format!(
        "expects at least {} free ({} or {MIN_FREE_PERCENT}% of the file system, whichever is more)",
        crate::output::human_bytes(needs),
        crate::output::human_bytes(MIN_FREE_BYTES)
    );
    if r.free_bytes < needs {
        lines.problem(
            "space",
            format!("only {free} free of {total} ({percent}%) on the file system of `{root}`; {expects}"),
            format!("free space there, or remove old releases: `slipway prune -t {t}`"),
        );
    } else {
        lines.ok("space", format!("{free} free of {total} ({percent}%); {expects}"));
    }
    if let Some(line) = lines.0.last_mut() {
        line.needs_bytes = Some(needs);
    }

    let current = format!("{root}/current");
    let move_away = format!("move it away (mv {current} {current}.old), then `slipway activate REL -t {t}`");
    let activate =
        format!("activate a complete release: `slipway activate REL -t {t}` (`slipway status -t {t}` lists them)");
    match &r.current {
        CurrentState::Absent => lines.ok("current", "none yet (nothing activated)".into()),
        CurrentState::Ok { release } => lines.ok("current", format!("releases/{release} (complete)")),
        CurrentState::NotSymlink => lines.problem("current", format!("`{current}` is not a symlink"), move_away),
        CurrentState::Unmanaged { target } => lines.problem(
            "current",
            format!("`{current}` points at `{target}`, not at a relative `releases/<name>`"),
            move_away,
        ),
        CurrentState::Missing { release } => lines.problem(
            "current",
            format!("`{current}` points at releases/{release}, which does not exist"),
            activate,
        ),
        CurrentState::Incomplete { release } => lines.problem(
            "current",
            format!("`{current}` points at releases/{release}, whose push never finished"),
            format!("push it again (`slipway push {release} -t {t}`), or {activate}"),
        ),
    }
    judge_signatures(t, r, lines);
}

/// With `allowed_signers` on the host: the releases it would refuse to
/// activate or roll back to (a note: new signed releases deploy fine, but a
/// rollback to one of these would stop at 3 a.m.).
fn judge_signatures(t: &str, r: &CheckReport, lines: &mut Lines) {
    if !r.enforces_signatures {
        lines.ok(
            "signed",
            "no allowed_signers: this host accepts unsigned releases".into(),
        );
        return;
    }
    if r.refused_by_signers.is_empty() {
        lines.ok(
            "signed",
            "every release here is signed by a key in allowed_signers".into(),
        );
        return;
    }
    let names: Vec<String> = r.refused_by_signers.iter().map(|f| f.problem.clone()).collect();
    lines.push(
        "signed",
        Status::Note,
        format!(
            "allowed_signers would refuse {} release(s) here, so neither activate nor rollback can go to them: {}",
            names.len(),
            names.join("; ")
        ),
        Some(format!(
            "sign each (`slipway sign REL`) and push it again (`slipway push REL -t {t}`: only the signatures travel), or prune it"
        )),
    );
}
