//! Random op sequences with the namespace's invariants checked after every
//! op.
//!
//! Ops are generated as templates whose inode and name arguments are
//! *picks*, bound to the state just before the op is applied: mostly an
//! existing inode of the kind the op wants (a directory for a parent, a file
//! for a commit), sometimes any inode or one that does not exist, and names
//! from a four-letter alphabet or from the directory's entries. Purely random
//! ids and names would make almost every op fail on a missing inode.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use wos_fsmeta::{ChunkRef, FsOp, FsState, Ino, Inode, Kind, SpecialKind};

const NAMES: &[&str] = &["a", "b", "c", "d"];

/// Which inode an argument gets: `roll` 0 is a missing id, 1 any inode,
/// otherwise one of the kind the argument wants (if there is one).
#[derive(Clone, Copy, Debug)]
struct Pick {
    roll: u8,
    index: usize,
}

/// Which name an argument gets: an entry of its directory when `existing`
/// (and the directory has one), else a name from [`NAMES`].
#[derive(Clone, Copy, Debug)]
struct NamePick {
    existing: bool,
    index: usize,
}

/// The kinds of inode an argument prefers.
#[derive(Clone, Copy)]
enum Want {
    Dir,
    File,
    Any,
}

/// An op whose `Ino` fields and (for removals and renames) names are placeholders.
#[derive(Clone, Debug)]
struct Step {
    op: FsOp,
    first: Pick,
    second: Pick,
    from_name: NamePick,
}

fn pick() -> impl Strategy<Value = Pick> {
    (0u8..12, any::<usize>()).prop_map(|(roll, index)| Pick { roll, index })
}

fn name_pick() -> impl Strategy<Value = NamePick> {
    (prop::bool::weighted(0.8), any::<usize>())
        .prop_map(|(existing, index)| NamePick { existing, index })
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_string)
}

fn mode() -> impl Strategy<Value = u32> {
    prop_oneof![8 => Just(0o755u32), 8 => Just(0o644), 1 => Just(0o10000)]
}

fn owner() -> impl Strategy<Value = String> {
    prop_oneof![8 => Just("user:alice"), 8 => Just("user:bob"), 1 => Just("")]
        .prop_map(str::to_string)
}

fn special() -> impl Strategy<Value = SpecialKind> {
    prop::sample::select(
        &[
            SpecialKind::Fifo,
            SpecialKind::Socket,
            SpecialKind::CharDevice,
            SpecialKind::BlockDevice,
        ][..],
    )
}

/// A chunk's length follows from its id, as for real content hashes.
fn chunk() -> impl Strategy<Value = ChunkRef> {
    (0u8..5).prop_map(|n| ChunkRef {
        id: [n; 32],
        len: u32::from(n) * 10 + 1,
    })
}

/// The op templates; `Ino(0)` and `""` are placeholders that [`bind`] fills.
fn op() -> impl Strategy<Value = FsOp> {
    let now = 0u64..1_000;
    let none = Ino(0);
    prop_oneof![
        3 => (name(), mode(), owner(), now.clone()).prop_map(move |(name, mode, owner, now_ms)| {
            FsOp::Mkdir { parent: none, name, mode, owner, now_ms }
        }),
        3 => (name(), mode(), owner(), now.clone(), any::<bool>()).prop_map(
            move |(name, mode, owner, now_ms, exclusive)| FsOp::Create {
                parent: none, name, mode, owner, now_ms, exclusive
            }
        ),
        1 => (name(), prop::sample::select(&["/a", "b", "..", ""][..]), now.clone())
            .prop_map(move |(name, target, now_ms)| FsOp::Symlink {
                parent: none, name, target: target.into(), owner: "user:alice".into(), now_ms
            }),
        1 => (name(), special(), prop_oneof![4 => Just(0u64), 1 => Just(0x0801)], mode(),
              now.clone())
            .prop_map(move |(name, kind, rdev, mode, now_ms)| FsOp::Mknod {
                parent: none, name, kind, rdev, mode, owner: "user:alice".into(), now_ms
            }),
        4 => (prop::option::of(0u64..3), prop::collection::vec(chunk(), 0..4),
              prop::bool::weighted(0.1), now.clone())
            .prop_map(move |(if_version, chunks, wrong_size, now_ms)| {
                let sum: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
                let size = sum + u64::from(wrong_size);
                FsOp::Commit { ino: none, if_version, size, chunks, now_ms }
            }),
        1 => (prop_oneof![4 => Just(0u64), 1 => Just(5)], now.clone())
            .prop_map(move |(size, now_ms)| FsOp::Truncate { ino: none, size, now_ms }),
        5 => (name(), now.clone()).prop_map(move |(to_name, now_ms)| FsOp::Rename {
            from_parent: none, from_name: String::new(), to_parent: none, to_name, now_ms
        }),
        2 => now.clone().prop_map(move |now_ms| FsOp::Unlink {
            parent: none, name: String::new(), now_ms
        }),
        2 => now.clone().prop_map(move |now_ms| FsOp::Rmdir {
            parent: none, name: String::new(), now_ms
        }),
        1 => (prop::option::of(mode()), prop::option::of(owner()),
              prop::option::of(now.clone()), prop::option::of(now.clone()), now.clone())
            .prop_map(move |(mode, owner, atime_ms, mtime_ms, now_ms)| FsOp::SetAttr {
                ino: none, mode, owner, atime_ms, mtime_ms, now_ms
            }),
        1 => (prop::option::of(0u8..4), now).prop_map(move |(replicas, now_ms)| {
            FsOp::SetReplicas { ino: none, replicas, now_ms }
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (op(), pick(), pick(), name_pick()).prop_map(|(op, first, second, from_name)| Step {
        op,
        first,
        second,
        from_name,
    })
}

fn choose(state: &FsState, pick: Pick, want: Want) -> Ino {
    let fits = |i: &&Inode| match want {
        Want::Dir => i.is_dir(),
        Want::File => matches!(i.kind, Kind::File { .. }),
        Want::Any => true,
    };
    let all: Vec<Ino> = state.inodes().map(|i| i.ino).collect();
    let wanted: Vec<Ino> = state.inodes().filter(fits).map(|i| i.ino).collect();
    match pick.roll {
        0 => Ino(state.next_ino().0 + 7),
        1 => all[pick.index % all.len()],
        _ if wanted.is_empty() => all[pick.index % all.len()],
        _ => wanted[pick.index % wanted.len()],
    }
}

fn choose_name(state: &FsState, dir: Ino, pick: NamePick) -> String {
    let entries: Vec<&String> = state
        .get(dir)
        .and_then(|d| d.entries())
        .map(|e| e.keys().collect())
        .unwrap_or_default();
    if pick.existing && !entries.is_empty() {
        entries[pick.index % entries.len()].clone()
    } else {
        NAMES[pick.index % NAMES.len()].to_string()
    }
}

/// The op of `step`, with its placeholders filled from `state`.
fn bind(state: &FsState, step: &Step) -> FsOp {
    let mut op = step.op.clone();
    let first = |want| choose(state, step.first, want);
    match &mut op {
        FsOp::Mkdir { parent, .. }
        | FsOp::Create { parent, .. }
        | FsOp::Symlink { parent, .. }
        | FsOp::Mknod { parent, .. }
        | FsOp::CreateAs { parent, .. } => *parent = first(Want::Dir),
        FsOp::Commit { ino, .. } | FsOp::Truncate { ino, .. } => *ino = first(Want::File),
        FsOp::SetAttr { ino, .. } => *ino = first(Want::Any),
        FsOp::SetReplicas { ino, .. } => *ino = first(Want::Dir),
        FsOp::Unlink { parent, name, .. } | FsOp::Rmdir { parent, name, .. } => {
            *parent = first(Want::Dir);
            *name = choose_name(state, *parent, step.from_name);
        }
        FsOp::Rename {
            from_parent,
            from_name,
            to_parent,
            ..
        } => {
            *from_parent = first(Want::Dir);
            *from_name = choose_name(state, *from_parent, step.from_name);
            *to_parent = choose(state, step.second, Want::Dir);
        }
    }
    op
}

fn encode(state: &FsState) -> Vec<u8> {
    postcard::to_stdvec(state).expect("encode")
}

/// The invariants, computed from the public view only (independently of
/// `FsState::fsck`, which is checked as well).
fn check_invariants(state: &FsState) -> Result<(), TestCaseError> {
    let mut named: BTreeMap<Ino, usize> = BTreeMap::new();
    for inode in state.inodes() {
        let Kind::Dir {
            entries, parent, ..
        } = &inode.kind
        else {
            prop_assert_eq!(inode.nlink, 1, "{}", inode.ino);
            continue;
        };
        if inode.ino == Ino::ROOT {
            prop_assert_eq!(*parent, Ino::ROOT);
        }
        let mut subdirs = 0;
        for (name, child) in entries {
            let child = state.get(*child);
            prop_assert!(child.is_some(), "{} in {} points nowhere", name, inode.ino);
            let child = child.unwrap();
            *named.entry(child.ino).or_default() += 1;
            if let Kind::Dir { parent, .. } = child.kind {
                prop_assert_eq!(parent, inode.ino, "parent of {}", child.ino);
                subdirs += 1;
            }
        }
        prop_assert_eq!(inode.nlink, 2 + subdirs, "nlink of {}", inode.ino);
    }
    for inode in state.inodes() {
        let want = usize::from(inode.ino != Ino::ROOT);
        let count = named.get(&inode.ino).copied().unwrap_or(0);
        prop_assert_eq!(count, want, "{} is named {} times", inode.ino, count);
        // Reachable from the root: its path leads back to it.
        let path = state.path_of(inode.ino);
        prop_assert!(path.is_some(), "{} has no path", inode.ino);
        let found = state.resolve(path.as_deref().unwrap()).map(|i| i.ino);
        prop_assert_eq!(found, Ok(inode.ino));
        if let Kind::File { size, chunks, .. } = &inode.kind {
            prop_assert_eq!(*size, chunks.iter().map(|c| u64::from(c.len)).sum::<u64>());
        }
        prop_assert!(inode.ino < state.next_ino());
    }
    let mut counts: BTreeMap<[u8; 32], u32> = BTreeMap::new();
    for chunk in state.inodes().flat_map(|i| i.chunks()) {
        *counts.entry(chunk.id).or_default() += 1;
    }
    prop_assert_eq!(state.all_chunks(), counts);
    prop_assert_eq!(state.fsck(), Vec::<String>::new());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_ops_keep_the_invariants(steps in prop::collection::vec(step(), 1..100)) {
        let mut state = FsState::default();
        let mut used_ids = BTreeSet::new();
        for step in &steps {
            let op = bind(&state, step);
            let before = state.clone();
            let bytes = encode(&state);
            match state.apply(&op) {
                Ok(reply) => {
                    if state.next_ino() != before.next_ino() {
                        prop_assert!(used_ids.insert(reply.inode.ino), "{:?} reused an id", op);
                    }
                    // Released chunks were listed before the op (by the
                    // op's file or the one it replaced).
                    let old = before.all_chunks();
                    for c in &reply.released {
                        prop_assert!(old.contains_key(&c.id), "{:?} released {:?}", op, c);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(&encode(&state), &bytes, "{:?} refused ({}) but changed", op, e);
                    prop_assert_eq!(&state, &before);
                }
            }
            check_invariants(&state)?;
        }
        // What Raft would ship in a snapshot decodes to the same namespace.
        let back: FsState = postcard::from_bytes(&encode(&state)).expect("decode");
        prop_assert_eq!(back, state);
    }

    /// Two replicas fed the same log agree on every reply and on the bytes
    /// of their snapshots (no hash-ordered iteration, no hidden inputs).
    #[test]
    fn replicas_apply_the_same_log_to_the_same_state(steps in prop::collection::vec(step(), 1..60)) {
        let (mut one, mut two) = (FsState::default(), FsState::default());
        for step in &steps {
            let op = bind(&one, step);
            prop_assert_eq!(one.apply(&op), two.apply(&op));
        }
        prop_assert_eq!(encode(&one), encode(&two));
    }
}
