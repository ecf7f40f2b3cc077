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
    /// The node's mutual-TLS client for node-to-node calls.
    pub http: reqwest::Client,
    pub started: Instant,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl NodeCtx {
    pub fn ca(&self) -> Option<Arc<CellCa>> {
        self.ca.read().expect("ca lock").clone()
    }
}
