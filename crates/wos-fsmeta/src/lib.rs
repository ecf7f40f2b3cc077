//! The WebFS namespace as a deterministic state machine.
//!
//! Owns the cell's file-system metadata: directories and their entries,
//! files as versioned lists of content-addressed chunks ([`ChunkRef`]),
//! symbolic links, special files (FIFOs, sockets, device nodes: names
//! only), attributes, and per-directory replication factors. It is
//! a plain library: the cell's Raft state machine embeds an [`FsState`] and
//! applies [`FsOp`]s in log order, so every replica reaches the same state.
//!
//! Therefore this crate never depends on Raft, the network or the chunk
//! store, does no I/O and reads no clock (every op carries the proposer's
//! time); it iterates only ordered maps, and a refused op changes nothing.
//! Access control happens before an op is proposed (the reference monitor,
//! by path prefix), not here.
//!
//! Consistency is close-to-open, as in AFS: [`FsOp::Commit`] replaces a
//! file's whole chunk list and bumps its version, so a reader sees the old
//! list or the new one, never a mix; `if_version` turns a commit into a
//! compare-and-swap.

mod apply;
mod error;
mod fsck;
mod model;
mod op;
mod path;
mod state;

pub use apply::{MAX_RESERVED_IDS, RESERVED_IDS_PER_OWNER};
pub use error::{Errno, FsError};
pub use model::{ChunkRef, DEFAULT_REPLICAS, Ino, Inode, Kind, MODE_MASK, SpecialKind};
pub use op::{FsOp, FsReply};
pub use path::{MAX_NAME, MAX_PATH, check_name, parse_path};
pub use state::{FsState, MAX_SYMLINK_FOLLOWS};
