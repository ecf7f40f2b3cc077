//! The commands that change the namespace, and their replies.

use serde::{Deserialize, Serialize};

use crate::model::{ChunkRef, Ino, Inode, SpecialKind};

/// A change to the namespace. Every variant that changes a time carries the
/// proposer's clock (`now_ms`, ms since the epoch): replicas apply the same
/// log and must not read their own clocks.
///
/// Names are single path components (see [`crate::check_name`]); access
/// control has been done before an op is proposed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsOp {
    /// Creates an empty directory.
    Mkdir {
        parent: Ino,
        name: String,
        mode: u32,
        owner: String,
        now_ms: u64,
    },
    /// Creates an empty file at version 0. When the name exists and
    /// `exclusive` is false, an existing *file* is returned unchanged
    /// (`open(O_CREAT)` without `O_EXCL`).
    Create {
        parent: Ino,
        name: String,
        mode: u32,
        owner: String,
        now_ms: u64,
        exclusive: bool,
    },
    /// Creates a symbolic link. Its mode is always 0o777, as on Linux.
    Symlink {
        parent: Ino,
        name: String,
        target: String,
        owner: String,
        now_ms: u64,
    },
    /// Creates a special file (FIFO, socket, device node). `rdev` must be 0
    /// unless it is a device node.
    Mknod {
        parent: Ino,
        name: String,
        kind: SpecialKind,
        rdev: u64,
        mode: u32,
        owner: String,
        now_ms: u64,
    },
    /// Installs a file's new content as a whole (close-to-open) and bumps its
    /// version. `size` must be the sum of the chunk lengths. With
    /// `if_version`, refused unless the file is still at that version.
    Commit {
        ino: Ino,
        if_version: Option<u64>,
        size: u64,
        chunks: Vec<ChunkRef>,
        now_ms: u64,
    },
    /// Empties a file. Only `size == 0` is accepted: any other size needs new
    /// data (a chunk id is the hash of its content, so even a shortened last
    /// chunk is a new chunk), and the writer commits new content instead.
    Truncate { ino: Ino, size: u64, now_ms: u64 },
    /// Moves an entry atomically, with the semantics of POSIX rename(2).
    Rename {
        from_parent: Ino,
        from_name: String,
        to_parent: Ino,
        to_name: String,
        now_ms: u64,
    },
    /// Removes a file or symbolic link.
    Unlink {
        parent: Ino,
        name: String,
        now_ms: u64,
    },
    /// Removes an empty directory.
    Rmdir {
        parent: Ino,
        name: String,
        now_ms: u64,
    },
    /// Changes attributes; `None` leaves one as it is. The ctime becomes `now_ms`.
    SetAttr {
        ino: Ino,
        mode: Option<u32>,
        owner: Option<String>,
        atime_ms: Option<u64>,
        mtime_ms: Option<u64>,
        now_ms: u64,
    },
    /// Sets (or with `None`, clears) a directory's replication factor, which
    /// the files below it inherit.
    SetReplicas {
        ino: Ino,
        replicas: Option<u8>,
        now_ms: u64,
    },
    /// Creates a file under an id that `owner` reserved earlier
    /// ([`crate::FsState::reserve_ids`]), with its first content: no chunks
    /// make an empty file at version 0, chunks make version 1. A client that
    /// knows the id before the cell has the file can answer `create(2)` at
    /// once and send the file's name and content together when it closes.
    ///
    /// The same id already at the name is the same create arriving again
    /// (nothing changes) or an empty create followed by its content (which
    /// is committed). Another file at the name fails an `exclusive` create;
    /// otherwise it is replaced, as if this file's close came last.
    CreateAs {
        ino: Ino,
        parent: Ino,
        name: String,
        mode: u32,
        owner: String,
        now_ms: u64,
        exclusive: bool,
        size: u64,
        chunks: Vec<ChunkRef>,
    },
}

impl FsOp {
    /// The existing objects whose attributes or entries this op changes, as
    /// far as the op itself names them (a removed or moved object is named
    /// by the reply's inode). Caches of these must be told before the
    /// change is acknowledged.
    pub fn touched(&self) -> Vec<Ino> {
        match self {
            FsOp::Mkdir { parent, .. }
            | FsOp::Create { parent, .. }
            | FsOp::CreateAs { parent, .. }
            | FsOp::Mknod { parent, .. }
            | FsOp::Symlink { parent, .. }
            | FsOp::Unlink { parent, .. }
            | FsOp::Rmdir { parent, .. } => vec![*parent],
            FsOp::Commit { ino, .. }
            | FsOp::Truncate { ino, .. }
            | FsOp::SetAttr { ino, .. }
            | FsOp::SetReplicas { ino, .. } => vec![*ino],
            FsOp::Rename {
                from_parent,
                to_parent,
                ..
            } => vec![*from_parent, *to_parent],
        }
    }
}

/// The result of an applied [`FsOp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsReply {
    /// The inode the op was about, as it is after the op: the new, changed
    /// or moved inode; for Unlink and Rmdir the removed one, with `nlink` 0.
    pub inode: Inode,
    /// Chunks that the op took out of a file (the committed file's old
    /// chunks that its new list lacks, a removed or replaced file's chunks),
    /// each once. Other files may still use them: see
    /// [`crate::FsState::all_chunks`] before collecting.
    pub released: Vec<ChunkRef>,
}
