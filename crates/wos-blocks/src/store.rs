//! One node's chunks as plain files: `DIR/ab/cdef…`, named by their id.
//!
//! Durability: a chunk is written to a temporary file in its fan-out
//! directory, fsynced, renamed into place without replacing anything, and the
//! directory is fsynced; only then does `put` return. The 256 fan-out
//! directories are created (and the root fsynced) once, by `open`, so that no
//! put depends on a directory entry that is not yet on disk. Deletions and
//! moves to `corrupt/` are not fsynced: a chunk that comes back after a crash
//! is harmless (it is immutable and named by its content) and is collected or
//! detected again.
//!
//! Reads: `get` verifies the whole chunk. `open_range` does not: verifying a
//! range would mean reading the whole chunk (up to 4 MiB) to serve a few
//! kilobytes, and ranged readers (FUSE, HTTP `Range`) read chunks piecewise.
//! Rot is caught by `get`, by `verify` (a scrub) and by readers that need
//! end-to-end integrity fetching the whole chunk.

use std::fs::{self, DirBuilder, File, OpenOptions, ReadDir};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::chunker::CHUNK_SIZE;
use crate::error::{Error, Result};
use crate::id::ChunkId;

/// Names of temporary files start with this; nothing else in a fan-out
/// directory does, since chunk names are hex.
const TEMP_PREFIX: &str = ".tmp.";
/// Where corrupt chunk files are moved, under the store's root.
const CORRUPT_DIR: &str = "corrupt";
/// Buffer for streaming a chunk to disk.
const COPY_BUF: usize = 64 << 10;
/// Chunk files hold users' data: only the node may read them.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub chunks: u64,
    pub bytes: u64,
}

/// What one [`ChunkStore::collect`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectReport {
    /// Chunks looked at.
    pub scanned: u64,
    /// Chunks kept because a version refers to them.
    pub kept_live: u64,
    /// Unreferenced chunks kept because they are younger than `min_age`.
    pub kept_young: u64,
    /// Unreferenced chunks deleted, and their bytes.
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// Stale temporary files removed (left by crashes or broken transfers).
    pub temps_removed: u64,
}

/// A directory of content-addressed chunks on one node's disk.
///
/// All methods take `&self` and may be called from many threads at once.
/// One process should open a given directory once (the node daemon does):
/// the guard that keeps `collect` from deleting a chunk that a concurrent
/// `put` just found present is per `ChunkStore`.
#[derive(Debug)]
pub struct ChunkStore {
    root: PathBuf,
    corrupt: PathBuf,
    /// `put` holds it shared while it finds a chunk present and refreshes its
    /// mtime (or renames a new one in); `collect` holds it exclusively while
    /// it checks a chunk's age and deletes it. So a put that answers
    /// "already stored" can never have its chunk collected under it.
    gc: RwLock<()>,
}

impl ChunkStore {
    /// Opens the store in `dir`, creating it and its fan-out directories if needed.
    pub fn open(dir: &Path) -> Result<ChunkStore> {
        let store = ChunkStore {
            root: dir.to_path_buf(),
            corrupt: dir.join(CORRUPT_DIR),
            gc: RwLock::new(()),
        };
        create_dir(dir, true)?;
        for prefix in 0..=u8::MAX {
            create_dir(&store.root.join(fanout_name(prefix)), false)?;
        }
        create_dir(&store.corrupt, false)?;
        sync_dir(&store.root)?;
        Ok(store)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds (or would hold) chunk `id`. Reading it directly
    /// skips verification.
    pub fn path(&self, id: &ChunkId) -> PathBuf {
        let digits = id.to_string();
        let (fanout, rest) = digits.split_at(2);
        self.root.join(fanout).join(rest)
    }

    /// Stores a chunk; `Ok(true)` if it was newly stored, `Ok(false)` if it
    /// was already there (then nothing is rewritten). Returns only once the
    /// chunk is on disk for good.
    pub fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<bool> {
        let len = bytes.len() as u64;
        check_size(id, len)?;
        let actual = ChunkId::of(bytes);
        if actual != *id {
            return Err(Error::HashMismatch { id: *id, actual });
        }
        if self.keep_present(id, len)? {
            return Ok(false);
        }
        let temp = TempFile::create(&self.fanout_dir(id), id)?;
        // A chunk is not read back soon: around the page cache.
        let direct = match bytes.len() >= crate::direct::DIRECT_MIN {
            true => crate::direct::open(&temp.path),
            false => Ok(None),
        };
        direct
            .and_then(|d| crate::direct::write_at(d.as_ref(), &temp.file, 0, bytes))
            .map_err(|e| Error::io("write the temporary file", &temp.path, e))?;
        self.publish(id, temp)
    }

    /// Stores a chunk of `len` bytes read from `reader`, hashing while
    /// writing, so a chunk received over the network is not buffered twice.
    ///
    /// Reads exactly `len` bytes. On a short stream or a hash mismatch the
    /// temporary file is removed and nothing is stored. If the chunk is
    /// already present, returns `Ok(false)` without reading `reader`.
    pub fn put_stream(&self, id: &ChunkId, reader: impl Read, len: u64) -> Result<bool> {
        check_size(id, len)?;
        if self.keep_present(id, len)? {
            return Ok(false);
        }
        let mut temp = TempFile::create(&self.fanout_dir(id), id)?;
        let (actual, got) = copy_hashing(reader.take(len), &mut temp)?;
        if got < len {
            return Err(Error::ShortRead {
                id: *id,
                expected: len,
                got,
            });
        }
        if actual != *id {
            return Err(Error::HashMismatch { id: *id, actual });
        }
        self.publish(id, temp)
    }

    /// Reads a whole chunk and verifies it. A corrupt file is moved to
    /// `DIR/corrupt/`, so that the chunk counts as missing and repair fetches
    /// a good copy.
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let path = self.path(id);
        let bytes = fs::read(&path).map_err(|e| self.read_error(id, &path, e))?;
        let actual = ChunkId::of(&bytes);
        if actual != *id {
            return Err(self.quarantine(id, path, actual));
        }
        Ok(bytes)
    }

    /// Reads and verifies a chunk without keeping it: a scrub. A corrupt
    /// chunk is moved aside as by [`ChunkStore::get`].
    pub fn verify(&self, id: &ChunkId) -> Result<()> {
        self.get(id).map(drop)
    }

    /// Reads `len` bytes of a chunk from `offset`, which must lie inside it.
    /// Not verified (see the module documentation for why).
    pub fn open_range(&self, id: &ChunkId, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path(id);
        let file = File::open(&path).map_err(|e| self.read_error(id, &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("read the size of", &path, e))?
            .len();
        let out_of_range = Error::OutOfRange {
            id: *id,
            offset,
            len,
            size,
        };
        match offset.checked_add(len) {
            Some(end) if end <= size => {}
            _ => return Err(out_of_range),
        }
        let mut buf = vec![0; usize::try_from(len).map_err(|_| out_of_range)?];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io("read a range of", &path, e))?;
        Ok(buf)
    }

    /// Whether the chunk is stored (its content is not checked).
    pub fn contains(&self, id: &ChunkId) -> bool {
        fs::metadata(self.path(id)).is_ok_and(|m| m.is_file())
    }

    /// The length of a stored chunk.
    pub fn len(&self, id: &ChunkId) -> Result<u64> {
        let path = self.path(id);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| self.read_error(id, &path, e))
    }

    /// Deletes a chunk; `Ok(false)` if it was not there. Not fsynced (see the
    /// module documentation).
    pub fn delete(&self, id: &ChunkId) -> Result<bool> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("delete the chunk file", path, e)),
        }
    }

    /// The ids of all stored chunks, in no particular order, read lazily from
    /// disk. Temporary files and anything else that is not a chunk are skipped.
    pub fn list(&self) -> impl Iterator<Item = Result<ChunkId>> + use<> {
        Walk::new(&self.root).filter_map(|entry| match entry {
            Ok(Entry {
                kind: Kind::Chunk(id),
                ..
            }) => Some(Ok(id)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// How many chunks the store holds, and their bytes. Walks the store.
    pub fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        for entry in Walk::new(&self.root) {
            let entry = entry?;
            if let Kind::Chunk(_) = entry.kind {
                match fs::metadata(&entry.path) {
                    Ok(m) => {
                        stats.chunks += 1;
                        stats.bytes += m.len();
                    }
                    // Deleted since it was listed.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("read the size of", entry.path, e)),
                }
            }
        }
        Ok(stats)
    }

    /// Bytes free for the store on its file system (for unprivileged users).
    /// 0 if the file system cannot be asked, which keeps a node whose disk
    /// fails out of placement rather than drawing chunks to it.
    pub fn free_bytes(&self) -> u64 {
        statvfs_free(&self.root).unwrap_or_else(|e| {
            tracing::warn!(dir = %self.root.display(), error = %e, "cannot read free space of the chunk directory");
            0
        })
    }

    /// Deletes the chunks that are not `live` and were last written (or found
    /// present by a put) longer than `min_age` ago, and temporary files older
    /// than `min_age`. The age keeps chunks written for a version that is not
    /// committed yet: choose `min_age` well above the time a write takes.
    pub fn collect(
        &self,
        live: &dyn Fn(&ChunkId) -> bool,
        min_age: Duration,
    ) -> Result<CollectReport> {
        let now = SystemTime::now();
        let mut report = CollectReport::default();
        for entry in Walk::new(&self.root) {
            let entry = entry?;
            match entry.kind {
                Kind::Temp => {
                    if let Aged::Removed(_) = remove_if_old(&entry.path, now, min_age)? {
                        report.temps_removed += 1;
                    }
                }
                Kind::Chunk(id) => {
                    report.scanned += 1;
                    if live(&id) {
                        report.kept_live += 1;
                        continue;
                    }
                    let _exclusive = self.gc.write().unwrap_or_else(PoisonError::into_inner);
                    match remove_if_old(&entry.path, now, min_age)? {
                        Aged::Removed(bytes) => {
                            report.deleted += 1;
                            report.deleted_bytes += bytes;
                        }
                        Aged::Young => report.kept_young += 1,
                        Aged::Gone => {}
                    }
                }
            }
        }
        tracing::info!(dir = %self.root.display(), ?report, "collected unreferenced chunks");
        Ok(report)
    }

    fn fanout_dir(&self, id: &ChunkId) -> PathBuf {
        self.root.join(fanout_name(id.0[0]))
    }

    /// If the chunk is present, refreshes its mtime (so that `collect` sees
    /// it as just written) and returns true. A present file of the wrong
    /// length is damaged: it is moved aside and false returned, so that the
    /// caller stores a good copy. Content is not re-read: that would double
    /// the disk reads of every deduplicated write; scrubs catch the rest.
    fn keep_present(&self, id: &ChunkId, len: u64) -> Result<bool> {
        let path = self.path(id);
        let _shared = self.gc.read().unwrap_or_else(PoisonError::into_inner);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open the chunk file", path, e)),
        };
        let size = file
            .metadata()
            .map_err(|e| Error::io("read the size of", &path, e))?
            .len();
        if size != len {
            drop(file);
            tracing::warn!(%id, size, len, path = %path.display(), "stored chunk has the wrong length; storing it again");
            self.move_aside(id, &path);
            return Ok(false);
        }
        touch(&file, &path)?;
        Ok(true)
    }

    /// Makes a fully written temporary file the chunk: fsync, rename without
    /// replacing, fsync the directory. `Ok(false)` if another writer got
    /// there first.
    fn publish(&self, id: &ChunkId, mut temp: TempFile) -> Result<bool> {
        temp.file
            .sync_all()
            .map_err(|e| Error::io("flush to disk the temporary file", &temp.path, e))?;
        let path = self.path(id);
        let _shared = self.gc.read().unwrap_or_else(PoisonError::into_inner);
        match rename_noreplace(&temp.path, &path) {
            Ok(()) => {
                temp.keep = true;
                sync_dir(&self.fanout_dir(id))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Same bytes, stored concurrently; the temp file goes on drop.
                let file =
                    File::open(&path).map_err(|e| Error::io("open the chunk file", &path, e))?;
                touch(&file, &path)?;
                Ok(false)
            }
            Err(e) => Err(Error::io("move into place the chunk file", path, e)),
        }
    }

    /// Moves a corrupt chunk file to `corrupt/` and returns the error to report.
    fn quarantine(&self, id: &ChunkId, path: PathBuf, actual: ChunkId) -> Error {
        tracing::warn!(%id, %actual, path = %path.display(), "corrupt chunk");
        let moved_to = self.move_aside(id, &path);
        Error::Corrupt {
            id: *id,
            path,
            actual,
            moved_to,
        }
    }

    /// Moves a damaged chunk file to `corrupt/`, where it no longer counts as
    /// stored but stays for inspection. `None` if that failed.
    fn move_aside(&self, id: &ChunkId, path: &Path) -> Option<PathBuf> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        // The timestamp keeps an earlier corrupt copy of the same chunk.
        let to = self.corrupt.join(format!("{id}.{nanos}"));
        match fs::rename(path, &to) {
            Ok(()) => Some(to),
            Err(e) => {
                tracing::error!(%id, path = %path.display(), error = %e, "cannot move a damaged chunk aside");
                None
            }
        }
    }

    fn read_error(&self, id: &ChunkId, path: &Path, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::NotFound {
                id: *id,
                path: path.to_path_buf(),
            }
        } else {
            Error::io("read the chunk file", path, e)
        }
    }
}

fn check_size(id: &ChunkId, len: u64) -> Result<()> {
    let max = CHUNK_SIZE as u64;
    if len > max {
        return Err(Error::TooLarge { id: *id, len, max });
    }
    Ok(())
}

fn fanout_name(prefix: u8) -> String {
    format!("{prefix:02x}")
}

fn create_dir(dir: &Path, recursive: bool) -> Result<()> {
    match DirBuilder::new()
        .recursive(recursive)
        .mode(DIR_MODE)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(Error::io("create the directory", dir, e)),
    }
}

/// Makes a directory's entries (a rename into it) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("flush to disk the directory", dir, e))
}

fn touch(file: &File, path: &Path) -> Result<()> {
    file.set_modified(SystemTime::now())
        .map_err(|e| Error::io("refresh the modification time of", path, e))
}

/// Copies `reader` into the temporary file, returning the BLAKE3 of what was
/// copied and its length.
fn copy_hashing(mut reader: impl Read, temp: &mut TempFile) -> Result<(ChunkId, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(Error::Read { source }),
        };
        hasher.update(&buf[..n]);
        temp.file
            .write_all(&buf[..n])
            .map_err(|e| Error::io("write the temporary file", &temp.path, e))?;
        total += n as u64;
    }
    Ok((hasher.finalize().into(), total))
}

/// A temporary file in a fan-out directory, removed when dropped unless kept.
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempFile {
    fn create(dir: &Path, id: &ChunkId) -> Result<TempFile> {
        // Unique per process (counter) and across processes (pid); a stale
        // file from an earlier process with the same pid is stepped over.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{id}.{pid}.{n}"));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        keep: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create the temporary file", path, e)),
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = fs::remove_file(&self.path) {
            // `collect` removes it later.
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a temporary chunk file");
        }
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` if `to` exists, so
/// that of concurrent writers of one chunk exactly one stores it and an
/// existing chunk is never rewritten.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        match renameat2_noreplace(from, to) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                // The file system cannot do it; a hard link can.
            }
            other => return other,
        }
    }
    link_then_unlink(from, to)
}

#[cfg(target_os = "linux")]
fn renameat2_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let from = c_path(from)?;
    let to = c_path(to)?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The portable no-replace rename: `link` fails if `to` exists. A crash
/// between the two steps leaves a temporary file, which `collect` removes.
fn link_then_unlink(from: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(from, to)?;
    if let Err(e) = fs::remove_file(from) {
        tracing::warn!(path = %from.display(), error = %e, "cannot remove a temporary chunk file");
    }
    Ok(())
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn statvfs_free(path: &Path) -> io::Result<u64> {
    let c = c_path(path)?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated string; `st` is only read after
    // statvfs returned success, which means it filled it in.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        st.assume_init()
    };
    #[allow(clippy::useless_conversion)] // the field types vary by platform
    let free = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
    Ok(free)
}

/// What `remove_if_old` found.
enum Aged {
    Removed(u64),
    Young,
    /// Deleted by someone else meanwhile.
    Gone,
}

/// Removes `path` if its mtime is at least `min_age` before `now`. A
/// modification time in the future (a clock set back) counts as young.
fn remove_if_old(path: &Path, now: SystemTime, min_age: Duration) -> Result<Aged> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Aged::Gone),
        Err(e) => return Err(Error::io("read the age of", path, e)),
    };
    let mtime = meta
        .modified()
        .map_err(|e| Error::io("read the age of", path, e))?;
    match now.duration_since(mtime) {
        Ok(age) if age >= min_age => {}
        _ => return Ok(Aged::Young),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(Aged::Removed(meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Aged::Gone),
        Err(e) => Err(Error::io("delete", path, e)),
    }
}

/// A file found in a fan-out directory.
struct Entry {
    path: PathBuf,
    kind: Kind,
}

enum Kind {
    Chunk(ChunkId),
    Temp,
}

/// Walks the fan-out directories lazily, one directory listing at a time.
struct Walk {
    root: PathBuf,
    next_prefix: u16,
    current: Option<(u8, PathBuf, ReadDir)>,
}

impl Walk {
    fn new(root: &Path) -> Walk {
        Walk {
            root: root.to_path_buf(),
            next_prefix: 0,
            current: None,
        }
    }

    /// Opens the next fan-out directory; `None` when all were walked.
    fn advance(&mut self) -> Option<Result<()>> {
        let prefix = u8::try_from(self.next_prefix).ok()?;
        self.next_prefix += 1;
        let dir = self.root.join(fanout_name(prefix));
        match fs::read_dir(&dir) {
            Ok(entries) => self.current = Some((prefix, dir, entries)),
            // Removed by hand: nothing to list there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Some(Err(Error::io("list the directory", dir, e))),
        }
        Some(Ok(()))
    }
}

impl Iterator for Walk {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some((prefix, dir, entries)) = &mut self.current {
                match entries.next() {
                    Some(Ok(entry)) => match classify(*prefix, &entry) {
                        Some(found) => return Some(Ok(found)),
                        None => continue,
                    },
                    Some(Err(e)) => {
                        return Some(Err(Error::io("list the directory", dir.clone(), e)));
                    }
                    None => self.current = None,
                }
            }
            if let Err(e) = self.advance()? {
                return Some(Err(e));
            }
        }
    }
}

/// What a directory entry is; `None` for anything that is neither a chunk
/// nor a temporary file (left there by hand: it is not ours to touch).
fn classify(prefix: u8, entry: &fs::DirEntry) -> Option<Entry> {
    let name = entry.file_name();
    let name = name.to_str()?;
    if !entry.file_type().is_ok_and(|t| t.is_file()) {
        return None;
    }
    let kind = if name.starts_with(TEMP_PREFIX) {
        Kind::Temp
    } else {
        match format!("{}{name}", fanout_name(prefix)).parse() {
            Ok(id) => Kind::Chunk(id),
            Err(_) => {
                tracing::debug!(path = %entry.path().display(), "not a chunk file; skipped");
                return None;
            }
        }
    };
    Some(Entry {
        path: entry.path(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_noreplace_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs::write(&a, b"new").unwrap();
        fs::write(&b, b"old").unwrap();
        let err = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"old");
        rename_noreplace(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&c).unwrap(), b"new");
    }

    #[test]
    fn link_fallback_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs::write(&a, b"new").unwrap();
        fs::write(&b, b"old").unwrap();
        let err = link_then_unlink(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"old");
        link_then_unlink(&a, &c).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&c).unwrap(), b"new");
    }
}
