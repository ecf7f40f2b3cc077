//! Identity files (a principal's certificate and private key, with the cell CA
//! and where to find the cell) and the client config that `wos up` writes.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wos_net::TlsIdentity;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read identity file {path}: {cause}")]
    Read { path: String, cause: String },
    #[error("identity file {path} is not valid: {cause}")]
    Parse { path: String, cause: String },
    #[error(
        "identity file {path} is readable by other users (mode {mode:o}): run `chmod 600 {path}`"
    )]
    Exposed { path: String, mode: u32 },
    #[error("cannot write {path}: {cause}")]
    Write { path: String, cause: String },
}

/// A principal's credentials, as stored in an `.identity` file (TOML, mode 0600).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub cell: String,
    pub principal: String,
    /// API URLs of nodes of the cell, e.g. `https://10.0.0.1:7700`.
    pub addresses: Vec<String>,
    pub ca_cert: String,
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cell", &self.cell)
            .field("principal", &self.principal)
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn tls(&self) -> TlsIdentity {
        TlsIdentity {
            ca_cert_pem: self.ca_cert.clone(),
            cert_pem: self.cert.clone(),
            key_pem: self.key.clone(),
        }
    }

    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| IdentityError::Read {
            path: shown.clone(),
            cause: e.to_string(),
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Exposed { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(|e| IdentityError::Read {
            path: shown.clone(),
            cause: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| IdentityError::Parse {
            path: shown,
            cause: e.to_string(),
        })
    }

    /// Writes the identity with mode 0600, refusing to overwrite a file.
    pub fn save_new(&self, path: &Path) -> Result<(), IdentityError> {
        let text = toml::to_string(self).expect("identity serializes");
        write_private_file(path, text.as_bytes(), false)
    }
}

/// Writes `bytes` to a new file readable only by its owner (0600).
pub fn write_private_file(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), IdentityError> {
    let err = |e: std::io::Error| IdentityError::Write {
        path: path.display().to_string(),
        cause: if e.kind() == std::io::ErrorKind::AlreadyExists {
            "the file exists; remove it or choose another path".into()
        } else {
            e.to_string()
        },
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(())
}

/// `$XDG_CONFIG_HOME/wos/config.toml` (or `~/.config/wos/config.toml`).
pub fn default_client_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("wos").join("config.toml"))
}
