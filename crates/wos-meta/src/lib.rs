//! Metadata: the cell's replicated state, on a Raft group (openraft).
//!
//! Owns the Raft log, vote and snapshots (in the node store), the state
//! machine ([`state::CellState`]: nodes, principals, tokens, key-value space;
//! later files, jobs, slices, services), and the rules of access to it:
//!
//! * [`Meta::write`] commits a [`Command`] and returns its [`Outcome`], from
//!   any node: a follower or learner forwards it to the leader.
//! * [`Meta::linearizable`] makes the next local read see every write
//!   acknowledged before it (ReadIndex, asked of the leader by followers).
//! * [`Meta::read`] reads the local replica, possibly stale.
//!
//! Anything that needs the leader fails within `leader_wait` with
//! [`MetaError::NoLeader`] rather than hanging when the node is cut off.
//!
//! Core nodes are voters; every other node is a learner. The leader keeps the
//! Raft membership in line with the node records (see [`Meta::reconcile`]).
//! No other crate names an openraft type.

mod log_store;
mod network;
mod sm;
pub mod state;
mod types;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, Config, ReadPolicy, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use wos_store::Store;

pub use network::RpcKind;
pub use state::{CellState, Command, KvValue, NodeRecord, Outcome, Rejection};

use crate::types::Raft;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error(
        "no metadata leader reachable from this node within {waited_ms} ms ({detail}): the cell may have lost its quorum or this node is cut off from it; retry when the cell is healthy"
    )]
    NoLeader { waited_ms: u128, detail: String },
    #[error("metadata store failure: {0}")]
    Fatal(String),
    #[error("bad internal request: {0}")]
    BadRequest(String),
}

/// Timing of the Raft group.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    pub snapshot_every: u64,
    pub snapshot_keep_logs: u64,
    pub leader_wait: Duration,
}

/// A request only the leader can serve, forwarded by other nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderRequest {
    /// `deadline_ms` (Unix ms) is when the asking node gives up: a request
    /// that reaches the leader later (say, held in a TCP buffer across a
    /// partition) is refused, so that a write reported as failed is not
    /// applied behind the caller's back.
    Write {
        cmd: Box<Command>,
        deadline_ms: u64,
    },
    ReadIndex,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply {
    Written {
        outcome: Outcome,
        index: u64,
    },
    ReadIndex(u64),
    /// This node is not (or no longer) the leader.
    NotLeader,
    /// The request arrived after its deadline and was not served.
    Expired,
    Failed(String),
}

/// The outcome of a committed write and its log index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub outcome: Outcome,
    pub index: u64,
}

/// What a node knows of the Raft group right now.
#[derive(Debug, Clone)]
pub struct RaftStatus {
    pub id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub applied_index: u64,
    /// Last log index covered by this node's snapshot.
    pub snapshot_index: Option<u64>,
    /// Last log index purged from this node's log.
    pub purged_index: Option<u64>,
    pub is_leader: bool,
    /// Raft id -> address, from the membership config.
    pub addresses: Vec<(u64, String)>,
}

/// The metadata service of one node. Cheap to clone.
#[derive(Clone)]
pub struct Meta {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    raft: Raft,
    sm: sm::StateMachine,
    http: reqwest::Client,
    leader_wait: Duration,
    ack_gate: std::sync::OnceLock<Arc<dyn AckGate>>,
}

/// What the leader runs after a write that changed WebFS objects is
/// applied and before the write is acknowledged: WebFS breaks the
/// callbacks that caching nodes hold on those objects there (see
/// `wos-node`'s `fs_cache`), so that no node serves an old version from
/// its cache once the writer has heard "done".
pub trait AckGate: Send + Sync + 'static {
    fn before_ack(
        &self,
        changed: Vec<wos_fsmeta::Ino>,
        index: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

const LEADER_PATH: &str = "/internal/meta/leader";
const RETRY_PAUSE: Duration = Duration::from_millis(100);

impl Meta {
    /// Opens the node's Raft group member from the store and starts it.
    pub async fn start(
        store: Store,
        id: u64,
        cfg: &MetaConfig,
        http: reqwest::Client,
    ) -> Result<Meta, MetaError> {
        let config = Config {
            cluster_name: "wos".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_min_ms,
            election_timeout_max: cfg.election_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.snapshot_keep_logs,
            purge_batch_size: cfg.snapshot_every.clamp(1, 256),
            // A node that was cut off must not depose a healthy leader when it
            // comes back with a higher term.
            enable_pre_vote: Some(true),
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| MetaError::Fatal(e.to_string()))?,
        );
        let log =
            log_store::LogStore::new(store.clone()).map_err(|e| MetaError::Fatal(e.to_string()))?;
        let sm = sm::StateMachine::open(store).map_err(|e| MetaError::Fatal(e.to_string()))?;
        let net = network::NetworkFactory {
            my_id: id,
            http: http.clone(),
        };
        let raft = Raft::new(id, config, net, log, sm.clone())
            .await
            .map_err(|e| MetaError::Fatal(e.to_string()))?;
        Ok(Meta {
            inner: Arc::new(Inner {
                id,
                raft,
                sm,
                http,
                leader_wait: cfg.leader_wait,
                ack_gate: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Installs the gate every acknowledged WebFS change passes on the
    /// leader (once; later calls are ignored).
    pub fn set_ack_gate(&self, gate: Arc<dyn AckGate>) {
        let _ = self.inner.ack_gate.set(gate);
    }

    /// Waits until the local replica has applied `index` (a read index the
    /// leader handed out), at most `leader_wait`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), MetaError> {
        self.inner
            .raft
            .wait(Some(self.inner.leader_wait))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|e| MetaError::NoLeader {
                waited_ms: self.inner.leader_wait.as_millis(),
                detail: format!("this node did not catch up with the leader: {e}"),
            })
    }

    /// The leader's address, if this node knows one (and it is not itself).
    pub fn leader_address(&self) -> Option<String> {
        let status = self.status();
        if status.is_leader {
            return None;
        }
        let leader = status.leader?;
        status
            .addresses
            .into_iter()
            .find(|(id, _)| *id == leader)
            .map(|(_, a)| a)
    }

    /// Makes this node the single voter of a new group. Only for a new cell.
    pub async fn bootstrap(&self, address: &str) -> Result<(), MetaError> {
        let members = std::collections::BTreeMap::from([(self.inner.id, BasicNode::new(address))]);
        self.inner
            .raft
            .initialize(members)
            .await
            .map_err(|e| MetaError::Fatal(format!("initialising the metadata group: {e}")))
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Reads the local replica (possibly stale; see [`Meta::linearizable`]).
    pub fn read<R>(&self, f: impl FnOnce(&CellState) -> R) -> R {
        self.inner.sm.read(|a| f(&a.state))
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        RaftStatus {
            id: self.inner.id,
            leader: m.current_leader,
            term: m.current_term,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            is_leader: m.state == ServerState::Leader,
            addresses: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
        }
    }

    /// Commits `cmd` (forwarding it to the leader if need be).
    pub async fn write(&self, cmd: Command) -> Result<Written, MetaError> {
        let started = Instant::now();
        let deadline_ms = unix_millis() + self.inner.leader_wait.as_millis() as u64;
        match self
            .until_leader_answers(
                started,
                LeaderRequest::Write {
                    cmd: Box::new(cmd),
                    deadline_ms,
                },
            )
            .await?
        {
            LeaderReply::Written { outcome, index } => Ok(Written { outcome, index }),
            other => Err(MetaError::Fatal(format!(
                "unexpected leader reply {other:?}"
            ))),
        }
    }

    /// Returns once the local replica has applied every write that was
    /// acknowledged before this call began.
    pub async fn linearizable(&self) -> Result<(), MetaError> {
        let started = Instant::now();
        let index = match self
            .until_leader_answers(started, LeaderRequest::ReadIndex)
            .await?
        {
            LeaderReply::ReadIndex(i) => i,
            other => {
                return Err(MetaError::Fatal(format!(
                    "unexpected leader reply {other:?}"
                )));
            }
        };
        let left = self.inner.leader_wait.saturating_sub(started.elapsed());
        self.inner
            .raft
            .wait(Some(left))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| MetaError::NoLeader {
                waited_ms: started.elapsed().as_millis(),
                detail: format!("this node did not catch up with the leader: {e}"),
            })?;
        Ok(())
    }

    /// Serves `req` here if this node leads, else forwards it to the leader;
    /// retries while no leader is known, until `leader_wait` has passed.
    async fn until_leader_answers(
        &self,
        started: Instant,
        req: LeaderRequest,
    ) -> Result<LeaderReply, MetaError> {
        let mut last_problem = String::from("no leader known");
        loop {
            let left = self.inner.leader_wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(MetaError::NoLeader {
                    waited_ms: started.elapsed().as_millis(),
                    detail: last_problem,
                });
            }
            let status = self.status();
            let reply = if status.is_leader {
                match tokio::time::timeout(left, self.serve_as_leader(req.clone())).await {
                    Ok(r) => r,
                    Err(_) => {
                        last_problem = "this node leads but could not reach a quorum".into();
                        continue;
                    }
                }
            } else if let Some(addr) = status
                .leader
                .and_then(|l| status.addresses.iter().find(|(id, _)| *id == l))
                .map(|(_, a)| a.clone())
            {
                match self.forward(&addr, &req, left).await {
                    Ok(r) => r,
                    Err(e) => {
                        last_problem = format!("leader at {addr} unreachable: {e}");
                        LeaderReply::NotLeader
                    }
                }
            } else {
                LeaderReply::NotLeader
            };
            match reply {
                LeaderReply::NotLeader => tokio::time::sleep(RETRY_PAUSE.min(left)).await,
                LeaderReply::Expired => {
                    return Err(MetaError::NoLeader {
                        waited_ms: started.elapsed().as_millis(),
                        detail: "the request reached the leader after this node gave up; it was not applied".into(),
                    });
                }
                LeaderReply::Failed(msg) => return Err(MetaError::Fatal(msg)),
                ok => return Ok(ok),
            }
        }
    }

    async fn forward(
        &self,
        addr: &str,
        req: &LeaderRequest,
        timeout: Duration,
    ) -> Result<LeaderReply, String> {
        let body = postcard::to_allocvec(req).map_err(|e| e.to_string())?;
        let resp = self
            .inner
            .http
            .post(format!("https://{addr}{LEADER_PATH}"))
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        postcard::from_bytes(&bytes).map_err(|e| e.to_string())
    }

    /// Serves a forwarded request on this node, which must be the leader.
    pub async fn serve_as_leader(&self, req: LeaderRequest) -> LeaderReply {
        let raft = &self.inner.raft;
        match req {
            LeaderRequest::Write { cmd, deadline_ms } => {
                if unix_millis() > deadline_ms {
                    return LeaderReply::Expired;
                }
                let changes_files = matches!(*cmd, Command::Fs { .. });
                let touched = cmd.touched_files();
                match raft.client_write(*cmd).await {
                    Ok(resp) => {
                        let index = resp.log_id.index;
                        if changes_files {
                            self.before_ack(touched, &resp.data, index).await;
                        }
                        LeaderReply::Written {
                            index,
                            outcome: resp.data,
                        }
                    }
                    Err(e) if e.forward_to_leader().is_some() => LeaderReply::NotLeader,
                    Err(e) => LeaderReply::Failed(e.to_string()),
                }
            }
            LeaderRequest::ReadIndex => {
                // Within its lease (renewed by every heartbeat a quorum
                // answers; followers vote for no one else meanwhile) the
                // leader knows it still leads without asking: the read costs
                // no round trip to the followers. With the lease run out, it
                // asks a quorum (ReadIndex).
                let read = match raft.ensure_linearizable(ReadPolicy::LeaseRead).await {
                    Err(e) if e.forward_to_leader().is_none() => {
                        raft.ensure_linearizable(ReadPolicy::ReadIndex).await
                    }
                    other => other,
                };
                match read {
                    Ok(read) => LeaderReply::ReadIndex(read.index()),
                    Err(e) if e.forward_to_leader().is_some() => LeaderReply::NotLeader,
                    Err(e) => LeaderReply::Failed(e.to_string()),
                }
            }
        }
    }

    /// Runs the [`AckGate`] for an applied WebFS change that changed
    /// something (a refused one changed nothing).
    async fn before_ack(&self, mut touched: Vec<wos_fsmeta::Ino>, outcome: &Outcome, index: u64) {
        let Outcome::Fs { reply } = outcome else {
            return;
        };
        let Ok(reply) = reply.as_ref() else {
            return;
        };
        // The op's own object (a removed or moved one, a new file's
        // replacement) is named only in the reply.
        touched.push(reply.inode.ino);
        if let Some(gate) = self.inner.ack_gate.get() {
            gate.before_ack(touched, index).await;
        }
    }

    /// Handles a forwarded leader request arriving over HTTP (postcard bytes).
    pub async fn handle_leader_request(&self, body: &[u8]) -> Result<Vec<u8>, MetaError> {
        let req: LeaderRequest =
            postcard::from_bytes(body).map_err(|e| MetaError::BadRequest(e.to_string()))?;
        let reply = if self.status().is_leader {
            self.serve_as_leader(req).await
        } else {
            LeaderReply::NotLeader
        };
        Ok(wos_store::encode(&reply))
    }

    /// Handles a Raft RPC arriving over HTTP.
    pub async fn handle_rpc(&self, kind: RpcKind, body: &[u8]) -> Result<Vec<u8>, MetaError> {
        network::handle_rpc(&self.inner.raft, kind, body)
            .await
            .map_err(|e| MetaError::BadRequest(e.to_string()))
    }

    /// On the leader: brings the Raft membership in line with the node
    /// records: every node a member, the nodes marked core (and caught up)
    /// the voters. Called periodically; a step that fails is retried next time.
    pub async fn reconcile(&self) {
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return;
        }
        let membership = m.membership_config.membership().clone();
        let nodes: Vec<NodeRecord> = self.read(|s| s.nodes.values().cloned().collect());
        for n in &nodes {
            if membership.get_node(&n.id).is_none() {
                let add = raft.add_learner(n.id, BasicNode::new(&n.address), false);
                if let Err(e) = tokio::time::timeout(Duration::from_secs(2), add).await {
                    tracing::debug!("adding learner {}: {e}", n.name);
                }
                return;
            }
        }
        let last = m.last_log_index.unwrap_or(0);
        let caught_up = |id: &u64| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .is_some_and(|matched| matched.index + 100 >= last)
        };
        let current: BTreeSet<u64> = membership.voter_ids().collect();
        let wanted: BTreeSet<u64> = nodes
            .iter()
            .filter(|n| n.core)
            .map(|n| n.id)
            .filter(|id| current.contains(id) || caught_up(id))
            .collect();
        if !wanted.is_empty() && wanted != current {
            tracing::info!(?current, ?wanted, "changing metadata voters");
            let change = raft.change_membership(ChangeMembers::ReplaceAllVoters(wanted), true);
            match tokio::time::timeout(Duration::from_secs(5), change).await {
                Ok(Err(e)) => tracing::warn!("changing voters: {e}"),
                Err(_) => tracing::warn!("changing voters timed out"),
                Ok(Ok(_)) => {}
            }
            return;
        }
        // Members whose node record was removed (and who are no longer voters).
        let known: BTreeSet<u64> = nodes.iter().map(|n| n.id).collect();
        let gone: BTreeSet<u64> = membership
            .learner_ids()
            .filter(|id| !known.contains(id))
            .collect();
        if !gone.is_empty() {
            tracing::info!(?gone, "removing nodes from the metadata group");
            let change = raft.change_membership(ChangeMembers::RemoveNodes(gone), false);
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), change).await {
                tracing::warn!("removing nodes: {e}");
            }
        }
    }

    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }
}

/// Our log store and state machine against openraft's own conformance suite.
#[cfg(test)]
mod storage_suite {
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};

    use crate::log_store::LogStore;
    use crate::sm::StateMachine;
    use crate::types::TypeConfig;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = wos_store::Store::open(&dir.path().join("meta.redb")).expect("store");
            let log = LogStore::new(store.clone()).expect("log store");
            let sm = StateMachine::open(store).expect("state machine");
            Ok((dir, log, sm))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_store_and_state_machine_pass_the_openraft_suite() {
        Suite::test_all(Builder)
            .await
            .expect("openraft storage suite");
    }
}
