//! Open files: reads (ranges, with read-ahead), writes (to a spool), and
//! the upload that makes them a new version when the file is closed.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use fuser::{Errno, FileAttr};
use tracing::{debug, error, warn};
use wos_api::FsEntry;

use crate::errno::io_errno;
use crate::fs::{Handle, WosFs, lock};
use crate::nodes::Kind;
use crate::remote::{Streaming, Tag, Target};
use crate::spool::{OpenFile, OpenState, Spool};

/// A spool this long is uploaded while it is still being written, so that
/// closing a large file waits only for its last pieces.
const STREAM_AFTER: u64 = 8 << 20;

/// The least a non-sequential read fetches.
const MIN_FETCH: u64 = 128 << 10;

/// Reads this close to where the last one ended count as sequential (the
/// kernel's read-ahead requests may arrive slightly out of order).
const SEQUENTIAL_SLACK: u64 = 1 << 20;

/// One open file handle.
pub(crate) struct FileState {
    pub ino: u64,
    writable: bool,
    append: bool,
    /// The version this handle opened: reads from the cell must see it.
    tag: Tag,
    /// That version's length.
    size: u64,
    open: Arc<OpenFile>,
    ahead: Mutex<ReadAhead>,
}

/// What one handle fetched from the cell: a window of bytes and, for a
/// sequential reader, the stream that continues it (the gateway fetches a
/// few chunks ahead on it, so reading never waits for a round trip per
/// chunk).
#[derive(Default)]
struct ReadAhead {
    start: u64,
    data: Bytes,
    last_end: u64,
    /// Yields the bytes from `start + data.len()` on.
    stream: Option<Streaming>,
}

impl ReadAhead {
    fn covers(&self, start: u64, end: u64) -> bool {
        start >= self.start && end <= self.window_end()
    }

    fn window_end(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    /// Whether the stream can serve a read at `start`: it begins inside
    /// the window or a little after it (reads arrive slightly out of order
    /// from the kernel's threads).
    fn streams(&self, start: u64) -> bool {
        self.stream.is_some()
            && start >= self.start
            && start <= self.window_end() + SEQUENTIAL_SLACK
    }

    fn is_sequential(&self, start: u64) -> bool {
        start.abs_diff(self.last_end) <= SEQUENTIAL_SLACK
    }

    fn slice(&self, start: u64, end: u64) -> Bytes {
        let len = self.data.len();
        let a = ((start - self.start) as usize).min(len);
        let b = ((end - self.start) as usize).min(len);
        self.data.slice(a..b)
    }

    /// Drops what lies well behind `offset`, keeping the window small.
    fn trim(&mut self, offset: u64) {
        let keep_from = offset.saturating_sub(SEQUENTIAL_SLACK).max(self.start);
        let drop = (keep_from - self.start) as usize;
        if drop > 0 {
            self.data = self.data.slice(drop.min(self.data.len())..);
            self.start = keep_from;
        }
    }
}

impl WosFs {
    pub(crate) fn do_open(&self, ino: u64, flags: i32) -> Result<u64, Errno> {
        // A second handle on a file only this mount has: the cell gets it
        // first, so that this open reads it like any other.
        self.make_pending(ino)?;
        // Close-to-open: every open sees the latest committed version.
        let before = lock(&self.nodes).get(ino).map(|n| Tag::of(&n.entry));
        let e = self.stat_ino(ino)?;
        if Kind::of(&e) == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        self.cache_put_in_parent(&e);
        if before != Some(Tag::of(&e)) {
            // The kernel still holds the old size (for up to a TTL) and
            // would cut reads of a longer new version short.
            self.forget_kernel_attrs(ino);
        }
        self.open_entry(&e, flags, false)
    }

    /// create(2): a new empty file, or (without O_EXCL) the one there.
    pub(crate) fn do_create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let (path, name) = self.child_path(parent, name)?;
        let sent = Instant::now();
        if let Some(e) = self.defer_create(parent, &name, mode & 0o7777, flags) {
            self.cache_put(parent, &e);
            self.created_in(parent, &e, sent);
            let fh = self
                .open_entry(&e, flags, true)
                .inspect_err(|_| self.forget_pending(e.ino))?;
            return Ok((self.hand_out(parent, &e), fh));
        }
        // The file exists (empty) from now on, for everyone: an open file
        // has a name, and the data follows at close.
        let (e, created) = match self.remote.create(&path, mode & 0o7777) {
            Ok(e) => (e, true),
            Err(f) if f.status == Some(412) && flags & libc::O_EXCL == 0 => {
                // Created meanwhile by someone else: open that one.
                let e = self
                    .remote
                    .stat(&path)
                    .map_err(|f| self.fail("open", &path, &f))?;
                (e, false)
            }
            Err(f) => return Err(self.fail("create", &path, &f)),
        };
        if Kind::of(&e) == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        self.cache_put(parent, &e);
        if created {
            self.created_in(parent, &e, sent);
            self.note_created(parent, &e);
        }
        let fh = self.open_entry(&e, flags, created)?;
        Ok((self.hand_out(parent, &e), fh))
    }

    /// A handle on version `e` of a file; `created`: it is new and empty.
    fn open_entry(&self, e: &FsEntry, flags: i32, created: bool) -> Result<u64, Errno> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = writable && flags & libc::O_TRUNC != 0;
        let open = self.attach(e.ino, writable);
        if writable && (created || truncate) {
            let mut st = open.lock();
            // A new file is empty on the cell already: nothing to upload yet.
            let r = self.start_empty(&mut st, truncate && !created);
            open.publish(&st);
            drop(st);
            if let Err(err) = r {
                self.detach(e.ino, &open, writable, false);
                return Err(err);
            }
        }
        let state = FileState {
            ino: e.ino,
            writable,
            append: flags & libc::O_APPEND != 0,
            tag: Tag::of(e),
            size: e.size,
            open,
            ahead: Mutex::default(),
        };
        Ok(self.new_fh(Handle::File(Arc::new(state))))
    }

    /// An empty spool: nothing to download for a new file, nor for one
    /// opened with O_TRUNC (whose truncation is itself a change to upload).
    fn start_empty(&self, st: &mut OpenState, truncate: bool) -> Result<(), Errno> {
        if st.spool.is_none() {
            st.spool = Some(Spool::new_in(self.spools.path()).map_err(|e| io_errno(&e))?);
        }
        if truncate && let Some(spool) = st.spool.as_mut() {
            spool.set_len(0).map_err(|e| io_errno(&e))?;
            // What an upload under way sent is gone: it must not commit.
            if st.upload.take().is_some() {
                st.no_stream = true;
            }
        }
        Ok(())
    }

    /// Counts a new handle on `ino`'s shared state.
    fn attach(&self, ino: u64, writable: bool) -> Arc<OpenFile> {
        loop {
            let open = lock(&self.open_files)
                .entry(ino)
                .or_insert_with(|| Arc::new(OpenFile::new()))
                .clone();
            let mut st = open.lock();
            if st.removed {
                // Its last handle closed while we waited: make a new one.
                continue;
            }
            st.handles += 1;
            if writable {
                st.writers += 1;
            }
            drop(st);
            return open;
        }
    }

    /// Counts a handle out; the last one drops the spool. `unsaved`: the
    /// handle's changes could not be uploaded, so its last writer keeps the
    /// spool where the user can find it.
    fn detach(&self, ino: u64, open: &Arc<OpenFile>, writable: bool, unsaved: bool) {
        let mut st = open.lock();
        st.handles = st.handles.saturating_sub(1);
        if writable {
            st.writers = st.writers.saturating_sub(1);
        }
        if unsaved
            && st.writers == 0
            && let Some(spool) = st.spool.take()
        {
            self.keep_unsaved(ino, spool);
        }
        if st.handles == 0 {
            st.removed = true;
            st.spool = None;
            self.forget_pending(ino);
            let mut map = lock(&self.open_files);
            if map.get(&ino).is_some_and(|o| Arc::ptr_eq(o, open)) {
                map.remove(&ino);
            }
        }
        open.publish(&st);
    }

    fn keep_unsaved(&self, ino: u64, spool: Spool) {
        let (name, path) = {
            let nodes = lock(&self.nodes);
            let name = nodes.get(ino).map(|n| n.name.clone()).unwrap_or_default();
            (
                name,
                nodes.path(ino).unwrap_or_else(|_| format!("inode {ino}")),
            )
        };
        match spool.keep(self.spools.keep_dir(), ino, &name) {
            Ok(kept) => error!(
                "the changes to {path} could not be written to the cell; they are in {} \
                 (copy them back with `wos fs put`)",
                kept.display()
            ),
            Err(e) => {
                error!("the changes to {path} could not be written to the cell, nor kept: {e}")
            }
        }
    }

    fn file_handle(&self, fh: u64) -> Result<Arc<FileState>, Errno> {
        match lock(&self.handles).get(&fh) {
            Some(Handle::File(f)) => Ok(f.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    pub(crate) fn do_read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes, Errno> {
        let h = self.file_handle(fh)?;
        if h.open.spool_len().is_some() {
            // This mount has a copy (being written): reads see its writes.
            let st = h.open.lock();
            if let Some(spool) = &st.spool {
                return spool
                    .read_at(offset, size)
                    .map(Bytes::from)
                    .map_err(|e| io_errno(&e));
            }
        }
        self.read_remote(&h, offset, size)
    }

    fn read_remote(&self, h: &FileState, offset: u64, size: u32) -> Result<Bytes, Errno> {
        if offset >= h.size {
            return Ok(Bytes::new());
        }
        let end = h.size.min(offset + u64::from(size));
        let mut ahead = lock(&h.ahead);
        let data = if ahead.covers(offset, end) {
            ahead.slice(offset, end)
        } else if ahead.streams(offset) || ahead.is_sequential(offset) {
            self.read_streaming(h, &mut ahead, offset, end)?
        } else {
            // A jump: a little more than asked, the window left as it is.
            let fetch_end = h.size.min(offset + MIN_FETCH).max(end);
            let got = self.fetch(h, offset, fetch_end)?;
            got.slice(0..((end - offset) as usize).min(got.len()))
        };
        ahead.last_end = end;
        Ok(data)
    }

    /// Serves `offset..end` from the handle's stream, starting one at
    /// `offset` if the stream cannot reach it.
    fn read_streaming(
        &self,
        h: &FileState,
        ahead: &mut ReadAhead,
        offset: u64,
        end: u64,
    ) -> Result<Bytes, Errno> {
        let path = self.path_of(h.ino)?;
        if !ahead.streams(offset) {
            let stream = self
                .remote
                .open_stream(&path, offset, h.size)
                .map_err(|f| self.fail("read", &path, &f))?;
            self.check_version(h, &path, stream.tag)?;
            ahead.stream = Some(stream);
            ahead.start = offset;
            ahead.data = Bytes::new();
        }
        if ahead.window_end() < end {
            let mut window = BytesMut::from(&ahead.data[..]);
            let stream = ahead.stream.as_mut().ok_or(Errno::EIO)?;
            while ahead.start + (window.len() as u64) < end {
                match self.remote.next_piece(stream) {
                    Ok(Some(piece)) => window.extend_from_slice(&piece),
                    Ok(None) => break,
                    Err(f) => {
                        ahead.stream = None;
                        return Err(self.fail("read", &path, &f));
                    }
                }
            }
            ahead.data = window.freeze();
        }
        let data = ahead.slice(offset, end);
        ahead.trim(offset);
        Ok(data)
    }

    /// Bytes `start..end` of the version `h` opened, in one request.
    fn fetch(&self, h: &FileState, start: u64, end: u64) -> Result<Bytes, Errno> {
        let path = self.path_of(h.ino)?;
        let got = self
            .remote
            .read_range(&path, start, end)
            .map_err(|f| self.fail("read", &path, &f))?;
        self.check_version(h, &path, got.tag)?;
        Ok(got.data)
    }

    /// Never a mix of two versions: the handle fails instead.
    fn check_version(&self, h: &FileState, path: &str, tag: Option<Tag>) -> Result<(), Errno> {
        if tag == Some(h.tag) {
            return Ok(());
        }
        warn!(
            "{path} got a new version while open (had {}.{}): reading on would mix versions; \
             open it again to read the new one",
            h.tag.ino, h.tag.version
        );
        Err(Errno::ESTALE)
    }

    pub(crate) fn do_write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let h = self.file_handle(fh)?;
        if !h.writable {
            return Err(Errno::EBADF);
        }
        let mut st = h.open.lock();
        let spool = self.spool(&mut st, h.ino, None)?;
        // O_APPEND: at the end of this mount's copy, which may be longer
        // than the size the kernel last heard of.
        let at = if h.append { spool.len() } else { offset };
        spool.write_at(at, data).map_err(|e| io_errno(&e))?;
        let appended = at + data.len() as u64 == spool.len();
        self.after_change(h.ino, &mut st, at, appended);
        h.open.publish(&st);
        Ok(data.len() as u32)
    }

    /// fallocate(2) and posix_fallocate(3): on this mount's copy, uploaded
    /// at close like a write.
    pub(crate) fn do_fallocate(
        &self,
        fh: u64,
        offset: u64,
        len: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        let h = self.file_handle(fh)?;
        if !h.writable {
            return Err(Errno::EBADF);
        }
        let mut st = h.open.lock();
        let spool = self.spool(&mut st, h.ino, None)?;
        spool
            .allocate(mode, offset, len)
            .map_err(|e| io_errno(&e))?;
        self.after_change(h.ino, &mut st, offset, false);
        h.open.publish(&st);
        Ok(())
    }

    /// After a change at `offset` to `ino`'s spool: feeds its growing
    /// upload, abandons it if bytes it may have sent changed (the close then
    /// uploads the whole file), or starts one for a file grown large by a
    /// write that ended at its end (`appended`; not for writes inside a
    /// large file, which would send it whole for every open).
    fn after_change(&self, ino: u64, st: &mut OpenState, offset: u64, appended: bool) {
        let Some(spool) = st.spool.as_ref() else {
            return;
        };
        let len = spool.len();
        if let Some(up) = st.upload.as_mut() {
            if offset >= up.announced() {
                up.announce(len);
            } else {
                st.upload = None;
                st.no_stream = true;
            }
            return;
        }
        if st.no_stream || len < STREAM_AFTER || !appended {
            return;
        }
        // The upload names the cell's file: a file only this mount has is
        // made there first.
        let path = match self.make_pending(ino).and_then(|()| self.path_of(ino)) {
            Ok(path) => path,
            Err(_) => {
                st.no_stream = true;
                return;
            }
        };
        let up = self
            .remote
            .start_upload(&path, spool.path(), Target::Existing(ino), len);
        st.upload = Some(up);
    }

    /// The spool of an open file, made on first need from the file's
    /// current content (its first `limit` bytes), streamed from the cell.
    fn spool<'a>(
        &self,
        st: &'a mut OpenState,
        ino: u64,
        limit: Option<u64>,
    ) -> Result<&'a mut Spool, Errno> {
        if st.spool.is_none() {
            st.spool = Some(self.download(ino, limit)?);
        }
        st.spool.as_mut().ok_or(Errno::EIO)
    }

    fn download(&self, ino: u64, limit: Option<u64>) -> Result<Spool, Errno> {
        let path = self.path_of(ino)?;
        let mut spool = Spool::new_in(self.spools.path()).map_err(|e| io_errno(&e))?;
        let tag = self
            .remote
            .download(&path, limit, spool.file_mut())
            .map_err(|f| self.fail_transfer("read", &path, &f))?;
        if tag.is_some_and(|t| t.ino != ino) {
            warn!("{path} is another file now (renamed or replaced elsewhere)");
            return Err(Errno::ESTALE);
        }
        spool.filled().map_err(|e| io_errno(&e))?;
        Ok(spool)
    }

    /// truncate(2) (`by_path`) and ftruncate(2).
    pub(crate) fn truncate(&self, ino: u64, size: u64, by_path: bool) -> Result<(), Errno> {
        let open = lock(&self.open_files).get(&ino).cloned();
        if let Some(open) = &open {
            let mut st = open.lock();
            if !st.removed && st.writers > 0 {
                // Open for writing here: the change goes to this mount's
                // copy. Through the writer's handle it goes out with the
                // writer's close, like its writes; by path (perhaps just
                // after that close, before the kernel let go of the file) it
                // is a change of its own, made now.
                self.spool(&mut st, ino, Some(size))?
                    .set_len(size)
                    .map_err(|e| io_errno(&e))?;
                self.after_change(ino, &mut st, size, false);
                open.publish(&st);
                // (Still holding the state: a release meanwhile must not
                // take the change for one its writer left unsaved.)
                return if by_path {
                    self.commit_locked(ino, open, &mut st)
                } else {
                    Ok(())
                };
            }
        }
        // Not being written here: a new version now.
        let mut spool = self.download(ino, Some(size))?;
        spool.set_len(size).map_err(|e| io_errno(&e))?;
        self.upload(ino, &spool)?;
        if let Some(open) = &open {
            // Readers here read this mount's copy, if there is one.
            let mut st = open.lock();
            if let Some(s) = st.spool.as_mut() {
                s.set_len(size).map_err(|e| io_errno(&e))?;
                s.saved();
            }
            open.publish(&st);
        }
        Ok(())
    }

    /// Uploads this mount's changes to an open file, if it has any.
    fn commit(&self, ino: u64, open: &OpenFile) -> Result<(), Errno> {
        let mut st = open.lock();
        self.commit_locked(ino, open, &mut st)
    }

    /// [`WosFs::commit`] with `open`'s state already held as `st`.
    fn commit_locked(&self, ino: u64, open: &OpenFile, st: &mut OpenState) -> Result<(), Errno> {
        // The next version may be uploaded as it is written again.
        st.no_stream = false;
        if let Some(up) = st.upload.take()
            && let Some(spool) = st.spool.as_mut()
        {
            match self.remote.finish(up, spool.len()) {
                Ok(e) => {
                    lock(&self.nodes).refresh(&e);
                    self.cache_put_in_parent(&e);
                    spool.saved();
                    open.publish(st);
                    return Ok(());
                }
                // The whole file goes again below, and says what is wrong
                // if it fails too.
                Err(f) => debug!("uploading {ino} while it was written: {f}"),
            }
        }
        let Some(spool) = st.spool.as_mut() else {
            return self.make_pending(ino);
        };
        if !spool.dirty {
            // Unchanged, but perhaps new: the cell must have it now.
            return self.make_pending(ino);
        }
        match self.upload(ino, spool) {
            Ok(()) => {}
            // Removed through this mount while open: as on a local disk,
            // its data goes with it.
            Err(Errno::ENOENT) if self.is_unlinked(ino) => {}
            Err(e) => return Err(e),
        }
        spool.saved();
        open.publish(st);
        Ok(())
    }

    /// Uploads this mount's changes to `ino` now, if it has it open.
    pub(crate) fn commit_open(&self, ino: u64) -> Result<(), Errno> {
        let open = lock(&self.open_files).get(&ino).cloned();
        match open {
            Some(open) => self.commit(ino, &open),
            None => Ok(()),
        }
    }

    fn is_unlinked(&self, ino: u64) -> bool {
        lock(&self.nodes).get(ino).is_some_and(|n| n.unlinked)
    }

    /// Makes `spool` the new version of `ino` (and, for a file only this
    /// mount has so far, creates it). The cell refuses to write over
    /// whatever another client put at its path: a file renamed or removed
    /// elsewhere is not brought back to life under its old name, and
    /// another file there is not clobbered (ESTALE).
    fn upload(&self, ino: u64, spool: &Spool) -> Result<(), Errno> {
        if let Some(created) = self.send_pending(ino, Some(spool.path())) {
            return created.map(|_| ());
        }
        let path = self.path_of(ino)?;
        let e = self
            .remote
            .upload(&path, Some(spool.path()), Target::Existing(ino))
            .map_err(|f| self.fail_transfer("write", &path, &f))?;
        lock(&self.nodes).refresh(&e);
        self.cache_put_in_parent(&e);
        Ok(())
    }

    /// flush (every close) and fsync: the changes become the new version.
    pub(crate) fn do_flush(&self, fh: u64) -> Result<(), Errno> {
        let h = self.file_handle(fh)?;
        if !h.writable {
            return Ok(());
        }
        self.commit(h.ino, &h.open)
    }

    pub(crate) fn do_release(&self, fh: u64) -> Result<(), Errno> {
        let h = match lock(&self.handles).remove(&fh) {
            Some(Handle::File(h)) => h,
            _ => return Ok(()),
        };
        // Normally flush already uploaded; this catches writes after it
        // (through a memory map) and retries a failed upload once.
        let r = if h.writable {
            self.commit(h.ino, &h.open)
        } else {
            Ok(())
        };
        self.detach(h.ino, &h.open, h.writable, r.is_err());
        r
    }

    /// At unmount: uploads whatever is still unsaved.
    pub(crate) fn commit_all(&self) {
        let open: Vec<(u64, Arc<OpenFile>)> = lock(&self.open_files)
            .iter()
            .map(|(ino, o)| (*ino, o.clone()))
            .collect();
        for (ino, o) in open {
            if self.commit(ino, &o).is_err()
                && let Some(spool) = o.lock().spool.take()
            {
                self.keep_unsaved(ino, spool);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_near_the_last_one_are_sequential() {
        const CHUNK: u64 = 4 << 20;
        let ra = ReadAhead {
            last_end: CHUNK,
            ..ReadAhead::default()
        };
        assert!(ra.is_sequential(CHUNK));
        assert!(ra.is_sequential(CHUNK + 4096));
        assert!(!ra.is_sequential(7 * CHUNK));
        // No stream: nothing streams.
        assert!(!ra.streams(CHUNK));
    }

    #[test]
    fn trimming_keeps_a_little_behind_the_reader() {
        let mut ra = ReadAhead {
            start: 0,
            data: Bytes::from(vec![7u8; 3 << 20]),
            ..ReadAhead::default()
        };
        ra.trim(SEQUENTIAL_SLACK / 2);
        assert_eq!(ra.start, 0);
        ra.trim(2 << 20);
        assert_eq!(ra.start, (2 << 20) - SEQUENTIAL_SLACK);
        assert_eq!(ra.window_end(), 3 << 20);
    }

    #[test]
    fn the_buffer_answers_what_it_covers() {
        let ra = ReadAhead {
            start: 100,
            data: Bytes::from_static(b"0123456789"),
            ..ReadAhead::default()
        };
        assert!(ra.covers(100, 110));
        assert!(ra.covers(105, 107));
        assert!(!ra.covers(99, 101));
        assert!(!ra.covers(105, 111));
        assert_eq!(&ra.slice(103, 106)[..], b"345");
    }
}
