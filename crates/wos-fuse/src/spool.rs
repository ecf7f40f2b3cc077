//! Local copies of files open for writing ("spools").
//!
//! WebFS is close-to-open: a new version replaces the old one whole when the
//! writer closes. So writes, which may land anywhere in the file, go to a
//! local file first, and closing (or fsync) uploads it as one version.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where spools live: a private (0700) directory removed at unmount, inside
/// the user's cache directory or the system's temporary directory.
#[derive(Debug)]
pub(crate) struct SpoolDir {
    dir: tempfile::TempDir,
    /// Where a spool that could not be uploaded is moved to survive the
    /// unmount.
    keep: PathBuf,
}

impl SpoolDir {
    pub fn new(cache_dir: Option<&Path>) -> io::Result<SpoolDir> {
        let keep = match cache_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                d.to_path_buf()
            }
            None => std::env::temp_dir(),
        };
        // Spools hold file contents: only this user may read them.
        let dir = tempfile::Builder::new()
            .prefix("wos-mount-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&keep)?;
        Ok(SpoolDir { dir, keep })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn keep_dir(&self) -> &Path {
        &self.keep
    }
}

/// One local copy of a file's content.
#[derive(Debug)]
pub(crate) struct Spool {
    file: tempfile::NamedTempFile,
    /// The same file for writes around the page cache: a spool is read
    /// once, by the upload (see `wos_blocks::direct`). Opened at the first
    /// large write; `None` inside if its file system refuses.
    direct: Option<Option<File>>,
    len: u64,
    /// Holds changes the cell has not got yet.
    pub dirty: bool,
    /// When this mount last changed it (ms since the epoch; 0: never): what
    /// `stat` shows as its mtime and ctime until the cell stamps the upload.
    changed_ms: u64,
}

impl Spool {
    pub fn new_in(dir: &Path) -> io::Result<Spool> {
        Ok(Spool {
            file: tempfile::Builder::new().prefix("spool-").tempfile_in(dir)?,
            direct: None,
            len: 0,
            dirty: false,
            changed_ms: 0,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The file to fill; call [`Spool::filled`] afterwards.
    pub fn file_mut(&mut self) -> &mut File {
        self.file.as_file_mut()
    }

    /// Takes the length from the file after it was filled.
    pub fn filled(&mut self) -> io::Result<()> {
        self.len = self.file.as_file().metadata()?.len();
        Ok(())
    }

    /// Up to `size` bytes at `offset` (fewer at the end).
    pub fn read_at(&self, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let end = self.len.min(offset.saturating_add(u64::from(size)));
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        self.file.as_file().read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    pub fn changed_ms(&self) -> u64 {
        self.changed_ms
    }

    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.direct.is_none() && data.len() >= wos_blocks::direct::DIRECT_MIN {
            self.direct = Some(wos_blocks::direct::open(self.file.path())?);
        }
        let direct = self.direct.as_ref().and_then(Option::as_ref);
        wos_blocks::direct::write_at(direct, self.file.as_file(), offset, data)?;
        self.len = self.len.max(offset + data.len() as u64);
        self.changed();
        Ok(())
    }

    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.as_file().set_len(len)?;
        self.len = len;
        self.changed();
        Ok(())
    }

    /// fallocate(2) on the local copy (allocating, punching a hole,
    /// zeroing a range); the length follows what the call did.
    pub fn allocate(&mut self, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        };
        let fd = self.file.as_file().as_raw_fd();
        // SAFETY: `fd` is the spool's open file for the call's duration.
        if unsafe { libc::fallocate(fd, mode, offset, len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled()?;
        self.changed();
        Ok(())
    }

    /// The cell has this content now: from here on its times are the cell's.
    pub fn saved(&mut self) {
        self.dirty = false;
        self.changed_ms = 0;
    }

    fn changed(&mut self) {
        self.dirty = true;
        self.changed_ms = now_ms();
    }

    /// Moves the spool out of the spool directory so that it outlives the
    /// mount, under a name that says which file it was; returns where.
    pub fn keep(self, dir: &Path, ino: u64, name: &str) -> io::Result<PathBuf> {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let to = dir.join(format!("wos-unsaved-{ino}-{stamp}-{safe}"));
        self.file.persist_noclobber(&to).map_err(|e| e.error)?;
        Ok(to)
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The state of one file that this mount has open, shared by all its open
/// handles, so that reads through any of them see this mount's own writes.
#[derive(Debug)]
pub(crate) struct OpenFile {
    state: Mutex<OpenState>,
    /// The spool's length, readable while an upload holds `state` (stat must
    /// not wait for a long upload); `NO_SPOOL` when there is none.
    spool_len: AtomicU64,
    /// The spool's `changed_ms`, readable the same way (0: unchanged).
    changed_ms: AtomicU64,
}

const NO_SPOOL: u64 = u64::MAX;

#[derive(Debug, Default)]
pub(crate) struct OpenState {
    pub handles: usize,
    pub writers: usize,
    pub spool: Option<Spool>,
    /// An upload of the spool that started while it was being written (a
    /// large file): the close then only waits for the rest.
    pub upload: Option<crate::remote::Growing>,
    /// This version changed below what its growing upload had sent: it is
    /// uploaded whole at close.
    pub no_stream: bool,
    /// Dropped from the table of open files: a new open must make a new one.
    pub removed: bool,
}

impl OpenFile {
    pub fn new() -> OpenFile {
        OpenFile {
            state: Mutex::default(),
            spool_len: AtomicU64::new(NO_SPOOL),
            changed_ms: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, OpenState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The length of this mount's copy, if it has one.
    pub fn spool_len(&self) -> Option<u64> {
        match self.spool_len.load(Ordering::Acquire) {
            NO_SPOOL => None,
            n => Some(n),
        }
    }

    /// When this mount last changed its copy, if it did (ms since the epoch).
    pub fn changed_ms(&self) -> Option<u64> {
        match self.changed_ms.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// Publishes the spool's length and change time after a change (call
    /// with `state` held).
    pub fn publish(&self, state: &OpenState) {
        let n = state.spool.as_ref().map_or(NO_SPOOL, Spool::len);
        self.spool_len.store(n, Ordering::Release);
        let t = state.spool.as_ref().map_or(0, Spool::changed_ms);
        self.changed_ms.store(t, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_reads_what_was_written_and_tracks_its_length() {
        let dir = SpoolDir::new(None).unwrap();
        let mut s = Spool::new_in(dir.path()).unwrap();
        assert!(!s.dirty);
        assert_eq!(s.changed_ms(), 0);
        s.write_at(10, b"hello").unwrap();
        assert!(s.dirty);
        assert!(s.changed_ms() > 0);
        assert_eq!(s.len(), 15);
        assert_eq!(s.read_at(8, 4).unwrap(), b"\0\0he");
        assert_eq!(s.read_at(12, 100).unwrap(), b"llo");
        assert_eq!(s.read_at(20, 4).unwrap(), b"");
        s.set_len(11).unwrap();
        assert_eq!(s.read_at(0, 100).unwrap().len(), 11);
        // Growing by allocation; a punched hole reads as zeros.
        s.allocate(0, 0, 20).unwrap();
        assert_eq!(s.len(), 20);
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        if s.allocate(punch, 10, 2).is_ok() {
            assert_eq!(s.read_at(9, 4).unwrap(), b"\0\0\0\0");
        }
        s.set_len(11).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "spools are private");
        let kept = s.keep(dir.keep_dir(), 7, "a b/c").unwrap();
        assert!(
            kept.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("a_b_c")
        );
        assert_eq!(std::fs::read(&kept).unwrap().len(), 11);
        std::fs::remove_file(kept).unwrap();
    }
}
