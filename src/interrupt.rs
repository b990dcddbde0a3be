//! Ctrl-C (SIGINT), SIGTERM and SIGHUP (the operator's terminal closed) in
//! the client: what a stopped command leaves behind must be something the
//! operator is told about.
//!
//! ```text
//! outside a push or switch ──▶ exit 130 at once (nothing is half-done there)
//! during a push            ──▶ exit 130 at once: nothing was activated; the
//!                              hosts keep what they received
//! during a switch, first   ──▶ keep going as if a check had failed: hooks that
//!                              may be cut are cancelled on the hosts, what
//!                              moved is switched back, the outcome reported
//! during a switch, again   ──▶ exit 130 at once, saying the fleet may be mixed
//! ```
//!
//! Invariant: the handler only prints and exits, or sets a flag; the
//! threads that talk to hosts read the flag ([`interrupted`]) and end the
//! switch through its ordinary failure path. Connections to local hosts
//! run in their own process group (see `remote::local`), so a Ctrl-C on
//! the terminal reaches this process alone. ssh's connection is a
//! background master.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// The exit code of a command stopped by SIGINT, SIGTERM or SIGHUP
/// (128 + SIGINT, as shells report a Ctrl-C).
pub const EXIT_INTERRUPTED: u8 = 130;

const IDLE: u8 = 0;
const PUSH: u8 = 1;
const SWITCH: u8 = 2;

static PHASE: AtomicU8 = AtomicU8::new(IDLE);
static COUNT: AtomicU8 = AtomicU8::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The target of the phase, for the messages.
static TARGET: Mutex<String> = Mutex::new(String::new());

/// Handle SIGINT and SIGTERM from now on (client commands only: a host's
/// `serve` keeps the default, and notices its client going away instead).
pub fn install() {
    // Fails only when a handler is already set (tests calling twice).
    let _ = ctrlc::set_handler(handle);
}

/// Whether the operator asked the running switch to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The phase a command is in until the guard is dropped.
#[must_use]
pub struct Phase(u8);

impl Drop for Phase {
    fn drop(&mut self) {
        PHASE.store(self.0, Ordering::SeqCst);
    }
}

/// A push to the hosts of `target` (content only: nothing live changes).
pub fn push(target: &str) -> Phase {
    enter(PUSH, target)
}

/// A switch of the hosts of `target` (and its hooks, checks and reverts).
pub fn switch(target: &str) -> Phase {
    enter(SWITCH, target)
}

fn enter(phase: u8, target: &str) -> Phase {
    if let Ok(mut t) = TARGET.lock() {
        t.clear();
        t.push_str(target);
    }
    Phase(PHASE.swap(phase, Ordering::SeqCst))
}

/// One line on stderr; a terminal that is gone (SIGHUP) is no reason to stop.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn handle() {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let target = TARGET.lock().map(|t| t.clone()).unwrap_or_default();
    let status = format!("`slipway status -t {target}`");
    match (PHASE.load(Ordering::SeqCst), n) {
        (SWITCH, 1) => {
            INTERRUPTED.store(true, Ordering::SeqCst);
            say(
                "slipway: interrupted: ending the switch as a failed check would (cancelling the hosts' checks, switching back the hosts that moved); press Ctrl-C again to stop at once",
            );
        }
        (SWITCH, _) => {
            say(&format!(
                "slipway: stopped at once during a switch: the hosts may be on different releases and may still hold their lock for a few seconds; {status} shows where each one is, and re-running the command or `slipway rollback -t {target}` settles them"
            ));
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        (PUSH, _) => {
            say(
                "slipway: interrupted during the push: nothing was activated; each host keeps the objects it received, and the next push sends only the rest",
            );
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        _ => {
            say("slipway: interrupted");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    }
}
