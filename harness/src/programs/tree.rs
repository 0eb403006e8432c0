//! The processes wirecheck started and everything they started in turn, found in
//! `/proc` by parent links.
//!
//! A program's process group is not enough to find its descendants: a child that
//! calls `setsid` (a daemon, `subprocess.Popen(start_new_session=True)`) leaves the
//! group. So wirecheck walks the parent links from the started process, and the
//! `wirecheck run` process makes itself a *child subreaper*
//! (`PR_SET_CHILD_SUBREAPER`): an orphan of a program is re-parented to wirecheck
//! rather than to init, so it stays reachable from wirecheck's own pid and the last
//! sweep ([`kill_all_descendants`]) ends it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// One process, as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgrp: u32,
    /// `R`, `S`, `Z` (zombie: exited, waiting for its parent to collect it), ...
    pub state: char,
    /// Resident set size, in pages (the kernel's `rss` field of `stat`).
    pub rss_pages: u64,
}

impl ProcInfo {
    /// A zombie runs no code and holds no socket: it is gone in every way that
    /// matters here.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Pids of the programs wirecheck spawned itself. Tokio collects their exit
/// status; wirecheck must never `waitpid` them, only the orphans it adopted.
static SPAWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// Held while a program is spawned and registered, and while the orphans are told
/// apart from spawned programs: without it, a program another run has just forked
/// but not yet registered would look like an adopted orphan.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// Holds off [`ours`] while a program is spawned and registered.
pub fn spawn_guard() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `root` with its descendants, and separately the orphans this process adopted
/// (see [`adopted`]), from one consistent look at `/proc`.
pub fn ours(root: u32) -> (Vec<u32>, Vec<u32>) {
    let _guard = spawn_guard();
    let processes = snapshot();
    (descendants(root, &processes), adopted(&processes))
}

/// Notes a program wirecheck spawned (tokio owns its exit status).
pub fn register_spawned(pid: u32) {
    EVER_SPAWNED.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut spawned = SPAWNED.lock().unwrap_or_else(|e| e.into_inner());
    spawned.get_or_insert_with(HashSet::new).insert(pid);
}

/// Forgets a spawned program once tokio collected its exit status.
pub fn forget_spawned(pid: u32) {
    let mut spawned = SPAWNED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = spawned.as_mut() {
        set.remove(&pid);
    }
}

fn is_spawned(pid: u32) -> bool {
    let spawned = SPAWNED.lock().unwrap_or_else(|e| e.into_inner());
    spawned.as_ref().is_some_and(|set| set.contains(&pid))
}

/// Makes this process the reaper of its descendants' orphans, so a program's
/// `setsid` grandchild whose parent exits is re-parented here and is still found
/// and stopped. Returns whether the kernel agreed (Linux 3.4 and later).
pub fn become_subreaper() -> bool {
    let done = nix::sys::prctl::set_child_subreaper(true).is_ok();
    SUBREAPER.store(done, std::sync::atomic::Ordering::SeqCst);
    done
}

/// Whether any program was ever spawned: only a program can leave descendants
/// behind, so without one the last sweep has nothing to look for (and reading
/// every process's `/proc` entry was a third of a short run's CPU).
static EVER_SPAWNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process is a child subreaper: only then are its unknown children
/// orphans of its programs (a test process has children of its own).
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Every process of the system, read from `/proc`. Processes that end while the
/// table is read are skipped.
pub fn snapshot() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// One process's `/proc/PID/stat`, if it still exists.
pub fn read_stat(pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    // After pgrp: session(3) ... rss(21), counted from the state field (0).
    let rss_pages = fields.nth(18)?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgrp,
        state,
        rss_pages,
    })
}

/// The resident memory of a program, in bytes: the sum of the resident set sizes
/// of the processes in its process group (`root` leads it: programs are started
/// in a group of their own) and of every process below `root` by parent links (a
/// `setsid` child has left the group but is still the program's doing), each
/// process counted once. Zombies hold no memory and count nothing. Pages shared by
/// several of these processes (a forked worker's copy-on-write pages, a shared
/// library) count once for each process, as `ps` and `top` show them: the figure
/// is what the kernel would have to find if none of them shared.
///
/// `wirecheck run` samples it for `max_memory`; `wirecheck fuzz` for
/// `--memory-limit`. One look at `/proc` costs about a millisecond on a machine
/// with a few hundred processes.
pub fn resident_bytes(root: u32) -> u64 {
    let processes = snapshot();
    let below: HashSet<u32> = descendants(root, &processes).into_iter().collect();
    let pages: u64 = processes
        .iter()
        .filter(|p| p.is_alive() && (p.pgrp == root || below.contains(&p.pid)))
        .map(|p| p.rss_pages)
        .sum();
    pages.saturating_mul(page_size())
}

/// The size of a memory page, in bytes (4096 on most machines, but not all).
pub fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a constant of the system; it has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
    })
}

/// `root` and every process below it, by parent links, in `processes`.
pub fn descendants(root: u32, processes: &[ProcInfo]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for process in processes {
        children.entry(process.ppid).or_default().push(process.pid);
    }
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        if let Some(kids) = children.get(&found[next]) {
            found.extend(kids.iter().copied().filter(|kid| *kid != root));
        }
        next += 1;
    }
    found
}

/// The orphans this process adopted as a subreaper (children it did not spawn),
/// and everything below them. They belong to some program of this process; which
/// one is no longer recorded anywhere.
pub fn adopted(processes: &[ProcInfo]) -> Vec<u32> {
    if !SUBREAPER.load(std::sync::atomic::Ordering::SeqCst) {
        return Vec::new();
    }
    let me = std::process::id();
    processes
        .iter()
        .filter(|p| p.ppid == me && !is_spawned(p.pid))
        .flat_map(|p| descendants(p.pid, processes))
        .collect()
}

/// The command line of a process, its arguments separated by spaces, for
/// messages that name it ("port 9000 is held by pid 4242: python3 old.py 9000").
pub fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    if text.is_empty() {
        // Kernel threads and zombies have no command line; the name will do.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        return Some(format!("[{}]", comm.trim()));
    }
    Some(text.join(" "))
}

/// Sends `signal` to each pid that is still alive; errors (already gone) are
/// expected and ignored.
pub fn signal_each(pids: impl IntoIterator<Item = u32>, signal: Signal) {
    for pid in pids {
        if pid > 1 && pid != std::process::id() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
        }
    }
}

/// Collects the exit status of adopted orphans that have exited, so they do not
/// stay zombies for the rest of the run. Programs wirecheck spawned are left to
/// tokio, which waits for them itself.
///
/// Only a subreaper adopts orphans. In any other process (a test binary, a library
/// user) every child was started by someone in this process who will wait for it
/// (`std::process::Command` in a test running beside this run, say), so nothing is
/// reaped: taking such a child's status would make its own `wait` fail with ECHILD.
pub fn reap_adopted() {
    if !SUBREAPER.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let me = std::process::id();
    for process in snapshot() {
        if process.ppid == me && !process.is_alive() && !is_spawned(process.pid) {
            let _ = waitpid(
                Pid::from_raw(process.pid as i32),
                Some(WaitPidFlag::WNOHANG),
            );
        }
    }
}

/// The last sweep of `wirecheck run`: SIGKILL to every process below this one that
/// is still alive (a program's orphan that escaped every group), then collect the
/// adopted ones. Returns how many were killed.
pub fn kill_all_descendants() -> usize {
    if !EVER_SPAWNED.load(std::sync::atomic::Ordering::SeqCst) {
        return 0;
    }
    let me = std::process::id();
    let processes = snapshot();
    let alive: Vec<u32> = descendants(me, &processes)
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| {
            processes
                .iter()
                .find(|p| p.pid == *pid)
                .is_some_and(ProcInfo::is_alive)
        })
        .collect();
    // Threads of this process are not in /proc's top level, so only processes
    // are signalled.
    signal_each(alive.iter().copied(), Signal::SIGKILL);
    reap_adopted();
    alive.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_in_the_snapshot_with_its_parent() {
        let me = read_stat(std::process::id()).expect("our own /proc entry");
        assert!(me.is_alive());
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn descendants_follow_parent_links_below_the_root_only() {
        let p = |pid, ppid| ProcInfo {
            pid,
            ppid,
            pgrp: pid,
            state: 'S',
            rss_pages: 0,
        };
        let table = [p(10, 1), p(11, 10), p(12, 11), p(13, 1), p(14, 12)];
        let mut found = descendants(10, &table);
        found.sort();
        assert_eq!(found, vec![10, 11, 12, 14]);
        assert_eq!(descendants(13, &table), vec![13]);
    }

    #[test]
    fn resident_memory_counts_a_child_and_grows_with_what_it_touches() {
        // A child of this process in a group of its own, as programs are started.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys; print('ready', flush=True); sys.stdin.readline(); b = bytearray(64 << 20); print('ok', flush=True); sys.stdin.readline()",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("python3 starts");
        use std::io::{BufRead, Write};
        use std::os::unix::process::CommandExt;
        let pid = child.id();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // Measured once it runs: while a program is being exec'd, its new memory
        // is still (nearly) empty.
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        let before = resident_bytes(pid);
        assert!(before > 0, "a running interpreter has resident memory");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin).unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok");
        let after = resident_bytes(pid);
        assert!(
            after >= before + (60 << 20),
            "64 MiB touched: {before} -> {after} bytes"
        );
        drop(stdin);
        child.wait().unwrap();
        assert_eq!(resident_bytes(pid), 0, "a collected process counts nothing");
    }

    #[test]
    fn a_command_line_joins_the_arguments() {
        let line = command_line(std::process::id()).expect("our own command line");
        assert!(!line.is_empty());
        assert!(!line.contains('\0'));
    }
}
