//! The host half of `push --plan` (and of the signature question a plan of
//! `activate`/`rollback` asks): what a push of an offer would do here,
//! found by the same checks and manifest exchange as [`super::stage`], but
//! read-only.

use std::collections::HashMap;
use std::io::{Read, Write};

use super::session::{Session, validate_actor};
use super::signatures;
use super::stage::{Plan, admit, base_candidates, receive_manifest};
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::validate_name;
use crate::protocol::{ErrorKind, Message, PushOffer, PushPlan, Refusal};

/// Handle a `plan_push` request (`--plan`): what [`super::stage::push`] would do with
/// `offer` here — refuse it, find it already staged, or send which
/// objects — found the way `push` finds it (the same name, signature,
/// shared-path, link and space checks; the same manifest exchange), but
/// read-only: no lock, no directory, no metadata, and a root that does not
/// exist yet stays that way (it lacks everything). A refusal is the answer
/// (`refused`), not an `error`, so the session goes on.
///
/// # Errors
/// A manifest that does not match the offered id (integrity); I/O and
/// connection errors.
pub fn plan_push<R: Read, W: Write>(session: &mut Session<R, W>, offer: &PushOffer) -> Result<Message> {
    let layout = session.layout.clone();
    let exists = session.created;
    let enforces_signatures = exists && fs::symlink_metadata_optional(&layout.allowed_signers_path())?.is_some();
    let refused = |e: &Error| {
        Message::PushPlan(Box::new(PushPlan {
            enforces_signatures,
            refused: Some(Refusal {
                kind: ErrorKind::of(e),
                message: e.to_string(),
            }),
            ..PushPlan::default()
        }))
    };
    let checks = validate_name(&offer.name)
        .and_then(|()| validate_actor(&offer.pushed_by))
        .and_then(|()| signatures::check_offered(&offer.name, &offer.signatures));
    if let Err(e) = checks {
        return Ok(refused(&e));
    }
    let admitted = if exists {
        match admit(&layout, offer, false) {
            Ok(a) => Some(a),
            Err(e) => return Ok(refused(&e)),
        }
    } else {
        None
    };
    let signed_by = admitted.as_ref().and_then(|a| a.signed_by.clone());
    if let Some(staged) = admitted.as_ref().and_then(|a| a.already) {
        return Ok(Message::PushPlan(Box::new(PushPlan {
            already: true,
            reused: staged.objects_reused,
            signed_by,
            enforces_signatures,
            ..PushPlan::default()
        })));
    }
    let bases = if exists {
        base_candidates(&layout)?
    } else {
        HashMap::new()
    };
    let ch = &mut session.ch;
    ch.send(&Message::SendManifest {
        bases: bases.keys().copied().collect(),
        pull: false,
    })?;
    let (manifest, manifest_size) = receive_manifest(ch, &layout, &bases, offer)?;
    let plan = Plan::new(&layout, &manifest)?;
    let checks = super::shared::check(&manifest, &offer.shared, &offer.shared_files)
        .and_then(|()| {
            if exists {
                super::links::check(&layout, &offer.name, &manifest)
            } else {
                Ok(())
            }
        })
        .and_then(|()| {
            if exists {
                super::space::check(&layout, &offer.name, &plan, &manifest, manifest_size, offer.link_mode)
            } else {
                Ok(())
            }
        });
    if let Err(e) = checks {
        return Ok(refused(&e));
    }
    Ok(Message::PushPlan(Box::new(PushPlan {
        already: false,
        objects: plan.missing.len() as u64,
        bytes: plan.bytes_needed,
        reused: plan.reused,
        signed_by,
        enforces_signatures,
        refused: None,
    })))
}
