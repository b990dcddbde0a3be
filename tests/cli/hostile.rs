//! Hostile input: crafted archives fed to `slipway import FILE`. Each
//! refusal is a one-line error with the documented exit code, stores nothing
//! and writes nothing outside the store; the bombs also stay fast and within
//! bounded memory (the child's peak RSS).
//!
//! The archives are made header byte by header byte in
//! [`support::archive`](crate::support::archive), starting from an honest
//! bundle that imports (the first test) and changing one thing per case.
//! `SLIPWAY_HOSTILE_KEEP=DIR cargo test --test cli hostile` also writes every
//! crafted input into DIR, to replay by hand or against another build.
//! `docs/reliability.md` lists each case with the error slipway answers.

use std::time::Duration;

use slipway::manifest::{Entry, Manifest};
use tar::{EntryType, Header};

use crate::support::archive::{
    Body, EPOCH, GIB, MIB, Member, RSS_LIMIT, World, Zst, archive, body, entries, file_entry, honest, manifest,
    measured, raw_frame, replace, replace_in, rle_zeros, sha, with_manifest, zeros_manifest,
};

// ---------------------------------------------------------------------------
// the cases

#[test]
fn hostile_the_crafted_honest_bundle_imports() {
    // Positive control: the kit makes archives slipway accepts, so each
    // refusal below is for the one thing its case changes.
    let w = World::new();
    let file = w.file("honest", &archive(&honest()));
    let id = w.import(&file).ok().line();
    assert_eq!(id, Manifest::parse(&manifest(entries())).unwrap().id().to_string());
    w.env.slipway().args(["verify", "x"]).ok();
}

#[test]
fn hostile_long_names_and_pax_records_are_read_like_tar_does() {
    // Positive controls for the extension headers slipway interprets itself:
    // GNU long names and links (what slipway writes for paths over 100
    // bytes), pax `path`/`linkpath` records and ignorable pax records (what
    // `tar --format=posix` writes).
    let w = World::new();
    let dir = "d".repeat(150);
    let file = format!("{dir}/{}", "f".repeat(120));
    let target = file.clone();
    let mut e = entries();
    e.push(Entry::dir(dir.clone()));
    e.push(file_entry(&file, b"long"));
    e.push(Entry::symlink("m".into(), target.clone()));
    e.sort_by(|a, b| a.path.cmp(&b.path));
    let man = manifest(e);
    // In manifest order: b.txt, d, d/a.txt, dddd…, dddd…/ffff…, l, m.
    let mut gnu = body();
    let l = gnu.pop().unwrap();
    gnu.push(Member::gnu_long(EntryType::GNULongName, dir.as_bytes()));
    gnu.push(Member::dir(&dir[..100]));
    gnu.push(Member::gnu_long(EntryType::GNULongName, file.as_bytes()));
    gnu.push(Member::file(&file[..100], b"long"));
    gnu.push(l.clone());
    gnu.push(Member::gnu_long(EntryType::GNULongLink, target.as_bytes()));
    gnu.push(Member::symlink("m", &target[..100]));
    let f1 = w.file("gnu-long", &archive(&with_manifest(&man, gnu)));
    let id = w.import(&f1).ok().line();
    let mut pax = Vec::new();
    for m in body().into_iter().take(3) {
        let path = String::from_utf8(m.path.clone()).unwrap();
        pax.push(Member::pax(&[
            ("mtime", "1700000000.5"),
            ("atime", "1"),
            ("path", &path),
        ]));
        pax.push(m);
    }
    pax.push(Member::pax(&[("path", &dir)]));
    pax.push(Member::dir("PaxHeaders-dir"));
    pax.push(Member::pax(&[
        ("path", &file),
        ("size", "4"),
        ("SCHILY.xattr.user.x", "y"),
    ]));
    pax.push(Member::file("short-name", b"long"));
    pax.push(l);
    pax.push(Member::pax(&[("linkpath", &target)]));
    pax.push(Member::symlink("m", "short-target"));
    let f2 = w.file("pax", &archive(&with_manifest(&man, pax)));
    assert_eq!(
        w.env.slipway().arg("import").arg(&f2).args(["--name", "y"]).ok().line(),
        id
    );

    // Real GNU tar in posix (pax) format, from an export unpacked by hand.
    let exported = w.env.path("x.tar.zst");
    w.env.slipway().args(["export", "x", "-o"]).arg(&exported).ok();
    let tree = w.env.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let tar = |args: &str| {
        let st = std::process::Command::new("sh").arg("-c").arg(args).status().unwrap();
        assert!(st.success(), "{args}");
    };
    tar(&format!("tar --zstd -xf {} -C {}", exported.display(), tree.display()));
    let posix = w.env.path("posix.tar.zst");
    tar(&format!(
        "cd {} && tar --format=posix --no-recursion -cf - .slipway .slipway/manifest.json \
         $(tar --zstd -tf {} | grep -v '^.slipway' | sed 's,/$,,') | zstd -q -19 -o {}",
        tree.display(),
        exported.display(),
        posix.display()
    ));
    assert_eq!(
        w.env
            .slipway()
            .arg("import")
            .arg(&posix)
            .args(["--name", "z"])
            .ok()
            .line(),
        id
    );
}

#[test]
fn hostile_names_smuggled_in_extension_headers() {
    let w = World::new();
    // A long name, a pax path and a pax linkpath that say `..` or `/`.
    let mut m = replace("b.txt", vec![Member::gnu_long(EntryType::GNULongName, b"../b.txt")]);
    m.insert(3, Member::file("b.txt", b"bravo"));
    w.refused(
        "long-name-dotdot",
        &archive(&m),
        5,
        "entry `../b.txt` is not the next manifest entry (manifest expects `b.txt`)",
    );
    let mut m = honest();
    m.insert(2, Member::pax(&[("path", "/etc/b.txt")]));
    w.refused(
        "pax-path-absolute",
        &archive(&m),
        5,
        "entry `/etc/b.txt` is not the next manifest entry (manifest expects `b.txt`)",
    );
    let mut m = honest();
    let at = m.len() - 1;
    m.insert(at, Member::pax(&[("linkpath", "../../etc")]));
    w.refused(
        "pax-linkpath-up",
        &archive(&m),
        5,
        "entry `l` has a different symlink target",
    );
    // Two long names for one member, one left dangling at the end, sparse
    // pax records and global headers.
    let mut m = honest();
    m.insert(2, Member::gnu_long(EntryType::GNULongName, b"b.txt"));
    m.insert(2, Member::gnu_long(EntryType::GNULongName, b"b.txt"));
    w.refused("two-long-names", &archive(&m), 5, "two GNU long names for one member");
    let mut m = honest();
    m.push(Member::gnu_long(EntryType::GNULongName, b"zz"));
    w.refused(
        "dangling-long-name",
        &archive(&m),
        5,
        "the archive ends after an extension header",
    );
    let mut m = honest();
    m.insert(2, Member::pax(&[("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")]));
    w.refused("pax-sparse", &archive(&m), 5, "entry `b.txt` is a sparse file");
    let mut m = honest();
    m.insert(
        0,
        Member::raw(b"pax_global_header", EntryType::XGlobalHeader).content(b"19 path=evil/dir\n"),
    );
    w.refused("pax-global", &archive(&m), 5, "has a pax global header");
    let mut m = honest();
    m.insert(2, Member::pax(&[("size", "five")]));
    w.refused(
        "pax-size-not-a-number",
        &archive(&m),
        5,
        "its pax header says five bytes, its tar header 5",
    );
}

#[test]
fn hostile_dotdot_and_absolute_paths() {
    let w = World::new();
    let evil = Member::file("../evil", b"pwned");
    let abs = format!("{}/evil", w.outside());
    // In the archive only: the manifest is honest.
    w.refused(
        "dotdot-member",
        &archive(&replace("b.txt", vec![evil.clone(), Member::file("b.txt", b"bravo")])),
        5,
        "entry `../evil` is not the next manifest entry (manifest expects `b.txt`)",
    );
    w.refused(
        "absolute-member",
        &archive(&replace("b.txt", vec![Member::file(&abs, b"pwned")])),
        5,
        &format!("entry `{abs}` is not the next manifest entry"),
    );
    // In the manifest as well: refused before any content is read.
    for (case, path) in [
        ("dotdot", "../evil"),
        ("inner-dotdot", "d/../../evil"),
        ("absolute", &abs),
    ] {
        let mut e = entries();
        e.insert(0, file_entry(path, b"pwned"));
        let mut b = body();
        b.insert(0, Member::file(path, b"pwned"));
        let msg = if path.starts_with('/') {
            format!("bad entry `{path}`: absolute path")
        } else {
            format!("bad entry `{path}`: `.` or `..` component")
        };
        w.refused(case, &archive(&with_manifest(&manifest(e), b)), 5, &msg);
    }
}

#[test]
fn hostile_symlink_then_a_file_written_through_it() {
    let w = World::new();
    let outside = w.outside();
    for (case, target) in [("link-abs", outside.as_str()), ("link-up", ".."), ("link-in", "d")] {
        // The manifest says so honestly: refused by the manifest rules.
        let mut e = entries();
        let mut link = Entry::symlink("link".into(), target.into());
        link.external = target.starts_with('/');
        e.push(link);
        e.push(file_entry("link/evil", b"pwned"));
        let mut b = body();
        b.push(Member::symlink("link", target));
        b.push(Member::file("link/evil", b"pwned"));
        w.refused(
            case,
            &archive(&with_manifest(&manifest(e), b)),
            5,
            "bad entry `link/evil`: path goes through a file or symlink",
        );
        // The manifest hides it: `l` is a harmless link to `d`, the archive
        // makes it point elsewhere and then writes through it.
        w.refused(
            &format!("{case}-hidden"),
            &archive(&replace(
                "l",
                vec![Member::symlink("l", target), Member::file("l/evil", b"pwned")],
            )),
            5,
            if target == "d" {
                "has an entry `l/evil` that is not in its manifest"
            } else {
                "entry `l` has a different symlink target (manifest expects `l`)"
            },
        );
    }
    // A link that escapes on its own.
    let mut e = entries();
    e.push(Entry::symlink("up".into(), "../outside".into()));
    let mut b = body();
    b.push(Member::symlink("up", "../outside"));
    w.refused(
        "escaping-link",
        &archive(&with_manifest(&manifest(e), b)),
        5,
        "bad entry `up`: symlink target `../outside` leaves the release tree",
    );
    // A directory in the manifest that the archive makes a symlink.
    w.refused(
        "dir-as-link",
        &archive(&replace("d", vec![Member::symlink("d", &outside)])),
        5,
        "entry `d` is not a directory (manifest expects `d`)",
    );
    assert!(std::fs::read_dir(w.env.path("outside")).unwrap().next().is_none());
}

#[test]
fn hostile_hardlinks_devices_and_fifos() {
    let w = World::new();
    let mut hard = Member::raw(b"b.txt", EntryType::Link);
    hard.link = b"d/a.txt".to_vec();
    let mut hard_out = Member::raw(b"b.txt", EntryType::Link);
    hard_out.link = b"/etc/passwd".to_vec();
    let mut chr = Member::raw(b"b.txt", EntryType::Char);
    chr.device = Some((1, 3));
    let mut blk = Member::raw(b"b.txt", EntryType::Block);
    blk.device = Some((8, 0));
    let fifo = Member::raw(b"b.txt", EntryType::Fifo);
    let sparse = Member::raw(b"b.txt", EntryType::GNUSparse).content(b"bravo");
    for (case, m) in [
        ("hardlink", hard),
        ("hardlink-out", hard_out),
        ("char-device", chr),
        ("block-device", blk),
        ("fifo", fifo),
        ("gnu-sparse", sparse),
    ] {
        w.refused(
            case,
            &archive(&replace("b.txt", vec![m])),
            5,
            "entry `b.txt` is not a regular file (manifest expects `b.txt`)",
        );
    }
    // The manifest cannot even say it.
    let text = String::from_utf8(manifest(entries()))
        .unwrap()
        .replace(r#""path":"b.txt","kind":"file""#, r#""path":"b.txt","kind":"fifo""#);
    w.refused(
        "manifest-fifo",
        &archive(&with_manifest(text.as_bytes(), body())),
        5,
        "manifest is not valid: unknown variant `fifo`",
    );
}

#[test]
fn hostile_duplicate_paths() {
    let w = World::new();
    let mut e = entries();
    e.insert(1, file_entry("b.txt", b"bravo"));
    let mut b = body();
    b.insert(1, Member::file("b.txt", b"bravo"));
    w.refused(
        "duplicate-in-manifest",
        &archive(&with_manifest(&manifest(e), b)),
        5,
        "bad entry `b.txt`: duplicate entry",
    );
    w.refused(
        "duplicate-in-archive",
        &archive(&replace(
            "b.txt",
            vec![Member::file("b.txt", b"bravo"), Member::file("b.txt", b"evil!")],
        )),
        5,
        "entry `b.txt` is not the next manifest entry (manifest expects `d`)",
    );
    let mut last = honest();
    last.push(Member::symlink("l", "/etc"));
    w.refused(
        "duplicate-at-the-end",
        &archive(&last),
        5,
        "has an entry `l` that is not in its manifest",
    );
}

#[test]
fn hostile_manifest_that_disagrees_with_the_contents() {
    let w = World::new();
    w.refused(
        "same-size-other-bytes",
        &archive(&replace("b.txt", vec![Member::file("b.txt", b"BRAVO")])),
        5,
        "content of `b.txt` does not match its sha256",
    );
    w.refused(
        "longer",
        &archive(&replace("b.txt", vec![Member::file("b.txt", b"bravo!")])),
        5,
        "entry `b.txt` declares 6 bytes but the manifest says 5",
    );
    w.refused(
        "shorter",
        &archive(&replace("b.txt", vec![Member::file("b.txt", b"brav")])),
        5,
        "entry `b.txt` declares 4 bytes but the manifest says 5",
    );
    w.refused(
        "other-link-target",
        &archive(&replace("l", vec![Member::symlink("l", "b.txt")])),
        5,
        "entry `l` has a different symlink target",
    );
    w.refused(
        "file-as-dir",
        &archive(&replace("b.txt", vec![Member::dir("b.txt")])),
        5,
        "entry `b.txt` is not a regular file",
    );
    let mut missing = honest();
    missing.retain(|m| m.path != b"d/a.txt");
    w.refused(
        "missing-in-the-middle",
        &archive(&missing),
        5,
        "entry `l` is not the next manifest entry (manifest expects `d/a.txt`)",
    );
    let mut missing = honest();
    missing.pop();
    w.refused("missing-at-the-end", &archive(&missing), 5, "archive ends before `l`");
    let mut extra = honest();
    extra.push(Member::file("zz", b"extra"));
    w.refused(
        "extra-at-the-end",
        &archive(&extra),
        5,
        "has an entry `zz` that is not in its manifest",
    );
    w.refused(
        "extra-in-the-middle",
        &archive(&replace("d", vec![Member::file("c", b"extra"), Member::dir("d")])),
        5,
        "entry `c` is not the next manifest entry (manifest expects `d`)",
    );
}

#[test]
fn hostile_manifest_that_is_not_canonical_or_not_first() {
    let w = World::new();
    let canonical = String::from_utf8(manifest(entries())).unwrap();
    let value: serde_json::Value = serde_json::from_str(&canonical).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap() + "\n";
    let reordered = canonical.replace(
        r#"{"path":"d","kind":"dir","mode":"0755"}"#,
        r#"{"kind":"dir","path":"d","mode":"0755"}"#,
    );
    assert_ne!(reordered, canonical);
    let spaced = canonical.replacen(",", ", ", 1);
    let short_mode = canonical.replacen(r#""mode":"0644""#, r#""mode":"644""#, 1);
    let bare_sha = canonical.replacen("sha256:", "", 2);
    let no_newline = canonical.trim_end().to_string();
    for (case, text) in [
        ("pretty", pretty),
        ("reordered-keys", reordered),
        ("whitespace", spaced),
        ("short-mode", short_mode),
        ("bare-sha", bare_sha),
        ("no-newline", no_newline),
    ] {
        w.refused(
            case,
            &archive(&with_manifest(text.as_bytes(), body())),
            5,
            "manifest is not in canonical form",
        );
    }
    let unsorted = Manifest {
        version: 1,
        source_date_epoch: EPOCH,
        entries: vec![Entry::dir("d".into()), file_entry("b.txt", b"bravo")],
    };
    w.refused(
        "unsorted",
        &archive(&with_manifest(
            &unsorted.canonical_bytes(),
            vec![Member::dir("d"), Member::file("b.txt", b"bravo")],
        )),
        5,
        "bad entry `b.txt`: entries are not sorted",
    );
    w.refused(
        "unknown-field",
        &archive(&with_manifest(
            canonical
                .replacen(r#""entries""#, r#""extra":1,"entries""#, 1)
                .as_bytes(),
            body(),
        )),
        5,
        "manifest is not valid: unknown field `extra`",
    );
    w.refused(
        "version-2",
        &archive(&with_manifest(
            canonical.replacen(r#""version":1"#, r#""version":2"#, 1).as_bytes(),
            body(),
        )),
        5,
        "manifest version 2 is not supported",
    );

    // Manifest second, or absent.
    let mut second = body();
    second.insert(1, Member::file(".slipway/manifest.json", canonical.as_bytes()));
    w.refused(
        "manifest-second",
        &archive(&second),
        5,
        "does not start with `.slipway/manifest.json`; it is not a slipway bundle",
    );
    w.refused(
        "no-manifest",
        &archive(&body()),
        5,
        "does not start with `.slipway/manifest.json`",
    );
    w.refused("empty-tar", &archive(&[]), 5, "is corrupt or truncated: empty archive");
    let mut as_dir = honest();
    as_dir[1] = Member::dir(".slipway/manifest.json");
    w.refused(
        "manifest-as-dir",
        &archive(&as_dir),
        5,
        "does not start with `.slipway/manifest.json`",
    );
}

#[test]
fn hostile_truncated_zstd_frames() {
    let w = World::new();
    // A real export: a manifest frame, the body frames, the index frame.
    let data: Vec<u8> = (0..300_000u32)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    w.env.write("d/big.bin", &data);
    w.env.write("d/small.txt", "small");
    w.env.slipway().args(["build", "--dir", "d", "--name", "src"]).ok();
    let exported = w.env.path("src.tar.zst");
    w.env.slipway().args(["export", "src", "-o"]).arg(&exported).ok();
    let bytes = std::fs::read(&exported).unwrap();
    std::fs::remove_dir_all(&w.env.store).unwrap();

    let first_frame = zstd::zstd_safe::find_frame_compressed_size(&bytes).unwrap();
    let n = bytes.len();
    let mut cuts = vec![
        1,
        4,
        5,
        13,
        first_frame - 1,
        first_frame,
        first_frame + 1,
        first_frame + 7,
    ];
    cuts.extend([n / 3, n / 2, 2 * n / 3, n - 64, n - 5, n - 4, n - 1]);
    for cut in cuts {
        let out = w.refused(&format!("cut-{cut}"), &bytes[..cut], 5, "is corrupt or truncated");
        if cut == first_frame {
            out.stderr_has("archive ends before `big.bin`");
        }
    }
    // The whole file still imports: each cut was refused for being cut.
    let file = w.file("whole", &bytes);
    w.import(&file).ok();
}

#[test]
fn hostile_trailing_garbage() {
    let w = World::new();
    let honest = archive(&honest());
    let mut raw = honest.clone();
    raw.extend_from_slice(b"garbage\n");
    w.refused("raw-garbage", &raw, 5, "is corrupt or truncated");
    let mut zeros = honest.clone();
    zeros.extend_from_slice(&[0u8; 4096]);
    w.refused("raw-zeros", &zeros, 5, "is corrupt or truncated");
    let mut tarred = honest.clone();
    tarred.extend(zstd::encode_all(&b"not a tar header"[..], 3).unwrap());
    w.refused("garbage-in-the-stream", &tarred, 5, "data after the end of the archive");
    let mut member = honest.clone();
    member.extend(zstd::encode_all(&Member::file("late", b"late").header()[..], 3).unwrap());
    w.refused("member-after-the-end", &member, 5, "data after the end of the archive");

    // A tar is often padded with zeros to a 10 KiB record; that is accepted.
    let mut padded = honest.clone();
    padded.extend(rle_zeros(9 * 1024, 17));
    let file = w.file("padded", &padded);
    w.import(&file).ok();
}

#[test]
fn hostile_gigantic_declared_size_with_a_tiny_archive() {
    let w = World::new();
    // The manifest and the header both claim 1 TiB; the archive holds 5 bytes.
    let tib = 1u64 << 40;
    let mut e = entries();
    e[0].size = tib;
    w.refused_fast(
        "tib-declared",
        &archive(&with_manifest(
            &manifest(e.clone()),
            replace_in(body(), "b.txt", vec![Member::file("b.txt", b"bravo").size(tib)]),
        )),
        5,
        "is corrupt or truncated: `b.txt` is truncated",
        20,
    );
    // Only the manifest claims it.
    w.refused_fast(
        "tib-in-manifest-only",
        &archive(&with_manifest(&manifest(e), body())),
        5,
        "entry `b.txt` declares 5 bytes but the manifest says 1099511627776",
        20,
    );
    // The manifest member itself claims to be huge.
    let mut m = honest();
    m[1] = m[1].clone().size(200 * MIB);
    w.refused_fast("manifest-size-200mib", &archive(&m), 5, "manifest is not valid", 20);
    m[1] = m[1].clone().size(300 * MIB);
    w.refused_fast(
        "manifest-size-300mib",
        &archive(&m),
        5,
        "declares a manifest of 314572800 bytes, more than the limit of 268435456",
        20,
    );
    // One of exactly the limit is read to its end (it is only spaces, so
    // the parser asks for more at the last byte), not refused for its size.
    m[1] = Member::raw(b".slipway/manifest.json", EntryType::Regular).spaces(256 * MIB);
    w.refused_fast(
        "manifest-256mib-of-spaces",
        &archive(&m),
        5,
        "manifest is not valid: EOF while parsing a value at line 1 column 268435456",
        60,
    );
}

#[test]
fn hostile_zip_bombs_stop_at_the_declared_sizes() {
    let w = World::new();
    let small = zeros_manifest(5);
    let bomb = |members: Vec<Member>| archive(&with_manifest(&small, members));
    let b_txt = |m: Member| replace_in(body(), "b.txt", vec![m]);
    let zeros = Member::raw(b"b.txt", EntryType::Regular);
    let mut figures = Vec::new();

    // The manifest says 5 bytes, the tar header says 4 GiB and the archive
    // really holds them (highly compressible).
    figures.push(w.refused_fast(
        "header-4gib",
        &bomb(b_txt(zeros.clone().size(4 * GIB).zeros(4 * GIB))),
        5,
        "entry `b.txt` declares 4294967296 bytes but the manifest says 5",
        20,
    ));
    // The tar header agrees with the manifest; a pax `size` record says 4 GiB.
    let mut m = b_txt(zeros.clone().size(5).zeros(4 * GIB));
    m.insert(0, Member::pax(&[("size", "4294967296")]));
    figures.push(w.refused_fast(
        "pax-size-4gib",
        &bomb(m),
        5,
        "entry `b.txt`: its pax header says 4294967296 bytes, its tar header 5",
        20,
    ));
    // Extension headers (read whole before the member they describe).
    for (case, ty, what) in [
        ("long-name-4gib", EntryType::GNULongName, "GNU long name"),
        ("long-link-4gib", EntryType::GNULongLink, "GNU long link"),
        ("pax-header-4gib", EntryType::XHeader, "pax header"),
    ] {
        let mut m = b_txt(zeros.clone().size(5).zeros(5));
        m.insert(0, Member::raw(b"././@LongLink", ty).size(4 * GIB).zeros(4 * GIB));
        figures.push(w.refused_fast(
            case,
            &bomb(m),
            5,
            &format!("a {what} of 4294967296 bytes, more than the limit of"),
            20,
        ));
    }
    // Directories and symlinks carrying data.
    let mut m = b_txt(zeros.clone().size(5).zeros(5));
    m[1] = Member::dir("d").size(4 * GIB).zeros(4 * GIB);
    figures.push(w.refused_fast(
        "dir-with-4gib",
        &bomb(m),
        5,
        "entry `d` carries 4294967296 bytes of data (manifest expects `d`)",
        20,
    ));
    let mut m = b_txt(zeros.clone().size(5).zeros(5));
    m[3] = Member::symlink("l", "d").size(4 * GIB).zeros(4 * GIB);
    figures.push(w.refused_fast(
        "symlink-with-4gib",
        &bomb(m),
        5,
        "entry `l` carries 4294967296 bytes of data (manifest expects `l`)",
        20,
    ));
    // 4 GiB of zeros after the end of the archive.
    let mut z = Zst::default();
    for m in with_manifest(&small, b_txt(zeros.clone().size(5).zeros(5))) {
        z.member(&m);
    }
    z.zeros(4 * GIB, 17);
    figures.push(w.refused_fast(
        "trailing-zeros-4gib",
        &z.finish(),
        5,
        "more than 1048576 bytes of padding after the end of the archive",
        20,
    ));
    // A manifest member of 200 MiB of zeros.
    let mut m = with_manifest(&small, b_txt(zeros.clone().size(5).zeros(5)));
    m[1] = m[1].clone().size(200 * MIB).zeros(200 * MIB);
    figures.push(w.refused_fast("manifest-of-zeros", &archive(&m), 5, "manifest is not valid", 20));
    // A zstd frame asking for a 128 MiB window (what `zstd --long` or
    // `--ultra -22` makes): refused rather than allocated.
    let mut z = Zst::default();
    for m in with_manifest(&zeros_manifest(256 * MIB), body()) {
        if m.path == b"b.txt" {
            let m = zeros.clone().size(256 * MIB);
            z.tar(&m.header());
            z.zeros(256 * MIB, 27);
        } else {
            z.member(&m);
        }
    }
    z.tar(&[0u8; 1024]);
    figures.push(w.refused_fast(
        "window-128mib",
        &z.finish(),
        5,
        "was compressed with a zstd window larger than 32 MiB",
        20,
    ));
    eprintln!("bombs: {figures:?}");
}

#[test]
fn hostile_a_large_honest_file_of_zeros_is_content_not_a_bomb() {
    // 1 GiB of zeros that the manifest declares is legitimate content: it
    // imports within bounded memory, and the store keeps it compressed.
    let w = World::new();
    let n = GIB;
    let mut z = Zst::default();
    for m in with_manifest(&zeros_manifest(n), body()) {
        if m.path == b"b.txt" {
            z.tar(&Member::raw(b"b.txt", EntryType::Regular).size(n).header());
            z.zeros(n, 17);
        } else {
            z.member(&m);
        }
    }
    z.tar(&[0u8; 1024]);
    let file = w.file("gib-of-zeros", &z.finish());
    let (out, peak) = measured(w.import(&file), GIB);
    assert!(out.out.status.success(), "{out}");
    peak.assert_within("gib-of-zeros", RSS_LIMIT, Duration::from_secs(300));
    let stored: u64 = std::fs::read_dir(w.env.store.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        stored < 4 * MIB,
        "the store keeps the compressed bundle: {stored} bytes"
    );
    eprintln!("1 GiB of zeros: {peak:?}, stored {stored} bytes");
}

#[test]
fn hostile_a_manifest_of_two_million_entries_is_refused_in_bounded_memory() {
    // ~250 MB of canonical JSON (under the 256 MiB manifest limit), stored
    // in raw zstd blocks so making it costs no compression.
    let w = World::new();
    let empty = sha(b"");
    let mut json = String::with_capacity(260_000_000);
    json.push_str(r#"{"version":1,"source_date_epoch":1700000000,"entries":["#);
    for i in 0..2_000_000u32 {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#"{{"path":"f{i:07}","kind":"file","mode":"0644","sha256":"{empty}"}}"#
        ));
    }
    json.push_str("]}\n");
    let mut tar = Vec::new();
    for m in [
        Member::dir(".slipway"),
        Member::file(".slipway/manifest.json", json.as_bytes()),
    ] {
        tar.extend(m.header());
        if let Body::Bytes(b) = &m.body {
            tar.extend_from_slice(b);
            tar.extend(vec![0u8; (512 - b.len() % 512) % 512]);
        }
    }
    drop(json);
    let bytes = raw_frame(&tar);
    drop(tar);
    let file = w.file("two-million", &bytes);
    drop(bytes);
    let (out, peak) = measured(w.import(&file), 2 * GIB);
    assert_eq!(out.out.status.code(), Some(5), "{out}");
    out.one_line_error()
        .stderr_has("has more than 1000000 entries, the limit");
    peak.assert_within("two-million", 200 * MIB, Duration::from_secs(120));
    w.assert_nothing_stored("two-million");
    eprintln!("2M entries: {peak:?}");
}

#[test]
fn hostile_sidecars_are_bounded() {
    let w = World::new();
    let file = w.file("b", &archive(&honest()));
    let sidecar = w.env.path("in/b.tar.zst.meta.json");
    // A sidecar that never ends.
    std::os::unix::fs::symlink("/dev/zero", &sidecar).unwrap();
    let (out, peak) = measured(w.import(&file), GIB);
    assert_eq!(out.out.status.code(), Some(2), "{out}");
    out.one_line_error()
        .stderr_has("sidecar `")
        .stderr_has("is not a regular file");
    peak.assert_within("sidecar-dev-zero", RSS_LIMIT, Duration::from_secs(20));
    std::fs::remove_file(&sidecar).unwrap();
    // A fifo nobody writes to (would block forever).
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&sidecar)
            .status()
            .unwrap()
            .success()
    );
    let (out, _) = measured(w.import(&file), GIB);
    assert_eq!(out.out.status.code(), Some(2), "{out}");
    out.one_line_error().stderr_has("is not a regular file");
    std::fs::remove_file(&sidecar).unwrap();
    // A huge one.
    let big = std::fs::File::create(&sidecar).unwrap();
    big.set_len(GIB).unwrap();
    let (out, peak) = measured(w.import(&file), GIB);
    assert_eq!(out.out.status.code(), Some(2), "{out}");
    out.one_line_error()
        .stderr_has("is 1073741824 bytes, more than the limit of 1048576");
    peak.assert_within("sidecar-1gib", RSS_LIMIT, Duration::from_secs(20));
    w.assert_nothing_stored("sidecars");
}

#[test]
fn hostile_names_with_control_characters_keep_the_error_on_one_line() {
    let w = World::new();
    let forged = b"z\nerror: forged second line \x1b[31m";
    let mut extra = honest();
    extra.push(Member::raw(forged, EntryType::Regular));
    let out = w.refused("newline-extra", &archive(&extra), 5, "that is not in its manifest");
    assert!(!out.stderr().contains('\x1b'), "{out}");
    let out = w.refused(
        "newline-member",
        &archive(&replace("b.txt", vec![Member::raw(forged, EntryType::Regular)])),
        5,
        "is not the next manifest entry",
    );
    assert!(!out.stderr().contains('\x1b'), "{out}");
    // A header the tar reader cannot parse, whose error quotes the name.
    let mut bad = Member::raw(forged, EntryType::Regular).header();
    bad[124..136].copy_from_slice(b"zzzzzzzzzzz\0");
    let mut h = Header::from_byte_slice(&bad).clone();
    h.set_cksum();
    let mut z = Zst::default();
    for m in &honest()[..2] {
        z.member(m);
    }
    z.tar(h.as_bytes());
    z.tar(&[0u8; 1024]);
    w.refused("bad-size-field", &z.finish(), 5, "is corrupt or truncated");
    w.refused(
        "non-utf8-name",
        &archive(&replace("b.txt", vec![Member::raw(b"b\xff.txt", EntryType::Regular)])),
        5,
        "has an entry whose name is not UTF-8",
    );
}
