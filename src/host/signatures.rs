//! Host-side signature enforcement: who may put a release on this host.
//!
//! When `<root>/.slipway/allowed_signers` exists (the standard OpenSSH
//! allowed_signers format, written by the host's owner and never uploaded by
//! slipway), a release is accepted only with a signature that `ssh-keygen -Y
//! verify` accepts for its own name and id ([`crate::signature::statement`]),
//! namespace `slipway`, by a key that file lists. Without the file, anything
//! is accepted and nobody is recorded as the signer.
//!
//! [`check`] is the one entry point: staging calls it before a single byte
//! of content is received, and activation calls it again before `current`
//! moves. Invariants: it only reads, except scratch files under
//! `.slipway/tmp/` (removed before it returns); a refusal is an integrity
//! error (exit 5) in one line naming the release and why — missing, bad
//! signature, unknown key, wrong name; a missing or unreadable
//! `allowed_signers` never means "accept" once the path exists (fail closed).

use std::path::Path;

use serde_json::Value;

use super::layout::{HostRelease, Layout};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fs;
use crate::protocol::Signer;
use crate::signature::{self, Signature, clean, parse_statement, statement};

/// Most signatures looked at for one release (each costs a few `ssh-keygen` runs).
pub const MAX_SIGNATURES: usize = 32;

/// Largest signature object a host accepts, as JSON (an sshsig of an
/// ed25519 or RSA-4096 key with its metadata is well under 4 KiB).
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;

/// Bound what a client offers before any work is done with it: at most
/// [`MAX_SIGNATURES`] signatures of at most [`MAX_SIGNATURE_BYTES`] each.
/// Whether a host enforces signatures or not, it never stores more.
///
/// # Errors
/// Integrity error (exit 5) naming the release and the limit.
pub fn check_offered(name: &str, offered: &[Value]) -> Result<()> {
    if offered.len() > MAX_SIGNATURES {
        return Err(Error::integrity(format!(
            "release `{name}` refused: the push offers {} signatures, more than the {MAX_SIGNATURES} a host keeps",
            offered.len()
        )));
    }
    for (i, v) in offered.iter().enumerate() {
        let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > MAX_SIGNATURE_BYTES {
            return Err(Error::integrity(format!(
                "release `{name}` refused: signature {} of the push is {size} bytes, more than the {MAX_SIGNATURE_BYTES} a host accepts",
                i + 1
            )));
        }
    }
    Ok(())
}

/// Check `release` against this host's `allowed_signers`.
///
/// Returns `Ok(None)` when the host has no `allowed_signers` (nothing is
/// enforced), `Ok(Some(signer))` for the first acceptable signature.
///
/// # Errors
/// Integrity error (exit 5) naming the release and why when the host has an
/// `allowed_signers` and no signature is acceptable; I/O errors, or an error
/// when `ssh-keygen` cannot be run.
pub fn check(layout: &Layout, release: &HostRelease) -> Result<Option<Signer>> {
    check_signatures(layout, &release.name, &release.id, &release.signatures)
}

/// [`check`] for a release that has no metadata yet (a `push` offer).
///
/// # Errors
/// As [`check`].
pub fn check_signatures(layout: &Layout, name: &str, id: &Digest, signatures: &[Value]) -> Result<Option<Signer>> {
    let allowed = layout.allowed_signers_path();
    if fs::symlink_metadata_optional(&allowed)?.is_none() {
        return Ok(None);
    }
    // Readable by us, or the refusal would blame the signature.
    drop(fs::open(&allowed)?);
    if signatures.is_empty() {
        return Err(Error::integrity(format!(
            "release `{name}` refused: missing signature: this host accepts only releases signed by a key in `{}`; \
             sign it with `slipway sign {name}` and push again",
            allowed.display()
        )));
    }
    if signatures.len() > MAX_SIGNATURES {
        return Err(Error::integrity(format!(
            "release `{name}` refused: it carries {} signatures, more than the {MAX_SIGNATURES} a host looks at",
            signatures.len()
        )));
    }
    let expected = statement(name, id);
    let mut refusals = Vec::new();
    for value in signatures {
        match check_one(layout, &allowed, value, &expected)? {
            Ok(signer) => return Ok(Some(signer)),
            Err(r) => refusals.push(r),
        }
    }
    Err(refused(name, id, &allowed, &refusals))
}

/// Why one signature is not acceptable.
#[derive(Debug)]
enum Refusal {
    /// It does not verify for this release's statement (damaged or forged).
    Bad { key: String },
    /// Good, but `allowed_signers` does not list its key (or only outside
    /// its `valid-after`/`valid-before` window: `find-principals` skips those).
    UnknownKey { key: String, principal: String },
    /// Listed, but not for namespace `slipway` now (`namespaces=`, `valid-*=` options).
    NotAllowed { key: String, principals: Vec<String> },
    /// A good signature of another release's statement.
    WrongName { key: String, name: String, id: String },
    /// Not an sshsig object.
    Unsupported { format: String },
}

fn check_one(
    layout: &Layout,
    allowed: &Path,
    value: &Value,
    expected: &str,
) -> Result<std::result::Result<Signer, Refusal>> {
    let field = |k: &str| value.get(k).and_then(Value::as_str);
    // The key the signature names (ssh-keygen tells the real one once it parses).
    let claimed = match field("key_fingerprint") {
        Some(k) if !k.is_empty() => clean(k),
        _ => "an unnamed key".to_string(),
    };
    let format = field("format").unwrap_or("unknown");
    let Some(sig) = Signature::from_value(value) else {
        return Ok(Err(if format == signature::FORMAT {
            Refusal::Bad { key: claimed }
        } else {
            Refusal::Unsupported { format: clean(format) }
        }));
    };
    let Some(armored) = sig.armored() else {
        return Ok(Err(Refusal::Bad { key: claimed }));
    };
    let file = fs::write_temp(&layout.tmp_dir(), armored.as_bytes())?;
    let Some(key) = signature::check_novalidate(file.path(), expected)? else {
        // Not a signature of this statement: of another release's, perhaps.
        if sig.statement != expected
            && let Some((name, id)) = parse_statement(&sig.statement)
            && let Some(key) = signature::check_novalidate(file.path(), &sig.statement)?
        {
            return Ok(Err(Refusal::WrongName {
                key,
                name: clean(&name),
                id: clean(&id),
            }));
        }
        return Ok(Err(Refusal::Bad { key: claimed }));
    };
    let principals = signature::find_principals(file.path(), allowed)?;
    for principal in &principals {
        if let Some(fingerprint) = signature::verify(allowed, principal, file.path(), expected)? {
            return Ok(Ok(Signer {
                principal: principal.clone(),
                key_fingerprint: fingerprint,
            }));
        }
    }
    if principals.is_empty() {
        Ok(Err(Refusal::UnknownKey {
            key,
            principal: clean(&sig.principal),
        }))
    } else {
        Ok(Err(Refusal::NotAllowed {
            key,
            principals: principals.iter().map(|p| clean(p)).collect(),
        }))
    }
}

impl Refusal {
    fn kind(&self) -> &'static str {
        match self {
            Refusal::Bad { .. } => "bad signature",
            Refusal::UnknownKey { .. } | Refusal::NotAllowed { .. } => "unknown key",
            Refusal::WrongName { .. } => "wrong name",
            Refusal::Unsupported { .. } => "unsupported signature",
        }
    }

    fn detail(&self, name: &str, id: &Digest, allowed: &Path) -> String {
        match self {
            Refusal::Bad { key } => {
                format!("the signature by `{key}` does not verify for `{name}` {id} (damaged or forged)")
            }
            Refusal::UnknownKey { key, principal } => {
                format!(
                    "`{key}` ({principal}) is not listed (or not valid now) in `{}`",
                    allowed.display()
                )
            }
            Refusal::NotAllowed { key, principals } => format!(
                "`{key}` is listed for `{}` in `{}` but may not sign for namespace `slipway` now (see its namespaces= and valid-after=/valid-before= options)",
                principals.join("`, `"),
                allowed.display()
            ),
            Refusal::WrongName {
                key,
                name: other,
                id: other_id,
            } => {
                format!("the signature by `{key}` binds `{other}` {other_id}, not `{name}` {id}")
            }
            Refusal::Unsupported { format } => {
                format!("a signature in format `{format}`, which this slipway cannot check")
            }
        }
    }

    fn advice(&self, name: &str) -> String {
        match self {
            Refusal::Bad { .. } => format!("sign it again with `slipway sign {name}` and push again"),
            Refusal::UnknownKey { .. } => {
                "sign it with a key listed there, or ask the host's owner to add this one".to_string()
            }
            Refusal::NotAllowed { .. } => "ask the host's owner to allow this key for `slipway`".to_string(),
            Refusal::WrongName { .. } | Refusal::Unsupported { .. } => {
                format!("sign this release with `slipway sign {name}` and push again")
            }
        }
    }
}

fn refused(name: &str, id: &Digest, allowed: &Path, refusals: &[Refusal]) -> Error {
    match refusals {
        [one] => Error::integrity(format!(
            "release `{name}` refused: {}: {}; {}",
            one.kind(),
            one.detail(name, id, allowed),
            one.advice(name)
        )),
        many => {
            let each: Vec<String> = many
                .iter()
                .map(|r| format!("{} ({})", r.kind(), r.detail(name, id, allowed)))
                .collect();
            Error::integrity(format!(
                "release `{name}` refused: none of its {} signatures is acceptable: {}; sign it with a key listed in `{}` (`slipway sign {name}`) and push again",
                many.len(),
                each.join("; "),
                allowed.display()
            ))
        }
    }
}
