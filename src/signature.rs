//! Release signatures: OpenSSH `sshsig` signatures (`ssh-keygen -Y sign`,
//! namespace `slipway`) over a small statement that binds a release name to
//! a bundle id. slipway invents no signature format: the system `ssh-keygen`
//! makes and checks every signature, with the keys (and the ssh-agent)
//! people already have.
//!
//! The statement, byte for byte (three lines, each ending in `\n`):
//!
//! ```text
//! slipway-release-v1
//! name <release name>
//! id sha256:<64 lowercase hex digits>
//! ```
//!
//! A signature travels as a JSON object ([`Signature`]) in the store's
//! release record, the export sidecar, the `push` offer and the host's
//! release metadata. Those keep plain JSON values, so an object of a format
//! this slipway does not know passes through untouched.
//!
//! Invariants: every `ssh-keygen`/`ssh-add` call goes through this module
//! (one seam; the host's checks in `host::signatures` use it too); a
//! signature enters a local store only after it verified against the
//! statement of the release it is stored with *and* against the public key
//! it names ([`verify_own`]); a release keeps at most one signature per key
//! ([`merge`]).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result, describe_io};
use crate::fs;

/// `format` of an OpenSSH signature object.
pub const FORMAT: &str = "sshsig";
/// The sshsig namespace of every slipway signature (`ssh-keygen -n`).
pub const NAMESPACE: &str = "slipway";
/// First line of the signed statement; bumped if its shape ever changes.
pub const STATEMENT_HEADER: &str = "slipway-release-v1";
/// Largest armored signature looked at (an RSA-16384 signature is about 3 KiB).
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;
/// Keys tried, in order, under `$HOME` when `sign` gets no `--key` and no agent holds a key.
pub const DEFAULT_KEYS: [&str; 3] = [".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"];

const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";

/// The exact bytes a signature of release `name` = `id` signs.
pub fn statement(name: &str, id: &Digest) -> String {
    format!("{STATEMENT_HEADER}\nname {name}\nid {id}\n")
}

/// The (name, id) a statement binds, when `text` is one.
pub fn parse_statement(text: &str) -> Option<(String, String)> {
    let mut lines = text.strip_suffix('\n')?.split('\n');
    if lines.next()? != STATEMENT_HEADER {
        return None;
    }
    let name = lines.next()?.strip_prefix("name ")?;
    let id = lines.next()?.strip_prefix("id ")?;
    if lines.next().is_some() {
        return None;
    }
    Some((name.to_string(), id.to_string()))
}

/// One signature of a release, as stored and sent (`docs/json.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`NAMESPACE`].
    pub namespace: String,
    /// The signed bytes ([`statement`]).
    pub statement: String,
    /// The armored sshsig (`-----BEGIN SSH SIGNATURE-----` …).
    pub signature: String,
    /// `SHA256:…` of the signing key, as `ssh-keygen -l` prints it.
    pub key_fingerprint: String,
    /// The signing key's OpenSSH public key line.
    pub public_key: String,
    /// Who the signer says they are (`--principal`, else the key's comment):
    /// a hint; hosts take the principal from their `allowed_signers`.
    pub principal: String,
    /// RFC 3339 UTC.
    pub signed_at: String,
    /// `user@host` that ran `slipway sign`.
    pub signed_by: String,
}

impl Signature {
    /// The sshsig object in `value`; `None` for another format or a malformed object.
    pub fn from_value(value: &Value) -> Option<Signature> {
        let sig: Signature = serde_json::from_value(value.clone()).ok()?;
        (sig.format == FORMAT).then_some(sig)
    }

    /// As a JSON object.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The armored signature, when it looks like one (size and header).
    pub fn armored(&self) -> Option<&str> {
        let s = self.signature.as_str();
        (s.len() <= MAX_SIGNATURE_BYTES && s.trim_start().starts_with(ARMOR_BEGIN)).then_some(s)
    }
}

/// The key that signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A private key file; its public half is `PATH.pub`, or derived with `ssh-keygen -y`.
    Private(PathBuf),
    /// A public key file: `ssh-keygen` signs through the ssh-agent (or with
    /// the private key beside it, `PATH` without `.pub`).
    Public(PathBuf),
    /// A key the ssh-agent holds (a line of `ssh-add -L`).
    Agent(String),
}

impl Key {
    /// How the key is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Key::Private(p) | Key::Public(p) => format!("`{}`", p.display()),
            Key::Agent(line) => format!("the ssh-agent key `{}`", comment(line).unwrap_or("(no comment)")),
        }
    }
}

/// Where [`choose_key`] looks when no key is given (resolved by the caller).
#[derive(Debug, Clone, Default)]
pub struct KeyEnv {
    /// `$HOME`, for [`DEFAULT_KEYS`].
    pub home: Option<PathBuf>,
    /// True when `SSH_AUTH_SOCK` is set.
    pub agent: bool,
}

impl KeyEnv {
    /// From this process's environment.
    pub fn from_env() -> KeyEnv {
        KeyEnv {
            home: std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from),
            agent: std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()),
        }
    }
}

/// Choose the key that signs `name`: `key` when given (a `.pub` file means
/// "through the agent"); else a key of the running ssh-agent (preferring
/// one of [`DEFAULT_KEYS`]); else the first of [`DEFAULT_KEYS`] that exists.
///
/// # Errors
/// Usage error when `key` does not exist, or when there is no key at all.
pub fn choose_key(key: Option<&Path>, env: &KeyEnv, name: &str) -> Result<Key> {
    if let Some(path) = key {
        if fs::symlink_metadata_optional(path)?.is_none() {
            return Err(Error::usage(format!(
                "key `{}` does not exist; pass a private key, or a `.pub` whose private half is in ssh-agent",
                path.display()
            )));
        }
        return Ok(if path.extension() == Some(OsStr::new("pub")) {
            Key::Public(path.to_path_buf())
        } else {
            Key::Private(path.to_path_buf())
        });
    }
    let defaults: Vec<PathBuf> = env
        .home
        .as_ref()
        .map(|h| DEFAULT_KEYS.iter().map(|k| h.join(k)).collect())
        .unwrap_or_default();
    if env.agent {
        let held = agent_keys();
        if let Some(first) = held.first() {
            let preferred = defaults.iter().find_map(|d| {
                let line = std::fs::read_to_string(pub_path(d)).ok()?;
                let blob = key_blob(&line)?.to_string();
                held.iter().find(|h| key_blob(h) == Some(blob.as_str()))
            });
            return Ok(Key::Agent(preferred.unwrap_or(first).clone()));
        }
    }
    for d in defaults {
        if d.is_file() {
            return Ok(Key::Private(d));
        }
    }
    Err(Error::usage(format!(
        "no key to sign `{name}` with: pass `--key PATH` (a private key, or a `.pub` whose private half is in ssh-agent); \
         there is no ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa or ~/.ssh/id_rsa and no ssh-agent holding a key"
    )))
}

/// Sign release `name` = `id` with `key`; `principal` overrides the key's
/// comment as the principal hint, `actor` is recorded as `signed_by`.
/// Scratch files live in a temporary directory under `tmp_dir`.
///
/// The statement is signed as a file, not on stdin: `ssh-keygen` reads a
/// key's passphrase from stdin when that is not a terminal, so stdin stays
/// the operator's (a passphrase prompt works; so does an agent).
///
/// # Errors
/// When `ssh-keygen` cannot sign (the reason it gives, with what to do), or
/// when the signature it made does not verify against the key's public half.
pub fn sign(
    key: &Key,
    name: &str,
    id: &Digest,
    principal: Option<&str>,
    actor: &str,
    tmp_dir: &Path,
) -> Result<Signature> {
    let work = fs::temp_dir_in(tmp_dir, "sign-")?;
    let public_key = public_key_of(key)?;
    let agent_pub;
    let key_arg: &Path = match key {
        Key::Private(p) | Key::Public(p) => p,
        Key::Agent(line) => {
            agent_pub = work.path().join("agent-key.pub");
            fs::write_atomic(&agent_pub, format!("{line}\n").as_bytes())?;
            &agent_pub
        }
    };
    let text = statement(name, id);
    let file = work.path().join("statement");
    fs::write_atomic(&file, text.as_bytes())?;
    let out = ssh_keygen(
        &[
            OsStr::new("-Y"),
            OsStr::new("sign"),
            OsStr::new("-n"),
            OsStr::new(NAMESPACE),
            OsStr::new("-f"),
            key_arg.as_os_str(),
            file.as_os_str(),
        ],
        Input::Inherit,
    )?;
    if !out.ok {
        let why = out.reason();
        let hint = if why.contains("passphrase") {
            "; for a key with a passphrase, run this from a terminal or add the key to ssh-agent (`ssh-add KEY`)"
        } else if why.contains("agent") || why.contains("No private key") {
            "; add the private key to ssh-agent (`ssh-add KEY`), or pass the private key file with `--key`"
        } else {
            ""
        };
        return Err(Error::other(format!(
            "cannot sign `{name}` with {}: {}{hint}",
            key.describe(),
            lowercase_first(&why)
        )));
    }
    let mut sig_path = file.into_os_string();
    sig_path.push(".sig");
    let armored = fs::read_to_string(Path::new(&sig_path))?;
    let principal = match principal {
        Some(p) => p.to_string(),
        None => comment(&public_key)
            .filter(|c| valid_principal(c).is_ok())
            .map_or_else(|| actor.to_string(), str::to_string),
    };
    let sig = Signature {
        format: FORMAT.to_string(),
        namespace: NAMESPACE.to_string(),
        statement: text,
        signature: armored,
        key_fingerprint: fingerprint(&public_key)?,
        public_key,
        principal,
        signed_at: crate::provenance::now_rfc3339(),
        signed_by: actor.to_string(),
    };
    verify_own(&sig, name, id, tmp_dir)?.map_err(|why| {
        Error::integrity(format!(
            "the signature made with {} for `{name}` {why}; nothing was stored: is `{}` the public half of that key?",
            key.describe(),
            pub_label(key)
        ))
    })?;
    Ok(sig)
}

/// Check that `sig` is a good `slipway` signature of the statement of
/// `name` = `id`, made by the public key it names (what any host that lists
/// that key will find). `Ok(Err(why))` when it is not; `why` reads after
/// "the signature by `SHA256:…`", e.g. "binds `v2` sha256:…, not `v1` sha256:…".
///
/// # Errors
/// When `ssh-keygen` cannot be run or scratch files cannot be written.
pub fn verify_own(sig: &Signature, name: &str, id: &Digest, tmp_dir: &Path) -> Result<Result<(), String>> {
    let expected = statement(name, id);
    if sig.format != FORMAT || sig.namespace != NAMESPACE {
        return Ok(Err(format!(
            "has format `{}` and namespace `{}`, not `{FORMAT}` and `{NAMESPACE}`",
            clean(&sig.format),
            clean(&sig.namespace)
        )));
    }
    if sig.statement != expected {
        return Ok(Err(match parse_statement(&sig.statement) {
            Some((n, i)) => format!("binds `{}` {}, not `{name}` {id}", clean(&n), clean(&i)),
            None => "signs something that is not a slipway statement".to_string(),
        }));
    }
    let (Some(armored), Some(blob)) = (sig.armored(), key_blob(&sig.public_key)) else {
        return Ok(Err("is malformed".to_string()));
    };
    let allowed = fs::write_temp(
        tmp_dir,
        format!("signer namespaces=\"{NAMESPACE}\" {blob}\n").as_bytes(),
    )?;
    let file = fs::write_temp(tmp_dir, armored.as_bytes())?;
    match verify(allowed.path(), "signer", file.path(), &expected)? {
        Some(fp) if fp == sig.key_fingerprint => Ok(Ok(())),
        Some(fp) => Ok(Err(format!("was made by `{fp}`, not by the key it names"))),
        None => Ok(Err("does not verify against the public key it names".to_string())),
    }
}

/// Add `incoming` signatures to `existing`, keeping one per key: a
/// signature by a key already present replaces that one when it is at least
/// as recent (`signed_at`). Returns true when `existing` changed.
pub fn merge(existing: &mut Vec<Value>, incoming: impl IntoIterator<Item = Value>) -> bool {
    let fingerprint = |v: &Value| v.get("key_fingerprint").and_then(Value::as_str).map(str::to_string);
    let signed_at = |v: &Value| {
        v.get("signed_at")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // One index by key, so merging n signatures costs O(n), whoever sends them.
    let mut by_key: std::collections::HashMap<String, usize> = existing
        .iter()
        .enumerate()
        .filter_map(|(i, v)| fingerprint(v).map(|k| (k, i)))
        .collect();
    let mut keyless: std::collections::HashSet<String> = existing
        .iter()
        .filter(|v| fingerprint(v).is_none())
        .map(Value::to_string)
        .collect();
    let mut changed = false;
    for new in incoming {
        match fingerprint(&new).and_then(|k| by_key.get(&k).copied()) {
            Some(i) if existing[i] == new => {}
            Some(i) => {
                if signed_at(&new) >= signed_at(&existing[i]) {
                    existing[i] = new;
                    changed = true;
                }
            }
            None => {
                match fingerprint(&new) {
                    Some(k) => {
                        by_key.insert(k, existing.len());
                    }
                    None if !keyless.insert(new.to_string()) => continue,
                    None => {}
                }
                existing.push(new);
                changed = true;
            }
        }
    }
    changed
}

/// Check a `--principal`: what an `allowed_signers` line can name.
///
/// # Errors
/// Usage error when it is empty, too long, or holds spaces or control characters.
pub fn valid_principal(p: &str) -> Result<()> {
    if p.is_empty() || p.len() > 256 || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::usage(format!(
            "`{}` is not a valid principal: use up to 256 characters without spaces, e.g. alice@example.com",
            p.escape_debug()
        )));
    }
    Ok(())
}

/// `SHA256:…` of an OpenSSH public key line, from `ssh-keygen -l`.
///
/// # Errors
/// When `ssh-keygen` refuses the line.
pub fn fingerprint(public_key: &str) -> Result<String> {
    let out = ssh_keygen(
        &[OsStr::new("-l"), OsStr::new("-f"), OsStr::new("-")],
        Input::Bytes(format!("{public_key}\n").as_bytes()),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().nth(1) {
        Some(fp) if out.ok && fp.starts_with("SHA256:") => Ok(fp.to_string()),
        _ => Err(Error::usage(format!(
            "`{}` is not an OpenSSH public key: {}",
            clean(public_key),
            lowercase_first(&out.reason())
        ))),
    }
}

/// `ssh-keygen -Y check-novalidate`: the fingerprint of the key that made
/// the signature in `sig_file` over `statement` (namespace `slipway`), or
/// `None` when it does not verify. Says nothing about whether the key is trusted.
///
/// # Errors
/// When `ssh-keygen` cannot be run.
pub fn check_novalidate(sig_file: &Path, statement: &str) -> Result<Option<String>> {
    let out = ssh_keygen(
        &[
            OsStr::new("-Y"),
            OsStr::new("check-novalidate"),
            OsStr::new("-n"),
            OsStr::new(NAMESPACE),
            OsStr::new("-s"),
            sig_file.as_os_str(),
        ],
        Input::Bytes(statement.as_bytes()),
    )?;
    Ok(out.ok.then(|| out.key_fingerprint()).flatten())
}

/// `ssh-keygen -Y find-principals`: the principals `allowed_signers` lists
/// for the key of the signature in `sig_file` (empty when none).
///
/// # Errors
/// When `ssh-keygen` cannot be run, or fails for another reason than "no
/// principal matched" (e.g. it cannot read `allowed_signers`).
pub fn find_principals(sig_file: &Path, allowed_signers: &Path) -> Result<Vec<String>> {
    let out = ssh_keygen(
        &[
            OsStr::new("-Y"),
            OsStr::new("find-principals"),
            OsStr::new("-s"),
            sig_file.as_os_str(),
            OsStr::new("-f"),
            allowed_signers.as_os_str(),
        ],
        Input::Null,
    )?;
    if out.ok {
        return Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect());
    }
    if String::from_utf8_lossy(&out.stderr).contains("No principal matched") {
        return Ok(Vec::new());
    }
    Err(Error::other(format!(
        "cannot look up signers in `{}`: {}",
        allowed_signers.display(),
        lowercase_first(&out.reason())
    )))
}

/// `ssh-keygen -Y verify`: the fingerprint of the signing key when the
/// signature in `sig_file` is a good `slipway` signature of `statement` by a
/// key `allowed_signers` lists for `principal`; `None` otherwise.
///
/// # Errors
/// When `ssh-keygen` cannot be run.
pub fn verify(allowed_signers: &Path, principal: &str, sig_file: &Path, statement: &str) -> Result<Option<String>> {
    let out = ssh_keygen(
        &[
            OsStr::new("-Y"),
            OsStr::new("verify"),
            OsStr::new("-f"),
            allowed_signers.as_os_str(),
            OsStr::new("-I"),
            OsStr::new(principal),
            OsStr::new("-n"),
            OsStr::new(NAMESPACE),
            OsStr::new("-s"),
            sig_file.as_os_str(),
        ],
        Input::Bytes(statement.as_bytes()),
    )?;
    Ok(out.ok.then(|| out.key_fingerprint()).flatten())
}

/// A string from someone else's JSON, made safe for a one-line message.
pub fn clean(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(100) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().count() > 100 {
        out.push('…');
    }
    out
}

/// The keys the running ssh-agent holds (`ssh-add -L`); empty when there is
/// no agent, it holds nothing, or `ssh-add` is missing.
fn agent_keys() -> Vec<String> {
    let out = Command::new("ssh-add")
        .arg("-L")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| key_blob(l).is_some())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn pub_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn pub_label(key: &Key) -> String {
    match key {
        Key::Private(p) => pub_path(p).display().to_string(),
        Key::Public(p) => p.display().to_string(),
        Key::Agent(line) => clean(line),
    }
}

/// `type base64` of a public key line (without the comment).
fn key_blob(line: &str) -> Option<&str> {
    let line = line.trim();
    let mut fields = line.splitn(3, char::is_whitespace);
    let ty = fields.next()?;
    let data = fields.next()?;
    let ok = (ty.starts_with("ssh-") || ty.starts_with("ecdsa-") || ty.starts_with("sk-"))
        && !data.is_empty()
        && data
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
    ok.then(|| &line[..ty.len() + 1 + data.len()])
}

/// The comment of a public key line, if any.
fn comment(line: &str) -> Option<&str> {
    let blob = key_blob(line)?;
    let rest = line.trim()[blob.len()..].trim();
    (!rest.is_empty()).then_some(rest)
}

/// The public key line of `key`.
fn public_key_of(key: &Key) -> Result<String> {
    let (line, origin) = match key {
        Key::Agent(line) => (line.clone(), "ssh-agent".to_string()),
        Key::Public(p) => (fs::read_to_string(p)?, p.display().to_string()),
        Key::Private(p) => {
            let public = pub_path(p);
            match fs::read_optional(&public)? {
                Some(bytes) => (
                    String::from_utf8_lossy(&bytes).into_owned(),
                    public.display().to_string(),
                ),
                None => {
                    let out = ssh_keygen(&[OsStr::new("-y"), OsStr::new("-f"), p.as_os_str()], Input::Inherit)?;
                    if !out.ok {
                        return Err(Error::other(format!(
                            "cannot read the public half of `{}`: {}",
                            p.display(),
                            lowercase_first(&out.reason())
                        )));
                    }
                    (
                        String::from_utf8_lossy(&out.stdout).into_owned(),
                        p.display().to_string(),
                    )
                }
            }
        }
    };
    let line = line.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    match key_blob(line) {
        Some(_) if !line.chars().any(char::is_control) => Ok(line.to_string()),
        _ => Err(Error::usage(format!(
            "`{origin}` does not hold an OpenSSH public key; pass a private key, or the `.pub` file beside it"
        ))),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

enum Input<'a> {
    Null,
    Inherit,
    Bytes(&'a [u8]),
}

struct Ran {
    ok: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Ran {
    /// The last line `ssh-keygen` wrote on stderr (its reason), one line.
    fn reason(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let line = text.lines().map(str::trim).rfind(|l| !l.is_empty());
        // A passphrase prompt read from a pipe leaves no newline before the error.
        let line = line.map(|l| match l.split_once("passphrase: ") {
            Some((prompt, rest)) if prompt.starts_with("Enter ") && !rest.is_empty() => rest,
            _ => l,
        });
        line.map_or_else(|| "it failed without saying why".to_string(), clean)
    }

    /// `… key SHA256:…` in `ssh-keygen -Y verify/check-novalidate` output.
    fn key_fingerprint(&self) -> Option<String> {
        String::from_utf8_lossy(&self.stdout)
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(str::to_string)
    }
}

/// Run the system `ssh-keygen` with `args`.
fn ssh_keygen(args: &[&OsStr], input: Input<'_>) -> Result<Ran> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(match input {
        Input::Null => Stdio::null(),
        Input::Inherit => Stdio::inherit(),
        Input::Bytes(_) => Stdio::piped(),
    });
    let mut child = cmd.spawn().map_err(|source| Error::Run {
        program: "ssh-keygen".into(),
        hint: "; install the OpenSSH client tools (e.g. `apt-get install openssh-client`)",
        source,
    })?;
    if let (Input::Bytes(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        // ssh-keygen may exit before reading (a bad key): its status says why.
        let _ = stdin.write_all(bytes);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::other(format!("`ssh-keygen` failed: {}", describe_io(&e))))?;
    Ok(Ran {
        ok: out.status.success(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_is_three_exact_lines_and_parses_back() {
        let id = Digest::of(b"x");
        let s = statement("v1.4.2", &id);
        assert_eq!(s, format!("slipway-release-v1\nname v1.4.2\nid {id}\n"));
        assert_eq!(parse_statement(&s), Some(("v1.4.2".into(), id.to_string())));
        assert_eq!(parse_statement("slipway-release-v1\nname a\n"), None);
        assert_eq!(parse_statement(&format!("{s}extra\n")), None);
    }

    #[test]
    fn merge_keeps_one_signature_per_key_the_newest() {
        let sig = |key: &str, at: &str, body: &str| serde_json::json!({"format": "sshsig", "key_fingerprint": key, "signed_at": at, "signature": body});
        let mut list = vec![sig("SHA256:a", "2024-01-01T00:00:00Z", "1")];
        assert!(!merge(&mut list, [sig("SHA256:a", "2024-01-01T00:00:00Z", "1")]));
        assert!(!merge(&mut list, [sig("SHA256:a", "2023-01-01T00:00:00Z", "old")]));
        assert!(merge(&mut list, [sig("SHA256:a", "2024-02-01T00:00:00Z", "2")]));
        assert!(merge(&mut list, [sig("SHA256:b", "2024-01-01T00:00:00Z", "3")]));
        let bodies: Vec<&str> = list.iter().map(|v| v["signature"].as_str().unwrap()).collect();
        assert_eq!(bodies, ["2", "3"]);
        // Objects of unknown formats are kept, once.
        assert!(merge(&mut list, [serde_json::json!({"format": "x509"})]));
        assert!(!merge(&mut list, [serde_json::json!({"format": "x509"})]));
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn key_lines_and_comments() {
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM2p alice@example.com";
        assert_eq!(key_blob(line), Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM2p"));
        assert_eq!(comment(line), Some("alice@example.com"));
        assert_eq!(comment("ssh-ed25519 AAAA"), None);
        assert_eq!(key_blob("not a key"), None);
        assert_eq!(key_blob("ssh-ed25519 AA\"AA"), None);
        assert!(valid_principal("alice@example.com").is_ok());
        assert!(valid_principal("alice smith").is_err());
    }
}
