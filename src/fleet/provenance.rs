//! `slipway provenance`: what exactly runs on a target and where it came
//! from, gathered from its hosts (status, and the history records of one
//! bundle id) and, with a promotion gate, from the gate target's hosts.
//!
//! Read-only: nothing here changes a host.

use serde::Serialize;

use super::Fleet;
use crate::digest::{Digest, looks_like_id};
use crate::error::{Error, Result};
use crate::protocol::{HostStatus, Record, Signer};
use crate::provenance::Provenance;

/// One host of the target: whether the release runs there, and since when.
#[derive(Debug, Serialize)]
pub struct HostLive {
    pub host: String,
    /// Whether the release is current there now.
    pub current: bool,
    /// What is current there.
    pub current_release: Option<String>,
    /// Every time it became current there (oldest first).
    pub activated_at: Vec<String>,
}

/// One host of the gate target: when the release passed its health check there.
#[derive(Debug, Serialize)]
pub struct Tested {
    pub target: String,
    pub host: String,
    pub healthy_at: Option<String>,
}

/// What `slipway provenance` reports (`--json`: this object).
#[derive(Debug, Serialize)]
pub struct Report {
    pub release: String,
    pub id: Digest,
    pub provenance: Option<Provenance>,
    pub signed_by: Option<Signer>,
    pub tested_on: Vec<Tested>,
    pub hosts: Vec<HostLive>,
    /// History reasons recorded with its activations (gate overrides, rollbacks).
    pub reasons: Vec<String>,
}

/// The provenance of `rel` (a name or id prefix; default what is current)
/// on `fleet`'s hosts; `tested_on` is left for [`tested_on`].
///
/// # Errors
/// When nothing is current (and no `rel`), the release is on no host, or a
/// host is unreachable.
pub fn gather(fleet: &mut Fleet, target: &str, rel: Option<&str>) -> Result<Report> {
    let mut hosts: Vec<(String, HostStatus, Vec<Record>)> = Vec::new();
    for (host, r) in fleet.query(|s| s.status()) {
        hosts.push((host, r?, Vec::new()));
    }
    let wanted = match rel {
        Some(r) => r.to_string(),
        None => hosts
            .iter()
            .find_map(|(_, st, _)| st.current.clone())
            .ok_or_else(|| Error::NothingCurrent {
                target: target.to_string(),
            })?,
    };
    let found = hosts.iter().find_map(|(_, st, _)| {
        st.releases
            .iter()
            .find(|r| r.name == wanted || (looks_like_id(&wanted) && r.id.matches_prefix(&wanted)))
            .cloned()
    });
    let Some(rel) = found else {
        return Err(Error::ReleaseOnNoHost {
            release: wanted,
            target: target.to_string(),
        });
    };
    // Only this bundle's records: the host filters, so a long log costs little.
    for ((_, _, hist), (_, r)) in hosts.iter_mut().zip(fleet.query(|s| s.history_of(rel.id))) {
        *hist = r?;
    }
    let mut report = Report {
        release: rel.name.clone(),
        id: rel.id,
        provenance: rel.provenance.clone(),
        signed_by: rel.signed_by.clone(),
        tested_on: Vec::new(),
        hosts: Vec::new(),
        reasons: Vec::new(),
    };
    for (host, st, hist) in &hosts {
        let mine: Vec<&Record> = hist
            .iter()
            .rev()
            .filter(|r| r.id == rel.id && r.action != "healthy")
            .collect();
        for r in &mine {
            if let Some(reason) = &r.reason {
                report.reasons.push(format!("{host} {}: {reason}", r.time));
            }
        }
        report.hosts.push(HostLive {
            host: host.clone(),
            current: st.current_id == Some(rel.id),
            current_release: st.current.clone(),
            activated_at: mine.iter().map(|r| r.time.clone()).collect(),
        });
    }
    Ok(report)
}

/// When bundle `id` passed its health check on each host of the gate
/// target `gate` (`None` where it never did, or the host could not be asked).
pub fn tested_on(gate_fleet: &mut Fleet, gate: &str, id: Digest) -> Vec<Tested> {
    gate_fleet
        .query(|s| s.history_of(id))
        .into_iter()
        .map(|(host, r)| Tested {
            target: gate.to_string(),
            host,
            healthy_at: r.ok().and_then(|recs| {
                recs.into_iter()
                    .find(|x| x.action == "healthy" && x.id == id)
                    .map(|x| x.time)
            }),
        })
        .collect()
}
