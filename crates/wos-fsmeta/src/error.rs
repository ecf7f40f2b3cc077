//! Errors of the namespace and their errno-like classification.

use serde::{Deserialize, Serialize};

use crate::model::Ino;

/// Every way an operation or a query can fail. Messages name the path (or
/// name, or inode) involved, so they can go to the user as they are.
///
/// Errors are data: a refusal is decided by the state machine on every
/// replica and may travel back to the proposer in a Raft reply, hence the
/// serde derives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FsError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{ino} does not exist")]
    NoInode { ino: Ino },
    #[error("{path}: already exists")]
    Exists { path: String },
    #[error("{path}: not a directory")]
    NotDir { path: String },
    #[error("{path}: is a directory")]
    IsDir { path: String },
    #[error("{path}: directory not empty")]
    NotEmpty { path: String },
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// `name` holds only the beginning of the offending name.
    #[error("name {name:?}… is {len} bytes long; a name may have at most 255")]
    NameTooLong { name: String, len: usize },
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// `path` holds only the beginning of the offending path.
    #[error("path {path:?}… is {len} bytes long; a path may have at most 4096")]
    PathTooLong { path: String, len: usize },
    #[error("{path}: too many levels of symbolic links (more than 40)")]
    Loop { path: String },
    #[error(
        "{path}: someone else committed first: the file is at version {current}, \
         this write expected version {expected}"
    )]
    Conflict {
        path: String,
        current: u64,
        expected: u64,
    },
    #[error("cannot move directory {from} into its own subtree ({to})")]
    IntoOwnSubtree { from: String, to: String },
    #[error("the root directory cannot be {action}")]
    Root { action: String },
    /// Bad arguments that no other variant describes (a mode with file-type
    /// bits, a size that does not match the chunks, ...).
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// A classification of [`FsError`] without `libc`: the FUSE layer maps it to
/// an errno, the HTTP gateway to a status code.
///
/// Deliberately exhaustive: a new class must make every mapping fail to
/// compile rather than fall into a default arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Errno {
    /// ENOENT.
    NoEnt,
    /// EEXIST.
    Exist,
    /// ENOTDIR.
    NotDir,
    /// EISDIR.
    IsDir,
    /// ENOTEMPTY.
    NotEmpty,
    /// EINVAL.
    Inval,
    /// ENAMETOOLONG.
    NameTooLong,
    /// ELOOP.
    Loop,
    /// A failed compare-and-swap on the file version (HTTP 412; FUSE has no
    /// exact errno, ESTALE or EAGAIN fit).
    Conflict,
    /// EPERM.
    Perm,
}

impl FsError {
    pub fn errno(&self) -> Errno {
        match self {
            FsError::NotFound { .. } | FsError::NoInode { .. } => Errno::NoEnt,
            FsError::Exists { .. } => Errno::Exist,
            FsError::NotDir { .. } => Errno::NotDir,
            FsError::IsDir { .. } => Errno::IsDir,
            FsError::NotEmpty { .. } => Errno::NotEmpty,
            FsError::NameTooLong { .. } | FsError::PathTooLong { .. } => Errno::NameTooLong,
            FsError::Loop { .. } => Errno::Loop,
            FsError::Conflict { .. } => Errno::Conflict,
            FsError::Root { .. } => Errno::Perm,
            // POSIX rename(2) answers EINVAL for a move into the own subtree.
            FsError::InvalidName { .. }
            | FsError::InvalidPath { .. }
            | FsError::IntoOwnSubtree { .. }
            | FsError::Invalid { .. } => Errno::Inval,
        }
    }
}

/// The first `max` bytes of `s` (cut at a char boundary), for messages about
/// over-long input that should not carry all of it.
pub(crate) fn prefix(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
