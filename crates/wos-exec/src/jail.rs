//! The jailer, `wos jail`: builds a job's sandbox and runs the program in
//! it, in three processes.
//!
//! - **A**, the jailer as the node daemon exec'd it, with the job's pipes as
//!   stdin, stdout and stderr. It dies with the node (parent-death signal),
//!   joins the job's cgroups, creates the namespaces and forks B. Then it
//!   forwards the signals the node sends it and, when B is gone, ends the
//!   way the program ended (same exit code, or killed by the same signal),
//!   so that the node's `waitpid` sees the program's status.
//! - **B**, pid 1 of the new pid namespace. It builds the private root (a
//!   tmpfs with read-only binds of system directories, `/proc`, `/dev`,
//!   `/tmp`), pivots into it, forks C, then acts as init: forwards signals,
//!   reaps orphans, and when C ends reports C's status to A through a pipe
//!   and exits, which makes the kernel kill whatever is left in the
//!   namespace.
//! - **C**, the program: it drops to the job's uid and gid, sets no new
//!   privileges, starts a session, restores default signal handling,
//!   installs the seccomp filter last and executes the program with exactly
//!   the spec's environment.
//!
//! A failure while setting up prints `wos-jail: <what failed>: <why>` and
//! exits 125; a program that cannot be executed gets the shell's
//! `wos: cannot run PROGRAM: REASON` and 127 (not found) or 126 (other).
//!
//! The jailer is a fresh single-threaded process, so allocating and
//! printing between fork and exec are safe.

use std::convert::Infallible;
use std::ffi::{CString, OsStr};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork, getpid, getppid, pipe2};
use seccompiler::BpfProgram;

use crate::seccomp::{self, SeccompError};
use crate::{Bind, JailSpec, NetMode, SPEC_ENV};

/// Exit code of a jail that could not be set up (like `env` and
/// container runtimes: 126 and 127 are the program's).
const SETUP_FAILED: i32 = 125;
/// Exit status when the node cancelled the start (see `JailSpec::start_gate`).
pub const START_CANCELLED: i32 = 124;
const CANNOT_EXECUTE: i32 = 126;
const NOT_FOUND: i32 = 127;

/// The signals the node may send a job; the jailer passes them on.
const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGTSTP,
];

/// Devices bound from the host into the sandbox's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the PATH search goes when the spec's environment has no PATH.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The size of the sandbox's root file system: it holds only mount points
/// and symbolic links, and becomes read-only.
const ROOT_TMPFS: &str = "mode=0755,size=1m";

/// What went wrong while setting up the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error(
        "{SPEC_ENV} is not set: `wos jail` is started by the node daemon with the job's spec, not by hand"
    )]
    NoSpec,
    #[error("the job spec in {SPEC_ENV} is not valid: {0}")]
    BadJson(#[source] serde_json::Error),
    #[error("invalid job spec: {0}")]
    BadSpec(String),
    #[error("the node daemon exited before the sandbox was set up")]
    Orphaned,
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the sandbox's init process {how} without reporting the program's status; the program was killed with it"
    )]
    InitLost { how: String },
}

type Result<T> = std::result::Result<T, JailError>;

/// Attaches "what failed" to a system call's error.
trait OrFail<T> {
    fn or_fail(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> OrFail<T> for nix::Result<T> {
    fn or_fail(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| JailError::Sys {
            what: what(),
            errno,
        })
    }
}

impl<T> OrFail<T> for io::Result<T> {
    fn or_fail(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| match source.raw_os_error() {
            Some(raw) => JailError::Sys {
                what: what(),
                errno: Errno::from_raw(raw),
            },
            None => JailError::Io {
                what: what(),
                source,
            },
        })
    }
}

/// `wos jail`: reads the spec (JSON) from [`SPEC_ENV`] and runs it.
pub fn main_from_env() -> ! {
    match read_spec() {
        Ok(spec) => main(spec),
        Err(e) => fail(&e),
    }
}

fn read_spec() -> Result<JailSpec> {
    let json = std::env::var_os(SPEC_ENV).ok_or(JailError::NoSpec)?;
    serde_json::from_slice(json.as_bytes()).map_err(JailError::BadJson)
}

/// Runs `spec` in a new sandbox and ends as its program ended. Never
/// returns.
pub fn main(spec: JailSpec) -> ! {
    match jailer(&spec) {
        Ok(never) => match never {},
        Err(e) => fail(&e),
    }
}

/// Prints a setup failure and exits 125.
fn fail(e: &JailError) -> ! {
    report(e);
    std::process::exit(SETUP_FAILED)
}

fn report(e: &JailError) {
    // Not eprintln!: it panics when stderr is gone, and there is nobody
    // left to tell then anyway.
    let _ = writeln!(io::stderr(), "wos-jail: {e}");
}

/// Leaves a forked child without running the parent's exit handlers.
fn exit_child(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process at once; nothing is shared.
    unsafe { libc::_exit(code) }
}

// ---------------------------------------------------------------------------
// What the program needs, prepared before anything changes.

/// The spec turned into what the last steps need (C strings, the compiled
/// filter), so that a bad spec fails before any namespace exists.
struct Program {
    name: String,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// The paths execve tries, in order (the PATH search, done ahead).
    candidates: Vec<CString>,
    cwd: PathBuf,
    uid: Uid,
    gid: Gid,
    cpu_seconds: Option<u64>,
    filter: BpfProgram,
}

impl Program {
    fn prepare(spec: &JailSpec) -> Result<Program> {
        check_spec(spec)?;
        let name = spec.argv[0].clone();
        // The first PATH, as getenv(3) in the program will see it.
        let path_var = spec
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        Ok(Program {
            candidates: search_path(&name, path_var)?,
            argv: spec
                .argv
                .iter()
                .map(|a| c_string(a))
                .collect::<Result<_>>()?,
            env: spec
                .env
                .iter()
                .map(|(k, v)| c_string(&format!("{k}={v}")))
                .collect::<Result<_>>()?,
            name,
            cwd: spec.cwd.clone(),
            uid: Uid::from_raw(spec.uid),
            gid: Gid::from_raw(spec.gid),
            cpu_seconds: spec.cpu_seconds,
            filter: seccomp::build_filter(&spec.seccomp_deny)?,
        })
    }
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| JailError::BadSpec(format!("{s:?} contains a NUL byte")))
}

/// The candidates for `name` like execvp(3): a name with a `/` is used
/// as is; otherwise each PATH entry in turn (an empty entry is the
/// working directory).
fn search_path(name: &str, path_var: &str) -> Result<Vec<CString>> {
    if name.contains('/') {
        return Ok(vec![c_string(name)?]);
    }
    path_var
        .split(':')
        .map(|dir| match dir {
            "" => c_string(name),
            dir => c_string(&format!("{}/{name}", dir.trim_end_matches('/'))),
        })
        .collect()
}

/// Refuses specs the jailer must not or cannot honor.
fn check_spec(spec: &JailSpec) -> Result<()> {
    let bad = |msg: String| Err(JailError::BadSpec(msg));
    if spec.uid == 0 || spec.gid == 0 {
        return bad(format!(
            "jobs never run as root (uid {}, gid {}); give the node an unprivileged uid and gid in policy.toml",
            spec.uid, spec.gid
        ));
    }
    if spec.argv.first().is_none_or(|a| a.is_empty()) {
        return bad("no program to run (argv is empty)".into());
    }
    if let Some((k, _)) = spec
        .env
        .iter()
        .find(|(k, _)| k.is_empty() || k.contains('='))
    {
        return bad(format!(
            "environment variable name {k:?} is empty or contains `=`"
        ));
    }
    for (what, path) in [("cwd", &spec.cwd), ("root_dir", &spec.root_dir)] {
        if !path.is_absolute() {
            return bad(format!("{what} {} is not an absolute path", path.display()));
        }
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 {
        return bad(format!(
            "hostname {:?} must have 1 to 64 bytes",
            spec.hostname
        ));
    }
    if spec.tmp_bytes == 0 {
        return bad("tmp_bytes must be more than 0".into());
    }
    spec.binds.iter().try_for_each(check_bind)
}

/// A bind goes to an absolute path of plain names, not onto the root and not
/// into /proc or /dev, which the jailer builds itself.
fn check_bind(bind: &Bind) -> Result<()> {
    let inside = &bind.inside;
    let plain = inside.is_absolute()
        && inside
            .components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
    let first = inside.components().nth(1);
    let reserved = first.is_none_or(|c| c.as_os_str() == "proc" || c.as_os_str() == "dev");
    if !plain || reserved {
        return Err(JailError::BadSpec(format!(
            "bind target {} must be an absolute path without `..`, other than /, /proc or /dev and what lies below them",
            inside.display()
        )));
    }
    if !bind.host.is_absolute() {
        return Err(JailError::BadSpec(format!(
            "bind source {} is not an absolute path",
            bind.host.display()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A: the jailer.

fn jailer(spec: &JailSpec) -> Result<Infallible> {
    let node = getppid();
    let program = Program::prepare(spec)?;
    die_with(node)?;
    join_cgroups(&spec.cgroups)?;
    let signals = block_signals()?;
    let (status_read, status_write) =
        pipe2(OFlag::O_CLOEXEC).or_fail(|| "creating the status pipe".into())?;
    unshare(namespaces(spec.net)).or_fail(|| "creating the namespaces (unshare)".into())?;
    // SAFETY: this process is single-threaded (see the module docs).
    match unsafe { fork() }.or_fail(|| "forking the sandbox's init".into())? {
        ForkResult::Child => {
            drop(status_read);
            sandbox_init(spec, &program, &signals, status_write)
        }
        ForkResult::Parent { child } => {
            drop(status_write);
            supervise(child, &signals, status_read)
        }
    }
}

/// Dies with the node daemon. `node` was our parent when we started: if it
/// is not any more, it died before the signal was armed.
fn die_with(node: Pid) -> Result<()> {
    prctl::set_pdeathsig(Signal::SIGKILL).or_fail(|| "setting the parent-death signal".into())?;
    if getppid() != node {
        return Err(JailError::Orphaned);
    }
    Ok(())
}

/// Joins every cgroup of the job, before anything is forked, so that every
/// process of the job is counted.
fn join_cgroups(dirs: &[PathBuf]) -> Result<()> {
    let pid = getpid().to_string();
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .and_then(|mut f| f.write_all(pid.as_bytes()))
            .or_fail(|| format!("joining the cgroup {}", dir.display()))?;
    }
    Ok(())
}

/// Blocks the forwarded signals and SIGCHLD: A and B take them with
/// sigwait, one at a time, instead of in handlers. Returns the set.
fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).or_fail(|| "blocking signals".into())?;
    Ok(set)
}

/// The namespaces of A's children. The mount namespace is B's own (see
/// [`build_root`]); the cgroup namespace hides the node's cgroup layout.
fn namespaces(net: NetMode) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP;
    if net == NetMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// Forwards signals to B until B ends, then ends as the program did.
fn supervise(init: Pid, signals: &SigSet, status: OwnedFd) -> Result<Infallible> {
    let init_status = loop {
        let sig = signals.wait().or_fail(|| "waiting for signals".into())?;
        if sig != Signal::SIGCHLD {
            // B may already be gone; its SIGCHLD is then on its way.
            let _ = kill(init, sig);
        } else if let Some((_, raw)) = reap(init.as_raw())? {
            break raw;
        }
    };
    match read_outcome(&status)? {
        Some(outcome) => mirror(outcome),
        None => Err(JailError::InitLost {
            how: describe_wait(init_status),
        }),
    }
}

/// waitpid(pid, WNOHANG): which child ended and its raw wait status, or
/// None while none has (or none is left).
fn reap(pid: libc::pid_t) -> Result<Option<(libc::pid_t, libc::c_int)>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with a valid pointer to an int.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 => return Ok(None),
            -1 => match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => return Ok(None),
                e => return Err(e).or_fail(|| "waiting for children".into()),
            },
            child => return Ok(Some((child, status))),
        }
    }
}

fn describe_wait(status: libc::c_int) -> String {
    match Outcome::from_wait(status) {
        Some(Outcome::Exited(code)) => format!("exited with code {code}"),
        Some(Outcome::Killed(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
        None => format!("ended with wait status {status:#x}"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    Signal::try_from(sig).map_or("?", Signal::as_str)
}

/// Ends this process the way the program ended: the same exit code, or
/// killed by the same signal.
fn mirror(outcome: Outcome) -> ! {
    match outcome {
        Outcome::Exited(code) => std::process::exit(code),
        Outcome::Killed(sig) => die_by(sig),
    }
}

fn die_by(sig: i32) -> ! {
    // The jailer's own core file would be useless (and land on the host).
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    // SAFETY: plain signal-state system calls on this process.
    unsafe {
        if sig != libc::SIGKILL {
            libc::signal(sig, libc::SIG_DFL);
        }
        libc::kill(libc::getpid(), sig);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    // Still alive: the signal's default action does not terminate (the
    // program cannot have died of it, but be safe); the shell's encoding.
    std::process::exit(128 + sig)
}

// ---------------------------------------------------------------------------
// The status pipe between B and A.

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Exited(i32),
    Killed(i32),
}

impl Outcome {
    fn from_wait(status: libc::c_int) -> Option<Outcome> {
        if libc::WIFEXITED(status) {
            Some(Outcome::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Outcome::Killed(libc::WTERMSIG(status)))
        } else {
            None
        }
    }

    fn encode(self) -> [u8; 8] {
        let (kind, value) = match self {
            Outcome::Exited(code) => (0i32, code),
            Outcome::Killed(sig) => (1i32, sig),
        };
        let mut out = [0; 8];
        out[..4].copy_from_slice(&kind.to_ne_bytes());
        out[4..].copy_from_slice(&value.to_ne_bytes());
        out
    }

    fn decode(bytes: [u8; 8]) -> Option<Outcome> {
        let kind = i32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes"));
        let value = i32::from_ne_bytes(bytes[4..].try_into().expect("4 bytes"));
        match kind {
            0 => Some(Outcome::Exited(value)),
            1 => Some(Outcome::Killed(value)),
            _ => None,
        }
    }
}

fn write_outcome(fd: &OwnedFd, outcome: Outcome) {
    // 8 bytes into an empty pipe: one write, never partial. If A is gone
    // there is nobody to tell.
    let _ = nix::unistd::write(fd, &outcome.encode());
}

/// The outcome B reported, or None if B died before reporting.
fn read_outcome(fd: &OwnedFd) -> Result<Option<Outcome>> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).or_fail(|| "reading the program's status".into()),
        }
    }
    Ok(Outcome::decode(buf))
}

// ---------------------------------------------------------------------------
// B: init of the sandbox.

fn sandbox_init(spec: &JailSpec, program: &Program, signals: &SigSet, status: OwnedFd) -> ! {
    let outcome = match run_init(spec, program, signals, &status) {
        Ok(outcome) => outcome,
        Err(e) => {
            report(&e);
            Outcome::Exited(SETUP_FAILED)
        }
    };
    write_outcome(&status, outcome);
    // Leaving pid 1 makes the kernel kill everything left in the namespace.
    exit_child(0)
}

fn run_init(
    spec: &JailSpec,
    program: &Program,
    signals: &SigSet,
    status: &OwnedFd,
) -> Result<Outcome> {
    prctl::set_pdeathsig(Signal::SIGKILL).or_fail(|| "setting the parent-death signal".into())?;
    if reader_gone(status) {
        // A died before the death signal was armed; nobody is waiting.
        exit_child(SETUP_FAILED);
    }
    build_root(spec)?;
    nix::unistd::sethostname(&spec.hostname).or_fail(|| "setting the hostname".into())?;
    if let Some(fd) = spec.start_gate
        && !gate_opens(fd)?
    {
        // The node cancelled the start (the job was not recorded): the
        // program never runs.
        return Ok(Outcome::Exited(START_CANCELLED));
    }
    // SAFETY: this process is single-threaded.
    match unsafe { fork() }.or_fail(|| "forking the program".into())? {
        ForkResult::Child => run_program(program, status),
        ForkResult::Parent { child } => init_loop(child, signals),
    }
}

/// Waits for the node's go: one byte (true) or end of file (false).
fn gate_opens(fd: i32) -> Result<bool> {
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(nix::errno::Errno::last())
            .or_fail(|| format!("the start gate (descriptor {fd}) was not passed open"));
    }
    // SAFETY: the node passed this descriptor for exactly this use (checked
    // open above); it is owned here from now on and closed on return.
    let gate = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&gate, &mut byte) {
            Ok(n) => return Ok(n == 1),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(e).or_fail(|| format!("waiting for the node's go on descriptor {fd}"));
            }
        }
    }
}

/// Whether the read end of the status pipe (held only by A) is closed. The
/// pid namespace hides A's pid from B, so this is how B can tell.
fn reader_gone(status: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: status.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll(2) on one valid pollfd, without waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & libc::POLLERR != 0
}

/// Forwards signals to the program's process group and reaps every child
/// (orphans are reparented to pid 1) until the program itself has ended.
fn init_loop(program: Pid, signals: &SigSet) -> Result<Outcome> {
    loop {
        let sig = signals.wait().or_fail(|| "waiting for signals".into())?;
        if sig == Signal::SIGCHLD {
            if let Some(outcome) = reap_all(program)? {
                return Ok(outcome);
            }
        } else {
            forward(program, sig);
        }
    }
}

/// Like a terminal, signals the whole process group of the program (a
/// pipeline stops together). Until the program has made its session, the
/// group does not exist yet and the program alone gets the signal.
fn forward(program: Pid, sig: Signal) {
    if kill(Pid::from_raw(-program.as_raw()), sig) == Err(Errno::ESRCH) {
        let _ = kill(program, sig);
    }
}

/// Reaps every ended child; the program's outcome if it was among them.
fn reap_all(program: Pid) -> Result<Option<Outcome>> {
    let mut outcome = None;
    while let Some((pid, status)) = reap(-1)? {
        if pid == program.as_raw() {
            outcome = Outcome::from_wait(status);
        }
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------------
// B: the private root.

/// Builds the sandbox's root on `spec.root_dir` and moves into it.
fn build_root(spec: &JailSpec) -> Result<()> {
    // B's own mount namespace, so that pivot_root moves only B's (and its
    // children's) root, never A's.
    unshare(CloneFlags::CLONE_NEWNS).or_fail(|| "creating the mount namespace".into())?;
    // Nothing mounted here may propagate back to the host, and nothing the
    // host mounts later may appear in the sandbox.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .or_fail(|| "making the mounts private".into())?;
    let root = &spec.root_dir;
    mount_tmpfs(root, ROOT_TMPFS, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    let root_fd = open_dir(root)?;
    mount_proc(root)?;
    mount_dev(root, &root_fd, spec.tmp_bytes)?;
    mount_tmp(root, spec.tmp_bytes)?;
    for bind in &spec.binds {
        add_bind(&root_fd, bind)?;
    }
    drop(root_fd);
    enter_root(root)?;
    seal_root()
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .or_fail(|| format!("opening {}", path.display()))
}

fn mount_tmpfs(target: &Path, options: &str, flags: MsFlags) -> Result<()> {
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(options))
        .or_fail(|| format!("mounting a tmpfs on {} ({options})", target.display()))
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e).or_fail(|| format!("creating {}", path.display())),
    }
}

/// A /proc of the new pid namespace: only the job's processes.
fn mount_proc(root: &Path) -> Result<()> {
    let target = root.join("proc");
    make_dir(&target, 0o555)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &target, Some("proc"), flags, None::<&str>)
        .or_fail(|| format!("mounting /proc on {}", target.display()))
}

/// A small /dev: the harmless devices (bound from the host: their own
/// mounts carry the device access, the tmpfs itself is nodev), the usual
/// links, and a /dev/shm of `shm_bytes`.
fn mount_dev(root: &Path, root_fd: &OwnedFd, shm_bytes: u64) -> Result<()> {
    let dev = root.join("dev");
    make_dir(&dev, 0o755)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_tmpfs(&dev, "mode=0755,size=64k", flags)?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if std::fs::symlink_metadata(&host).is_err() {
            // A host without it (a minimal container): the job does without.
            continue;
        }
        let target = mount_point(root_fd, &Path::new("dev").join(name), false)?;
        attach_bind(&host, &target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false)?;
    }
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, target) in links {
        std::os::unix::fs::symlink(target, dev.join(name))
            .or_fail(|| format!("creating /dev/{name}"))?;
    }
    let shm = dev.join("shm");
    make_dir(&shm, 0o1777)?;
    mount_tmpfs(
        &shm,
        &format!("mode=1777,size={shm_bytes}"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    )
}

/// The job's private /tmp (its memory is charged to the job's cgroup).
fn mount_tmp(root: &Path, bytes: u64) -> Result<()> {
    let tmp = root.join("tmp");
    make_dir(&tmp, 0o1777)?;
    mount_tmpfs(
        &tmp,
        &format!("mode=1777,size={bytes}"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    )
}

/// Makes `bind.host` visible at `bind.inside`.
///
/// Binds are recursive: what is mounted below the host directory (on
/// Docker, /etc/hosts and /etc/resolv.conf are such mounts) is seen as the
/// node owner sees it. `mount_setattr(AT_RECURSIVE)` then makes the whole
/// tree read-only, nosuid and nodev at once; a classic read-only remount
/// would only reach the top mount and leave the submounts writable.
///
/// A host path that is a symbolic link (`/bin -> usr/bin` on merged-/usr
/// systems) becomes the same link inside, rather than a bind of what it
/// points to: the layout inside matches the host's, and a link is never
/// followed outside the sandbox.
fn add_bind(root_fd: &OwnedFd, bind: &Bind) -> Result<()> {
    let meta = std::fs::symlink_metadata(&bind.host)
        .or_fail(|| format!("bind source {}", bind.host.display()))?;
    let inside = bind.inside.strip_prefix("/").unwrap_or(&bind.inside);
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&bind.host)
            .or_fail(|| format!("reading the link {}", bind.host.display()))?;
        let (parent, name) = open_parent(root_fd, inside)?;
        return nix::unistd::symlinkat(&target, &parent, name)
            .or_fail(|| format!("creating the link {}", bind.inside.display()));
    }
    let target = mount_point(root_fd, inside, meta.is_dir())?;
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if bind.readonly {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    attach_bind(&bind.host, &target, attrs, true).map_err(|e| {
        in_context(
            e,
            &format!(
                "binding {} on {}",
                bind.host.display(),
                bind.inside.display()
            ),
        )
    })
}

fn in_context(e: JailError, context: &str) -> JailError {
    match e {
        JailError::Sys { what, errno } => JailError::Sys {
            what: format!("{context}: {what}"),
            errno,
        },
        other => other,
    }
}

/// Opens (creating as needed) the directory holding the last component of
/// `rel`, below `root_fd`, never following a symbolic link: a mount point
/// inside a writable bind could otherwise be redirected anywhere by a link
/// planted there.
fn open_parent<'a>(root_fd: &OwnedFd, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
    let name = rel
        .file_name()
        .ok_or_else(|| JailError::BadSpec(format!("bind target /{} has no name", rel.display())))?;
    let mut dir = root_fd
        .try_clone()
        .or_fail(|| "duplicating a descriptor".into())?;
    for part in rel.parent().into_iter().flat_map(Path::components) {
        dir = open_or_make_dir(&dir, part.as_os_str(), rel)?;
    }
    Ok((dir, name))
}

fn open_or_make_dir(dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<OwnedFd> {
    match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e).or_fail(|| format!("creating the mount point /{}", rel.display())),
    }
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir, name, flags, Mode::empty()).or_fail(|| {
        format!(
            "opening the mount point /{} (a symbolic link on the way is refused)",
            rel.display()
        )
    })
}

/// The mount point for `rel` below `root_fd`: a directory, or an empty file
/// when a file is bound, opened without following links.
fn mount_point(root_fd: &OwnedFd, rel: &Path, dir: bool) -> Result<OwnedFd> {
    let (parent, name) = open_parent(root_fd, rel)?;
    if dir {
        return open_or_make_dir(&parent, name, rel);
    }
    let create =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(&parent, name, create, Mode::from_bits_truncate(0o644)) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e).or_fail(|| format!("creating the mount point /{}", rel.display())),
    }
    let fd = openat(
        &parent,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .or_fail(|| format!("opening the mount point /{}", rel.display()))?;
    let stat = fstat(&fd).or_fail(|| format!("inspecting the mount point /{}", rel.display()))?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(JailError::BadSpec(format!(
            "the mount point /{} exists and is not a regular file",
            rel.display()
        )));
    }
    Ok(fd)
}

// From linux/mount.h (the libc crate has them only in recent versions).
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Binds `source` onto the mount point `target` with the new mount API: the
/// copy of the tree gets its attributes while still detached, then is
/// attached to the open mount point, so no path is looked up twice and the
/// bind is never visible writable. Needs Linux 5.12.
fn attach_bind(source: &Path, target: &OwnedFd, attrs: u64, recursive: bool) -> Result<()> {
    let tree = open_tree(source, recursive)?;
    let at_flags = if recursive {
        libc::AT_EMPTY_PATH | libc::AT_RECURSIVE
    } else {
        libc::AT_EMPTY_PATH
    };
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) with a valid fd, an empty path, and a
    // pointer to a mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            at_flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    syscall_result(rc).or_fail(|| {
        format!(
            "setting the attributes of {} (Linux 5.12+ needed)",
            source.display()
        )
    })?;
    // SAFETY: move_mount(2) between two valid fds with empty paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    syscall_result(rc).or_fail(|| format!("attaching {}", source.display()))
}

/// A detached copy of the mount tree at `source` (open_tree(2)).
fn open_tree(source: &Path, recursive: bool) -> Result<OwnedFd> {
    let path = CString::new(source.as_os_str().as_bytes())
        .map_err(|_| JailError::BadSpec(format!("{} contains a NUL byte", source.display())))?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree(2) with a valid C string; returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    syscall_result(fd).or_fail(|| format!("copying the mount tree of {}", source.display()))?;
    // SAFETY: a non-negative result is a file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn syscall_result(rc: libc::c_long) -> nix::Result<()> {
    if rc < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Makes the new root `/` and drops the host's root from this mount
/// namespace (pivot_root(".", ".") stacks the old root on the new one; the
/// lazy unmount then removes it).
fn enter_root(root: &Path) -> Result<()> {
    nix::unistd::chdir(root).or_fail(|| format!("entering {}", root.display()))?;
    nix::unistd::pivot_root(".", ".").or_fail(|| "pivot_root into the new root".into())?;
    umount2(".", MntFlags::MNT_DETACH).or_fail(|| "detaching the host's root".into())?;
    nix::unistd::chdir("/").or_fail(|| "entering /".into())
}

/// Makes the root and /dev read-only: outside /tmp, /dev/shm and the
/// writable binds, every write fails with EROFS.
fn seal_root() -> Result<()> {
    let ro = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    mount(None::<&str>, "/", None::<&str>, ro, None::<&str>)
        .or_fail(|| "making / read-only".into())?;
    mount(
        None::<&str>,
        "/dev",
        None::<&str>,
        ro | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .or_fail(|| "making /dev read-only".into())
}

// ---------------------------------------------------------------------------
// C: the program.

fn run_program(program: &Program, status: &OwnedFd) -> ! {
    // The status pipe is B's and A's business (it is close-on-exec anyway).
    // SAFETY: closing our copy of a descriptor nothing else here uses.
    unsafe { libc::close(status.as_raw_fd()) };
    let err = match become_program(program) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    report(&err);
    exit_child(SETUP_FAILED)
}

fn become_program(program: &Program) -> Result<Infallible> {
    // A session of its own: no controlling terminal (a terminal shared with
    // the node would let the job inject input into it), and a process group
    // that signals are forwarded to.
    nix::unistd::setsid().or_fail(|| "starting a session".into())?;
    drop_privileges(program.uid, program.gid)?;
    prctl::set_no_new_privs().or_fail(|| "setting no_new_privs".into())?;
    if let Some(seconds) = program.cpu_seconds {
        // SIGXCPU at the limit, SIGKILL a second later if it is ignored.
        setrlimit(Resource::RLIMIT_CPU, seconds, seconds.saturating_add(1))
            .or_fail(|| "setting the CPU time limit".into())?;
    }
    close_inherited_fds()?;
    reset_signals()?;
    nix::unistd::chdir(&program.cwd)
        .or_fail(|| format!("entering the working directory {}", program.cwd.display()))?;
    // Last: from here on every system call the jailer makes is filtered too.
    seccomp::install(&program.filter)?;
    exec(program)
}

fn drop_privileges(uid: Uid, gid: Gid) -> Result<()> {
    nix::unistd::setgroups(&[gid]).or_fail(|| format!("setting the groups to [{gid}]"))?;
    nix::unistd::setresgid(gid, gid, gid).or_fail(|| format!("setting the gid to {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).or_fail(|| format!("setting the uid to {uid}"))
}

/// Marks every descriptor above stderr close-on-exec: one inherited by
/// mistake (a directory of the host, say) would be a way out of the root.
fn close_inherited_fds() -> Result<()> {
    // SAFETY: close_range(2) on a range of descriptors; no memory involved.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    syscall_result(rc).or_fail(|| "marking inherited descriptors close-on-exec".into())
}

/// The program starts as from a fresh login: nothing blocked, nothing
/// ignored, whatever the node's and the jailer's own settings (Rust, for
/// one, ignores SIGPIPE).
fn reset_signals() -> Result<()> {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition; fails harmlessly for the
        // signals libc reserves for itself.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .or_fail(|| "unblocking signals".into())
}

/// Executes the program like execvp(3), then, if that failed, reports like
/// a shell: 127 when it was not found, 126 when it could not be run.
fn exec(program: &Program) -> ! {
    let mut error = Errno::ENOENT;
    let mut denied = false;
    for path in &program.candidates {
        let Err(e) = nix::unistd::execve(path.as_c_str(), &program.argv, &program.env);
        match e {
            // Not in this directory: try the next one.
            Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ENODEV | Errno::ETIMEDOUT => {}
            // Found but not executable: remember, but a later directory may
            // hold an executable one.
            Errno::EACCES => denied = true,
            other => {
                error = other;
                break;
            }
        }
    }
    if denied && error == Errno::ENOENT {
        error = Errno::EACCES;
    }
    let _ = writeln!(
        io::stderr(),
        "wos: cannot run {}: {}",
        program.name,
        error.desc()
    );
    exit_child(if error == Errno::ENOENT {
        NOT_FOUND
    } else {
        CANNOT_EXECUTE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(name: &str, path: &str) -> Vec<String> {
        search_path(name, path)
            .unwrap()
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect()
    }

    fn spec() -> JailSpec {
        JailSpec {
            job_id: "j1".into(),
            argv: vec!["true".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/".into(),
            uid: 65534,
            gid: 65534,
            hostname: "j1".into(),
            net: NetMode::None,
            root_dir: "/tmp/root".into(),
            binds: vec![Bind {
                host: "/usr".into(),
                inside: "/usr".into(),
                readonly: true,
            }],
            tmp_bytes: 1 << 20,
            cgroups: vec![],
            seccomp_deny: vec!["mount".into()],
            cpu_seconds: None,
            start_gate: None,
        }
    }

    fn rejected(spec: &JailSpec) -> String {
        match Program::prepare(spec) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_spec_prepares() {
        let p = Program::prepare(&spec()).unwrap();
        assert_eq!(
            p.candidates,
            vec![c"/usr/bin/true".to_owned(), c"/bin/true".to_owned()]
        );
        assert_eq!(p.env, vec![c"PATH=/usr/bin:/bin".to_owned()]);
    }

    #[test]
    fn root_is_refused() {
        let msg = rejected(&JailSpec { uid: 0, ..spec() });
        assert!(msg.contains("never run as root"), "{msg}");
        let msg = rejected(&JailSpec { gid: 0, ..spec() });
        assert!(msg.contains("never run as root"), "{msg}");
    }

    #[test]
    fn bad_binds_are_refused() {
        for inside in ["/", "/proc", "/dev/x", "relative", "/a/../etc"] {
            let mut s = spec();
            s.binds[0].inside = inside.into();
            let msg = rejected(&s);
            assert!(msg.contains("bind target"), "{inside}: {msg}");
        }
    }

    #[test]
    fn other_bad_specs() {
        assert!(
            rejected(&JailSpec {
                argv: vec![],
                ..spec()
            })
            .contains("argv")
        );
        assert!(
            rejected(&JailSpec {
                cwd: "tmp".into(),
                ..spec()
            })
            .contains("cwd")
        );
        assert!(
            rejected(&JailSpec {
                hostname: String::new(),
                ..spec()
            })
            .contains("hostname")
        );
        let msg = rejected(&JailSpec {
            seccomp_deny: vec!["nonsense".into()],
            ..spec()
        });
        assert!(msg.contains("`nonsense`"), "{msg}");
        let msg = rejected(&JailSpec {
            argv: vec!["a\0b".into()],
            ..spec()
        });
        assert!(msg.contains("NUL"), "{msg}");
    }

    #[test]
    fn path_search() {
        assert_eq!(candidates("./x", "/bin"), vec!["./x"]);
        assert_eq!(
            candidates("sh", "/bin/::/usr/bin"),
            vec!["/bin/sh", "sh", "/usr/bin/sh"]
        );
    }

    #[test]
    fn outcome_round_trips() {
        for o in [Outcome::Exited(0), Outcome::Exited(255), Outcome::Killed(9)] {
            assert_eq!(Outcome::decode(o.encode()), Some(o));
        }
        assert_eq!(Outcome::decode([9; 8]), None);
    }
}
