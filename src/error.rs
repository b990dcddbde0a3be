//! The error type and the exit-code table of DESIGN.md.
//!
//! Every failure that reaches the user is an [`Error`]; its [`Error::exit`]
//! decides the process exit status, so scripts can rely on the codes below.

use std::io;
use std::path::{Path, PathBuf};

/// Documented process exit codes (DESIGN.md, `docs/exit-codes.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    Error = 1,
    Usage = 2,
    HealthRolledBack = 3,
    Locked = 4,
    Integrity = 5,
    ExpectMismatch = 6,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// What went wrong, with the path, host or release it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system call failed on `path`.
    #[error("cannot {action} `{path}`: {}", describe_io(source))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The command line or configuration is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A digest, manifest or archive does not match what it claims (exit 5).
    #[error("{0}")]
    Integrity(String),
    /// Another operator holds a host's lock (exit 4).
    #[error("{0}")]
    Locked(String),
    /// `--expect` named a release that is not current (exit 6).
    #[error("{0}")]
    ExpectMismatch(String),
    /// A health check failed and the release was rolled back (exit 3).
    #[error("{0}")]
    HealthRolledBack(String),
    /// Anything else (exit 1).
    #[error("{0}")]
    Other(String),
    /// The connection to the other side of the protocol broke or was closed
    /// (exit 1); the client replaces it with the host's own error when there is one.
    #[error("{0}")]
    Connection(String),
    /// An error that happened on (or while talking to) a host.
    #[error("{host}: {source}")]
    Host {
        host: String,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn other(msg: impl Into<String>) -> Error {
        Error::Other(msg.into())
    }

    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    pub fn integrity(msg: impl Into<String>) -> Error {
        Error::Integrity(msg.into())
    }

    pub fn connection(msg: impl Into<String>) -> Error {
        Error::Connection(msg.into())
    }

    /// True when the error is the connection itself failing (not a refusal).
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Connection(_) => true,
            Error::Host { source, .. } => source.is_connection(),
            _ => false,
        }
    }

    /// Attach the host this error happened on.
    pub fn on_host(self, host: &str) -> Error {
        match self {
            Error::Host { .. } => self,
            other => Error::Host {
                host: host.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// The error without the host it happened on, to quote inside a message
    /// that names the host already.
    pub fn without_host(&self) -> &Error {
        match self {
            Error::Host { source, .. } => source.without_host(),
            other => other,
        }
    }

    /// The process exit status for this error.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Io { .. } | Error::Other(_) | Error::Connection(_) => Exit::Error,
            Error::Usage(_) => Exit::Usage,
            Error::Integrity(_) => Exit::Integrity,
            Error::Locked(_) => Exit::Locked,
            Error::ExpectMismatch(_) => Exit::ExpectMismatch,
            Error::HealthRolledBack(_) => Exit::HealthRolledBack,
            Error::Host { source, .. } => source.exit(),
        }
    }

    /// A stable short name of the kind, used in the protocol and `--json`.
    pub fn kind(&self) -> &'static str {
        match self.exit() {
            Exit::Success | Exit::Error => "error",
            Exit::Usage => "usage",
            Exit::HealthRolledBack => "health",
            Exit::Locked => "locked",
            Exit::Integrity => "integrity",
            Exit::ExpectMismatch => "expect",
        }
    }

    /// Rebuild an error from its kind and message (the inverse of [`Error::kind`]).
    pub fn from_kind(kind: &str, message: String) -> Error {
        match kind {
            "usage" => Error::Usage(message),
            "health" => Error::HealthRolledBack(message),
            "locked" => Error::Locked(message),
            "integrity" => Error::Integrity(message),
            "expect" => Error::ExpectMismatch(message),
            _ => Error::Other(message),
        }
    }

    /// True when the error is a full disk, wherever it came from.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.raw_os_error() == Some(28),
            Error::Host { source, .. } => source.is_no_space(),
            _ => false,
        }
    }
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`, …), so that
/// text taken from hostile input can neither split an error line in two nor
/// drive the terminal.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `io::Error` text in slipway's style: lowercase, without "(os error N)".
pub fn describe_io(e: &io::Error) -> String {
    if e.raw_os_error() == Some(28) {
        return "no space left on device".to_string();
    }
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    lowercase_first(text)
}

/// `text` with its first letter in lower case, for a library's message
/// (`Unknown frame descriptor`) quoted inside one of slipway's.
pub fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_documented_table() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Error::other("x").exit().code(), 1);
        assert_eq!(Error::usage("x").exit().code(), 2);
        assert_eq!(Error::HealthRolledBack("x".into()).exit().code(), 3);
        assert_eq!(Error::Locked("x".into()).exit().code(), 4);
        assert_eq!(Error::integrity("x").exit().code(), 5);
        assert_eq!(Error::ExpectMismatch("x".into()).exit().code(), 6);
        let io = Error::io("read", Path::new("/x"), io::Error::from_raw_os_error(2));
        assert_eq!(io.exit().code(), 1);
        assert_eq!(io.to_string(), "cannot read `/x`: no such file or directory");
        assert_eq!(Error::integrity("x").on_host("app1").exit().code(), 5);
    }

    #[test]
    fn kinds_round_trip() {
        for e in [
            Error::other("m"),
            Error::usage("m"),
            Error::HealthRolledBack("m".into()),
            Error::Locked("m".into()),
            Error::integrity("m"),
            Error::ExpectMismatch("m".into()),
        ] {
            assert_eq!(Error::from_kind(e.kind(), "m".into()).exit(), e.exit());
        }
    }

    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(one_line("plain `text` é"), "plain `text` é");
        assert_eq!(one_line("a\nerror: b\u{1b}[31m\t"), "a\\nerror: b\\u{1b}[31m\\t");
    }

    #[test]
    fn no_space_is_named_plainly() {
        let e = Error::io("write", Path::new("/r/x"), io::Error::from_raw_os_error(28));
        assert!(e.is_no_space());
        assert_eq!(e.to_string(), "cannot write `/r/x`: no space left on device");
    }
}
