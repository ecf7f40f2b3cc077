//! The namespace state and its read-only queries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::FsError;
use crate::model::{DEFAULT_REPLICAS, Ino, Inode, Kind};
use crate::path::{join, parse_path};

/// How many symbolic links one resolution may follow (Linux's MAXSYMLINKS).
pub const MAX_SYMLINK_FOLLOWS: usize = 40;

/// The whole namespace of a cell: every inode by id, and the id counter.
///
/// Change it only through [`FsState::apply`], which keeps the invariants
/// that [`FsState::fsck`] checks. Serialized, it is `inodes`,
/// `next_ino` and the reserved ids (plain structs and maps, so postcard can carry it in Raft
/// snapshots).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "Stored")]
pub struct FsState {
    pub(crate) inodes: BTreeMap<Ino, Inode>,
    /// The id the next created inode gets; ids are never reused.
    pub(crate) next_ino: u64,
    /// Ids set aside for clients that create files under them later
    /// ([`FsState::reserve_ids`]), by first id: unused ones only.
    pub(crate) reserved: BTreeMap<u64, Reserved>,
    /// Where each non-root inode is linked. Derived from the directory
    /// entries and never stored: only directories carry a parent pointer,
    /// and without this map `path_of` (which the reference monitor needs for
    /// every inode-addressed FUSE call) and `replicas_for` on a file would
    /// have to scan every directory.
    pub(crate) links: BTreeMap<Ino, Link>,
}

/// An inode's place: the directory that holds it and its name there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) parent: Ino,
    pub(crate) name: String,
}

/// A run of reserved ids, `first..end`, that `owner` may create under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reserved {
    pub(crate) end: u64,
    pub(crate) owner: String,
}

/// The stored form (what snapshots hold).
#[derive(Deserialize)]
struct Stored {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: u64,
    reserved: BTreeMap<u64, Reserved>,
}

/// The stored form, borrowed, so that writing a snapshot copies nothing.
#[derive(Serialize)]
struct StoredRef<'a> {
    inodes: &'a BTreeMap<Ino, Inode>,
    next_ino: u64,
    reserved: &'a BTreeMap<u64, Reserved>,
}

impl Serialize for FsState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredRef {
            inodes: &self.inodes,
            next_ino: self.next_ino,
            reserved: &self.reserved,
        }
        .serialize(serializer)
    }
}

impl From<Stored> for FsState {
    fn from(stored: Stored) -> Self {
        let links = links_of(&stored.inodes);
        FsState {
            inodes: stored.inodes,
            next_ino: stored.next_ino,
            reserved: stored.reserved,
            links,
        }
    }
}

/// Rebuilds the link index from the directory entries.
pub(crate) fn links_of(inodes: &BTreeMap<Ino, Inode>) -> BTreeMap<Ino, Link> {
    let mut links = BTreeMap::new();
    for dir in inodes.values() {
        for (name, child) in dir.entries().into_iter().flatten() {
            let link = Link {
                parent: dir.ino,
                name: name.clone(),
            };
            links.insert(*child, link);
        }
    }
    links
}

impl Default for FsState {
    /// A namespace holding only the root directory (mode 0o755, owned by
    /// `user:admin`, times 0).
    fn default() -> Self {
        let root = Inode {
            ino: Ino::ROOT,
            kind: Kind::Dir {
                entries: BTreeMap::new(),
                parent: Ino::ROOT,
                replicas: None,
            },
            mode: 0o755,
            owner: "user:admin".to_string(),
            atime_ms: 0,
            mtime_ms: 0,
            ctime_ms: 0,
            nlink: 2,
        };
        FsState {
            inodes: BTreeMap::from([(Ino::ROOT, root)]),
            next_ino: Ino::ROOT.0 + 1,
            reserved: BTreeMap::new(),
            links: BTreeMap::new(),
        }
    }
}

impl FsState {
    pub fn get(&self, ino: Ino) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    /// Every inode, in id order.
    pub fn inodes(&self) -> impl Iterator<Item = &Inode> {
        self.inodes.values()
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// The id the next created inode will get.
    pub fn next_ino(&self) -> Ino {
        Ino(self.next_ino)
    }

    /// The directory holding `ino` and its name there; `None` for the root
    /// and for unknown ids.
    pub fn location(&self, ino: Ino) -> Option<(Ino, &str)> {
        self.links
            .get(&ino)
            .map(|link| (link.parent, link.name.as_str()))
    }

    /// The entry `name` of directory `parent`; `None` when either is missing
    /// or `parent` is not a directory.
    pub fn lookup(&self, parent: Ino, name: &str) -> Option<&Inode> {
        let child = self.get(parent)?.entries()?.get(name)?;
        self.get(*child)
    }

    /// The inode at an absolute path, without following symbolic links: a
    /// link in the middle of the path is "not a directory".
    pub fn resolve(&self, path: &str) -> Result<&Inode, FsError> {
        let mut node = self.node(Ino::ROOT)?;
        let mut walked = String::from("/");
        for name in parse_path(path)? {
            let Some(entries) = node.entries() else {
                return Err(FsError::NotDir { path: walked });
            };
            walked = join(&walked, name);
            let Some(child) = entries.get(name) else {
                return Err(FsError::NotFound { path: walked });
            };
            node = self.node(*child)?;
        }
        Ok(node)
    }

    /// The inode at an absolute path, following symbolic links anywhere in
    /// it (the last component too), at most [`MAX_SYMLINK_FOLLOWS`] times.
    /// Targets are read as POSIX does: absolute from the root, relative from
    /// the link's directory, `..` of the root is the root.
    pub fn resolve_follow(&self, path: &str) -> Result<&Inode, FsError> {
        // Names still to walk, the next one last.
        let mut pending: Vec<&str> = parse_path(path)?.into_iter().rev().collect();
        let mut dir = Ino::ROOT;
        let mut found = Ino::ROOT;
        let mut follows = 0;
        while let Some(name) = pending.pop() {
            match name {
                "." => {
                    found = dir;
                    continue;
                }
                ".." => {
                    dir = self.parent_dir(dir)?;
                    found = dir;
                    continue;
                }
                _ => {}
            }
            let child = self.child(dir, name)?;
            match &child.kind {
                Kind::Dir { .. } => {
                    dir = child.ino;
                    found = dir;
                }
                Kind::File { .. } | Kind::Special { .. } if pending.is_empty() => found = child.ino,
                Kind::File { .. } | Kind::Special { .. } => {
                    return Err(FsError::NotDir {
                        path: self.entry_path(dir, name),
                    });
                }
                Kind::Symlink { target } => {
                    follows += 1;
                    if follows > MAX_SYMLINK_FOLLOWS {
                        return Err(FsError::Loop {
                            path: self.entry_path(dir, name),
                        });
                    }
                    if target.starts_with('/') {
                        dir = Ino::ROOT;
                    }
                    found = dir;
                    pending.extend(target.split('/').filter(|c| !c.is_empty()).rev());
                }
            }
        }
        self.node(found)
    }

    /// A directory's entries with their inodes, in name order.
    pub fn list(&self, dir: Ino) -> Result<Vec<(String, &Inode)>, FsError> {
        self.entries(dir)?
            .iter()
            .map(|(name, child)| Ok((name.clone(), self.node(*child)?)))
            .collect()
    }

    /// The absolute path of an inode (`/` for the root); `None` when it does
    /// not exist.
    pub fn path_of(&self, ino: Ino) -> Option<String> {
        self.get(ino)?;
        let mut names = Vec::new();
        let mut at = ino;
        while at != Ino::ROOT {
            let link = self.links.get(&at)?;
            names.push(link.name.as_str());
            at = link.parent;
            // A corrupt snapshot could hold a cycle; never loop forever.
            if names.len() > self.inodes.len() {
                return None;
            }
        }
        names.reverse();
        Some(format!("/{}", names.join("/")))
    }

    /// The replication factor for an inode: that of the nearest directory,
    /// starting with the inode itself, that sets one; [`DEFAULT_REPLICAS`]
    /// when none does (or the inode is unknown).
    pub fn replicas_for(&self, ino: Ino) -> u8 {
        let mut at = match self.get(ino) {
            Some(inode) if inode.is_dir() => ino,
            Some(_) => match self.links.get(&ino) {
                Some(link) => link.parent,
                None => return DEFAULT_REPLICAS,
            },
            None => return DEFAULT_REPLICAS,
        };
        // Bounded, in case a corrupt snapshot holds a cycle.
        for _ in 0..=self.inodes.len() {
            let Some(Kind::Dir {
                parent, replicas, ..
            }) = self.get(at).map(|i| &i.kind)
            else {
                break;
            };
            if let Some(r) = replicas {
                return *r;
            }
            if at == Ino::ROOT {
                break;
            }
            at = *parent;
        }
        DEFAULT_REPLICAS
    }

    /// Every chunk any file lists, with how many times it is listed (a file
    /// listing a chunk twice counts twice). A chunk that is absent here is
    /// garbage once no in-flight write still refers to it.
    pub fn all_chunks(&self) -> BTreeMap<[u8; 32], u32> {
        let mut counts = BTreeMap::new();
        for chunk in self.inodes.values().flat_map(Inode::chunks) {
            *counts.entry(chunk.id).or_insert(0u32) += 1;
        }
        counts
    }

    // ---- helpers shared with `apply` ----

    pub(crate) fn node(&self, ino: Ino) -> Result<&Inode, FsError> {
        self.get(ino).ok_or(FsError::NoInode { ino })
    }

    /// The entries of directory `dir`.
    pub(crate) fn entries(&self, dir: Ino) -> Result<&BTreeMap<String, Ino>, FsError> {
        self.node(dir)?.entries().ok_or_else(|| FsError::NotDir {
            path: self.display(dir),
        })
    }

    /// The inode at `name` in directory `dir`, which must exist.
    pub(crate) fn child(&self, dir: Ino, name: &str) -> Result<&Inode, FsError> {
        match self.entries(dir)?.get(name) {
            Some(child) => self.node(*child),
            None => Err(FsError::NotFound {
                path: self.entry_path(dir, name),
            }),
        }
    }

    fn parent_dir(&self, dir: Ino) -> Result<Ino, FsError> {
        match &self.node(dir)?.kind {
            Kind::Dir { parent, .. } => Ok(*parent),
            _ => Err(FsError::NotDir {
                path: self.display(dir),
            }),
        }
    }

    /// An inode's path for messages, or its id when it has none.
    pub(crate) fn display(&self, ino: Ino) -> String {
        self.path_of(ino).unwrap_or_else(|| ino.to_string())
    }

    /// The path of entry `name` in `dir`, for messages.
    pub(crate) fn entry_path(&self, dir: Ino, name: &str) -> String {
        match self.path_of(dir) {
            Some(path) => join(&path, name),
            None => format!("{name} in {dir}"),
        }
    }
}
