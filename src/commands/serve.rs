//! `slipway serve --root DIR`: the host side of the protocol on stdin/stdout
//! (see `host::serve`). Writes nothing but protocol frames on stdout.

use crate::Context;
use crate::cli::ServeArgs;
use crate::error::Result;

/// # Errors
/// Whatever ended the session; it was sent to the client too when possible.
pub fn run(args: &ServeArgs, _ctx: &Context) -> Result<()> {
    crate::host::serve::serve_stdio(
        &args.root,
        args.append_only,
        args.trust_client,
        args.key_name.as_deref(),
    )
}
