//! The host side: everything `slipway serve` does under `--root`.
//!
//! Host logic is written once, here, and driven through the protocol by
//! either transport (a local child process or SSH), so most of it is tested
//! without SSH. Nothing here ever touches a path outside the root.

pub mod layout;
pub mod objects;
pub mod serve;
pub mod signatures;
pub mod stage;
