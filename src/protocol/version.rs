//! Which protocol this slipway speaks: the numbers both sides put in
//! `hello` and name in errors.
//!
//! Invariant: [`PROTOCOL`] changes whenever a frame, a message or a
//! sequence changes incompatibly, and only then.

/// The protocol version; bumped whenever a message or sequence changes incompatibly.
pub const PROTOCOL: u32 = 1;
/// This slipway's version, sent in `hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
