//! Files created through this mount that the cell learns of when they are
//! first closed.
//!
//! The kernel holds a directory's lock while `create(2)` waits for the file
//! system, so on a network file system creating many files in one directory
//! goes one round trip at a time, however many threads do it. Once this
//! mount has created a file in a directory (which shows that it may), the
//! next creates there take an object id reserved in advance, answer at once,
//! and send the name together with the first content when the file is
//! closed or fsynced: one request and one metadata write per small file.
//!
//! Until then the file is this mount's own: other nodes see it at its first
//! close, as they see its content. Whatever needs it on the cell first (a
//! rename or removal in its directory, chmod, a second open) makes it there
//! at once. An error the cell would have given at `create` (someone else
//! made the name meanwhile with `O_EXCL`, rights taken away) comes at
//! `close` instead, and the name then disappears here too.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::Errno;
use tracing::{debug, warn};
use wos_api::FsEntry;

use crate::fs::{WosFs, join, lock};
use crate::remote::Target;

/// How long a successful create in a directory lets the next ones there
/// be deferred. Rights taken away later than this before a create still
/// fail it at `open`.
const PROVEN_FOR: Duration = Duration::from_secs(2);

/// Ids asked for at a time (one metadata write per this many files).
const RESERVE_BATCH: u64 = 1024;

/// A file created here that the cell may not have yet.
pub(crate) struct Pending {
    pub parent: u64,
    pub name: String,
    exclusive: bool,
    /// What this mount shows for it meanwhile.
    pub entry: FsEntry,
    /// Whether the cell has it (`Some(None)`) or refused it for good
    /// (`Some(Some(errno))`); held while it is being sent, so that it is
    /// sent once.
    made: Mutex<Option<Option<Errno>>>,
    /// Refused for good (readable without waiting for `made`).
    refused: AtomicBool,
}

#[derive(Default)]
pub(crate) struct Deferred {
    /// Reserved object ids not used yet.
    ids: Mutex<VecDeque<u64>>,
    pending: Mutex<HashMap<u64, Arc<Pending>>>,
    /// Directories this mount made a file in lately, with that file: its
    /// owner and kind are what the next one there gets.
    proven: Mutex<HashMap<u64, (Instant, FsEntry)>>,
}

impl WosFs {
    /// This mount made `e` in `dir` on the cell.
    pub(crate) fn note_created(&self, dir: u64, e: &FsEntry) {
        lock(&self.deferred.proven).insert(dir, (Instant::now(), e.clone()));
    }

    /// A new file `name` in `parent` that the cell learns of at its first
    /// close, if this mount may defer it (see the module doc); `None`: make
    /// it on the cell now.
    pub(crate) fn defer_create(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        flags: i32,
    ) -> Option<FsEntry> {
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            // Nothing will be written, so no close would make it.
            return None;
        }
        if flags & (libc::O_EXCL | libc::O_TRUNC) == 0 {
            // Should another client have made the name meanwhile, a plain
            // O_CREAT must open and write into that file, which only the
            // cell can say; with O_TRUNC, replacing it is the same as
            // emptying it and writing last.
            return None;
        }
        let template = lock(&self.deferred.proven)
            .get(&parent)
            .filter(|(at, _)| at.elapsed() < PROVEN_FOR)
            .map(|(_, e)| e.clone())?;
        let dir = self.path_of(parent).ok()?;
        let ino = self.reserved_id(&dir)?;
        let now = crate::spool::now_ms();
        let entry = FsEntry {
            name: name.to_string(),
            path: join(&dir, name),
            ino,
            size: 0,
            version: 0,
            mode,
            mtime_ms: now,
            ctime_ms: now,
            atime_ms: now,
            nlink: 1,
            rdev: 0,
            target: None,
            chunks: 0,
            ..template
        };
        let pending = Pending {
            parent,
            name: name.to_string(),
            exclusive: flags & libc::O_EXCL != 0,
            entry: entry.clone(),
            made: Mutex::new(None),
            refused: AtomicBool::new(false),
        };
        lock(&self.deferred.pending).insert(ino, Arc::new(pending));
        Some(entry)
    }

    /// An unused reserved id, reserving more when none is left.
    fn reserved_id(&self, dir: &str) -> Option<u64> {
        let mut ids = lock(&self.deferred.ids);
        if ids.is_empty() {
            match self.remote.reserve_ids(dir, RESERVE_BATCH) {
                Ok(got) => ids.extend(got.first..got.first + got.count),
                Err(f) => {
                    debug!("reserving object ids in {dir}: {f}");
                    return None;
                }
            }
        }
        ids.pop_front()
    }

    pub(crate) fn pending(&self, ino: u64) -> Option<Arc<Pending>> {
        lock(&self.deferred.pending).get(&ino).cloned()
    }

    /// The files in `dir` the cell has not seen yet.
    pub(crate) fn pending_in(&self, dir: u64) -> Vec<FsEntry> {
        lock(&self.deferred.pending)
            .values()
            .filter(|p| p.parent == dir && !p.refused.load(Ordering::Relaxed))
            .map(|p| p.entry.clone())
            .collect()
    }

    /// Forgets a deferred create that no handle has any more: its open
    /// failed, or its last close could not make it on the cell.
    pub(crate) fn forget_pending(&self, ino: u64) {
        if let Some(p) = lock(&self.deferred.pending).remove(&ino) {
            self.cache_remove(p.parent, &p.name);
        }
    }

    /// Sends `ino`'s creation with `spool`'s content (none: empty), if the
    /// cell does not have it yet. `None`: it has.
    ///
    /// A refusal (the name taken with `O_EXCL`, rights gone, the directory
    /// gone, the id no longer reserved) is final: the name goes away here
    /// and every later upload of the file fails the same way, so that its
    /// last close keeps the content as an unsaved spool instead of dropping
    /// it. Any other failure (the cell out of reach) leaves it pending, to
    /// be tried again at the next flush.
    pub(crate) fn send_pending(
        &self,
        ino: u64,
        spool: Option<&std::path::Path>,
    ) -> Option<Result<FsEntry, Errno>> {
        let p = self.pending(ino)?;
        let mut made = lock(&p.made);
        if let Some(refused) = *made {
            return refused.map(Err);
        }
        let path = match self.path_of(ino) {
            Ok(path) => path,
            Err(e) => return Some(Err(e)),
        };
        let target = Target::New {
            ino,
            mode: p.entry.mode,
            exclusive: p.exclusive,
        };
        let result = self
            .remote
            .upload(&path, spool, target)
            .map_err(|f| self.fail_transfer("create", &path, &f));
        match &result {
            Ok(e) => {
                *made = Some(None);
                lock(&self.deferred.pending).remove(&ino);
                drop(made);
                lock(&self.nodes).refresh(e);
                self.cache_put(p.parent, e);
                self.note_created(p.parent, e);
            }
            Err(err) if is_refusal(*err) => {
                *made = Some(Some(*err));
                p.refused.store(true, Ordering::Relaxed);
                drop(made);
                self.drop_pending(&p, *err);
            }
            Err(_) => {}
        }
        Some(result)
    }

    /// Makes `ino` on the cell now (empty) if only this mount has it.
    pub(crate) fn make_pending(&self, ino: u64) -> Result<(), Errno> {
        match self.send_pending(ino, None) {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Makes every file only this mount has in `dir` on the cell, before a
    /// change there that must see them (a rename over one, removing the
    /// directory). A file the cell refuses is gone here too (logged).
    pub(crate) fn make_pending_in(&self, dir: u64) {
        let inos: Vec<u64> = lock(&self.deferred.pending)
            .iter()
            .filter(|(_, p)| p.parent == dir)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in inos {
            let _ = self.make_pending(ino);
        }
    }

    /// The cell refused a deferred create: the name goes away from this
    /// mount's listings (the kernel forgets it within its TTL: telling it
    /// now could deadlock with the directory lock a caller holds).
    fn drop_pending(&self, p: &Pending, err: Errno) {
        warn!(
            "{}: the cell refused to create it ({err:?}); its content is kept as an \
             unsaved file when it is closed",
            p.entry.path
        );
        lock(&self.deferred.proven).remove(&p.parent);
        self.cache_remove(p.parent, &p.name);
        if err == Errno::EINVAL {
            // Perhaps its id is no longer reserved: take fresh ones.
            lock(&self.deferred.ids).clear();
        }
    }
}

/// Whether the cell's answer to a create is final (trying again would get
/// the same), as opposed to a failure to reach it.
fn is_refusal(err: Errno) -> bool {
    !matches!(err, Errno::EIO | Errno::EAGAIN)
}
