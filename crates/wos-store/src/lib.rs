//! Node store: the one embedded, transactional key-value database of a node.
//!
//! Owns the on-disk file `meta.redb` in a node's data directory. Other crates
//! define their own tables (the Raft log, the metadata state machine, ...) and
//! keep their values as `postcard` bytes through the typed helpers here, so that
//! no crate above this one touches serialization of stored values directly.
//!
//! Every write transaction commits with redb's default durability (fsync before
//! `commit` returns): a write acknowledged by a caller survives a crash.

use std::path::Path;
use std::sync::Arc;

pub use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Serialize, de::DeserializeOwned};

/// Errors of the node store. They carry the underlying cause as text, since
/// callers only report them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the node store at {path}: {cause} (is another wos process using this data directory?)"
    )]
    Open { path: String, cause: String },
    #[error("node store failure: {0}")]
    Db(String),
    #[error("corrupt value in table {table}: {cause}")]
    Decode { table: String, cause: String },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Memory redb may use to cache pages of the node store.
pub const CACHE_BYTES: usize = 16 << 20;

/// A table of byte keys to byte values; values are `postcard`-encoded structs.
pub type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The node's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // redb's default cache is 1 GiB and fills with whatever was read or
        // written; a node's metadata is small, and an idle node should stay small.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                cause: e.to_string(),
            })?;
        Ok(Store { db: Arc::new(db) })
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Reads one value, `None` when absent (or when the table does not exist yet).
    pub fn get<V: DeserializeOwned>(
        &self,
        table: BytesTable,
        key: &[u8],
    ) -> Result<Option<V>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(key)? {
            Some(v) => decode(table, v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Writes one value durably.
    pub fn put<V: Serialize>(
        &self,
        table: BytesTable,
        key: &[u8],
        value: &V,
    ) -> Result<(), StoreError> {
        let bytes = encode(value);
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(table)?;
            t.insert(key, bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Encodes a value for storage. Encoding plain structs into a `Vec` cannot fail.
pub fn encode<V: Serialize>(value: &V) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encoding of an in-memory value")
}

/// Decodes a stored value, naming the table when the bytes are not what we wrote.
pub fn decode<V: DeserializeOwned>(table: BytesTable, bytes: &[u8]) -> Result<V, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Decode {
        table: table.name().to_string(),
        cause: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: BytesTable = TableDefinition::new("t");

    #[test]
    fn put_then_get_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("wos-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.redb");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.get::<String>(T, b"k").unwrap(), None);
            s.put(T, b"k", &"v".to_string()).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get::<String>(T, b"k").unwrap(), Some("v".to_string()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
