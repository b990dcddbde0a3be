//! What `/proc` says about processes and ports, for the service
//! supervisor ([`super::service`]): a process's state, session and start
//! time, the processes of a session, and who listens on a TCP port.
//!
//! Invariant: read-only but for [`kill_session`]; a process or file that
//! vanishes while it is read is simply not there (no errors).

/// `/proc/PID/stat`: state, session id, start time (clock ticks).
pub fn proc_stat(pid: u32) -> Option<(char, u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp session … starttime (field 22); comm may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let session = f.get(3)?.parse().ok()?;
    let start = f.get(19)?.parse().ok()?;
    Some((state, session, start))
}

/// The live (not zombie) processes of session `sid`.
pub fn session_members(sid: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| proc_stat(*pid).is_some_and(|(state, s, _)| s == sid && !matches!(state, 'Z' | 'X')))
        .collect()
}

pub fn session_alive(sid: u32) -> bool {
    !session_members(sid).is_empty()
}

/// SIGKILL every process of session `sid`.
pub fn kill_session(sid: u32) {
    for pid in session_members(sid) {
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

/// Socket inodes listening on TCP `port` (IPv4 and IPv6).
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if p == Some(port)
                && *state == "0A"
                && let Ok(inode) = inode.parse()
            {
                out.push(inode);
            }
        }
    }
    out
}

/// The processes (that this user may see) holding one of `inodes`.
fn holders(inodes: &[u64]) -> Vec<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str())));
        if holds {
            pids.push(pid);
        }
    }
    pids
}

/// Who listens on `port`, for a message: `pid 123 (python3)`, or `None`.
pub fn port_taken_by(port: u16) -> Option<String> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let who: Vec<String> = holders(&inodes)
        .into_iter()
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("pid {pid} ({})", comm.trim())
        })
        .collect();
    Some(if who.is_empty() {
        "a process this account cannot see".into()
    } else {
        who.join(", ")
    })
}

/// Does a process of session `sid` listen on `port`?
pub fn session_listens(port: u16, sid: u32) -> bool {
    holders(&listening_inodes(port))
        .into_iter()
        .any(|pid| proc_stat(pid).is_some_and(|(_, s, _)| s == sid))
}
