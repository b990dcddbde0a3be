//! `slipway sign REL`: add an SSH signature to a release of the local store
//! (`build --sign` uses the same steps).
//!
//! The key is chosen first (`--key`, else the ssh-agent, else the default
//! key files), the signature is made and verified by `ssh-keygen` (see
//! [`crate::signature`]), and only then stored: a broken signature never
//! reaches the record. One signature per key: signing again with a key
//! replaces its earlier signature.

use serde::Serialize;
use serde_json::Value;

use crate::Context;
use crate::cli::SignArgs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::signature::{self, Key, KeyEnv, Signature};
use crate::store::Store;

#[derive(Serialize)]
struct SignReport<'a> {
    release: &'a str,
    id: Digest,
    /// True when it replaced an earlier signature by the same key.
    replaced: bool,
    signature: &'a Signature,
}

/// # Errors
/// When REL does not resolve to a named release, there is no usable key
/// (usage error), or `ssh-keygen` cannot sign.
pub fn run(args: &SignArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let (id, record) = store.resolve(&args.rel)?;
    let record = record.ok_or_else(|| {
        Error::usage(format!(
            "`{}` is bundle {id}, which has no single release name; sign it by name (`slipway list` shows them)",
            args.rel
        ))
    })?;
    let key = choose(args.key.as_deref(), args.principal.as_deref(), &record.name)?;
    let (sig, replaced) = sign_release(&store, &record.name, id, &key, args.principal.as_deref())?;
    if ctx.out.json {
        ctx.out.json_value(&SignReport {
            release: &record.name,
            id,
            replaced,
            signature: &sig,
        });
    } else {
        ctx.out.data(&describe(&record.name, &sig, replaced));
    }
    Ok(())
}

/// Resolve `--key` and check `--principal` before any work is done.
///
/// # Errors
/// Usage error for a missing key, no key at all, or a bad principal.
pub fn choose(key: Option<&std::path::Path>, principal: Option<&str>, name: &str) -> Result<Key> {
    if let Some(p) = principal {
        signature::valid_principal(p)?;
    }
    signature::choose_key(key, &KeyEnv::from_env(), name)
}

/// Sign release `name` (bound to `id` in `store`) with `key` and add the
/// signature to its record. Returns it, and whether it replaced one by the same key.
///
/// # Errors
/// When `ssh-keygen` cannot sign, the signature does not verify, or the record cannot be written.
pub fn sign_release(
    store: &Store,
    name: &str,
    id: Digest,
    key: &Key,
    principal: Option<&str>,
) -> Result<(Signature, bool)> {
    let sig = signature::sign(key, name, &id, principal, &crate::config::actor(), &store.tmp_dir())?;
    let _records = store.lock_records()?;
    let mut record = store.record(name)?;
    if record.id != id {
        return Err(Error::other(format!(
            "release `{name}` is bound to {} in this store, not {id}",
            record.id
        )));
    }
    let same_key = |v: &Value| v.get("key_fingerprint").and_then(Value::as_str) == Some(&sig.key_fingerprint);
    let replaced = record.signatures.iter().any(same_key);
    record.signatures.retain(|v| !same_key(v));
    record.signatures.push(sig.to_value());
    store.update_record(&record)?;
    Ok((sig, replaced))
}

/// The line `sign` prints (and `build --sign` notes on stderr).
pub fn describe(name: &str, sig: &Signature, replaced: bool) -> String {
    let again = if replaced {
        "; it replaces this key's earlier signature"
    } else {
        ""
    };
    format!("signed {name} with {} ({}){again}", sig.key_fingerprint, sig.principal)
}
