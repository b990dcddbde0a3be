//! The client half of `push`: offer a release, send its manifest, then only
//! the contents the host lacks.
//!
//! A push is three steps, so that a fleet can share work between them:
//! [`HostSession::offer`] (the host answers what it lacks), the contents,
//! [`HostSession::finish_push`]; the first and the last are in [`offer`].
//! Two ways to send contents (`docs/protocol.md`):
//! - when the host lacks (nearly) all the bytes, the stored bundle itself,
//!   verbatim (nothing is recompressed; the host keeps what it needs),
//!   spliced from the page cache into the connection — for several hosts,
//!   spliced once and duplicated with tee(2) ([`bundle`]);
//! - otherwise batches: the needed objects, read from the frames of the
//!   local bundle that hold them, each batch one zstd frame announced by the
//!   list of its manifest entries, produced once for every host of a group
//!   that lacks the same objects ([`batches`]).
//!
//! [`job`] holds what a push is and reports. Every file here uses `job` and
//! the protocol, none uses another; this one drives them for one host.
//!
//! Invariants: memory is bounded by one frame and one compression window,
//! whatever the file sizes; `bytes_sent` counts the data bytes that crossed
//! the connection (manifest and contents, with their frame headers).

pub mod batches;
pub mod bundle;
pub mod job;
pub mod offer;

pub use batches::{BATCH_BYTES, BATCH_OBJECTS, Batch, BatchEncoder, Piece, plan_batches, send_batches};
pub use bundle::send_bundle_to_all;
pub use job::{Contents, Needed, Offered, PullAssist, PushJob, PushOutcome, compress_manifest};
pub use offer::{BUNDLE_PERCENT, MAX_PULL_MANIFEST};

use indicatif::ProgressBar;

use crate::config::LinkMode;
use crate::error::Result;
use crate::remote::session::HostSession;

impl HostSession {
    /// Stage `job` on this host (request `push`): offer, send what the host
    /// lacks, and wait for `staged`.
    ///
    /// # Errors
    /// The host's refusal (with its exit code), local store damage, or a
    /// broken connection; always naming the host.
    pub fn push(&mut self, job: &PushJob<'_>, link_mode: LinkMode, bar: &ProgressBar) -> Result<PushOutcome> {
        let needed = match self.offer(job, link_mode, bar)? {
            Offered::Already(outcome) => return Ok(outcome),
            Offered::Need(n) => n,
        };
        match needed.how {
            Contents::Nothing => {}
            Contents::Bundle => self.send_bundle(job, bar)?,
            Contents::Batches => {
                let mut one = [(&mut *self, bar.clone())];
                if let Some(e) = send_batches(job, &needed.indices, &mut one).pop().and_then(Result::err) {
                    return Err(e);
                }
            }
        }
        self.finish_push(job, &needed)
    }
}
