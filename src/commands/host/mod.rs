//! `slipway host …`: the hosts themselves rather than their releases —
//! [`check`] whether each host is ready, [`install`] this slipway there.
//! Both act on every host of a target at once (bounded by the target's
//! `parallel`) and report per host, in the target's host order.

mod check;
mod install;
mod reach;

pub use check::check;
pub use install::install;
