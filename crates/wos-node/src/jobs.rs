//! The job manager of a node: admits jobs under the owner's policy, records
//! them in the cell's metadata, starts them in the sandbox (`wos jail`),
//! keeps their output, delivers signals, and records how they ended.
//!
//! A job's output goes to `jobs/ID/output` in the data directory, as the same
//! frames the API streams ([`wos_api::jobs`]), so that an attached client, a
//! later `wos logs` and `wos logs -f` all read one file. Readers follow the
//! file through a watch of its length; nothing is held in memory.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use wos_api::jobs::{FrameKind, HEARTBEAT_MS};
use wos_api::{JobInfo, JobKind, JobLimits, JobState, JobUsage, RunRequest, encode_frame};
use wos_exec::cgroup::{Cgroup, Hierarchy, Limits};
use wos_exec::policy::{Ask, InUse, Policy};
use wos_exec::{Bind, JailSpec, NetMode};
use wos_meta::{Command, Outcome};

use crate::api::ApiError;
use crate::ctx::NodeCtx;
use crate::now_millis;

/// Signals a client may send to a job, by name.
pub const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("WINCH", libc::SIGWINCH),
];

pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

pub fn signal_name(sig: i32) -> String {
    SIGNALS
        .iter()
        .find(|(_, s)| *s == sig)
        .map(|(n, _)| n.to_string())
        .or_else(|| {
            nix::sys::signal::Signal::try_from(sig)
                .ok()
                .map(|s| s.as_str().trim_start_matches("SIG").to_string())
        })
        .unwrap_or_else(|| sig.to_string())
}

/// Input for a running job's stdin.
pub enum StdinMsg {
    Data(Vec<u8>),
    Eof,
}

/// A job running on this node.
pub struct Running {
    pub info: JobInfo,
    /// The jailer's pid (the job's outermost process).
    pid: u32,
    stdin: Mutex<Option<mpsc::Sender<StdinMsg>>>,
    output: PathBuf,
    /// Bytes in the output file so far.
    written: watch::Sender<u64>,
    /// The final record, once the job ended (and the cell recorded it).
    done: watch::Sender<Option<JobInfo>>,
    /// Who sent the last signal, to explain a death by signal.
    signaled_by: Mutex<Option<(i32, String)>>,
}

impl Running {
    /// Queues bytes for the job's stdin (dropped when stdin is closed).
    pub async fn stdin(&self, msg: StdinMsg) {
        let tx = self.stdin.lock().expect("stdin lock").clone();
        if let Some(tx) = tx {
            let eof = matches!(msg, StdinMsg::Eof);
            let _ = tx.send(msg).await;
            if eof {
                self.stdin.lock().expect("stdin lock").take();
            }
        }
    }

    /// Delivers `sig` to the job; `who` is recorded to explain the ending.
    pub fn signal(&self, sig: i32, who: &str) -> Result<(), String> {
        if self.done.borrow().is_some() {
            return Err(format!("job {} has already ended", self.info.id));
        }
        *self.signaled_by.lock().expect("signal lock") = Some((sig, who.to_string()));
        // The jailer forwards catchable signals to the program; SIGKILL ends
        // the jailer, and with it (parent-death signals) the whole sandbox.
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let signal = nix::sys::signal::Signal::try_from(sig).map_err(|e| e.to_string())?;
        nix::sys::signal::kill(pid, signal).map_err(|e| format!("signalling the job: {e}"))
    }

    pub fn done(&self) -> watch::Receiver<Option<JobInfo>> {
        self.done.subscribe()
    }

    /// The job's output as frames, from `offset` on: output, heartbeats
    /// while it runs, and the Exit frame at the end (when `follow`). Without
    /// `follow`, what has been written so far.
    pub fn frames(self: &Arc<Self>, follow: bool) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(16);
        let job = self.clone();
        tokio::spawn(async move { job.feed(tx, follow).await });
        rx
    }

    async fn feed(self: Arc<Self>, tx: mpsc::Sender<Vec<u8>>, follow: bool) {
        let mut written = self.written.subscribe();
        let mut done = self.done.subscribe();
        let mut offset = 0u64;
        loop {
            let end = *written.borrow_and_update();
            if offset < end {
                match read_range(&self.output, offset, end) {
                    Ok(bytes) => {
                        offset = end;
                        if tx.send(bytes).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let msg = format!("reading the job's output: {e}");
                        let _ = tx
                            .send(encode_frame(FrameKind::Error, msg.as_bytes()))
                            .await;
                        return;
                    }
                }
                continue;
            }
            let finished = done.borrow_and_update().clone();
            if let Some(info) = finished {
                // Everything written before the end was recorded is read.
                if offset < *written.borrow() {
                    continue;
                }
                if follow {
                    let json = serde_json::to_vec(&info).expect("job info encodes");
                    let _ = tx.send(encode_frame(FrameKind::Exit, &json)).await;
                }
                return;
            }
            if !follow {
                return;
            }
            tokio::select! {
                _ = written.changed() => {}
                _ = done.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS)) => {
                    if tx.send(encode_frame(FrameKind::Heartbeat, b"")).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn read_range(path: &Path, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    Ok(buf)
}

/// What a start produced.
pub enum Started {
    New(Arc<Running>),
    /// The idempotency key was used before: this is that job.
    Existing(Box<JobInfo>),
}

/// The jobs of this node.
pub struct Jobs {
    node: String,
    dir: PathBuf,
    data: PathBuf,
    exe: PathBuf,
    cgroups: Result<Hierarchy, String>,
    running: Mutex<HashMap<String, Arc<Running>>>,
    /// Resources promised to admitted jobs.
    in_use: Mutex<InUse>,
    count: Arc<AtomicU32>,
}

impl Jobs {
    pub fn new(node: &str, data: &Path, count: Arc<AtomicU32>) -> Jobs {
        let cgroups = Hierarchy::detect().map_err(|e| e.to_string());
        if let Err(e) = &cgroups {
            tracing::warn!("jobs cannot run on this node: {e}");
        }
        Jobs {
            node: node.to_string(),
            dir: data.join("jobs"),
            data: data.to_path_buf(),
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("wos")),
            cgroups,
            running: Mutex::new(HashMap::new()),
            in_use: Mutex::new(InUse::default()),
            count,
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Running>> {
        self.running.lock().expect("jobs lock").get(id).cloned()
    }

    /// The output file of a job that ran here (running or ended).
    pub fn output_path(&self, id: &str) -> Option<PathBuf> {
        let path = self.dir.join(id).join("output");
        path.exists().then_some(path)
    }

    pub fn policy(&self) -> Result<Policy, ApiError> {
        Policy::load(&self.data.join("policy.toml"))
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
    }

    /// Admits, records and starts `req` for `owner` on this node.
    pub async fn start(
        self: &Arc<Self>,
        ctx: &Arc<NodeCtx>,
        req: RunRequest,
        owner: &str,
    ) -> Result<Started, ApiError> {
        check_request(&req)?;
        let t0 = std::time::Instant::now();
        let hierarchy = self.cgroups.as_ref().map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("node {} cannot run jobs: {e}", self.node),
            )
        })?;
        let policy = self.policy()?.exec;
        let limits = JobLimits {
            cpu_millis: Some(
                req.limits
                    .cpu_millis
                    .unwrap_or((policy.default_cpu * 1000.0) as u32),
            ),
            memory_bytes: Some(req.limits.memory_bytes.unwrap_or(policy.default_memory.0)),
            pids: Some(req.limits.pids.unwrap_or(policy.default_pids)),
            cpu_seconds: req.limits.cpu_seconds,
        };
        let host_net = req.net.as_deref() == Some("host");
        let groups = ctx.meta.read(|s| {
            s.groups
                .iter()
                .filter(|(_, members)| members.contains(owner))
                .map(|(g, _)| format!("group:{g}"))
                .collect::<Vec<_>>()
        });
        let ask = Ask {
            principal: owner,
            groups: &groups,
            cpu_millis: limits.cpu_millis.unwrap_or(1000),
            memory: limits.memory_bytes.unwrap_or(0),
            pids: limits.pids.unwrap_or(0),
            host_net,
        };
        self.reserve(&policy, &ask)?;
        let reservation = Reservation {
            jobs: self.clone(),
            cpu: ask.cpu_millis as u64,
            memory: ask.memory,
        };
        let info = JobInfo {
            id: new_job_id(),
            owner: owner.to_string(),
            node: self.node.clone(),
            kind: req.kind,
            argv: req.argv.clone(),
            limits: limits.clone(),
            started_ms: now_millis(),
            ended_ms: None,
            state: JobState::Running,
            usage: None,
        };
        // The sandbox is built while the cell records the job; the program
        // starts only once the record (and its idempotency key) is
        // committed, so a start is never run twice and never runs unrecorded.
        let cmd = Command::JobStart {
            job: info.clone(),
            key: req.idempotency_key.clone(),
        };
        // The write is polled first, so its request is on its way before
        // the sandbox work occupies this thread.
        let ((outcome, recorded), (prepared, built)) =
            tokio::join!(async { (ctx.meta.write(cmd).await, t0.elapsed()) }, async {
                let p = self.prepare(&req, &info, &limits, &policy, hierarchy).await;
                (p, t0.elapsed())
            });
        let outcome = outcome.map(|w| w.outcome);
        let prepared = match prepared {
            Ok(p) => p,
            Err(reason) => {
                return match outcome {
                    // The key was used before: that job stands.
                    Ok(Outcome::Job {
                        job,
                        existing: true,
                    }) => Ok(Started::Existing(job)),
                    // Recorded but impossible to start here: say so.
                    Ok(Outcome::Job { .. }) => {
                        let state = JobState::Failed {
                            reason: reason.clone(),
                        };
                        record_end(ctx, &info.id, state, None).await;
                        Err(ApiError::new(StatusCode::BAD_REQUEST, reason))
                    }
                    _ => Err(ApiError::new(StatusCode::BAD_REQUEST, reason)),
                };
            }
        };
        let refusal = match outcome {
            Ok(Outcome::Job {
                existing: false, ..
            }) => {
                let job = self.open(ctx, prepared, info, reservation, req.attach);
                tracing::debug!(
                    job = %job.info.id,
                    recorded_ms = recorded.as_secs_f64() * 1000.0,
                    built_ms = built.as_secs_f64() * 1000.0,
                    started_ms = t0.elapsed().as_secs_f64() * 1000.0,
                    "job started"
                );
                return Ok(Started::New(job));
            }
            Ok(Outcome::Job {
                job,
                existing: true,
            }) => {
                prepared.cancel(self.dir.join(&info.id));
                return Ok(Started::Existing(job));
            }
            Ok(Outcome::Rejected { reason }) => {
                ApiError::new(StatusCode::CONFLICT, reason.to_string())
            }
            Ok(other) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{other:?}")),
            Err(e) => e.into(),
        };
        prepared.cancel(self.dir.join(&info.id));
        Err(refusal)
    }

    fn reserve(&self, policy: &wos_exec::policy::ExecPolicy, ask: &Ask) -> Result<(), ApiError> {
        let mut in_use = self.in_use.lock().expect("in-use lock");
        policy.admit(ask, *in_use).map_err(|r| {
            let status = if r.capacity {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::FORBIDDEN
            };
            ApiError::new(
                status,
                format!("node {} refuses the job: {}", self.node, r.reason),
            )
        })?;
        in_use.cpu_millis += ask.cpu_millis as u64;
        in_use.memory += ask.memory;
        in_use.jobs += 1;
        self.count.store(in_use.jobs, Ordering::Relaxed);
        Ok(())
    }

    /// Creates the job's directory and cgroup and starts the jailer, which
    /// builds the sandbox and then waits at its start gate.
    async fn prepare(
        &self,
        req: &RunRequest,
        info: &JobInfo,
        limits: &JobLimits,
        policy: &wos_exec::policy::ExecPolicy,
        hierarchy: &Hierarchy,
    ) -> Result<Prepared, String> {
        let t = std::time::Instant::now();
        let job_dir = self.dir.join(&info.id);
        let root = job_dir.join("root");
        std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        let output = job_dir.join("output");
        let out_file =
            std::fs::File::create(&output).map_err(|e| format!("creating the output file: {e}"))?;
        let cg_limits = Limits {
            cpu: limits.cpu_millis.map(|m| m as f64 / 1000.0),
            memory: limits.memory_bytes,
            pids: limits.pids,
        };
        let cgroup = hierarchy
            .create(&format!("wos-{}", self.node), &info.id, &cg_limits)
            .map_err(|e| format!("creating the job's cgroup: {e}"))?;
        let cgroup_ms = t.elapsed().as_secs_f64() * 1000.0;
        let (gate_read, gate_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => {
                cgroup.remove();
                return Err(format!("making the start gate: {e}"));
            }
        };
        let mut spec = match self.jail_spec(req, info, policy, &root, &cgroup).await {
            Ok(s) => s,
            Err(e) => {
                cgroup.remove();
                return Err(e);
            }
        };
        spec.start_gate = Some(gate_read.as_raw_fd());
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("jail")
            .env_clear()
            .env(
                wos_exec::SPEC_ENV,
                serde_json::to_string(&spec).expect("spec encodes"),
            )
            .stdin(if req.attach {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // The jailer inherits the gate's read end under its own number. No
        // pre-exec hook: that keeps the spawn a vfork-like posix_spawn, where
        // a fork would copy the node's page tables and stall its other
        // threads. Another child spawned meanwhile may inherit the read end
        // too, which is harmless: only write ends decide when a reader sees
        // the end, and the jailer closes strays before the program starts.
        if let Err(e) = nix::fcntl::fcntl(
            &gate_read,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        ) {
            cgroup.remove();
            return Err(format!("passing the start gate: {e}"));
        }
        let spec_ms = t.elapsed().as_secs_f64() * 1000.0;
        let child = cmd.spawn();
        drop(gate_read);
        tracing::debug!(
            cgroup_ms,
            spec_ms,
            spawned_ms = t.elapsed().as_secs_f64() * 1000.0,
            "sandbox prepared"
        );
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                cgroup.remove();
                return Err(format!(
                    "starting the sandbox ({}): {e}",
                    self.exe.display()
                ));
            }
        };
        Ok(Prepared {
            child,
            cgroup,
            gate: std::fs::File::from(gate_write),
            output,
            out_file,
        })
    }

    /// Opens the start gate of a recorded job and follows it to its end.
    fn open(
        self: &Arc<Self>,
        ctx: &Arc<NodeCtx>,
        prepared: Prepared,
        info: JobInfo,
        reservation: Reservation,
        attach: bool,
    ) -> Arc<Running> {
        let Prepared {
            mut child,
            cgroup,
            mut gate,
            output,
            out_file,
        } = prepared;
        let pid = child.id().unwrap_or(0);
        let (stdin_tx, stdin_rx) = mpsc::channel(8);
        let job = Arc::new(Running {
            info: info.clone(),
            pid,
            stdin: Mutex::new(attach.then_some(stdin_tx)),
            output,
            written: watch::channel(0).0,
            done: watch::channel(None).0,
            signaled_by: Mutex::new(None),
        });
        self.running
            .lock()
            .expect("jobs lock")
            .insert(info.id.clone(), job.clone());
        // A failed write means the jailer is gone; its end is seen below.
        let _ = std::io::Write::write_all(&mut gate, b"g");
        drop(gate);
        if let Some(stdin) = child.stdin.take() {
            tokio::spawn(pump_stdin(stdin, stdin_rx));
        }
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let pump = tokio::spawn(pump_output(
            stdout,
            stderr,
            out_file,
            job.written.clone(),
            std::time::Instant::now(),
        ));
        let jobs = self.clone();
        let ctx = ctx.clone();
        let running = job.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let exited = std::time::Instant::now();
            // The pipes close when the whole sandbox has exited.
            let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
            // Reading, draining and removing cgroups may wait (rmdir retries
            // while the kernel reaps): not on the async workers.
            let usage = tokio::task::spawn_blocking(move || {
                let usage = cgroup.usage();
                cgroup.kill_all();
                cgroup.remove();
                usage
            })
            .await
            .unwrap_or_default();
            drop(reservation);
            let state = ending(&running, status, &usage, &running.info.limits);
            let usage = JobUsage {
                cpu_millis: (usage.cpu_seconds * 1000.0) as u64,
                peak_memory_bytes: usage.peak_memory,
            };
            let mut fin = running.info.clone();
            fin.state = state.clone();
            fin.ended_ms = Some(now_millis());
            fin.usage = Some(usage.clone());
            let cleaned = exited.elapsed();
            // Attached clients learn the end at once; the cell's record
            // follows within a metadata write (a few ms). The job stays in
            // the running table until then, so its output stays readable.
            let id = fin.id.clone();
            running.done.send_replace(Some(fin));
            record_end(&ctx, &id, state, Some(usage)).await;
            tracing::debug!(
                job = %id,
                cleanup_ms = cleaned.as_secs_f64() * 1000.0,
                recorded_ms = exited.elapsed().as_secs_f64() * 1000.0,
                "job ended"
            );
            jobs.running.lock().expect("jobs lock").remove(&id);
        });
        job
    }

    async fn jail_spec(
        &self,
        req: &RunRequest,
        info: &JobInfo,
        policy: &wos_exec::policy::ExecPolicy,
        root: &Path,
        cgroup: &Cgroup,
    ) -> Result<JailSpec, String> {
        let mut binds: Vec<Bind> = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"]
            .iter()
            .filter(|p| Path::new(p).exists())
            .map(|p| Bind {
                host: PathBuf::from(p),
                inside: PathBuf::from(p),
                readonly: true,
            })
            .collect();
        let files = self.files_dir(policy)?;
        binds.push(Bind {
            host: files,
            inside: PathBuf::from("/wos"),
            readonly: false,
        });
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_string(),
            ),
            ("HOME".to_string(), "/tmp".to_string()),
            ("WOS_JOB".to_string(), info.id.clone()),
            ("WOS_NODE".to_string(), self.node.clone()),
        ];
        let mut argv = req.argv.clone();
        if req.kind == JobKind::Wasm {
            let (runner, module) = self.wasm_module(req).await?;
            binds.push(Bind {
                host: runner,
                inside: PathBuf::from("/.wos-wasm"),
                readonly: true,
            });
            binds.push(Bind {
                host: module,
                inside: PathBuf::from("/.wos-module.cwasm"),
                readonly: true,
            });
            argv = wasm_argv(req, &info.limits);
            env.retain(|(k, _)| k == "PATH");
        } else {
            env.extend(req.env.iter().cloned());
        }
        Ok(JailSpec {
            job_id: info.id.clone(),
            argv,
            env,
            cwd: PathBuf::from(req.dir.as_deref().unwrap_or("/tmp")),
            uid: policy.uid,
            gid: policy.gid,
            hostname: format!("{}.{}", info.id, self.node),
            net: if req.net.as_deref() == Some("host") {
                NetMode::Host
            } else {
                NetMode::None
            },
            root_dir: root.to_path_buf(),
            binds,
            tmp_bytes: policy.tmp_size.0,
            cgroups: cgroup.procs_dirs(),
            seccomp_deny: policy.seccomp_deny(),
            // A WebAssembly job's runner enforces the CPU time itself, with a
            // clearer message; the rlimit is a backstop.
            start_gate: None,
            cpu_seconds: info
                .limits
                .cpu_seconds
                .map(|s| if req.kind == JobKind::Wasm { s + 2 } else { s }),
        })
    }

    /// The directory jobs see at `/wos`: the cell's files. Until WebFS is
    /// mounted here it is this node's own `files/` directory.
    fn files_dir(&self, policy: &wos_exec::policy::ExecPolicy) -> Result<PathBuf, String> {
        use std::os::unix::fs::{PermissionsExt, chown};
        let dir = self.data.join("files");
        if !dir.exists() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let _ = chown(&dir, Some(policy.uid), Some(policy.gid));
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
        Ok(dir)
    }

    /// The runner and the compiled module of a WebAssembly job, compiling
    /// (once per module and node) on a cache miss.
    async fn wasm_module(&self, req: &RunRequest) -> Result<(PathBuf, PathBuf), String> {
        let runner = self.exe.with_file_name("wos-wasm");
        if !runner.exists() {
            return Err(format!(
                "node {} cannot run WebAssembly: {} is not installed",
                self.node,
                runner.display()
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(req.wasm_base64.as_deref().unwrap_or(""))
            .map_err(|e| format!("the module is not valid base64: {e}"))?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let cache = self.data.join("wasm-cache");
        let compiled = cache.join(format!("{hash}.cwasm"));
        if compiled.exists() {
            return Ok((runner, compiled));
        }
        std::fs::create_dir_all(&cache)
            .map_err(|e| format!("creating {}: {e}", cache.display()))?;
        let source = cache.join(format!("{hash}.wasm"));
        std::fs::write(&source, &bytes).map_err(|e| format!("storing the module: {e}"))?;
        let out = tokio::process::Command::new(&runner)
            .arg("compile")
            .arg(&source)
            .arg(&compiled)
            .output()
            .await
            .map_err(|e| format!("running {}: {e}", runner.display()))?;
        let _ = std::fs::remove_file(&source);
        if !out.status.success() {
            return Err(format!(
                "not a runnable WebAssembly program: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok((runner, compiled))
    }

    /// Removes the output of jobs the cell no longer remembers.
    pub fn collect_garbage(&self, known: &dyn Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !known(&name) && self.get(&name).is_none() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A jailer waiting at its start gate.
struct Prepared {
    child: tokio::process::Child,
    cgroup: Cgroup,
    gate: std::fs::File,
    output: PathBuf,
    out_file: std::fs::File,
}

impl Prepared {
    /// The start will not happen: close the gate (the program never runs),
    /// then reap the jailer and remove what was made for it.
    fn cancel(self, job_dir: PathBuf) {
        let Prepared {
            mut child,
            cgroup,
            gate,
            ..
        } = self;
        drop(gate);
        tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = tokio::task::spawn_blocking(move || {
                cgroup.kill_all();
                cgroup.remove();
                let _ = std::fs::remove_dir_all(job_dir);
            })
            .await;
        });
    }
}

/// Gives back what an admitted job held, however it ends.
struct Reservation {
    jobs: Arc<Jobs>,
    cpu: u64,
    memory: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut in_use = self.jobs.in_use.lock().expect("in-use lock");
        in_use.cpu_millis = in_use.cpu_millis.saturating_sub(self.cpu);
        in_use.memory = in_use.memory.saturating_sub(self.memory);
        in_use.jobs = in_use.jobs.saturating_sub(1);
        self.jobs.count.store(in_use.jobs, Ordering::Relaxed);
    }
}

fn wasm_argv(req: &RunRequest, limits: &JobLimits) -> Vec<String> {
    let mut argv = vec!["/.wos-wasm".to_string(), "run".to_string()];
    if let Some(mem) = limits.memory_bytes {
        argv.extend(["--mem".to_string(), mem.to_string()]);
    }
    if let Some(s) = limits.cpu_seconds {
        argv.extend(["--cpu-seconds".to_string(), s.to_string()]);
    }
    argv.extend([
        "--dir".into(),
        "/tmp::/tmp".into(),
        "--dir".into(),
        "/wos::/wos".into(),
    ]);
    for (k, v) in &req.env {
        argv.extend(["--env".to_string(), format!("{k}={v}")]);
    }
    let name = req
        .argv
        .first()
        .cloned()
        .unwrap_or_else(|| "module.wasm".into());
    argv.extend([
        "--argv0".to_string(),
        name,
        "/.wos-module.cwasm".to_string(),
        "--".to_string(),
    ]);
    argv.extend(req.argv.iter().skip(1).cloned());
    argv
}

/// How a job ended, in the cell's terms.
fn ending(
    job: &Running,
    status: std::io::Result<std::process::ExitStatus>,
    usage: &wos_exec::cgroup::Usage,
    limits: &JobLimits,
) -> JobState {
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return JobState::Lost {
                reason: format!("waiting for the sandbox failed: {e}"),
            };
        }
    };
    if let Some(code) = status.code() {
        return JobState::Exited { code };
    }
    let sig = status.signal().unwrap_or(0);
    let reason = if usage.oom_killed {
        format!(
            "memory limit exceeded ({})",
            wos_exec::policy::bytes(limits.memory_bytes.unwrap_or(0))
        )
    } else if sig == libc::SIGXCPU {
        format!(
            "CPU time limit exceeded ({} s)",
            limits.cpu_seconds.unwrap_or(0)
        )
    } else {
        match job.signaled_by.lock().expect("signal lock").as_ref() {
            Some((s, who)) if *s == sig => format!("sent by {who}"),
            _ => String::new(),
        }
    };
    JobState::Signaled {
        signal: signal_name(sig),
        reason,
    }
}

/// Records a job's end in the cell, retrying while the leader is away.
async fn record_end(ctx: &NodeCtx, id: &str, state: JobState, usage: Option<JobUsage>) {
    let cmd = Command::JobEnd {
        id: id.to_string(),
        state,
        ended_ms: now_millis(),
        usage,
    };
    for attempt in 0..10u32 {
        match ctx.meta.write(cmd.clone()).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(job = id, attempt, "recording the job's end: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn pump_stdin(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<StdinMsg>) {
    while let Some(msg) = rx.recv().await {
        match msg {
            StdinMsg::Data(bytes) => {
                if stdin.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            StdinMsg::Eof => return,
        }
    }
}

/// Copies the job's stdout and stderr into the output file as frames. One
/// task reads both, stdout first when both are ready, so that output written
/// in order by the program is recorded in order.
async fn pump_output(
    mut stdout: tokio::process::ChildStdout,
    mut stderr: tokio::process::ChildStderr,
    file: std::fs::File,
    written: watch::Sender<u64>,
    spawned: std::time::Instant,
) {
    let mut out_buf = vec![0u8; 64 << 10];
    let mut err_buf = vec![0u8; 64 << 10];
    let (mut out_open, mut err_open) = (true, true);
    let mut offset = 0u64;
    while out_open || err_open {
        let (kind, n) = tokio::select! {
            biased;
            r = stdout.read(&mut out_buf), if out_open => match r {
                Ok(0) | Err(_) => { out_open = false; continue; }
                Ok(n) => (FrameKind::Stdout, n),
            },
            r = stderr.read(&mut err_buf), if err_open => match r {
                Ok(0) | Err(_) => { err_open = false; continue; }
                Ok(n) => (FrameKind::Stderr, n),
            },
        };
        let data = if kind == FrameKind::Stdout {
            &out_buf[..n]
        } else {
            &err_buf[..n]
        };
        let frame = encode_frame(kind, data);
        // Page-cache writes of a local file: short enough to do inline.
        if let Err(e) = file.write_all_at(&frame, offset) {
            tracing::warn!("recording job output: {e}");
            continue;
        }
        if offset == 0 {
            tracing::debug!(
                after_spawn_ms = spawned.elapsed().as_secs_f64() * 1000.0,
                "first output"
            );
        }
        offset += frame.len() as u64;
        written.send_replace(offset);
    }
}

/// Checks what a client asked for before anything is reserved.
fn check_request(req: &RunRequest) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::new(StatusCode::BAD_REQUEST, m));
    let Some(program) = req.argv.first() else {
        return bad("nothing to run: give a program after --".into());
    };
    if program.is_empty() {
        return bad("the program name is empty".into());
    }
    if req.argv.iter().any(|a| a.contains('\0')) {
        return bad("an argument contains a NUL byte".into());
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return bad(format!("bad environment variable {k:?}: use NAME=VALUE"));
        }
    }
    if let Some(d) = &req.dir
        && (!d.starts_with('/') || d.contains('\0'))
    {
        return bad(format!(
            "--dir {d:?} must be an absolute path inside the sandbox"
        ));
    }
    match req.net.as_deref() {
        None | Some("none") | Some("host") => {}
        Some(other) => return bad(format!("--net {other:?}: use none or host")),
    }
    let l = &req.limits;
    if l.cpu_millis == Some(0) {
        return bad("--cpu must be more than 0".into());
    }
    if l.memory_bytes.is_some_and(|m| m < 4 << 20) {
        return bad("--mem must be at least 4M".into());
    }
    if l.pids == Some(0) {
        return bad("--pids must be at least 1".into());
    }
    if req.kind == JobKind::Wasm && req.wasm_base64.is_none() {
        return bad("a WebAssembly job carries its module (wasm_base64)".into());
    }
    if let Some(k) = &req.idempotency_key
        && (k.is_empty() || k.len() > 128)
    {
        return bad("an idempotency key has 1 to 128 characters".into());
    }
    Ok(())
}

fn new_job_id() -> String {
    let n: u64 = rand::random();
    format!("j{:012x}", n & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("int"), Some(libc::SIGINT));
        assert_eq!(signal_number("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(signal_number("STOP"), None);
        assert_eq!(signal_name(libc::SIGKILL), "KILL");
        assert_eq!(signal_name(libc::SIGXCPU), "XCPU");
    }

    #[test]
    fn bad_requests_are_refused() {
        let ok = RunRequest {
            argv: vec!["true".into()],
            ..Default::default()
        };
        assert!(check_request(&ok).is_ok());
        let cases = [
            RunRequest {
                argv: vec![],
                ..ok.clone()
            },
            RunRequest {
                argv: vec!["a\0b".into()],
                ..ok.clone()
            },
            RunRequest {
                env: vec![("A=B".into(), "c".into())],
                ..ok.clone()
            },
            RunRequest {
                dir: Some("rel".into()),
                ..ok.clone()
            },
            RunRequest {
                net: Some("bridge".into()),
                ..ok.clone()
            },
            RunRequest {
                limits: JobLimits {
                    memory_bytes: Some(1000),
                    ..Default::default()
                },
                ..ok.clone()
            },
            RunRequest {
                kind: JobKind::Wasm,
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(check_request(&c).is_err(), "{c:?}");
        }
    }
}
