//! `slipway serve` against a crafted client that speaks the protocol wrongly
//! or maliciously: everything is refused with nothing written outside
//! `.slipway/tmp/` and no release bound.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use slipway::digest::Digest;
use slipway::error::Error;
use slipway::manifest::{Entry, Manifest};
use slipway::protocol::{ActivateRequest, Channel, MAX_FRAME, Message, Peer, PushOffer, decode_indices};
use slipway::remote::push::compress_manifest;

use crate::support::archive::rle;
use crate::support::{Env, bin};

/// A `slipway serve` child driven frame by frame.
struct Raw {
    child: Child,
    ch: Channel<ChildStdout, ChildStdin>,
}

impl Raw {
    fn start(root: &Path) -> Raw {
        let mut child = Command::new(bin())
            .args(["serve", "--root"])
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let ch = Channel::new(child.stdout.take().unwrap(), child.stdin.take().unwrap(), Peer::Host);
        Raw { child, ch }
    }

    /// Start and exchange `hello`.
    fn greeted(root: &Path) -> Raw {
        let mut raw = Raw::start(root);
        raw.ch.send(&Message::hello()).unwrap();
        assert_eq!(raw.ch.recv().unwrap(), Message::hello());
        raw
    }

    /// Wait for `serve` to exit; returns its stderr.
    fn finish(mut self, success: bool) -> String {
        self.ch.close_write();
        drop(self.ch);
        let out = self.child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.success(), success, "serve: {stderr}");
        stderr
    }

    /// End the session whatever state it is in (a push left half done).
    fn abandon(mut self) {
        self.ch.close_write();
        drop(self.ch);
        let _ = self.child.wait_with_output();
    }

    /// Send one request and return the host's answer, or its error.
    fn request(&mut self, msg: &Message) -> Result<Message, Error> {
        self.ch.send(msg)?;
        self.ch.recv()
    }

    /// Offer `manifest` as release `name`, send it, and return the host's
    /// answer: the missing entry indices, or its error.
    fn offer(&mut self, name: &str, manifest: &[u8]) -> Result<Vec<u32>, Error> {
        self.offer_shared(name, manifest, vec![], vec![])
    }

    /// [`Raw::offer`] of a release whose target shares these paths.
    fn offer_shared(
        &mut self,
        name: &str,
        manifest: &[u8],
        shared: Vec<String>,
        shared_files: Vec<String>,
    ) -> Result<Vec<u32>, Error> {
        let compressed = compress_manifest(manifest, None)?;
        let id = Digest::of(manifest);
        self.offer_with(name, id, manifest.len() as u64, &compressed, (shared, shared_files))
    }

    /// [`Raw::offer`] of a manifest of `size` bytes hashing to `id`, sent
    /// as the zstd frame `compressed`.
    fn offer_compressed(&mut self, name: &str, id: Digest, size: u64, compressed: &[u8]) -> Result<Vec<u32>, Error> {
        self.offer_with(name, id, size, compressed, (vec![], vec![]))
    }

    fn offer_with(
        &mut self,
        name: &str,
        id: Digest,
        size: u64,
        compressed: &[u8],
        (shared, shared_files): (Vec<String>, Vec<String>),
    ) -> Result<Vec<u32>, Error> {
        self.ch.send(&Message::Push(Box::new(PushOffer {
            shared,
            shared_files,
            ..offer_of(name, id)
        })))?;
        match self.ch.recv()? {
            Message::SendManifest { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        self.ch.send(&Message::Manifest { size, base: None })?;
        self.ch.send_blob(compressed)?;
        let Message::Need(need) = self.ch.recv()? else {
            panic!("expected need")
        };
        decode_indices(&self.ch.recv_blob(need.objects * 4, "need")?)
    }
}

/// A push offer of release `name` with bundle id `id` from a client that
/// is not slipway: no signatures, no shared paths, not a repair.
fn offer_of(name: &str, id: Digest) -> PushOffer {
    PushOffer {
        name: name.into(),
        id,
        provenance: None,
        signatures: Vec::new(),
        link_mode: Default::default(),
        pushed_by: "mallory@evil".into(),
        shared: vec![],
        shared_files: vec![],
        repair: false,
        source: None,
        command: None,
    }
}

fn manifest(entries: Vec<Entry>) -> Vec<u8> {
    Manifest {
        version: 1,
        source_date_epoch: 0,
        entries,
    }
    .canonical_bytes()
}

fn file(path: &str, content: &[u8]) -> Entry {
    Entry::file(path.into(), false, content.len() as u64, Digest::of(content))
}

/// Every path under `root` except the staging area (and the lock files in it).
fn outside_tmp(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p == root.join(".slipway/tmp") {
                continue;
            }
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fn assert_nothing_staged(root: &Path, before: &[PathBuf]) {
    assert_eq!(outside_tmp(root), before, "something was written outside .slipway/tmp");
    let tmp = crate::support::faults::leftovers(root);
    assert!(tmp.is_empty(), "staging leftovers: {tmp:?}");
}

/// A fresh host root with its layout, and its listing.
fn host(env: &Env) -> (PathBuf, Vec<PathBuf>) {
    let root = env.path("host");
    // A root exists once a push made it: `.slipway/` is what marks one
    // (the greeting then fills in the rest of the layout).
    std::fs::create_dir_all(root.join(".slipway")).unwrap();
    Raw::greeted(&root).finish(true);
    let before = outside_tmp(&root);
    (root, before)
}

#[test]
fn serve_answers_staged_with_what_it_wrote_and_what_it_reused() {
    let env = Env::new();
    let (root, _) = host(&env);
    // `a.txt` twice (one object), `b.txt` once: two objects written, 10 bytes.
    let m = manifest(vec![
        file("a.txt", b"hello"),
        file("b.txt", b"world"),
        file("c.txt", b"hello"),
    ]);
    let mut raw = Raw::greeted(&root);
    assert_eq!(raw.offer("r1", &m).unwrap(), vec![0, 1]);
    raw.ch.send(&Message::Batch { entries: vec![0, 1] }).unwrap();
    raw.ch
        .send_blob(&zstd::bulk::compress(b"helloworld", 3).unwrap())
        .unwrap();
    raw.ch.send(&Message::Done).unwrap();
    let staged = |files, objects_reused, objects_written, bytes_written| {
        Message::Staged(slipway::protocol::Staged {
            already: false,
            files,
            objects_reused,
            objects_written,
            bytes_written,
            bytes_downloaded: 0,
            signatures_added: Some(0),
        })
    };
    assert_eq!(raw.ch.recv().unwrap(), staged(3, 0, 2, 10));
    // The same contents and one more: the host asks only for the new one.
    let m = manifest(vec![
        file("a.txt", b"hello"),
        file("b.txt", b"world"),
        file("d.txt", b"!"),
    ]);
    assert_eq!(raw.offer("r2", &m).unwrap(), vec![2]);
    raw.ch.send(&Message::Batch { entries: vec![2] }).unwrap();
    raw.ch.send_blob(&zstd::bulk::compress(b"!", 3).unwrap()).unwrap();
    raw.ch.send(&Message::Done).unwrap();
    assert_eq!(raw.ch.recv().unwrap(), staged(3, 2, 1, 1));
    raw.finish(true);
    assert_eq!(std::fs::read_to_string(root.join("releases/r2/d.txt")).unwrap(), "!");
}

#[test]
fn serve_repairs_only_the_bundle_it_has_under_that_name() {
    let env = Env::new();
    let (root, _) = host(&env);
    let m = manifest(vec![file("a.txt", b"hello")]);
    let mut raw = Raw::greeted(&root);
    assert_eq!(raw.offer("r1", &m).unwrap(), vec![0]);
    raw.ch.send(&Message::Batch { entries: vec![0] }).unwrap();
    raw.ch.send_blob(&zstd::bulk::compress(b"hello", 3).unwrap()).unwrap();
    raw.ch.send(&Message::Done).unwrap();
    assert!(matches!(raw.ch.recv().unwrap(), Message::Staged(_)));
    raw.finish(true);
    let before = outside_tmp(&root);
    let record = std::fs::read(root.join(".slipway/releases/r1.json")).unwrap();

    let repair = |name: &str, id: Digest| {
        let mut raw = Raw::greeted(&root);
        let answer = raw.request(&Message::Push(Box::new(PushOffer {
            repair: true,
            ..offer_of(name, id)
        })));
        match answer {
            Err(e) => {
                raw.finish(false);
                Err(e)
            }
            Ok(m) => {
                raw.abandon();
                Ok(m)
            }
        }
    };
    // Another bundle under the name: a repair must not rebind it.
    let other = Digest::of(&manifest(vec![file("a.txt", b"other")]));
    let e = repair("r1", other).unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "cannot repair `r1`: this host has {}, not {other}",
            Digest::of(&m)
        )),
        "{e}"
    );
    // A name the host does not have: a repair is not a first push.
    let e = repair("r2", Digest::of(&m)).unwrap_err();
    assert!(
        e.to_string().contains("cannot repair `r2`: it is not on this host"),
        "{e}"
    );
    assert_eq!(outside_tmp(&root), before);
    assert_eq!(std::fs::read(root.join(".slipway/releases/r1.json")).unwrap(), record);
    // The bundle it has: the host asks for the manifest, even though the
    // release is complete here (a plain push would answer `staged` at once).
    assert!(matches!(
        repair("r1", Digest::of(&m)).unwrap(),
        Message::SendManifest { .. }
    ));
}

#[test]
fn serve_refuses_wrong_object_bytes_with_exit_5_and_binds_nothing() {
    let env = Env::new();
    let (root, before) = host(&env);
    let m = manifest(vec![file("a.txt", b"hello"), file("b.txt", b"world")]);
    let mut raw = Raw::greeted(&root);
    assert_eq!(raw.offer("evil", &m).unwrap(), vec![0, 1]);
    raw.ch.send(&Message::Batch { entries: vec![0, 1] }).unwrap();
    raw.ch
        .send_blob(&zstd::bulk::compress(b"helloWORLD", 3).unwrap())
        .unwrap();
    raw.ch.send(&Message::Done).unwrap();
    let e = raw.ch.recv().unwrap_err();
    assert_eq!(e.exit().code(), 5, "{e}");
    assert!(
        e.to_string()
            .starts_with("the content sent for `b.txt` does not match its sha256"),
        "{e}"
    );
    raw.finish(false);
    // `a.txt` was right, but nothing is moved into objects/ before its group is complete.
    assert_nothing_staged(&root, &before);
}

#[test]
fn serve_refuses_a_wrong_bundle_and_truncated_content() {
    let env = Env::new();
    let (root, before) = host(&env);
    let m = manifest(vec![file("a.txt", b"hello")]);

    let mut raw = Raw::greeted(&root);
    raw.offer("r", &m).unwrap();
    raw.ch.send(&Message::Batch { entries: vec![0] }).unwrap();
    raw.ch.send_blob(&zstd::bulk::compress(b"hel", 3).unwrap()).unwrap();
    let e = raw.ch.recv().unwrap_err();
    assert_eq!(e.exit().code(), 5, "{e}");
    assert!(e.to_string().contains("ends after 3 of its 5 bytes"), "{e}");
    raw.finish(false);

    // A batch naming something that is not a file of the manifest.
    let m2 = manifest(vec![Entry::dir("d".into()), file("d/a.txt", b"hello")]);
    let mut raw = Raw::greeted(&root);
    raw.offer("r", &m2).unwrap();
    raw.ch.send(&Message::Batch { entries: vec![0] }).unwrap();
    let e = raw.ch.recv().unwrap_err();
    assert!(e.to_string().contains("naming entry 0"), "{e}");
    raw.finish(false);

    // A bundle that is not a bundle.
    let mut raw = Raw::greeted(&root);
    raw.offer("r", &m).unwrap();
    raw.ch.send(&Message::Bundle { size: 5 }).unwrap();
    raw.ch.send_blob(b"hello").unwrap();
    let e = raw.ch.recv().unwrap_err();
    assert_eq!(e.exit().code(), 5, "{e}");
    raw.finish(false);

    // `done` before the content.
    let mut raw = Raw::greeted(&root);
    raw.offer("r", &m).unwrap();
    raw.ch.send(&Message::Done).unwrap();
    let e = raw.ch.recv().unwrap_err();
    assert!(e.to_string().contains("never sent the content of `a.txt`"), "{e}");
    raw.finish(false);
    assert_nothing_staged(&root, &before);
}

#[test]
fn serve_refuses_manifests_that_leave_the_root() {
    let env = Env::new();
    let (root, before) = host(&env);
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut external = Entry::symlink("l".into(), outside.display().to_string());
    external.external = true;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (manifest(vec![file("../x", b"x")]), "bad entry `../x`"),
        (manifest(vec![file("/etc/x", b"x")]), "absolute path"),
        (
            manifest(vec![Entry::symlink("l".into(), "..".into())]),
            "leaves the release tree",
        ),
        (
            // symlink, then a write through it
            manifest(vec![Entry::symlink("l".into(), ".".into()), file("l/f", b"x")]),
            "path goes through a file or symlink",
        ),
        (
            manifest(vec![external, file("l/f", b"x")]),
            "path goes through a file or symlink",
        ),
        (manifest(vec![file(".slipway/objects/x", b"x")]), "reserved"),
    ];
    for (m, why) in cases {
        let mut raw = Raw::greeted(&root);
        let e = raw.offer("evil", &m).unwrap_err();
        assert_eq!(e.exit().code(), 5, "{e}");
        assert!(e.to_string().contains(why), "{why}: {e}");
        raw.finish(false);
    }
    // A manifest whose bytes do not hash to the offered id.
    let mut raw = Raw::greeted(&root);
    let m = manifest(vec![file("a", b"a")]);
    raw.ch
        .send(&Message::Push(Box::new(offer_of(
            "evil",
            Digest::of(b"something else"),
        ))))
        .unwrap();
    raw.ch.recv().unwrap();
    raw.ch
        .send(&Message::Manifest {
            size: m.len() as u64,
            base: None,
        })
        .unwrap();
    raw.ch.send_blob(&compress_manifest(&m, None).unwrap()).unwrap();
    let e = raw.ch.recv().unwrap_err();
    assert_eq!(e.exit().code(), 5);
    assert!(e.to_string().contains("not to the offered id"), "{e}");
    raw.finish(false);

    assert_nothing_staged(&root, &before);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

/// `entry` changed by `edit`.
fn with(mut entry: Entry, edit: impl FnOnce(&mut Entry)) -> Entry {
    edit(&mut entry);
    entry
}

#[test]
fn serve_refuses_malformed_entries_and_links_out_of_the_tree_and_accepts_the_rest() {
    let env = Env::new();
    let (root, before) = host(&env);
    let dir = || Entry::dir("d".into());
    let f = || file("f", b"x");
    let link = || Entry::symlink("l".into(), "f".into());
    let digest = Some(Digest::of(b"x"));
    let dir_fields = "directory entry has file fields";
    let file_fields = "file entry must have mode 0644 or 0755 and a sha256";
    let link_fields = "symlink entry is malformed";
    // One wrong field at a time.
    let cases: Vec<(Entry, &str)> = vec![
        (with(dir(), |e| e.mode = 0o700), dir_fields),
        (with(dir(), |e| e.size = 1), dir_fields),
        (with(dir(), |e| e.sha256 = digest), dir_fields),
        (with(dir(), |e| e.target = Some("f".into())), dir_fields),
        (with(dir(), |e| e.external = true), dir_fields),
        (with(f(), |e| e.mode = 0o600), file_fields),
        (with(f(), |e| e.mode = 0o777), file_fields),
        (with(f(), |e| e.mode = 0o4755), file_fields),
        (with(f(), |e| e.sha256 = None), file_fields),
        (with(f(), |e| e.target = Some("f".into())), file_fields),
        (with(f(), |e| e.external = true), file_fields),
        (with(link(), |e| e.mode = 0o755), link_fields),
        (with(link(), |e| e.size = 1), link_fields),
        (with(link(), |e| e.sha256 = digest), link_fields),
        (with(link(), |e| e.target = Some(String::new())), link_fields),
        (with(link(), |e| e.target = Some("f\0".into())), link_fields),
        (with(link(), |e| e.target = None), "symlink without a target"),
        (
            with(link(), |e| e.target = Some("t".repeat(4001))),
            "symlink target is too long",
        ),
        (file(&"p".repeat(4001), b"x"), "path is too long"),
        // Back out of a name the tree does not have, and once more: outside.
        (
            with(link(), |e| e.target = Some("missing/../..".into())),
            "symlink target `missing/../..` leaves the release tree, which only links listed in `[build] allow_links` may",
        ),
    ];
    let mut cases: Vec<(Vec<Entry>, String)> = cases
        .into_iter()
        .map(|(entry, why)| (vec![entry.clone()], format!("bad entry `{}`: {why}", entry.path)))
        .collect();
    // A link through a link that leaves the tree leaves it too.
    cases.push((
        vec![Entry::symlink("a".into(), "b/f".into()), Entry::symlink("b".into(), "..".into())],
        "bad entry `a`: symlink target `b/f` leaves the release tree, which only links listed in `[build] allow_links` may"
            .into(),
    ));
    // Through 41 links in one target (each `s0` one link back to `d`): one
    // more than a walk may follow.
    cases.push((
        through_links(41),
        format!(
            "bad entry `p`: symlink target `{}` loops or goes through more than 40 links",
            through_links(41)[2].target.as_deref().unwrap()
        ),
    ));
    for (entries, why) in cases {
        let m = manifest(entries.clone());
        let mut raw = Raw::greeted(&root);
        let e = raw.offer("evil", &m).unwrap_err();
        assert_eq!(e.exit().code(), 5, "{entries:?}: {e}");
        assert_eq!(
            e.to_string(),
            format!("release `evil` ({}): {why}", Digest::of(&m)),
            "{entries:?}"
        );
        raw.finish(false);
    }
    // Entries that are not a list: the parser says what it expected.
    let mut raw = Raw::greeted(&root);
    let e = raw
        .offer("evil", b"{\"version\":1,\"source_date_epoch\":0,\"entries\":5}\n")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("manifest is not valid: invalid type: integer `5`, expected a list of at most 1000000 entries"),
        "{e}"
    );
    raw.finish(false);
    assert_nothing_staged(&root, &before);

    // What each kind may have is accepted, and links that stay in the tree
    // (some through a name it does not have, with nothing below it) next to
    // one that leaves it where the host allows it: the host asks for the content.
    std::fs::write(root.join(".slipway/allowed_links"), "x -> /srv/elsewhere\n").unwrap();
    let m = manifest(vec![
        dir(),
        Entry::symlink("d/l".into(), "missing/../../f".into()),
        f(),
        with(file("g", b"y"), |e| e.mode = 0o755),
        Entry::symlink("l".into(), "t".repeat(4000)),
        file(&"p".repeat(4000), b"x"),
        with(Entry::symlink("x".into(), "/srv/elsewhere".into()), |e| {
            e.external = true
        }),
        // Below a name the tree does not have, `x` is not the link `x`.
        Entry::symlink("y".into(), "missing/x/f".into()),
        Entry::symlink("z".into(), "missing/a/../../f".into()),
    ]);
    let mut raw = Raw::greeted(&root);
    assert_eq!(raw.offer("fine", &m).unwrap(), vec![2, 3]);
    raw.abandon();
    // Through exactly 40 links: as many as a walk may follow.
    let mut raw = Raw::greeted(&root);
    assert_eq!(
        raw.offer("fine", &manifest(through_links(40))).unwrap(),
        Vec::<u32>::new()
    );
    raw.abandon();
}

/// `p -> s0/s0/…/f` with `n` times `s0`, where `s0 -> d` and `d/s0 -> .`:
/// following it goes through `n` links, always back to `d`.
fn through_links(n: usize) -> Vec<Entry> {
    vec![
        Entry::dir("d".into()),
        Entry::symlink("d/s0".into(), ".".into()),
        Entry::symlink("p".into(), format!("{}f", "s0/".repeat(n))),
        Entry::symlink("s0".into(), "d".into()),
    ]
}

#[test]
fn serve_reads_a_manifest_of_exactly_the_size_limit_to_its_end() {
    let env = Env::new();
    let (root, before) = host(&env);
    // 256 MiB of spaces: not refused for its size, parsed to the last byte
    // (where the parser still waits for a value).
    let size = slipway::manifest::MAX_MANIFEST_BYTES;
    let mut h = slipway::digest::Hasher::new();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..size >> 20 {
        h.update(&chunk);
    }
    let id = h.finish();
    let mut raw = Raw::greeted(&root);
    let e = raw
        .offer_compressed("evil", id, size, &rle(b' ', size, 17))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("release `evil` ({id}): manifest is not valid: EOF while parsing a value at line 1 column {size}")
    );
    raw.finish(false);
    assert_nothing_staged(&root, &before);
}

#[test]
fn serve_checks_the_shared_paths_a_client_sends_against_the_manifest() {
    let env = Env::new();
    let (root, before) = host(&env);
    // The slipway client checks the same before it contacts a host; these
    // come from a client that does not.
    let m = manifest(vec![
        Entry::dir("app".into()),
        file("app/index.html", b"hi"),
        Entry::dir("log".into()),
    ]);
    let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: [(Vec<String>, Vec<String>, u8, &str); 6] = [
        (
            paths(&["../x"]),
            vec![],
            2,
            "shared path `../x` must be a relative path inside the release (no `..`, not absolute)",
        ),
        (
            vec![],
            paths(&["/etc/passwd"]),
            2,
            "shared path `/etc/passwd` must be a relative path inside the release (no `..`, not absolute)",
        ),
        (
            paths(&["data"]),
            paths(&["data"]),
            2,
            "shared path `data` is listed twice",
        ),
        (
            paths(&["log"]),
            vec![],
            1,
            "the bundle has a directory at shared path `log`; remove it from the build output or from `shared`",
        ),
        (
            vec![],
            paths(&["app/index.html"]),
            1,
            "the bundle has a file at shared path `app/index.html`; remove it from the build output or from `shared`",
        ),
        (
            paths(&["cache/x"]),
            vec![],
            1,
            "shared path `cache/x` needs the directory `cache` in the bundle",
        ),
    ];
    for (shared, shared_files, code, why) in cases {
        let mut raw = Raw::greeted(&root);
        let e = raw.offer_shared("evil", &m, shared, shared_files).unwrap_err();
        assert_eq!((e.exit().code(), e.to_string().as_str()), (code, why));
        raw.finish(false);
    }
    assert_nothing_staged(&root, &before);
    // Paths the bundle leaves free, under its directories: accepted.
    let mut raw = Raw::greeted(&root);
    assert_eq!(
        raw.offer_shared("fine", &m, paths(&["data", "app/uploads"]), paths(&["app/.env"]))
            .unwrap(),
        vec![1]
    );
    raw.abandon();
}

#[test]
fn serve_refuses_names_that_are_not_release_names() {
    let env = Env::new();
    let (root, before) = host(&env);
    for name in ["../x", "a/b", "..", "", "x\n", "a\0b", ".hidden"] {
        let mut raw = Raw::greeted(&root);
        let e = raw.offer(name, &manifest(vec![])).unwrap_err();
        assert_eq!(e.exit().code(), 2, "{name:?}: {e}");
        assert!(e.to_string().contains("is not a valid release name"), "{e}");
        raw.finish(false);
    }
    assert_nothing_staged(&root, &before);
}

#[test]
fn serve_refuses_bad_frames_and_other_protocols() {
    let env = Env::new();
    let (root, _) = host(&env);

    // oversized and unknown frames: refused before anything is allocated or parsed
    for (frame, why) in [
        (
            [((MAX_FRAME + 1) as u32).to_be_bytes().as_slice(), &[1]].concat(),
            "oversized frame from the client: 16777217 bytes",
        ),
        (vec![0, 0, 0, 0, 9], "unknown frame type 9 from the client"),
    ] {
        let mut child = Command::new(bin())
            .args(["serve", "--root"])
            .arg(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&frame).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{stderr}");
    }

    // a message that is not a request: the error comes back as a message
    let mut raw = Raw::greeted(&root);
    raw.ch.send(&Message::hello()).unwrap();
    let e = raw.ch.recv().unwrap_err();
    assert!(e.to_string().contains("`hello` is not a request"), "{e}");
    raw.finish(false);

    // another protocol version: one line naming both versions and what to upgrade
    let mut raw = Raw::start(&root);
    raw.ch
        .send(&Message::Hello {
            protocol: 99,
            version: "9.9.9".into(),
        })
        .unwrap();
    assert_eq!(raw.ch.recv().unwrap(), Message::hello());
    let e = raw.ch.recv().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "the client runs slipway 9.9.9 (protocol 99) but this host runs slipway {} (protocol 1): upgrade slipway on this host to 9.9.9, or run `slipway host install -t TARGET` on the client machine to put its slipway here",
            env!("CARGO_PKG_VERSION")
        )
    );
    raw.finish(false);
}

/// Build a release of a tree whose index.html says `text`, push it to
/// `root` with the slipway client (staged, not activated), and return its id.
fn staged(env: &Env, root: &Path, name: &str, text: &str) -> String {
    env.write("site/index.html", text);
    let id = env
        .slipway()
        .args(["build", "--dir", "site", "--name", name])
        .ok()
        .line();
    env.slipway().args(["push", name, "-t"]).arg(root).ok();
    id.trim_start_matches("sha256:").to_string()
}

/// What a client that is not slipway can send: `activate` of REL exactly
/// as given, which the slipway client would have resolved (and refused)
/// itself first. Returns the host's answer: the record, or its error.
fn activate_raw(root: &Path, rel: &str) -> Result<slipway::protocol::Record, Error> {
    let mut raw = Raw::greeted(root);
    let answer = raw.request(&Message::Activate(Box::new(ActivateRequest {
        release: rel.into(),
        expect: None,
        actor: "mallory@evil".into(),
        action: "activate".into(),
        reason: None,
        mark_left_bad: false,
        service: None,
        db: Default::default(),
    })));
    raw.finish(answer.is_ok());
    answer.map(|m| match m {
        Message::Switched(record) => *record,
        other => panic!("unexpected {other:?}"),
    })
}

fn current(root: &Path) -> String {
    std::fs::read_link(root.join("current"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn serve_resolves_rel_itself_a_name_or_a_unique_id_prefix_and_refuses_the_rest() {
    let env = Env::new();
    let root = env.path("host");
    // `v1` and `twin` are the same bundle (same tree) under two names.
    let v1 = staged(&env, &root, "v1", "<h1>one</h1>\n");
    assert_eq!(staged(&env, &root, "twin", "<h1>one</h1>\n"), v1);
    let v2 = staged(&env, &root, "v2", "<h1>two</h1>\n");
    assert_ne!(v1[..12], v2[..12]);
    activate_raw(&root, "v1").unwrap();
    assert_eq!(current(&root), "releases/v1");

    // A bare hex prefix of an id: the host resolves it itself.
    assert_eq!(activate_raw(&root, &v2[..12]).unwrap().to, "v2");
    assert_eq!(current(&root), "releases/v2");
    // A prefix of the id v1 and twin share, bare or with `sha256:` in
    // either case: ambiguous, and nothing moves.
    for rel in [v1[..8].to_string(), format!("sha256:{}", v1[..10].to_ascii_uppercase())] {
        let e = activate_raw(&root, &rel).unwrap_err();
        assert_eq!(e.exit().code(), 2, "{rel}: {e}");
        assert!(
            e.to_string().starts_with(&format!("`{rel}` is ambiguous on `"))
                && e.to_string()
                    .ends_with("it matches twin, v1; give a release name or more digits of the id"),
            "{rel}: {e}"
        );
        assert_eq!(current(&root), "releases/v2", "{rel} moved current");
    }

    // A hex prefix of no id here: not on this host (it could be a name).
    let digit = ['0', '1', '2']
        .into_iter()
        .find(|&c| !v1.starts_with(c) && !v2.starts_with(c))
        .unwrap();
    let nothing = digit.to_string().repeat(12);
    let e = activate_raw(&root, &nothing).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("release `{nothing}` is not on `")),
        "{e}"
    );

    // Not a release name, whatever file it reaches: `../releases/v1` would
    // read v1's metadata and tree through `.slipway/releases/../releases/`.
    for rel in ["../releases/v1", "sha256:xyz", ""] {
        let e = activate_raw(&root, rel).unwrap_err();
        assert_eq!(e.exit().code(), 2, "{rel:?}: {e}");
        assert_eq!(
            e.to_string(),
            format!("`{rel}` is neither a release name nor a bundle id"),
            "{rel:?}"
        );
    }
    assert_eq!(current(&root), "releases/v2");
}

#[test]
fn serve_refuses_to_activate_a_release_whose_push_never_finished() {
    let env = Env::new();
    let root = env.path("host");
    staged(&env, &root, "v1", "<h1>one</h1>\n");
    staged(&env, &root, "v2", "<h1>two</h1>\n");
    activate_raw(&root, "v1").unwrap();

    // v2 as a push killed before its end leaves it: its metadata without
    // `pushed_at` (its tree there), or its tree not there (`pushed_at` set).
    let meta = root.join(".slipway/releases/v2.json");
    let original = std::fs::read(&meta).unwrap();
    let mut unfinished: serde_json::Value = serde_json::from_slice(&original).unwrap();
    assert!(unfinished.as_object_mut().unwrap().remove("pushed_at").is_some());
    std::fs::write(&meta, serde_json::to_vec(&unfinished).unwrap()).unwrap();
    let refused = || {
        let e = activate_raw(&root, "v2").unwrap_err();
        assert!(e.to_string().starts_with("release `v2` is not on `"), "{e}");
        assert_eq!(current(&root), "releases/v1", "nothing changed");
    };
    refused();
    std::fs::write(&meta, &original).unwrap();
    let tree = root.join("releases/v2");
    let aside = root.join("v2-aside");
    std::fs::rename(&tree, &aside).unwrap();
    refused();
    std::fs::rename(&aside, &tree).unwrap();
    assert_eq!(activate_raw(&root, "v2").unwrap().to, "v2");
    assert_eq!(current(&root), "releases/v2");
}

/// The manifests a host offers as compression bases: the current release
/// and the most recently pushed others, four at most, only releases whose
/// tree is there.
#[test]
fn serve_offers_the_current_and_the_latest_releases_as_manifest_bases() {
    let env = Env::new();
    let root = env.path("host");
    let ids: Vec<(String, Digest)> = (1..=6)
        .map(|i| {
            let name = format!("r{i}");
            let hex = staged(&env, &root, &name, &format!("<h1>{i}</h1>\n"));
            (name, Digest::from_hex(&hex).unwrap())
        })
        .collect();
    activate_raw(&root, "r1").unwrap();
    // Pushed in this order, a day apart (the record's mtime says when).
    for (i, (name, _)) in ids.iter().enumerate() {
        let ok = Command::new("touch")
            .args(["-m", "-d", &format!("2026-01-0{} 12:00", i + 1)])
            .arg(root.join(format!(".slipway/releases/{name}.json")))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    // r6's tree is gone (a push killed before its rename): not a base.
    let releases = root.join("releases");
    std::fs::set_permissions(&releases, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(releases.join("r6"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(releases.join("r6")).unwrap();

    let mut raw = Raw::greeted(&root);
    let answer = raw.request(&Message::Push(Box::new(offer_of("r7", Digest::of(b"r7")))));
    raw.abandon();
    let Ok(Message::SendManifest { mut bases, pull: false }) = answer else {
        panic!("expected send_manifest: {answer:?}")
    };
    bases.sort();
    // current (r1), then the latest whose tree is here: r5, r4, r3.
    let mut want: Vec<Digest> = [0, 4, 3, 2].iter().map(|&i| ids[i].1).collect();
    want.sort();
    assert_eq!(bases, want);
}
