//! A newcomer's first commands — `init`, `completions`, `man` — need no
//! store, no home directory and no host, write files others can read, and
//! answer first mistakes in one line that says what to do.

use std::os::unix::fs::PermissionsExt;

use crate::support::Env;

/// `slipway` without a store or a home: these commands must not need either.
fn bare(env: &Env) -> crate::support::Cmd {
    let mut cmd = env.slipway();
    cmd.cmd
        .env_remove("SLIPWAY_STORE")
        .env_remove("HOME")
        .env_remove("XDG_DATA_HOME");
    cmd
}

#[test]
fn init_writes_a_commented_config_that_loads_and_never_overwrites() {
    let env = Env::new();
    let out = bare(&env).arg("init").ok();
    assert_eq!(out.line(), "slipway.toml", "{out}");
    out.stderr_has("wrote slipway.toml; next:")
        .stderr_has("replace the example `hosts` and `root`")
        .stderr_has("slipway host check -t production");
    let path = env.path("slipway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\n[build]\n") && text.contains("\n# command = ") && text.contains("\n[targets.production]\n")
    );
    assert!(text.contains("# require_healthy_on = ") && text.contains("# hook_timeout = "));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);

    // It loads: an unknown target lists the file's targets (no config error).
    env.slipway()
        .args(["status", "-t", "staging"])
        .fails(2)
        .one_line_error()
        .stderr_has("unknown target `staging`: `slipway.toml` defines `production`");
    // `build --dir` reads `[build]` from it too.
    env.write("dist/index.html", "hi");
    env.slipway().args(["build", "--dir", "dist", "--name", "v1"]).ok();

    std::fs::write(&path, "# mine\n").unwrap();
    bare(&env)
        .arg("init")
        .fails(1)
        .one_line_error()
        .stderr_has("`slipway.toml` already exists; edit it, or move it away to start over");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");

    // --config FILE is where it writes, and what it tells you to pass on.
    std::fs::create_dir(env.path("deploy")).unwrap();
    let out = bare(&env).args(["--config", "deploy/slipway.toml", "init"]).ok();
    assert_eq!(out.line(), "deploy/slipway.toml");
    out.stderr_has("slipway --config deploy/slipway.toml host check -t production");
    assert_eq!(std::fs::read_to_string(env.path("deploy/slipway.toml")).unwrap(), text);
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let env = Env::new();
    let bash = bare(&env).args(["completions", "bash"]).ok().stdout();
    assert!(bash.contains("_slipway()") && bash.contains("install"), "{bash}");
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(env.write("slipway.bash", &bash))
        .output()
        .expect("run bash -n");
    assert!(check.status.success(), "bash -n: {check:?}");
    let zsh = bare(&env).args(["completions", "zsh"]).ok().stdout();
    assert!(zsh.starts_with("#compdef slipway"), "{zsh}");
    let fish = bare(&env).args(["completions", "fish"]).ok().stdout();
    assert!(fish.contains("complete -c slipway"), "{fish}");
    bare(&env)
        .args(["completions", "tcsh"])
        .fails(2)
        .stderr_has("invalid value 'tcsh'");
}

#[test]
fn man_prints_the_page_or_writes_one_per_command() {
    let env = Env::new();
    let page = bare(&env).arg("man").ok().stdout();
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(
        page.contains(".TH slipway 1") && page.contains("slipway\\-deploy"),
        "{page}"
    );

    let out = bare(&env).args(["man", "--dir", "man1"]).ok();
    let listed: Vec<String> = out.stdout().lines().map(str::to_string).collect();
    for name in [
        "slipway.1",
        "slipway-build.1",
        "slipway-host.1",
        "slipway-host-check.1",
        "slipway-man.1",
    ] {
        let p = env.path("man1").join(name);
        assert!(p.is_file(), "{name} missing: {out}");
        assert!(
            listed.contains(&p.display().to_string()) || listed.contains(&format!("man1/{name}")),
            "{out}"
        );
    }
    // MANPATH needs the directory above `man1`, not `man1` itself.
    let parent = std::fs::canonicalize(env.dir.path()).unwrap();
    out.stderr_has(&format!(
        " man pages into man1; `man slipway` finds them when `{}` (the parent of `man1`) is on MANPATH\n",
        parent.display()
    ));
    let check = std::fs::read_to_string(env.path("man1/slipway-host-check.1")).unwrap();
    assert!(check.contains(".TH slipway-host-check 1"), "{check}");
    assert!(!env.path("man1/slipway-help.1").exists());
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Files written for the user (an export and its sidecar, man pages,
/// `slipway.toml`) are 0644 minus the umask, like any other program's, not
/// 0600 like slipway's scratch files.
#[test]
fn exports_man_pages_and_init_are_readable_by_others_minus_the_umask() {
    let env = Env::new();
    env.write("d/index.html", "hi");
    env.slipway().args(["build", "--dir", "d", "--name", "v1"]).ok();
    for (mask, want) in [(0o022, 0o644), (0o027, 0o640)] {
        let file = env.path(&format!("out-{mask:03o}/v1.tar.zst"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        env.slipway().args(["export", "v1", "-o"]).arg(&file).umask(mask).ok();
        assert_eq!(mode(&file), want, "export under umask {mask:03o}");
        assert_eq!(mode(&env.path(&format!("out-{mask:03o}/v1.tar.zst.meta.json"))), want);

        let man = env.path(&format!("man-{mask:03o}/man1"));
        bare(&env).args(["man", "--dir"]).arg(&man).umask(mask).ok();
        assert_eq!(mode(&man.join("slipway.1")), want, "man page under umask {mask:03o}");
        assert_eq!(mode(&man.join("slipway-host-check.1")), want);

        let config = env.path(&format!("init-{mask:03o}.toml"));
        bare(&env).arg("--config").arg(&config).arg("init").umask(mask).ok();
        assert_eq!(mode(&config), want, "slipway.toml under umask {mask:03o}");
    }
}

/// `SLIPWAY_STORE=` (set but empty) means unset, as an empty
/// `XDG_DATA_HOME` does: the default store, not a usage error.
#[test]
fn an_empty_slipway_store_means_the_default_store() {
    let env = Env::new();
    env.write("d/index.html", "hi");
    let home = env.path("home");
    let with_empty_store = |args: &[&str]| {
        let mut cmd = env.slipway().env("SLIPWAY_STORE", "").env("HOME", &home).args(args);
        cmd.cmd.env_remove("XDG_DATA_HOME");
        cmd
    };
    let id = with_empty_store(&["build", "--dir", "d", "--name", "v1"]).ok().line();
    assert!(home.join(".local/share/slipway/names/v1.json").is_file());
    let listed = with_empty_store(&["list", "--json"]).ok().json();
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    // `--store` still wins.
    let elsewhere = env.path("elsewhere");
    with_empty_store(&["list"]).arg("--store").arg(&elsewhere).ok();
    assert!(elsewhere.join("names").is_dir() && !elsewhere.join("names/v1.json").exists());
}

/// Errors read well: a newcomer's first mistakes each get one
/// line saying what happened, where, and what to do next, with the
/// documented exit code.
#[test]
fn a_newcomers_mistakes_get_one_line_errors_that_say_what_to_do() {
    let env = Env::new();
    env.write("d/index.html", "hi");
    env.slipway().args(["build", "--dir", "d", "--name", "v1"]).ok();
    let host = env.path("host");
    let h = host.to_str().unwrap();
    env.slipway().args(["push", "v1", "-t", h]).ok();
    env.write(
        "bad.toml",
        "[targets.prod]\nhosts = [\"app1\"]\nroot = \"/srv/app\"\n\n[targets.prod.hooks]\nhook_timeout = \"99999999999999999999h\"\n",
    );
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["build", "--dir", "nope", "--name", "v2"],
            2,
            "`--dir nope` does not exist".into(),
        ),
        (
            vec!["build", "--dir", "d/index.html", "--name", "v2"],
            2,
            "`--dir d/index.html` is not a directory".into(),
        ),
        (
            vec!["import", "v1.tar.zst"],
            2,
            "bundle file `v1.tar.zst` does not exist".into(),
        ),
        (
            vec!["import", "d"],
            2,
            "`d` is a directory; pass a bundle file (`slipway export` writes one)".into(),
        ),
        (
            vec!["export", "v1", "-o", "out/v1.tar.zst"],
            1,
            "cannot create `out/v1.tar.zst`: no such file or directory".into(),
        ),
        (
            vec!["push", "v1", "-t", "production"],
            2,
            "unknown target `production`: there is no `slipway.toml` here (run `slipway init` to write one, \
             or pass `--config FILE`); or give ssh://[user@]host[:port]/abs/root or a local path"
                .into(),
        ),
        (
            vec!["push", "v1", "-t", ""],
            2,
            "the target is empty; give a target name from `slipway.toml`, ssh://[user@]host[:port]/abs/root \
             or a local path"
                .into(),
        ),
        (
            vec!["--config", "bad.toml", "status", "-t", "prod"],
            2,
            "`bad.toml`: `99999999999999999999h` is too long a duration for `targets.prod.hooks.hook_timeout` \
             (try `30s`, `2m`)"
                .into(),
        ),
        (
            vec!["rollback", "-t", h, "--to", "v9"],
            1,
            format!(
                "{h}: release `v9` is not on this host (did you mean `v1`?); `slipway status -t {h}` lists the releases there"
            ),
        ),
        (
            vec!["provenance", "-t", h],
            1,
            format!("nothing is current on `{h}` yet; name a release: `slipway provenance REL -t {h}`"),
        ),
    ];
    for (args, code, msg) in cases {
        let out = env.slipway().args(&args).fails(code);
        assert_eq!(out.stderr(), format!("error: {msg}\n"), "{out}");
    }
    // A root that does not exist (a typo?) is said to be one, and is not created.
    let empty = env.path("empty-host");
    let out = env.slipway().args(["verify", "-t"]).arg(&empty).fails(1);
    out.one_line_error().stderr_has(&format!(
        "error: {0}: `{0}` is not a slipway root yet (it does not exist, or has no `.slipway/`): `verify` has nothing \
         to work on, and nothing was created; the first `slipway push` or `deploy` to it creates it (is the target's \
         root spelled right?)\n",
        empty.display()
    ));
    assert!(!empty.exists());
    // A root with nothing in it yet has nothing to verify.
    std::fs::create_dir_all(empty.join(".slipway")).unwrap();
    let out = env.slipway().args(["verify", "-t"]).arg(&empty).ok();
    assert_eq!(
        out.stdout(),
        format!("{}: ok (no releases to verify)\n", empty.display())
    );
}

/// `scripts/demo.sh` prints commands a reader can paste: every `$ ` line
/// names a real program or a shell builtin (never one of the script's own
/// functions), and the read-only ones at the end, pasted into a fresh shell
/// after the `export` and the last `cd` it printed before them, print what
/// the demo showed.
#[test]
fn the_demo_prints_commands_a_reader_can_paste() {
    let env = Env::new();
    let path = std::env::var("PATH").unwrap_or_default();
    let demo = std::process::Command::new(crate::support::docs::checkout().join("scripts/demo.sh"))
        .env_clear()
        .env("PATH", &path)
        .env("HOME", env.path(""))
        .env("USER", "tester")
        .env("TMPDIR", env.path(""))
        .env("SLIPWAY_BIN", crate::support::bin())
        .env("DEMO_KEEP", "1")
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&demo.stdout).into_owned();
    assert!(
        demo.status.success(),
        "demo.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let commands: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.strip_prefix("$ ").map(|c| (i, c)))
        .collect();
    let export = commands
        .iter()
        .find(|(_, c)| c.starts_with("export PATH="))
        .unwrap_or_else(|| panic!("the demo prints no `export PATH=…` line to set a shell up:\n{stdout}"))
        .1;
    // A fresh shell, set up as printed: what is each command's program?
    let shell = |script: &str| {
        let out = std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", script])
            .env_clear()
            .env("PATH", &path)
            .env("HOME", env.path(""))
            .env("NO_COLOR", "1")
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (_, c) in &commands {
        let program = c.split_whitespace().next().unwrap_or_default();
        let kind = shell(&format!("{export}\ntype -t {program} || echo missing"));
        assert!(
            kind.trim() == "file" || kind.trim() == "builtin",
            "the demo prints `$ {c}`, but `{program}` is {} in a reader's shell",
            kind.trim()
        );
    }
    // Paste the last read-only commands and compare what they print.
    for wanted in ["slipway history ", "slipway verify -t ", "slipway prune -t "] {
        let &(i, c) = commands
            .iter()
            .rev()
            .find(|(_, c)| c.starts_with(wanted))
            .unwrap_or_else(|| panic!("the demo no longer prints `{wanted}…`:\n{stdout}"));
        let cd = commands
            .iter()
            .rev()
            .find(|(j, c)| *j < i && c.starts_with("cd "))
            .map_or("", |(_, c)| *c);
        let shown: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| !l.starts_with("$ ") && !l.is_empty())
            .copied()
            .collect();
        let pasted = shell(&format!("{export}\n{cd}\n{c}"));
        assert_eq!(
            pasted.lines().collect::<Vec<_>>(),
            shown,
            "`$ {c}` pasted after `$ {export}` and `$ {cd}`"
        );
    }
}
