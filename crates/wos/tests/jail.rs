//! The job sandbox, `wos jail`, for real: namespaces, the private root, the
//! unprivileged uid, seccomp, signal forwarding, exit-status mirroring and
//! cgroup limits. Needs root (each test says so and passes when run as
//! another user, without checking anything).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wos_exec::cgroup::{Cgroup, Hierarchy, Limits, Usage};
use wos_exec::{Bind, JailSpec, NetMode, SPEC_ENV};

/// The unprivileged uid and gid jobs run as here (`nobody`).
const NOBODY: u32 = 65534;
const HOSTNAME: &str = "job-under-test";

/// Whether the test can run; prints why not.
fn as_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipping {test}: the sandbox needs root (namespaces, mounts, cgroups)");
    }
    root
}

/// One job's sandbox on the host: its root mount point, its writable `/wos`
/// directory and its cgroup. Dropping it kills what is left in the cgroup
/// and removes everything, also when the test failed.
struct Sandbox {
    root: tempfile::TempDir,
    files: tempfile::TempDir,
    cgroup: Option<Cgroup>,
}

impl Sandbox {
    fn new(test: &str, limits: Limits) -> Sandbox {
        let hierarchy = Hierarchy::detect().expect("this machine has usable cgroups");
        // One parent per test: parallel tests never remove each other's.
        let parent = format!("wos-test-{}-{test}", std::process::id());
        let cgroup = hierarchy
            .create(&parent, "job", &limits)
            .expect("creating the job's cgroup");
        let files = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        Sandbox {
            root: tempfile::tempdir().expect("temp dir"),
            files,
            cgroup: Some(cgroup),
        }
    }

    fn cgroup(&self) -> &Cgroup {
        self.cgroup
            .as_ref()
            .expect("the cgroup lives as long as the sandbox")
    }

    fn spec(&self, argv: &[&str]) -> JailSpec {
        let mut binds: Vec<Bind> = ["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc"]
            .into_iter()
            // symlink_metadata: /bin -> usr/bin counts (the jail recreates
            // the link inside).
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .map(|p| Bind {
                host: p.into(),
                inside: p.into(),
                readonly: true,
            })
            .collect();
        binds.push(Bind {
            host: self.files.path().to_path_buf(),
            inside: "/wos".into(),
            readonly: false,
        });
        JailSpec {
            job_id: "test".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), "/tmp".into()),
            ],
            cwd: "/tmp".into(),
            uid: NOBODY,
            gid: NOBODY,
            hostname: HOSTNAME.into(),
            net: NetMode::None,
            root_dir: self.root.path().to_path_buf(),
            binds,
            tmp_bytes: 16 << 20,
            cgroups: self.cgroup().procs_dirs(),
            seccomp_deny: wos_exec::seccomp::default_deny()
                .into_iter()
                .map(String::from)
                .collect(),
            cpu_seconds: None,
            start_gate: None,
        }
    }

    /// Starts `wos jail` on `argv` the way the node does: a clean
    /// environment holding only the spec, pipes for the output.
    fn start(&self, argv: &[&str]) -> Child {
        let spec = serde_json::to_string(&self.spec(argv)).expect("spec encodes");
        Command::new(env!("CARGO_BIN_EXE_wos"))
            .arg("jail")
            .env_clear()
            .env(SPEC_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wos jail")
    }

    fn run(&self, argv: &[&str]) -> Output {
        finish(self.start(argv), Duration::from_secs(30))
    }

    /// The processes in the job's cgroup.
    fn procs(&self) -> Vec<i32> {
        let dir = &self.cgroup().procs_dirs()[0];
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .expect("reading cgroup.procs")
            .split_whitespace()
            .map(|p| p.parse().expect("a pid"))
            .collect()
    }

    /// Waits until the jailer, init and the program are all running.
    fn wait_for_program(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.procs().len() < 3 {
            assert!(
                Instant::now() < deadline,
                "the program did not start: {:?}",
                self.procs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let it get past its setup (setuid, seccomp, exec).
        std::thread::sleep(Duration::from_millis(200));
    }

    fn usage(&self) -> Usage {
        self.cgroup().usage()
    }

    /// Compiles `source` (C) into the job's `/wos` and returns its path
    /// inside the sandbox.
    fn compile(&self, name: &str, source: &str) -> String {
        let src = self.files.path().join(format!("{name}.c"));
        std::fs::write(&src, source).expect("writing the C source");
        let out = Command::new("cc")
            .arg("-O")
            .arg("-o")
            .arg(self.files.path().join(name))
            .arg(&src)
            .output()
            .expect("running cc");
        assert!(
            out.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("/wos/{name}")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.kill_all();
            let dirs = cgroup.procs_dirs();
            cgroup.remove();
            for parent in dirs.iter().filter_map(|d| d.parent()) {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// Waits for `child` and collects its output; kills it and fails the test
/// after `limit`.
fn finish(child: Child, limit: Duration) -> Output {
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for wos jail"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("wos jail did not end within {limit:?}");
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn output_and_exit_code_pass_through() {
    if !as_root("output_and_exit_code_pass_through") {
        return;
    }
    let sb = Sandbox::new("exit", Limits::default());
    let out = sb.run(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

/// Runs `wos jail` with a start gate on descriptor 3; `go` decides whether
/// the node says go (one byte) or cancels (closes it).
fn gated(sb: &Sandbox, argv: &[&str], go: bool) -> Output {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let mut spec = sb.spec(argv);
    spec.start_gate = Some(3);
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let raw = read.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wos"));
    cmd.arg("jail")
        .env_clear()
        .env(
            SPEC_ENV,
            serde_json::to_string(&spec).expect("spec encodes"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would leave close-on-exec set.
            let rc = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("starting wos jail");
    drop(read);
    let mut gate = std::fs::File::from(write);
    // The sandbox is being built meanwhile; the program waits for this.
    std::thread::sleep(Duration::from_millis(200));
    if go {
        std::io::Write::write_all(&mut gate, b"g").expect("gate write");
    }
    drop(gate);
    finish(child, Duration::from_secs(30))
}

#[test]
fn the_start_gate_runs_or_cancels_the_program() {
    if !as_root("the_start_gate_runs_or_cancels_the_program") {
        return;
    }
    let sb = Sandbox::new("gate", Limits::default());
    let marker = sb.files.path().join("ran");
    let out = gated(&sb, &["sh", "-c", "touch /wos/ran; echo ran"], false);
    assert_eq!(
        out.status.code(),
        Some(wos_exec::jail::START_CANCELLED),
        "{out:?}"
    );
    assert!(!marker.exists(), "a cancelled start ran the program");
    assert_eq!(stdout(&out), "");
    let out = gated(&sb, &["sh", "-c", "touch /wos/ran; echo ran"], true);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "ran\n");
    assert!(marker.exists());
}

#[test]
fn host_is_invisible() {
    if !as_root("host_is_invisible") {
        return;
    }
    let sb = Sandbox::new("invisible", Limits::default());
    let out = sb.run(&[
        "sh",
        "-c",
        "ls /proc; echo uid $(id -u); echo host $(hostname)",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(
        !pids.is_empty() && pids.len() <= 5,
        "processes seen: {pids:?}"
    );
    assert!(
        !pids.contains(&std::process::id()),
        "the test's own pid is visible: {pids:?}"
    );
    assert!(text.contains(&format!("uid {NOBODY}\n")), "{text}");
    assert!(text.contains(&format!("host {HOSTNAME}\n")), "{text}");
}

#[test]
fn only_tmp_and_writable_binds_are_writable() {
    if !as_root("only_tmp_and_writable_binds_are_writable") {
        return;
    }
    let sb = Sandbox::new("writes", Limits::default());
    let script = "for f in /etc/x /x /usr/x /tmp/x /dev/shm/x /wos/x; do \
                  if touch $f 2>/dev/null; then echo $f ok; else echo $f refused; fi; done";
    let out = sb.run(&["sh", "-c", script]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "/etc/x refused\n/x refused\n/usr/x refused\n/tmp/x ok\n/dev/shm/x ok\n/wos/x ok\n"
    );
    assert!(
        sb.files.path().join("x").exists(),
        "/wos/x is not in the host directory"
    );
    assert!(!Path::new("/etc/x").exists() && !Path::new("/usr/x").exists());
}

/// A program that makes the calls the filter refuses and prints the errno.
const PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *result(long rc) {
    if (rc != -1) return "ALLOWED";
    switch (errno) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    default: return strerror(errno);
    }
}

int main(void) {
    printf("mount %s\n", result(mount("none", "/tmp", "tmpfs", 0, 0)));
    printf("ptrace %s\n", result(ptrace(PTRACE_TRACEME, 0, 0, 0)));
    printf("unshare %s\n", result(unshare(CLONE_NEWUSER)));
    long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (rc == 0) _exit(0);
    printf("clone %s\n", result(rc));
    rc = syscall(SYS_clone3, 0, 0);
    printf("clone3 %s\n", result(rc));
    return 0;
}
"#;

#[test]
fn mount_ptrace_and_namespaces_are_refused() {
    if !as_root("mount_ptrace_and_namespaces_are_refused") {
        return;
    }
    let sb = Sandbox::new("seccomp", Limits::default());
    let probe = sb.compile("probe", PROBE);
    let out = sb.run(&[&probe]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "mount EPERM\nptrace EPERM\nunshare EPERM\nclone EPERM\nclone3 ENOSYS\n",
        "stderr: {}",
        stderr(&out)
    );
    let out = sb.run(&["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"]);
    assert_eq!(stdout(&out), "NoNewPrivs:\t1\nSeccomp:\t2\n", "{out:?}");
}

fn signal_is_mirrored(test: &str, sig: Signal) {
    if !as_root(test) {
        return;
    }
    let sb = Sandbox::new(test, Limits::default());
    let child = sb.start(&["sleep", "100"]);
    let jailer = Pid::from_raw(child.id() as i32);
    sb.wait_for_program();
    let sent = Instant::now();
    kill(jailer, sig).expect("signalling the jailer");
    let out = finish(child, Duration::from_secs(10));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(out.status.signal(), Some(sig as i32), "{out:?}");
}

#[test]
fn sigint_is_forwarded_and_mirrored() {
    signal_is_mirrored("sigint", Signal::SIGINT);
}

#[test]
fn sigterm_is_forwarded_and_mirrored() {
    signal_is_mirrored("sigterm", Signal::SIGTERM);
}

#[test]
fn memory_limit_kills() {
    if !as_root("memory_limit_kills") {
        return;
    }
    let limits = Limits {
        memory: Some(64 << 20),
        ..Limits::default()
    };
    // The program itself runs out: the jailer dies of the same SIGKILL.
    let sb = Sandbox::new("memory", limits);
    let out = sb.run(&["tail", "/dev/zero"]);
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32), "{out:?}");
    let usage = sb.usage();
    assert!(usage.oom_killed, "{usage:?}");
    assert!(usage.peak_memory <= 64 << 20, "{usage:?}");
    drop(sb);
    // A shell's child runs out: the OOM killer takes the big child, and the
    // shell reports it the shell's way (128 + 9).
    let sb = Sandbox::new("memory-sh", limits);
    let out = sb.run(&["sh", "-c", "tail /dev/zero"]);
    assert_eq!(out.status.code(), Some(128 + 9), "{out:?}");
    assert!(sb.usage().oom_killed, "{:?}", sb.usage());
}

/// Tries to start 100 `sleep 5` in the background and counts refusals (a
/// shell gives up at its first failed fork; this keeps going).
const FORKER: &str = r#"
#include <stdio.h>
#include <unistd.h>

int main(void) {
    int started = 0, failed = 0;
    for (int i = 0; i < 100; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/bin/sleep", "sleep", "5", (char *)0);
            _exit(127);
        }
        if (pid < 0) failed++; else started++;
    }
    printf("started %d failed %d\n", started, failed);
    return 0;
}
"#;

#[test]
fn pids_limit_holds() {
    if !as_root("pids_limit_holds") {
        return;
    }
    let limits = Limits {
        pids: Some(20),
        ..Limits::default()
    };
    let sb = Sandbox::new("pids", limits);
    let forker = sb.compile("forker", FORKER);
    let out = sb.run(&[&forker]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let numbers: Vec<u32> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [started, failed] = numbers[..] else {
        panic!("unexpected output: {text}");
    };
    assert!(failed > 0, "{text}");
    // The jailer, init and the forker count too.
    assert!(started <= 17, "{text}");
    if let Some(peak) = sb.usage().pids_peak {
        assert!(peak <= 20, "pids peak {peak}");
    }
}

#[test]
fn cpu_limit_throttles() {
    if !as_root("cpu_limit_throttles") {
        return;
    }
    let limits = Limits {
        cpu: Some(0.5),
        ..Limits::default()
    };
    let sb = Sandbox::new("cpu", limits);
    let out = sb.run(&["timeout", "2", "sh", "-c", "while :; do :; done"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let cpu = sb.usage().cpu_seconds;
    assert!(
        cpu > 0.05 && cpu <= 1.2,
        "used {cpu} s of CPU in 2 s at half a core"
    );
}

#[test]
fn missing_program_is_127() {
    if !as_root("missing_program_is_127") {
        return;
    }
    let sb = Sandbox::new("missing", Limits::default());
    let out = sb.run(&["no-such-program-here", "arg"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        stderr(&out).contains("wos: cannot run no-such-program-here: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn job_dies_with_its_jailer() {
    if !as_root("job_dies_with_its_jailer") {
        return;
    }
    let sb = Sandbox::new("pdeathsig", Limits::default());
    let child = sb.start(&["sleep", "100"]);
    let jailer = Pid::from_raw(child.id() as i32);
    sb.wait_for_program();
    kill(jailer, Signal::SIGKILL).expect("killing the jailer");
    let out = finish(child, Duration::from_secs(10));
    assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32));
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sb.procs().is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes outlived their jailer: {:?}",
            sb.procs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_spec_is_a_setup_failure() {
    let out = Command::new(env!("CARGO_BIN_EXE_wos"))
        .arg("jail")
        .env_clear()
        .env(SPEC_ENV, "{not json")
        .output()
        .expect("running wos jail");
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).starts_with("wos-jail: "), "{}", stderr(&out));
}
