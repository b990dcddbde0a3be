//! `slipway host install -t TARGET [--path PATH]`: put this very slipway
//! binary on each host.
//!
//! Over SSH (the one command that runs anything but `serve` on a host, through
//! [`HostShell`]): `uname -sm` must match the platform this binary was built
//! for; the binary is streamed to `PATH.slipway-tmp-*` beside its
//! destination, its sha256 on the host must equal the local one, and it must
//! run (`--version`) before it is renamed over PATH — so a bad copy never
//! replaces a working one, and a running `serve` keeps its old file. A
//! local-path host gets the same, locally. Finally the target's `remote_bin`
//! is run to tell whether slipway will find this copy.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::reach::ssh_fix;
use crate::Context;
use crate::cli::HostInstallArgs;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Exit, Result, describe_io};
use crate::fleet::{DEFAULT_PARALLEL, select_hosts};
use crate::fs;
use crate::protocol::{VERSION, refusal};
use crate::remote::ssh::HostShell;
use crate::remote::{HostSpec, Location};

/// This binary: where it is, its sha256 and size.
struct Binary {
    path: PathBuf,
    sha256: Digest,
    size: u64,
}

/// How an installation on one host ended (`--json`: lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    /// Copied and verified.
    Installed,
    /// PATH already held this very binary: nothing copied.
    Unchanged,
    /// The host's OS or architecture differs: nothing copied.
    Mismatch,
    /// Something failed: nothing replaced.
    Failed,
}

/// One element of `host install --json` (a stable schema: field order is key order).
#[derive(Debug, Serialize)]
struct Installed {
    host: String,
    result: Outcome,
    path: String,
    sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    /// What `PATH --version` printed on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    /// The exit code the error decides; not printed.
    #[serde(skip)]
    exit: Exit,
}

/// # Errors
/// Usage error for a bad `--path`; when any host did not get the binary, an
/// error listing them (exit 5 when a copy did not match its sha256, else 1).
pub fn install(args: &HostInstallArgs, ctx: &Context) -> Result<()> {
    check_path(&args.path)?;
    let target = crate::commands::load_target(ctx, &args.target.target)?;
    let hosts = select_hosts(&target, &args.target.hosts)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::other(format!("cannot find this slipway executable: {}", describe_io(&e))))?;
    let bin = hash_binary(&exe)?;
    ctx.out.info(&format!(
        "installing slipway {VERSION} ({}, {}, sha256 {}) as {} on {} host(s)",
        platform(),
        crate::output::human_bytes(bin.size),
        &bin.sha256.hex()[..12],
        args.path,
        hosts.len()
    ));
    let parallel = target.config.parallel.unwrap_or(DEFAULT_PARALLEL);
    let results = crate::parallel::map(hosts.iter().collect(), parallel, |h| install_one(h, &args.path, &bin));
    if ctx.out.json {
        ctx.out.json_value(&results);
    } else {
        for r in &results {
            print_text(ctx, r);
        }
    }
    let failed: Vec<&Installed> = results
        .iter()
        .filter(|r| matches!(r.result, Outcome::Failed | Outcome::Mismatch))
        .collect();
    let Some(first) = failed.first() else {
        return Ok(());
    };
    let names: Vec<&str> = failed.iter().map(|r| r.host.as_str()).collect();
    Err(Error::with_exit(
        first.exit,
        format!(
            "slipway was not installed on {} of {} host(s): {} (see the fixes above)",
            failed.len(),
            results.len(),
            names.join(", ")
        ),
    ))
}

fn print_text(ctx: &Context, r: &Installed) {
    let h = &r.host;
    let on = match (&r.os, &r.arch) {
        (Some(os), Some(arch)) => format!(", {os} {arch}"),
        _ => String::new(),
    };
    match r.result {
        Outcome::Installed => ctx.out.data(&format!(
            "{h}: installed {} ({}{on}, sha256 {} verified)",
            r.path,
            r.version.as_deref().unwrap_or("?"),
            &r.sha256[..12]
        )),
        Outcome::Unchanged => ctx.out.data(&format!(
            "{h}: {} is already this slipway ({}{on}, sha256 {}); nothing copied",
            r.path,
            r.version.as_deref().unwrap_or("?"),
            &r.sha256[..12]
        )),
        Outcome::Mismatch | Outcome::Failed => {
            ctx.out
                .data(&format!("{h}: not installed: {}", r.error.as_deref().unwrap_or("?")));
        }
    }
    if let Some(n) = &r.note {
        ctx.out.data(&format!("{h}: note: {n}"));
    }
    if let Some(f) = &r.fix {
        ctx.out.data(&format!("{h}: fix: {f}"));
    }
}

/// `--path` must be absolute or under `~/`, and name a file.
fn check_path(path: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::usage(format!(
            "`--path {}` {why}; give an absolute path or one under `~/`, such as ~/.local/bin/slipway",
            path.escape_debug()
        ))
    };
    if !(path.starts_with('/') || path.starts_with("~/")) {
        return Err(bad("is neither absolute nor under `~/`"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("holds control characters"));
    }
    match path.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() && name != "." && name != ".." => Ok(()),
        _ => Err(bad("does not name a file")),
    }
}

fn hash_binary(exe: &Path) -> Result<Binary> {
    let mut r = HashingReader::new(fs::open(exe)?);
    std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| Error::io("read", exe, e))?;
    let (_, sha256, size) = r.into_parts();
    Ok(Binary {
        path: exe.to_path_buf(),
        sha256,
        size,
    })
}

/// The platform this binary was built for, as Rust names it (`linux x86_64`).
fn platform() -> String {
    format!("{} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Whether `uname -s` and `uname -m` of a host name the platform this binary was built for.
fn platform_matches(os: &str, arch: &str) -> bool {
    let os_ok = match std::env::consts::OS {
        "linux" => os == "Linux",
        "macos" => os == "Darwin",
        other => os.eq_ignore_ascii_case(other),
    };
    let arch_ok = match std::env::consts::ARCH {
        "x86_64" => matches!(arch, "x86_64" | "amd64"),
        "aarch64" => matches!(arch, "aarch64" | "arm64"),
        "x86" => matches!(arch, "i386" | "i486" | "i586" | "i686"),
        "arm" => arch.starts_with("arm"),
        other => arch == other,
    };
    os_ok && arch_ok
}

/// What to do on a host this binary cannot run on.
fn from_source_fix(spec: &HostSpec) -> String {
    format!(
        "install it there from source instead: in a checkout of slipway on the host, run `cargo install --locked --path .` (it installs ~/.cargo/bin/slipway), then set the target's `remote_bin = \"~/.cargo/bin/slipway\"` unless `{}` already finds it",
        spec.remote_bin
    )
}

/// `s` quoted for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `path` for the remote shell: quoted, with a leading `~` as `"$HOME"`.
fn remote_path(path: &str) -> String {
    if path == "~" {
        return "\"$HOME\"".into();
    }
    match path.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", sh_quote(rest)),
        None => sh_quote(path),
    }
}

/// The directory of `path` (validated by [`check_path`]).
fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((dir, _)) => dir,
        None => ".",
    }
}

/// The first word of `sha256sum`/`shasum` output, when it is a sha256.
fn parse_sha(line: &str) -> Option<Digest> {
    line.split_whitespace().next().and_then(Digest::from_hex)
}

fn install_one(spec: &HostSpec, path: &str, bin: &Binary) -> Installed {
    let mut r = Installed {
        host: spec.label.clone(),
        result: Outcome::Failed,
        path: path.to_string(),
        sha256: bin.sha256.hex(),
        os: None,
        arch: None,
        version: None,
        note: None,
        error: None,
        fix: None,
        exit: Exit::Error,
    };
    let outcome = match &spec.location {
        Location::Ssh { .. } => over_ssh(spec, path, bin, &mut r),
        Location::Local { .. } => locally(path, bin, &mut r),
    };
    match outcome {
        Ok(o) => r.result = o,
        Err(e) => {
            r.exit = e.exit();
            r.error = Some(e.without_host().to_string());
        }
    }
    r
}

fn over_ssh(spec: &HostSpec, path: &str, bin: &Binary, r: &mut Installed) -> Result<Outcome> {
    let mut sh = match HostShell::open(spec) {
        Ok(sh) => sh,
        Err(e) => {
            r.fix = Some(ssh_fix(spec));
            return Err(e);
        }
    };
    let dest = remote_path(path);
    let probe = sh.run(
        &format!("uname -sm && {{ sha256sum -- {dest} || shasum -a 256 -- {dest} || true; }} 2>/dev/null"),
        None,
    )?;
    let text = String::from_utf8_lossy(&probe.stdout).into_owned();
    let mut lines = text.lines();
    let uname = lines.next().unwrap_or_default().trim().to_string();
    let (os, arch) = match (probe.code, uname.split_once(' ')) {
        (Some(0), Some((os, arch))) if !os.is_empty() && !arch.contains(' ') => (os.to_string(), arch.to_string()),
        _ => {
            let tail = probe.stderr_tail();
            if matches!(refusal(&probe.stdout), Some(Error::Restricted(_))) {
                r.fix = Some("this key is restricted to `slipway serve` (a forced command): install with an unrestricted account, or copy the binary there yourself".into());
            }
            return Err(Error::other(format!(
                "cannot run `uname -sm` on the host: {}",
                if tail.is_empty() {
                    "it printed nothing usable"
                } else {
                    tail
                }
            )));
        }
    };
    r.os = Some(os.clone());
    r.arch = Some(arch.clone());
    if !platform_matches(&os, &arch) {
        r.fix = Some(from_source_fix(spec));
        r.result = Outcome::Mismatch;
        return Err(Error::other(format!(
            "the host is {os} {arch}, but this slipway is built for {}",
            platform()
        )));
    }

    let already = lines.next().and_then(parse_sha) == Some(bin.sha256);
    let outcome = if already {
        Outcome::Unchanged
    } else {
        copy_over_ssh(&mut sh, spec, path, bin, r)?;
        Outcome::Installed
    };
    let version = sh.run(&format!("{dest} --version"), None)?;
    r.version = Some(String::from_utf8_lossy(&version.stdout).trim().to_string());
    r.note = remote_bin_note(&mut sh, spec, path);
    Ok(outcome)
}

/// Stream the binary to a temporary file beside PATH, verify its sha256 and
/// that it runs there, then rename it over PATH. On any failure the temporary
/// file is removed and PATH is untouched.
fn copy_over_ssh(sh: &mut HostShell, spec: &HostSpec, path: &str, bin: &Binary, r: &mut Installed) -> Result<()> {
    let dest = remote_path(path);
    let tmp_path = format!("{path}.slipway-tmp-{}", fs::unique_suffix());
    let tmp = remote_path(&tmp_path);
    let dir = remote_path(parent(path));
    let mut file = fs::open(&bin.path)?;
    let copy = sh.run(
        &format!(
            "set -e; umask 022; mkdir -p -- {dir}; cat > {tmp}; chmod 755 -- {tmp}; {{ sha256sum -- {tmp} 2>/dev/null || shasum -a 256 -- {tmp}; }}"
        ),
        Some(&mut file as &mut dyn Read),
    );
    let cleanup = |sh: &mut HostShell| {
        let _ = sh.run(&format!("rm -f -- {tmp}"), None);
    };
    let copy = match copy {
        Ok(c) => c,
        Err(e) => {
            cleanup(sh);
            return Err(e);
        }
    };
    if copy.code != Some(0) {
        cleanup(sh);
        r.fix = Some(format!(
            "check that the deploy user may write to {} on the host, or choose another `--path`",
            parent(path)
        ));
        return Err(Error::other(format!(
            "cannot write `{tmp_path}` on the host: {}",
            copy.stderr_tail()
        )));
    }
    let theirs = String::from_utf8_lossy(&copy.stdout).lines().next().and_then(parse_sha);
    if theirs != Some(bin.sha256) {
        cleanup(sh);
        let got = theirs.map_or_else(|| "no readable sha256".to_string(), |d| format!("sha256 {}", d.hex()));
        r.fix = Some(format!(
            "run `slipway host install -t {}` again; if it persists, check the host's disk",
            spec.target
        ));
        return Err(Error::integrity(format!(
            "the copy `{tmp_path}` has {got}, but this slipway has sha256 {}; nothing was installed",
            bin.sha256.hex()
        )));
    }
    let runs = sh.run(&format!("{tmp} --version"), None)?;
    let said = String::from_utf8_lossy(&runs.stdout).trim().to_string();
    if runs.code != Some(0) || said != format!("slipway {VERSION}") {
        cleanup(sh);
        r.fix = Some(from_source_fix(spec));
        let why = if runs.stderr_tail().is_empty() {
            format!("it printed `{said}`")
        } else {
            runs.stderr_tail().to_string()
        };
        return Err(Error::other(format!(
            "the copy does not run on the host ({why}); nothing was installed"
        )));
    }
    let moved = sh.run(&format!("mv -f -- {tmp} {dest}"), None)?;
    if moved.code != Some(0) {
        cleanup(sh);
        return Err(Error::other(format!(
            "cannot rename `{tmp_path}` to `{path}` on the host: {}",
            moved.stderr_tail()
        )));
    }
    Ok(())
}

/// A note when the target's `remote_bin` does not run this version (so
/// slipway commands would not use the copy just installed).
fn remote_bin_note(sh: &mut HostShell, spec: &HostSpec, path: &str) -> Option<String> {
    let out = sh.run(&format!("{} --version", spec.remote_bin), None).ok()?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.code == Some(0) && said == format!("slipway {VERSION}") {
        return None;
    }
    let found = if out.code == Some(127) {
        "is not found there".to_string()
    } else if said.is_empty() {
        format!("fails there ({})", out.stderr_tail())
    } else {
        format!("runs `{said}` there")
    };
    Some(format!(
        "`{}` (the target's `remote_bin`) {found}: set `remote_bin = \"{path}\"` for target `{}` in slipway.toml (or SLIPWAY_REMOTE_BIN={path}) so slipway runs this copy",
        spec.remote_bin, spec.target
    ))
}

/// A local-path host: the same steps on this machine.
fn locally(path: &str, bin: &Binary, r: &mut Installed) -> Result<Outcome> {
    let dest = match path.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(rest),
            None => return Err(Error::usage(format!("`--path {path}`: HOME is not set"))),
        },
        None => PathBuf::from(path),
    };
    let uname = rustix::system::uname();
    r.os = Some(uname.sysname().to_string_lossy().into_owned());
    r.arch = Some(uname.machine().to_string_lossy().into_owned());
    let already = match fs::symlink_metadata_optional(&dest)? {
        Some(m) if m.is_file() => hash_binary(&dest)?.sha256 == bin.sha256,
        _ => false,
    };
    if !already {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("/"),
        };
        fs::create_dir_all(&dir)?;
        let mut tmp = fs::temp_file_in(&dir)?;
        std::io::copy(&mut fs::open(&bin.path)?, &mut tmp).map_err(|e| Error::io("write", tmp.path(), e))?;
        tmp.flush().map_err(|e| Error::io("write", tmp.path(), e))?;
        fs::set_mode(tmp.path(), 0o755)?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", tmp.path(), e))?;
        let copied = hash_binary(tmp.path())?.sha256;
        if copied != bin.sha256 {
            return Err(Error::integrity(format!(
                "the copy `{}` has sha256 {}, but this slipway has sha256 {}; nothing was installed",
                tmp.path().display(),
                copied.hex(),
                bin.sha256.hex()
            )));
        }
        tmp.persist(&dest)
            .map_err(|e| Error::io("rename into", &dest, e.error))?;
        fs::fsync_dir(&dir)?;
    }
    let out = std::process::Command::new(&dest)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io("run", &dest, e))?;
    r.version = Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
    Ok(if already {
        Outcome::Unchanged
    } else {
        Outcome::Installed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_remote_shell() {
        assert_eq!(remote_path("~/.local/bin/slipway"), "\"$HOME\"/'.local/bin/slipway'");
        assert_eq!(remote_path("/opt/it's/slipway"), r"'/opt/it'\''s/slipway'");
        assert_eq!(remote_path("~"), "\"$HOME\"");
        assert_eq!(parent("~/.local/bin/slipway"), "~/.local/bin");
        assert_eq!(parent("~/slipway"), "~");
        assert_eq!(parent("/slipway"), "/");
        check_path("~/.local/bin/slipway").unwrap();
        check_path("/usr/local/bin/slipway").unwrap();
        for bad in [
            "slipway",
            "bin/slipway",
            "~/bin/",
            "/a/..",
            "~alice/bin/slipway",
            "/a/b\n",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn this_platform_matches_its_own_uname() {
        let u = rustix::system::uname();
        assert!(platform_matches(
            &u.sysname().to_string_lossy(),
            &u.machine().to_string_lossy()
        ));
        assert!(!platform_matches("Plan9", "mips"));
    }

    #[test]
    fn sha_lines() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(parse_sha(&format!("{hex}  /x")), Some(Digest::of(b"")));
        assert_eq!(parse_sha("sha256sum: not found"), None);
    }
}
