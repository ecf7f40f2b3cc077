//! The audit log: every privileged decision of this node's reference
//! monitor, kept durably in the node store and queryable.
//!
//! Recording never blocks a request: entries go through a channel to a writer
//! task that commits them in batches (one fsync per batch, at most every
//! [`FLUSH_EVERY`]).

use std::time::Duration;

use tokio::sync::mpsc;
use wos_api::{AuditEntry, AuditQuery};
use wos_store::{ReadableDatabase, Store, StoreError, TableDefinition};

/// Key: (Unix ms, sequence number within this process).
const AUDIT: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("audit");
/// Longest time an entry waits before it is on disk.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Largest answer to one query.
pub const MAX_QUERY: usize = 10_000;

/// Handle to the audit log. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<AuditEntry>,
    store: Store,
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

impl AuditLog {
    /// Opens the log in `store` and starts its writer (needs a tokio runtime).
    pub fn open(store: Store) -> Result<AuditLog, StoreError> {
        let tx = store.db().begin_write().map_err(db)?;
        tx.open_table(AUDIT).map_err(db)?;
        tx.commit().map_err(db)?;
        let (sender, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store.clone(), rx));
        Ok(AuditLog { tx: sender, store })
    }

    pub fn record(&self, entry: AuditEntry) {
        let _ = self.tx.send(entry);
    }

    /// This node's entries matching `q`, oldest first, the newest `limit` kept.
    pub fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = q.limit.unwrap_or(1000).min(MAX_QUERY);
        let tx = self.store.db().begin_read().map_err(db)?;
        let t = tx.open_table(AUDIT).map_err(db)?;
        let from = (q.since_ms.unwrap_or(0), 0u64);
        let mut out = std::collections::VecDeque::new();
        for item in t.range(from..).map_err(db)? {
            let (_, v) = item.map_err(db)?;
            let e: AuditEntry = postcard::from_bytes(v.value()).map_err(db)?;
            if q.matches(&e) {
                if out.len() == limit {
                    out.pop_front();
                }
                out.push_back(e);
            }
        }
        Ok(out.into())
    }
}

async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<AuditEntry>) {
    let mut seq: u64 = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        tokio::time::sleep(FLUSH_EVERY).await;
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
        }
        let store = store.clone();
        let start = seq;
        seq += batch.len() as u64;
        let res = tokio::task::spawn_blocking(move || write_batch(&store, start, &batch)).await;
        if let Ok(Err(e)) | Err(e) = res.map_err(|e| StoreError::Db(e.to_string())) {
            tracing::error!("audit log write failed: {e}");
        }
    }
}

fn write_batch(store: &Store, first_seq: u64, batch: &[AuditEntry]) -> Result<(), StoreError> {
    let tx = store.db().begin_write().map_err(db)?;
    {
        let mut t = tx.open_table(AUDIT).map_err(db)?;
        for (i, e) in batch.iter().enumerate() {
            let bytes = wos_store::encode(e);
            t.insert((e.time_ms, first_seq + i as u64), bytes.as_slice())
                .map_err(db)?;
        }
    }
    tx.commit().map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: u64, p: &str, o: &str) -> AuditEntry {
        AuditEntry {
            time_ms: t,
            node: "n".into(),
            principal: p.into(),
            action: "Write".into(),
            object: o.into(),
            allowed: true,
            reason: "test".into(),
        }
    }

    #[tokio::test]
    async fn entries_are_durable_and_queryable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let log = AuditLog::open(Store::open(&path).unwrap()).unwrap();
            log.record(entry(10, "alice", "kv:/a"));
            log.record(entry(20, "bob", "kv:/b"));
            log.record(entry(30, "alice", "cell"));
            tokio::time::sleep(FLUSH_EVERY * 3).await;
        }
        // The writer task closes the database once it sees the log dropped.
        tokio::time::sleep(FLUSH_EVERY).await;
        let log = AuditLog::open(Store::open(&path).unwrap()).unwrap();
        let all = log.query(&AuditQuery::default()).unwrap();
        assert_eq!(all.len(), 3);
        let q = AuditQuery {
            principal: Some("alice".into()),
            ..Default::default()
        };
        assert_eq!(log.query(&q).unwrap().len(), 2);
        let q = AuditQuery {
            object: Some("kv:".into()),
            since_ms: Some(15),
            ..Default::default()
        };
        assert_eq!(log.query(&q).unwrap(), vec![entry(20, "bob", "kv:/b")]);
        let q = AuditQuery {
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(log.query(&q).unwrap(), vec![entry(30, "alice", "cell")]);
    }
}
