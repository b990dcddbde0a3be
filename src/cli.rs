//! The command line, as plain data (clap derive). No I/O here: `lib.rs`
//! resolves these values into a configuration and calls the commands.
//!
//! Help text: each variant's doc comment is its one-line summary, and its
//! `after_help` says what it does and gives examples. Nothing has a separate
//! long help, so `-h` and `--help` print the same compact page (one line per
//! flag). `tests/snapshots/help/` holds every page; `UPDATE_SNAPSHOTS=1 cargo
//! test --test cli help` rewrites them after a change here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Shown after the command list of `slipway --help`.
const TOP_HELP: &str = "\
Examples:
  slipway init                           # write a commented slipway.toml to edit
  slipway build v1.4.2                   # tag -> bundle; prints its id
  slipway host check -t production       # are the hosts ready?
  slipway deploy v1.4.2 -t production    # push, switch, health check; all or nothing
  slipway rollback -t production         # back to the previous good release

Exit codes: 0 ok, 1 error, 2 usage, 3 health check failed (switched back), 4 lock held,
5 integrity failure, 6 --expect did not match.
`slipway COMMAND --help` shows a command's flags and examples; `slipway man` the manual.";

/// Reproducible release bundles, pushed over SSH, activated atomically, rolled back in one rename.
#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = TOP_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after the subcommand, listed under their own
/// heading on every help page so a command's own flags stand apart.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Local store [default: $XDG_DATA_HOME/slipway] [env: SLIPWAY_STORE]
    // `$SLIPWAY_STORE` is read in `lib.rs` (not by clap), so that an empty
    // value means "unset", as with `$XDG_DATA_HOME`.
    #[arg(long, global = true, value_name = "DIR")]
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
    /// Write a commented slipway.toml to start from
    #[command(after_help = "\
Writes `./slipway.toml` (or `--config FILE`) with a `[build]` section
and one example target, every key commented. Refuses to overwrite an
existing file. Asks nothing and detects nothing: edit it afterwards.

Examples:
  slipway init
  slipway --config deploy/slipway.toml init")]
    Init,
    /// Build a git tag (or a directory) into a bundle and print its id
    #[command(after_help = "\
Exports the tag's tree (never the working tree), runs `[build] command`
from the tag's own slipway.toml with SOURCE_DATE_EPOCH set to the
commit time, and stores `[build] output` as a bundle. The same tag
always gives the same id.

Examples:
  slipway build v1.4.2
  slipway build --dir dist --name ci-4711
  slipway build v1.4.2 --sign --key ~/.ssh/id_ed25519")]
    Build(BuildArgs),
    /// List the releases in the local store
    #[command(after_help = "\
Examples:
  slipway list
  slipway list --json")]
    List,
    /// Show a release's id, size, entries and provenance
    #[command(after_help = "\
Examples:
  slipway inspect v1.4.2
  slipway inspect sha256:3f1c --json")]
    Inspect(RelArgs),
    /// Show what changes between two releases, or between one and what each host runs
    #[command(after_help = "\
Reads the two manifests (never the bundles): paths added (A), removed
(D), modified (M: contents, executable bit or symlink target) and
changed kind (T: file, directory, symlink), in path order, then the
totals. When both releases were built from commits of the repository
in the working directory, the commits between them follow
(`git log --oneline A..B`). With -t and one release: one diff per
release the hosts run now, naming the hosts (a host that runs nothing
gets everything added). Exit 0 whether or not anything differs.

Examples:
  slipway diff v1.4.1 v1.4.2
  slipway diff v1.4.1 v1.4.2 --stat
  slipway diff v1.4.1 v1.4.2 --name-status | grep '^D'
  slipway diff v1.4.2 -t production")]
    Diff(DiffArgs),
    /// Re-hash a stored bundle, or the release trees on a target's hosts (exit 5 on any mismatch)
    #[command(after_help = "\
Examples:
  slipway verify v1.4.2                 # the bundle in the local store
  slipway verify -t production          # every release on every host
  slipway verify -t production v1.4.2")]
    Verify(VerifyArgs),
    /// Write a bundle to a .tar.zst file (plus a FILE.meta.json sidecar)
    #[command(after_help = "\
The file is byte-identical for a given id (with the same slipway
version) and unpacks with plain `tar --zstd -xf`; `slipway import`
verifies it on another machine.

Examples:
  slipway export v1.4.2 -o v1.4.2.tar.zst")]
    Export(ExportArgs),
    /// Verify a .tar.zst bundle and add it to the store
    #[command(after_help = "\
Every entry is checked against the manifest before anything is stored.

Examples:
  slipway import v1.4.2.tar.zst
  slipway import build.tar.zst --name ci-4711")]
    Import(ImportArgs),
    /// Remove bundles that no release name refers to, and temporary leftovers
    #[command(after_help = "\
With `--remote NAME`, collects the remote store instead: releases no
name binds, packs no bound release needs, and the claims and locks of killed
publishes. It never runs beside a publish (docs/remote-store.md).

Examples:
  slipway gc --dry-run
  slipway gc
  slipway gc --remote artifacts --dry-run")]
    Gc(GcArgs),
    /// Remove releases from the local store; their names stay bound to their ids
    #[command(after_help = "\
Removes each release's bundle from the local store (unless another
release uses the same bundle). Its name stays reserved for its id, so
it is never rebound to another bundle: building the same tag again,
`import` or `fetch` of the same id brings it back; another build under
that name is refused. Hosts are not touched (`slipway prune` cleans
them).

Examples:
  slipway forget v1.0.0 v1.0.1 --dry-run
  slipway forget v1.0.0")]
    Forget(ForgetArgs),
    /// Upload a release to a remote store (S3-compatible), only what it lacks
    #[command(after_help = "\
Uploads the contents the bucket does not have yet (shared between
releases, as in the local store), then the manifest, provenance and
signatures, and binds the name last. A name is bound once: publishing
another id under it is refused (exit 1), also against a publisher
racing this one. Publishing again adds signatures made since.
Credentials come from the environment and ~/.aws as the AWS CLI reads
them (docs/remote-store.md). With --plan: what it would upload and bind,
from reads of the bucket only.

Examples:
  slipway publish v1.4.2 --to artifacts
  slipway publish v1.4.2 --to artifacts --json
  slipway publish v1.4.2 --to artifacts --plan")]
    Publish(PublishArgs),
    /// Get a release from a remote store into the local store, verified
    #[command(after_help = "\
Downloads what the local store lacks, checks every byte against the
manifest and the manifest against the id (exit 5 on any mismatch),
and keeps the signatures that verify; `inspect` then shows the same id
and signers as where it was built. A killed fetch resumes.

Examples:
  slipway fetch v1.4.2 --from artifacts
  slipway fetch sha256:3f1c --from artifacts --name v1.4.2")]
    Fetch(FetchArgs),
    /// Sign a release with an SSH key (`ssh-keygen -Y sign`, namespace `slipway`)
    #[command(after_help = "\
Signs a statement binding the release name to its bundle id and
stores the signature beside the release; `export` and `push` carry it.
Hosts with `.slipway/allowed_signers` accept only releases signed by a
key listed there (docs/control.md). Signing again with the same key
replaces that key's signature.

Without --key: a key of the running ssh-agent, else the first of
~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa.

Examples:
  slipway sign v1.4.2
  slipway sign v1.4.2 --key ~/.ssh/release_ed25519
  slipway sign v1.4.2 --key ~/.ssh/id_ed25519.pub   # private half in ssh-agent")]
    Sign(SignArgs),
    /// Stage a release on every host of a target; nothing live changes
    #[command(after_help = "\
Sends only the file contents a host lacks, verifies every byte there,
and makes the release appear under `releases/<name>` only when it is
complete and durable. Pushing a release that is already staged is a
no-op (new signatures are added on the host); a push that was
interrupted resumes where it stopped. A host with
`.slipway/allowed_signers` refuses (exit 5) a release that no key listed
there signed (docs/control.md).

Examples:
  slipway push v1.4.2 -t prod
  slipway push v1.4.2 -t ssh://deploy@app1/srv/shop
  slipway push v1.4.2 -t /srv/shop --json")]
    Push(PushArgs),
    /// Point `current` at a staged release on every host (all or nothing)
    #[command(after_help = "\
Under each host's lock: checks --expect, runs the hooks, switches
`current` with one atomic rename, checks health. If any host fails,
every host that switched is switched back.

Examples:
  slipway activate v1.4.2 -t production
  slipway activate v1.4.2 -t production --expect v1.4.1")]
    Activate(ActivateArgs),
    /// Push, then activate on every host with hooks and health checks; all or nothing
    #[command(after_help = "\
Phase 1 pushes to every host in parallel (nothing live changes; any
failure stops here). Phase 2 takes every host's lock, runs
before_activate, switches, runs after_activate and health; any failure
switches every switched host back and marks the release bad there
(exit 3 for a failed health check). Then prunes beyond `keep`. With
--plan, it only says what it would do on each host (read-only) and exits
as it would; --expect-plan ID runs only that plan.

Examples:
  slipway deploy v1.4.2 -t production
  slipway deploy v1.4.2 -t production --hosts app1      # canary
  slipway deploy v1.4.2 -t production --batch 2         # rolling
  slipway deploy v1.4.2 -t production --plan            # what it would do, changing nothing")]
    Deploy(DeployArgs),
    /// Return to the previous good release (or --to REL) on every host, in one rename each
    #[command(after_help = "\
\"Previous\" comes from each host's history, skipping releases marked
bad; the release left behind is marked bad, so repeated rollbacks walk
back (v3 -> v2 -> v1). Data in shared/ is never touched.

Examples:
  slipway rollback -t production
  slipway rollback -t production --to v1.4.0
  slipway rollback -t production --plan    # where each host would go, changing nothing")]
    Rollback(RollbackArgs),
    /// Show what each host runs, what it would roll back to, and its releases
    #[command(after_help = "\
Examples:
  slipway status -t production
  slipway status -t production --hosts app1 --json")]
    Status(StatusArgs),
    /// Show the activation log of a target's hosts, newest first
    #[command(after_help = "\
Examples:
  slipway history -t production
  slipway history -t production -n 5 --json")]
    History(HistoryArgs),
    /// What exactly runs on a target and where it came from
    #[command(after_help = "\
For a release (name or id; default: what is current): its id, tag,
commit, builder and signer, where it passed its health check (the
target's promotion gate), and when it went live on each host.

Examples:
  slipway provenance -t production
  slipway provenance v1.4.2 -t production --json")]
    Provenance(ProvenanceArgs),
    /// Remove old releases and unreferenced content from a target's hosts
    #[command(after_help = "\
Keeps the current release, the rollback target, pinned releases,
releases pushed but not yet activated, and the N most recently
activated (--keep, else the target's `keep`, else 5).

Examples:
  slipway prune -t production --dry-run
  slipway prune -t production --keep 3
  slipway prune -t production --plan      # the same as --dry-run, without taking any lock")]
    Prune(PruneArgs),
    /// Check a target's hosts, or put this slipway on them
    #[command(
        subcommand,
        after_help = "\
Examples:
  slipway host check -t production
  slipway host install -t production"
    )]
    Host(HostCommand),
    /// Start, stop or inspect a target's service slots (A/B deploys)
    #[command(
        subcommand,
        after_help = "\
For targets with a `[service]` section (docs/ab-deploys.md). slipway's
own supervisor does not restart a crashed instance or start anything at
boot: `slipway service start` does, from cron `@reboot` or a unit.

Examples:
  slipway service status -t production
  slipway service start -t production
  slipway service stop -t production --slot b"
    )]
    Service(ServiceCommand),
    /// The host side: speak slipway's protocol on stdin/stdout for one root
    #[command(after_help = "\
Started by the client over SSH (or as a child process for a local
path); a push creates the root and its layout when missing (every other
request on a missing root fails, changing nothing), and it never touches
anything outside it. Confined unless --trust-client is given: it runs
only the hooks of the host's own <root>/.slipway/hooks.toml, with the
host's timeouts, never a command sent by the client. Suitable for a
forced command in authorized_keys:
  command=\"slipway serve --root /srv/app\",restrict ssh-ed25519 AAAA…

Examples:
  slipway serve --root /srv/shop
  slipway serve --root /srv/shop --append-only")]
    Serve(ServeArgs),
    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  slipway completions bash > ~/.local/share/bash-completion/completions/slipway
  slipway completions zsh > ~/.zfunc/_slipway
  slipway completions fish > ~/.config/fish/completions/slipway.fish")]
    Completions(CompletionsArgs),
    /// Print the man page, or write one page per command into a directory
    #[command(after_help = "\
Examples:
  slipway man | man -l -
  slipway man --dir ~/.local/share/man/man1")]
    Man(ManArgs),
}

/// `slipway host …`: the hosts themselves, not their releases.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Check each host: ssh, slipway version, root permissions, free space, `current`
    #[command(after_help = "\
Prints one line per check with `ok` or `PROBLEM`, and a fix for each
problem. Exit 1 when there is any problem. (The host's `serve` creates
the root when it is missing, as every command does.)

Examples:
  slipway host check -t production
  slipway host check -t ssh://deploy@app1/srv/shop --json")]
    Check(HostCheckArgs),
    /// Copy this slipway binary onto each host, verified by sha256
    #[command(after_help = "\
Checks over SSH that the host's OS and architecture match this binary
(`uname -sm`), streams the binary to PATH.tmp, compares its sha256 with
the local one, then renames it into place and runs `PATH --version`.
On a mismatch it installs nothing and prints how to build slipway on
that host instead. A local-path target gets a local copy.

Examples:
  slipway host install -t production
  slipway host install -t production --path /usr/local/bin/slipway")]
    Install(HostInstallArgs),
}

/// `slipway service …`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Each slot's release, instance, check and traffic, per host
    #[command(after_help = "\
Runs each running instance's check once. Exit 1 when a host cannot be
reached or its live instance is not running.

Examples:
  slipway service status -t production
  slipway service status -t production --json")]
    Status(ServiceArgs),
    /// Start the release a slot holds where its instance is not running, and check it
    #[command(after_help = "\
Without --slot: every slot that holds a release. Nothing moves traffic.
With --plan: each host's slots and what would be started, changing nothing.

Examples:
  slipway service start -t production
  slipway service start -t production --slot a
  slipway service start -t production --plan")]
    Start(ServiceChangeArgs),
    /// Stop a slot's instance (the one with traffic only with --force)
    #[command(after_help = "\
Examples:
  slipway service stop -t production --slot b
  slipway service stop -t production --slot b --plan")]
    Stop(ServiceChangeArgs),
    /// Stop a slot's instance and start it again, checked (the one with traffic only with --force)
    #[command(after_help = "\
Examples:
  slipway service restart -t production --slot b
  slipway service restart -t production --slot b --plan")]
    Restart(ServiceChangeArgs),
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The slot (`a` or `b`); `stop` and `restart` need it
    #[arg(long, value_parser = ["a", "b"])]
    pub slot: Option<String>,
    /// Stop or restart the slot that has the traffic (it is then unserved)
    #[arg(long)]
    pub force: bool,
}

/// `service start|stop|restart`: they change hosts, so they have a plan.
#[derive(Debug, Args)]
pub struct ServiceChangeArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
}

#[derive(Debug, Args)]
pub struct HostCheckArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct HostInstallArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where to put the binary on each host (absolute, or under `~/`)
    #[arg(long, value_name = "PATH", default_value = "~/.local/bin/slipway")]
    pub path: String,
}

/// Shells `completions` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write slipway.1 and one slipway-COMMAND.1 per command into DIR instead of printing
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Release name or (a unique prefix of) a bundle id
    pub rel: String,
    /// A slipway.toml target, ssh://[user@]host[:port]/abs/root, or a local path
    // The doc comment is `--help` text, not rustdoc: its brackets are not links.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(short = 't', long, value_name = "TARGET")]
    pub target: String,
    /// Only these hosts of the target (as written in slipway.toml), comma-separated
    #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Hosts download the release from this remote store (`[remotes.NAME]`) instead of over SSH [default: the target's `from`]
    #[arg(long, value_name = "REMOTE")]
    pub from: Option<String>,
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// `-t TARGET` and `--hosts`.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// A slipway.toml target, ssh://[user@]host[:port]/abs/root, or a local path
    // The doc comment is `--help` text, not rustdoc: its brackets are not links.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(short = 't', long, value_name = "TARGET")]
    pub target: String,
    /// Only these hosts (comma-separated, as written in slipway.toml)
    #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

/// `--plan` and `--expect-plan` of every command that changes hosts.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// Show what the command would do on each host and change nothing; exit with the code the command would
    #[arg(long, conflicts_with = "expect_plan")]
    pub plan: bool,
    /// Go on only if the plan is still ID (as `--plan` printed it); exit 6, changing nothing, otherwise
    #[arg(long, value_name = "ID")]
    pub expect_plan: Option<String>,
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
    /// Switch to a release that expects another schema than the database is at, with no migration to bring it there
    #[arg(long)]
    pub allow_schema_rollback: bool,
    /// Run the release's migration even though it already succeeded on this database
    #[arg(long)]
    pub migrate_again: bool,
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
    #[command(flatten)]
    pub plan: PlanArgs,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Release name or (a unique prefix of) a bundle id in the local store
    pub rel: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Hosts download the release from this remote store (`[remotes.NAME]`) instead of over SSH [default: the target's `from`]
    #[arg(long, value_name = "REMOTE")]
    pub from: Option<String>,
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
    /// Deploy to the reachable hosts when some cannot be reached, and report the others
    #[arg(long)]
    pub skip_unreachable: bool,
    /// Switch to a release that expects another schema than the database is at, with no migration to bring it there
    #[arg(long)]
    pub allow_schema_rollback: bool,
    /// Run the release's migration even though it already succeeded on this database
    #[arg(long)]
    pub migrate_again: bool,
    #[command(flatten)]
    pub plan: PlanArgs,
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
    #[command(flatten)]
    pub plan: PlanArgs,
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
    /// At most N records per host [default: 100]
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "all")]
    pub limit: Option<usize>,
    /// Every record (up to 8 MiB of them per host)
    #[arg(long)]
    pub all: bool,
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
    #[command(flatten)]
    pub plan: PlanArgs,
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
    /// Run the hook commands, environment and timeouts the client sends (the
    /// client passes this when it starts serve itself); ignored under a
    /// forced command
    #[arg(long)]
    pub trust_client: bool,
    /// Name of the key this forced command belongs to, recorded in the
    /// history as who connected (beside the operator the client claims)
    #[arg(long, value_name = "NAME", value_parser = key_name)]
    pub key_name: Option<String>,
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
pub struct DiffArgs {
    /// Release (name or id prefix) to compare from; with -t, the one to compare each host with
    #[arg(value_name = "A")]
    pub from: String,
    /// Release (name or id prefix) to compare with
    #[arg(value_name = "B", required_unless_present = "target", conflicts_with = "target")]
    pub to: Option<String>,
    /// Compare A with the release each host of TARGET runs now (read-only)
    #[arg(short = 't', long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Only these hosts of the target, comma-separated
    #[arg(long, value_name = "HOST,...", value_delimiter = ',', requires = "target")]
    pub hosts: Vec<String>,
    /// Only the header and the totals
    #[arg(long, conflicts_with_all = ["name_only", "name_status"])]
    pub stat: bool,
    /// Only the paths that differ, one per line
    #[arg(long, conflicts_with_all = ["name_status", "target"])]
    pub name_only: bool,
    /// Only a letter (A, D, M, T), a tab and the path per line, as git's
    #[arg(long, conflicts_with = "target")]
    pub name_status: bool,
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
    /// Collect this remote store (`[remotes.NAME]`) instead of the local store
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Release names
    #[arg(required = true)]
    pub releases: Vec<String>,
    /// Only say what would be removed
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Release name (or id prefix of a named release) in the local store
    pub release: String,
    /// The remote store (`[remotes.NAME]` in slipway.toml)
    #[arg(long, value_name = "NAME")]
    pub to: String,
    #[command(flatten)]
    pub plan: PlanArgs,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Release name, or id prefix, in the remote store
    pub release: String,
    /// The remote store (`[remotes.NAME]` in slipway.toml)
    #[arg(long, value_name = "NAME")]
    pub from: String,
    /// Name to bind it to locally [default: its name in the remote]
    #[arg(long)]
    pub name: Option<String>,
}

/// `serve --key-name`: a short printable name.
fn key_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("1 to 128 printable characters without spaces".into());
    }
    Ok(s.to_string())
}
