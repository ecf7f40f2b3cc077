//! Consistency check of a namespace: for `wos fsck`, for a snapshot just
//! loaded, and for tests.

use std::collections::{BTreeMap, VecDeque};

use crate::model::{Ino, Kind, MODE_MASK};
use crate::path::check_name;
use crate::state::{FsState, links_of};

impl FsState {
    /// Every broken invariant, as one sentence each; empty when the
    /// namespace is consistent. States built by [`FsState::apply`] are; a
    /// damaged snapshot may not be.
    pub fn fsck(&self) -> Vec<String> {
        let mut problems = Vec::new();
        self.check_root(&mut problems);
        self.check_inodes(&mut problems);
        self.check_entries(&mut problems);
        self.check_reachable(&mut problems);
        self.check_chunk_lengths(&mut problems);
        if self.links != links_of(&self.inodes) {
            problems.push("the link index does not match the directory entries".into());
        }
        problems
    }

    fn check_root(&self, problems: &mut Vec<String>) {
        match self.get(Ino::ROOT).map(|root| &root.kind) {
            Some(Kind::Dir { parent, .. }) if *parent == Ino::ROOT => {}
            Some(Kind::Dir { parent, .. }) => {
                problems.push(format!("the root's parent is {parent}, not itself"))
            }
            Some(_) => problems.push("the root is not a directory".into()),
            None => problems.push("there is no root directory".into()),
        }
    }

    /// Each inode on its own: id, mode, nlink, size, device number.
    fn check_inodes(&self, problems: &mut Vec<String>) {
        for (key, inode) in &self.inodes {
            let ino = inode.ino;
            if *key != ino {
                problems.push(format!("{ino} is stored under {key}"));
            }
            if ino.0 == 0 || ino.0 >= self.next_ino {
                problems.push(format!("{ino} is outside the ids handed out so far"));
            }
            if inode.mode & !MODE_MASK != 0 {
                problems.push(format!("{ino} has mode {:#o}", inode.mode));
            }
            let nlink = match &inode.kind {
                Kind::Dir { entries, .. } => {
                    let subdirs = entries
                        .values()
                        .filter(|c| self.get(**c).is_some_and(|c| c.is_dir()))
                        .count();
                    2 + subdirs as u64
                }
                _ => 1,
            };
            if u64::from(inode.nlink) != nlink {
                problems.push(format!("{ino} has nlink {}, not {nlink}", inode.nlink));
            }
            if let Kind::Special { kind, rdev } = &inode.kind
                && *rdev != 0
                && !kind.has_rdev()
            {
                problems.push(format!(
                    "{ino} is a {} with device number {rdev}",
                    kind.describe()
                ));
            }
            if let Kind::File { size, chunks, .. } = &inode.kind {
                let sum: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
                if *size != sum {
                    problems.push(format!("{ino} has size {size} but chunks of {sum} bytes"));
                }
            }
        }
    }

    /// Directory entries: valid names, existing children, each non-root
    /// inode named exactly once, directories' parent pointers.
    fn check_entries(&self, problems: &mut Vec<String>) {
        let mut named: BTreeMap<Ino, usize> = BTreeMap::new();
        for dir in self.inodes.values() {
            for (name, child) in dir.entries().into_iter().flatten() {
                if let Err(e) = check_name(name) {
                    problems.push(format!("{} has an entry with a bad name: {e}", dir.ino));
                }
                *named.entry(*child).or_default() += 1;
                match self.get(*child).map(|c| &c.kind) {
                    None => problems.push(format!(
                        "entry {name:?} of {} points to missing {child}",
                        dir.ino
                    )),
                    Some(Kind::Dir { parent, .. }) if *parent != dir.ino => problems.push(format!(
                        "{child} is in {} but its parent is {parent}",
                        dir.ino
                    )),
                    Some(_) => {}
                }
            }
        }
        for ino in self.inodes.keys() {
            let count = named.get(ino).copied().unwrap_or(0);
            let want = usize::from(*ino != Ino::ROOT);
            if count != want {
                problems.push(format!("{ino} is named by {count} entries, not {want}"));
            }
        }
    }

    /// Every inode can be reached from the root (no detached cycles).
    fn check_reachable(&self, problems: &mut Vec<String>) {
        let mut seen = std::collections::BTreeSet::from([Ino::ROOT]);
        let mut queue = VecDeque::from([Ino::ROOT]);
        while let Some(ino) = queue.pop_front() {
            let children = self.get(ino).and_then(|i| i.entries());
            for child in children.into_iter().flat_map(|e| e.values()) {
                if seen.insert(*child) {
                    queue.push_back(*child);
                }
            }
        }
        for ino in self.inodes.keys().filter(|ino| !seen.contains(ino)) {
            problems.push(format!("{ino} cannot be reached from the root"));
        }
    }

    /// A chunk id names content, so it has one length wherever it is listed.
    fn check_chunk_lengths(&self, problems: &mut Vec<String>) {
        let mut lengths: BTreeMap<[u8; 32], u32> = BTreeMap::new();
        for inode in self.inodes.values() {
            for chunk in inode.chunks() {
                if chunk.len == 0 {
                    problems.push(format!("{} lists an empty chunk", inode.ino));
                }
                let len = *lengths.entry(chunk.id).or_insert(chunk.len);
                if len != chunk.len {
                    problems.push(format!(
                        "{} lists {chunk:?}, listed elsewhere with length {len}",
                        inode.ino
                    ));
                }
            }
        }
    }
}
