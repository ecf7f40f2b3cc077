//! WebFS over HTTP: what `GET /v1/fs/PATH` lists and stats, what
//! `POST /v1/fs/PATH` changes, and what `GET /v1/fsck` reports.

use serde::{Deserialize, Serialize};

/// One entry of the namespace, as listings and stats show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    pub name: String,
    pub path: String,
    /// The object id: it never changes when the data moves or the entry
    /// is renamed.
    pub ino: u64,
    /// `file`, `dir`, `symlink`, or a special file: `fifo`, `socket`,
    /// `char` (character device) or `block` (block device).
    pub kind: String,
    pub size: u64,
    /// Files: the committed version (what `--if-version` and `If-Match`
    /// compare); 0 for other kinds.
    pub version: u64,
    pub mode: u32,
    pub owner: String,
    /// Last change of the content (data, directory entries), ms since the epoch.
    pub mtime_ms: u64,
    /// Last change of the content or the attributes.
    #[serde(default)]
    pub ctime_ms: u64,
    /// Last access as set at creation or by [`FsOpRequest::Times`] (reads
    /// do not change it).
    #[serde(default)]
    pub atime_ms: u64,
    /// Names of the object: directories 2 plus their subdirectories, others 1.
    #[serde(default = "one")]
    pub nlink: u32,
    /// Device nodes: the device number as Linux's `st_rdev` shows it.
    #[serde(default)]
    pub rdev: u64,
    #[serde(default)]
    pub target: Option<String>,
    /// Files: how many chunks hold the data.
    #[serde(default)]
    pub chunks: usize,
}

fn one() -> u32 {
    1
}

/// What [`FsOpRequest::Mknod`] makes. Special files are names only: a FIFO
/// or socket works between programs on one machine (its kernel does the
/// work), and mounts are `nodev`, so device nodes cannot be opened through
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpecialKind {
    Fifo,
    Socket,
    Char,
    Block,
}

impl SpecialKind {
    /// The word [`FsEntry::kind`] uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialKind::Fifo => "fifo",
            SpecialKind::Socket => "socket",
            SpecialKind::Char => "char",
            SpecialKind::Block => "block",
        }
    }
}

/// `GET /v1/fs/DIR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsListing {
    pub path: String,
    pub entries: Vec<FsEntry>,
}

/// `POST /v1/fs/PATH`: a namespace change that carries no data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum FsOpRequest {
    /// Make a directory (`parents`: and missing ones above it, like
    /// `mkdir -p`).
    Mkdir {
        #[serde(default)]
        parents: bool,
        #[serde(default)]
        mode: Option<u32>,
    },
    /// Move to `to` (atomic; replaces a file there).
    Rename {
        to: String,
    },
    Symlink {
        target: String,
    },
    Chmod {
        mode: u32,
    },
    /// Set the access and modification times (ms since the epoch; none:
    /// leave it). The change time becomes the node's clock.
    Times {
        #[serde(default)]
        atime_ms: Option<u64>,
        #[serde(default)]
        mtime_ms: Option<u64>,
    },
    /// Make a special file (FIFO, socket, device node); `rdev` is for
    /// device nodes only.
    Mknod {
        kind: SpecialKind,
        #[serde(default)]
        mode: Option<u32>,
        #[serde(default)]
        rdev: u64,
    },
    /// Set how many nodes hold each chunk of files below this directory
    /// (none: inherit from the parent; the cell's default is 3).
    Replicas {
        replicas: Option<u8>,
    },
    /// Set aside `count` (at most 4096) object ids for the caller, who may
    /// then create files under them in any order with
    /// `PUT /v1/fs/PATH?ino=ID&new=true`, sending name and content in one
    /// request. Needs write access to PATH (a directory); answers
    /// [`FsIds`].
    ReserveIds {
        count: u64,
    },
}

/// The object ids [`FsOpRequest::ReserveIds`] set aside: `first` to
/// `first + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsIds {
    pub first: u64,
    pub count: u64,
}

/// `GET /v1/fsck`: every chunk the namespace refers to, against the copies
/// the live nodes hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReport {
    pub files: u64,
    pub chunks: u64,
    pub bytes: u64,
    /// Nodes asked (alive ones) and nodes that did not answer.
    pub nodes_asked: Vec<String>,
    pub nodes_unreachable: Vec<String>,
    /// Chunks with fewer copies than their directory's R: `id copies/R`.
    pub under_replicated: Vec<String>,
    /// Chunks no live node holds.
    pub missing: Vec<String>,
    /// Chunks held but not referenced (garbage to collect).
    pub unreferenced: u64,
}

impl FsckReport {
    pub fn healthy(&self) -> bool {
        self.under_replicated.is_empty() && self.missing.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_requests_read_as_json() {
        let parse = |s: &str| serde_json::from_str::<FsOpRequest>(s).unwrap();
        assert_eq!(
            parse(r#"{"op":"chmod","mode":420}"#),
            FsOpRequest::Chmod { mode: 0o644 }
        );
        assert_eq!(
            parse(r#"{"op":"times","mtime_ms":5}"#),
            FsOpRequest::Times {
                atime_ms: None,
                mtime_ms: Some(5)
            }
        );
        assert_eq!(
            parse(r#"{"op":"mknod","kind":"char","mode":384,"rdev":1283}"#),
            FsOpRequest::Mknod {
                kind: SpecialKind::Char,
                mode: Some(0o600),
                rdev: 0x503
            }
        );
        assert!(serde_json::from_str::<FsOpRequest>(r#"{"op":"mknod","kind":"door"}"#).is_err());
    }

    #[test]
    fn entries_from_older_nodes_read_with_defaults() {
        let old = r#"{"name":"f","path":"/f","ino":2,"kind":"file","size":0,"version":0,
                      "mode":420,"owner":"user:admin","mtime_ms":7}"#;
        let e: FsEntry = serde_json::from_str(old).unwrap();
        assert_eq!((e.nlink, e.ctime_ms, e.rdev), (1, 0, 0));
    }
}
