//! A node's cache of chunks it read from other nodes.
//!
//! Chunks are immutable (named by their content), so a cached chunk is
//! valid forever: the cache never asks anyone whether it is current, it
//! only decides what to keep. It holds at most `capacity` bytes and drops
//! the least recently used chunks first.
//!
//! Unlike [`crate::ChunkStore`], nothing here is durable: files are not
//! fsynced (a chunk lost in a crash is fetched again), and every read is
//! verified against the chunk's id, so a torn or damaged file is dropped
//! instead of served.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::{ChunkId, Error, Result};

/// Chunks cached on one node's disk, least recently used dropped first.
#[derive(Debug)]
pub struct ChunkCache {
    root: PathBuf,
    capacity: u64,
    lru: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    /// Chunk to (length, last use).
    entries: HashMap<ChunkId, (u64, u64)>,
    /// Last use to chunk: the oldest first.
    order: BTreeMap<u64, ChunkId>,
    clock: u64,
    bytes: u64,
}

impl Lru {
    fn touch(&mut self, id: &ChunkId) -> bool {
        let Some((_, used)) = self.entries.get_mut(id) else {
            return false;
        };
        self.order.remove(used);
        self.clock += 1;
        *used = self.clock;
        self.order.insert(self.clock, *id);
        true
    }

    fn insert(&mut self, id: ChunkId, len: u64) {
        if self.touch(&id) {
            return;
        }
        self.clock += 1;
        self.entries.insert(id, (len, self.clock));
        self.order.insert(self.clock, id);
        self.bytes += len;
    }

    fn remove(&mut self, id: &ChunkId) -> bool {
        match self.entries.remove(id) {
            Some((len, used)) => {
                self.order.remove(&used);
                self.bytes -= len;
                true
            }
            None => false,
        }
    }

    /// The least recently used chunk, taken out of the index.
    fn pop_oldest(&mut self) -> Option<ChunkId> {
        let (_, id) = self.order.pop_first()?;
        if let Some((len, _)) = self.entries.remove(&id) {
            self.bytes -= len;
        }
        Some(id)
    }
}

fn lock(m: &Mutex<Lru>) -> MutexGuard<'_, Lru> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the cache holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub chunks: u64,
    pub bytes: u64,
    pub capacity: u64,
}

impl ChunkCache {
    /// Opens the cache in `dir` (created if needed) holding at most
    /// `capacity` bytes; what a previous run left is kept, oldest first
    /// out. A capacity of 0 turns the cache off.
    pub fn open(dir: &Path, capacity: u64) -> Result<ChunkCache> {
        fs::create_dir_all(dir).map_err(|e| Error::io("create the cache directory", dir, e))?;
        let cache = ChunkCache {
            root: dir.to_path_buf(),
            capacity,
            lru: Mutex::default(),
        };
        let mut found = vec![];
        let listing = fs::read_dir(dir).map_err(|e| Error::io("list the cache", dir, e))?;
        for entry in listing.flatten() {
            let path = entry.path();
            let id = entry.file_name().to_str().and_then(|n| n.parse().ok());
            match (id, entry.metadata()) {
                (Some(id), Ok(meta)) if meta.is_file() => {
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((used, id, meta.len()));
                }
                // Temporary files of a crashed run, and strangers.
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        found.sort();
        {
            let mut lru = lock(&cache.lru);
            for (_, id, len) in found {
                lru.insert(id, len);
            }
        }
        cache.evict();
        Ok(cache)
    }

    fn path(&self, id: &ChunkId) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// The chunk's bytes if the cache has them (verified).
    pub fn get(&self, id: &ChunkId) -> Option<Vec<u8>> {
        if !lock(&self.lru).touch(id) {
            return None;
        }
        let path = self.path(id);
        match fs::read(&path) {
            Ok(bytes) if ChunkId::of(&bytes) == *id => Some(bytes),
            _ => {
                // Damaged or gone: forget it, the caller fetches it again.
                lock(&self.lru).remove(id);
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Keeps a chunk (its bytes must hash to `id`), dropping the least
    /// recently used ones to stay within the capacity.
    pub fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        if len > self.capacity || lock(&self.lru).touch(id) {
            return Ok(());
        }
        let actual = ChunkId::of(bytes);
        if actual != *id {
            return Err(Error::HashMismatch { id: *id, actual });
        }
        let path = self.path(id);
        let temp = self.root.join(format!(".{id}.{}", std::process::id()));
        let written = fs::File::create(&temp)
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(Error::io("write a cached chunk", &path, e));
        }
        lock(&self.lru).insert(*id, len);
        self.evict();
        Ok(())
    }

    fn evict(&self) {
        loop {
            let victim = {
                let mut lru = lock(&self.lru);
                if lru.bytes <= self.capacity {
                    return;
                }
                lru.pop_oldest()
            };
            match victim {
                Some(id) => {
                    let _ = fs::remove_file(self.path(&id));
                }
                None => return,
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        let lru = lock(&self.lru);
        CacheStats {
            chunks: lru.entries.len() as u64,
            bytes: lru.bytes,
            capacity: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8, len: usize) -> (ChunkId, Vec<u8>) {
        let bytes = vec![n; len];
        (ChunkId::of(&bytes), bytes)
    }

    #[test]
    fn the_least_recently_used_chunk_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 300).unwrap();
        let (a, ab) = chunk(1, 100);
        let (b, bb) = chunk(2, 100);
        let (c, cb) = chunk(3, 100);
        let (d, db) = chunk(4, 100);
        cache.put(&a, &ab).unwrap();
        cache.put(&b, &bb).unwrap();
        cache.put(&c, &cb).unwrap();
        // `a` used again: `b` is now the oldest.
        assert_eq!(cache.get(&a).as_deref(), Some(&ab[..]));
        cache.put(&d, &db).unwrap();
        assert!(cache.get(&b).is_none());
        assert!(cache.get(&a).is_some() && cache.get(&c).is_some() && cache.get(&d).is_some());
        assert_eq!(cache.stats().bytes, 300);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn a_damaged_file_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 1000).unwrap();
        let (a, ab) = chunk(1, 100);
        cache.put(&a, &ab).unwrap();
        std::fs::write(dir.path().join(a.to_string()), b"torn").unwrap();
        assert!(cache.get(&a).is_none());
        assert_eq!(cache.stats().chunks, 0);
        // Wrong bytes are refused outright.
        let (b, _) = chunk(2, 10);
        assert!(cache.put(&b, b"not these").is_err());
    }

    #[test]
    fn a_reopened_cache_keeps_what_fits() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = ChunkCache::open(dir.path(), 1000).unwrap();
            for n in 0..5 {
                let (id, bytes) = chunk(n, 100);
                cache.put(&id, &bytes).unwrap();
            }
        }
        std::fs::write(dir.path().join(".leftover.1"), b"x").unwrap();
        let cache = ChunkCache::open(dir.path(), 250).unwrap();
        assert_eq!(cache.stats().chunks, 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // Off: nothing is kept.
        let off = ChunkCache::open(&dir.path().join("off"), 0).unwrap();
        let (id, bytes) = chunk(9, 10);
        off.put(&id, &bytes).unwrap();
        assert!(off.get(&id).is_none());
    }
}
