//! The wire protocol between the client (`slipway push`, …) and the host
//! (`slipway serve`), shared by both sides and by both transports.
//! `docs/protocol.md` is its specification.
//!
//! Layers, each a file, each using only those before it:
//! - [`version`]: the protocol number and this slipway's version;
//! - [`kind`]: the kinds of error an `error` message carries;
//! - [`codec`]: frames — building and parsing every frame header, reading
//!   and writing frames, splicing file contents into DATA frames;
//! - [`types`]: what the host's answers carry (status, history records,
//!   lock holder, prune and check reports, drift, signers);
//! - [`messages`]: every control message and the payloads of requests and
//!   answers, the `hello` check;
//! - [`channel`]: a connection as both ends use it, messages and data
//!   sequences in both directions.
//!
//! Invariants: every byte in either direction belongs to a frame no larger
//! than [`MAX_FRAME`]; the first frame each way is `hello`, and the shapes of
//! `hello` and `error` never change. The protocol sits below both of its
//! ends: `host` and `remote` depend on it, it depends on neither.
//!
//! Everything public is re-exported here, so `crate::protocol::Message` and
//! the like are the paths the rest of slipway uses.

pub mod channel;
pub mod codec;
pub mod kind;
pub mod messages;
pub mod types;
pub mod version;

pub use channel::{Channel, DataReader, DataWriter, refusal};
pub use codec::{DATA_CHUNK, DataHeader, FRAME_HEADER, FrameReader, FrameType, FrameWriter, MAX_FRAME, Peer};
pub use kind::ErrorKind;
pub use messages::{
    ActivateRequest, DbFacts, HookRequest, HookResult, Location, MAX_LOCATIONS, Message, Need, PullSource, PushOffer,
    RollbackRequest, ServiceOp, ServiceRequest, ServiceSwitch, Staged, check_hello, check_hello_for, decode_indices,
    decode_locations, encode_indices, encode_locations,
};
pub use types::{
    CheckReport, CurrentState, Drift, Finding, HostStatus, LockInfo, Migration, PruneReport, PushPlan, Record, Refusal,
    ReleaseStatus, ServiceReport, Signer, SlotStatus, StartFailure, Started, who,
};
pub use version::{PROTOCOL, VERSION};
