//! The command line, as plain data (clap derive). No I/O here: `lib.rs`
//! resolves these values into a configuration and calls the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Reproducible release bundles, pushed over SSH, activated atomically, rolled back in one rename.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Local store directory [default: $XDG_DATA_HOME/slipway]
    #[arg(long, global = true, env = "SLIPWAY_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Configuration file with targets [default: ./slipway.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable output on stdout (see docs/json.md)
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or notes on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail on stderr
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a git tag (or a directory) into a bundle and print its id
    ///
    /// Exports the tag's tree (never the working tree), runs `[build] command`
    /// from the tag's own slipway.toml with SOURCE_DATE_EPOCH set to the
    /// commit time, and stores `[build] output` as a bundle. The same tag
    /// always gives the same id.
    ///
    /// Examples:
    ///   slipway build v1.4.2
    ///   slipway build --dir dist --name ci-4711
    ///   slipway build v1.4.2 --sign --key ~/.ssh/id_ed25519
    #[command(verbatim_doc_comment)]
    Build(BuildArgs),
    /// List the releases in the local store
    List,
    /// Show a release's id, size, entries and provenance
    Inspect(RelArgs),
    /// Re-hash a stored bundle, or the release trees on a target's hosts (exit 5 on any mismatch)
    ///
    /// Examples:
    ///   slipway verify v1.4.2                 # the bundle in the local store
    ///   slipway verify -t production          # every release on every host
    ///   slipway verify -t production v1.4.2
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Write a bundle to a .tar.zst file (plus a FILE.meta.json sidecar)
    Export(ExportArgs),
    /// Verify a .tar.zst bundle and add it to the store
    Import(ImportArgs),
    /// Remove bundles that no release name refers to, and temporary leftovers
    Gc(GcArgs),
    /// Sign a release with an SSH key (`ssh-keygen -Y sign`, namespace `slipway`)
    ///
    /// Signs a statement binding the release name to its bundle id and
    /// stores the signature beside the release; `export` and `push` carry it.
    /// Hosts with `.slipway/allowed_signers` accept only releases signed by a
    /// key listed there (docs/control.md). Signing again with the same key
    /// replaces that key's signature.
    ///
    /// Without --key: a key of the running ssh-agent, else the first of
    /// ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa.
    ///
    /// Examples:
    ///   slipway sign v1.4.2
    ///   slipway sign v1.4.2 --key ~/.ssh/release_ed25519
    ///   slipway sign v1.4.2 --key ~/.ssh/id_ed25519.pub   # private half in ssh-agent
    #[command(verbatim_doc_comment)]
    Sign(SignArgs),
    /// Stage a release on every host of a target; nothing live changes
    ///
    /// Sends only the file contents a host lacks, verifies every byte there,
    /// and makes the release appear under `releases/<name>` only when it is
    /// complete and durable. Pushing a release that is already staged sends
    /// nothing (its new signatures are added on the host); a push that was
    /// interrupted resumes where it stopped. A host with
    /// `.slipway/allowed_signers` refuses (exit 5) a release that no key
    /// listed there signed (docs/control.md).
    ///
    /// Examples:
    ///   slipway push v1.4.2 -t prod
    ///   slipway push v1.4.2 -t ssh://deploy@app1/srv/shop
    ///   slipway push v1.4.2 -t /srv/shop --json
    #[command(verbatim_doc_comment)]
    Push(PushArgs),
    /// Point `current` at a staged release on every host (all or nothing)
    ///
    /// Under each host's lock: checks --expect, runs the hooks, switches
    /// `current` with one atomic rename, checks health. If any host fails,
    /// every host that switched is switched back.
    ///
    /// Examples:
    ///   slipway activate v1.4.2 -t production
    ///   slipway activate v1.4.2 -t production --expect v1.4.1
    #[command(verbatim_doc_comment)]
    Activate(ActivateArgs),
    /// Push, then activate on every host with hooks and health checks; all or nothing
    ///
    /// Phase 1 pushes to every host in parallel (nothing live changes; any
    /// failure stops here). Phase 2 takes every host's lock, runs
    /// before_activate, switches, runs after_activate and health; any failure
    /// switches every switched host back and marks the release bad there
    /// (exit 3 for a failed health check). Then prunes beyond `keep`.
    ///
    /// Examples:
    ///   slipway deploy v1.4.2 -t production
    ///   slipway deploy v1.4.2 -t production --hosts app1      # canary
    ///   slipway deploy v1.4.2 -t production --batch 2         # rolling
    #[command(verbatim_doc_comment)]
    Deploy(DeployArgs),
    /// Return to the previous good release (or --to REL) on every host, in one rename each
    ///
    /// "Previous" comes from each host's history, skipping releases marked
    /// bad; the release left behind is marked bad, so repeated rollbacks walk
    /// back (v3 -> v2 -> v1). Data in shared/ is never touched.
    ///
    /// Examples:
    ///   slipway rollback -t production
    ///   slipway rollback -t production --to v1.4.0
    #[command(verbatim_doc_comment)]
    Rollback(RollbackArgs),
    /// Show what each host runs, what it would roll back to, and its releases
    Status(StatusArgs),
    /// Show the activation log of a target's hosts, newest first
    History(HistoryArgs),
    /// What exactly runs on a target and where it came from
    ///
    /// For a release (name or id): its id, tag, commit, builder and signer,
    /// where it passed its health check (the target's promotion gate), and
    /// when it went live on each host.
    ///
    /// Example:
    ///   slipway provenance v1.4.2 -t production
    #[command(verbatim_doc_comment)]
    Provenance(ProvenanceArgs),
    /// Remove old releases and unreferenced content from a target's hosts
    ///
    /// Keeps the current release, the rollback target, pinned releases,
    /// releases pushed but not yet activated, and the N most recently
    /// activated (--keep, else the target's `keep`, else 5).
    #[command(verbatim_doc_comment)]
    Prune(PruneArgs),
    /// The host side: speak slipway's protocol on stdin/stdout for one root
    ///
    /// Started by the client over SSH (or as a child process for a local
    /// path); creates the root and its layout when missing and never touches
    /// anything outside it. Suitable for a forced command in authorized_keys:
    ///   command="slipway serve --root /srv/app",restrict ssh-ed25519 AAAA…
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Release name or (a unique prefix of) a bundle id
    pub rel: String,
    /// A target from slipway.toml, ssh://[user@]host[:port]/abs/root, or a local path
    #[arg(short = 't', long, value_name = "TARGET")]
    pub target: String,
    /// Only these hosts of the target (as written in slipway.toml), comma-separated
    #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

/// `-t TARGET` and `--hosts`.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// A target from slipway.toml, ssh://[user@]host[:port]/abs/root, or a local path
    #[arg(short = 't', long, value_name = "TARGET")]
    pub target: String,
    /// Only these hosts of the target (as written in slipway.toml), comma-separated
    #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

/// Options of every command that switches `current`.
#[derive(Debug, Args, Clone)]
pub struct SwitchArgs {
    /// Wait up to SECS for a host's lock instead of failing at once (exit 4)
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    /// Proceed on the reachable hosts when some cannot be reached, and report the others
    #[arg(long)]
    pub skip_unreachable: bool,
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// Release name or (a unique prefix of) a bundle id, as staged on the hosts
    pub rel: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Only switch if this release is current (compare-and-swap; exit 6 otherwise)
    #[arg(long, value_name = "REL")]
    pub expect: Option<String>,
    /// Deploy although the target's promotion gate (`require_healthy_on`) is not met; needs --reason
    #[arg(long, requires = "reason")]
    pub override_gate: bool,
    /// Why the gate is overridden (recorded in every host's history)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub switch: SwitchArgs,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Release name or (a unique prefix of) a bundle id in the local store
    pub rel: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Activate N hosts at a time, with health checks between batches (rolling)
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Only switch if this release is current on every host (exit 6 otherwise)
    #[arg(long, value_name = "REL")]
    pub expect: Option<String>,
    /// Deploy although the target's promotion gate (`require_healthy_on`) is not met; needs --reason
    #[arg(long, requires = "reason")]
    pub override_gate: bool,
    /// Why the gate is overridden (recorded in every host's history)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Wait up to SECS for a host's lock instead of failing at once (exit 4)
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Roll back to this release (name or id prefix) instead of the previous one
    #[arg(long, value_name = "REL")]
    pub to: Option<String>,
    /// Only switch if this release is current (exit 6 otherwise)
    #[arg(long, value_name = "REL")]
    pub expect: Option<String>,
    /// Why, recorded in the history
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub switch: SwitchArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    /// Release name or (a unique prefix of) a bundle id [default: what is current]
    pub rel: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// At most N records per host
    #[arg(short = 'n', long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Keep the N most recently activated releases [default: the target's `keep`, else 5]
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Only list what would be removed
    #[arg(long)]
    pub dry_run: bool,
    /// Wait up to SECS for a host's lock instead of failing at once (exit 4)
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Release name or (a unique prefix of) a bundle id
    pub rel: String,
    /// A private key, or a public key (.pub) whose private half is in ssh-agent
    /// [default: an ssh-agent key, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa]
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// The principal to record as a hint (as hosts' allowed_signers name the
    /// signer) [default: the key's comment]
    #[arg(long, value_name = "NAME")]
    pub principal: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The deploy root (absolute); created with its layout when missing
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Refuse prune and every deletion of releases or objects
    #[arg(long)]
    pub append_only: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The git tag to build (annotated or lightweight)
    #[arg(required_unless_present = "dir", conflicts_with = "dir")]
    pub tag: Option<String>,
    /// Snapshot this directory instead of building a tag (needs --name)
    #[arg(long, value_name = "DIR", requires = "name")]
    pub dir: Option<PathBuf>,
    /// Release name [default: the tag]
    #[arg(long)]
    pub name: Option<String>,
    /// Sign the release right after building it (see `slipway sign`)
    #[arg(long)]
    pub sign: bool,
    /// A private key, or a public key (.pub) whose private half is in ssh-agent (with --sign)
    #[arg(long, value_name = "PATH", requires = "sign")]
    pub key: Option<PathBuf>,
    /// The principal to record as a hint (with --sign) [default: the key's comment]
    #[arg(long, value_name = "NAME", requires = "sign")]
    pub principal: Option<String>,
}

#[derive(Debug, Args)]
pub struct RelArgs {
    /// Release name or (a unique prefix of) a bundle id
    pub rel: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Release name or (a unique prefix of) a bundle id [with -t: default every release]
    #[arg(required_unless_present = "target")]
    pub rel: Option<String>,
    /// Verify the release trees on this target's hosts instead of the local store
    #[arg(short = 't', long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Only these hosts of the target, comma-separated
    #[arg(long, value_name = "HOST,...", value_delimiter = ',', requires = "target")]
    pub hosts: Vec<String>,
    /// Re-send damaged or missing contents from the local store, rebuild the
    /// drifted release trees (swapped in atomically), then verify again
    #[arg(long, requires = "target")]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Release name or (a unique prefix of) a bundle id
    pub rel: String,
    /// Output file (conventionally NAME.tar.zst)
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A .tar.zst bundle; FILE.meta.json beside it is read when present
    pub file: PathBuf,
    /// Release name [default: from the sidecar]
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only list what would be removed
    #[arg(long)]
    pub dry_run: bool,
}
