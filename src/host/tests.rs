//! Unit tests of the host logic on real directories (no protocol, no SSH).

use std::os::unix::fs::PermissionsExt;

use super::activate::{self, Switch};
use super::layout::{HostRelease, Layout};
use super::{history, lock, prune, status, verify};
use crate::digest::Digest;
use crate::error::Exit;
use crate::manifest::{Entry, Manifest};

fn layout() -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::create(&dir.path().join("root")).unwrap();
    (dir, l)
}

fn release(l: &Layout, name: &str, pushed_at: &str) {
    let content = format!("content of {name}");
    let manifest = Manifest {
        version: 1,
        source_date_epoch: 0,
        entries: vec![Entry::file(
            "f".into(),
            false,
            content.len() as u64,
            Digest::of(content.as_bytes()),
        )],
    };
    let dir = l.release_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f"), &content).unwrap();
    std::fs::set_permissions(dir.join("f"), std::fs::Permissions::from_mode(0o444)).unwrap();
    l.write_release_meta(&HostRelease {
        name: name.into(),
        id: manifest.id(),
        manifest,
        provenance: None,
        signatures: vec![],
        pushed_at: Some(pushed_at.into()),
        pushed_by: Some("op@laptop".into()),
        signed_by: None,
        shared: vec![],
        shared_files: vec![],
        bad: false,
        bad_reason: None,
    })
    .unwrap();
}

fn activate(l: &Layout, name: &str) -> crate::error::Result<crate::protocol::Record> {
    activate::switch(
        l,
        &Switch {
            name: name.into(),
            expect: None,
            actor: "op@laptop".into(),
            action: "activate".into(),
            reason: None,
            mark_left_bad: false,
            via: None,
            slot: None,
            db: Default::default(),
        },
    )
}

fn link(l: &Layout) -> String {
    std::fs::read_link(l.current()).unwrap().to_string_lossy().into_owned()
}

#[test]
fn activate_points_current_relatively_and_records_history() {
    let (_d, l) = layout();
    release(&l, "v1", "2026-01-01T00:00:00Z");
    release(&l, "v2", "2026-01-01T00:00:01Z");
    activate(&l, "v1").unwrap();
    assert_eq!(link(&l), "releases/v1");
    let r = activate(&l, "v2").unwrap();
    assert_eq!((r.from.as_deref(), r.to.as_str()), (Some("v1"), "v2"));
    activate(&l, "v2").unwrap(); // already current: succeeds and is recorded
    let (records, warnings) = history::read(&l).unwrap();
    assert_eq!(records.len(), 3);
    assert!(warnings.is_empty());
    let err = activate(&l, "v9").unwrap_err();
    assert!(err.to_string().contains("push it first"), "{err}");
    assert_eq!(link(&l), "releases/v2");
}

#[test]
fn expect_is_a_compare_and_swap() {
    let (_d, l) = layout();
    release(&l, "v1", "t1");
    release(&l, "v2", "t2");
    activate(&l, "v1").unwrap();
    let mut s = Switch {
        name: "v2".into(),
        expect: Some("v2".into()),
        actor: "a@b".into(),
        action: "activate".into(),
        reason: None,
        mark_left_bad: false,
        via: None,
        slot: None,
        db: Default::default(),
    };
    let err = activate::switch(&l, &s).unwrap_err();
    assert_eq!(err.exit(), Exit::ExpectMismatch);
    assert_eq!(link(&l), "releases/v1");
    assert_eq!(history::read(&l).unwrap().0.len(), 1);
    s.expect = Some("v1".into());
    activate::switch(&l, &s).unwrap();
    assert_eq!(link(&l), "releases/v2");
}

#[test]
fn rollback_walks_back_through_history_and_skips_bad_releases() {
    let (_d, l) = layout();
    for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
        release(&l, v, &format!("t{i}"));
        activate(&l, v).unwrap();
    }
    let r = activate::rollback(&l, None, None, "a@b", None, None).unwrap();
    assert_eq!(r.to, "v2");
    assert!(l.release_meta("v3").unwrap().unwrap().bad);
    let r = activate::rollback(&l, None, None, "a@b", None, None).unwrap();
    assert_eq!(r.to, "v1");
    let err = activate::rollback(&l, None, None, "a@b", None, None).unwrap_err();
    assert!(err.to_string().contains("nothing to roll back to"), "{err}");
    assert_eq!(err.exit(), Exit::Error);
    // --to may name a bad release; activating clears its mark
    activate::rollback(&l, Some("v3"), None, "a@b", None, None).unwrap();
    assert!(!l.release_meta("v3").unwrap().unwrap().bad);
    assert_eq!(link(&l), "releases/v3");
}

#[test]
fn rolling_forward_again_marks_nothing_bad_and_a_plain_rollback_still_goes_back() {
    let (_d, l) = layout();
    for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
        release(&l, v, &format!("t{i}"));
        activate(&l, v).unwrap();
    }
    // Back to v1 (v3 is marked bad), then forward again to v2.
    activate::rollback(&l, Some("v1"), None, "a@b", None, None).unwrap();
    assert!(l.release_meta("v3").unwrap().unwrap().bad);
    activate::rollback(&l, Some("v2"), None, "a@b", None, None).unwrap();
    assert!(
        !l.release_meta("v1").unwrap().unwrap().bad,
        "v1 was live before v2: rolling forward leaves it good"
    );
    // So a plain rollback can still go back to it.
    let r = activate::rollback(&l, None, None, "a@b", None, None).unwrap();
    assert_eq!(r.to, "v1");
    assert!(l.release_meta("v2").unwrap().unwrap().bad, "moving back marks v2");
}

#[test]
fn a_crash_between_rename_and_history_is_reconciled() {
    let (_d, l) = layout();
    release(&l, "v1", "t1");
    release(&l, "v2", "t2");
    activate(&l, "v1").unwrap();
    let intent = crate::protocol::Record {
        time: "2026-01-01T00:00:00Z".into(),
        actor: "crashed@op".into(),
        action: "activate".into(),
        from: Some("v1".into()),
        to: "v2".into(),
        id: l.release_meta("v2").unwrap().unwrap().id,
        reason: None,
        signer: None,
        via: None,
        slot: None,
        schema: None,
        db_schema: None,
        backup: None,
        paused_ms: None,
        marked_bad: None,
        warning: None,
    };
    history::write_intent(
        &l,
        &history::Intent {
            record: intent.clone(),
            mark_left_bad: false,
        },
    )
    .unwrap();
    activate::point_current(&l, "v2").unwrap(); // ... and the process died here
    let appended = activate::reconcile(&l).unwrap();
    assert_eq!(appended, Some(intent.clone()));
    let (records, _) = history::read(&l).unwrap();
    assert_eq!(records.last(), Some(&intent));
    // an intent whose rename never happened is dropped
    history::write_intent(
        &l,
        &history::Intent {
            record: crate::protocol::Record {
                to: "v1".into(),
                ..intent
            },
            mark_left_bad: false,
        },
    )
    .unwrap();
    assert_eq!(activate::reconcile(&l).unwrap(), None);
    assert_eq!(history::read(&l).unwrap().0.len(), 2);
}

#[test]
fn a_crashed_rollback_is_finished_with_its_marks_once() {
    let (_d, l) = layout();
    release(&l, "v1", "t1");
    release(&l, "v2", "t2");
    activate(&l, "v1").unwrap();
    activate(&l, "v2").unwrap();
    activate::mark_bad(&l, "v1", "an old mark").unwrap();
    let intent = history::Intent {
        record: crate::protocol::Record {
            time: "2026-01-01T00:00:00Z".into(),
            actor: "crashed@op".into(),
            action: "rollback".into(),
            from: Some("v2".into()),
            to: "v1".into(),
            id: l.release_meta("v1").unwrap().unwrap().id,
            reason: None,
            signer: None,
            via: None,
            slot: None,
            schema: None,
            db_schema: None,
            backup: None,
            paused_ms: None,
            marked_bad: None,
            warning: None,
        },
        mark_left_bad: true,
    };
    // Died after the rename, and again after the history record.
    for appended in [true, false] {
        history::write_intent(&l, &intent).unwrap();
        activate::point_current(&l, "v1").unwrap();
        let got = activate::reconcile(&l).unwrap();
        assert_eq!(got.is_some(), appended);
        assert!(
            !l.release_meta("v1").unwrap().unwrap().bad,
            "activating clears the mark"
        );
        let left = l.release_meta("v2").unwrap().unwrap();
        assert!(left.bad, "the release a rollback left is bad");
        assert!(left.bad_reason.unwrap().contains("crashed@op"));
        assert_eq!(history::read(&l).unwrap().0.len(), 3, "recorded once");
    }
}

#[test]
fn a_torn_history_line_is_tolerated_and_reported() {
    let (_d, l) = layout();
    release(&l, "v1", "t1");
    release(&l, "v2", "t2");
    activate(&l, "v1").unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(l.history_path()).unwrap();
    std::io::Write::write_all(&mut f, b"{\"time\":\"2026").unwrap();
    activate(&l, "v2").unwrap();
    let (records, warnings) = history::read(&l).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(activate::rollback(&l, None, None, "a@b", None, None).is_ok());
}

#[test]
fn the_lock_fails_fast_naming_the_holder() {
    let (_d, l) = layout();
    let me = lock::LockInfo {
        actor: "alice@laptop".into(),
        command: "slipway activate v2".into(),
        pid: 42,
        since: "2026-01-01T00:00:00Z".into(),
    };
    let held = lock::acquire(&l, &me, None).unwrap();
    let err = lock::acquire(&l, &me, None).err().unwrap();
    assert_eq!(err.exit(), Exit::Locked);
    assert!(
        err.to_string()
            .contains("alice@laptop, running `slipway activate v2` since 2026-01-01T00:00:00Z ("),
        "{err}"
    );
    assert_eq!(lock::holder(&l).unwrap(), Some(me.clone()));
    drop(held);
    assert_eq!(lock::holder(&l).unwrap(), None);
    lock::acquire(&l, &me, Some(std::time::Duration::from_millis(10))).unwrap();
}

#[test]
fn prune_counts_only_releases_a_rollback_could_go_to_toward_keep() {
    let (_d, l) = layout();
    for (i, v) in ["v1", "v2", "v3", "v4"].iter().enumerate() {
        release(&l, v, &format!("2026-01-01T00:00:0{i}Z"));
        activate(&l, v).unwrap();
    }
    activate::mark_bad(&l, "v3", "broken").unwrap();
    // Current v4; v3 is bad: keep 2 means v4 and v2 (also the rollback
    // target), and the bad v3 goes before the good v1 would.
    assert_eq!(
        prune::plan(&l, 2, &[]).unwrap(),
        vec!["v1".to_string(), "v3".to_string()]
    );
    assert_eq!(prune::plan(&l, 3, &[]).unwrap(), vec!["v3".to_string()]);
}

#[test]
fn prune_keeps_current_previous_pinned_and_waiting_releases() {
    let (_d, l) = layout();
    for (i, v) in ["v1", "v2", "v3", "v4", "v5"].iter().enumerate() {
        release(&l, v, &format!("2026-01-01T00:00:0{i}Z"));
        activate(&l, v).unwrap();
    }
    release(&l, "v6", "2999-01-01T00:00:00Z"); // pushed after v5 went live: waiting
    let plan = prune::plan(&l, 1, &["v1".into()]).unwrap();
    assert_eq!(
        plan,
        vec!["v2".to_string(), "v3".to_string()],
        "current v5, previous v4, pinned v1, waiting v6"
    );
    let report = prune::prune(&l, 1, &["v1".into()], true, false).unwrap();
    assert_eq!(report.releases, plan);
    assert!(l.release_dir("v2").is_dir(), "dry run removes nothing");
    let report = prune::prune(&l, 1, &["v1".into()], false, false).unwrap();
    assert_eq!(report.releases, plan);
    assert!(!l.release_dir("v2").exists() && l.release_meta("v2").unwrap().is_none());
    assert!(l.release_dir("v4").is_dir() && l.release_dir("v6").is_dir());
    let err = prune::prune(&l, 1, &[], false, true).unwrap_err();
    assert!(err.to_string().contains("--append-only"), "{err}");
}

#[test]
fn status_and_drift() {
    let (_d, l) = layout();
    release(&l, "v1", "t1");
    release(&l, "v2", "t2");
    activate(&l, "v1").unwrap();
    activate(&l, "v2").unwrap();
    let s = status::status(&l).unwrap();
    assert_eq!(s.current.as_deref(), Some("v2"));
    assert_eq!(s.previous.as_deref(), Some("v1"));
    assert_eq!(s.releases.len(), 2);
    let meta = l.release_meta("v1").unwrap().unwrap();
    assert!(verify::verify_release(&l, &meta).unwrap().is_empty());
    let f = l.release_dir("v1").join("f");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&f, "tampered").unwrap();
    std::fs::write(l.release_dir("v1").join("extra"), "x").unwrap();
    let drift = verify::verify_release(&l, &meta).unwrap();
    let problems: Vec<(&str, &str)> = drift.iter().map(|d| (d.path.as_str(), d.problem.as_str())).collect();
    assert_eq!(problems, vec![("extra", "extra"), ("f", "changed")]);
}
