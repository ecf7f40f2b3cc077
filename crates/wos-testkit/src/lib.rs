//! Test harness: a cell of real `wos` processes, each a separate host.
//!
//! As root (CI), every node runs in its own network namespace, joined to the
//! others by a veth pair on a bridge in a "switch" namespace; partitioning a
//! node takes its link down. Otherwise nodes run on loopback ports and
//! partitions are unavailable ([`Cell::can_partition`]).
//!
//! Every loop here is bounded in time; every process and namespace is removed
//! on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;

mod mount;
pub use mount::{Mount, can_mount, mounted};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where the nodes of a test cell live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One network namespace per node (needs root and `ip`).
    Netns { switch: String },
    /// Loopback ports.
    Loopback,
}

pub struct Host {
    pub name: String,
    /// `ip:port` of its API.
    pub addr: String,
    pub data: PathBuf,
    pub netns: Option<String>,
    /// The switch-side end of its link (netns mode).
    link: Option<String>,
    log: PathBuf,
    child: Option<Child>,
}

pub struct Cell {
    pub mode: Mode,
    pub bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub hosts: Vec<Host>,
    pub admin: PathBuf,
    pub token: String,
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// True when namespaces can be used: root and `ip` present.
pub fn netns_available() -> bool {
    nix::unistd::geteuid().is_root()
        && Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn free_loopback_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cell {
    /// Prepares `n` hosts (namespaces or loopback addresses) without starting anything.
    pub fn prepare(bin: &Path, n: usize) -> anyhow::Result<Cell> {
        let dir = tempfile::Builder::new().prefix("wos-test-").tempdir()?;
        let tag = format!(
            "w{}x{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mode = if netns_available() {
            Mode::Netns {
                switch: format!("{tag}s"),
            }
        } else {
            Mode::Loopback
        };
        let mut cell = Cell {
            mode: mode.clone(),
            bin: bin.to_path_buf(),
            admin: dir.path().join("admin.identity"),
            dir,
            hosts: Vec::new(),
            token: String::new(),
        };
        if let Mode::Netns { switch } = &mode {
            ip(&["netns", "add", switch])?;
            ip(&["-n", switch, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", switch, "link", "set", "br0", "up"])?;
        }
        for i in 1..=n {
            let name = format!("node-{i}");
            let data = cell.dir.path().join(&name);
            let log = cell.dir.path().join(format!("{name}.log"));
            let host = match &mode {
                Mode::Netns { switch } => {
                    let ns = format!("{tag}n{i}");
                    let link = format!("v{i}");
                    ip(&["netns", "add", &ns])?;
                    ip(&[
                        "-n", switch, "link", "add", &link, "type", "veth", "peer", "name", "eth0",
                        "netns", &ns,
                    ])?;
                    ip(&["-n", switch, "link", "set", &link, "master", "br0", "up"])?;
                    let addr = format!("10.77.0.{}", i + 1);
                    ip(&[
                        "-n",
                        &ns,
                        "addr",
                        "add",
                        &format!("{addr}/24"),
                        "dev",
                        "eth0",
                    ])?;
                    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
                    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
                    Host {
                        name,
                        addr: format!("{addr}:7700"),
                        data,
                        netns: Some(ns),
                        link: Some(link),
                        log,
                        child: None,
                    }
                }
                Mode::Loopback => Host {
                    name,
                    addr: format!("127.0.0.1:{}", free_loopback_port()),
                    data,
                    netns: None,
                    link: None,
                    log,
                    child: None,
                },
            };
            cell.hosts.push(host);
        }
        Ok(cell)
    }

    /// Starts a cell of `n` nodes, the first `cores` of them core, and waits
    /// until every node lists every other as alive (at most 30 s).
    pub fn start(bin: &Path, n: usize, cores: usize) -> anyhow::Result<Cell> {
        let mut cell = Cell::prepare(bin, n)?;
        cell.init_first()?;
        cell.start_node(0)?;
        cell.wait_api(0, Duration::from_secs(15))?;
        for i in 1..n {
            cell.join_node(i, i < cores)?;
        }
        cell.wait_all_alive(Duration::from_secs(30))
            .ok_or_else(|| anyhow!("cell did not form within 30 s; logs:\n{}", cell.logs()))?;
        Ok(cell)
    }

    /// `wos cell init` for node-1.
    pub fn init_first(&mut self) -> anyhow::Result<()> {
        let h = &self.hosts[0];
        let out = run(Command::new(&self.bin)
            .args([
                "cell",
                "init",
                "--name",
                "test",
                "--node-name",
                &h.name,
                "--listen",
                &h.addr,
            ])
            .arg("--data")
            .arg(&h.data)
            .arg("--identity-out")
            .arg(&self.admin)
            .env("HOME", self.dir.path()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        self.token = stdout.lines().last().unwrap_or_default().trim().to_string();
        Ok(())
    }

    /// A command for the `wos` binary on host `i`. `nsenter` enters only
    /// the host's network namespace: `ip netns exec` would also remount
    /// `/sys`, hiding the cgroup hierarchies that jobs need.
    pub fn command_in(&self, i: usize) -> Command {
        match &self.hosts[i].netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        }
    }

    /// The CLI on host `via` against that host's node with `identity`, not
    /// yet started (for tests that pipe stdin or send signals).
    pub fn wos_command(&self, via: usize, identity: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command_in(via);
        cmd.arg("--cell")
            .arg(&self.hosts[via].addr)
            .arg("--identity")
            .arg(identity)
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("WOS_CELL")
            .env_remove("WOS_IDENTITY")
            .current_dir(self.dir.path());
        cmd
    }

    fn spawn_agent(&mut self, i: usize, extra: &[String]) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.hosts[i].log)?;
        let mut cmd = self.command_in(i);
        cmd.arg("agent")
            .arg("--data")
            .arg(&self.hosts[i].data)
            .args(extra);
        cmd.env("RUST_LOG", "info,openraft=warn")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("spawning wos agent")?;
        self.hosts[i].child = Some(child);
        Ok(())
    }

    /// Starts (or restarts) node `i` from its data directory.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn_agent(i, &[])
    }

    /// Starts node `i` for the first time, joining the cell through node-1.
    pub fn join_node(&mut self, i: usize, core: bool) -> anyhow::Result<()> {
        let mut extra = vec![
            "--listen".to_string(),
            self.hosts[i].addr.clone(),
            "--join".into(),
            self.hosts[0].addr.clone(),
            "--token".into(),
            self.token.clone(),
            "--name".into(),
            self.hosts[i].name.clone(),
        ];
        if core {
            extra.push("--core".into());
        }
        self.spawn_agent(i, &extra)
    }

    /// Runs any program on host `i` (inside its namespace).
    pub fn exec(&self, i: usize, program: &str, args: &[&str]) -> Output {
        let mut cmd = match &self.hosts[i].netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .args(["--", program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("running a program on a host")
    }

    /// Writes the PEM files of an identity (cert, key, CA) next to it.
    pub fn pem_files(&self, identity: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
        let id = wos_api::Identity::load(identity)?;
        let base = identity.with_extension("");
        let cert = base.with_extension("crt.pem");
        let key = base.with_extension("key.pem");
        let ca = self.dir.path().join("ca.pem");
        std::fs::write(&cert, id.cert)?;
        std::fs::write(&key, id.key)?;
        std::fs::write(&ca, id.ca_cert)?;
        Ok((cert, key, ca))
    }
    /// The value of one Prometheus series (`name`, or `name{labels}`) in
    /// node `via`'s `/metrics`; 0 when the node has not counted any yet.
    pub fn counter(&self, via: usize, series: &str) -> u64 {
        let (code, body) = self.curl(via, Some(&self.admin), "GET", "/metrics", &[]);
        assert_eq!(code, 200, "/metrics on node {via}: {body}");
        let prefix = format!("{series} ");
        body.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |v| v.trim().parse::<f64>().expect("a number") as u64)
    }

    /// An HTTPS request with curl from host `via` to its node, verifying the
    /// node certificate against the cell CA; with `identity`, presents its
    /// client certificate. Returns (HTTP status, body).
    pub fn curl(
        &self,
        via: usize,
        identity: Option<&Path>,
        method: &str,
        path: &str,
        extra: &[&str],
    ) -> (u16, String) {
        let admin_pems = self.pem_files(&self.admin).expect("admin PEM files");
        let (host, port) = self.hosts[via].addr.rsplit_once(':').expect("host:port");
        let resolve = format!("node.wos.internal:{port}:{host}");
        let url = format!("https://node.wos.internal:{port}{path}");
        let mut args: Vec<String> = vec![
            "-s".into(),
            "-o".into(),
            "-".into(),
            "-w".into(),
            "
%{http_code}"
                .into(),
            "--max-time".into(),
            "20".into(),
            "-X".into(),
            method.into(),
            "--resolve".into(),
            resolve,
            "--cacert".into(),
            admin_pems.2.display().to_string(),
        ];
        if let Some(id) = identity {
            let (cert, key, _) = self.pem_files(id).expect("PEM files");
            args.extend([
                "--cert".into(),
                cert.display().to_string(),
                "--key".into(),
                key.display().to_string(),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(url);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.exec(via, "curl", &argv);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Runs the CLI on host `via` against that host's node, as admin.
    pub fn wos(&self, via: usize, args: &[&str]) -> Output {
        self.wos_as(via, &self.admin, args)
    }

    /// Runs the CLI on host `via` against that host's node with `identity`.
    pub fn wos_as(&self, via: usize, identity: &Path, args: &[&str]) -> Output {
        self.wos_command(via, identity, args)
            .output()
            .expect("running the wos CLI")
    }

    /// Runs a CLI command that prints JSON and parses it; `None` if it failed.
    pub fn wos_json<T: DeserializeOwned>(&self, via: usize, args: &[&str]) -> Option<T> {
        let out = self.wos(via, args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The nodes as host `via` lists them.
    pub fn node_ls(&self, via: usize) -> Option<Vec<wos_api::NodeInfo>> {
        self.wos_json(via, &["node", "ls", "--json"])
    }

    pub fn status(&self, via: usize) -> Option<wos_api::Status> {
        self.wos_json(via, &["status", "--json"])
    }

    /// State of node `name` as host `via` sees it.
    pub fn state_seen(&self, via: usize, name: &str) -> Option<wos_api::NodeState> {
        self.node_ls(via)?
            .into_iter()
            .find(|n| n.name == name)
            .map(|n| n.state)
    }

    /// Waits until the API of node `i` answers.
    pub fn wait_api(&self, i: usize, limit: Duration) -> anyhow::Result<()> {
        wait_for(limit, || self.status(i))
            .map(|_| ())
            .ok_or_else(|| {
                anyhow!(
                    "node {} API not up within {limit:?}; log:\n{}",
                    self.hosts[i].name,
                    self.log(i)
                )
            })
    }

    /// Waits until every running node lists every node as alive; returns the time it took.
    pub fn wait_all_alive(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let n = self.hosts.len();
        wait_for(limit, || {
            let ok = (0..n).all(|i| {
                self.node_ls(i).is_some_and(|ls| {
                    ls.len() == n && ls.iter().all(|x| x.state == wos_api::NodeState::Alive)
                })
            });
            ok.then(|| start.elapsed())
        })
    }

    pub fn pid(&self, i: usize) -> Option<Pid> {
        self.hosts[i]
            .child
            .as_ref()
            .map(|c| Pid::from_raw(c.id() as i32))
    }

    /// SIGKILL node `i` (a crash).
    pub fn crash(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM node `i` and wait for it to stop (a clean shutdown).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT node `i`.
    pub fn pause(&self, i: usize) {
        if let Some(p) = self.pid(i) {
            let _ = kill(p, Signal::SIGSTOP);
        }
    }

    pub fn resume(&self, i: usize) {
        if let Some(p) = self.pid(i) {
            let _ = kill(p, Signal::SIGCONT);
        }
    }

    pub fn can_partition(&self) -> bool {
        matches!(self.mode, Mode::Netns { .. })
    }

    /// Cuts node `i` off the network (its link goes down).
    pub fn partition(&self, i: usize) -> anyhow::Result<()> {
        match (&self.mode, &self.hosts[i].link) {
            (Mode::Netns { switch }, Some(link)) => {
                ip(&["-n", switch, "link", "set", link, "down"])
            }
            _ => bail!("partitions need network namespaces (run as root)"),
        }
    }

    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        match (&self.mode, &self.hosts[i].link) {
            (Mode::Netns { switch }, Some(link)) => ip(&["-n", switch, "link", "set", link, "up"]),
            _ => bail!("partitions need network namespaces (run as root)"),
        }
    }

    /// Index of the host named `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .expect("known host")
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.hosts[i].log).unwrap_or_default()
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let log = self.log(i);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            s.push_str(&format!("--- {} ---\n", h.name));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.resume(i);
            self.crash(i);
        }
        if let Mode::Netns { switch } = &self.mode {
            for h in &self.hosts {
                if let Some(ns) = &h.netns {
                    let _ = ip(&["netns", "del", ns]);
                }
            }
            let _ = ip(&["netns", "del", switch]);
        }
    }
}

/// A program's output as text (lossy), for messages and comparisons.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stdout of a command that must have succeeded (panics with both
/// streams otherwise).
pub fn expect_ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed ({:?}): {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Deterministic pseudo-random bytes (xorshift) that do not repeat within a
/// WebFS chunk, so that tests can regenerate what they wrote.
pub fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
