//! The Raft log and vote, kept in the node store (redb). Every append and
//! vote is committed (fsync) before openraft is told it is durable.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use wos_store::{ReadableDatabase, ReadableTable, Store, TableDefinition};

use crate::types::{Entry, LogId, TypeConfig, Vote};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The log store. Cheap to clone; all clones share the database.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub fn new(store: Store) -> Result<LogStore, io::Error> {
        // Create the tables so that read transactions can always open them.
        let tx = store.db().begin_write().map_err(io_err)?;
        tx.open_table(LOG).map_err(io_err)?;
        tx.open_table(META).map_err(io_err)?;
        tx.commit().map_err(io_err)?;
        Ok(LogStore { store })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, io::Error> {
        let tx = self.store.db().begin_read().map_err(io_err)?;
        let t = tx.open_table(META).map_err(io_err)?;
        match t.get(key).map_err(io_err)? {
            Some(v) => postcard::from_bytes(v.value()).map(Some).map_err(io_err),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), io::Error> {
        let bytes = wos_store::encode(value);
        let tx = self.store.db().begin_write().map_err(io_err)?;
        tx.open_table(META)
            .map_err(io_err)?
            .insert(key, bytes.as_slice())
            .map_err(io_err)?;
        tx.commit().map_err(io_err)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, io::Error> {
        let tx = self.store.db().begin_read().map_err(io_err)?;
        let t = tx.open_table(LOG).map_err(io_err)?;
        match t.last().map_err(io_err)? {
            Some((_, v)) => {
                let e: Entry = postcard::from_bytes(v.value()).map_err(io_err)?;
                Ok(Some(e.log_id))
            }
            None => Ok(None),
        }
    }

    fn append_blocking(&self, entries: Vec<Entry>) -> Result<(), io::Error> {
        let tx = self.store.db().begin_write().map_err(io_err)?;
        {
            let mut t = tx.open_table(LOG).map_err(io_err)?;
            for e in &entries {
                let bytes = wos_store::encode(e);
                t.insert(e.log_id.index, bytes.as_slice()).map_err(io_err)?;
            }
        }
        tx.commit().map_err(io_err)
    }

    /// Deletes entries with index in `range`.
    fn delete_range(&self, from: Bound<u64>, to: Bound<u64>) -> Result<(), io::Error> {
        let tx = self.store.db().begin_write().map_err(io_err)?;
        {
            let mut t = tx.open_table(LOG).map_err(io_err)?;
            t.retain_in((from, to), |_, _| false).map_err(io_err)?;
        }
        tx.commit().map_err(io_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let tx = self.store.db().begin_read().map_err(io_err)?;
        let t = tx.open_table(LOG).map_err(io_err)?;
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
        for item in t.range::<u64>(bounds).map_err(io_err)? {
            let (_, v) = item.map_err(io_err)?;
            out.push(postcard::from_bytes(v.value()).map_err(io_err)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.get_meta(PURGED)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.put_meta(VOTE, vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.put_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let this = self.clone();
        // The commit fsyncs: keep it off the async worker threads.
        let res = tokio::task::spawn_blocking(move || this.append_blocking(entries))
            .await
            .map_err(io_err)?;
        match res {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index + 1).unwrap_or(0);
        self.delete_range(Bound::Included(from), Bound::Unbounded)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: a crash in between leaves extra
        // entries, never a hole.
        self.put_meta(PURGED, &log_id)?;
        self.delete_range(Bound::Unbounded, Bound::Included(log_id.index))
    }
}
