//! The `slipway` binary: parse arguments, run, turn the result into an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    slipway::main_with_args(std::env::args_os())
}
