//! Security: who a principal is and what it may do.
//!
//! Owns the principal records kept in the cell metadata, the join tokens that
//! admit new nodes, and the *one* reference monitor: every API request is
//! decided here as `(principal, action, object) -> allow | deny`, default
//! deny. Capabilities and ACLs (a later issue) plug into [`ReferenceMonitor`]
//! and nowhere else.
//!
//! This crate never depends on the metadata crate; the monitor reads
//! principals through the [`PrincipalDirectory`] trait that metadata implements.

pub mod audit;
pub mod cap;
mod monitor;
mod token;

pub use audit::AuditLog;
pub use monitor::{
    Action, Decision, Denial, Object, Principal, PrincipalDirectory, ReferenceMonitor, parse_object,
};
pub use token::{JoinToken, TokenError, TokenRecord};

use serde::{Deserialize, Serialize};

/// A principal as the cell records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRecord {
    pub name: String,
    pub kind: wos_net::PeerKind,
    /// Cell administrators may add users, nodes and tokens.
    pub admin: bool,
    /// Unix seconds.
    pub created: u64,
    /// The principal's Ed25519 public key, hex (for verifying what it signs,
    /// e.g. capability delegations).
    pub public_key: String,
}
