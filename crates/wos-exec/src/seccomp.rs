//! The system calls a job may not make, and the seccomp filter that refuses
//! them.
//!
//! The filter is a deny list (Janus-style): every system call is allowed
//! except the listed ones, which fail with `EPERM`. An allow list would be
//! tighter but breaks arbitrary programs as soon as libc starts using a new
//! call; the jail's other walls (an unprivileged uid, no new privileges, a
//! private root, namespaces) carry the weight, and the deny list removes the
//! kernel interfaces that are dangerous even to an unprivileged process or
//! that only make sense for the node itself.
//!
//! Besides the listed names, every filter
//! - refuses system calls of the x32 ABI on x86_64 (they carry the same
//!   audit architecture as native calls but other numbers, so a deny list
//!   that ignored them could be bypassed), and kills a process that uses
//!   another architecture's calling convention (`int 0x80`);
//! - when `unshare` is denied, also refuses new namespaces through `clone`
//!   (by its flags) and makes `clone3` fail with `ENOSYS` (its flags sit in
//!   memory that seccomp cannot read; `ENOSYS` makes libc fall back to
//!   `clone`, whose flags the filter can see).

use std::collections::BTreeSet;
use std::env::consts::ARCH;

use seccompiler::{BpfProgram, TargetArch, sock_filter};
use serde_json::json;

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "seccomp filters are not supported on this architecture ({0}); wos runs jobs on x86_64 and aarch64 only"
    )]
    UnsupportedArch(&'static str),
    #[error(
        "unknown system call `{name}` in the seccomp deny list (not a {arch} system call); fix the name in the node's policy.toml"
    )]
    UnknownSyscall { name: String, arch: &'static str },
    #[error("building the seccomp filter failed: {0}")]
    Build(#[source] seccompiler::Error),
    #[error("installing the seccomp filter failed: {0} (the kernel needs CONFIG_SECCOMP_FILTER)")]
    Install(#[source] seccompiler::Error),
}

/// The system calls jobs may not make, unless the node owner's policy says
/// otherwise. Every name exists on the architecture of this build.
pub fn default_deny() -> Vec<&'static str> {
    let mut list = vec![
        // The file system view is the jailer's to build: no mounts, no new
        // roots, no new namespaces.
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "mount_setattr",
        "unshare",
        "setns",
        // Reading or writing other processes' memory.
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
        // The kernel itself: modules, reboots, swap, the clock.
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "acct",
        "quotactl",
        "quotactl_fd",
        "syslog",
        "vhangup",
        "sethostname",
        "setdomainname",
        "lookup_dcookie",
        // Large kernel attack surface reachable without privileges.
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "request_key",
        // io_uring performs its operations outside of seccomp's view.
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        // File handles bypass path-based confinement (the "shocker" escape).
        "open_by_handle_at",
        "name_to_handle_at",
    ];
    if ARCH == "x86_64" {
        // Port I/O and a.out loading exist only on x86.
        list.extend(["iopl", "ioperm", "uselib"]);
    }
    list
}

/// Builds the filter for this build's architecture: every system call in
/// `deny` fails with `EPERM`, everything else is allowed (see the module
/// documentation for the few fixed rules added to every filter).
pub fn build_filter(deny: &[String]) -> Result<BpfProgram, SeccompError> {
    let arch = target_arch()?;
    let names: BTreeSet<&str> = deny.iter().map(String::as_str).collect();
    let named = compile_names(&names, arch)?;
    let mut program = prologue(names.contains("unshare"));
    program.extend(named);
    Ok(program)
}

/// Installs `filter` on the calling thread (after `PR_SET_NO_NEW_PRIVS`,
/// which the kernel requires of an unprivileged caller). Applies to
/// everything the thread later executes.
pub fn install(filter: &BpfProgram) -> Result<(), SeccompError> {
    seccompiler::apply_filter(filter).map_err(SeccompError::Install)
}

fn target_arch() -> Result<TargetArch, SeccompError> {
    match ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        other => Err(SeccompError::UnsupportedArch(other)),
    }
}

/// Compiles the named part of the filter with seccompiler, which knows the
/// system call numbers of each architecture by name.
fn compile_names(names: &BTreeSet<&str>, arch: TargetArch) -> Result<BpfProgram, SeccompError> {
    match compile_json(names, arch) {
        Ok(program) => Ok(program),
        Err(e) => {
            // seccompiler's error for a bad name is not a public type; find
            // the culprit by compiling the names one at a time.
            let bad = names
                .iter()
                .find(|name| compile_json(&BTreeSet::from([**name]), arch).is_err());
            Err(match bad {
                Some(name) => SeccompError::UnknownSyscall {
                    name: (*name).to_string(),
                    arch: ARCH,
                },
                None => SeccompError::Build(e),
            })
        }
    }
}

fn compile_json(
    names: &BTreeSet<&str>,
    arch: TargetArch,
) -> Result<BpfProgram, seccompiler::Error> {
    let rules: Vec<_> = names
        .iter()
        .map(|name| json!({ "syscall": name }))
        .collect();
    let doc = json!({
        "job": {
            "mismatch_action": "allow",
            "match_action": { "errno": libc::EPERM },
            "filter": rules,
        }
    });
    let mut map = seccompiler::compile_from_json(doc.to_string().as_bytes(), arch)?;
    Ok(map
        .remove("job")
        .expect("the filter compiled under the name it was given"))
}

// Offsets into `struct seccomp_data` (linux/seccomp.h).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The low 32 bits of the first argument (little-endian); clone's flags all
/// live there.
const DATA_ARG0_LO: u32 = 16;

/// `__X32_SYSCALL_BIT`: set in the numbers of x32 system calls.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The namespace flags of clone(2) (`CLONE_NEWTIME` is only valid for
/// unshare and clone3, both handled separately).
const CLONE_NEW_NAMESPACES: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

/// `AUDIT_ARCH_*` of this build (linux/audit.h: machine | 64-bit | little-endian).
fn audit_arch() -> u32 {
    const AUDIT_64BIT_LE: u32 = 0x8000_0000 | 0x4000_0000;
    const EM_X86_64: u32 = 62;
    const EM_AARCH64: u32 = 183;
    if ARCH == "x86_64" {
        EM_X86_64 | AUDIT_64BIT_LE
    } else {
        EM_AARCH64 | AUDIT_64BIT_LE
    }
}

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn ret_errno(errno: i32) -> sock_filter {
    stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
    )
}

/// The hand-written start of every filter: the rules seccompiler cannot
/// express (several actions in one filter, bit tests, number ranges). Each
/// block either returns or falls through to the next; the last one falls
/// through into seccompiler's program, which loads what it needs itself.
fn prologue(deny_namespaces: bool) -> BpfProgram {
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let mut p = vec![
        // The numbers below mean something only for the native ABI.
        stmt(ld, DATA_ARCH),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            audit_arch(),
            1,
            0,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(ld, DATA_NR),
    ];
    if ARCH == "x86_64" {
        p.extend([
            jump(
                libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
                X32_SYSCALL_BIT,
                0,
                1,
            ),
            ret_errno(libc::EPERM),
        ]);
    }
    if deny_namespaces {
        p.extend([
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                libc::SYS_clone3 as u32,
                0,
                1,
            ),
            ret_errno(libc::ENOSYS),
            // Not clone: skip the three instructions of the flag test.
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                libc::SYS_clone as u32,
                0,
                3,
            ),
            stmt(ld, DATA_ARG0_LO),
            jump(
                libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
                CLONE_NEW_NAMESPACES,
                0,
                1,
            ),
            ret_errno(libc::EPERM),
        ]);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_list_builds() {
        let deny = owned(&default_deny());
        let program = build_filter(&deny).expect("the default list compiles");
        // The prologue plus at least one comparison per name.
        assert!(program.len() > deny.len());
        assert!(program.len() < 4096, "the kernel refuses longer programs");
    }

    #[test]
    fn unknown_name_is_rejected_by_name() {
        let err = build_filter(&owned(&["mount", "no_such_call", "ptrace"])).unwrap_err();
        match &err {
            SeccompError::UnknownSyscall { name, .. } => assert_eq!(name, "no_such_call"),
            other => panic!("wrong error: {other}"),
        }
        assert!(err.to_string().contains("`no_such_call`"), "{err}");
    }

    #[test]
    fn empty_list_still_builds() {
        let program = build_filter(&[]).expect("an empty list compiles");
        assert!(!program.is_empty());
    }

    #[test]
    fn duplicates_are_harmless() {
        build_filter(&owned(&["mount", "mount"])).expect("duplicates compile");
    }

    #[test]
    fn namespace_rules_follow_unshare() {
        let with = build_filter(&owned(&["unshare"])).unwrap();
        let without = build_filter(&owned(&["setns"])).unwrap();
        assert!(with.len() > without.len());
    }

    /// Runs the filter for real in a child process (fork keeps the test
    /// runner's threads out of it).
    #[test]
    fn filter_refuses_listed_calls_only() {
        let filter = build_filter(&owned(&default_deny())).unwrap();
        // SAFETY: the child only makes system calls and exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = if install(&filter).is_err() {
                    10
                } else {
                    child_checks()
                };
                // SAFETY: leaving the forked child without running the
                // parent's atexit handlers or destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "see child_checks for the failing step"
                );
            }
        }
    }

    /// 0 when the filter behaves; otherwise the number of the failed check.
    fn child_checks() -> i32 {
        let errno = || std::io::Error::last_os_error().raw_os_error();
        // SAFETY: plain system calls with valid (or null) arguments.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUSER) != -1 || errno() != Some(libc::EPERM) {
                return 1;
            }
            let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
            if libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) != -1
                || errno() != Some(libc::EPERM)
            {
                return 2;
            }
            if libc::syscall(libc::SYS_clone3, 0, 0) != -1 || errno() != Some(libc::ENOSYS) {
                return 3;
            }
            if libc::getpid() <= 0 {
                return 4;
            }
            if ARCH == "x86_64"
                && (libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long) != -1
                    || errno() != Some(libc::EPERM))
            {
                return 5;
            }
            // A plain fork (clone without namespace flags) still works.
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            if pid < 0 {
                return 6;
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
        0
    }
}
