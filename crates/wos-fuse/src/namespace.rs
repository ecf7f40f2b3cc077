//! Names, attributes and directories.

use std::ffi::OsStr;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, RenameFlags, ReplyDirectory, TimeOrNow};
use tracing::debug;
use wos_api::{FsEntry, FsOpRequest, SpecialKind};

use crate::errno::errno;
use crate::fs::{Handle, WosFs, entry_name, file_type, join, lock, utf8};
use crate::nodes::{Kind, ROOT};

/// What `statfs` reports.
pub(crate) struct Statfs {
    pub blocks: u64,
    pub files: u64,
    pub bsize: u32,
}

const STATFS_BSIZE: u32 = 4096;

/// Free space to report when the cell does not say (a plain user may not
/// read the node list): plenty, so that programs do not refuse to write.
const UNKNOWN_FREE: u64 = 1 << 50;

/// The bits a mode may carry through the API (no file type).
const MODE_BITS: u32 = 0o7777;

/// Inode numbers of traverse-only directories, far above WebFS's ids.
const HIDDEN_INO: u64 = 1 << 62;

/// What a `setattr` asks to change (`None`: leave it).
pub(crate) struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    /// truncate(2) by path, not through an open handle (ftruncate).
    pub by_path: bool,
}

/// A time as WebFS keeps it: ms since the epoch, which cannot say "before
/// 1970" (EINVAL rather than a silently different time).
fn webfs_time(t: TimeOrNow) -> Result<u64, Errno> {
    let t = match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    };
    let since = t.duration_since(UNIX_EPOCH).map_err(|_| Errno::EINVAL)?;
    u64::try_from(since.as_millis()).map_err(|_| Errno::EINVAL)
}

/// A directory this identity may not read, shown as POSIX shows one without
/// read permission: it can be passed through, not listed (mode 0111). Its
/// WebFS id is not disclosed either, so its inode number comes from its
/// path. The gateway refuses before it looks, so a name that does not
/// exist looks the same there.
pub(crate) fn traverse_only(path: &str, name: &str) -> FsEntry {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    FsEntry {
        name: name.to_string(),
        path: path.to_string(),
        ino: if path == "/" {
            ROOT
        } else {
            HIDDEN_INO | (h.finish() >> 2)
        },
        kind: "dir".into(),
        size: 0,
        version: 0,
        mode: 0o111,
        owner: String::new(),
        mtime_ms: 0,
        ctime_ms: 0,
        atime_ms: 0,
        nlink: 2,
        rdev: 0,
        target: None,
        chunks: 0,
    }
}

impl WosFs {
    pub(crate) fn do_lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let name = entry_name(name)?;
        // A lookup reads the parent's listing, not `stat`: only a listing
        // shows a symlink as itself. `ls -l` then costs one listing, not one
        // request per entry.
        let listing = match self.listing(parent, false) {
            Ok(l) => l,
            Err(Errno::EACCES) => return self.lookup_unlisted(parent, name),
            Err(e) => return Err(e),
        };
        let e = listing.find(name).ok_or(Errno::ENOENT)?;
        if self.take_stale(e.ino) {
            let e = self.fresh_stale(parent, e)?;
            return Ok(self.hand_out(parent, &e));
        }
        Ok(self.hand_out(parent, e))
    }

    /// A directory this mount changed, as the cell has it now (its
    /// parent's cached listing has the old attributes), put into that
    /// listing. If the cell cannot say (but for "gone"), the listing's
    /// entry stands, still marked stale.
    fn fresh_stale(&self, parent: u64, cached: &FsEntry) -> Result<FsEntry, Errno> {
        let path = join(&self.path_of(parent)?, &cached.name);
        match self.remote.stat(&path) {
            Ok(e) => {
                self.cache_put(parent, &e);
                Ok(e)
            }
            Err(f) => match self.fail("stat", &path, &f) {
                Errno::ENOENT => Err(Errno::ENOENT),
                _ => {
                    self.dir_changed(cached.ino);
                    Ok(cached.clone())
                }
            },
        }
    }

    /// A name in a directory this identity may not read: the entry itself
    /// if it may see that (an ACL below the directory), else a
    /// traverse-only directory on the way to something it may see.
    fn lookup_unlisted(&self, parent: u64, name: &str) -> Result<FileAttr, Errno> {
        let path = join(&self.path_of(parent)?, name);
        let e = match self.remote.stat(&path) {
            // (A symlink shows as what it points to: only listings show
            // symlinks.)
            Ok(e) => e,
            Err(f) if errno(&f) == Errno::EACCES => traverse_only(&path, name),
            Err(f) => return Err(self.fail("stat", &path, &f)),
        };
        Ok(self.hand_out(parent, &e))
    }

    pub(crate) fn do_getattr(&self, ino: u64) -> Result<FileAttr, Errno> {
        Ok(self.attr(&self.current_entry(ino)?))
    }

    /// The attributes of `ino`, at most one TTL old.
    fn current_entry(&self, ino: u64) -> Result<FsEntry, Errno> {
        let (parent, name, kind, unlinked, last) = {
            let nodes = lock(&self.nodes);
            let n = nodes.get(ino).ok_or(Errno::ESTALE)?;
            (
                n.parent,
                n.name.clone(),
                n.kind(),
                n.unlinked,
                n.entry.clone(),
            )
        };
        if unlinked {
            // Removed while open: its last attributes, as fstat shows a
            // removed file on a local disk.
            return Ok(last);
        }
        let fetched = if ino == ROOT {
            self.remote
                .stat("/")
                .map_err(|f| self.fail("stat", "/", &f))
        } else {
            self.entry_by_name(ino, parent, &name, kind)
        };
        match fetched {
            // A directory this identity may not read (a traverse-only one
            // on the way to what it may): what the lookup showed.
            Err(Errno::EACCES) if kind == Kind::Dir => Ok(last),
            r => r,
        }
    }

    /// `ino`'s entry from its parent's listing when one is at hand (always
    /// for a symlink), else from a fresh `stat`.
    fn entry_by_name(
        &self,
        ino: u64,
        parent: u64,
        name: &str,
        kind: Kind,
    ) -> Result<FsEntry, Errno> {
        // `stat` follows symlinks, so a symlink is only seen in its
        // directory's listing; for the others a fresh listing saves a trip,
        // unless this mount has changed them since (only directories).
        let stale = self.take_stale(ino);
        let listing = match kind {
            Kind::Symlink => Some(self.listing(parent, false)?),
            _ if stale => None,
            _ => self.cached_listing(parent),
        };
        if let Some(l) = listing {
            match l.find(name) {
                Some(e) if e.ino == ino => return Ok(e.clone()),
                _ if kind == Kind::Symlink => return Err(Errno::ENOENT),
                _ => {}
            }
        }
        match self.stat_ino(ino) {
            Ok(e) => {
                // Lookups in the parent see these newer attributes too.
                self.cache_put(parent, &e);
                Ok(e)
            }
            Err(err) => {
                if stale {
                    self.dir_changed(ino);
                }
                Err(err)
            }
        }
    }

    /// A fresh `stat` of `ino` through its path, which must still name it.
    pub(crate) fn stat_ino(&self, ino: u64) -> Result<FsEntry, Errno> {
        if let Some(p) = self.pending(ino) {
            return Ok(p.entry.clone());
        }
        let path = self.path_of(ino)?;
        let e = self
            .remote
            .stat(&path)
            .map_err(|f| self.fail("stat", &path, &f))?;
        if e.ino != ino {
            // Renamed or replaced by another client: the kernel looks the
            // name up again and finds what is there now.
            debug!("{path} is object {} now, not {ino}", e.ino);
            return Err(Errno::ESTALE);
        }
        lock(&self.nodes).refresh(&e);
        Ok(e)
    }

    pub(crate) fn do_setattr(&self, ino: u64, change: AttrChange) -> Result<FileAttr, Errno> {
        let (my_uid, my_gid) = self.owner();
        if change.uid.is_some_and(|u| u != my_uid) || change.gid.is_some_and(|g| g != my_gid) {
            // Owners are cell principals, which no local uid names.
            return Err(Errno::EPERM);
        }
        if change.mode.is_some() || change.atime.is_some() || change.mtime.is_some() {
            // Attributes are set on the cell's file: it must have it.
            self.make_pending(ino)?;
        }
        if let Some(mode) = change.mode {
            self.chmod(ino, mode & MODE_BITS)?;
        }
        if let Some(size) = change.size {
            self.truncate(ino, size, change.by_path)?;
        }
        if change.atime.is_some() || change.mtime.is_some() {
            self.set_times(ino, change.atime, change.mtime)?;
        }
        self.do_getattr(ino)
    }

    /// utimensat(2) and its relatives.
    fn set_times(
        &self,
        ino: u64,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Result<(), Errno> {
        let req = FsOpRequest::Times {
            atime_ms: atime.map(webfs_time).transpose()?,
            mtime_ms: mtime.map(webfs_time).transpose()?,
        };
        // Changes still spooled here would stamp the file again when they
        // are uploaded at close; `cp -p` and `tar` set the times of a file
        // they still hold open, so those changes go first.
        self.commit_open(ino)?;
        let path = self.path_of(ino)?;
        let e = self
            .remote
            .op(&path, &req)
            .map_err(|f| self.fail("utimens", &path, &f))?;
        lock(&self.nodes).refresh(&e);
        self.cache_put_in_parent(&e);
        Ok(())
    }

    fn chmod(&self, ino: u64, mode: u32) -> Result<(), Errno> {
        let path = self.path_of(ino)?;
        let e = self
            .remote
            .op(&path, &FsOpRequest::Chmod { mode })
            .map_err(|f| self.fail("chmod", &path, &f))?;
        lock(&self.nodes).refresh(&e);
        self.cache_put_in_parent(&e);
        Ok(())
    }

    pub(crate) fn do_readlink(&self, ino: u64) -> Result<String, Errno> {
        let (parent, name, target) = {
            let nodes = lock(&self.nodes);
            let n = nodes.get(ino).ok_or(Errno::ESTALE)?;
            (n.parent, n.name.clone(), n.entry.target.clone())
        };
        // A symlink's target never changes: what the lookup saw holds.
        if let Some(t) = target {
            return Ok(t);
        }
        let listing = self.listing(parent, true)?;
        listing
            .find(&name)
            .filter(|e| e.ino == ino)
            .and_then(|e| e.target.clone())
            .ok_or(Errno::EINVAL)
    }

    pub(crate) fn do_mkdir(&self, parent: u64, name: &OsStr, mode: u32) -> Result<FileAttr, Errno> {
        let (path, _) = self.child_path(parent, name)?;
        let req = FsOpRequest::Mkdir {
            parents: false,
            mode: Some(mode & MODE_BITS),
        };
        let sent = Instant::now();
        let e = self
            .remote
            .op(&path, &req)
            .map_err(|f| self.fail("mkdir", &path, &f))?;
        self.cache_put(parent, &e);
        self.created_in(parent, &e, sent);
        Ok(self.hand_out(parent, &e))
    }

    pub(crate) fn do_symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> Result<FileAttr, Errno> {
        let (path, _) = self.child_path(parent, name)?;
        let target = utf8(target.as_os_str())?.to_string();
        let sent = Instant::now();
        let e = self
            .remote
            .op(&path, &FsOpRequest::Symlink { target })
            .map_err(|f| self.fail("symlink", &path, &f))?;
        self.cache_put(parent, &e);
        self.created_in(parent, &e, sent);
        Ok(self.hand_out(parent, &e))
    }

    /// mknod(2), mkfifo(3) and binding a Unix socket: a regular file, or a
    /// special file, which WebFS keeps as a name with attributes. The mount
    /// is `nodev`, so a device node here cannot be opened; a FIFO or socket
    /// works between programs on this machine (the kernel does that).
    pub(crate) fn do_mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Result<FileAttr, Errno> {
        let (path, _) = self.child_path(parent, name)?;
        let perm = mode & MODE_BITS;
        let (kind, rdev) = match mode & libc::S_IFMT {
            libc::S_IFREG => (None, 0),
            libc::S_IFIFO => (Some(SpecialKind::Fifo), 0),
            libc::S_IFSOCK => (Some(SpecialKind::Socket), 0),
            libc::S_IFCHR => (Some(SpecialKind::Char), u64::from(rdev)),
            libc::S_IFBLK => (Some(SpecialKind::Block), u64::from(rdev)),
            _ => return Err(Errno::EINVAL),
        };
        let sent = Instant::now();
        let made = match kind {
            None => self.remote.create(&path, perm),
            Some(kind) => {
                let req = FsOpRequest::Mknod {
                    kind,
                    mode: Some(perm),
                    rdev,
                };
                self.remote.op(&path, &req)
            }
        };
        let e = made.map_err(|f| self.fail("mknod", &path, &f))?;
        self.cache_put(parent, &e);
        self.created_in(parent, &e, sent);
        Ok(self.hand_out(parent, &e))
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    pub(crate) fn do_remove(&self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let (path, name) = self.child_path(parent, name)?;
        // The gateway removes whatever it finds there; the kernel checked the
        // kind it knows, and so does this, in case the name was reused.
        let known = lock(&self.nodes)
            .child(parent, &name)
            .map(|n| (n.kind(), n.entry.ino));
        // The cell must see what only this mount has made: a directory
        // holding such a file is not empty.
        match known {
            Some((Kind::Dir, child)) => self.make_pending_in(child),
            Some((_, child)) => self.make_pending(child)?,
            None => {}
        }
        let known = known.map(|(kind, _)| kind);
        match (dir, known) {
            (true, Some(k)) if k != Kind::Dir => return Err(Errno::ENOTDIR),
            (false, Some(Kind::Dir)) => return Err(Errno::EISDIR),
            _ => {}
        }
        self.remote
            .delete(&path)
            .map_err(|f| self.fail(if dir { "rmdir" } else { "unlink" }, &path, &f))?;
        lock(&self.nodes).unlink(parent, &name);
        self.cache_remove(parent, &name);
        self.dir_changed(parent);
        Ok(())
    }

    pub(crate) fn do_rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let (from, name) = self.child_path(parent, name)?;
        let (to, new_name) = self.child_path(new_parent, new_name)?;
        // Both names as the cell must see them: a file only this mount has
        // made is moved, or replaced, there.
        for (dir, n) in [(parent, &name), (new_parent, &new_name)] {
            let child = lock(&self.nodes)
                .child(dir, n)
                .map(|c| (c.kind(), c.entry.ino));
            match child {
                // A directory replaced must be empty on the cell too.
                Some((Kind::Dir, child)) => self.make_pending_in(child),
                Some((_, child)) => self.make_pending(child)?,
                None => {}
            }
        }
        // RENAME_NOREPLACE (what `mv` tries first) is a check before the
        // rename: WebFS has no such rename, and the window is one round trip.
        if flags.contains(RenameFlags::RENAME_NOREPLACE)
            && self.listing(new_parent, true)?.find(&new_name).is_some()
        {
            return Err(Errno::EEXIST);
        }
        let moved = self
            .remote
            .op(&from, &FsOpRequest::Rename { to: to.clone() })
            .map_err(|f| self.fail("rename", &format!("{from} -> {to}"), &f))?;
        lock(&self.nodes).rename(parent, &name, new_parent, &moved);
        self.cache_remove(parent, &name);
        self.cache_put(new_parent, &moved);
        self.dir_changed(parent);
        self.dir_changed(new_parent);
        Ok(())
    }

    pub(crate) fn do_opendir(&self, ino: u64) -> Result<u64, Errno> {
        // Every opendir lists anew: `ls` shows the latest namespace, and the
        // listing stays the same for all readdir calls of this handle.
        let listing = self.listing(ino, true)?;
        let parent = lock(&self.nodes).get(ino).map_or(ROOT, |n| n.parent);
        Ok(self.new_fh(Handle::Dir { listing, parent }))
    }

    pub(crate) fn do_readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Result<(), Errno> {
        let (listing, parent) = match lock(&self.handles).get(&fh) {
            Some(Handle::Dir { listing, parent }) => (listing.clone(), *parent),
            _ => return Err(Errno::EBADF),
        };
        let dots = [
            (ino, ".", FileType::Directory),
            (parent, "..", FileType::Directory),
        ];
        let entries = listing
            .entries
            .iter()
            .map(|e| (e.ino, e.name.as_str(), file_type(Kind::of(e))));
        // An entry's offset is where the next readdir continues.
        for (i, (ino, name, kind)) in dots.into_iter().chain(entries).enumerate() {
            if (i as u64) < offset {
                continue;
            }
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn do_statfs(&self) -> Statfs {
        let free = self.remote.free_bytes().unwrap_or_else(|f| {
            debug!("statfs: {f}");
            UNKNOWN_FREE
        });
        // WebFS reports no capacity, only free space (a cell grows with its
        // nodes): the total is shown as what is free.
        Statfs {
            blocks: free / u64::from(STATFS_BSIZE),
            files: u64::from(u32::MAX),
            bsize: STATFS_BSIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_become_milliseconds_since_the_epoch() {
        let t = UNIX_EPOCH + Duration::new(1_900_000_000, 123_456_789);
        assert_eq!(
            webfs_time(TimeOrNow::SpecificTime(t)),
            Ok(1_900_000_000_123)
        );
        let before_1970 = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            webfs_time(TimeOrNow::SpecificTime(before_1970)),
            Err(Errno::EINVAL)
        );
        assert!(webfs_time(TimeOrNow::Now).unwrap() > 1_700_000_000_000);
    }
}
