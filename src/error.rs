//! The error type and the exit-code table (`docs/exit-codes.md`).
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

/// Documented process exit codes (`docs/exit-codes.md`).
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
    SchemaMismatch = 7,
    /// Stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
    Interrupted = 130,
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
    /// The operator stopped the command (Ctrl-C, SIGTERM; exit 130): the
    /// message says what state it left.
    #[error("{0}")]
    Interrupted(String),
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
    /// The release expects another schema than the database is at, and
    /// nothing would bring it there (exit 7).
    #[error("{0}")]
    SchemaMismatch(String),
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
    /// A remote store (S3 bucket) could not be reached or refused a
    /// request (exit 1); the message names the remote, the key and why.
    #[error("{0}")]
    Remote(String),
    /// A remote store already binds the name to another id, or a publish
    /// of another id under it is in progress (exit 1).
    #[error("{0}")]
    RemoteRebound(String),
    /// A value could not be written as JSON (exit 1).
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    /// A JSON file slipway keeps does not parse (exit 1).
    #[error("cannot parse `{path}`: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A program slipway needs could not be started; `hint` says how to get it.
    #[error("cannot run `{program}`: {}{hint}", describe_io(source))]
    Run {
        program: String,
        hint: &'static str,
        #[source]
        source: io::Error,
    },

    // Building a bundle from a tree.
    /// A file name in the tree being bundled is not UTF-8.
    #[error("`{path}` has a name that is not valid UTF-8; rename it")]
    NameNotUtf8 { path: PathBuf },
    /// A symlink in the tree being bundled has a target that is not UTF-8.
    #[error("symlink `{path}` has a target that is not valid UTF-8")]
    LinkTargetNotUtf8 { path: PathBuf },
    /// The tree being bundled holds a device, fifo or socket.
    #[error("`{path}` is a special file (device, fifo or socket); bundles hold only files, directories and symlinks")]
    SpecialFile { path: PathBuf },
    /// A file's size changed between listing and reading it.
    #[error("`{path}` changed while it was being read (expected {size} bytes); rerun when nothing writes to it")]
    ChangedWhileRead { path: PathBuf, size: u64 },
    /// The build command could not be started.
    #[error("cannot run the build command `{command}`: {}", describe_io(source))]
    BuildNotRun {
        command: String,
        #[source]
        source: io::Error,
    },
    /// The build command failed (`how`: `exit status N` or `a signal`).
    #[error("build command `{command}` failed with {how}; nothing was stored")]
    BuildFailed { command: String, how: String },
    /// The configured build output is not a directory after the build.
    #[error("build output `{output}` (from `{origin}`) is not a directory after the build command ran")]
    BuildOutputMissing { output: String, origin: String },

    // The local store.
    /// A release name is bound to another bundle in the local store.
    #[error(
        "release `{release}` is already bound to {bound} in this store, not {offered}; a name is never rebound to another bundle: build it under another name with `--name`"
    )]
    StoreRebound {
        release: String,
        bound: String,
        offered: String,
    },
    /// Neither a release name nor a bundle id prefix in the local store.
    #[error("no release or bundle `{rel}` in the store `{store}`{}; `slipway list` shows what is there", closest.as_deref().map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default())]
    NotInStore {
        rel: String,
        store: PathBuf,
        /// The stored release name closest to `rel`, when one is close.
        closest: Option<String>,
    },
    /// A release is bound in the local store but its bundle is gone.
    #[error("the bundle of `{release}` ({id}) is missing from the store `{store}`; build or import it again")]
    BundleMissing {
        release: String,
        id: String,
        store: PathBuf,
    },
    /// `slipway init` would overwrite a configuration.
    #[error("`{path}` already exists; edit it, or move it away to start over")]
    ConfigExists { path: PathBuf },

    // A host's root and its releases (the host side).
    /// A non-empty directory without `.slipway/` was given as a root.
    #[error(
        "`{root}` is not a slipway root: it holds {holds} and no `.slipway/`; give the target a new or empty directory as its root"
    )]
    NotASlipwayRoot { root: PathBuf, holds: String },
    /// `current` points somewhere other than a release.
    #[error("`{path}` points at `{target}`, not at a release under `releases/`")]
    CurrentOutsideReleases { path: PathBuf, target: String },
    /// `current` exists but is not a symlink.
    #[error("`{path}` exists but is not a symlink; move it away so slipway can manage it")]
    CurrentNotASymlink { path: PathBuf },
    /// A request named a release this host does not have.
    #[error("release `{release}` is not on `{root}`; push it first with `slipway push {release} -t TARGET`")]
    ReleaseNotOnHost { release: String, root: PathBuf },
    /// A release's metadata is here but its tree is not.
    #[error("release `{release}` has no tree under `{releases}`")]
    NoReleaseTree { release: String, releases: PathBuf },
    /// A plain rollback found no earlier good release.
    #[error(
        "nothing to roll back to on `{root}`: no earlier good release in its history (current: {current}); name one with `--to REL`"
    )]
    NothingToRollBack { root: PathBuf, current: String },
    /// A release cannot be recorded as healthy; `why` says what is missing.
    #[error("cannot record `{release}` as healthy on `{root}`: {why}")]
    NotHealthy {
        release: String,
        root: PathBuf,
        why: String,
    },
    /// `serve --append-only` refuses prune and every deletion.
    #[error(
        "`{root}` is served with `--append-only`: prune and every deletion are refused; prune with a key whose `slipway serve` lacks `--append-only`"
    )]
    AppendOnly { root: PathBuf },
    /// A hook could not be started or waited for (`action`: `start`, `wait for`).
    #[error("cannot {action} the {kind} hook: {}", describe_io(source))]
    Hook {
        kind: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// A hook was asked to run in a release this host does not have.
    #[error("cannot run the {kind} hook: release `{release}` is not on `{root}`")]
    HookWithoutRelease {
        kind: String,
        release: String,
        root: PathBuf,
    },

    // Staging a release on a host.
    /// A push offered another bundle under a name this host has bound.
    #[error(
        "release `{release}` on this host is {bound}, not {offered}; a name is never rebound to another bundle: give this bundle another name (`--name` of `slipway build` or `slipway import`) and push that"
    )]
    HostRebound {
        release: String,
        bound: String,
        offered: String,
    },
    /// `verify --repair` offered another bundle than the host has.
    #[error("cannot repair `{release}`: this host has {bound}, not {offered}")]
    RepairOtherBundle {
        release: String,
        bound: String,
        offered: String,
    },
    /// `verify --repair` named a release the host does not have.
    #[error("cannot repair `{release}`: it is not on this host; push it")]
    RepairMissing { release: String },
    /// Something that is not a directory is where a release tree belongs.
    #[error("`{path}` is not a directory; move it away and push again")]
    ReleaseNotADirectory { path: PathBuf },
    /// A release tree is present without its metadata.
    #[error("`{tree}` exists but `{meta}` does not; move the directory away and push again")]
    TreeWithoutMeta { tree: PathBuf, meta: PathBuf },
    /// Another process created the release directory while it was staged.
    #[error("`{path}` appeared while `{release}` was being staged; move it away and push again")]
    AppearedWhileStaging { path: PathBuf, release: String },
    /// The host lacks the room a release needs (sizes already human-readable).
    #[error("no space for release `{release}` in `{root}`: {detail}, then push again")]
    NoSpace {
        release: String,
        root: PathBuf,
        /// What it needs, what is free, and what to do
        /// ([`crate::host::space::advice`]).
        detail: String,
    },
    /// The client compressed a manifest against a base the host did not offer.
    #[error("the client compressed the manifest of `{release}` against {base}, which this host did not offer")]
    BaseNotOffered { release: String, base: String },
    /// The release offered as a base disappeared (pruned) during the push.
    #[error("release `{release}` vanished during the push; push again")]
    BaseVanished { release: String },
    /// A request other than a push (or a check) on a root that does not
    /// exist yet: nothing was created.
    /// (Its message is made by [`Error::root_missing`]; it crosses the wire
    /// as its own kind, so a caller can treat "nothing here yet" as empty.)
    #[error("{0}")]
    RootMissing(String),
    /// The bundle puts something at a path the target shares.
    #[error("the bundle has a {kind} at shared path `{path}`; remove it from the build output or from `shared`")]
    SharedInBundle { path: String, kind: &'static str },
    /// A shared path's parent directory is not in the bundle.
    #[error("shared path `{path}` needs the directory `{parent}` in the bundle")]
    SharedWithoutParent { path: String, parent: String },
    /// Creating a shared path would go through a symlink in `shared/`.
    #[error(
        "cannot create shared path `{path}` in `{base}`: `{at}` is a symlink, and slipway never creates anything through a link in `shared/`; create `{path}` where it points yourself, or replace the link with a directory"
    )]
    SharedThroughLink { path: String, base: PathBuf, at: PathBuf },
    /// A component of a shared path is not a directory.
    #[error("cannot create shared path `{path}`: `{at}` is not a directory")]
    SharedNotADirectory { path: String, at: PathBuf },

    // The protocol, from either end.
    /// The host answered a request with the wrong message (`wanted` as quoted).
    #[error("the host answered `{got}` where {wanted} was expected")]
    UnexpectedAnswer { got: &'static str, wanted: String },
    /// The client sent the wrong message in an exchange.
    #[error("the client sent `{got}` where {wanted} was expected; is it a slipway of the same protocol?")]
    UnexpectedRequest { got: &'static str, wanted: String },

    // Reaching a host over ssh.
    /// ssh could not connect to the host; `why` is ssh's reason.
    #[error("cannot connect: {why}")]
    CannotConnect { why: String },
    /// The ssh session did not give one of its standard streams (`which`).
    #[error("the ssh session has no {which}")]
    SshStreamMissing { which: &'static str },
    /// One of the ssh session's standard streams (`which`) cannot be used.
    #[error("cannot use the ssh session's {which}: {}", describe_io(source))]
    SshStream {
        which: &'static str,
        #[source]
        source: io::Error,
    },

    // Many hosts.
    /// No host of a target could be reached.
    #[error("no host of `{target}` could be reached; nothing changed")]
    NoHostReached { target: String },
    /// The hosts of a target would roll back to different releases.
    #[error("the hosts of `{target}` disagree about what to roll back to: {choices}; choose one with `--to REL`")]
    RollbackDisagrees { target: String, choices: String },
    /// Nothing is current on any host of a target.
    #[error("nothing is current on `{target}` yet; name a release: `slipway provenance REL -t {target}`")]
    NothingCurrent { target: String },
    /// A release is on no host of a target.
    #[error("release `{release}` is on no host of `{target}`; `slipway status -t {target}` lists what is there")]
    ReleaseOnNoHost { release: String, target: String },

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

    /// A request other than a push (or a check) on a root that does not
    /// exist yet: nothing was created.
    pub fn root_missing(root: &Path, request: &str) -> Error {
        Error::RootMissing(format!(
            "`{}` is not a slipway root yet (it does not exist, or has no `.slipway/`): `{request}` has nothing to work on, and nothing was created; the first `slipway push` or `deploy` to it creates it (is the target's root spelled right?)",
            root.display()
        ))
    }

    /// True when the error is a host root that does not exist yet.
    pub fn is_root_missing(&self) -> bool {
        matches!(self.without_host(), Error::RootMissing(_))
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
            Error::Usage(_) | Error::Restricted(_) | Error::NotInStore { .. } => Exit::Usage,
            Error::Integrity(_) => Exit::Integrity,
            Error::Locked(_) => Exit::Locked,
            Error::ExpectMismatch(_) => Exit::ExpectMismatch,
            Error::HealthRolledBack(_) => Exit::HealthRolledBack,
            Error::SchemaMismatch(_) => Exit::SchemaMismatch,
            Error::Interrupted(_) => Exit::Interrupted,
            Error::Host { source, .. } => source.exit(),
            // Every other variant (`Other`, `Io`, `UnknownRequest`, …) is a plain error.
            _ => Exit::Error,
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
            Exit::SchemaMismatch => Error::SchemaMismatch(message),
            Exit::Interrupted => Error::Interrupted(message),
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
            Error::SchemaMismatch(_) => Error::SchemaMismatch(message),
            Error::UnknownRequest(_) => Error::UnknownRequest(message),
            Error::Restricted(_) => Error::Restricted(message),
            Error::Connection(_) => Error::Connection(message),
            Error::Remote(_) => Error::Remote(message),
            Error::RemoteRebound(_) => Error::RemoteRebound(message),
            Error::RootMissing(_) => Error::RootMissing(message),
            Error::Host { source, .. } => source.reworded(message),
            _ => Error::Other(message),
        }
    }

    /// True when the error is a full disk, wherever it came from.
    pub fn is_no_space(&self) -> bool {
        match self {
            // tempfile wraps the OS error with its path: the kind remains.
            Error::Io { source, .. } => {
                source.raw_os_error() == Some(28) || source.kind() == io::ErrorKind::StorageFull
            }
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
    if e.raw_os_error() == Some(28) || e.kind() == io::ErrorKind::StorageFull {
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

/// One error of each kind a caller or the wire tells apart (unit tests).
#[cfg(test)]
pub(crate) fn one_of_each_kind() -> Vec<Error> {
    vec![
        Error::other("m"),
        Error::usage("m"),
        Error::HealthRolledBack("m".into()),
        Error::Locked("m".into()),
        Error::integrity("m"),
        Error::ExpectMismatch("m".into()),
        Error::UnknownRequest("m".into()),
        Error::Restricted("m".into()),
        Error::Remote("m".into()),
        Error::RemoteRebound("m".into()),
        Error::RootMissing("m".into()),
    ]
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
        assert_eq!(Error::Remote("x".into()).exit().code(), 1);
        assert_eq!(Error::RemoteRebound("x".into()).exit().code(), 1);
        let io = Error::io("read", Path::new("/x"), io::Error::from_raw_os_error(2));
        assert_eq!(io.exit().code(), 1);
        assert_eq!(io.to_string(), "cannot read `/x`: no such file or directory");
        assert_eq!(Error::integrity("x").on_host("app1").exit().code(), 5);
    }

    #[test]
    fn reworded_errors_keep_their_kind() {
        for e in one_of_each_kind() {
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
