//! A node's data directory and its `node.toml`.
//!
//! ```text
//! DIR/node.toml      this file: cell, name, id, addresses
//! DIR/node.key       the node's Ed25519 private key (0600)
//! DIR/node.crt       its certificate, issued by the cell CA
//! DIR/ca.crt         the cell CA certificate
//! DIR/ca.key         the CA signing key (core nodes only, 0600)
//! DIR/meta.redb      Raft log, vote and metadata snapshots
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wos_api::write_private_file;
use wos_net::TlsIdentity;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {cause}")]
    Io { path: String, cause: String },
    #[error("{path} is not a valid node config: {cause}")]
    Parse { path: String, cause: String },
    #[error(
        "{path} is readable by other users (mode {mode:o}): private keys must be 0600; run `chmod 600 {path}`"
    )]
    Exposed { path: String, mode: u32 },
    #[error(
        "{0} holds no wos node: create a cell with `wos cell init` or join one with `wos agent --join ADDR --token TOKEN`"
    )]
    NotANode(String),
}

/// `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub cell: String,
    pub name: String,
    pub id: u64,
    /// Socket address to listen on.
    pub listen: String,
    /// `host:port` other nodes and clients use to reach this node.
    pub advertise: String,
    /// Addresses of other nodes known at join time, to find the cell again.
    #[serde(default)]
    pub seeds: Vec<String>,
    #[serde(default)]
    pub tuning: Tuning,
}

/// Timing settings. The defaults meet the promises in GUARANTEES.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tuning {
    pub raft_heartbeat_ms: u64,
    pub raft_election_min_ms: u64,
    pub raft_election_max_ms: u64,
    /// Take a metadata snapshot after this many log entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot (for followers that lag a little).
    pub snapshot_keep_logs: u64,
    /// How long a request that needs the leader may wait before failing.
    pub leader_wait_ms: u64,
    /// Serve WebFS reads from this node's replica under callbacks (no
    /// round trip to the metadata leader while nothing changed); off: every
    /// read asks the leader.
    pub fs_callbacks: bool,
    /// Room for chunks read from other nodes (`DATA/chunk-cache`), in MiB;
    /// the least recently used go first. 0 turns the cache off.
    pub fs_cache_mib: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            raft_heartbeat_ms: 250,
            raft_election_min_ms: 800,
            raft_election_max_ms: 1600,
            snapshot_every: 5000,
            snapshot_keep_logs: 500,
            leader_wait_ms: 4000,
            fs_callbacks: true,
            fs_cache_mib: 1024,
        }
    }
}

pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    pub fn exists(&self) -> bool {
        self.path("node.toml").exists()
    }

    pub fn create(&self) -> Result<(), ConfigError> {
        std::fs::create_dir_all(&self.0).map_err(|e| io_err(&self.0, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err(&self.0, e))
    }

    pub fn load_config(&self) -> Result<NodeConfig, ConfigError> {
        let p = self.path("node.toml");
        if !p.exists() {
            return Err(ConfigError::NotANode(self.0.display().to_string()));
        }
        let text = std::fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: p.display().to_string(),
            cause: e.to_string(),
        })
    }

    pub fn save_config(&self, cfg: &NodeConfig) -> Result<(), ConfigError> {
        let p = self.path("node.toml");
        let tmp = self.path("node.toml.tmp");
        let text = toml::to_string(cfg).expect("config serializes");
        std::fs::write(&tmp, text).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io_err(&p, e))
    }

    pub fn write_secret(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let p = self.path(file);
        write_private_file(&p, text.as_bytes(), true).map_err(|e| ConfigError::Io {
            path: p.display().to_string(),
            cause: e.to_string(),
        })
    }

    pub fn write_public(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let p = self.path(file);
        std::fs::write(&p, text).map_err(|e| io_err(&p, e))
    }

    pub fn read(&self, file: &str) -> Result<String, ConfigError> {
        let p = self.path(file);
        std::fs::read_to_string(&p).map_err(|e| io_err(&p, e))
    }

    pub fn read_optional(&self, file: &str) -> Result<Option<String>, ConfigError> {
        let p = self.path(file);
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    pub fn tls(&self) -> Result<TlsIdentity, ConfigError> {
        let key_pem = self
            .read_secret("node.key")?
            .ok_or_else(|| io_err(&self.path("node.key"), std::io::ErrorKind::NotFound.into()))?;
        Ok(TlsIdentity {
            ca_cert_pem: self.read("ca.crt")?,
            cert_pem: self.read("node.crt")?,
            key_pem,
        })
    }

    /// Reads a private file, refusing it when others may read it.
    pub fn read_secret(&self, file: &str) -> Result<Option<String>, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(file);
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&p, e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::Exposed {
                path: p.display().to_string(),
                mode,
            });
        }
        self.read_optional(file)
    }
}

fn io_err(p: &Path, e: std::io::Error) -> ConfigError {
    ConfigError::Io {
        path: p.display().to_string(),
        cause: e.to_string(),
    }
}
