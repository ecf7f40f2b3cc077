//! What every handler of a node shares.

use std::sync::Arc;
use std::time::Instant;

use wos_auth::ReferenceMonitor;
use wos_membership::Membership;
use wos_meta::Meta;
use wos_net::{CellCa, TlsIdentity};

use crate::config::{DataDir, NodeConfig};

pub struct NodeCtx {
    pub cfg: NodeConfig,
    pub data: DataDir,
    pub meta: Meta,
    pub membership: Membership,
    pub monitor: ReferenceMonitor,
    pub audit: wos_auth::AuditLog,
    pub tls: TlsIdentity,
    /// The CA signing key, present on core nodes.
    pub ca: std::sync::RwLock<Option<Arc<CellCa>>>,
    /// The capability root key (`ed25519-private/HEX`), present on core nodes.
    pub cap_key: std::sync::RwLock<Option<String>>,
    /// Verifier of capability tokens, made once the cell's root key is known.
    pub cap_verifier: std::sync::OnceLock<Arc<wos_auth::cap::CapVerifier>>,
    /// The node's mutual-TLS client for node-to-node calls.
    pub http: reqwest::Client,
    pub started: Instant,
    pub jobs: Arc<crate::jobs::Jobs>,
    /// This node's WebFS chunks (`DATA/chunks`).
    pub chunks: Arc<wos_blocks::ChunkStore>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// WebFS callbacks: held by this node, and promised by it as leader.
    pub fs_cache: Arc<crate::fs_cache::FsCache>,
    /// Chunks this node read from others (`DATA/chunk-cache`, LRU).
    pub chunk_cache: Arc<wos_blocks::ChunkCache>,
}

impl NodeCtx {
    pub fn cap_key(&self) -> Option<String> {
        self.cap_key.read().expect("cap key lock").clone()
    }

    /// The verifier of this cell's capability tokens (`None` before the
    /// metadata that names the root key has arrived).
    pub fn cap_verifier(&self) -> Option<Arc<wos_auth::cap::CapVerifier>> {
        if let Some(v) = self.cap_verifier.get() {
            return Some(v.clone());
        }
        let root = self.meta.read(|s| s.cap_root.clone());
        let v = Arc::new(wos_auth::cap::CapVerifier::new(&root).ok()?);
        Some(self.cap_verifier.get_or_init(|| v).clone())
    }

    pub fn ca(&self) -> Option<Arc<CellCa>> {
        self.ca.read().expect("ca lock").clone()
    }
}
