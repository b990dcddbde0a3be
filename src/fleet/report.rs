//! What a fleet command says: one [`HostReport`] per host (a table, or
//! `--json`), and the words its errors are made of ([`Step`], [`Verb`]).
//!
//! Invariant: `--json` is a documented, stable schema (`docs/json.md`):
//! field order is key order, and [`Phase`] and [`Outcome`] serialize as the
//! same snake_case words the table prints.

use serde::Serialize;

use crate::Context;
use crate::output::human_bytes;
use crate::remote::push::PushOutcome;

/// One host's line of a fleet report (`--json`: one object per host).
#[derive(Debug, Clone, Serialize, Default)]
pub struct HostReport {
    pub host: String,
    /// The last phase the host reached.
    pub phase: Phase,
    pub result: Outcome,
    /// The release current on the host when the command ended.
    pub current: Option<String>,
    /// The release current before the command.
    pub previous: Option<String>,
    /// What went wrong (failed hosts) or what happened (reverted hosts).
    pub reason: Option<String>,
    /// The tail of a failed hook's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Push figures (deploy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_reused: Option<u64>,
}

/// The last phase a host reached in a fleet command (`phase` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Connect,
    Push,
    Lock,
    BeforeActivate,
    /// Starting the release in a service slot and checking it there.
    Start,
    /// The database's backup, before a migration.
    Backup,
    /// Stopping intake before a migration.
    Pause,
    /// The migration (or `migrate_down`), and reading schema versions.
    Migrate,
    /// Switching `current` (activate, deploy), or finding the release to.
    Activate,
    /// Finding what to roll back to, or `--expect`, in a rollback.
    Rollback,
    AfterActivate,
    Health,
    /// Switched back because another host failed.
    Revert,
    /// Resuming intake after the switch (or a failure).
    Resume,
    Done,
}

impl Phase {
    /// Every phase, in the order a command goes through them.
    pub const ALL: [Phase; 15] = [
        Phase::Connect,
        Phase::Push,
        Phase::Lock,
        Phase::BeforeActivate,
        Phase::Start,
        Phase::Backup,
        Phase::Pause,
        Phase::Migrate,
        Phase::Activate,
        Phase::Rollback,
        Phase::AfterActivate,
        Phase::Health,
        Phase::Revert,
        Phase::Resume,
        Phase::Done,
    ];

    /// The name in reports and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Push => "push",
            Phase::Lock => "lock",
            Phase::BeforeActivate => "before_activate",
            Phase::Start => "start",
            Phase::Backup => "backup",
            Phase::Pause => "pause",
            Phase::Migrate => "migrate",
            Phase::Resume => "resume",
            Phase::Activate => "activate",
            Phase::Rollback => "rollback",
            Phase::AfterActivate => "after_activate",
            Phase::Health => "health",
            Phase::Revert => "revert",
            Phase::Done => "done",
        }
    }

    /// A hook's phase: a failure here is the release's own, not the network's.
    pub(super) fn is_hook(self) -> bool {
        matches!(
            self,
            Phase::BeforeActivate | Phase::Start | Phase::AfterActivate | Phase::Health
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that table widths (`{:<15}`) apply.
        f.pad(self.as_str())
    }
}

/// How a host fared in a fleet command (`result` in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Already on the release: nothing to do.
    Unchanged,
    Failed,
    /// Switched, then switched back because a host failed.
    Reverted,
    /// Stopped before this host's turn.
    #[default]
    NotStarted,
    /// Skipped with `--skip-unreachable`.
    Unreachable,
}

impl Outcome {
    /// The name in reports and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Reverted => "reverted",
            Outcome::NotStarted => "not_started",
            Outcome::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a switch is, in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Activation,
    Rollback,
}

impl Verb {
    /// The phase a host that cannot do this is reported in.
    pub(super) fn phase(self) -> Phase {
        match self {
            Verb::Activation => Phase::Activate,
            Verb::Rollback => Phase::Rollback,
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verb::Activation => "activation",
            Verb::Rollback => "rollback",
        })
    }
}

/// The step a fleet command stops at when a host fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Push,
    Connect(Verb),
    Lock(Verb),
    Plan(Verb),
    BeforeActivate(Verb),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Push => f.write_str("push"),
            Step::Connect(v) => write!(f, "{v}: connecting"),
            Step::Lock(v) => write!(f, "{v}: locking"),
            Step::Plan(v) => write!(f, "{v}"),
            Step::BeforeActivate(v) => write!(f, "{v}: before_activate"),
        }
    }
}

/// A multi-line message on one line: trimmed lines joined with ` / `.
pub(super) fn lines_joined(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A one-line summary of a push.
pub fn describe_push(name: &str, o: &PushOutcome) -> String {
    if o.already {
        return match o.signatures_added {
            Some(n) if n > 0 => format!(
                "{name} already staged; added {n} signature{}",
                if n == 1 { "" } else { "s" }
            ),
            _ => format!("{name} already staged"),
        };
    }
    if o.bytes_downloaded > 0 {
        return format!(
            "staged {name}: {} files, {} needed, {} downloaded from the remote store",
            o.files,
            human_bytes(o.bytes_needed),
            human_bytes(o.bytes_downloaded)
        );
    }
    format!(
        "staged {name}: {} files, {} needed, {} sent",
        o.files,
        human_bytes(o.bytes_needed),
        human_bytes(o.bytes_sent)
    )
}

/// Print a fleet report: a table on stdout, or JSON with `--json`.
pub fn print_reports(ctx: &Context, reports: &[HostReport]) {
    if ctx.out.json {
        ctx.out.json_value(&reports);
        return;
    }
    let w = reports.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
    ctx.out.data(&format!(
        "{:<w$}  {:<15}  {:<11}  {:<12}  DETAIL",
        "HOST", "PHASE", "RESULT", "CURRENT"
    ));
    for r in reports {
        ctx.out.data(&format!(
            "{:<w$}  {:<15}  {:<11}  {:<12}  {}",
            r.host,
            r.phase,
            r.result,
            r.current.as_deref().unwrap_or("-"),
            r.reason.as_deref().unwrap_or("")
        ));
        if let Some(o) = &r.output {
            for line in o.lines() {
                ctx.out.data(&format!("{:<w$}    | {line}", ""));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, Phase, Step, Verb};

    #[test]
    fn phases_and_outcomes_serialize_as_their_report_names() {
        for p in Phase::ALL {
            assert_eq!(serde_json::to_value(p).ok(), Some(p.as_str().into()));
        }
        use Outcome::*;
        for o in [Ok, Unchanged, Failed, Reverted, NotStarted, Unreachable] {
            assert_eq!(serde_json::to_value(o).ok(), Some(o.as_str().into()));
        }
        assert_eq!(format!("[{:<8}]", Phase::Lock), "[lock    ]");
    }

    #[test]
    fn steps_name_the_verb_and_what_it_was_doing() {
        assert_eq!(Step::Push.to_string(), "push");
        assert_eq!(Step::Connect(Verb::Activation).to_string(), "activation: connecting");
        assert_eq!(Step::Lock(Verb::Rollback).to_string(), "rollback: locking");
        assert_eq!(Step::Plan(Verb::Rollback).to_string(), "rollback");
        assert_eq!(
            Step::BeforeActivate(Verb::Activation).to_string(),
            "activation: before_activate"
        );
    }
}
