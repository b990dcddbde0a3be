//! `slipway completions SHELL`: a completion script for bash, zsh or fish on
//! stdout, generated from the same clap definition that parses the command
//! line, so it never lags behind a new flag.

use clap::CommandFactory;

use crate::Context;
use crate::cli::{Cli, CompletionsArgs, Shell};
use crate::error::{Error, Result};

/// # Errors
/// When stdout cannot be written.
pub fn run(args: &CompletionsArgs, ctx: &Context) -> Result<()> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "slipway", &mut script);
    ctx.out.raw(&script).map_err(|e| {
        Error::other(format!(
            "cannot write the completion script to stdout: {}",
            crate::error::describe_io(&e)
        ))
    })
}
