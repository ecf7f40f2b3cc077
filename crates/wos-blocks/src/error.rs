//! The errors of the chunk store. Each message says what failed, on which
//! chunk or path, and what to do about it, since the node daemon passes them
//! on to operators and peers as they are.

use std::io;
use std::path::PathBuf;

use crate::id::ChunkId;

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the chunk store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "refused to store chunk {id}: its bytes hash to {actual}; the data was damaged on the way or sent under the wrong id, send it again"
    )]
    HashMismatch { id: ChunkId, actual: ChunkId },

    #[error(
        "chunk {id} at {} is corrupt (its bytes hash to {actual}); {}",
        path.display(),
        corrupt_fate(moved_to)
    )]
    Corrupt {
        id: ChunkId,
        path: PathBuf,
        actual: ChunkId,
        /// Where the damaged file was moved, or `None` if moving it failed.
        moved_to: Option<PathBuf>,
    },

    #[error(
        "chunk {id} is not in the store (no file {}); fetch it from another replica",
        path.display()
    )]
    NotFound { id: ChunkId, path: PathBuf },

    #[error(
        "refused to store chunk {id}: the stream ended after {got} of the announced {expected} bytes; the transfer was cut short, send it again"
    )]
    ShortRead {
        id: ChunkId,
        expected: u64,
        got: u64,
    },

    #[error(
        "refused to store chunk {id} of {len} bytes: chunks are at most {max} bytes; cut the data with the Chunker"
    )]
    TooLarge { id: ChunkId, len: u64, max: u64 },

    #[error(
        "cannot read bytes {offset}..{} of chunk {id}: it has {size} bytes; ask for a range inside the chunk",
        offset.saturating_add(*len)
    )]
    OutOfRange {
        id: ChunkId,
        offset: u64,
        len: u64,
        size: u64,
    },

    #[error(
        "reading the data to store failed: {source}; the input stream broke off, send it again"
    )]
    Read {
        #[source]
        source: io::Error,
    },

    #[error("cannot {action} {}: {source}; {}", path.display(), io_hint(source))]
    Io {
        /// What was being done, as a verb phrase ("create the temporary file").
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// An I/O error doing `action` on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

fn corrupt_fate(moved_to: &Option<PathBuf>) -> String {
    match moved_to {
        Some(to) => format!(
            "moved it to {} so that repair fetches a good copy from another replica",
            to.display()
        ),
        None => {
            "moving it aside failed as well; delete it by hand so that repair fetches a good copy"
                .to_string()
        }
    }
}

/// What an operator should look at for a failed file operation.
fn io_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "the disk is full: free space or move chunks to another node"
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            "the node must own the chunk directory and be able to write to it"
        }
        io::ErrorKind::NotFound => {
            "the chunk directory changed under the node; check that its disk is mounted"
        }
        _ => "check the disk holding the chunk directory (mounted, healthy, writable)",
    }
}
