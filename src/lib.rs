//! slipway: a release artifact store with SSH push.
//!
//! ```text
//!  git tag ──build──▶ bundle (.tar.zst, id = sha256 of manifest) ──▶ local store
//!                                         │ push: offer manifest, send only missing objects
//!                                         ▼
//!  host: <root>/.slipway/objects ──hardlinks──▶ releases/<name> ◀── current (atomic rename)
//! ```
//!
//! - [`cli`] parses, [`config`] resolves, [`commands`] orchestrate one verb each;
//! - [`manifest`] and [`digest`] define ids and the rules every tree keeps,
//!   [`diff`] the difference between two manifests;
//!   [`signature`] signs and checks releases with `ssh-keygen` (sshsig);
//! - [`bundle`] packs and unpacks archives, [`store`] keeps them locally;
//! - [`protocol`] is the framed wire format; [`remote`] is its client end
//!   (targets, transports, sessions), [`host`] its server end (`serve`, staging);
//! - [`output`] is the only writer to stdout/stderr; [`fs`] owns durable writes;
//!   [`parallel`] runs one closure per host, bounded, results in host order;
//! - [`error`] maps every failure to a documented exit code.
//!
//! `docs/architecture.md` is the longer map: the layers and who may import
//! whom, the path of a release through the modules, the invariants each
//! layer keeps, and how to add a request to the protocol.

pub mod bucket;
pub mod build;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diff;
pub mod digest;
pub mod error;
pub mod fleet;
pub mod fs;
pub mod host;
pub mod import;
pub mod interrupt;
pub mod manifest;
pub mod output;
pub mod parallel;
pub mod protocol;
pub mod provenance;
pub mod remote;
pub mod signature;
pub mod store;
pub mod tail;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, HostCommand};
use crate::error::Result;
use crate::output::Output;

/// Everything a command needs, resolved once from flags and environment.
pub struct Context {
    pub out: Output,
    pub store_dir: PathBuf,
    /// `--config`, or `./slipway.toml`.
    pub config_path: PathBuf,
    /// True when `--config` was given (then the file must exist).
    pub config_explicit: bool,
}

impl Context {
    /// Open the local store.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn store(&self) -> Result<store::Store> {
        store::Store::open(&self.store_dir)
    }
}

/// Parse `args`, run the command, and return the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let out = Output::new(cli.global.json, cli.global.quiet, cli.global.verbose);
    // A host's `serve` keeps the default: it notices its client going away.
    if !matches!(cli.command, Command::Serve(_)) {
        interrupt::install();
    }
    match resolve(&cli, out.clone()).and_then(|ctx| run(&cli.command, &ctx)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.exit().code())
        }
    }
}

fn resolve(cli: &Cli, out: Output) -> Result<Context> {
    let store_dir = match cli.global.store.clone().or_else(config::store_from_env) {
        Some(s) => s,
        // These never open a local store: a host need not have a home directory,
        // and setting up needs no store yet.
        None if matches!(
            cli.command,
            Command::Serve(_)
                | Command::Init
                | Command::Host(_)
                | Command::Service(_)
                | Command::Completions(_)
                | Command::Man(_)
        ) =>
        {
            PathBuf::new()
        }
        None => config::default_store_dir()?,
    };
    Ok(Context {
        out,
        store_dir,
        config_path: cli
            .global
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("slipway.toml")),
        config_explicit: cli.global.config.is_some(),
    })
}

/// Run one command.
///
/// # Errors
/// Whatever the command reports; its exit code comes from [`error::Error::exit`].
pub fn run(command: &Command, ctx: &Context) -> Result<()> {
    match command {
        Command::Init => commands::init::run(ctx),
        Command::Build(a) => commands::build::run(a, ctx),
        Command::List => commands::list::run(ctx),
        Command::Inspect(a) => commands::inspect::run(a, ctx),
        Command::Diff(a) => commands::diff::run(a, ctx),
        Command::Verify(a) => commands::verify::run(a, ctx),
        Command::Export(a) => commands::export::run(a, ctx),
        Command::Import(a) => commands::import::run(a, ctx),
        Command::Gc(a) => commands::gc::run(a, ctx),
        Command::Forget(a) => commands::forget::run(a, ctx),
        Command::Publish(a) => commands::publish::run(a, ctx),
        Command::Fetch(a) => commands::fetch::run(a, ctx),
        Command::Sign(a) => commands::sign::run(a, ctx),
        Command::Push(a) => commands::push::run(a, ctx),
        Command::Activate(a) => commands::activate::run(a, ctx),
        Command::Deploy(a) => commands::deploy::run(a, ctx),
        Command::Rollback(a) => commands::rollback::run(a, ctx),
        Command::Status(a) => commands::status::run(a, ctx),
        Command::History(a) => commands::history::run(a, ctx),
        Command::Provenance(a) => commands::provenance::run(a, ctx),
        Command::Prune(a) => commands::prune::run(a, ctx),
        Command::Host(HostCommand::Check(a)) => commands::host::check(a, ctx),
        Command::Host(HostCommand::Install(a)) => commands::host::install(a, ctx),
        Command::Service(c) => commands::service::run(c, ctx),
        Command::Serve(a) => commands::serve::run(a, ctx),
        Command::Completions(a) => commands::completions::run(a, ctx),
        Command::Man(a) => commands::man::run(a, ctx),
    }
}
