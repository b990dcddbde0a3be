//! The host side: everything `slipway serve` does under `--root`.
//!
//! Host logic is written once, here, and driven through the protocol by
//! either transport (a local child process or SSH), so most of it is tested
//! without SSH. Nothing here ever touches a path outside the root.

pub mod activate;
pub mod check;
pub mod fault;
pub mod history;
pub mod hooks;
pub mod intake;
pub mod layout;
pub mod links;
pub mod lock;
pub mod objects;
pub mod plan_push;
pub mod procs;
pub mod prune;
pub mod pull;
pub mod requests;
pub mod serve;
pub mod service;
pub mod session;
pub mod shared;
pub mod signatures;
pub mod sources;
pub mod space;
pub mod stage;
pub mod status;
pub mod verify;

#[cfg(test)]
mod tests;
