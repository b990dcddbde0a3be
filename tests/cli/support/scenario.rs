//! [`Scenario`]: "a repository with these tags, these hosts over sshd or on
//! local paths, this `slipway.toml`" in one expression, so that a test opens
//! with the scenario it checks and goes on with the user's commands.
//!
//! ```ignore
//! let s = Scenario::new()
//!     .tags(["v1", "v2"])
//!     .ssh_hosts(3)
//!     .toml("[targets.prod.hooks]\nhealth = \"test -f index.html\"\n")
//!     .start();
//! s.slipway().args(["deploy", "v2", "-t", "prod"]).ok();
//! assert_eq!(s.current(2).as_deref(), Some("v2"));
//! ```
//!
//! Invariant: the hosts are the hosts of target [`TARGET`], in the order
//! they were asked for, each with a root of its own under the test
//! directory; the scene's commands reach ssh hosts only through the scene's
//! own ssh config; and the servers stop before the test directory goes.

use std::path::{Path, PathBuf};

use super::sshd::{self, Sshd};
use super::{Cmd, Env, Repo};

/// The target every scene's `slipway.toml` defines over its hosts.
pub const TARGET: &str = "prod";

/// How a host is reached.
enum Reach {
    Local,
    Ssh,
}

/// What a test asks for; [`Scenario::start`] makes it.
#[derive(Default)]
pub struct Scenario {
    tags: Vec<String>,
    hosts: Vec<Reach>,
    toml: String,
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario::default()
    }

    /// Tags of the repository, in order: one commit each, whose
    /// `index.html` names the tag and whose `static/app.js` is the same in
    /// every tag; each is built into the store (`slipway build TAG`).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.tags.extend(tags.into_iter().map(|t| t.as_ref().to_string()));
        self
    }

    /// `n` more hosts on local paths (the same `serve`, without SSH).
    pub fn local_hosts(mut self, n: usize) -> Self {
        self.hosts.extend((0..n).map(|_| Reach::Local));
        self
    }

    /// `n` more hosts, each a throwaway sshd on 127.0.0.1 (an `ssh://` entry).
    pub fn ssh_hosts(mut self, n: usize) -> Self {
        self.hosts.extend((0..n).map(|_| Reach::Ssh));
        self
    }

    /// Lines of `slipway.toml` after `[targets.prod]` and its `hosts`: more
    /// keys of that target, then other tables. Without hosts, the whole file.
    pub fn toml(mut self, extra: &str) -> Self {
        self.toml.push_str(extra);
        self
    }

    /// Start the servers, write `slipway.toml`, make and build the tags.
    pub fn start(self) -> Scene {
        let env = Env::new();
        let hosts: Vec<Host> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, reach)| {
                let root = env.path(&format!("host{}", i + 1));
                let (label, sshd) = match reach {
                    Reach::Local => (root.display().to_string(), None),
                    Reach::Ssh => {
                        let sshd = Sshd::start();
                        (sshd.url(&root), Some(sshd))
                    }
                };
                Host { root, label, sshd }
            })
            .collect();
        let servers: Vec<&Sshd> = hosts.iter().filter_map(|h| h.sshd.as_ref()).collect();
        let ssh_config = (!servers.is_empty()).then(|| sshd::write_ssh_config(&env.path("ssh_config"), &servers));
        if !hosts.is_empty() {
            let labels: Vec<String> = hosts.iter().map(|h| format!("\"{}\"", h.label)).collect();
            env.write(
                "slipway.toml",
                format!("[targets.{TARGET}]\nhosts = [{}]\n{}", labels.join(", "), self.toml),
            );
        } else if !self.toml.is_empty() {
            env.write("slipway.toml", &self.toml);
        }
        let repo = env.repo("app");
        let scene = Scene {
            hosts,
            env,
            repo,
            ssh_config,
        };
        for tag in &self.tags {
            scene.tag(tag);
        }
        scene
    }
}

/// One host of a scene.
pub struct Host {
    /// Its root, on this machine's file system.
    pub root: PathBuf,
    /// The host as written in `slipway.toml`: the root, or an `ssh://` URL.
    pub label: String,
    sshd: Option<Sshd>,
}

/// A started [`Scenario`]: the store, the repository, the hosts.
pub struct Scene {
    // Dropped first: the servers stop before the directory they serve goes.
    hosts: Vec<Host>,
    pub env: Env,
    pub repo: Repo,
    ssh_config: Option<PathBuf>,
}

impl Scene {
    /// The binary, in the test directory (where `slipway.toml` is), reaching
    /// ssh hosts through the scene's ssh config.
    pub fn slipway(&self) -> Cmd {
        match &self.ssh_config {
            Some(config) => self.env.slipway().via_ssh(config),
            None => self.env.slipway(),
        }
    }

    /// Commit the repository with `index.html` naming `name`, tag it `name`
    /// and build the tag; returns the bundle id.
    pub fn tag(&self, name: &str) -> String {
        self.repo
            .write("index.html", format!("<h1>{name}</h1>\n"))
            .write("static/app.js", "console.log('same in every release')\n")
            .commit(&format!("release {name}"))
            .tag(name);
        self.env
            .slipway()
            .current_dir(&self.repo.path)
            .args(["build", name])
            .ok()
            .line()
    }

    /// Host `i`'s root.
    pub fn root(&self, i: usize) -> &Path {
        &self.hosts[i].root
    }

    /// Host `i` as written in `slipway.toml` (and as `--json` names it).
    pub fn label(&self, i: usize) -> &str {
        &self.hosts[i].label
    }

    /// The release host `i`'s `current` points at, read on its file system.
    pub fn current(&self, i: usize) -> Option<String> {
        let link = std::fs::read_link(self.root(i).join("current")).ok()?;
        Some(link.to_string_lossy().trim_start_matches("releases/").to_string())
    }

    /// Stop host `i`'s sshd: from now on it is unreachable.
    ///
    /// # Panics
    /// When host `i` is a local path.
    pub fn stop_host(&mut self, i: usize) {
        self.hosts[i].sshd.as_mut().expect("an ssh host").stop();
    }
}
