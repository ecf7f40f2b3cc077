//! The FUSE file system over WebFS: shared state, attributes, the directory
//! listing cache, and the `fuser::Filesystem` entry points, which only
//! unpack arguments and send replies. The work is in `namespace.rs` (names,
//! attributes, directories) and `files.rs` (open files and their data).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use tracing::{debug, warn};
use wos_api::{ApiFailure, FsEntry};

use crate::deferred::Deferred;
use crate::errno::{errno, io_errno};
use crate::files::FileState;
use crate::namespace::AttrChange;
use crate::nodes::{Kind, NoPath, Nodes, ROOT};
use crate::remote::{Fail, Remote};
use crate::spool::{OpenFile, SpoolDir};

/// How long the kernel may trust a name or attributes without asking.
/// Short on purpose: another node's changes show up here only when this
/// runs out, until WebFS has callbacks (AFS-style promises to tell a cache
/// before an entry changes); then it can grow.
pub(crate) const TTL: Duration = Duration::from_secs(1);

/// Listings kept for lookups before expired ones are dropped.
const MAX_LISTINGS: usize = 256;

/// `st_blksize`: programs size their buffers by it; large buffers mean few
/// round trips.
const BLKSIZE: u32 = 1 << 20;

/// A directory's entries as one answer of the cell saw them, plus this
/// mount's own changes since.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    at: Instant,
    pub entries: Vec<FsEntry>,
    index: HashMap<String, usize>,
}

impl Listing {
    fn new(entries: Vec<FsEntry>) -> Listing {
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Listing {
            at: Instant::now(),
            entries,
            index,
        }
    }

    pub fn find(&self, name: &str) -> Option<&FsEntry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    fn put(&mut self, e: &FsEntry) {
        match self.index.get(&e.name) {
            Some(&i) => self.entries[i] = e.clone(),
            None => {
                self.index.insert(e.name.clone(), self.entries.len());
                self.entries.push(e.clone());
            }
        }
    }

    fn remove(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    fn is_fresh(&self) -> bool {
        self.at.elapsed() < TTL
    }
}

/// What a FUSE file handle stands for.
pub(crate) enum Handle {
    File(Arc<FileState>),
    Dir { listing: Arc<Listing>, parent: u64 },
}

pub(crate) struct WosFs {
    pub(crate) remote: Remote,
    /// Shown as every file's owner: the cell's owners are principals, not
    /// local users, and the kernel checks modes against these.
    uid: u32,
    gid: u32,
    pub(crate) spools: SpoolDir,
    pub(crate) nodes: Mutex<Nodes>,
    listings: Mutex<HashMap<u64, Arc<Listing>>>,
    /// Directories this mount changed (an entry made, removed or moved):
    /// their own attributes (times, link count, size), as the listing of
    /// the directory above caches them, are out of date, so the next
    /// lookup or getattr asks the cell instead.
    stale: Mutex<HashSet<u64>>,
    pub(crate) handles: Mutex<HashMap<u64, Handle>>,
    /// Files open through this mount. Lock order: an `OpenFile`'s state may
    /// be held while taking this map, never the other way round.
    pub(crate) open_files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_fh: AtomicU64,
    /// Tells the kernel to drop what it cached (set once the session runs).
    pub(crate) notifier: Arc<OnceLock<Notifier>>,
    /// Creates the cell learns of at the file's first close.
    pub(crate) deferred: Deferred,
}

/// Locks `m`, whether or not a panicking thread left it poisoned: every
/// table here stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Names travel as UTF-8 strings in the API.
pub(crate) fn utf8(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::EILSEQ)
}

/// A directory entry's name: at most NAME_MAX bytes (FUSE itself lets up to
/// 1024 through), in UTF-8.
pub(crate) fn entry_name(name: &OsStr) -> Result<&str, Errno> {
    if name.len() > NAME_MAX as usize {
        return Err(Errno::ENAMETOOLONG);
    }
    utf8(name)
}

/// WebFS's longest name, in bytes (what `statfs` reports too).
pub(crate) const NAME_MAX: u32 = 255;

pub(crate) fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

/// A WebFS time (ms since the epoch) as the kernel takes it.
fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl WosFs {
    pub(crate) fn new(
        remote: Remote,
        root: FsEntry,
        spools: SpoolDir,
        notifier: Arc<OnceLock<Notifier>>,
    ) -> WosFs {
        WosFs {
            remote,
            uid: nix_uid(),
            gid: nix_gid(),
            spools,
            nodes: Mutex::new(Nodes::new(root)),
            listings: Mutex::default(),
            stale: Mutex::default(),
            handles: Mutex::default(),
            open_files: Mutex::default(),
            next_fh: AtomicU64::new(1),
            notifier,
            deferred: Deferred::default(),
        }
    }

    /// Makes the kernel ask for `ino`'s attributes again (its pages are
    /// dropped at every open anyway: no FOPEN_KEEP_CACHE).
    pub(crate) fn forget_kernel_attrs(&self, ino: u64) {
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_inode(INodeNo(ino), -1, 0)
        {
            debug!("invalidating inode {ino}: {e}");
        }
    }

    pub(crate) fn owner(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    /// The errno for a failed call, logged: loudly when the user will want
    /// to know why (the cell unreachable, a file changed underneath).
    pub(crate) fn fail(&self, op: &str, path: &str, f: &ApiFailure) -> Errno {
        let e = errno(f);
        if matches!(e, Errno::EIO | Errno::ESTALE | Errno::EAGAIN) {
            warn!("{op} {path}: {f}");
        } else {
            debug!("{op} {path}: {f}");
        }
        e
    }

    pub(crate) fn fail_transfer(&self, op: &str, path: &str, f: &Fail) -> Errno {
        match f {
            Fail::Api(a) => self.fail(op, path, a),
            Fail::Local(e) => {
                warn!("{op} {path}: {f}");
                io_errno(e)
            }
        }
    }

    pub(crate) fn path_of(&self, ino: u64) -> Result<String, Errno> {
        lock(&self.nodes).path(ino).map_err(|p| match p {
            NoPath::Unknown => Errno::ESTALE,
            NoPath::Unlinked => Errno::ENOENT,
        })
    }

    /// The path of `name` in directory `parent`, and the name as a string.
    pub(crate) fn child_path(&self, parent: u64, name: &OsStr) -> Result<(String, String), Errno> {
        let name = entry_name(name)?;
        Ok((join(&self.path_of(parent)?, name), name.to_string()))
    }

    pub(crate) fn new_fh(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, handle);
        fh
    }

    /// What the kernel is shown for `e`.
    pub(crate) fn attr(&self, e: &FsEntry) -> FileAttr {
        let kind = Kind::of(e);
        let mut mtime = e.mtime_ms;
        // Nodes that predate ctime and atime leave them out (0): the mtime
        // is the best guess for both.
        let (mut ctime, atime) = match e.ctime_ms {
            0 => (e.mtime_ms, e.mtime_ms),
            c => (c, e.atime_ms),
        };
        let mut size = e.size;
        if kind == Kind::File
            && let Some(open) = self.open_file(e.ino)
        {
            // A file this mount is writing: its local length and change
            // time, as the writer sees them before it closes.
            size = open.spool_len().unwrap_or(size);
            if let Some(t) = open.changed_ms().filter(|t| *t > mtime) {
                mtime = t;
                ctime = ctime.max(t);
            }
        }
        let blocks = if kind == Kind::File {
            size.div_ceil(512)
        } else {
            0
        };
        FileAttr {
            ino: INodeNo(e.ino),
            size,
            blocks,
            atime: time(atime),
            mtime: time(mtime),
            ctime: time(ctime),
            crtime: time(e.mtime_ms.min(ctime)),
            kind: file_type(kind),
            perm: (e.mode & 0o7777) as u16,
            nlink: e.nlink,
            uid: self.uid,
            gid: self.gid,
            // The kernel's encoding, which is also what Linux's stat shows
            // for any device number below 4096:1048576.
            rdev: e.rdev as u32,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    fn open_file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        lock(&self.open_files).get(&ino).cloned()
    }

    /// This mount changed `dir`'s entries: see `stale`.
    pub(crate) fn dir_changed(&self, dir: u64) {
        lock(&self.stale).insert(dir);
    }

    /// This mount made `e` in `dir` with a request sent at `sent`. The
    /// cell changed `dir` in the same step, so its cached attributes (in
    /// the listing of the directory above) are brought up to date here
    /// instead of asked for again (the kernel asks for them before the next
    /// create in `dir`): one entry more, one link more for a subdirectory,
    /// and as mtime and ctime the new entry's creation time, which its
    /// atime still is. A listing fetched after `sent` may show the change
    /// already; then `dir` is only marked stale.
    pub(crate) fn created_in(&self, dir: u64, e: &FsEntry, sent: Instant) {
        let Some((above, name)) = lock(&self.nodes)
            .get(dir)
            .filter(|_| dir != ROOT)
            .map(|n| (n.parent, n.name.clone()))
        else {
            // The root's attributes are always asked for.
            return;
        };
        let mut listings = lock(&self.listings);
        let Some(listing) = listings.get_mut(&above) else {
            return;
        };
        let Some(mut d) = listing.find(&name).filter(|d| d.ino == dir).cloned() else {
            return;
        };
        if listing.at >= sent {
            drop(listings);
            self.dir_changed(dir);
            return;
        }
        d.mtime_ms = d.mtime_ms.max(e.atime_ms);
        d.ctime_ms = d.ctime_ms.max(e.atime_ms);
        d.size += 1;
        if Kind::of(e) == Kind::Dir {
            d.nlink += 1;
        }
        Arc::make_mut(listing).put(&d);
    }

    /// Whether `ino`'s cached attributes are out of date, forgetting that
    /// they were: the caller asks the cell. (Taken out before asking, so a
    /// change made meanwhile marks it again.)
    pub(crate) fn take_stale(&self, ino: u64) -> bool {
        lock(&self.stale).remove(&ino)
    }

    /// Records that the kernel now holds `e` (as `parent`'s child) and
    /// returns its attributes.
    pub(crate) fn hand_out(&self, parent: u64, e: &FsEntry) -> FileAttr {
        lock(&self.nodes).learn(parent, e, true);
        self.attr(e)
    }

    /// `dir`'s entries: the cached listing if it is younger than the TTL
    /// (and `fresh` is not asked), else a new one from the cell.
    pub(crate) fn listing(&self, dir: u64, fresh: bool) -> Result<Arc<Listing>, Errno> {
        if !fresh && let Some(l) = lock(&self.listings).get(&dir).filter(|l| l.is_fresh()) {
            return Ok(l.clone());
        }
        let path = self.path_of(dir)?;
        // Pending before and after the request: one sent meanwhile may be
        // in neither the answer nor the pending set afterwards.
        let mut pending = self.pending_in(dir);
        let answer = self
            .remote
            .list(&path)
            .map_err(|f| self.fail("list", &path, &f))?;
        let mut entries = answer.entries;
        pending.extend(self.pending_in(dir));
        for p in pending {
            // Only this mount has it so far.
            if !entries.iter().any(|e| e.name == p.name) {
                entries.push(p);
            }
        }
        let listing = Arc::new(Listing::new(entries));
        {
            let mut nodes = lock(&self.nodes);
            for e in &listing.entries {
                nodes.refresh(e);
            }
        }
        let mut cache = lock(&self.listings);
        if cache.len() >= MAX_LISTINGS {
            cache.retain(|_, l| l.is_fresh());
        }
        cache.insert(dir, listing.clone());
        Ok(listing)
    }

    /// The cached listing of `dir` if it is younger than the TTL.
    pub(crate) fn cached_listing(&self, dir: u64) -> Option<Arc<Listing>> {
        lock(&self.listings)
            .get(&dir)
            .filter(|l| l.is_fresh())
            .cloned()
    }

    /// Forgets `dir`'s listing (the kernel forgot the directory).
    pub(crate) fn invalidate(&self, dir: u64) {
        lock(&self.listings).remove(&dir);
    }

    /// Applies this mount's own change to `dir`'s cached listing, which
    /// keeps its age: other clients' changes still show after the TTL, and
    /// creating many files in one directory does not fetch its listing
    /// again after each.
    pub(crate) fn cache_put(&self, dir: u64, e: &FsEntry) {
        if let Some(l) = lock(&self.listings).get_mut(&dir) {
            // Copied only if an open directory handle shares it.
            Arc::make_mut(l).put(e);
        }
    }

    pub(crate) fn cache_remove(&self, dir: u64, name: &str) {
        if let Some(l) = lock(&self.listings).get_mut(&dir) {
            Arc::make_mut(l).remove(name);
        }
    }

    /// [`WosFs::cache_put`] in the directory that holds `e`.
    pub(crate) fn cache_put_in_parent(&self, e: &FsEntry) {
        let parent = lock(&self.nodes).get(e.ino).map(|n| n.parent);
        if let Some(p) = parent {
            self.cache_put(p, e);
        }
    }
}

fn nix_uid() -> u32 {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    unsafe { libc::getuid() }
}

fn nix_gid() -> u32 {
    // SAFETY: as above.
    unsafe { libc::getgid() }
}

fn reply_entry(reply: ReplyEntry, r: Result<FileAttr, Errno>) {
    match r {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_open(reply: ReplyOpen, r: Result<u64, Errno>) {
    match r {
        // No FOPEN_KEEP_CACHE: the kernel drops cached pages at every open,
        // so an open reads the latest committed version (close-to-open).
        Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for WosFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC then arrives with open instead of as a truncate before it,
        // so rewriting a file makes one new version, not an empty one first.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC) {
            debug!("kernel lacks {missing:?}: O_TRUNC commits an empty version first");
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.commit_all();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.do_lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if lock(&self.nodes).forget(ino.0, nlookup) {
            self.invalidate(ino.0);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.do_getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = AttrChange {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            by_path: fh.is_none(),
        };
        match self.do_setattr(ino.0, change) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.do_readlink(ino.0) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.do_mknod(parent.0, name, mode & !umask, rdev));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.do_mkdir(parent.0, name, mode & !umask));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.do_remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.do_remove(parent.0, name, true));
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.do_symlink(parent.0, link_name, target));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.do_rename(parent.0, name, newparent.0, newname, flags),
        );
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // WebFS gives every object exactly one name: link(2)'s answer for a
        // file system without hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply_open(reply, self.do_open(ino.0, flags.0));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.do_flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.do_release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.do_flush(fh.0));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.do_fallocate(fh.0, offset, length, mode));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply_open(reply, self.do_opendir(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.do_readdir(ino.0, fh.0, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.handles).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every namespace change is committed before its call returns.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.do_statfs();
        reply.statfs(
            s.blocks, s.blocks, s.blocks, s.files, s.files, s.bsize, NAME_MAX, s.bsize,
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(parent.0, name, mode & !umask, flags) {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64, name: &str) -> FsEntry {
        crate::nodes::test_entry(ino, name, "file")
    }

    #[test]
    fn names_longer_than_name_max_are_refused_before_any_request() {
        let ok = "n".repeat(255);
        assert_eq!(entry_name(OsStr::new(&ok)), Ok(ok.as_str()));
        let long = "n".repeat(256);
        assert_eq!(entry_name(OsStr::new(&long)), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn special_kinds_have_their_file_types() {
        let kinds = [
            ("fifo", FileType::NamedPipe),
            ("socket", FileType::Socket),
            ("char", FileType::CharDevice),
            ("block", FileType::BlockDevice),
            ("dir", FileType::Directory),
            ("symlink", FileType::Symlink),
            ("file", FileType::RegularFile),
        ];
        for (word, want) in kinds {
            let mut e = entry(2, "x");
            e.kind = word.into();
            assert_eq!(file_type(Kind::of(&e)), want, "{word}");
        }
    }

    #[test]
    fn a_listing_takes_this_mounts_changes() {
        let mut l = Listing::new(vec![entry(2, "a"), entry(3, "b"), entry(4, "c")]);
        l.remove("a");
        assert!(l.find("a").is_none());
        assert_eq!(l.find("c").map(|e| e.ino), Some(4));
        assert_eq!(l.find("b").map(|e| e.ino), Some(3));
        l.put(&entry(5, "d"));
        l.put(&entry(6, "b"));
        assert_eq!(l.find("b").map(|e| e.ino), Some(6));
        assert_eq!(l.entries.len(), 3);
        l.remove("c");
        l.remove("missing");
        let mut names: Vec<&str> = l.entries.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["b", "d"]);
        assert_eq!(l.find("d").map(|e| e.ino), Some(5));
    }
}
