//! `wos mount`: the cell's files through FUSE, mounted on two nodes at once.
//! What one mount writes, the other (after the 1 s attribute TTL) and the
//! CLI on a third node read byte for byte; namespace calls behave as POSIX
//! says; writes are close-to-open; a handle never reads a mix of two
//! versions; and both mounts unmount cleanly.
//!
//! Root only (mounting needs it without fusermount3); skipped otherwise.

use std::ffi::CString;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wos_testkit::{Cell, Mount, can_mount, mounted, wait_for};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wos"))
}

/// Longer than the mounts' attribute and entry TTL (1 s): by then a mount
/// sees what another one did.
const AFTER_TTL: Duration = Duration::from_millis(1300);

use wos_testkit::{expect_ok as ok, pseudo_random as data};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn errno(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn truncate(p: &Path, len: u64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path for the call's duration.
    let r = unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) };
    assert_eq!(
        r,
        0,
        "truncate {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn two_mounts_share_the_cells_files_as_a_posix_file_system() {
    if !can_mount() {
        eprintln!("skipped: mounting with FUSE needs root and /dev/fuse");
        return;
    }
    let cell = Cell::start(bin(), 3, 3).expect("cell starts");
    let a = Mount::start(&cell, 0);
    let b = Mount::start(&cell, 1);

    // Several chunks through mount A; the same bytes through mount B and
    // through the CLI on node C.
    let big = data(9 << 20 | 4321, 7);
    fs::write(a.p("big"), &big).unwrap();
    assert_eq!(fs::metadata(a.p("big")).unwrap().len(), big.len() as u64);
    std::thread::sleep(AFTER_TTL);
    assert!(
        fs::read(b.p("big")).unwrap() == big,
        "mount B read other bytes"
    );
    let back = cell.dir.path().join("back");
    ok(cell.wos(2, &["fs", "get", "/big", back.to_str().unwrap()]));
    assert!(fs::read(&back).unwrap() == big, "node C read other bytes");

    namespace(&a, &b);
    large_writes(&a, &b);
    let big = partial_writes(&a, &b, big);
    truncation(&a, &b, big);
    rewrites(&cell, &a, &b);
    refusals(&a);
    special_files_and_times(&cell, &a, &b);
    limited_user(&cell, &a);

    a.unmount();
    b.unmount();
}

/// A plain user whose ACL covers only /home/bob: the directories above are
/// traverse-only (like POSIX directories without read permission), and the
/// cell's rights decide the rest.
fn limited_user(cell: &Cell, a: &Mount) {
    let bob = cell.dir.path().join("bob.identity");
    ok(cell.wos(0, &["user", "add", "bob", "--out", bob.to_str().unwrap()]));
    fs::create_dir_all(a.p("home/bob")).unwrap();
    fs::write(a.p("home/bob/hi"), b"hi bob").unwrap();
    fs::write(a.p("home/secret"), b"not for bob").unwrap();
    ok(cell.wos(0, &["acl", "set", "fs:/home/bob", "bob", "read,write,list"]));

    let c = Mount::start_as(cell, 2, &bob, &[]);
    assert_eq!(errno(fs::read_dir(&c.path)), Some(libc::EACCES));
    assert_eq!(errno(fs::read_dir(c.p("home"))), Some(libc::EACCES));
    assert_eq!(mode(&c.p("home")), 0o111);
    assert_eq!(errno(fs::read(c.p("home/secret"))), Some(libc::EACCES));
    assert_eq!(names(&c.p("home/bob")), ["hi"]);
    assert_eq!(fs::read(c.p("home/bob/hi")).unwrap(), b"hi bob");
    fs::write(c.p("home/bob/reply"), b"thanks").unwrap();
    std::thread::sleep(AFTER_TTL);
    assert_eq!(fs::read(a.p("home/bob/reply")).unwrap(), b"thanks");
    c.unmount();
}

/// mkdir, rename (replacing; of a directory with its subtree), symlink,
/// readlink, chmod, readdir, unlink, rmdir: on A, then as seen from B.
fn namespace(a: &Mount, b: &Mount) {
    fs::create_dir(a.p("d")).unwrap();
    assert_eq!(
        fs::create_dir(a.p("d")).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    fs::write(a.p("d/f1"), b"hello").unwrap();
    fs::write(a.p("d/f2"), b"other").unwrap();
    fs::rename(a.p("d/f1"), a.p("d/f2")).unwrap();
    assert_eq!(errno(fs::metadata(a.p("d/f1"))), Some(libc::ENOENT));
    assert_eq!(fs::read(a.p("d/f2")).unwrap(), b"hello");
    symlink("f2", a.p("d/link")).unwrap();
    assert_eq!(fs::read_link(a.p("d/link")).unwrap(), Path::new("f2"));
    assert!(
        fs::symlink_metadata(a.p("d/link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(a.p("d/link")).unwrap(), b"hello");
    fs::set_permissions(a.p("d/f2"), Permissions::from_mode(0o600)).unwrap();
    assert_eq!(mode(&a.p("d/f2")), 0o600);
    let ino = fs::metadata(a.p("d/f2")).unwrap().ino();
    fs::rename(a.p("d"), a.p("e")).unwrap();
    assert_eq!(
        fs::metadata(a.p("e/f2")).unwrap().ino(),
        ino,
        "an object keeps its inode number when its directory is renamed"
    );
    assert_eq!(names(&a.p("e")), ["f2", "link"]);

    std::thread::sleep(AFTER_TTL);
    assert_eq!(names(&b.p("e")), ["f2", "link"]);
    assert_eq!(fs::read_link(b.p("e/link")).unwrap(), Path::new("f2"));
    assert_eq!(fs::read(b.p("e/link")).unwrap(), b"hello");
    assert_eq!(mode(&b.p("e/f2")), 0o600);
    assert_eq!(fs::metadata(b.p("e/f2")).unwrap().ino(), ino);
    assert!(!b.p("d").exists());
    assert!(names(&b.path).contains(&"e".to_string()));

    assert_eq!(errno(fs::remove_dir(a.p("e"))), Some(libc::ENOTEMPTY));
    fs::remove_file(a.p("e/link")).unwrap();
    fs::remove_file(a.p("e/f2")).unwrap();
    fs::remove_dir(a.p("e")).unwrap();
    std::thread::sleep(AFTER_TTL);
    assert_eq!(errno(fs::metadata(b.p("e"))), Some(libc::ENOENT));
}

/// A seek and a write in the middle (across a chunk boundary) become the
/// new version at close; a reader that opened the old version fails rather
/// than read a mix of both. Returns the file's content.
fn partial_writes(a: &Mount, b: &Mount, mut big: Vec<u8>) -> Vec<u8> {
    let at = (4 << 20) - 5;
    {
        let mut f = OpenOptions::new().write(true).open(a.p("big")).unwrap();
        f.seek(SeekFrom::Start(at as u64)).unwrap();
        f.write_all(b"0123456789").unwrap();
    }
    big[at..at + 10].copy_from_slice(b"0123456789");
    assert!(
        fs::read(a.p("big")).unwrap() == big,
        "mount A lost its own write"
    );
    std::thread::sleep(AFTER_TTL);
    assert!(
        fs::read(b.p("big")).unwrap() == big,
        "mount B missed the write"
    );

    let mut reader = fs::File::open(b.p("big")).unwrap();
    let mut head = vec![0u8; 4096];
    reader.read_exact(&mut head).unwrap();
    assert!(head == big[..4096]);
    let at = 8 << 20;
    {
        let mut f = OpenOptions::new().write(true).open(a.p("big")).unwrap();
        f.seek(SeekFrom::Start(at as u64)).unwrap();
        f.write_all(b"new version").unwrap();
    }
    big[at..at + 11].copy_from_slice(b"new version");
    reader.seek(SeekFrom::Start(6 << 20)).unwrap();
    assert_eq!(
        errno(reader.read_exact(&mut head)),
        Some(libc::ESTALE),
        "a handle on the old version must not read the new one"
    );
    drop(reader);
    std::thread::sleep(AFTER_TTL);
    assert!(
        fs::read(b.p("big")).unwrap() == big,
        "reopening reads the new version"
    );
    big
}

/// Files past 8 MiB are uploaded while they are written: in order, and
/// with a write that goes back below what was sent (the close then sends
/// the whole file again).
fn large_writes(a: &Mount, b: &Mount) {
    let ordered = data(21 << 20 | 999, 11);
    let mut f = fs::File::create(a.p("large")).unwrap();
    for piece in ordered.chunks(1 << 20) {
        f.write_all(piece).unwrap();
    }
    drop(f);
    let mut rewritten = data(19 << 20 | 5, 12);
    let mut f = fs::File::create(a.p("large-rewritten")).unwrap();
    f.write_all(&rewritten).unwrap();
    // By now the upload under way has sent what lies at 3 MiB.
    std::thread::sleep(Duration::from_millis(700));
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.write_all(b"went back").unwrap();
    rewritten[3 << 20..(3 << 20) + 9].copy_from_slice(b"went back");
    f.sync_all().unwrap();
    std::thread::sleep(AFTER_TTL);
    assert!(
        fs::read(b.p("large-rewritten")).unwrap() == rewritten,
        "large-rewritten: other bytes after going back"
    );
    // Written on after an fsync: a new version, uploaded as it grows.
    f.seek(SeekFrom::End(0)).unwrap();
    let more = data(9 << 20, 13);
    f.write_all(&more).unwrap();
    rewritten.extend_from_slice(&more);
    drop(f);
    std::thread::sleep(AFTER_TTL);
    assert!(
        fs::read(b.p("large")).unwrap() == ordered,
        "large: other bytes"
    );
    assert!(
        fs::read(b.p("large-rewritten")).unwrap() == rewritten,
        "large-rewritten: other bytes"
    );
}

/// ftruncate on an open file (shorter), truncate on a closed one (longer).
fn truncation(a: &Mount, b: &Mount, mut big: Vec<u8>) {
    {
        let f = OpenOptions::new().write(true).open(a.p("big")).unwrap();
        f.set_len((1 << 20) + 7).unwrap();
        assert_eq!(f.metadata().unwrap().len(), (1 << 20) + 7);
    }
    big.truncate((1 << 20) + 7);
    truncate(&a.p("big"), 2 << 20);
    big.resize(2 << 20, 0);
    std::thread::sleep(AFTER_TTL);
    assert_eq!(fs::metadata(b.p("big")).unwrap().len(), big.len() as u64);
    assert!(
        fs::read(b.p("big")).unwrap() == big,
        "mount B read other bytes"
    );
}

/// O_TRUNC rewrites and O_APPEND, seen elsewhere; O_EXCL on a taken name.
fn rewrites(cell: &Cell, a: &Mount, b: &Mount) {
    fs::write(a.p("small"), b"version one").unwrap();
    fs::write(a.p("small"), b"v2").unwrap();
    OpenOptions::new()
        .append(true)
        .open(a.p("small"))
        .unwrap()
        .write_all(b"+more")
        .unwrap();
    std::thread::sleep(AFTER_TTL);
    assert_eq!(fs::read(b.p("small")).unwrap(), b"v2+more");
    assert_eq!(ok(cell.wos(2, &["fs", "cat", "/small"])), "v2+more");
    let taken = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(b.p("small"));
    assert_eq!(taken.unwrap_err().kind(), ErrorKind::AlreadyExists);
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A FIFO and a device node made on A are names with attributes that B and
/// the CLI see (reading one over HTTP is refused with a clear message);
/// times set on A hold; directories count their subdirectories.
fn special_files_and_times(cell: &Cell, a: &Mount, b: &Mount) {
    fs::create_dir(a.p("sp")).unwrap();
    // SAFETY: valid paths for the calls' duration.
    unsafe {
        assert_eq!(libc::mkfifo(cstr(&a.p("sp/pipe")).as_ptr(), 0o640), 0);
        let dev = libc::makedev(4, 7);
        let mode = libc::S_IFCHR | 0o600;
        assert_eq!(libc::mknod(cstr(&a.p("sp/tty")).as_ptr(), mode, dev), 0);
    }
    fs::create_dir(a.p("sp/sub")).unwrap();
    fs::write(a.p("sp/f"), b"x").unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_millis(1_000_000_123_456);
    fs::File::options()
        .write(true)
        .open(a.p("sp/f"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(fs::metadata(a.p("sp")).unwrap().nlink(), 3);

    std::thread::sleep(AFTER_TTL);
    let pipe = fs::symlink_metadata(b.p("sp/pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&pipe.file_type()));
    assert_eq!(pipe.permissions().mode() & 0o7777, 0o640);
    let tty = fs::symlink_metadata(b.p("sp/tty")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &tty.file_type()
    ));
    assert_eq!(tty.rdev(), libc::makedev(4, 7));
    assert_eq!(fs::metadata(b.p("sp/f")).unwrap().modified().unwrap(), old);
    assert_eq!(fs::metadata(b.p("sp")).unwrap().nlink(), 3);

    let listing = ok(cell.wos(2, &["fs", "ls", "/sp"]));
    assert!(listing.contains("pipe|"), "{listing}");
    assert!(listing.contains("tty (char 4,7)"), "{listing}");
    let cat = cell.wos(2, &["fs", "cat", "/sp/pipe"]);
    assert!(!cat.status.success());
    let err = wos_testkit::text(&cat.stderr);
    assert!(err.contains("is a fifo (a special file)"), "{err}");
    for name in ["pipe", "tty", "f"] {
        fs::remove_file(a.p(&format!("sp/{name}"))).unwrap();
    }
    fs::remove_dir(a.p("sp/sub")).unwrap();
    assert_eq!(fs::metadata(a.p("sp")).unwrap().nlink(), 2);
    fs::remove_dir(a.p("sp")).unwrap();
}

fn refusals(a: &Mount) {
    assert_eq!(errno(fs::write(a.p("nowhere/x"), b"x")), Some(libc::ENOENT));
    assert_eq!(
        errno(fs::create_dir(a.p("nowhere/sub"))),
        Some(libc::ENOENT)
    );
    fs::write(a.p("plain"), b"x").unwrap();
    assert_eq!(errno(fs::create_dir(a.p("plain/sub"))), Some(libc::ENOTDIR));
    assert_eq!(
        errno(fs::hard_link(a.p("plain"), a.p("hard"))),
        Some(libc::EPERM)
    );
    fs::create_dir(a.p("dir")).unwrap();
    assert_eq!(
        errno(fs::rename(a.p("plain"), a.p("dir"))),
        Some(libc::EISDIR)
    );
    assert_eq!(
        errno(fs::rename(a.p("dir"), a.p("dir/inside"))),
        Some(libc::EINVAL)
    );
    assert_eq!(errno(fs::remove_file(a.p("dir"))), Some(libc::EISDIR));
}

/// This node's count of WebFS reads that had to ask the metadata leader.
fn leader_round_trips(cell: &Cell, via: usize) -> u64 {
    cell.counter(via, "wos_fs_leader_round_trips_total")
}

#[test]
fn reopening_a_file_through_the_mount_asks_no_leader() {
    if !can_mount() {
        eprintln!("skipped: mounting with FUSE needs root and /dev/fuse");
        return;
    }
    let cell = Cell::start(bin(), 3, 3).expect("cell starts");
    let leader = cell.status(0).and_then(|s| s.leader).expect("a leader");
    let via = (0..3)
        .find(|i| cell.hosts[*i].name != leader)
        .expect("a follower");
    let m = Mount::start(&cell, via);
    fs::create_dir(m.p("docs")).unwrap();
    fs::write(m.p("docs/note"), b"cached\n").unwrap();
    assert_eq!(fs::read(m.p("docs/note")).unwrap(), b"cached\n");
    // Past the kernel's own attribute cache: every open below reaches the
    // mount, and the mount asks its node.
    std::thread::sleep(AFTER_TTL);
    let before = leader_round_trips(&cell, via);
    for _ in 0..3 {
        assert_eq!(fs::read(m.p("docs/note")).unwrap(), b"cached\n");
        let _ = fs::metadata(m.p("docs/note")).unwrap();
        assert_eq!(names(&m.p("docs")), ["note"]);
    }
    assert_eq!(
        leader_round_trips(&cell, via),
        before,
        "re-opening an unchanged file through the mount asked the metadata leader"
    );
    // Changed through another node: the next open here reads the change.
    let local = cell.dir.path().join("new-note");
    fs::write(&local, b"changed elsewhere\n").unwrap();
    let other = (via + 1) % 3;
    ok(cell.wos(other, &["fs", "put", local.to_str().unwrap(), "/docs/note"]));
    assert_eq!(fs::read(m.p("docs/note")).unwrap(), b"changed elsewhere\n");
    m.unmount();
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    wait_for(limit, || child.try_wait().ok().flatten())
}

#[test]
fn wos_up_mounts_the_cells_files_and_unmounts_them_when_it_stops() {
    if !can_mount() {
        eprintln!("skipped: mounting with FUSE needs root and /dev/fuse");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let data_dir = tmp.path().join("data");
    let log = tmp.path().join("up.log");
    let out = fs::File::create(&log).unwrap();
    // Its own HOME: `wos up` writes the CLI's default config there.
    let mut up = Command::new(bin())
        .args([
            "up",
            "--data",
            data_dir.to_str().unwrap(),
            "--listen",
            &listen,
        ])
        .args(["--mount", mnt.to_str().unwrap()])
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("config"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let shown = wait_for(Duration::from_secs(30), || mounted(&mnt).then_some(()));
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    if shown.is_none() {
        let _ = up.kill();
        panic!("wos up --mount did not mount: {}", log_text());
    }
    fs::write(mnt.join("hello"), b"from the mount\n").unwrap();
    let identity = data_dir.join("admin.identity");
    let cat = Command::new(bin())
        .args(["--cell", &format!("https://{listen}")])
        .args(["--identity", identity.to_str().unwrap()])
        .args(["fs", "cat", "/hello"])
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert_eq!(ok(cat), "from the mount\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut up, Duration::from_secs(30));
    if status.is_none() {
        let _ = up.kill();
    }
    assert!(!mounted(&mnt), "still mounted after wos up stopped");
    assert!(
        status.is_some_and(|s| s.success()),
        "wos up: {status:?}: {}",
        log_text()
    );
}

/// The metadata log's length as node `via` has applied it.
fn applied(cell: &Cell, via: usize) -> u64 {
    cell.status(via).expect("status").applied_index
}

/// Creates through a mount that has already created in a directory are
/// answered at once and reach the cell with the first close: name and
/// content in one metadata write. They show on the other nodes from that
/// close on; whatever needs them on the cell earlier makes them there; and
/// a name taken meanwhile elsewhere fails an `O_EXCL` creator at close.
#[test]
fn creates_in_a_busy_directory_cost_one_metadata_write_and_show_at_close() {
    if !can_mount() {
        eprintln!("skipped: mounting with FUSE needs root and /dev/fuse");
        return;
    }
    let cell = Cell::start(bin(), 3, 3).expect("cell starts");
    let a = Mount::start(&cell, 0);
    let b = Mount::start(&cell, 1);
    fs::create_dir(a.p("many")).unwrap();
    fs::write(a.p("many/first"), b"first").unwrap();

    let (threads, per_thread) = (8, 25);
    let before = applied(&cell, 0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let dir = a.p("many");
            s.spawn(move || {
                for i in 0..per_thread {
                    fs::write(dir.join(format!("f-{t}-{i}")), format!("{t}/{i}")).unwrap();
                }
            });
        }
    });
    let writes = applied(&cell, 0) - before;
    let files = (threads * per_thread) as u64;
    // One per file, plus the id reservation and a little slack for the
    // cell's own bookkeeping; two per file before deferred creates.
    assert!(
        writes <= files + 10,
        "{files} new files took {writes} metadata writes"
    );
    std::thread::sleep(AFTER_TTL);
    let seen = names(&b.p("many"));
    assert_eq!(
        seen.len(),
        1 + threads * per_thread,
        "mount B lists {seen:?}"
    );
    for t in 0..threads {
        for i in [0, per_thread - 1] {
            let name = format!("many/f-{t}-{i}");
            assert_eq!(fs::read_to_string(b.p(&name)).unwrap(), format!("{t}/{i}"));
        }
    }
    let cat = ok(cell.wos(2, &["fs", "cat", "/many/f-7-24"]));
    assert_eq!(cat, "7/24");

    // Open and not yet closed: this mount lists and stats it, even after
    // its listing was fetched again; a rename makes it on the cell first.
    let mut open = fs::File::create(a.p("many/open")).unwrap();
    open.write_all(b"written before the rename").unwrap();
    std::thread::sleep(AFTER_TTL);
    assert!(names(&a.p("many")).contains(&"open".to_string()));
    assert_eq!(fs::metadata(a.p("many/open")).unwrap().len(), 25);
    fs::rename(a.p("many/open"), a.p("many/moved")).unwrap();
    drop(open);
    std::thread::sleep(AFTER_TTL);
    assert_eq!(
        fs::read_to_string(b.p("many/moved")).unwrap(),
        "written before the rename"
    );
    assert_eq!(errno(fs::metadata(b.p("many/open"))), Some(libc::ENOENT));

    // The same name made elsewhere before this mount's close: O_EXCL fails
    // at close and leaves the other file; without it, the last close wins.
    let mut excl = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(a.p("many/race"))
        .unwrap();
    let mut plain = fs::File::create(a.p("many/race2")).unwrap();
    excl.write_all(b"from A").unwrap();
    plain.write_all(b"from A").unwrap();
    fs::write(b.p("many/race"), b"from B").unwrap();
    fs::write(b.p("many/race2"), b"from B").unwrap();
    assert_eq!(errno(excl.sync_all()), Some(libc::EEXIST));
    drop(excl);
    // Its content is not dropped in silence: the close keeps it aside.
    let kept = wait_for(Duration::from_secs(10), || {
        a.log_text()
            .contains("could not be written to the cell; they are in")
            .then_some(())
    });
    assert!(kept.is_some(), "refused content not kept: {}", a.log_text());
    plain.sync_all().unwrap();
    drop(plain);
    std::thread::sleep(AFTER_TTL);
    for m in [&a, &b] {
        assert_eq!(fs::read_to_string(m.p("many/race")).unwrap(), "from B");
        assert_eq!(fs::read_to_string(m.p("many/race2")).unwrap(), "from A");
    }
    a.unmount();
    b.unmount();
}
