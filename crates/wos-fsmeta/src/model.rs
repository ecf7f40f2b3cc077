//! The stored records: inode ids, chunk references, inodes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Replication factor used when no directory on the way up sets one.
pub const DEFAULT_REPLICAS: u8 = 3;

/// Permission bits an inode's `mode` may hold (rwx for user, group, other,
/// plus setuid, setgid and sticky). The file type lives in [`Kind`].
pub const MODE_MASK: u32 = 0o7777;

/// An object id. It names the object itself, not a place: it never changes
/// when the object is renamed or its data moves, and it is never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory.
    pub const ROOT: Ino = Ino(1);
}

impl fmt::Display for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inode {}", self.0)
    }
}

/// One immutable chunk of file data, named by its content (BLAKE3). The data
/// itself lives in the chunk store; the namespace only lists it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 hash of the chunk's bytes.
    pub id: [u8; 32],
    /// Length of the chunk in bytes.
    pub len: u32,
}

impl fmt::Debug for ChunkRef {
    // A short hex prefix is enough to tell chunks apart in test output and
    // logs; the full 32-byte array printed as decimals is unreadable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkRef(")?;
        for b in &self.id[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…, {})", self.len)
    }
}

/// A file, directory, symbolic link or special file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub ino: Ino,
    pub kind: Kind,
    /// Permission bits only (`<= 0o7777`).
    pub mode: u32,
    /// Principal id of the owner, like `user:alice`.
    pub owner: String,
    /// Last access as set at creation or by `utimensat`, ms since the epoch.
    /// Reads do not move it: a network file system that wrote metadata on
    /// every read would turn each read into a consensus round (`noatime`).
    pub atime_ms: u64,
    /// Last change of the contents (file data, directory entries), ms since the epoch.
    pub mtime_ms: u64,
    /// Last change of the contents or the attributes, ms since the epoch.
    pub ctime_ms: u64,
    /// Directories: 2 plus the number of subdirectories; others: 1 (no hard links).
    /// An inode returned by a removal carries 0.
    pub nlink: u32,
}

/// What an inode is, with the data that only that kind has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Dir {
        /// Name to child, in name order.
        entries: BTreeMap<String, Ino>,
        /// The directory that holds this one (the root is its own parent).
        parent: Ino,
        /// Replication factor for files below; `None` inherits from the parent.
        replicas: Option<u8>,
    },
    File {
        /// Bumped by every content change; what `If-Match` / `--if-version` compare.
        version: u64,
        /// Length in bytes: always the sum of the chunk lengths.
        size: u64,
        /// The content, in order. Replaced as a whole (close-to-open).
        chunks: Vec<ChunkRef>,
    },
    Symlink {
        target: String,
    },
    /// A FIFO, socket or device node: a name with attributes and no data.
    /// What it does comes from the kernel of whoever opens it (a FIFO
    /// connects local programs only); WebFS only keeps its place.
    Special {
        kind: SpecialKind,
        /// The device number as Linux's `st_rdev` shows it (0 for FIFOs
        /// and sockets).
        rdev: u64,
    },
}

/// Which kind of special file a [`Kind::Special`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialKind {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl SpecialKind {
    /// A short word for messages and listings.
    pub fn describe(self) -> &'static str {
        match self {
            SpecialKind::Fifo => "fifo",
            SpecialKind::Socket => "socket",
            SpecialKind::CharDevice => "character device",
            SpecialKind::BlockDevice => "block device",
        }
    }

    /// Only device nodes have a device number.
    pub fn has_rdev(self) -> bool {
        matches!(self, SpecialKind::CharDevice | SpecialKind::BlockDevice)
    }
}

impl Kind {
    /// A short word for messages: "directory", "file", "symbolic link".
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Dir { .. } => "directory",
            Kind::File { .. } => "file",
            Kind::Symlink { .. } => "symbolic link",
            Kind::Special { kind, .. } => kind.describe(),
        }
    }
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }

    /// The entries of a directory; `None` for other kinds.
    pub fn entries(&self) -> Option<&BTreeMap<String, Ino>> {
        match &self.kind {
            Kind::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// The chunks of a file; empty for other kinds.
    pub fn chunks(&self) -> &[ChunkRef] {
        match &self.kind {
            Kind::File { chunks, .. } => chunks,
            _ => &[],
        }
    }

    /// Size in bytes as `stat` shows it: file length, symlink target length,
    /// directory entry count, 0 for special files.
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::File { size, .. } => *size,
            Kind::Symlink { target } => target.len() as u64,
            Kind::Dir { entries, .. } => entries.len() as u64,
            Kind::Special { .. } => 0,
        }
    }
}
