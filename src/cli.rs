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
    /// Re-hash a stored bundle against its manifest (exit 5 on any mismatch)
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
    /// Release name or (a unique prefix of) a bundle id
    pub rel: String,
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
