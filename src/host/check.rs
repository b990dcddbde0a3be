//! `check`: the facts `slipway host check` judges a host by — who runs
//! `serve` and who owns the root, its mode, free space, and whether `current`
//! is absent or a relative link to a complete release.
//!
//! Read-only: nothing here changes the host; a root that does not exist
//! yet is reported as such ([`check_missing`]), never created. The host reports facts and the
//! problems only it can see; the client decides what to print and how to fix
//! it, since only the client knows the target's name.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::layout::Layout;
use crate::error::Result;
use crate::fs;
use crate::protocol::{CheckReport, CurrentState, Finding, PROTOCOL, VERSION, who};

/// Gather the facts of `layout`'s host.
///
/// # Errors
/// When the root cannot be examined.
pub fn check(layout: &Layout) -> Result<CheckReport> {
    let uid = rustix::process::geteuid().as_raw();
    let meta = fs::metadata(&layout.root)?;
    let (free_bytes, total_bytes) = fs::space(&layout.root)?;
    let uname = rustix::system::uname();
    let current = current_state(layout)?;
    let mut problems = Vec::new();
    let user = crate::config::user_name(uid);
    for dir in [
        layout.releases_dir(),
        layout.shared_dir(),
        layout.meta_dir(),
        layout.objects_dir(),
    ] {
        let m = fs::metadata(&dir)?;
        if m.uid() != uid {
            problems.push(Finding {
                problem: format!(
                    "`{}` is owned by {}, not by the deploy user {}",
                    dir.display(),
                    who(m.uid(), crate::config::user_name(m.uid()).as_deref()),
                    who(uid, user.as_deref())
                ),
                fix: format!(
                    "sudo chown -R {} {}",
                    user.clone().unwrap_or_else(|| uid.to_string()),
                    layout.root.display()
                ),
            });
        }
        if m.mode() & 0o002 != 0 {
            problems.push(Finding {
                problem: format!(
                    "`{}` is writable by everyone (mode {:04o})",
                    dir.display(),
                    m.mode() & 0o7777
                ),
                fix: format!("chmod o-w {}", dir.display()),
            });
        }
    }
    let (enforces_signatures, refused_by_signers) = signature_findings(layout)?;
    Ok(CheckReport {
        version: VERSION.to_string(),
        protocol: PROTOCOL,
        os: uname.sysname().to_string_lossy().into_owned(),
        arch: uname.machine().to_string_lossy().into_owned(),
        root: layout.root.display().to_string(),
        uid,
        user,
        owner_uid: meta.uid(),
        owner: crate::config::user_name(meta.uid()),
        mode: meta.mode() & 0o7777,
        free_bytes,
        total_bytes,
        current_ok: current.is_ok(),
        current,
        problems,
        enforces_signatures,
        refused_by_signers,
        exists: true,
    })
}

/// The facts of a root that does not exist yet: where the first push
/// will create it, and whether the deploy user may.
///
/// # Errors
/// When no parent of the root can be examined.
pub fn check_missing(root: &Path) -> Result<CheckReport> {
    let uid = rustix::process::geteuid().as_raw();
    let mut parent = root;
    while fs::symlink_metadata_optional(parent)?.is_none() {
        parent = parent.parent().unwrap_or(Path::new("/"));
    }
    let meta = fs::metadata(parent)?;
    let (free_bytes, total_bytes) = fs::space(parent)?;
    let uname = rustix::system::uname();
    let user = crate::config::user_name(uid);
    let mut problems = Vec::new();
    if !meta.is_dir() {
        problems.push(Finding {
            problem: format!(
                "`{}` is not a directory, so `{}` cannot be created",
                parent.display(),
                root.display()
            ),
            fix: format!("point the target's root elsewhere, or remove `{}`", parent.display()),
        });
    } else if rustix::fs::access(parent, rustix::fs::Access::WRITE_OK).is_err() {
        problems.push(Finding {
            problem: format!(
                "`{}` does not exist yet, and the deploy user {} may not create it in `{}`",
                root.display(),
                who(uid, user.as_deref()),
                parent.display()
            ),
            fix: format!(
                "sudo mkdir -p {} && sudo chown {} {}",
                root.display(),
                user.clone().unwrap_or_else(|| uid.to_string()),
                root.display()
            ),
        });
    }
    Ok(CheckReport {
        version: VERSION.to_string(),
        protocol: PROTOCOL,
        os: uname.sysname().to_string_lossy().into_owned(),
        arch: uname.machine().to_string_lossy().into_owned(),
        root: root.display().to_string(),
        uid,
        user,
        owner_uid: meta.uid(),
        owner: crate::config::user_name(meta.uid()),
        mode: meta.mode() & 0o7777,
        free_bytes,
        total_bytes,
        current_ok: true,
        current: CurrentState::Absent,
        problems,
        enforces_signatures: false,
        refused_by_signers: Vec::new(),
        exists: false,
    })
}

/// With an `allowed_signers`, every complete release on the host it would
/// refuse (an emergency rollback to one of them would stop), with why.
fn signature_findings(layout: &Layout) -> Result<(bool, Vec<Finding>)> {
    if fs::symlink_metadata_optional(&layout.allowed_signers_path())?.is_none() {
        return Ok((false, Vec::new()));
    }
    let mut refused = Vec::new();
    for name in layout.release_names()? {
        let Ok(meta) = super::activate::complete_release(layout, &name) else {
            continue;
        };
        if let Err(e) = super::signatures::check(layout, &meta) {
            refused.push(Finding {
                problem: e.to_string(),
                fix: format!("slipway sign {name}, then slipway push {name} to this host"),
            });
        }
    }
    Ok((true, refused))
}

fn current_state(layout: &Layout) -> Result<CurrentState> {
    let path = layout.current();
    let Some(m) = fs::symlink_metadata_optional(&path)? else {
        return Ok(CurrentState::Absent);
    };
    if !m.file_type().is_symlink() {
        return Ok(CurrentState::NotSymlink);
    }
    let target = fs::read_link(&path)?.to_string_lossy().into_owned();
    let release = match target.strip_prefix("releases/") {
        Some(name) if crate::manifest::validate_name(name).is_ok() => name.to_string(),
        _ => return Ok(CurrentState::Unmanaged { target }),
    };
    if !layout.release_dir(&release).is_dir() {
        return Ok(CurrentState::Missing { release });
    }
    match layout.release_meta(&release)? {
        Some(meta) if meta.pushed_at.is_some() => Ok(CurrentState::Ok { release }),
        _ => Ok(CurrentState::Incomplete { release }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_states() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(&dir.path().join("root")).unwrap();
        let r = check(&layout).unwrap();
        assert_eq!(r.current, CurrentState::Absent);
        assert!(r.current_ok && r.problems.is_empty(), "{r:?}");
        assert_eq!(r.uid, r.owner_uid);
        assert!(r.total_bytes >= r.free_bytes && r.total_bytes > 0);

        std::os::unix::fs::symlink("releases/v1", layout.current()).unwrap();
        assert_eq!(
            current_state(&layout).unwrap(),
            CurrentState::Missing { release: "v1".into() }
        );
        std::fs::create_dir(layout.release_dir("v1")).unwrap();
        assert_eq!(
            current_state(&layout).unwrap(),
            CurrentState::Incomplete { release: "v1".into() }
        );
        std::fs::remove_file(layout.current()).unwrap();
        std::os::unix::fs::symlink(layout.release_dir("v1"), layout.current()).unwrap();
        assert!(matches!(
            current_state(&layout).unwrap(),
            CurrentState::Unmanaged { .. }
        ));
        std::fs::remove_file(layout.current()).unwrap();
        std::fs::create_dir(layout.current()).unwrap();
        assert_eq!(current_state(&layout).unwrap(), CurrentState::NotSymlink);
        assert!(!CurrentState::NotSymlink.is_ok());
    }
}
