//! The error type and the exit-code table of DESIGN.md.
//!
//! Every failure that reaches the user is an [`Error`]; its [`Error::exit`]
//! decides the process exit status, so scripts can rely on the codes below.
//!
//! Invariants: a failure a caller reacts to is a variant, never a message
//! compared as text; every variant's exit code is fixed by its kind alone
//! (the table in `docs/exit-codes.md`); an error that happened on a host
//! says so once, through [`Error::on_host`], and [`Error::without_host`]
//! takes that prefix off again. The protocol carries the variant's kind
//! (`protocol::ErrorKind`), so it survives the trip from a host.

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
    /// A host does not understand a request: it runs an older slipway than
    /// the client (exit 1).
    #[error("{0}")]
    UnknownRequest(String),
    /// A forced command (`command=` in `authorized_keys`) refused what the
    /// client asked for: another command, root or flag (exit 2).
    #[error("{0}")]
    Restricted(String),
    /// Anything else (exit 1).
    #[error("{0}")]
    Other(String),
    /// The thread this one hands work to stopped (exit 1); that thread's
    /// own error says why, so whoever joins both reports that one instead.
    /// `0` says what the thread does (`writing the objects`).
    #[error("the thread {0} stopped")]
    ThreadStopped(&'static str),
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

    /// Attach the host this error happened on: its message then starts with
    /// `host: `. An error that names its host already keeps that one.
    pub fn on_host(self, host: &str) -> Error {
        match self {
            Error::Host { .. } => self,
            other => Error::Host {
                host: host.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// The error without the host it happened on (the inverse of
    /// [`Error::on_host`]), to quote inside a message or a row that names
    /// the host already.
    pub fn without_host(&self) -> &Error {
        match self {
            Error::Host { source, .. } => source.without_host(),
            other => other,
        }
    }

    /// The process exit status for this error.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Io { .. }
            | Error::Other(_)
            | Error::Connection(_)
            | Error::UnknownRequest(_)
            | Error::ThreadStopped(_) => Exit::Error,
            Error::Usage(_) | Error::Restricted(_) => Exit::Usage,
            Error::Integrity(_) => Exit::Integrity,
            Error::Locked(_) => Exit::Locked,
            Error::ExpectMismatch(_) => Exit::ExpectMismatch,
            Error::HealthRolledBack(_) => Exit::HealthRolledBack,
            Error::Host { source, .. } => source.exit(),
        }
    }

    /// An error of the kind that gives `exit`, saying `message` (a summary
    /// of several hosts' errors keeps the exit code they decided).
    pub fn with_exit(exit: Exit, message: String) -> Error {
        match exit {
            Exit::Locked => Error::Locked(message),
            Exit::Integrity => Error::Integrity(message),
            Exit::ExpectMismatch => Error::ExpectMismatch(message),
            Exit::HealthRolledBack => Error::HealthRolledBack(message),
            Exit::Usage => Error::Usage(message),
            Exit::Success | Exit::Error => Error::Other(message),
        }
    }

    /// An error of the same kind (the same variant, so the same exit code
    /// and the same reaction from callers) saying `message` instead, without
    /// the host: for a message that quotes this one, or that names the host
    /// itself.
    pub fn reworded(&self, message: String) -> Error {
        match self {
            Error::Usage(_) => Error::Usage(message),
            Error::Integrity(_) => Error::Integrity(message),
            Error::Locked(_) => Error::Locked(message),
            Error::ExpectMismatch(_) => Error::ExpectMismatch(message),
            Error::HealthRolledBack(_) => Error::HealthRolledBack(message),
            Error::UnknownRequest(_) => Error::UnknownRequest(message),
            Error::Restricted(_) => Error::Restricted(message),
            Error::Connection(_) => Error::Connection(message),
            Error::Host { source, .. } => source.reworded(message),
            Error::Io { .. } | Error::Other(_) | Error::ThreadStopped(_) => Error::Other(message),
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
        assert_eq!(Error::UnknownRequest("x".into()).exit().code(), 1);
        assert_eq!(Error::Restricted("x".into()).exit().code(), 2);
        let io = Error::io("read", Path::new("/x"), io::Error::from_raw_os_error(2));
        assert_eq!(io.exit().code(), 1);
        assert_eq!(io.to_string(), "cannot read `/x`: no such file or directory");
        assert_eq!(Error::integrity("x").on_host("app1").exit().code(), 5);
    }

    #[test]
    fn reworded_errors_keep_their_kind() {
        for e in [
            Error::other("m"),
            Error::usage("m"),
            Error::HealthRolledBack("m".into()),
            Error::Locked("m".into()),
            Error::integrity("m"),
            Error::ExpectMismatch("m".into()),
            Error::UnknownRequest("m".into()),
            Error::Restricted("m".into()),
        ] {
            let again = e.reworded("n".into());
            assert_eq!(again.exit(), e.exit());
            assert_eq!(std::mem::discriminant(&again), std::mem::discriminant(&e));
            assert_eq!(again.to_string(), "n");
            assert_eq!(Error::with_exit(e.exit(), "n".into()).exit(), e.exit());
        }
        assert_eq!(Error::other("m").on_host("app1").reworded("n".into()).to_string(), "n");
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
