//! The state machine openraft drives: the in-memory [`CellState`], with its
//! snapshots persisted in the node store.
//!
//! The state itself lives in memory (metadata is small); what makes it
//! durable is the Raft log plus the last snapshot. On start, the stored
//! snapshot is loaded and openraft re-applies the committed log after it
//! (the log store keeps the committed id for that).

use std::io;
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use wos_store::{BytesTable, Store, TableDefinition};

use crate::state::{CellState, Outcome};
use crate::types::{LogId, Snap, SnapMeta, SnapshotData, StoredMembership, TypeConfig};

const SNAPSHOT: BytesTable = TableDefinition::new("meta_snapshot");
const CURRENT: &[u8] = b"current";

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// What is applied, with where it stands in the log.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub state: CellState,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapMeta,
    data: SnapshotData,
}

/// The state machine. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct StateMachine {
    applied: Arc<RwLock<Applied>>,
    store: Store,
}

impl StateMachine {
    /// Opens the state machine, restoring the last stored snapshot.
    pub fn open(store: Store) -> Result<StateMachine, io::Error> {
        let mut applied = Applied::default();
        if let Some(snap) = store
            .get::<StoredSnapshot>(SNAPSHOT, CURRENT)
            .map_err(io_err)?
        {
            applied = decode_snapshot(&snap.meta, &snap.data)?;
        }
        Ok(StateMachine {
            applied: Arc::new(RwLock::new(applied)),
            store,
        })
    }

    /// Reads the current state. The closure must be quick: it holds a lock
    /// that `apply` needs.
    pub fn read<R>(&self, f: impl FnOnce(&Applied) -> R) -> R {
        f(&self.applied.read().expect("state lock poisoned"))
    }
}

fn decode_snapshot(meta: &SnapMeta, data: &[u8]) -> Result<Applied, io::Error> {
    let state: CellState = postcard::from_bytes(data).map_err(io_err)?;
    Ok(Applied {
        last_applied: meta.last_log_id,
        last_membership: meta.last_membership.clone(),
        state,
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snap, io::Error> {
        let (meta, data) = self.read(|a| {
            let meta = SnapMeta {
                last_log_id: a.last_applied,
                last_membership: a.last_membership.clone(),
            };
            (meta, wos_store::encode(&a.state))
        });
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.put(SNAPSHOT, CURRENT, &stored))
            .await
            .map_err(io_err)?
            .map_err(io_err)?;
        Ok(Snap {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok(self.read(|a| (a.last_applied, a.last_membership.clone())))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let outcome = {
                let mut a = self.applied.write().expect("state lock poisoned");
                a.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Outcome::Done,
                    EntryPayload::Normal(cmd) => a.state.apply(entry.log_id.index, &cmd),
                    EntryPayload::Membership(m) => {
                        a.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        Outcome::Done
                    }
                }
            };
            if let Some(r) = responder {
                r.send(outcome);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let applied = decode_snapshot(meta, &snapshot)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot,
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.put(SNAPSHOT, CURRENT, &stored))
            .await
            .map_err(io_err)?
            .map_err(io_err)?;
        *self.applied.write().expect("state lock poisoned") = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snap>, io::Error> {
        let stored = self
            .store
            .get::<StoredSnapshot>(SNAPSHOT, CURRENT)
            .map_err(io_err)?;
        Ok(stored.map(|s| Snap {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
}
