//! The local transport: `slipway serve --root ROOT` as a child process of this
//! very binary. Same protocol, same host code, no SSH.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{Connection, RemoteProcess};
use crate::error::{Error, Result, describe_io};

struct LocalChild {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Keep the last 16 KiB of a child's stderr.
pub fn collect_stderr(r: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) -> std::thread::JoinHandle<()> {
    crate::tail::keep_tail(r, buf, 16 * 1024)
}

impl RemoteProcess for LocalChild {
    fn finish(&mut self) -> Result<()> {
        let status = self
            .child
            .wait()
            .map_err(|e| Error::other(format!("cannot wait for `slipway serve`: {}", describe_io(&e))))?;
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
        if status.success() {
            return Ok(());
        }
        let stderr = self.stderr_text();
        let said = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        Err(Error::other(if said.is_empty() {
            format!("`slipway serve` exited with {status}")
        } else {
            format!("`slipway serve` exited with {status}: {}", said.trim())
        }))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr_text(&mut self) -> String {
        let b = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&b).trim().to_string()
    }
}

/// Spawn `serve` for a local root.
///
/// # Errors
/// When this executable cannot be found or started.
pub fn connect(root: &Path) -> Result<Connection> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::other(format!("cannot find the slipway executable: {}", describe_io(&e))))?;
    let mut child = Command::new(&exe)
        .arg("serve")
        .arg("--root")
        .arg(root)
        // Our own child: it may run the hooks we send.
        .arg("--trust-client")
        .env_remove("SSH_ORIGINAL_COMMAND")
        // Its own process group: a Ctrl-C on the operator's terminal goes
        // to this client alone, which ends the session in order
        // (crate::interrupt); the host notices the client going otherwise.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("run", &exe, e))?;
    let stdin = child.stdin.take().ok_or_else(|| Error::other("serve has no stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| Error::other("serve has no stdout"))?;
    let stderr = child.stderr.take().ok_or_else(|| Error::other("serve has no stderr"))?;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let reader = collect_stderr(stderr, buf.clone());
    Ok(Connection {
        reader: Box::new(stdout),
        writer: Box::new(stdin),
        process: Box::new(LocalChild {
            child,
            stderr: buf,
            reader: Some(reader),
        }),
    })
}
