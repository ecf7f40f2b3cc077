//! Control groups for jobs: limits on CPU, memory and processes, usage
//! afterwards, and a reliable way to kill everything a job started.
//!
//! Both cgroup versions are supported, because nodes are whatever machines
//! their owners have: v2 (one unified tree) when its root offers the `cpu`,
//! `memory` and `pids` controllers, else v1 (one tree per controller, some
//! possibly mounted together such as `cpu,cpuacct`).
//!
//! A job's cgroup is `<mount>/<parent>/<name>` in every hierarchy involved
//! (v1: the cpu, cpuacct, memory, pids and, when mounted, freezer trees;
//! v2: the unified tree), where the node picks `parent` (e.g. `wos-nodeA`)
//! and `name` (the job id). The jailer joins the directories listed by
//! [`Cgroup::procs_dirs`] before it starts anything, so every process of the
//! job, the jailer included, is counted and limited.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long [`Cgroup::kill_all`] and [`Cgroup::remove`] wait for processes to
/// disappear. Killed processes normally vanish within milliseconds; one
/// stuck in uninterruptible sleep (a dead NFS server) may never do so, and
/// the node must not hang on it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);

/// The CFS period used for CPU quotas (the kernel's default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

/// What a job may use. `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// CPU bandwidth in cores (0.5 = half of one core, 2.0 = two cores).
    pub cpu: Option<f64>,
    /// Memory in bytes (RAM; jobs are not allowed to swap instead).
    pub memory: Option<u64>,
    /// Number of processes and threads.
    pub pids: Option<u64>,
}

/// What a job used, read from its cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU time of all its processes (user and system), seconds.
    pub cpu_seconds: f64,
    /// The most memory it held at once, bytes.
    pub peak_memory: u64,
    /// Whether the kernel's OOM killer killed one of its processes.
    pub oom_killed: bool,
    /// The most processes and threads it had at once, when the kernel
    /// reports it (`pids.peak`, Linux 6.1+ on v2, later on v1).
    pub pids_peak: Option<u64>,
}

/// Which cgroup interface the node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What went wrong with cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no usable cgroup hierarchy: {detail}. Jobs need the cpu, cpuacct, memory and pids controllers to be limited and measured: on cgroup v2 enable them at the root (`echo '+cpu +memory +pids' > /sys/fs/cgroup/cgroup.subtree_control`); on cgroup v1 mount the missing ones (e.g. `mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory`)"
    )]
    NoHierarchy { detail: String },
    #[error("invalid cgroup name `{name}`: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("invalid limit: {0}")]
    BadLimit(String),
    #[error(
        "the cgroup {path} already exists and still holds processes: a job with this name is running; kill it or pick another name"
    )]
    Busy { path: PathBuf },
    #[error("creating the cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing `{value}` to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "enabling the cpu, memory and pids controllers in {path}: {source}; a cgroup that holds processes cannot pass controllers to its children (the \"no internal processes\" rule), so give wos a parent cgroup without processes"
    )]
    Delegate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot understand {path}: {what}")]
    Parse { path: PathBuf, what: String },
    #[error(
        "the cgroup {path} still holds processes {pids:?} after SIGKILL; they may be stuck in uninterruptible sleep (state D in /proc/PID/status)"
    )]
    Unkillable { path: PathBuf, pids: Vec<i32> },
}

type Result<T> = std::result::Result<T, CgroupError>;

/// The cgroup hierarchy (or hierarchies, on v1) of this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Hierarchy {
    mounts: Mounts,
}

#[derive(Debug, Clone, PartialEq)]
enum Mounts {
    /// One mount point per controller (equal when mounted together).
    V1(Dirs),
    /// The unified tree's mount point.
    V2(PathBuf),
}

/// One directory per controller. On v2 they are all the same directory; on
/// v1 controllers mounted together share one.
#[derive(Debug, Clone, PartialEq)]
struct Dirs {
    cpu: PathBuf,
    cpuacct: PathBuf,
    memory: PathBuf,
    pids: PathBuf,
    /// v1 only: lets [`Cgroup::kill_all`] stop a fork bomb before killing it.
    freezer: Option<PathBuf>,
}

impl Dirs {
    fn same(dir: PathBuf) -> Dirs {
        Dirs {
            cpu: dir.clone(),
            cpuacct: dir.clone(),
            memory: dir.clone(),
            pids: dir,
            freezer: None,
        }
    }

    fn map(&self, f: impl Fn(&Path) -> PathBuf) -> Dirs {
        Dirs {
            cpu: f(&self.cpu),
            cpuacct: f(&self.cpuacct),
            memory: f(&self.memory),
            pids: f(&self.pids),
            freezer: self.freezer.as_deref().map(f),
        }
    }

    /// Each distinct directory once, in a stable order.
    fn unique(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        let all = [&self.cpu, &self.cpuacct, &self.memory, &self.pids]
            .into_iter()
            .chain(self.freezer.as_ref());
        for dir in all {
            if !out.contains(dir) {
                out.push(dir.clone());
            }
        }
        out
    }
}

impl Hierarchy {
    /// Finds the cgroup mounts of this process in `/proc/self/mountinfo`.
    pub fn detect() -> Result<Hierarchy> {
        let path = Path::new("/proc/self/mountinfo");
        Hierarchy::from_mountinfo(&read(path)?)
    }

    /// The hierarchy described by a mountinfo text (v2 mounts are checked
    /// for their controllers on disk).
    fn from_mountinfo(mountinfo: &str) -> Result<Hierarchy> {
        let mounts: Vec<MountLine> = mountinfo.lines().filter_map(MountLine::parse).collect();
        let mut v2_notes = Vec::new();
        for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
            match v2_controllers(&m.mount_point) {
                Ok(have) if V2_CONTROLLERS.iter().all(|c| have.contains(*c)) => {
                    return Ok(Hierarchy {
                        mounts: Mounts::V2(m.mount_point.clone()),
                    });
                }
                Ok(have) => v2_notes.push(format!(
                    "the cgroup2 mount {} offers only [{}]",
                    m.mount_point.display(),
                    have.into_iter().collect::<Vec<_>>().join(" ")
                )),
                Err(e) => v2_notes.push(e.to_string()),
            }
        }
        v1_dirs(&mounts)
            .map(|dirs| Hierarchy {
                mounts: Mounts::V1(dirs),
            })
            .map_err(|missing| {
                v2_notes.push(format!(
                    "cgroup v1 controller(s) {} not mounted",
                    missing.join(", ")
                ));
                CgroupError::NoHierarchy {
                    detail: v2_notes.join("; "),
                }
            })
    }

    pub fn version(&self) -> Version {
        match self.mounts {
            Mounts::V1(_) => Version::V1,
            Mounts::V2(_) => Version::V2,
        }
    }

    /// Creates (or reuses, if it exists and is empty) the cgroup
    /// `<parent>/<name>` and writes `limits` into it. `parent` may have
    /// several components (`wos/nodeA`); `name` is one.
    ///
    /// Every limit is written, `None` as "unlimited", so that a reused
    /// cgroup never keeps an earlier job's limits.
    pub fn create(&self, parent: &str, name: &str, limits: &Limits) -> Result<Cgroup> {
        let parent = check_parent(parent)?;
        check_component(name)?;
        check_limits(limits)?;
        let cgroup = match &self.mounts {
            Mounts::V1(mounts) => create_v1(mounts, &parent, name)?,
            Mounts::V2(root) => create_v2(root, &parent, name)?,
        };
        let written = match cgroup.version {
            Version::V1 => write_limits_v1(&cgroup.dirs, limits),
            Version::V2 => write_limits_v2(&cgroup.dirs.cpu, limits),
        };
        match written {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                cgroup.remove();
                Err(e)
            }
        }
    }
}

/// The controllers wos needs from a v2 tree.
const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The v1 controllers wos needs, and the optional freezer.
const V1_CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

/// One line of /proc/self/mountinfo, the parts wos reads.
#[derive(Debug)]
struct MountLine {
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

impl MountLine {
    /// `36 35 98:0 /root /mnt rw,noatime shared:1 - cgroup cgroup rw,cpu`:
    /// the mount point is the 5th field; after the lone `-` come the file
    /// system type, the source and the super block options.
    fn parse(line: &str) -> Option<MountLine> {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let _source = right.next()?;
        Some(MountLine {
            mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
            fstype: fstype.to_string(),
            super_options: right.next().unwrap_or("").to_string(),
        })
    }
}

/// mountinfo writes space, tab, newline and backslash as `\NNN` (octal).
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn v2_controllers(mount: &Path) -> Result<BTreeSet<String>> {
    let text = read(&mount.join("cgroup.controllers"))?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// The v1 mount of each controller wos needs, or the names of the missing.
fn v1_dirs(mounts: &[MountLine]) -> std::result::Result<Dirs, Vec<&'static str>> {
    let mut found: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
        for option in m.super_options.split(',') {
            found.entry(option).or_insert_with(|| m.mount_point.clone());
        }
    }
    let missing: Vec<&'static str> = V1_CONTROLLERS
        .into_iter()
        .filter(|c| !found.contains_key(c))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(Dirs {
        cpu: found["cpu"].clone(),
        cpuacct: found["cpuacct"].clone(),
        memory: found["memory"].clone(),
        pids: found["pids"].clone(),
        freezer: found.get("freezer").cloned(),
    })
}

/// `parent` as a relative path of plain components.
fn check_parent(parent: &str) -> Result<PathBuf> {
    if parent.is_empty() {
        return Err(CgroupError::BadName {
            name: parent.into(),
            reason: "empty",
        });
    }
    for part in parent.split('/') {
        check_component(part).map_err(|_| CgroupError::BadName {
            name: parent.into(),
            reason: "must be a relative path of names, without `.`, `..` or empty parts",
        })?;
    }
    Ok(PathBuf::from(parent))
}

/// A single directory name that cannot climb out of the hierarchy.
fn check_component(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.contains('/') || name.contains('\0') {
        "must not contain `/` or NUL"
    } else if name == "." || name == ".." {
        "must not be `.` or `..`"
    } else {
        return Ok(());
    };
    Err(CgroupError::BadName {
        name: name.into(),
        reason,
    })
}

fn check_limits(limits: &Limits) -> Result<()> {
    if let Some(cpu) = limits.cpu
        && !(cpu.is_finite() && cpu > 0.0)
    {
        return Err(CgroupError::BadLimit(format!(
            "cpu must be a positive number of cores, not {cpu}"
        )));
    }
    if limits.memory == Some(0) {
        return Err(CgroupError::BadLimit(
            "memory must be more than 0 bytes".into(),
        ));
    }
    if limits.pids == Some(0) {
        return Err(CgroupError::BadLimit("pids must be at least 1".into()));
    }
    Ok(())
}

fn create_v1(mounts: &Dirs, parent: &Path, name: &str) -> Result<Cgroup> {
    let cgroup = Cgroup {
        version: Version::V1,
        dirs: mounts.map(|m| m.join(parent).join(name)),
    };
    let mut made = Vec::new();
    for dir in cgroup.dirs.unique() {
        if let Err(e) = make_leaf(&dir, &mut made) {
            remove_dirs(&made);
            return Err(e);
        }
    }
    Ok(cgroup)
}

fn create_v2(root: &Path, parent: &Path, name: &str) -> Result<Cgroup> {
    // Each level from the root down to the parent must hand the controllers
    // to its children, or the leaf will not have them.
    let mut dir = root.to_path_buf();
    enable_controllers(&dir)?;
    for part in parent.components() {
        dir.push(part);
        mkdir(&dir, true)?;
        enable_controllers(&dir)?;
    }
    let leaf = dir.join(name);
    make_leaf(&leaf, &mut Vec::new())?;
    Ok(Cgroup {
        version: Version::V2,
        dirs: Dirs::same(leaf),
    })
}

/// Creates the parents of `leaf` and `leaf`; an existing leaf is reused
/// only when no process is in it. Records in `made` what it created.
fn make_leaf(leaf: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    if let Some(parent) = leaf.parent() {
        std::fs::create_dir_all(parent).map_err(|source| CgroupError::Create {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    if mkdir(leaf, false)? {
        made.push(leaf.to_path_buf());
    } else if !procs(leaf)?.is_empty() {
        return Err(CgroupError::Busy {
            path: leaf.to_path_buf(),
        });
    }
    Ok(())
}

/// Creates `dir`; `Ok(false)` when it already existed.
fn mkdir(dir: &Path, recursive: bool) -> Result<bool> {
    let made = if recursive {
        std::fs::create_dir_all(dir).map(|()| true)
    } else {
        std::fs::create_dir(dir).map(|()| true)
    };
    match made {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Writes `+cpu +memory +pids` (those not yet enabled) to the
/// `cgroup.subtree_control` of `dir`.
fn enable_controllers(dir: &Path) -> Result<()> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = read(&path)?;
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| !enabled.contains(*c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write_file(&path, &missing.join(" ")).map_err(|source| CgroupError::Delegate {
        path: path.clone(),
        source,
    })
}

fn write_limits_v1(dirs: &Dirs, limits: &Limits) -> Result<()> {
    write(&dirs.cpu.join("cpu.cfs_period_us"), CPU_PERIOD_US)?;
    let quota = limits.cpu.map_or(-1, |cores| cpu_quota_us(cores) as i64);
    write(&dirs.cpu.join("cpu.cfs_quota_us"), quota)?;
    // Shares weigh jobs against each other when the CPU is contended; 1024
    // is the kernel's default, i.e. one core's worth.
    let shares = limits.cpu.map_or(1024, |cores| {
        ((1024.0 * cores).round() as u64).clamp(2, 262_144)
    });
    write(&dirs.cpu.join("cpu.shares"), shares)?;
    write_memory_v1(&dirs.memory, limits.memory)?;
    let pids = limits.pids.map_or("max".to_string(), |n| n.to_string());
    write(&dirs.pids.join("pids.max"), pids)
}

/// memory.memsw.limit_in_bytes (RAM + swap, present when swap accounting is
/// on) must never be below memory.limit_in_bytes, so it is opened up first
/// and set to the same value last: the job cannot use swap to exceed its
/// limit.
fn write_memory_v1(dir: &Path, limit: Option<u64>) -> Result<()> {
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let value = limit.map_or("-1".to_string(), |b| b.to_string());
    if memsw.exists() {
        write(&memsw, -1)?;
    }
    write(&dir.join("memory.limit_in_bytes"), &value)?;
    if memsw.exists() {
        write(&memsw, &value)?;
    }
    Ok(())
}

fn write_limits_v2(dir: &Path, limits: &Limits) -> Result<()> {
    let quota = limits
        .cpu
        .map_or("max".to_string(), |cores| cpu_quota_us(cores).to_string());
    write(&dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))?;
    // v2's weight (default 100) plays the role of v1's shares (default
    // 1024): both mean "one core's worth" by default, and scale with cores.
    let weight = limits.cpu.map_or(100, |cores| {
        ((100.0 * cores).round() as u64).clamp(1, 10_000)
    });
    write(&dir.join("cpu.weight"), weight)?;
    let memory = limits.memory.map_or("max".to_string(), |b| b.to_string());
    write(&dir.join("memory.max"), memory)?;
    // Jobs never swap: a job over its memory is killed, not slowed down
    // for everyone else by swapping.
    let swap = dir.join("memory.swap.max");
    if swap.exists() {
        write(&swap, 0)?;
    }
    let pids = limits.pids.map_or("max".to_string(), |n| n.to_string());
    write(&dir.join("pids.max"), pids)
}

/// The quota for `cores` per CPU_PERIOD_US, no less than the kernel's
/// minimum of 1 ms.
fn cpu_quota_us(cores: f64) -> u64 {
    ((cores * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// One job's cgroup (in each hierarchy, on v1).
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    dirs: Dirs,
}

impl Cgroup {
    /// The directories whose `cgroup.procs` a process writes its pid to in
    /// order to join (what goes into `JailSpec::cgroups`).
    pub fn procs_dirs(&self) -> Vec<PathBuf> {
        self.dirs.unique()
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// What the job used. A counter that cannot be read is logged and
    /// reported as zero: the job has ended either way, and its record
    /// should not be lost over an accounting detail.
    pub fn usage(&self) -> Usage {
        self.try_usage().unwrap_or_else(|e| {
            tracing::warn!("reading the usage of a job: {e}");
            Usage::default()
        })
    }

    fn try_usage(&self) -> Result<Usage> {
        let d = &self.dirs;
        let pids_peak = read_optional_u64(&d.pids.join("pids.peak"))?;
        Ok(match self.version {
            Version::V1 => Usage {
                cpu_seconds: read_u64(&d.cpuacct.join("cpuacct.usage"))? as f64 / 1e9,
                peak_memory: read_u64(&d.memory.join("memory.max_usage_in_bytes"))?,
                oom_killed: keyed(&d.memory.join("memory.oom_control"), "oom_kill")?.unwrap_or(0)
                    > 0,
                pids_peak,
            },
            Version::V2 => Usage {
                cpu_seconds: keyed(&d.cpu.join("cpu.stat"), "usage_usec")?.unwrap_or(0) as f64
                    / 1e6,
                // memory.peak appeared in Linux 5.19; before, the current
                // use is the best (lower) bound there is.
                peak_memory: match read_optional_u64(&d.memory.join("memory.peak"))? {
                    Some(peak) => peak,
                    None => read_u64(&d.memory.join("memory.current"))?,
                },
                oom_killed: keyed(&d.memory.join("memory.events"), "oom_kill")?.unwrap_or(0) > 0,
                pids_peak,
            },
        })
    }

    /// Kills every process in the cgroup and waits (a bounded time) until it
    /// is empty. Failures are logged: the caller is cleaning up and has
    /// nothing better to do with them.
    pub fn kill_all(&self) {
        if let Err(e) = self.try_kill_all() {
            tracing::warn!("killing the processes of a job: {e}");
        }
    }

    fn try_kill_all(&self) -> Result<()> {
        match self.version {
            Version::V2 if self.dirs.cpu.join("cgroup.kill").exists() => {
                // The kernel kills every process, including ones forked
                // while it does so (Linux 5.14+).
                write(&self.dirs.cpu.join("cgroup.kill"), 1)?;
            }
            Version::V1 if self.dirs.freezer.is_some() => self.freeze_and_kill()?,
            _ => self.kill_by_pidfd()?,
        }
        self.wait_empty()
    }

    /// v1: freeze, so that nothing forks or exits while the list is read,
    /// signal the list, thaw so that the signals take effect. Repeated, in
    /// case the freeze raced with a fork.
    fn freeze_and_kill(&self) -> Result<()> {
        let freezer = self.dirs.freezer.as_ref().expect("checked by the caller");
        let state = freezer.join("freezer.state");
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while Instant::now() < deadline {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            write(&state, "FROZEN")?;
            wait_frozen(&state, deadline)?;
            for pid in self.pids()? {
                // SAFETY: kill(2) with a pid that cannot be reused: frozen
                // processes do not exit.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            write(&state, "THAWED")?;
            sleep(POLL);
        }
        Ok(())
    }

    /// Without cgroup.kill or a freezer: signal each listed process through
    /// a pidfd opened while it was still listed, so a pid reused by an
    /// unrelated process is never hit.
    fn kill_by_pidfd(&self) -> Result<()> {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while Instant::now() < deadline {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            let fds: Vec<(i32, Option<std::os::fd::OwnedFd>)> =
                pids.iter().map(|&pid| (pid, pidfd_open(pid))).collect();
            let still = self.pids()?;
            for (pid, fd) in fds {
                if let Some(fd) = fd.filter(|_| still.contains(&pid)) {
                    pidfd_kill(&fd);
                }
            }
            sleep(POLL);
        }
        Ok(())
    }

    fn wait_empty(&self) -> Result<()> {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::Unkillable {
                    path: self.dirs.cpu.clone(),
                    pids: pids.into_iter().collect(),
                });
            }
            sleep(POLL);
        }
    }

    /// Every process in any of the job's directories.
    fn pids(&self) -> Result<BTreeSet<i32>> {
        let mut all = BTreeSet::new();
        for dir in self.dirs.unique() {
            all.extend(procs(&dir)?);
        }
        Ok(all)
    }

    /// Removes the job's directories, retrying for a moment while the
    /// processes of a just-killed job drain. Call [`Cgroup::kill_all`]
    /// first. Failures are logged (the directory is then left behind, empty
    /// or not, for the operator to see).
    pub fn remove(self) {
        remove_dirs(&self.dirs.unique());
    }
}

fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs {
        if let Err(e) = rmdir_patiently(dir) {
            tracing::warn!("removing the cgroup {}: {e}", dir.display());
        }
    }
}

/// rmdir(2) on a cgroup fails with EBUSY while processes remain (including
/// zombies not yet reaped); they usually go within milliseconds.
fn rmdir_patiently(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(POLL)
            }
            Err(e) => return Err(e),
        }
    }
}

fn wait_frozen(state: &Path, deadline: Instant) -> Result<()> {
    // A process in uninterruptible sleep keeps the group FREEZING; killing
    // what is frozen is still worth it, so give up waiting at the deadline.
    while read(state)?.trim() != "FROZEN" && Instant::now() < deadline {
        sleep(POLL);
    }
    Ok(())
}

fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a file descriptor we now own.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_kill(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal(2) with a valid pidfd and no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// The pids in `dir/cgroup.procs`.
fn procs(dir: &Path) -> Result<BTreeSet<i32>> {
    let path = dir.join("cgroup.procs");
    read(&path)?
        .split_whitespace()
        .map(|s| {
            s.parse().map_err(|_| CgroupError::Parse {
                path: path.clone(),
                what: format!("`{s}` is not a pid"),
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_u64(path: &Path) -> Result<u64> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        what: format!("`{}` is not a number", text.trim()),
    })
}

fn read_optional_u64(path: &Path) -> Result<Option<u64>> {
    if path.exists() {
        read_u64(path).map(Some)
    } else {
        Ok(None)
    }
}

/// The value of `key` in a flat-keyed file (`key value` per line), such as
/// cpu.stat, memory.events or memory.oom_control.
fn keyed(path: &Path, key: &str) -> Result<Option<u64>> {
    let text = read(path)?;
    let Some(value) = text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then_some(v.trim())
    }) else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        what: format!("`{key} {value}`: not a number"),
    })
}

fn write(path: &Path, value: impl ToString) -> Result<()> {
    let value = value.to_string();
    write_file(path, &value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value,
        source,
    })
}

/// Writes a control file in one write(2): the kernel parses each write on
/// its own. Never creates the file: a missing control file means a missing
/// controller, which must be an error, not a stray regular file.
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory laid out like a v2 tree whose root offers the usual
    /// controllers, with `wos-nodeA/job1` already made (a plain directory
    /// has no control files until something writes them, unlike cgroupfs).
    fn fake_v2() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu\n").unwrap();
        let parent = root.join("wos-nodeA");
        std::fs::create_dir(&parent).unwrap();
        std::fs::write(parent.join("cgroup.subtree_control"), "").unwrap();
        let leaf = parent.join("job1");
        std::fs::create_dir(&leaf).unwrap();
        for file in [
            "cgroup.procs",
            "cgroup.kill",
            "cpu.max",
            "cpu.weight",
            "memory.max",
            "memory.swap.max",
            "pids.max",
        ] {
            std::fs::write(leaf.join(file), "").unwrap();
        }
        (tmp, leaf)
    }

    fn mountinfo_v2(root: &Path) -> String {
        format!(
            "30 23 0:26 / {} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
            root.display()
        )
    }

    fn contents(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn v2_create_writes_limits_and_delegates() {
        let (tmp, leaf) = fake_v2();
        let h = Hierarchy::from_mountinfo(&mountinfo_v2(tmp.path())).unwrap();
        assert_eq!(h.version(), Version::V2);
        let limits = Limits {
            cpu: Some(0.5),
            memory: Some(64 << 20),
            pids: Some(20),
        };
        let cg = h.create("wos-nodeA", "job1", &limits).unwrap();
        assert_eq!(cg.procs_dirs(), vec![leaf.clone()]);
        // The root already had cpu: only the missing ones are asked for.
        assert_eq!(
            contents(&tmp.path().join("cgroup.subtree_control")),
            "+memory +pids"
        );
        assert_eq!(
            contents(&tmp.path().join("wos-nodeA/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        assert_eq!(contents(&leaf.join("cpu.max")), "50000 100000");
        assert_eq!(contents(&leaf.join("cpu.weight")), "50");
        assert_eq!(contents(&leaf.join("memory.max")), "67108864");
        assert_eq!(contents(&leaf.join("memory.swap.max")), "0");
        assert_eq!(contents(&leaf.join("pids.max")), "20");
    }

    #[test]
    fn v2_unlimited_writes_max() {
        let (tmp, leaf) = fake_v2();
        let h = Hierarchy::from_mountinfo(&mountinfo_v2(tmp.path())).unwrap();
        h.create("wos-nodeA", "job1", &Limits::default()).unwrap();
        assert_eq!(contents(&leaf.join("cpu.max")), "max 100000");
        assert_eq!(contents(&leaf.join("cpu.weight")), "100");
        assert_eq!(contents(&leaf.join("memory.max")), "max");
        assert_eq!(contents(&leaf.join("pids.max")), "max");
    }

    #[test]
    fn v2_busy_leaf_is_refused() {
        let (tmp, leaf) = fake_v2();
        std::fs::write(leaf.join("cgroup.procs"), "4242\n").unwrap();
        let h = Hierarchy::from_mountinfo(&mountinfo_v2(tmp.path())).unwrap();
        let err = h
            .create("wos-nodeA", "job1", &Limits::default())
            .unwrap_err();
        assert!(matches!(err, CgroupError::Busy { .. }), "{err}");
    }

    #[test]
    fn v2_usage_and_kill() {
        let (tmp, leaf) = fake_v2();
        let h = Hierarchy::from_mountinfo(&mountinfo_v2(tmp.path())).unwrap();
        let cg = h.create("wos-nodeA", "job1", &Limits::default()).unwrap();
        std::fs::write(
            leaf.join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
        )
        .unwrap();
        std::fs::write(leaf.join("memory.peak"), "1048576\n").unwrap();
        std::fs::write(
            leaf.join("memory.events"),
            "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        std::fs::write(leaf.join("pids.peak"), "12\n").unwrap();
        assert_eq!(
            cg.try_usage().unwrap(),
            Usage {
                cpu_seconds: 1.5,
                peak_memory: 1 << 20,
                oom_killed: true,
                pids_peak: Some(12),
            }
        );
        cg.try_kill_all().unwrap();
        assert_eq!(contents(&leaf.join("cgroup.kill")), "1");
    }

    #[test]
    fn v2_without_needed_controllers_falls_back_to_v1() {
        let (tmp, _) = fake_v2();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu io\n").unwrap();
        let mut text = mountinfo_v2(tmp.path());
        text.push_str(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n",
        );
        text.push_str("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n");
        text.push_str("39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n");
        let h = Hierarchy::from_mountinfo(&text).unwrap();
        assert_eq!(h.version(), Version::V1);
        let Mounts::V1(dirs) = &h.mounts else {
            unreachable!()
        };
        assert_eq!(dirs.cpu, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(dirs.cpuacct, dirs.cpu);
        assert_eq!(dirs.freezer, None);
        let leafs = dirs.map(|m| m.join("p/j")).unique();
        assert_eq!(
            leafs.len(),
            3,
            "cpu and cpuacct share a directory: {leafs:?}"
        );
    }

    #[test]
    fn missing_controller_is_named() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
                    39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let err = Hierarchy::from_mountinfo(text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("memory"), "{msg}");
        assert!(!msg.contains("pids not"), "{msg}");
    }

    #[test]
    fn mountinfo_escapes() {
        let line = r"40 31 0:37 / /mnt/with\040space rw - cgroup2 cgroup2 rw";
        let m = MountLine::parse(line).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m.fstype, "cgroup2");
    }

    #[test]
    fn names_cannot_escape() {
        let h = Hierarchy {
            mounts: Mounts::V2(PathBuf::from("/nonexistent")),
        };
        for (parent, name) in [
            ("..", "j"),
            ("a/../b", "j"),
            ("/abs", "j"),
            ("p", "a/b"),
            ("p", ".."),
            ("", "j"),
            ("p", ""),
        ] {
            let err = h.create(parent, name, &Limits::default()).unwrap_err();
            assert!(
                matches!(err, CgroupError::BadName { .. }),
                "{parent:?} {name:?}: {err}"
            );
        }
    }

    #[test]
    fn bad_limits_are_refused() {
        let h = Hierarchy {
            mounts: Mounts::V2(PathBuf::from("/nonexistent")),
        };
        for limits in [
            Limits {
                cpu: Some(0.0),
                ..Default::default()
            },
            Limits {
                cpu: Some(f64::NAN),
                ..Default::default()
            },
            Limits {
                memory: Some(0),
                ..Default::default()
            },
            Limits {
                pids: Some(0),
                ..Default::default()
            },
        ] {
            let err = h.create("p", "j", &limits).unwrap_err();
            assert!(matches!(err, CgroupError::BadLimit(_)), "{limits:?}: {err}");
        }
    }

    /// The real hierarchy of this machine (v1 or v2), as root.
    #[test]
    fn real_cgroup_holds_limits() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping real_cgroup_holds_limits: needs root to create cgroups");
            return;
        }
        let h = Hierarchy::detect().expect("this machine has cgroups");
        // One parent per test: parallel tests never remove each other's.
        let parent = format!("wos-exec-test-{}-limits", std::process::id());
        let limits = Limits {
            cpu: Some(0.5),
            memory: Some(64 << 20),
            pids: Some(20),
        };
        let cg = h.create(&parent, "limits", &limits).unwrap();
        let dirs = cg.procs_dirs();
        let value = |file: &str| {
            let dir = dirs.iter().find(|d| d.join(file).exists()).unwrap();
            contents(&dir.join(file)).trim().to_string()
        };
        match h.version() {
            Version::V1 => {
                assert_eq!(value("cpu.cfs_period_us"), "100000");
                assert_eq!(value("cpu.cfs_quota_us"), "50000");
                assert_eq!(value("cpu.shares"), "512");
                assert_eq!(value("memory.limit_in_bytes"), (64u64 << 20).to_string());
                if dirs
                    .iter()
                    .any(|d| d.join("memory.memsw.limit_in_bytes").exists())
                {
                    assert_eq!(
                        value("memory.memsw.limit_in_bytes"),
                        (64u64 << 20).to_string()
                    );
                }
            }
            Version::V2 => {
                assert_eq!(value("cpu.max"), "50000 100000");
                assert_eq!(value("memory.max"), (64u64 << 20).to_string());
            }
        }
        assert_eq!(value("pids.max"), "20");
        let usage = cg.try_usage().unwrap();
        assert_eq!(usage.cpu_seconds, 0.0);
        assert!(!usage.oom_killed);
        cg.kill_all();
        cg.remove();
        for dir in &dirs {
            assert!(!dir.exists(), "{} was not removed", dir.display());
            let _ = std::fs::remove_dir(dir.parent().unwrap());
        }
    }

    /// kill_all empties a real cgroup (v1: through the freezer when there
    /// is one; v2: cgroup.kill) and remove then deletes it.
    #[test]
    fn real_kill_all_empties_the_cgroup() {
        real_kill_all("kill", false);
    }

    /// The same without the freezer and cgroup.kill: signals through pidfds.
    #[test]
    fn real_kill_all_without_freezer() {
        real_kill_all("kill-pidfd", true);
    }

    fn real_kill_all(test: &str, by_pidfd: bool) {
        use std::os::unix::process::ExitStatusExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping the kill_all test {test}: needs root to create cgroups");
            return;
        }
        let h = Hierarchy::detect().expect("this machine has cgroups");
        let parent = format!("wos-exec-test-{}-{test}", std::process::id());
        let cg = h.create(&parent, "kill", &Limits::default()).unwrap();
        if by_pidfd {
            cg.kill_by_pidfd().expect("an empty cgroup is a no-op");
        }
        let mut children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("100")
                    .spawn()
                    .expect("starting sleep")
            })
            .collect();
        for child in &children {
            for dir in cg.procs_dirs() {
                write(&dir.join("cgroup.procs"), child.id()).unwrap();
            }
        }
        assert_eq!(cg.pids().unwrap().len(), 3);
        // The children are the test's: reap them as they die.
        let reaper = std::thread::spawn(move || {
            children
                .iter_mut()
                .map(|c| c.wait().unwrap().signal())
                .collect::<Vec<_>>()
        });
        if by_pidfd {
            cg.kill_by_pidfd().expect("killing the cgroup");
            cg.wait_empty().expect("the cgroup empties");
        } else {
            cg.try_kill_all().expect("killing the cgroup");
        }
        assert_eq!(reaper.join().unwrap(), vec![Some(libc::SIGKILL); 3]);
        let dirs = cg.procs_dirs();
        cg.remove();
        for dir in &dirs {
            assert!(!dir.exists(), "{} was not removed", dir.display());
            let _ = std::fs::remove_dir(dir.parent().unwrap());
        }
    }
}
