//! Many hosts at once: parallel push, then a two-phase, all-or-nothing
//! switch of `current` with hooks and health checks.
//!
//! Every command that changes `current` on a target goes through
//! [`Fleet::switch`], one host or many:
//!
//! 1. connect to every host (unreachable: stop, unless `--skip-unreachable`);
//! 2. take every host's lock (one held by someone else: stop, exit 4);
//! 3. read each host's state (with `--expect-plan`, still the approved
//!    plan's) and decide what it switches to, and what the
//!    switch does to the database (`db`: refused with exit 7 when nothing
//!    brings the database to the release's schema);
//! 4. run `before_activate` everywhere (deploy/activate only);
//! 5. per batch: start and check the release in a service slot (`service`),
//!    then, before the first batch switches, `backup`, `pause` and the
//!    migration (`db`); switch (moving a service's traffic with it), run
//!    `after_activate`, check `health`;
//! 6. on any failure, switch every switched host back (marking the new
//!    release bad there), run `after_activate` again, and stop what was
//!    started in service slots; whatever happened, `resume` intake.
//!
//! Invariant: either every selected host ends on the new release, or every
//! host that was switched is back where it was; the report says which for
//! each host. Nothing is switched anywhere before every host is locked and
//! ready. When a step fails somewhere, its one error names the failed hosts
//! and exits with the code of the host it quotes first.
//!
//! One file a stage: `member` is one host and the state each stage leaves
//! for the next; `push` stages a release everywhere; `plan` decides
//! what each host switches to; `preview` runs those stages read-only for
//! `--plan`; `switch` runs steps 1–5 and `revert`
//! step 6; `service` and `db` are the service-slot and database steps; `hooks` runs a hook on a host; `report` is what the command
//! says per host; `provenance` gathers what `slipway provenance` shows;
//! `connect` holds the [`Fleet`] itself (connecting,
//! queries, and the one error a failed step ends with). This file only
//! names them. Hosts are driven in parallel through [`crate::parallel`],
//! and every list this module returns is in the target's host order. The
//! files import one way only: `report` ← `member` ← `connect` ← the stages.

mod connect;
mod db;
mod hooks;
mod member;
mod plan;
mod preview;
pub mod provenance;
mod push;
mod report;
mod revert;
mod service;
mod switch;

pub use connect::{DEFAULT_PARALLEL, Fleet, select_hosts};
pub use plan::Goal;
pub use preview::{DbForecast, Forecast, HostPlan, PlanStep, ServicePlan, Signers, SlotStep, plan_id, steps_text};
pub use report::{HostReport, Outcome, Phase, describe_push, print_reports};
pub use service::{ServiceAction, ServiceOutcome};
pub use switch::{Approved, SwitchOptions};
