//! `wos-exec` owns what happens on the node that executes a job, below the
//! node's job manager:
//!
//! - [`JailSpec`]: everything the jailer needs to build a job's sandbox. The
//!   node writes it; the jailer (`wos jail`, a fresh single-threaded process)
//!   reads it from the environment and never talks to the network.
//! - `jail`: the jailer itself: namespaces, the private root, the
//!   unprivileged uid, no new privileges, seccomp, signal forwarding, and an
//!   exit status that mirrors the program's.
//! - `cgroup`: cgroup v1 and v2 limits and usage (CPU, memory, pids).
//! - `seccomp`: the default deny list and the filter built from it.
//! - `policy`: the node owner's admission policy (`policy.toml`).
//!
//! This crate never depends on the cell (no Raft, no network): it can be
//! tested on its own, as root, with real namespaces and cgroups.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The environment variable that carries a [`JailSpec`] (JSON) to `wos jail`.
pub const SPEC_ENV: &str = "WOS_JAIL_SPEC";

/// Whether a job sees the host's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// A new, empty network namespace (only a loopback device, down).
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// A host directory made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Path on the host.
    pub host: PathBuf,
    /// Absolute path inside the sandbox.
    pub inside: PathBuf,
    /// Read-only (the default for system directories).
    pub readonly: bool,
}

/// What the jailer builds and runs. Written by the node, read by `wos jail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JailSpec {
    /// The job id (used for the hostname and messages).
    pub job_id: String,
    /// Program and arguments. A program without a `/` is looked up in the
    /// sandbox's `PATH`.
    pub argv: Vec<String>,
    /// The program's whole environment (nothing is inherited from the node).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// The unprivileged uid and gid the program runs as (never 0).
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub net: NetMode,
    /// An empty host directory the jailer mounts the new root on.
    pub root_dir: PathBuf,
    /// Directories to bind into the new root: system directories read-only,
    /// the cell's files (`/wos`) read-write.
    pub binds: Vec<Bind>,
    /// Size of the private `/tmp` (a tmpfs), bytes.
    pub tmp_bytes: u64,
    /// cgroup directories the jailer joins before anything else (v1: one
    /// per controller hierarchy; v2: one).
    pub cgroups: Vec<PathBuf>,
    /// System calls the program may not make (they fail with EPERM).
    pub seccomp_deny: Vec<String>,
    /// CPU-time limit in seconds (RLIMIT_CPU: SIGXCPU, then SIGKILL).
    pub cpu_seconds: Option<u64>,
    /// An inherited descriptor the sandbox's init reads one byte from, once
    /// the sandbox is built and before the program starts. End of file
    /// instead cancels the start: the program never runs. The node builds
    /// the sandbox while the cell records the job, and starts the program
    /// only once the record (and its idempotency key) is committed.
    #[serde(default)]
    pub start_gate: Option<i32>,
}

pub mod cgroup;
pub mod jail;
pub mod policy;
pub mod seccomp;
