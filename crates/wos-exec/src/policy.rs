//! The node owner's admission policy, `policy.toml` in the node's data
//! directory. It is the node's, not the cell's: no cell administrator can
//! widen it (site autonomy). The node reads it for every job start, so an
//! edit takes effect at the next job.
//!
//! ```toml
//! [exec]
//! enabled = true
//! max_cpu = 8.0            # cores, summed over the running jobs (default 4 x the cores)
//! max_memory = "4GiB"      # summed over the running jobs
//! max_jobs = 64
//! max_pids = 4096          # per job
//! default_cpu = 1.0        # what a job that names no limit gets
//! default_memory = "512MiB"
//! default_pids = 1024
//! allow = ["*"]            # principal ids ("user:alice"), "group:NAME", "*"
//! deny = []
//! allow_host_net = true
//! uid = 65534              # the unprivileged uid/gid jobs run as
//! gid = 65534
//! tmp_size = "256MiB"
//! seccomp_extra_deny = []  # more system calls to refuse
//! seccomp_allow = []       # system calls of the default list to permit
//! ```

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid policy: {message} (see the policy section of README.md)")]
    Invalid { path: String, message: String },
}

/// A size in bytes, written as a number or as `"64M"`, `"512MiB"`, `"4G"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `123`, `64K`, `64M`, `2G`, `512MiB`, `1.5G` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (examples: 64M, 2G, 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use K, M, G or T)"
            ));
        }
    };
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{text:?} is not a size"));
    }
    Ok((n * mult as f64) as u64)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecPolicy {
    pub enabled: bool,
    pub max_cpu: f64,
    pub max_memory: Size,
    pub max_jobs: u32,
    pub max_pids: u64,
    pub default_cpu: f64,
    pub default_memory: Size,
    pub default_pids: u64,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub allow_host_net: bool,
    pub uid: u32,
    pub gid: u32,
    pub tmp_size: Size,
    pub seccomp_extra_deny: Vec<String>,
    pub seccomp_allow: Vec<String>,
}

impl Default for ExecPolicy {
    fn default() -> ExecPolicy {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        ExecPolicy {
            enabled: true,
            // CPU is compressible (shares still divide it fairly), so the
            // jobs' CPU limits may add up to more than the node has; memory
            // is not, so it is not overcommitted.
            max_cpu: cpus * 4.0,
            max_memory: Size(total_memory().unwrap_or(1 << 30) / 2),
            max_jobs: 256,
            max_pids: 4096,
            default_cpu: 1.0,
            default_memory: Size(512 << 20),
            default_pids: 1024,
            allow: vec!["*".into()],
            deny: vec![],
            allow_host_net: true,
            uid: 65534,
            gid: 65534,
            tmp_size: Size(256 << 20),
            seccomp_extra_deny: vec![],
            seccomp_allow: vec![],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub exec: ExecPolicy,
}

/// What a job asks of a node, limits already defaulted.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub principal: &'a str,
    /// Groups (`group:NAME`) the principal belongs to in the cell.
    pub groups: &'a [String],
    pub cpu_millis: u32,
    pub memory: u64,
    pub pids: u64,
    pub host_net: bool,
}

/// What the node's running jobs hold now.
#[derive(Debug, Clone, Copy, Default)]
pub struct InUse {
    pub cpu_millis: u64,
    pub memory: u64,
    pub jobs: u32,
}

/// Why a node refuses a job. `capacity` refusals may succeed elsewhere or
/// later; the others will not change by retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub capacity: bool,
    pub reason: String,
}

impl Policy {
    /// Reads `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Policy::default()),
            Err(source) => {
                return Err(PolicyError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let policy: Policy = toml::from_str(&text).map_err(|e| PolicyError::Invalid {
            path: path.display().to_string(),
            message: e.message().to_string(),
        })?;
        policy
            .exec
            .check()
            .map_err(|message| PolicyError::Invalid {
                path: path.display().to_string(),
                message,
            })?;
        Ok(policy)
    }
}

impl ExecPolicy {
    fn check(&self) -> Result<(), String> {
        if self.uid == 0 || self.gid == 0 {
            return Err("uid and gid must not be 0: jobs never run as root".into());
        }
        if self.max_cpu <= 0.0 || self.default_cpu <= 0.0 {
            return Err("max_cpu and default_cpu must be positive".into());
        }
        Ok(())
    }

    /// Admits `ask` given what is `in_use`, or says why not.
    pub fn admit(&self, ask: &Ask, in_use: InUse) -> Result<(), Refusal> {
        let refuse = |capacity: bool, reason: String| {
            Err(Refusal {
                capacity,
                reason: format!("{reason} (this node's policy.toml)"),
            })
        };
        if !self.enabled {
            return refuse(
                false,
                "this node runs no jobs: its owner disabled exec".into(),
            );
        }
        if !self.permits(ask.principal, ask.groups) {
            return refuse(
                false,
                format!(
                    "the node's owner does not let {} run jobs here",
                    ask.principal
                ),
            );
        }
        if ask.host_net && !self.allow_host_net {
            return refuse(false, "the node's owner does not allow --net host".into());
        }
        let max_cpu_millis = (self.max_cpu * 1000.0) as u64;
        if u64::from(ask.cpu_millis) > max_cpu_millis {
            return refuse(
                false,
                format!(
                    "the job asks for {} CPU, more than the node gives any job ({})",
                    cores(ask.cpu_millis as u64),
                    cores(max_cpu_millis)
                ),
            );
        }
        if ask.memory > self.max_memory.0 {
            return refuse(
                false,
                format!(
                    "the job asks for {} of memory, more than the node gives in all ({})",
                    bytes(ask.memory),
                    bytes(self.max_memory.0)
                ),
            );
        }
        if ask.pids > self.max_pids {
            return refuse(
                false,
                format!(
                    "the job asks for {} processes; the node allows {}",
                    ask.pids, self.max_pids
                ),
            );
        }
        if in_use.jobs >= self.max_jobs {
            return refuse(
                true,
                format!("the node already runs {} jobs, its limit", in_use.jobs),
            );
        }
        if in_use.cpu_millis + u64::from(ask.cpu_millis) > max_cpu_millis {
            return refuse(
                true,
                format!(
                    "the job asks for {} CPU but only {} of {} are free",
                    cores(ask.cpu_millis as u64),
                    cores(max_cpu_millis.saturating_sub(in_use.cpu_millis)),
                    cores(max_cpu_millis)
                ),
            );
        }
        if in_use.memory + ask.memory > self.max_memory.0 {
            return refuse(
                true,
                format!(
                    "the job asks for {} of memory but only {} of {} are free",
                    bytes(ask.memory),
                    bytes(self.max_memory.0.saturating_sub(in_use.memory)),
                    bytes(self.max_memory.0)
                ),
            );
        }
        Ok(())
    }

    fn permits(&self, principal: &str, groups: &[String]) -> bool {
        let named = |list: &[String]| {
            list.iter()
                .any(|p| p == "*" || p == principal || groups.contains(p))
        };
        named(&self.allow) && !named(&self.deny)
    }

    /// The seccomp deny list for jobs on this node.
    pub fn seccomp_deny(&self) -> Vec<String> {
        let mut list: Vec<String> = crate::seccomp::default_deny()
            .iter()
            .map(|s| s.to_string())
            .filter(|s| !self.seccomp_allow.contains(s))
            .collect();
        list.extend(self.seccomp_extra_deny.iter().cloned());
        list.sort();
        list.dedup();
        list
    }
}

fn cores(millis: u64) -> String {
    format!("{:.2} cores", millis as f64 / 1000.0)
}

/// A byte count for people: `64 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("lots").is_err());
        assert_eq!(bytes(64 << 20), "64 MiB");
    }

    fn ask(principal: &str) -> Ask<'_> {
        Ask {
            principal,
            groups: &[],
            cpu_millis: 1000,
            memory: 100 << 20,
            pids: 100,
            host_net: false,
        }
    }

    #[test]
    fn admission() {
        let p: Policy = toml::from_str(
            "[exec]\nmax_cpu = 2.0\nmax_memory = \"1G\"\nmax_jobs = 2\nallow = [\"user:alice\", \"group:ops\"]\ndeny = [\"user:mallory\"]\nallow_host_net = false\n",
        )
        .unwrap();
        let e = &p.exec;
        assert!(e.admit(&ask("user:alice"), InUse::default()).is_ok());
        let r = e.admit(&ask("user:bob"), InUse::default()).unwrap_err();
        assert!(!r.capacity && r.reason.contains("user:bob"), "{r:?}");
        let ops = ["group:ops".to_string()];
        assert!(
            e.admit(
                &Ask {
                    groups: &ops,
                    ..ask("user:bob")
                },
                InUse::default()
            )
            .is_ok()
        );
        assert!(
            e.admit(
                &Ask {
                    host_net: true,
                    ..ask("user:alice")
                },
                InUse::default()
            )
            .is_err()
        );
        let busy = InUse {
            cpu_millis: 1500,
            memory: 0,
            jobs: 1,
        };
        let r = e.admit(&ask("user:alice"), busy).unwrap_err();
        assert!(r.capacity && r.reason.contains("0.50 cores"), "{r:?}");
        let full = InUse {
            cpu_millis: 0,
            memory: 0,
            jobs: 2,
        };
        assert!(e.admit(&ask("user:alice"), full).unwrap_err().capacity);
        let big = Ask {
            memory: 2 << 30,
            ..ask("user:alice")
        };
        assert!(!e.admit(&big, InUse::default()).unwrap_err().capacity);
    }

    #[test]
    fn bad_policies_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[exec]\nuid = 0\n").unwrap();
        assert!(Policy::load(&path).unwrap_err().to_string().contains("uid"));
        std::fs::write(&path, "[exec]\nmax_cpus = 1\n").unwrap();
        assert!(
            Policy::load(&path)
                .unwrap_err()
                .to_string()
                .contains("max_cpus")
        );
        std::fs::remove_file(&path).unwrap();
        assert!(Policy::load(&path).unwrap().exec.enabled);
    }
}
