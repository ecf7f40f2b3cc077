//! JSON bodies of the `/v1/` API. Requests reject unknown fields, so that a
//! misspelt option is an error rather than silently ignored.

use serde::{Deserialize, Serialize};

/// Every error response: `{"error": "what was wrong and what to do"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /v1/cell/ca` (public): the cell name and CA certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaInfo {
    pub cell: String,
    pub ca_cert_pem: String,
}

/// `POST /v1/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    /// The name the node asks for; the cell makes it unique.
    pub name: String,
    /// `host:port` other nodes reach the joiner at.
    pub address: String,
    pub public_key_pem: String,
    /// Join as a core (Raft voter) node.
    #[serde(default)]
    pub core: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub cell: String,
    /// The name the cell gave the node (unique within the cell).
    pub name: String,
    pub node_id: u64,
    pub cert_pem: String,
    pub ca_cert_pem: String,
    /// The CA signing key, given only to core nodes.
    pub ca_key_pem: Option<String>,
    /// The capability root key, given only to core nodes.
    pub cap_key: Option<String>,
    /// Nodes already in the cell: `(name, address)`.
    pub peers: Vec<(String, String)>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub cell: String,
    /// The node that answered.
    pub node: String,
    pub leader: Option<String>,
    pub term: u64,
    pub voters: Vec<String>,
    pub nodes: NodeCounts,
    /// Index of the last metadata entry this node applied.
    pub applied_index: u64,
    /// Last log index covered by this node's metadata snapshot.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// Last log index this node purged from its log (compaction).
    #[serde(default)]
    pub purged_index: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeCounts {
    pub total: usize,
    pub alive: usize,
    pub suspect: usize,
    pub dead: usize,
}

/// Liveness of a node as the answering node's failure detector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Alive,
    Suspect,
    Dead,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Alive => "alive",
            NodeState::Suspect => "suspect",
            NodeState::Dead => "dead",
        })
    }
}

/// A node's role in the cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A Raft voter: holds the cell metadata.
    Core,
    /// Replicates metadata as a non-voting learner; runs work.
    Worker,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Core => "core",
            Role::Worker => "worker",
        })
    }
}

/// The sensors every node gossips.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sensors {
    /// 1-minute load average.
    pub cpu_load: f32,
    pub cpus: u32,
    pub mem_free_bytes: u64,
    pub mem_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub jobs: u32,
}

/// One row of `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub id: u64,
    pub address: String,
    pub role: Role,
    pub state: NodeState,
    pub leader: bool,
    pub sensors: Option<Sensors>,
    /// Seconds since the answering node last heard this node's state
    /// (`null` if never).
    pub last_heard_secs: Option<f64>,
}

/// `POST /v1/users` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUserRequest {
    pub name: String,
    pub public_key_pem: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddUserResponse {
    pub name: String,
    pub cert_pem: String,
    pub ca_cert_pem: String,
}

/// `POST /v1/tokens` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateTokenResponse {
    pub token: String,
    /// Unix seconds.
    pub expires: u64,
}

/// `PUT /v1/kv/{key}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvPut {
    pub value: String,
    /// Compare-and-swap: succeed only if the key's current revision is this
    /// (0 = the key must not exist).
    #[serde(default)]
    pub if_revision: Option<u64>,
}

/// `GET /v1/kv/{key}` and the answer of a put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub value: String,
    /// Raft log index of the write that produced this value.
    pub revision: u64,
}

/// One decision of a reference monitor, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// The node that decided.
    pub node: String,
    pub principal: String,
    pub action: String,
    pub object: String,
    pub allowed: bool,
    /// Why: the rule, certificate, token or ACL that decided.
    pub reason: String,
}

/// `GET /v1/audit` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub principal: Option<String>,
    /// Entries whose object starts with this.
    pub object: Option<String>,
    /// Unix milliseconds.
    pub since_ms: Option<u64>,
    /// At most this many (newest kept), default 1000.
    pub limit: Option<usize>,
}

impl AuditQuery {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.principal.as_ref().is_none_or(|p| &e.principal == p)
            && self
                .object
                .as_ref()
                .is_none_or(|o| e.object.starts_with(o.as_str()))
            && self.since_ms.is_none_or(|s| e.time_ms >= s)
    }
}

/// `POST /v1/caps`: mint a capability token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintCapRequest {
    /// `cell`, `node:NAME`, `principal:NAME` or `kv:PREFIX`.
    pub object: String,
    pub rights: Vec<String>,
    pub ttl_secs: u64,
    /// Only this principal (`user:NAME`, `node:NAME`, or a user name) may present it.
    #[serde(default)]
    pub holder: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintCapResponse {
    pub token: String,
    /// Revocation id (hex).
    pub id: String,
    /// Unix seconds.
    pub expires: u64,
}

/// `POST /v1/caps/revoke`: give a token or its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeCapRequest {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeCapResponse {
    pub id: String,
}

/// `PUT /v1/acl/OBJECT`: what a principal may do on an object (and below it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAclRequest {
    /// `user:NAME`, `node:NAME`, `group:NAME` or `anyuser`.
    pub principal: String,
    /// Rights to grant; none removes the entry.
    pub rights: Vec<String>,
}

/// One entry of an ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    /// The object (a prefix) the ACL is set on.
    pub object: String,
    pub principal: String,
    pub rights: Vec<String>,
}

/// `PUT /v1/groups/NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetGroupRequest {
    /// Principal ids (`user:NAME`, `node:NAME`); none removes the group.
    pub members: Vec<String>,
}
