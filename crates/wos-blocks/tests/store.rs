//! The chunk store on a real directory.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wos_blocks::{CHUNK_SIZE, ChunkId, ChunkStore, Chunker, CollectReport, Error, Stats};

fn store() -> (tempfile::TempDir, ChunkStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(&dir.path().join("chunks")).unwrap();
    (dir, store)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn set_age(path: &Path, age: Duration) {
    let file = File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

fn stored(bytes: &[u8], store: &ChunkStore) -> ChunkId {
    let id = ChunkId::of(bytes);
    assert!(store.put(&id, bytes).unwrap());
    id
}

#[test]
fn put_get_roundtrip() {
    let (_dir, store) = store();
    let id = stored(b"hello chunk", &store);
    assert!(store.contains(&id));
    assert_eq!(store.get(&id).unwrap(), b"hello chunk");
    assert_eq!(store.len(&id).unwrap(), 11);
    let hex = id.to_string();
    assert_eq!(
        store.path(&id),
        store.root().join(&hex[..2]).join(&hex[2..])
    );
    assert!(store.path(&id).is_file());
    // Still there for a new opener of the directory.
    let again = ChunkStore::open(store.root()).unwrap();
    assert_eq!(again.get(&id).unwrap(), b"hello chunk");
}

#[test]
fn empty_chunk_is_a_chunk() {
    let (_dir, store) = store();
    let id = stored(b"", &store);
    assert_eq!(store.get(&id).unwrap(), b"");
}

#[test]
fn missing_chunk_is_not_found() {
    let (_dir, store) = store();
    let id = ChunkId::of(b"never stored");
    assert!(!store.contains(&id));
    assert!(matches!(store.get(&id), Err(Error::NotFound { .. })));
    assert!(matches!(store.len(&id), Err(Error::NotFound { .. })));
    assert!(matches!(
        store.open_range(&id, 0, 1),
        Err(Error::NotFound { .. })
    ));
    let msg = store.get(&id).unwrap_err().to_string();
    assert!(
        msg.contains(&id.to_string()) && msg.contains("another replica"),
        "{msg}"
    );
}

#[test]
fn hash_mismatch_is_refused_and_leaves_nothing() {
    let (_dir, store) = store();
    let claimed = ChunkId::of(b"what the sender meant");
    let err = store.put(&claimed, b"what arrived").unwrap_err();
    match &err {
        Error::HashMismatch { id, actual } => {
            assert_eq!(*id, claimed);
            assert_eq!(*actual, ChunkId::of(b"what arrived"));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&claimed.to_string()), "{msg}");
    assert!(
        msg.contains(&ChunkId::of(b"what arrived").to_string()),
        "{msg}"
    );
    assert!(files(store.root()).is_empty());
    assert!(!store.contains(&claimed));

    let err = store
        .put_stream(&claimed, &b"what arrived"[..], 12)
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
    assert!(files(store.root()).is_empty());
}

#[test]
fn corrupt_chunk_is_detected_and_moved_aside() {
    let (_dir, store) = store();
    let id = stored(b"precious data", &store);
    let path = store.path(&id);
    fs::write(&path, b"precious data, bit-rotted").unwrap();

    let err = store.get(&id).unwrap_err();
    let Error::Corrupt {
        id: bad, moved_to, ..
    } = &err
    else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert_eq!(*bad, id);
    let moved_to = moved_to.clone().expect("moved aside");
    assert!(moved_to.starts_with(store.root().join("corrupt")));
    assert_eq!(fs::read(&moved_to).unwrap(), b"precious data, bit-rotted");
    assert!(err.to_string().contains("repair"), "{err}");

    // Now missing, so that repair fetches it; a good copy can be stored.
    assert!(!store.contains(&id));
    assert!(matches!(store.get(&id), Err(Error::NotFound { .. })));
    assert_eq!(store.list().count(), 0);
    assert!(store.put(&id, b"precious data").unwrap());
    assert_eq!(store.get(&id).unwrap(), b"precious data");
}

#[test]
fn verify_scrubs() {
    let (_dir, store) = store();
    let id = stored(b"scrub me", &store);
    store.verify(&id).unwrap();
    fs::write(store.path(&id), b"scrub m3").unwrap();
    assert!(matches!(store.verify(&id), Err(Error::Corrupt { .. })));
    assert!(!store.contains(&id));
}

#[test]
fn put_is_idempotent_and_does_not_rewrite() {
    let (_dir, store) = store();
    let id = stored(b"same bytes", &store);
    let path = store.path(&id);
    set_age(&path, Duration::from_secs(3600));
    let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());

    assert!(!store.put(&id, b"same bytes").unwrap());
    assert!(!store.put_stream(&id, &b"same bytes"[..], 10).unwrap());
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), inode);
    // Found present counts as just written, for `collect`.
    assert!(meta.modified().unwrap().elapsed().unwrap() < Duration::from_secs(60));
    assert_eq!(files(store.root()).len(), 1);
}

#[test]
fn put_replaces_a_truncated_copy() {
    let (_dir, store) = store();
    let id = stored(b"0123456789", &store);
    fs::write(store.path(&id), b"01234").unwrap();
    assert!(store.put(&id, b"0123456789").unwrap());
    assert_eq!(store.get(&id).unwrap(), b"0123456789");
    assert_eq!(files(&store.root().join("corrupt")).len(), 1);
}

#[test]
fn oversized_chunk_is_refused() {
    let (_dir, store) = store();
    let big = vec![7u8; CHUNK_SIZE + 1];
    let id = ChunkId::of(&big);
    assert!(matches!(store.put(&id, &big), Err(Error::TooLarge { .. })));
    assert!(matches!(
        store.put_stream(&id, &big[..], big.len() as u64),
        Err(Error::TooLarge { .. })
    ));
    let full = vec![7u8; CHUNK_SIZE];
    assert!(store.put(&ChunkId::of(&full), &full).unwrap());
}

#[test]
fn delete_removes() {
    let (_dir, store) = store();
    let id = stored(b"doomed", &store);
    assert!(store.delete(&id).unwrap());
    assert!(!store.contains(&id));
    assert!(!store.delete(&id).unwrap());
}

#[test]
fn list_and_stats_see_chunks_only() {
    let (_dir, store) = store();
    let mut ids: Vec<ChunkId> = (0..50u32)
        .map(|i| stored(&i.to_le_bytes().repeat(i as usize + 1), &store))
        .collect();
    // Not chunks: a temp file, a stray file, a stray directory.
    let fanout = store.path(&ids[0]).parent().unwrap().to_path_buf();
    fs::write(fanout.join(".tmp.leftover"), b"partial").unwrap();
    fs::write(fanout.join("README"), b"hands off").unwrap();
    fs::create_dir(store.root().join("zz")).unwrap();

    let mut listed: Vec<ChunkId> = store.list().collect::<Result<_, _>>().unwrap();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);

    let bytes: u64 = (0..50u64).map(|i| 4 * (i + 1)).sum();
    assert_eq!(store.stats().unwrap(), Stats { chunks: 50, bytes });
}

#[test]
fn open_range_reads_inside_the_chunk() {
    let (_dir, store) = store();
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let id = stored(&data, &store);
    assert_eq!(store.open_range(&id, 0, 10).unwrap(), &data[..10]);
    assert_eq!(store.open_range(&id, 9_000, 1_000).unwrap(), &data[9_000..]);
    assert_eq!(store.open_range(&id, 10_000, 0).unwrap(), b"");
    for (offset, len) in [(9_999, 2), (10_001, 0), (u64::MAX, 2)] {
        let err = store.open_range(&id, offset, len).unwrap_err();
        assert!(
            matches!(err, Error::OutOfRange { size: 10_000, .. }),
            "{err}"
        );
    }
}

#[test]
fn collect_keeps_live_and_young_and_removes_dead_old_and_stale_temps() {
    let (_dir, store) = store();
    let hour = Duration::from_secs(3600);
    let live_old = stored(b"live and old", &store);
    let dead_old = stored(b"dead and old", &store);
    let dead_young = stored(b"dead and young", &store);
    set_age(&store.path(&live_old), 2 * hour);
    set_age(&store.path(&dead_old), 2 * hour);

    let fanout = store.path(&dead_old).parent().unwrap().to_path_buf();
    let stale_temp = fanout.join(".tmp.crashed");
    let fresh_temp = fanout.join(".tmp.in-flight");
    fs::write(&stale_temp, b"x").unwrap();
    fs::write(&fresh_temp, b"y").unwrap();
    set_age(&stale_temp, 2 * hour);

    let live = |id: &ChunkId| *id == live_old;
    let report = store.collect(&live, hour).unwrap();
    assert_eq!(
        report,
        CollectReport {
            scanned: 3,
            kept_live: 1,
            kept_young: 1,
            deleted: 1,
            deleted_bytes: 12,
            temps_removed: 1,
        }
    );
    assert!(store.contains(&live_old));
    assert!(store.contains(&dead_young));
    assert!(!store.contains(&dead_old));
    assert!(!stale_temp.exists());
    assert!(fresh_temp.exists());
}

#[test]
fn collect_spares_a_chunk_a_put_just_found_present() {
    let (_dir, store) = store();
    let id = stored(b"reused by a new version", &store);
    set_age(&store.path(&id), Duration::from_secs(7200));
    assert!(!store.put(&id, b"reused by a new version").unwrap());
    let report = store
        .collect(&|_| false, Duration::from_secs(3600))
        .unwrap();
    assert_eq!(report.kept_young, 1);
    assert!(store.contains(&id));
}

/// A reader that ends early.
struct Cut<'a>(&'a [u8]);

impl Read for Cut<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn put_stream_stores_and_refuses_short_streams() {
    let (_dir, store) = store();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let id = ChunkId::of(&data);

    let err = store
        .put_stream(&id, Cut(&data[..100_000]), data.len() as u64)
        .unwrap_err();
    match &err {
        Error::ShortRead { expected, got, .. } => {
            assert_eq!((*expected, *got), (300_000, 100_000));
        }
        other => panic!("expected ShortRead, got {other:?}"),
    }
    assert!(files(store.root()).is_empty(), "temp file left behind");
    assert!(!store.contains(&id));

    // Only `len` bytes are read, even if the stream goes on.
    let mut longer = data.clone();
    longer.extend_from_slice(b"next request");
    let mut reader = &longer[..];
    assert!(
        store
            .put_stream(&id, &mut reader, data.len() as u64)
            .unwrap()
    );
    assert_eq!(reader, b"next request");
    assert_eq!(store.get(&id).unwrap(), data);
}

#[test]
fn put_stream_read_error_leaves_nothing() {
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer gone"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }
    let (_dir, store) = store();
    let id = ChunkId::of(&[1u8; 1000]);
    let err = store.put_stream(&id, Broken(500), 1000).unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err}");
    assert!(files(store.root()).is_empty());
}

#[test]
fn concurrent_puts_of_one_chunk() {
    let (_dir, store) = store();
    let data = vec![42u8; 1 << 20];
    let id = ChunkId::of(&data);
    let newly: Vec<bool> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let (store, data) = (&store, &data);
                s.spawn(move || {
                    if i % 2 == 0 {
                        store.put(&id, data).unwrap()
                    } else {
                        store.put_stream(&id, &data[..], data.len() as u64).unwrap()
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(newly.iter().filter(|n| **n).count(), 1, "{newly:?}");
    assert_eq!(store.get(&id).unwrap(), data);
    assert_eq!(
        files(store.root()),
        [store.path(&id)],
        "temp files left behind"
    );
}

#[test]
fn chunker_into_store() {
    let (_dir, store) = store();
    let input: Vec<u8> = (0..(20u32 << 20)).map(|i| (i * 7 % 253) as u8).collect();
    let mut ids = Vec::new();
    for chunk in Chunker::new(&input[..]) {
        let (id, bytes) = chunk.unwrap();
        store.put(&id, &bytes).unwrap();
        ids.push(id);
    }
    assert_eq!(ids.len(), 5);
    let mut joined = Vec::new();
    for id in &ids {
        joined.extend(store.get(id).unwrap());
    }
    assert_eq!(joined, input);
}

#[test]
fn free_bytes_is_reported() {
    let (_dir, store) = store();
    assert!(store.free_bytes() > 0);
}

#[test]
fn open_refuses_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let err = ChunkStore::open(&file).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}
