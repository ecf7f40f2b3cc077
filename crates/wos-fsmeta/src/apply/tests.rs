use super::*;
use std::collections::BTreeMap;

use crate::error::Errno;
use crate::model::DEFAULT_REPLICAS;

const T0: u64 = 1_000;
const T1: u64 = 2_000;

fn encode(state: &FsState) -> Vec<u8> {
    postcard::to_stdvec(state).expect("encode")
}

fn ok(state: &mut FsState, op: FsOp) -> FsReply {
    match state.apply(&op) {
        Ok(reply) => {
            assert!(state.fsck().is_empty(), "{op:?}: {:?}", state.fsck());
            reply
        }
        Err(e) => panic!("{op:?} refused: {e}"),
    }
}

/// Applies an op that must be refused, and checks that it changed nothing,
/// down to the snapshot bytes and the derived index.
fn refused(state: &mut FsState, op: FsOp) -> FsError {
    let before = state.clone();
    let bytes = encode(state);
    let err = state.apply(&op).expect_err("op should be refused");
    assert_eq!(encode(state), bytes, "{op:?} changed the encoding");
    assert_eq!(*state, before, "{op:?} changed the state");
    err
}

fn mkdir_op(parent: Ino, name: &str) -> FsOp {
    FsOp::Mkdir {
        parent,
        name: name.into(),
        mode: 0o755,
        owner: "user:alice".into(),
        now_ms: T0,
    }
}

fn create_op(parent: Ino, name: &str, exclusive: bool) -> FsOp {
    FsOp::Create {
        parent,
        name: name.into(),
        mode: 0o644,
        owner: "user:alice".into(),
        now_ms: T0,
        exclusive,
    }
}

fn mkdir(state: &mut FsState, parent: Ino, name: &str) -> Ino {
    ok(state, mkdir_op(parent, name)).inode.ino
}

fn create(state: &mut FsState, parent: Ino, name: &str) -> Ino {
    ok(state, create_op(parent, name, true)).inode.ino
}

fn symlink(state: &mut FsState, parent: Ino, name: &str, target: &str) -> Ino {
    let op = FsOp::Symlink {
        parent,
        name: name.into(),
        target: target.into(),
        owner: "user:alice".into(),
        now_ms: T0,
    };
    ok(state, op).inode.ino
}

fn chunk(n: u8, len: u32) -> ChunkRef {
    ChunkRef { id: [n; 32], len }
}

fn commit_op(ino: Ino, if_version: Option<u64>, chunks: &[ChunkRef]) -> FsOp {
    FsOp::Commit {
        ino,
        if_version,
        size: chunks.iter().map(|c| u64::from(c.len)).sum(),
        chunks: chunks.to_vec(),
        now_ms: T1,
    }
}

fn commit(state: &mut FsState, ino: Ino, chunks: &[ChunkRef]) -> FsReply {
    ok(state, commit_op(ino, None, chunks))
}

fn rename_op(from_parent: Ino, from: &str, to_parent: Ino, to: &str) -> FsOp {
    FsOp::Rename {
        from_parent,
        from_name: from.into(),
        to_parent,
        to_name: to.into(),
        now_ms: T1,
    }
}

fn unlink_op(parent: Ino, name: &str) -> FsOp {
    FsOp::Unlink {
        parent,
        name: name.into(),
        now_ms: T1,
    }
}

fn rmdir_op(parent: Ino, name: &str) -> FsOp {
    FsOp::Rmdir {
        parent,
        name: name.into(),
        now_ms: T1,
    }
}

fn inode(state: &FsState, ino: Ino) -> &Inode {
    state.get(ino).expect("inode exists")
}

fn version(state: &FsState, ino: Ino) -> u64 {
    match inode(state, ino).kind {
        Kind::File { version, .. } => version,
        _ => panic!("{ino} is not a file"),
    }
}

// ---- the initial state ----

#[test]
fn default_is_a_root_directory() {
    let state = FsState::default();
    let root = inode(&state, Ino::ROOT);
    assert_eq!(root.mode, 0o755);
    assert_eq!(root.owner, "user:admin");
    assert_eq!(root.nlink, 2);
    assert!(matches!(
        root.kind,
        Kind::Dir {
            parent: Ino::ROOT,
            ..
        }
    ));
    assert_eq!(state.next_ino(), Ino(2));
    assert_eq!(state.path_of(Ino::ROOT).as_deref(), Some("/"));
    assert!(state.fsck().is_empty());
}

// ---- Mkdir ----

#[test]
fn mkdir_creates_an_empty_directory() {
    let mut s = FsState::default();
    let reply = ok(&mut s, mkdir_op(Ino::ROOT, "home"));
    let home = reply.inode;
    assert_eq!(home.ino, Ino(2));
    assert_eq!(home.nlink, 2);
    assert_eq!((home.mtime_ms, home.ctime_ms), (T0, T0));
    assert_eq!(home.owner, "user:alice");
    assert!(reply.released.is_empty());
    let root = inode(&s, Ino::ROOT);
    assert_eq!(root.nlink, 3);
    assert_eq!((root.mtime_ms, root.ctime_ms), (T0, T0));
    assert_eq!(s.path_of(home.ino).as_deref(), Some("/home"));
    assert_eq!(s.next_ino(), Ino(3));
}

#[test]
fn mkdir_refusals_change_nothing() {
    let mut s = FsState::default();
    let home = mkdir(&mut s, Ino::ROOT, "home");
    let file = create(&mut s, home, "f");

    let e = refused(&mut s, mkdir_op(Ino::ROOT, "home"));
    assert_eq!(e.errno(), Errno::Exist);
    assert!(e.to_string().contains("/home"), "{e}");
    assert_eq!(
        refused(&mut s, mkdir_op(Ino::ROOT, "a/b")).errno(),
        Errno::Inval
    );
    assert_eq!(
        refused(&mut s, mkdir_op(Ino::ROOT, "..")).errno(),
        Errno::Inval
    );
    assert_eq!(
        refused(&mut s, mkdir_op(Ino::ROOT, "")).errno(),
        Errno::Inval
    );
    let long = "n".repeat(256);
    assert_eq!(
        refused(&mut s, mkdir_op(Ino::ROOT, &long)).errno(),
        Errno::NameTooLong
    );
    assert_eq!(
        refused(&mut s, mkdir_op(Ino(99), "x")).errno(),
        Errno::NoEnt
    );
    let e = refused(&mut s, mkdir_op(file, "x"));
    assert_eq!(e.errno(), Errno::NotDir);
    assert!(e.to_string().contains("/home/f"), "{e}");

    let mut bad_mode = mkdir_op(home, "x");
    if let FsOp::Mkdir { mode, .. } = &mut bad_mode {
        *mode = 0o40755;
    }
    assert_eq!(refused(&mut s, bad_mode).errno(), Errno::Inval);
    let mut bad_owner = mkdir_op(home, "x");
    if let FsOp::Mkdir { owner, .. } = &mut bad_owner {
        owner.clear();
    }
    assert_eq!(refused(&mut s, bad_owner).errno(), Errno::Inval);
}

// ---- Create ----

#[test]
fn create_makes_an_empty_file_at_version_0() {
    let mut s = FsState::default();
    let f = ok(&mut s, create_op(Ino::ROOT, "f", true)).inode;
    assert_eq!(f.nlink, 1);
    assert_eq!(f.mode, 0o644);
    assert_eq!(
        f.kind,
        Kind::File {
            version: 0,
            size: 0,
            chunks: vec![]
        }
    );
    // A file is not a subdirectory.
    assert_eq!(inode(&s, Ino::ROOT).nlink, 2);
}

#[test]
fn create_non_exclusive_returns_the_existing_file_unchanged() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    commit(&mut s, f, &[chunk(1, 10)]);
    let bytes = encode(&s);
    let mut later = create_op(Ino::ROOT, "f", false);
    if let FsOp::Create { now_ms, .. } = &mut later {
        *now_ms = T1 + 1;
    }
    let reply = ok(&mut s, later);
    assert_eq!(reply.inode, *inode(&s, f));
    assert_eq!(
        encode(&s),
        bytes,
        "opening an existing file changes nothing"
    );
}

#[test]
fn create_refusals_change_nothing() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    create(&mut s, Ino::ROOT, "f");
    symlink(&mut s, Ino::ROOT, "l", "/f");
    let file = create(&mut s, d, "g");

    let e = refused(&mut s, create_op(Ino::ROOT, "f", true));
    assert_eq!(e.errno(), Errno::Exist);
    assert_eq!(e.to_string(), "/f: already exists");
    assert_eq!(
        refused(&mut s, create_op(Ino::ROOT, "d", false)).errno(),
        Errno::IsDir
    );
    assert_eq!(
        refused(&mut s, create_op(Ino::ROOT, "d", true)).errno(),
        Errno::Exist
    );
    assert_eq!(
        refused(&mut s, create_op(Ino::ROOT, "l", false)).errno(),
        Errno::Exist
    );
    assert_eq!(
        refused(&mut s, create_op(file, "x", false)).errno(),
        Errno::NotDir
    );
    assert_eq!(
        refused(&mut s, create_op(Ino(77), "x", false)).errno(),
        Errno::NoEnt
    );
    assert_eq!(
        refused(&mut s, create_op(d, "x\0", false)).errno(),
        Errno::Inval
    );
}

// ---- Symlink ----

#[test]
fn symlink_holds_its_target() {
    let mut s = FsState::default();
    let l = symlink(&mut s, Ino::ROOT, "l", "../x/y");
    let link = inode(&s, l);
    assert_eq!(link.mode, 0o777);
    assert_eq!(link.size(), 6);
    assert_eq!(
        link.kind,
        Kind::Symlink {
            target: "../x/y".into()
        }
    );
}

#[test]
fn symlink_refusals_change_nothing() {
    let mut s = FsState::default();
    create(&mut s, Ino::ROOT, "f");
    let op = |name: &str, target: &str| FsOp::Symlink {
        parent: Ino::ROOT,
        name: name.into(),
        target: target.into(),
        owner: "user:alice".into(),
        now_ms: T0,
    };
    assert_eq!(refused(&mut s, op("f", "/x")).errno(), Errno::Exist);
    assert_eq!(refused(&mut s, op("l", "")).errno(), Errno::Inval);
    assert_eq!(refused(&mut s, op("l", "a\0b")).errno(), Errno::Inval);
    assert_eq!(
        refused(&mut s, op("l", &"t".repeat(4097))).errno(),
        Errno::Inval
    );
}

// ---- Mknod ----

fn mknod_op(parent: Ino, name: &str, kind: SpecialKind, rdev: u64) -> FsOp {
    FsOp::Mknod {
        parent,
        name: name.into(),
        kind,
        rdev,
        mode: 0o640,
        owner: "user:alice".into(),
        now_ms: T1,
    }
}

#[test]
fn mknod_makes_a_special_file_with_times_and_a_device_number() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    let kinds = [
        ("fifo", SpecialKind::Fifo, 0),
        ("sock", SpecialKind::Socket, 0),
        ("tty", SpecialKind::CharDevice, 0x0504),
        ("disk", SpecialKind::BlockDevice, 0x0801),
    ];
    for (name, kind, rdev) in kinds {
        let node = ok(&mut s, mknod_op(d, name, kind, rdev)).inode;
        assert_eq!(node.kind, Kind::Special { kind, rdev });
        assert_eq!((node.mode, node.nlink, node.size()), (0o640, 1, 0));
        assert_eq!((node.atime_ms, node.mtime_ms, node.ctime_ms), (T1, T1, T1));
        assert_eq!(s.lookup(d, name).map(|i| i.ino), Some(node.ino));
        // The last component of a path may be one; resolution stops there.
        assert_eq!(
            s.resolve_follow(&format!("/d/{name}")).unwrap().ino,
            node.ino
        );
    }
    // A new entry changes its directory; a special file is no directory.
    let dir = inode(&s, d);
    assert_eq!((dir.mtime_ms, dir.ctime_ms, dir.nlink), (T1, T1, 2));
    assert_eq!(
        s.resolve_follow("/d/fifo/x").unwrap_err().errno(),
        Errno::NotDir
    );
}

#[test]
fn special_files_have_no_content_and_go_like_files() {
    let mut s = FsState::default();
    let f = ok(&mut s, mknod_op(Ino::ROOT, "p", SpecialKind::Fifo, 0))
        .inode
        .ino;
    let e = refused(&mut s, commit_op(f, None, &[chunk(1, 3)]));
    assert_eq!(e.errno(), Errno::Inval);
    assert!(e.to_string().contains("is a fifo (a special file)"), "{e}");
    let truncate = FsOp::Truncate {
        ino: f,
        size: 0,
        now_ms: T1,
    };
    assert_eq!(refused(&mut s, truncate).errno(), Errno::Inval);
    // rename(2) treats it as a non-directory; unlink removes it.
    let d = mkdir(&mut s, Ino::ROOT, "d");
    assert_eq!(
        refused(&mut s, rename_op(Ino::ROOT, "p", Ino::ROOT, "d")).errno(),
        Errno::IsDir
    );
    ok(&mut s, rename_op(Ino::ROOT, "p", d, "q"));
    let gone = ok(&mut s, unlink_op(d, "q")).inode;
    assert_eq!((gone.ino, gone.nlink), (f, 0));
    assert!(s.lookup(d, "q").is_none());
}

#[test]
fn mknod_refusals_change_nothing() {
    let mut s = FsState::default();
    create(&mut s, Ino::ROOT, "f");
    let fifo = |name: &str| mknod_op(Ino::ROOT, name, SpecialKind::Fifo, 0);
    assert_eq!(refused(&mut s, fifo("f")).errno(), Errno::Exist);
    assert_eq!(refused(&mut s, fifo("")).errno(), Errno::Inval);
    assert_eq!(
        refused(&mut s, fifo(&"n".repeat(256))).errno(),
        Errno::NameTooLong
    );
    let with_rdev = mknod_op(Ino::ROOT, "s", SpecialKind::Socket, 7);
    assert_eq!(refused(&mut s, with_rdev).errno(), Errno::Inval);
    let in_file = mknod_op(Ino(2), "x", SpecialKind::Fifo, 0);
    assert_eq!(refused(&mut s, in_file).errno(), Errno::NotDir);
    let mut bad_mode = fifo("m");
    if let FsOp::Mknod { mode, .. } = &mut bad_mode {
        *mode = 0o10644;
    }
    assert_eq!(refused(&mut s, bad_mode).errno(), Errno::Inval);
}

// ---- Commit ----

#[test]
fn commit_replaces_the_content_and_bumps_the_version() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    let first = commit(&mut s, f, &[chunk(1, 10), chunk(2, 5)]);
    assert!(first.released.is_empty());
    assert_eq!(
        first.inode.kind,
        Kind::File {
            version: 1,
            size: 15,
            chunks: vec![chunk(1, 10), chunk(2, 5)]
        }
    );
    assert_eq!((first.inode.mtime_ms, first.inode.ctime_ms), (T1, T1));

    // Chunk 1 stays; 2 goes; 3 arrives.
    let second = commit(&mut s, f, &[chunk(1, 10), chunk(3, 7)]);
    assert_eq!(second.released, vec![chunk(2, 5)]);
    assert_eq!(version(&s, f), 2);
    assert_eq!(inode(&s, f).size(), 17);
}

#[test]
fn commit_if_version_is_a_compare_and_swap() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    ok(&mut s, commit_op(f, Some(0), &[chunk(1, 1)]));
    ok(&mut s, commit_op(f, Some(1), &[chunk(2, 2)]));
    let e = refused(&mut s, commit_op(f, Some(1), &[chunk(3, 3)]));
    assert_eq!(
        e,
        FsError::Conflict {
            path: "/f".into(),
            current: 2,
            expected: 1
        }
    );
    assert_eq!(e.errno(), Errno::Conflict);
    assert!(
        e.to_string().contains("someone else committed first"),
        "{e}"
    );
}

#[test]
fn commit_refusals_change_nothing() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    let l = symlink(&mut s, Ino::ROOT, "l", "/d");
    let f = create(&mut s, Ino::ROOT, "f");
    commit(&mut s, f, &[chunk(1, 4)]);

    let wrong_size = FsOp::Commit {
        ino: f,
        if_version: None,
        size: 5,
        chunks: vec![chunk(2, 4)],
        now_ms: T1,
    };
    let e = refused(&mut s, wrong_size);
    assert_eq!(e.errno(), Errno::Inval);
    assert!(e.to_string().contains("size 5"), "{e}");
    assert_eq!(
        refused(&mut s, commit_op(f, None, &[chunk(2, 0)])).errno(),
        Errno::Inval
    );
    assert_eq!(
        refused(&mut s, commit_op(d, None, &[])).errno(),
        Errno::IsDir
    );
    assert_eq!(
        refused(&mut s, commit_op(l, None, &[])).errno(),
        Errno::Inval
    );
    assert_eq!(
        refused(&mut s, commit_op(Ino(50), None, &[])).errno(),
        Errno::NoEnt
    );
}

#[test]
fn commit_releases_duplicated_chunks_once() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    commit(&mut s, f, &[chunk(1, 3), chunk(1, 3), chunk(2, 3)]);
    assert_eq!(s.all_chunks()[&[1; 32]], 2);
    let reply = commit(&mut s, f, &[]);
    assert_eq!(reply.released, vec![chunk(1, 3), chunk(2, 3)]);
    assert!(s.all_chunks().is_empty());
}

// ---- Truncate ----

#[test]
fn truncate_to_zero_empties_the_file() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    commit(&mut s, f, &[chunk(1, 3), chunk(2, 4)]);
    let reply = ok(
        &mut s,
        FsOp::Truncate {
            ino: f,
            size: 0,
            now_ms: T1 + 5,
        },
    );
    assert_eq!(reply.released, vec![chunk(1, 3), chunk(2, 4)]);
    assert_eq!(
        reply.inode.kind,
        Kind::File {
            version: 2,
            size: 0,
            chunks: vec![]
        }
    );
    assert_eq!(reply.inode.mtime_ms, T1 + 5);
}

#[test]
fn truncating_an_empty_file_keeps_its_version() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    let reply = ok(
        &mut s,
        FsOp::Truncate {
            ino: f,
            size: 0,
            now_ms: T1,
        },
    );
    assert_eq!(version(&s, f), 0);
    assert_eq!(reply.inode.mtime_ms, T1);
}

#[test]
fn truncate_refusals_change_nothing() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    let f = create(&mut s, Ino::ROOT, "f");
    commit(&mut s, f, &[chunk(1, 8)]);
    let truncate = |ino, size| FsOp::Truncate {
        ino,
        size,
        now_ms: T1,
    };
    let e = refused(&mut s, truncate(f, 4));
    assert_eq!(e.errno(), Errno::Inval);
    assert!(e.to_string().contains("commit the new content"), "{e}");
    assert_eq!(refused(&mut s, truncate(f, 9)).errno(), Errno::Inval);
    assert_eq!(refused(&mut s, truncate(d, 0)).errno(), Errno::IsDir);
    assert_eq!(refused(&mut s, truncate(Ino(40), 0)).errno(), Errno::NoEnt);
}

// ---- Rename ----

#[test]
fn rename_within_a_directory() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "a");
    let reply = ok(&mut s, rename_op(Ino::ROOT, "a", Ino::ROOT, "b"));
    assert_eq!(reply.inode.ino, f, "the id survives the rename");
    assert_eq!(reply.inode.ctime_ms, T1);
    assert!(s.lookup(Ino::ROOT, "a").is_none());
    assert_eq!(s.lookup(Ino::ROOT, "b").map(|i| i.ino), Some(f));
    assert_eq!(s.path_of(f).as_deref(), Some("/b"));
    assert_eq!(inode(&s, Ino::ROOT).mtime_ms, T1);
}

#[test]
fn rename_across_directories_moves_subtrees() {
    let mut s = FsState::default();
    let a = mkdir(&mut s, Ino::ROOT, "a");
    let b = mkdir(&mut s, Ino::ROOT, "b");
    let sub = mkdir(&mut s, a, "sub");
    let deep = create(&mut s, sub, "deep");
    ok(&mut s, rename_op(a, "sub", b, "moved"));

    assert_eq!(inode(&s, a).nlink, 2);
    assert_eq!(inode(&s, b).nlink, 3);
    assert!(matches!(inode(&s, sub).kind, Kind::Dir { parent, .. } if parent == b));
    assert_eq!(s.path_of(deep).as_deref(), Some("/b/moved/deep"));
    assert_eq!(s.resolve("/b/moved/deep").map(|i| i.ino), Ok(deep));
    assert_eq!((inode(&s, a).mtime_ms, inode(&s, b).mtime_ms), (T1, T1));
}

#[test]
fn rename_over_a_file_replaces_it() {
    let mut s = FsState::default();
    let src = create(&mut s, Ino::ROOT, "src");
    let dst = create(&mut s, Ino::ROOT, "dst");
    commit(&mut s, src, &[chunk(1, 1)]);
    commit(&mut s, dst, &[chunk(1, 1), chunk(2, 2)]);
    let reply = ok(&mut s, rename_op(Ino::ROOT, "src", Ino::ROOT, "dst"));
    assert_eq!(reply.inode.ino, src);
    // Chunk 1 is still used by the moved file, but the reply is about the
    // replaced inode: the caller consults all_chunks before collecting.
    assert_eq!(reply.released, vec![chunk(1, 1), chunk(2, 2)]);
    assert!(s.get(dst).is_none());
    assert_eq!(s.all_chunks(), BTreeMap::from([([1; 32], 1)]));
}

#[test]
fn rename_over_a_symlink_replaces_it() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    let l = symlink(&mut s, Ino::ROOT, "l", "/x");
    ok(&mut s, rename_op(Ino::ROOT, "f", Ino::ROOT, "l"));
    assert!(s.get(l).is_none());
    assert_eq!(s.lookup(Ino::ROOT, "l").map(|i| i.ino), Some(f));
}

#[test]
fn rename_a_directory_over_an_empty_directory() {
    let mut s = FsState::default();
    let a = mkdir(&mut s, Ino::ROOT, "a");
    let b = mkdir(&mut s, Ino::ROOT, "b");
    let x = mkdir(&mut s, a, "x");
    let y = mkdir(&mut s, b, "y");
    ok(&mut s, rename_op(a, "x", b, "y"));
    assert!(s.get(y).is_none());
    assert_eq!(inode(&s, a).nlink, 2);
    assert_eq!(inode(&s, b).nlink, 3);
    assert_eq!(s.path_of(x).as_deref(), Some("/b/y"));

    // Same directory: the parent loses the replaced subdirectory.
    mkdir(&mut s, b, "z");
    assert_eq!(inode(&s, b).nlink, 4);
    ok(&mut s, rename_op(b, "z", b, "y"));
    assert_eq!(inode(&s, b).nlink, 3);
}

#[test]
fn rename_refusals_change_nothing() {
    let mut s = FsState::default();
    let a = mkdir(&mut s, Ino::ROOT, "a");
    let full = mkdir(&mut s, Ino::ROOT, "full");
    create(&mut s, full, "inside");
    let f = create(&mut s, Ino::ROOT, "f");

    let e = refused(&mut s, rename_op(Ino::ROOT, "a", Ino::ROOT, "full"));
    assert_eq!(e.errno(), Errno::NotEmpty);
    assert_eq!(e.to_string(), "/full: directory not empty");
    let e = refused(&mut s, rename_op(Ino::ROOT, "a", Ino::ROOT, "f"));
    assert_eq!(e.errno(), Errno::NotDir);
    let e = refused(&mut s, rename_op(Ino::ROOT, "f", Ino::ROOT, "a"));
    assert_eq!(e.errno(), Errno::IsDir);
    assert_eq!(e.to_string(), "/a: is a directory");
    let e = refused(&mut s, rename_op(Ino::ROOT, "nope", Ino::ROOT, "x"));
    assert_eq!(e.errno(), Errno::NoEnt);
    assert_eq!(e.to_string(), "/nope: no such file or directory");
    assert_eq!(
        refused(&mut s, rename_op(f, "x", Ino::ROOT, "y")).errno(),
        Errno::NotDir
    );
    assert_eq!(
        refused(&mut s, rename_op(Ino::ROOT, "f", f, "y")).errno(),
        Errno::NotDir
    );
    assert_eq!(
        refused(&mut s, rename_op(Ino::ROOT, "f", Ino(99), "y")).errno(),
        Errno::NoEnt
    );
    assert_eq!(
        refused(&mut s, rename_op(Ino::ROOT, "f", a, "..")).errno(),
        Errno::Inval
    );
    assert_eq!(
        refused(&mut s, rename_op(Ino::ROOT, "", a, "x")).errno(),
        Errno::Inval
    );
}

#[test]
fn rename_into_its_own_subtree_is_refused() {
    let mut s = FsState::default();
    let a = mkdir(&mut s, Ino::ROOT, "a");
    let b = mkdir(&mut s, a, "b");
    let c = mkdir(&mut s, b, "c");
    let e = refused(&mut s, rename_op(Ino::ROOT, "a", c, "a"));
    assert_eq!(e.errno(), Errno::Inval);
    assert_eq!(
        e.to_string(),
        "cannot move directory /a into its own subtree (/a/b/c/a)"
    );
    // Into itself.
    assert_eq!(
        refused(&mut s, rename_op(Ino::ROOT, "a", a, "x")).errno(),
        Errno::Inval
    );
    // A directory over its own ancestor is "not empty" (the ancestor holds it).
    assert_eq!(
        refused(&mut s, rename_op(b, "c", Ino::ROOT, "a")).errno(),
        Errno::NotEmpty
    );
    // Moving up is fine.
    ok(&mut s, rename_op(b, "c", Ino::ROOT, "c"));
    assert_eq!(s.path_of(c).as_deref(), Some("/c"));
}

#[test]
fn rename_onto_itself_changes_nothing() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    let f = create(&mut s, d, "f");
    for (parent, name, ino) in [(d, "f", f), (Ino::ROOT, "d", d)] {
        let bytes = encode(&s);
        let reply = ok(&mut s, rename_op(parent, name, parent, name));
        assert_eq!(reply.inode.ino, ino);
        assert!(reply.released.is_empty());
        assert_eq!(encode(&s), bytes);
    }
}

// ---- Unlink and Rmdir ----

#[test]
fn unlink_removes_a_file_and_releases_its_chunks() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    let f = create(&mut s, d, "f");
    commit(&mut s, f, &[chunk(1, 1), chunk(1, 1), chunk(2, 1)]);
    let reply = ok(&mut s, unlink_op(d, "f"));
    assert_eq!(reply.inode.ino, f);
    assert_eq!(reply.inode.nlink, 0);
    assert_eq!(reply.released, vec![chunk(1, 1), chunk(2, 1)]);
    assert!(s.get(f).is_none());
    assert!(s.path_of(f).is_none());
    assert_eq!(inode(&s, d).mtime_ms, T1);
    assert!(s.all_chunks().is_empty());
}

#[test]
fn unlink_removes_a_symlink() {
    let mut s = FsState::default();
    let l = symlink(&mut s, Ino::ROOT, "l", "/nowhere");
    assert!(ok(&mut s, unlink_op(Ino::ROOT, "l")).released.is_empty());
    assert!(s.get(l).is_none());
}

#[test]
fn unlink_refusals_change_nothing() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    let f = create(&mut s, Ino::ROOT, "f");
    let e = refused(&mut s, unlink_op(Ino::ROOT, "d"));
    assert_eq!(e.errno(), Errno::IsDir);
    assert_eq!(e.to_string(), "/d: is a directory");
    assert_eq!(
        refused(&mut s, unlink_op(d, "missing")).errno(),
        Errno::NoEnt
    );
    assert_eq!(refused(&mut s, unlink_op(f, "x")).errno(), Errno::NotDir);
    assert_eq!(
        refused(&mut s, unlink_op(Ino::ROOT, ".")).errno(),
        Errno::Inval
    );
}

#[test]
fn rmdir_removes_an_empty_directory() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    let reply = ok(&mut s, rmdir_op(Ino::ROOT, "d"));
    assert_eq!(reply.inode.ino, d);
    assert_eq!(reply.inode.nlink, 0);
    assert!(s.get(d).is_none());
    let root = inode(&s, Ino::ROOT);
    assert_eq!((root.nlink, root.mtime_ms), (2, T1));
}

#[test]
fn rmdir_refusals_change_nothing() {
    let mut s = FsState::default();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    create(&mut s, d, "f");
    let e = refused(&mut s, rmdir_op(Ino::ROOT, "d"));
    assert_eq!(e.errno(), Errno::NotEmpty);
    assert_eq!(e.to_string(), "/d: directory not empty");
    assert_eq!(refused(&mut s, rmdir_op(d, "f")).errno(), Errno::NotDir);
    assert_eq!(refused(&mut s, rmdir_op(d, "nope")).errno(), Errno::NoEnt);
    // The root is in no directory; "/" is not a name.
    assert_eq!(
        refused(&mut s, rmdir_op(Ino::ROOT, "/")).errno(),
        Errno::Inval
    );
    assert_eq!(
        refused(&mut s, rmdir_op(Ino::ROOT, "..")).errno(),
        Errno::Inval
    );
}

#[test]
fn rmdir_never_removes_the_root_even_from_a_damaged_state() {
    let mut s = FsState::default();
    // A damaged snapshot that names the root inside itself.
    if let Some(Kind::Dir { entries, .. }) = s.inodes.get_mut(&Ino::ROOT).map(|r| &mut r.kind) {
        entries.insert("loop".into(), Ino::ROOT);
    }
    let e = refused(&mut s, rmdir_op(Ino::ROOT, "loop"));
    assert_eq!(e.errno(), Errno::Perm);
}

// ---- SetAttr and SetReplicas ----

#[test]
fn set_attr_changes_what_it_is_given() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    let op = FsOp::SetAttr {
        ino: f,
        mode: Some(0o600),
        owner: None,
        atime_ms: None,
        mtime_ms: Some(5),
        now_ms: T1,
    };
    let reply = ok(&mut s, op);
    assert_eq!(
        (
            reply.inode.mode,
            reply.inode.owner.as_str(),
            reply.inode.atime_ms,
            reply.inode.mtime_ms,
            reply.inode.ctime_ms
        ),
        (0o600, "user:alice", T0, 5, T1)
    );
    // Times alone (utimensat): atime and mtime apart, ctime is the clock's.
    let op = FsOp::SetAttr {
        ino: f,
        mode: None,
        owner: None,
        atime_ms: Some(7),
        mtime_ms: Some(3),
        now_ms: T1 + 5,
    };
    let reply = ok(&mut s, op);
    assert_eq!(
        (
            reply.inode.mode,
            reply.inode.atime_ms,
            reply.inode.mtime_ms,
            reply.inode.ctime_ms
        ),
        (0o600, 7, 3, T1 + 5)
    );
    let op = FsOp::SetAttr {
        ino: Ino::ROOT,
        mode: None,
        owner: Some("user:bob".into()),
        atime_ms: None,
        mtime_ms: None,
        now_ms: T1 + 1,
    };
    let reply = ok(&mut s, op);
    assert_eq!(
        (reply.inode.mode, reply.inode.owner.as_str()),
        (0o755, "user:bob")
    );
}

#[test]
fn set_attr_refusals_change_nothing() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    let op = |ino, mode, owner: Option<&str>| FsOp::SetAttr {
        ino,
        mode,
        owner: owner.map(str::to_string),
        atime_ms: Some(1),
        mtime_ms: Some(1),
        now_ms: T1,
    };
    let e = refused(&mut s, op(f, Some(0o10000), None));
    assert_eq!(e.errno(), Errno::Inval);
    assert!(e.to_string().starts_with("/f: mode 0o10000"), "{e}");
    // The good half of a half-bad request is not applied either.
    assert_eq!(
        refused(&mut s, op(f, Some(0o600), Some("a\tb"))).errno(),
        Errno::Inval
    );
    assert_eq!(
        refused(&mut s, op(Ino(9), None, None)).errno(),
        Errno::NoEnt
    );
}

#[test]
fn replicas_are_inherited_from_the_nearest_directory() {
    let mut s = FsState::default();
    let a = mkdir(&mut s, Ino::ROOT, "a");
    let b = mkdir(&mut s, a, "b");
    let f = create(&mut s, b, "f");
    assert_eq!(s.replicas_for(f), DEFAULT_REPLICAS);
    let set = |ino, replicas| FsOp::SetReplicas {
        ino,
        replicas,
        now_ms: T1,
    };
    ok(&mut s, set(Ino::ROOT, Some(2)));
    assert_eq!(s.replicas_for(f), 2);
    let reply = ok(&mut s, set(a, Some(5)));
    assert_eq!(reply.inode.ctime_ms, T1);
    assert_eq!(
        (s.replicas_for(f), s.replicas_for(b), s.replicas_for(a)),
        (5, 5, 5)
    );
    assert_eq!(s.replicas_for(Ino::ROOT), 2);
    ok(&mut s, set(a, None));
    assert_eq!(s.replicas_for(f), 2);
    assert_eq!(s.replicas_for(Ino(1234)), DEFAULT_REPLICAS);
}

#[test]
fn set_replicas_refusals_change_nothing() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    let set = |ino, replicas| FsOp::SetReplicas {
        ino,
        replicas,
        now_ms: T1,
    };
    assert_eq!(refused(&mut s, set(f, Some(2))).errno(), Errno::NotDir);
    assert_eq!(
        refused(&mut s, set(Ino::ROOT, Some(0))).errno(),
        Errno::Inval
    );
    assert_eq!(refused(&mut s, set(Ino(3), Some(1))).errno(), Errno::NoEnt);
}

#[test]
fn exhausted_ids_refuse_creation() {
    let mut s = FsState {
        next_ino: u64::MAX,
        ..FsState::default()
    };
    assert_eq!(
        refused(&mut s, mkdir_op(Ino::ROOT, "d")).errno(),
        Errno::Inval
    );
    assert_eq!(
        refused(&mut s, create_op(Ino::ROOT, "f", false)).errno(),
        Errno::Inval
    );
}

// ---- queries ----

/// / ── home/ ── alice/ ── notes (file)
///    │                 └─ up -> .. ; abs -> /home ; loop -> loop ; dangling -> nope
///    └─ etc -> /home/alice
fn tree() -> (FsState, Ino, Ino) {
    let mut s = FsState::default();
    let home = mkdir(&mut s, Ino::ROOT, "home");
    let alice = mkdir(&mut s, home, "alice");
    let notes = create(&mut s, alice, "notes");
    symlink(&mut s, alice, "up", "..");
    symlink(&mut s, alice, "abs", "/home");
    symlink(&mut s, alice, "loop", "loop");
    symlink(&mut s, alice, "dangling", "nope");
    symlink(&mut s, alice, "through", "notes/x");
    symlink(&mut s, Ino::ROOT, "etc", "/home/alice/");
    (s, alice, notes)
}

#[test]
fn resolve_does_not_follow_links() {
    let (s, alice, notes) = tree();
    assert_eq!(s.resolve("/").map(|i| i.ino), Ok(Ino::ROOT));
    assert_eq!(s.resolve("/home/alice/notes").map(|i| i.ino), Ok(notes));
    assert_eq!(s.resolve("//home//alice/").map(|i| i.ino), Ok(alice));
    let etc = s.resolve("/etc").unwrap();
    assert!(matches!(etc.kind, Kind::Symlink { .. }));
    let e = s.resolve("/etc/notes").unwrap_err();
    assert_eq!(
        e,
        FsError::NotDir {
            path: "/etc".into()
        }
    );
    let e = s.resolve("/home/bob/x").unwrap_err();
    assert_eq!(
        e,
        FsError::NotFound {
            path: "/home/bob".into()
        }
    );
    assert_eq!(
        s.resolve("/home/alice/notes/x").unwrap_err().errno(),
        Errno::NotDir
    );
    assert_eq!(s.resolve("home").unwrap_err().errno(), Errno::Inval);
    assert_eq!(s.resolve("/home/../etc").unwrap_err().errno(), Errno::Inval);
}

#[test]
fn resolve_follow_follows_links() {
    let (s, alice, notes) = tree();
    let home = s.resolve("/home").unwrap().ino;
    let follow = |p: &str| s.resolve_follow(p).map(|i| i.ino);
    assert_eq!(follow("/etc"), Ok(alice));
    assert_eq!(follow("/etc/notes"), Ok(notes));
    assert_eq!(follow("/etc/up"), Ok(home));
    assert_eq!(follow("/etc/up/alice/abs/alice/notes"), Ok(notes));
    assert_eq!(follow("/home/alice/abs"), Ok(home));
    assert_eq!(follow("/"), Ok(Ino::ROOT));
    let e = s.resolve_follow("/etc/dangling").unwrap_err();
    assert_eq!(
        e,
        FsError::NotFound {
            path: "/home/alice/nope".into()
        }
    );
    let e = s.resolve_follow("/etc/through").unwrap_err();
    assert_eq!(
        e,
        FsError::NotDir {
            path: "/home/alice/notes".into()
        }
    );
}

#[test]
fn resolve_follow_stops_at_40_links() {
    let (mut s, alice, _) = tree();
    let e = s.resolve_follow("/etc/loop").unwrap_err();
    assert_eq!(e.errno(), Errno::Loop);
    assert_eq!(
        e.to_string(),
        "/home/alice/loop: too many levels of symbolic links (more than 40)"
    );

    // A chain of exactly 40 links resolves; 41 do not.
    let end = create(&mut s, alice, "l0");
    for i in 1..=41 {
        symlink(&mut s, alice, &format!("l{i}"), &format!("l{}", i - 1));
    }
    assert_eq!(s.resolve_follow("/home/alice/l40").map(|i| i.ino), Ok(end));
    assert_eq!(
        s.resolve_follow("/home/alice/l41").unwrap_err().errno(),
        Errno::Loop
    );
}

#[test]
fn list_lookup_and_path_of() {
    let (s, alice, notes) = tree();
    let names: Vec<String> = s.list(alice).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["abs", "dangling", "loop", "notes", "through", "up"]);
    assert_eq!(s.list(notes).unwrap_err().errno(), Errno::NotDir);
    assert_eq!(s.list(Ino(999)).unwrap_err().errno(), Errno::NoEnt);
    assert_eq!(s.lookup(alice, "notes").map(|i| i.ino), Some(notes));
    assert!(s.lookup(alice, "none").is_none());
    assert!(s.lookup(notes, "x").is_none());
    assert_eq!(s.path_of(notes).as_deref(), Some("/home/alice/notes"));
    assert_eq!(s.location(notes), Some((alice, "notes")));
    assert_eq!(s.location(Ino::ROOT), None);
    assert!(s.path_of(Ino(999)).is_none());
}

#[test]
fn all_chunks_counts_every_listing() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    let g = create(&mut s, Ino::ROOT, "g");
    commit(&mut s, f, &[chunk(1, 1), chunk(2, 2)]);
    commit(&mut s, g, &[chunk(2, 2), chunk(2, 2), chunk(3, 3)]);
    let want = BTreeMap::from([([1; 32], 1), ([2; 32], 3), ([3; 32], 1)]);
    assert_eq!(s.all_chunks(), want);
}

// ---- encoding ----

#[test]
fn a_populated_state_survives_postcard() {
    let (mut s, alice, notes) = tree();
    commit(&mut s, notes, &[chunk(7, 100), chunk(8, 1)]);
    ok(
        &mut s,
        FsOp::SetReplicas {
            ino: alice,
            replicas: Some(2),
            now_ms: T1,
        },
    );
    let bytes = encode(&s);
    let back: FsState = postcard::from_bytes(&bytes).expect("decode");
    assert_eq!(back, s, "the link index is rebuilt on decoding");
    assert_eq!(encode(&back), bytes);
    assert!(back.fsck().is_empty());
    assert_eq!(back.path_of(notes).as_deref(), Some("/home/alice/notes"));
    assert_eq!(back.replicas_for(notes), 2);
}

#[test]
fn ops_and_replies_survive_postcard() {
    let mut s = FsState::default();
    let f = create(&mut s, Ino::ROOT, "f");
    let op = commit_op(f, Some(0), &[chunk(1, 9)]);
    let back: FsOp = postcard::from_bytes(&postcard::to_stdvec(&op).unwrap()).unwrap();
    assert_eq!(back, op);
    let reply = ok(&mut s, op);
    let back: FsReply = postcard::from_bytes(&postcard::to_stdvec(&reply).unwrap()).unwrap();
    assert_eq!(back, reply);
    let err = FsError::Conflict {
        path: "/f".into(),
        current: 2,
        expected: 1,
    };
    let back: FsError = postcard::from_bytes(&postcard::to_stdvec(&err).unwrap()).unwrap();
    assert_eq!(back, err);
}

// ---- fsck ----

#[test]
fn fsck_finds_damage() {
    let (s, alice, notes) = tree();
    let damage = |f: &dyn Fn(&mut FsState)| {
        let mut bad = s.clone();
        f(&mut bad);
        bad.fsck()
    };
    let problems = damage(&|b| {
        b.inodes.remove(&notes);
    });
    assert!(
        problems.iter().any(|p| p.contains("points to missing")),
        "{problems:?}"
    );
    let problems = damage(&|b| b.inodes.get_mut(&alice).unwrap().nlink = 7);
    assert!(
        problems.iter().any(|p| p.contains("nlink 7")),
        "{problems:?}"
    );
    let problems = damage(&|b| {
        if let Kind::File { size, .. } = &mut b.inodes.get_mut(&notes).unwrap().kind {
            *size = 3;
        }
    });
    assert!(
        problems.iter().any(|p| p.contains("size 3")),
        "{problems:?}"
    );
    let problems = damage(&|b| b.next_ino = 2);
    assert!(
        problems.iter().any(|p| p.contains("outside the ids")),
        "{problems:?}"
    );
    let problems = damage(&|b| {
        if let Kind::Dir { entries, .. } = &mut b.inodes.get_mut(&Ino::ROOT).unwrap().kind {
            entries.insert("again".into(), notes);
        }
    });
    assert!(
        problems.iter().any(|p| p.contains("named by 2 entries")),
        "{problems:?}"
    );
    let problems = damage(&|b| b.links.clear());
    assert!(
        problems.iter().any(|p| p.contains("link index")),
        "{problems:?}"
    );
}

fn create_as_op(ino: Ino, parent: Ino, name: &str, owner: &str, chunks: Vec<ChunkRef>) -> FsOp {
    FsOp::CreateAs {
        ino,
        parent,
        name: name.into(),
        mode: 0o640,
        owner: owner.into(),
        now_ms: T1,
        exclusive: true,
        size: chunks.iter().map(|c| u64::from(c.len)).sum(),
        chunks,
    }
}

#[test]
fn reserved_ids_make_files_in_any_order_with_their_first_content() {
    let mut s = FsState::default();
    let ids = s.reserve_ids("user:alice", 3).unwrap();
    assert_eq!(ids, 2..5);
    assert_eq!(
        s.next_ino(),
        Ino(5),
        "reserved ids are never handed out again"
    );
    // An ordinary create meanwhile takes the next free id.
    assert_eq!(create(&mut s, Ino::ROOT, "plain"), Ino(5));

    let last = ok(
        &mut s,
        create_as_op(Ino(4), Ino::ROOT, "b", "user:alice", vec![chunk(1, 10)]),
    );
    assert_eq!(last.inode.ino, Ino(4));
    assert!(matches!(
        last.inode.kind,
        Kind::File {
            version: 1,
            size: 10,
            ..
        }
    ));
    assert_eq!(last.inode.mode, 0o640);
    let first = ok(
        &mut s,
        create_as_op(Ino(2), Ino::ROOT, "a", "user:alice", vec![]),
    );
    assert!(matches!(
        first.inode.kind,
        Kind::File {
            version: 0,
            size: 0,
            ..
        }
    ));
    assert_eq!(s.next_ino(), Ino(6));

    // The same create again changes nothing; with content, it commits it.
    let again = ok(
        &mut s,
        create_as_op(Ino(2), Ino::ROOT, "a", "user:alice", vec![]),
    );
    assert_eq!(again.inode, first.inode);
    let filled = ok(
        &mut s,
        create_as_op(Ino(2), Ino::ROOT, "a", "user:alice", vec![chunk(2, 7)]),
    );
    assert!(matches!(
        filled.inode.kind,
        Kind::File {
            version: 1,
            size: 7,
            ..
        }
    ));

    // A used id cannot make a second file, nor can another owner's.
    let e = refused(
        &mut s,
        create_as_op(Ino(4), Ino::ROOT, "c", "user:alice", vec![]),
    );
    assert_eq!(e.errno(), Errno::Inval, "{e}");
    let e = refused(
        &mut s,
        create_as_op(Ino(3), Ino::ROOT, "c", "user:bob", vec![]),
    );
    assert!(e.to_string().contains("not one user:bob reserved"), "{e}");
    // Nor can an id that was never reserved (the counter's next one).
    let e = refused(
        &mut s,
        create_as_op(Ino(6), Ino::ROOT, "c", "user:alice", vec![]),
    );
    assert_eq!(e.errno(), Errno::Inval, "{e}");
    ok(
        &mut s,
        create_as_op(Ino(3), Ino::ROOT, "c", "user:alice", vec![]),
    );
    assert!(s.reserved.is_empty(), "{:?}", s.reserved);
}

#[test]
fn a_create_under_a_reserved_id_replaces_a_file_unless_exclusive() {
    let mut s = FsState::default();
    let ids = s.reserve_ids("user:alice", 2).unwrap();
    let d = mkdir(&mut s, Ino::ROOT, "d");
    let old = create(&mut s, Ino::ROOT, "f");
    ok(&mut s, commit_op(old, None, &[chunk(9, 4)]));
    let e = refused(
        &mut s,
        create_as_op(Ino(ids.start), Ino::ROOT, "f", "user:alice", vec![]),
    );
    assert_eq!(e.errno(), Errno::Exist);
    let e = refused(&mut s, {
        let mut op = create_as_op(Ino(ids.start), Ino::ROOT, "d", "user:alice", vec![]);
        if let FsOp::CreateAs { exclusive, .. } = &mut op {
            *exclusive = false;
        }
        op
    });
    assert_eq!(e.errno(), Errno::IsDir, "{e}");
    assert_eq!(d, s.resolve("/d").unwrap().ino);

    let mut op = create_as_op(
        Ino(ids.start),
        Ino::ROOT,
        "f",
        "user:alice",
        vec![chunk(3, 5)],
    );
    if let FsOp::CreateAs { exclusive, .. } = &mut op {
        *exclusive = false;
    }
    let r = ok(&mut s, op);
    assert_eq!(s.resolve("/f").unwrap().ino, Ino(ids.start));
    assert_eq!(
        r.released,
        vec![chunk(9, 4)],
        "the replaced file's chunks go"
    );
    assert!(s.get(old).is_none());
}

#[test]
fn reservations_are_bounded_and_survive_a_snapshot() {
    let mut s = FsState::default();
    let e = s.reserve_ids("user:alice", 0).unwrap_err();
    assert!(e.to_string().contains("1 to 4096"), "{e}");
    assert!(s.reserve_ids("user:alice", MAX_RESERVED_IDS + 1).is_err());
    let before = s.clone();
    assert!(s.reserve_ids("user:alice", 0).is_err());
    assert_eq!(s, before, "a refused reservation changes nothing");

    let first = s.reserve_ids("user:alice", 2).unwrap();
    // Used out of order, a run splits; the bound counts ids, not runs.
    let split = s.reserve_ids("user:alice", 5).unwrap();
    ok(
        &mut s,
        create_as_op(Ino(split.start + 2), Ino::ROOT, "mid", "user:alice", vec![]),
    );
    s.reserve_ids("user:bob", 2).unwrap();
    for _ in 0..RESERVED_IDS_PER_OWNER / MAX_RESERVED_IDS - 1 {
        s.reserve_ids("user:alice", MAX_RESERVED_IDS).unwrap();
    }
    ok(
        &mut s,
        create_as_op(Ino(first.start), Ino::ROOT, "kept", "user:alice", vec![]),
    );
    // One more run: the oldest go, until the owner is within the bound
    // (here the three small runs: 5 ids over).
    let newest = s.reserve_ids("user:alice", MAX_RESERVED_IDS).unwrap();
    for gone in [first.start + 1, split.start, split.start + 4] {
        let op = create_as_op(Ino(gone), Ino::ROOT, "x", "user:alice", vec![]);
        let e = refused(&mut s, op);
        assert_eq!(e.errno(), Errno::Inval, "run of {gone} was dropped: {e}");
    }
    let op = create_as_op(Ino(newest.end - 1), Ino::ROOT, "y", "user:alice", vec![]);
    ok(&mut s, op);
    let bob = s
        .reserved
        .values()
        .filter(|r| r.owner == "user:bob")
        .count();
    assert_eq!(bob, 1, "another owner's run stays");

    let decoded: FsState = postcard::from_bytes(&encode(&s)).unwrap();
    assert_eq!(decoded, s);
}
