//! Applying [`FsOp`]s to an [`FsState`].
//!
//! Every op is written in two halves: checks that only read the state and
//! may fail, then changes that cannot fail. So a refused op leaves the state
//! exactly as it was, on every replica, with nothing to undo.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::error::FsError;
use crate::model::{ChunkRef, Ino, Inode, Kind, SpecialKind};
use crate::op::{FsOp, FsReply};
use crate::path::{check_mode, check_name, check_owner, check_target};
use crate::state::{FsState, Link, Reserved};

impl FsState {
    /// Applies one op. On `Err` the state is unchanged.
    pub fn apply(&mut self, op: &FsOp) -> Result<FsReply, FsError> {
        match op {
            FsOp::Mkdir {
                parent,
                name,
                mode,
                owner,
                now_ms,
            } => self.mkdir(*parent, name, *mode, owner, *now_ms),
            FsOp::Create {
                parent,
                name,
                mode,
                owner,
                now_ms,
                exclusive,
            } => self.create(*parent, name, *mode, owner, *now_ms, *exclusive),
            FsOp::Symlink {
                parent,
                name,
                target,
                owner,
                now_ms,
            } => self.symlink(*parent, name, target, owner, *now_ms),
            FsOp::Mknod {
                parent,
                name,
                kind,
                rdev,
                mode,
                owner,
                now_ms,
            } => {
                let new = NewSpecial {
                    kind: *kind,
                    rdev: *rdev,
                    mode: *mode,
                    owner,
                };
                self.mknod(*parent, name, new, *now_ms)
            }
            FsOp::Commit {
                ino,
                if_version,
                size,
                chunks,
                now_ms,
            } => self.commit(*ino, *if_version, *size, chunks, *now_ms),
            FsOp::Truncate { ino, size, now_ms } => self.truncate(*ino, *size, *now_ms),
            FsOp::Rename {
                from_parent,
                from_name,
                to_parent,
                to_name,
                now_ms,
            } => self.rename(*from_parent, from_name, *to_parent, to_name, *now_ms),
            FsOp::Unlink {
                parent,
                name,
                now_ms,
            } => self.unlink(*parent, name, *now_ms),
            FsOp::Rmdir {
                parent,
                name,
                now_ms,
            } => self.rmdir(*parent, name, *now_ms),
            FsOp::SetAttr {
                ino,
                mode,
                owner,
                atime_ms,
                mtime_ms,
                now_ms,
            } => {
                let change = AttrChange {
                    mode: *mode,
                    owner: owner.as_deref(),
                    atime_ms: *atime_ms,
                    mtime_ms: *mtime_ms,
                };
                self.set_attr(*ino, change, *now_ms)
            }
            FsOp::SetReplicas {
                ino,
                replicas,
                now_ms,
            } => self.set_replicas(*ino, *replicas, *now_ms),
            FsOp::CreateAs {
                ino,
                parent,
                name,
                mode,
                owner,
                now_ms,
                exclusive,
                size,
                chunks,
            } => {
                let new = NewFile {
                    ino: *ino,
                    mode: *mode,
                    owner,
                    exclusive: *exclusive,
                    size: *size,
                    chunks,
                };
                self.create_as(*parent, name, new, *now_ms)
            }
        }
    }

    /// Sets aside `count` (1 to [`MAX_RESERVED_IDS`]) fresh inode ids for
    /// `owner`, to create files under with [`FsOp::CreateAs`], in any
    /// order. An owner keeps at most [`RESERVED_IDS_PER_OWNER`] unused ids;
    /// a new reservation drops its oldest runs beyond that. On `Err` the
    /// state is unchanged.
    pub fn reserve_ids(&mut self, owner: &str, count: u64) -> Result<Range<u64>, FsError> {
        let invalid = |reason: String| FsError::Invalid {
            path: "/".into(),
            reason,
        };
        if count == 0 || count > MAX_RESERVED_IDS {
            return Err(invalid(format!(
                "cannot reserve {count} ids: ask for 1 to {MAX_RESERVED_IDS}"
            )));
        }
        let first = self.next_ino;
        let end = first
            .checked_add(count)
            .filter(|end| *end < u64::MAX)
            .ok_or_else(|| invalid("the cell has used up its inode ids".into()))?;

        self.next_ino = end;
        self.reserved.insert(
            first,
            Reserved {
                end,
                owner: owner.to_string(),
            },
        );
        // Ids used out of order split runs, so the bound counts ids, not
        // runs; the newest runs are the ones clients are using.
        let mut mine: Vec<(u64, u64)> = (self.reserved.iter())
            .filter(|(_, r)| r.owner == owner)
            .map(|(first, r)| (*first, r.end - *first))
            .collect();
        let mut unused: u64 = mine.iter().map(|(_, n)| n).sum();
        mine.reverse();
        while unused > RESERVED_IDS_PER_OWNER {
            let Some((oldest, n)) = mine.pop() else { break };
            self.reserved.remove(&oldest);
            unused -= n;
        }
        Ok(first..end)
    }

    /// The reserved run holding `ino`, if `owner` reserved it and it is
    /// still unused.
    fn reservation_of(&self, ino: Ino, owner: &str) -> Option<u64> {
        let (first, r) = self.reserved.range(..=ino.0).next_back()?;
        (ino.0 < r.end && r.owner == owner).then_some(*first)
    }

    fn create_as(
        &mut self,
        parent: Ino,
        name: &str,
        new: NewFile<'_>,
        now: u64,
    ) -> Result<FsReply, FsError> {
        check_name(name)?;
        let path = self.entry_path(parent, name);
        check_mode(&path, new.mode)?;
        check_owner(&path, new.owner)?;
        check_chunks(&path, new.size, new.chunks)?;
        let existing = self.entries(parent)?.get(name).copied();
        if existing == Some(new.ino) {
            // This create again: only content not yet there changes it.
            if new.chunks.is_empty() {
                return Ok(reply(self.node(new.ino)?.clone()));
            }
            return self.commit(new.ino, None, new.size, new.chunks, now);
        }
        let Some(run) = self.reservation_of(new.ino, new.owner) else {
            return Err(FsError::Invalid {
                path,
                reason: format!(
                    "id {} is not one {} reserved, or it was used already",
                    new.ino, new.owner
                ),
            });
        };
        if let Some(other) = existing {
            if new.exclusive {
                return Err(FsError::Exists { path });
            }
            self.check_replaceable(false, other, path)?;
        }

        let released = match existing {
            Some(_) => self.remove(parent, name, now).1,
            None => Vec::new(),
        };
        self.use_reserved(run, new.ino);
        let version = u64::from(!new.chunks.is_empty());
        let kind = Kind::File {
            version,
            size: new.size,
            chunks: new.chunks.to_vec(),
        };
        let inode = new_inode(new.ino, kind, new.mode, new.owner, now);
        Ok(FsReply {
            inode: self.add(parent, name, inode),
            released,
        })
    }

    fn mkdir(
        &mut self,
        parent: Ino,
        name: &str,
        mode: u32,
        owner: &str,
        now: u64,
    ) -> Result<FsReply, FsError> {
        let path = self.check_new_entry(parent, name)?;
        check_mode(&path, mode)?;
        check_owner(&path, owner)?;
        let ino = self.fresh_ino(&path)?;

        let kind = Kind::Dir {
            entries: Default::default(),
            parent,
            replicas: None,
        };
        Ok(reply(self.add(
            parent,
            name,
            new_inode(ino, kind, mode, owner, now),
        )))
    }

    fn create(
        &mut self,
        parent: Ino,
        name: &str,
        mode: u32,
        owner: &str,
        now: u64,
        exclusive: bool,
    ) -> Result<FsReply, FsError> {
        check_name(name)?;
        let path = self.entry_path(parent, name);
        check_mode(&path, mode)?;
        check_owner(&path, owner)?;
        if let Some(existing) = self.entries(parent)?.get(name) {
            // open(O_CREAT) without O_EXCL opens an existing file as it is;
            // it cannot open a directory for writing.
            let existing = self.node(*existing)?;
            return match existing.kind {
                Kind::File { .. } if !exclusive => Ok(reply(existing.clone())),
                Kind::Dir { .. } if !exclusive => Err(FsError::IsDir { path }),
                _ => Err(FsError::Exists { path }),
            };
        }
        let ino = self.fresh_ino(&path)?;

        let kind = Kind::File {
            version: 0,
            size: 0,
            chunks: Vec::new(),
        };
        Ok(reply(self.add(
            parent,
            name,
            new_inode(ino, kind, mode, owner, now),
        )))
    }

    fn symlink(
        &mut self,
        parent: Ino,
        name: &str,
        target: &str,
        owner: &str,
        now: u64,
    ) -> Result<FsReply, FsError> {
        let path = self.check_new_entry(parent, name)?;
        check_target(&path, target)?;
        check_owner(&path, owner)?;
        let ino = self.fresh_ino(&path)?;

        let kind = Kind::Symlink {
            target: target.to_string(),
        };
        // A link's own permissions mean nothing (access is decided on its
        // target), so it gets Linux's fixed 0o777.
        Ok(reply(self.add(
            parent,
            name,
            new_inode(ino, kind, 0o777, owner, now),
        )))
    }

    fn mknod(
        &mut self,
        parent: Ino,
        name: &str,
        new: NewSpecial<'_>,
        now: u64,
    ) -> Result<FsReply, FsError> {
        let path = self.check_new_entry(parent, name)?;
        check_mode(&path, new.mode)?;
        check_owner(&path, new.owner)?;
        if new.rdev != 0 && !new.kind.has_rdev() {
            return Err(FsError::Invalid {
                path,
                reason: format!("a {} has no device number", new.kind.describe()),
            });
        }
        let ino = self.fresh_ino(&path)?;

        let kind = Kind::Special {
            kind: new.kind,
            rdev: new.rdev,
        };
        Ok(reply(self.add(
            parent,
            name,
            new_inode(ino, kind, new.mode, new.owner, now),
        )))
    }

    fn commit(
        &mut self,
        ino: Ino,
        if_version: Option<u64>,
        size: u64,
        chunks: &[ChunkRef],
        now: u64,
    ) -> Result<FsReply, FsError> {
        let path = self.display(ino);
        let (version, _) = self.file(ino, &path)?;
        check_chunks(&path, size, chunks)?;
        if let Some(expected) = if_version
            && expected != version
        {
            return Err(FsError::Conflict {
                path,
                current: version,
                expected,
            });
        }
        let next = next_version(&path, version)?;

        let inode = self.node_mut(ino);
        let Kind::File { chunks: old, .. } = &inode.kind else {
            unreachable!("checked to be a file")
        };
        let released = released(old, chunks);
        inode.kind = Kind::File {
            version: next,
            size,
            chunks: chunks.to_vec(),
        };
        inode.mtime_ms = now;
        inode.ctime_ms = now;
        Ok(FsReply {
            inode: inode.clone(),
            released,
        })
    }

    fn truncate(&mut self, ino: Ino, size: u64, now: u64) -> Result<FsReply, FsError> {
        let path = self.display(ino);
        let (version, empty) = self.file(ino, &path)?;
        if size != 0 {
            // A chunk's id is the hash of its bytes, so any other size needs
            // new chunks (even a shortened last one): the writer commits new
            // content instead.
            return Err(FsError::Invalid {
                path,
                reason: format!(
                    "cannot truncate to {size} bytes: only truncation to 0 is an operation \
                     of its own; for any other size, commit the new content"
                ),
            });
        }
        // Emptying an empty file changes no content, so it keeps its version
        // and does not fail a concurrent conditional writer.
        let next = if empty {
            version
        } else {
            next_version(&path, version)?
        };

        let inode = self.node_mut(ino);
        let old = std::mem::replace(
            &mut inode.kind,
            Kind::File {
                version: next,
                size: 0,
                chunks: Vec::new(),
            },
        );
        inode.mtime_ms = now;
        inode.ctime_ms = now;
        let inode = inode.clone();
        let Kind::File { chunks: old, .. } = old else {
            unreachable!("checked to be a file")
        };
        Ok(FsReply {
            inode,
            released: released(&old, &[]),
        })
    }

    fn rename(
        &mut self,
        from_parent: Ino,
        from_name: &str,
        to_parent: Ino,
        to_name: &str,
        now: u64,
    ) -> Result<FsReply, FsError> {
        check_name(from_name)?;
        check_name(to_name)?;
        let source = self.child(from_parent, from_name)?;
        let target = self.entries(to_parent)?.get(to_name).copied();
        if from_parent == to_parent && from_name == to_name {
            // POSIX: renaming an entry onto itself does nothing.
            return Ok(reply(source.clone()));
        }
        let (source, source_is_dir) = (source.ino, source.is_dir());
        let from = self.entry_path(from_parent, from_name);
        let to = self.entry_path(to_parent, to_name);
        if source_is_dir && self.is_within(to_parent, source) {
            return Err(FsError::IntoOwnSubtree { from, to });
        }
        if let Some(target) = target {
            self.check_replaceable(source_is_dir, target, to)?;
        }

        let released = match target {
            Some(_) => self.remove(to_parent, to_name, now).1,
            None => Vec::new(),
        };
        self.detach(from_parent, from_name);
        self.attach(to_parent, to_name, source);
        self.touch(from_parent, now);
        self.touch(to_parent, now);
        let inode = self.node_mut(source);
        inode.ctime_ms = now;
        Ok(FsReply {
            inode: inode.clone(),
            released,
        })
    }

    /// rename(2)'s rules for an existing target: like replaces like, and a
    /// directory only replaces an empty one.
    fn check_replaceable(
        &self,
        source_is_dir: bool,
        target: Ino,
        to: String,
    ) -> Result<(), FsError> {
        match (source_is_dir, &self.node(target)?.kind) {
            (true, Kind::Dir { entries, .. }) if !entries.is_empty() => {
                Err(FsError::NotEmpty { path: to })
            }
            (true, Kind::Dir { .. }) => Ok(()),
            (true, _) => Err(FsError::NotDir { path: to }),
            (false, Kind::Dir { .. }) => Err(FsError::IsDir { path: to }),
            (false, _) => Ok(()),
        }
    }

    fn unlink(&mut self, parent: Ino, name: &str, now: u64) -> Result<FsReply, FsError> {
        check_name(name)?;
        if self.child(parent, name)?.is_dir() {
            return Err(FsError::IsDir {
                path: self.entry_path(parent, name),
            });
        }

        let (inode, released) = self.remove(parent, name, now);
        self.touch(parent, now);
        Ok(FsReply { inode, released })
    }

    fn rmdir(&mut self, parent: Ino, name: &str, now: u64) -> Result<FsReply, FsError> {
        check_name(name)?;
        let dir = self.child(parent, name)?;
        let path = || self.entry_path(parent, name);
        match dir.entries() {
            // The root is in no directory, so only a corrupt state gets here.
            _ if dir.ino == Ino::ROOT => {
                return Err(FsError::Root {
                    action: "removed".into(),
                });
            }
            None => return Err(FsError::NotDir { path: path() }),
            Some(entries) if !entries.is_empty() => {
                return Err(FsError::NotEmpty { path: path() });
            }
            Some(_) => {}
        }

        let (inode, _) = self.remove(parent, name, now);
        self.touch(parent, now);
        Ok(reply(inode))
    }

    fn set_attr(&mut self, ino: Ino, change: AttrChange<'_>, now: u64) -> Result<FsReply, FsError> {
        self.node(ino)?;
        let path = self.display(ino);
        if let Some(mode) = change.mode {
            check_mode(&path, mode)?;
        }
        if let Some(owner) = change.owner {
            check_owner(&path, owner)?;
        }

        let inode = self.node_mut(ino);
        if let Some(mode) = change.mode {
            inode.mode = mode;
        }
        if let Some(owner) = change.owner {
            inode.owner = owner.to_string();
        }
        if let Some(atime) = change.atime_ms {
            inode.atime_ms = atime;
        }
        if let Some(mtime) = change.mtime_ms {
            inode.mtime_ms = mtime;
        }
        inode.ctime_ms = now;
        Ok(reply(inode.clone()))
    }

    fn set_replicas(
        &mut self,
        ino: Ino,
        replicas: Option<u8>,
        now: u64,
    ) -> Result<FsReply, FsError> {
        let path = self.display(ino);
        if !self.node(ino)?.is_dir() {
            return Err(FsError::NotDir { path });
        }
        if replicas == Some(0) {
            return Err(FsError::Invalid {
                path,
                reason: "a replication factor must be at least 1".into(),
            });
        }

        let inode = self.node_mut(ino);
        if let Kind::Dir { replicas: r, .. } = &mut inode.kind {
            *r = replicas;
        }
        inode.ctime_ms = now;
        Ok(reply(inode.clone()))
    }

    // ---- checks (read only) ----

    /// `name` must be valid and free in directory `parent`; returns its path.
    fn check_new_entry(&self, parent: Ino, name: &str) -> Result<String, FsError> {
        check_name(name)?;
        let path = self.entry_path(parent, name);
        if self.entries(parent)?.contains_key(name) {
            return Err(FsError::Exists { path });
        }
        Ok(path)
    }

    /// The id a new inode gets.
    fn fresh_ino(&self, path: &str) -> Result<Ino, FsError> {
        if self.next_ino == u64::MAX {
            return Err(FsError::Invalid {
                path: path.to_string(),
                reason: "the cell has used up its inode ids".into(),
            });
        }
        Ok(Ino(self.next_ino))
    }

    /// `ino` must be a file: returns its version and whether it is empty.
    fn file(&self, ino: Ino, path: &str) -> Result<(u64, bool), FsError> {
        match &self.node(ino)?.kind {
            Kind::File {
                version, chunks, ..
            } => Ok((*version, chunks.is_empty())),
            Kind::Dir { .. } => Err(FsError::IsDir {
                path: path.to_string(),
            }),
            Kind::Symlink { .. } => Err(FsError::Invalid {
                path: path.to_string(),
                reason: "is a symbolic link; only files have content".into(),
            }),
            Kind::Special { kind, .. } => Err(FsError::Invalid {
                path: path.to_string(),
                reason: format!(
                    "is a {} (a special file); only files have content",
                    kind.describe()
                ),
            }),
        }
    }

    /// Whether `ino` is `ancestor` or below it.
    fn is_within(&self, ino: Ino, ancestor: Ino) -> bool {
        let mut at = ino;
        // Bounded by the inode count in case a corrupt state holds a cycle.
        for _ in 0..=self.inodes.len() {
            if at == ancestor {
                return true;
            }
            match self.get(at).map(|inode| &inode.kind) {
                Some(Kind::Dir { parent, .. }) if at != Ino::ROOT => at = *parent,
                _ => return false,
            }
        }
        false
    }

    // ---- changes (infallible; every id and name was checked above) ----

    fn node_mut(&mut self, ino: Ino) -> &mut Inode {
        self.inodes
            .get_mut(&ino)
            .expect("inode checked before changing the state")
    }

    /// Takes `ino` out of the reserved run that starts at `run`, splitting
    /// it in two if `ino` lies inside.
    fn use_reserved(&mut self, run: u64, ino: Ino) {
        let Some(r) = self.reserved.remove(&run) else {
            return;
        };
        if run < ino.0 {
            let before = Reserved {
                end: ino.0,
                owner: r.owner.clone(),
            };
            self.reserved.insert(run, before);
        }
        if ino.0 + 1 < r.end {
            self.reserved.insert(ino.0 + 1, r);
        }
    }

    /// Stores a new inode and links it as `parent/name`.
    fn add(&mut self, parent: Ino, name: &str, inode: Inode) -> Inode {
        let (ino, now) = (inode.ino, inode.ctime_ms);
        // A reserved id lies below the counter already.
        self.next_ino = self.next_ino.max(ino.0 + 1);
        self.inodes.insert(ino, inode.clone());
        self.attach(parent, name, ino);
        self.touch(parent, now);
        inode
    }

    /// Links `child` as `parent/name`, keeping nlink, the child's parent
    /// pointer and the link index in step.
    fn attach(&mut self, parent: Ino, name: &str, child: Ino) {
        let child_is_dir = match &mut self.node_mut(child).kind {
            Kind::Dir { parent: up, .. } => {
                *up = parent;
                true
            }
            _ => false,
        };
        let dir = self.node_mut(parent);
        if let Kind::Dir { entries, .. } = &mut dir.kind {
            entries.insert(name.to_string(), child);
        }
        if child_is_dir {
            dir.nlink = dir.nlink.saturating_add(1);
        }
        let link = Link {
            parent,
            name: name.to_string(),
        };
        self.links.insert(child, link);
    }

    /// Unlinks `parent/name` and returns the child, which stays stored.
    fn detach(&mut self, parent: Ino, name: &str) -> Ino {
        let Kind::Dir { entries, .. } = &mut self.node_mut(parent).kind else {
            unreachable!("checked to be a directory")
        };
        let child = entries.remove(name).expect("entry checked to exist");
        self.links.remove(&child);
        if self.inodes[&child].is_dir() {
            let dir = self.node_mut(parent);
            dir.nlink = dir.nlink.saturating_sub(1);
        }
        child
    }

    /// Unlinks and deletes `parent/name` (a file, a symlink or an empty
    /// directory); returns it with nlink 0 and the chunks it held.
    fn remove(&mut self, parent: Ino, name: &str, now: u64) -> (Inode, Vec<ChunkRef>) {
        let ino = self.detach(parent, name);
        let mut inode = self.inodes.remove(&ino).expect("inode checked to exist");
        inode.nlink = 0;
        inode.ctime_ms = now;
        let released = released(inode.chunks(), &[]);
        (inode, released)
    }

    /// Marks a directory's entries as changed.
    fn touch(&mut self, dir: Ino, now: u64) {
        let dir = self.node_mut(dir);
        dir.mtime_ms = now;
        dir.ctime_ms = now;
    }
}

/// The arguments of [`FsOp::Mknod`] past the place and the time.
struct NewSpecial<'a> {
    kind: SpecialKind,
    rdev: u64,
    mode: u32,
    owner: &'a str,
}

/// Most ids one [`FsState::reserve_ids`] hands out.
pub const MAX_RESERVED_IDS: u64 = 4096;

/// Unused reserved ids one owner keeps (a client that dies leaves its
/// unused ids behind; this bounds what they cost the state). Many mounts of
/// one principal share it.
pub const RESERVED_IDS_PER_OWNER: u64 = 64 * MAX_RESERVED_IDS;

/// The arguments of [`FsOp::CreateAs`] about the new file.
struct NewFile<'a> {
    ino: Ino,
    mode: u32,
    owner: &'a str,
    exclusive: bool,
    size: u64,
    chunks: &'a [ChunkRef],
}

/// The arguments of [`FsOp::SetAttr`]: `None` leaves an attribute alone.
struct AttrChange<'a> {
    mode: Option<u32>,
    owner: Option<&'a str>,
    atime_ms: Option<u64>,
    mtime_ms: Option<u64>,
}

fn new_inode(ino: Ino, kind: Kind, mode: u32, owner: &str, now: u64) -> Inode {
    let nlink = if matches!(kind, Kind::Dir { .. }) {
        2
    } else {
        1
    };
    Inode {
        ino,
        kind,
        mode,
        owner: owner.to_string(),
        atime_ms: now,
        mtime_ms: now,
        ctime_ms: now,
        nlink,
    }
}

fn reply(inode: Inode) -> FsReply {
    FsReply {
        inode,
        released: Vec::new(),
    }
}

/// A committed chunk list must add up to the size, and hold no empty chunk
/// (an empty file has no chunks; an empty chunk is a writer's bug).
fn check_chunks(path: &str, size: u64, chunks: &[ChunkRef]) -> Result<(), FsError> {
    let invalid = |reason: String| {
        Err(FsError::Invalid {
            path: path.to_string(),
            reason,
        })
    };
    if let Some(i) = chunks.iter().position(|c| c.len == 0) {
        return invalid(format!("chunk {i} has length 0"));
    }
    // u32 lengths cannot overflow a u64 sum for any list that fits in memory.
    let sum: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
    if sum != size {
        return invalid(format!(
            "size {size} does not match the chunks, which hold {sum} bytes"
        ));
    }
    Ok(())
}

fn next_version(path: &str, version: u64) -> Result<u64, FsError> {
    version.checked_add(1).ok_or_else(|| FsError::Invalid {
        path: path.to_string(),
        reason: "the file's version counter is exhausted".into(),
    })
}

/// The chunks of `old` that `new` does not list, each once, in `old`'s order.
fn released(old: &[ChunkRef], new: &[ChunkRef]) -> Vec<ChunkRef> {
    let kept: BTreeSet<[u8; 32]> = new.iter().map(|c| c.id).collect();
    let mut seen = BTreeSet::new();
    old.iter()
        .filter(|c| !kept.contains(&c.id) && seen.insert(c.id))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests;
