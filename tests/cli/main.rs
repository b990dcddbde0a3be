//! The one integration-test binary: every test drives the real `slipway`
//! binary, the way a user's session would.

mod support;

mod bundles;
mod hostile;
mod ssh;
