//! The kind an `error` message carries: which [`Error`] variant the host
//! failed with, so the client rebuilds the same variant — the same exit
//! code, and the same reaction from code that handles it — without ever
//! reading the message's text.
//!
//! Invariants: a kind's wire name never changes (the first six are the
//! exit classes of protocol 1 and keep their bytes); kinds are only ever
//! added, and a kind this slipway does not know is read as [`ErrorKind::Error`]
//! (exit 1); the one place that still reads an old host's text is
//! [`ErrorKind::from_old_host`].

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// `error.kind` on the wire (`docs/protocol.md`, "Error kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A bad request, name or flag (exit 2).
    Usage,
    /// A digest, manifest or archive does not match (exit 5).
    Integrity,
    /// The host's lock is held by another operator (exit 4).
    Locked,
    /// `expect` named a release that is not current (exit 6).
    Expect,
    /// A health check failed and the release was rolled back (exit 3).
    Health,
    /// The host does not understand the request: it is older than the
    /// client (exit 1).
    UnknownRequest,
    /// A forced command refused the command, root or flag the client asked
    /// for (exit 2).
    Restricted,
    /// The host's root does not exist yet: nothing was created (exit 1).
    RootMissing,
    /// Anything without a kind of its own (exit 1); also what a kind from a
    /// newer slipway reads as (last: serde requires it of `other`).
    #[serde(other)]
    Error,
}

impl ErrorKind {
    /// The kind of `e` (of the error inside, when `e` names a host).
    pub fn of(e: &Error) -> ErrorKind {
        match e.without_host() {
            Error::Usage(_) => ErrorKind::Usage,
            Error::Integrity(_) => ErrorKind::Integrity,
            Error::Locked(_) => ErrorKind::Locked,
            Error::ExpectMismatch(_) => ErrorKind::Expect,
            Error::HealthRolledBack(_) => ErrorKind::Health,
            Error::UnknownRequest(_) => ErrorKind::UnknownRequest,
            Error::Restricted(_) => ErrorKind::Restricted,
            Error::RootMissing(_) => ErrorKind::RootMissing,
            _ => ErrorKind::Error,
        }
    }

    /// The error of this kind saying `message` (the inverse of [`ErrorKind::of`]).
    pub fn error(self, message: String) -> Error {
        match self {
            ErrorKind::Error => Error::Other(message),
            ErrorKind::Usage => Error::Usage(message),
            ErrorKind::Integrity => Error::Integrity(message),
            ErrorKind::Locked => Error::Locked(message),
            ErrorKind::Expect => Error::ExpectMismatch(message),
            ErrorKind::Health => Error::HealthRolledBack(message),
            ErrorKind::UnknownRequest => Error::UnknownRequest(message),
            ErrorKind::Restricted => Error::Restricted(message),
            ErrorKind::RootMissing => Error::RootMissing(message),
        }
    }

    /// The kind a host meant when it sent `kind` with `message`.
    ///
    /// Compatibility with old hosts only: slipway 0.1.0 hosts built before
    /// `unknown_request` and `restricted` existed send `error` for a
    /// request they do not know and `usage` when their forced command
    /// refuses the client, and only their (fixed) text tells those apart.
    /// This is the one place that reads it; a host that sends the new kinds
    /// never reaches the text test, and this can go once no supported host
    /// runs such a build.
    pub fn from_old_host(kind: ErrorKind, message: &str) -> ErrorKind {
        match kind {
            ErrorKind::Error if message.contains("is not a request this host understands") => ErrorKind::UnknownRequest,
            ErrorKind::Usage
                if message.starts_with("this key may only run ")
                    || message.starts_with("this key is restricted to ") =>
            {
                ErrorKind::Restricted
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_of_the_first_kinds_never_change() {
        let names = [
            (ErrorKind::Error, "error"),
            (ErrorKind::Usage, "usage"),
            (ErrorKind::Integrity, "integrity"),
            (ErrorKind::Locked, "locked"),
            (ErrorKind::Expect, "expect"),
            (ErrorKind::Health, "health"),
            (ErrorKind::UnknownRequest, "unknown_request"),
            (ErrorKind::Restricted, "restricted"),
            (ErrorKind::RootMissing, "root_missing"),
        ];
        for (kind, name) in names {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ErrorKind>(&format!("\"{name}\"")).unwrap(), kind);
        }
    }

    #[test]
    fn a_kind_from_a_newer_host_is_a_plain_error() {
        let kind: ErrorKind = serde_json::from_str("\"disk_on_fire\"").unwrap();
        assert_eq!(kind, ErrorKind::Error);
        assert_eq!(kind.error("m".into()).exit().code(), 1);
    }

    #[test]
    fn kinds_round_trip_with_their_exit_codes() {
        let mut all = crate::error::one_of_each_kind();
        all.push(Error::integrity("m").on_host("app1"));
        for e in all {
            let back = ErrorKind::of(&e).error("m".into());
            assert_eq!(back.exit(), e.exit());
            assert_eq!(ErrorKind::of(&back), ErrorKind::of(&e));
        }
    }

    #[test]
    fn only_old_hosts_are_read_by_their_text() {
        let old = "`check` is not a request this host understands (slipway 0.1.0)";
        assert_eq!(
            ErrorKind::from_old_host(ErrorKind::Error, old),
            ErrorKind::UnknownRequest
        );
        let old = "this key may only run `slipway serve --root /srv/app`; it asked for `uname -sm`";
        assert_eq!(ErrorKind::from_old_host(ErrorKind::Usage, old), ErrorKind::Restricted);
        assert_eq!(
            ErrorKind::from_old_host(ErrorKind::Integrity, old),
            ErrorKind::Integrity
        );
        assert_eq!(ErrorKind::from_old_host(ErrorKind::Usage, "bad name"), ErrorKind::Usage);
    }
}
