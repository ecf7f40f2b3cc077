//! The inodes the kernel knows, and where each one is in the namespace.
//!
//! A FUSE inode number is the WebFS object id (`ino`), which survives
//! renames, so the table only has to remember each object's parent and
//! name: a path is built by walking up to the root, and renaming a
//! directory moves its whole subtree by changing one row. WebFS has no hard
//! links, so every object has exactly one name.

use std::collections::HashMap;

use wos_api::FsEntry;

pub(crate) const ROOT: u64 = 1;

/// Deeper than any valid path (4096 bytes, at least 2 per level): a longer
/// walk means a cycle, which only a bug could make.
const MAX_DEPTH: usize = 2049;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    pub fn of(e: &FsEntry) -> Kind {
        match e.kind.as_str() {
            "dir" => Kind::Dir,
            "symlink" => Kind::Symlink,
            "fifo" => Kind::Fifo,
            "socket" => Kind::Socket,
            "char" => Kind::CharDevice,
            "block" => Kind::BlockDevice,
            // "file", and kinds a newer cell may add: shown as files, which
            // reading then refuses with the cell's own message.
            _ => Kind::File,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Node {
    pub parent: u64,
    pub name: String,
    /// The latest attributes seen.
    pub entry: FsEntry,
    /// Replies that handed this inode to the kernel, minus its forgets.
    lookups: u64,
    /// Removed (or replaced by a rename) through this mount while the
    /// kernel still holds it: it has no path any more.
    pub unlinked: bool,
}

impl Node {
    pub fn kind(&self) -> Kind {
        Kind::of(&self.entry)
    }

    /// No name leads to it any more; `fstat` on a handle still open shows
    /// a link count of 0, as for a removed file on a local disk.
    fn mark_unlinked(&mut self) {
        self.unlinked = true;
        self.entry.nlink = 0;
    }
}

/// Why an inode has no path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoPath {
    /// Never seen, or forgotten: the kernel should not ask (ESTALE).
    Unknown,
    /// Removed (ENOENT).
    Unlinked,
}

#[derive(Debug)]
pub(crate) struct Nodes {
    map: HashMap<u64, Node>,
    by_name: HashMap<(u64, String), u64>,
}

impl Nodes {
    pub fn new(root: FsEntry) -> Nodes {
        let mut map = HashMap::new();
        map.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: String::new(),
                entry: root,
                lookups: 1,
                unlinked: false,
            },
        );
        Nodes {
            map,
            by_name: HashMap::new(),
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.map.get(&ino)
    }

    /// The child called `name` of `parent`, if this mount knows it.
    pub fn child(&self, parent: u64, name: &str) -> Option<&Node> {
        let ino = self.by_name.get(&(parent, name.to_string()))?;
        self.map.get(ino)
    }

    /// The absolute path of `ino`.
    pub fn path(&self, ino: u64) -> Result<String, NoPath> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT {
            let node = self.map.get(&at).ok_or(NoPath::Unknown)?;
            if node.unlinked {
                return Err(NoPath::Unlinked);
            }
            names.push(node.name.as_str());
            at = node.parent;
            if names.len() > MAX_DEPTH {
                return Err(NoPath::Unknown);
            }
        }
        names.reverse();
        Ok(format!("/{}", names.join("/")))
    }

    /// Records `entry` as the child of `parent`; `handed_out` when the reply
    /// gives the inode to the kernel (lookup, create, mkdir, symlink).
    pub fn learn(&mut self, parent: u64, entry: &FsEntry, handed_out: bool) {
        let ino = entry.ino;
        let key = (parent, entry.name.clone());
        // Whatever had this name before was replaced (elsewhere, or by a
        // rename here): it keeps its inode for the kernel but has no path.
        if let Some(old) = self.by_name.get(&key).copied()
            && old != ino
            && let Some(n) = self.map.get_mut(&old)
        {
            n.mark_unlinked();
        }
        let lookups = u64::from(handed_out);
        match self.map.get_mut(&ino) {
            Some(node) => {
                if (node.parent, node.name.as_str()) != (parent, entry.name.as_str()) {
                    // Moved (by another client) since we last saw it.
                    let was = (node.parent, node.name.clone());
                    if self.by_name.get(&was) == Some(&ino) {
                        self.by_name.remove(&was);
                    }
                    node.parent = parent;
                    node.name = entry.name.clone();
                }
                node.entry = entry.clone();
                node.lookups += lookups;
                node.unlinked = false;
            }
            None => {
                self.map.insert(
                    ino,
                    Node {
                        parent,
                        name: entry.name.clone(),
                        entry: entry.clone(),
                        lookups,
                        unlinked: false,
                    },
                );
            }
        }
        self.by_name.insert(key, ino);
    }

    /// Newer attributes of a known inode.
    pub fn refresh(&mut self, entry: &FsEntry) {
        if let Some(node) = self.map.get_mut(&entry.ino) {
            node.entry = entry.clone();
        }
    }

    /// The child `name` of `parent` was removed; returns its inode.
    pub fn unlink(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = self.by_name.remove(&(parent, name.to_string()))?;
        if let Some(node) = self.map.get_mut(&ino) {
            node.mark_unlinked();
        }
        Some(ino)
    }

    /// `parent/name` became `new_parent/new_name` (replacing what was there).
    pub fn rename(&mut self, parent: u64, name: &str, new_parent: u64, moved: &FsEntry) {
        self.by_name.remove(&(parent, name.to_string()));
        self.learn(new_parent, moved, false);
    }

    /// The kernel dropped `n` references; an inode nobody holds is removed
    /// (its children went before it: a child's dentry pins its parent).
    pub fn forget(&mut self, ino: u64, n: u64) -> bool {
        if ino == ROOT {
            return false;
        }
        let Some(node) = self.map.get_mut(&ino) else {
            return false;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups > 0 {
            return false;
        }
        let key = (node.parent, node.name.clone());
        if self.by_name.get(&key) == Some(&ino) {
            self.by_name.remove(&key);
        }
        self.map.remove(&ino);
        true
    }
}

/// An entry for unit tests: `name` with id `ino` and kind `kind`.
#[cfg(test)]
pub(crate) fn test_entry(ino: u64, name: &str, kind: &str) -> FsEntry {
    FsEntry {
        name: name.into(),
        path: String::new(),
        ino,
        kind: kind.into(),
        size: 0,
        version: 0,
        mode: 0o755,
        owner: "user:admin".into(),
        mtime_ms: 0,
        ctime_ms: 0,
        atime_ms: 0,
        nlink: 1,
        rdev: 0,
        target: None,
        chunks: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64, name: &str, kind: &str) -> FsEntry {
        test_entry(ino, name, kind)
    }

    fn table() -> Nodes {
        let mut t = Nodes::new(entry(ROOT, "", "dir"));
        t.learn(ROOT, &entry(2, "a", "dir"), true);
        t.learn(2, &entry(3, "b", "dir"), true);
        t.learn(3, &entry(4, "f", "file"), true);
        t
    }

    #[test]
    fn paths_follow_parents() {
        let t = table();
        assert_eq!(t.path(ROOT).unwrap(), "/");
        assert_eq!(t.path(4).unwrap(), "/a/b/f");
        assert_eq!(t.path(99), Err(NoPath::Unknown));
        assert_eq!(t.child(3, "f").map(|n| n.entry.ino), Some(4));
    }

    #[test]
    fn renaming_a_directory_moves_its_subtree() {
        let mut t = table();
        t.learn(ROOT, &entry(5, "z", "dir"), true);
        t.rename(2, "b", 5, &entry(3, "c", "dir"));
        assert_eq!(t.path(4).unwrap(), "/z/c/f");
        assert!(t.child(2, "b").is_none());
    }

    #[test]
    fn a_replaced_or_removed_object_has_no_path() {
        let mut t = table();
        t.learn(3, &entry(6, "g", "file"), true);
        // g renamed over f: f's inode is gone from the namespace.
        t.rename(3, "g", 3, &entry(6, "f", "file"));
        assert_eq!(t.path(4), Err(NoPath::Unlinked));
        assert_eq!(t.path(6).unwrap(), "/a/b/f");
        assert_eq!(t.get(4).map(|n| n.entry.nlink), Some(0));
        assert_eq!(t.unlink(3, "f"), Some(6));
        assert_eq!(t.path(6), Err(NoPath::Unlinked));
        assert_eq!(t.get(6).map(|n| n.entry.nlink), Some(0));
    }

    #[test]
    fn forgotten_inodes_leave_the_table() {
        let mut t = table();
        t.learn(3, &entry(4, "f", "file"), true);
        assert!(!t.forget(4, 1));
        assert!(t.forget(4, 1));
        assert_eq!(t.path(4), Err(NoPath::Unknown));
        assert!(t.child(3, "f").is_none());
        assert!(!t.forget(ROOT, 1));
    }

    #[test]
    fn an_object_moved_elsewhere_is_found_at_its_new_name() {
        let mut t = table();
        t.learn(ROOT, &entry(4, "top", "file"), true);
        assert_eq!(t.path(4).unwrap(), "/top");
        assert!(t.child(3, "f").is_none());
    }
}
