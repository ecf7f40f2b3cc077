//! Raft RPCs between nodes: `POST https://ADDR/internal/raft/KIND` with a
//! postcard body, over the node's mutual-TLS client.

use std::future::Future;
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RPCTypes};
use serde::{Serialize, de::DeserializeOwned};

use crate::types::{Snap, SnapMeta, SnapshotData, TypeConfig, Vote};

/// The kinds of Raft RPC, as they appear in the URL.
#[derive(Debug, Clone, Copy)]
pub enum RpcKind {
    Append,
    Vote,
    PreVote,
    Snapshot,
    TransferLeader,
}

impl RpcKind {
    pub fn path(self) -> &'static str {
        match self {
            RpcKind::Append => "append",
            RpcKind::Vote => "vote",
            RpcKind::PreVote => "prevote",
            RpcKind::Snapshot => "snapshot",
            RpcKind::TransferLeader => "transfer-leader",
        }
    }

    pub fn from_path(p: &str) -> Option<RpcKind> {
        [
            RpcKind::Append,
            RpcKind::Vote,
            RpcKind::PreVote,
            RpcKind::Snapshot,
            RpcKind::TransferLeader,
        ]
        .into_iter()
        .find(|k| k.path() == p)
    }

    fn rpc_type(self) -> RPCTypes {
        match self {
            RpcKind::Append => RPCTypes::AppendEntries,
            RpcKind::Vote | RpcKind::PreVote => RPCTypes::Vote,
            RpcKind::Snapshot => RPCTypes::InstallSnapshot,
            RpcKind::TransferLeader => RPCTypes::TransferLeader,
        }
    }
}

pub struct NetworkFactory {
    pub my_id: u64,
    pub http: reqwest::Client,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        NetworkClient {
            my_id: self.my_id,
            target,
            addr: node.addr.clone(),
            http: self.http.clone(),
        }
    }
}

pub struct NetworkClient {
    my_id: u64,
    target: u64,
    addr: String,
    http: reqwest::Client,
}

impl NetworkClient {
    async fn call<Req, Resp>(
        &self,
        kind: RpcKind,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body =
            postcard::to_allocvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = format!("https://{}/internal/raft/{}", self.addr, kind.path());
        let send = async {
            let resp = self.http.post(&url).body(body).send().await?;
            let resp = resp.error_for_status()?;
            resp.bytes().await
        };
        let bytes = match tokio::time::timeout(ttl, send).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action: kind.rpc_type(),
                    id: self.my_id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            // Unreachable makes openraft back off; a peer that refuses us
            // (an HTTP error) should not be hammered either.
            Ok(Err(e)) if e.is_connect() || e.is_status() => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Ok(Err(e)) => return Err(RPCError::Network(NetworkError::new(&e))),
            Ok(Ok(b)) => b,
        };
        let res: Result<Resp, RaftError<TypeConfig>> =
            postcard::from_bytes(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|remote| RPCError::Unreachable(Unreachable::new(&remote)))
    }
}

impl RaftNetworkV2<TypeConfig> for NetworkClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::Append, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::Vote, &rpc, option.hard_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::PreVote, &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snap,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = (vote, snapshot.meta, snapshot.snapshot);
        tokio::pin!(cancel);
        tokio::select! {
            closed = &mut cancel => Err(StreamingError::Closed(closed)),
            res = self.call::<_, SnapshotResponse<TypeConfig>>(RpcKind::Snapshot, &req, option.hard_ttl()) => Ok(res?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::TransferLeader, &req, option.hard_ttl())
            .await
    }
}

/// Server side: decodes an RPC, hands it to the local Raft, encodes the answer.
pub async fn handle_rpc(
    raft: &crate::types::Raft,
    kind: RpcKind,
    body: &[u8],
) -> Result<Vec<u8>, postcard::Error> {
    fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(v)
    }
    match kind {
        RpcKind::Append => enc(&raft.append_entries(postcard::from_bytes(body)?).await),
        RpcKind::Vote => enc(&raft.vote(postcard::from_bytes(body)?).await),
        RpcKind::PreVote => enc(&raft.pre_vote(postcard::from_bytes(body)?).await),
        RpcKind::Snapshot => {
            let (vote, meta, data): (Vote, SnapMeta, SnapshotData) = postcard::from_bytes(body)?;
            let res: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> = raft
                .install_full_snapshot(
                    vote,
                    Snap {
                        meta,
                        snapshot: data,
                    },
                )
                .await
                .map_err(RaftError::Fatal);
            enc(&res)
        }
        RpcKind::TransferLeader => {
            let res: Result<TransferLeaderResponse<TypeConfig>, RaftError<TypeConfig>> = raft
                .handle_transfer_leader(postcard::from_bytes(body)?)
                .await
                .map_err(RaftError::Fatal);
            enc(&res)
        }
    }
}
