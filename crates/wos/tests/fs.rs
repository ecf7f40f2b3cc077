//! WebFS across a real cell: a file written through one node reads back
//! byte-identical through every node (CLI and plain HTTP), replicas and
//! repair after a crash, conditional writes racing, rights on directories,
//! and bad input that changes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use wos_api::{FsEntry, FsListing, FsckReport};
use wos_testkit::{Cell, wait_for};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wos"))
}

use wos_testkit::{expect_ok as ok, pseudo_random as data, text};

fn write_local(cell: &Cell, name: &str, bytes: &[u8]) -> PathBuf {
    let p = cell.dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn fsck(cell: &Cell, via: usize) -> FsckReport {
    let out = cell.wos(via, &["fs", "fsck", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck output: {e}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

#[test]
fn a_file_written_on_one_node_reads_the_same_on_every_node() {
    let cell = Cell::start(bin(), 3, 3).expect("cell starts");
    let bytes = data(10 << 20 | 12345, 1);
    let local = write_local(&cell, "big", &bytes);
    ok(cell.wos(0, &["fs", "mkdir", "-p", "/proj/data"]));
    let said = ok(cell.wos(0, &["fs", "put", local.to_str().unwrap(), "/proj/data/big"]));
    assert!(said.contains("version 1"), "{said}");

    for via in 0..3 {
        let back = cell.dir.path().join(format!("back-{via}"));
        ok(cell.wos(
            via,
            &["fs", "get", "/proj/data/big", back.to_str().unwrap()],
        ));
        assert!(
            std::fs::read(&back).unwrap() == bytes,
            "node {via} read other bytes"
        );
    }
    // Plain HTTP on node 3: the bytes, a range, an ETag that saves a read.
    let (cert, key, ca) = cell.pem_files(&cell.admin).unwrap();
    let _ = (cert, key, ca);
    let (code, body) = cell.curl(
        2,
        Some(&cell.admin),
        "GET",
        "/v1/fs/proj/data/big?stat=true",
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let entry: FsEntry = serde_json::from_str(&body).unwrap();
    assert_eq!(entry.size, bytes.len() as u64);
    assert_eq!(entry.chunks, 3);
    // A range across a chunk boundary (text, so that the harness's
    // string of the body is exact).
    let digits: Vec<u8> = (0..(5 << 20)).map(|i: u32| b'0' + (i % 10) as u8).collect();
    let dl = write_local(&cell, "digits", &digits);
    ok(cell.wos(0, &["fs", "put", dl.to_str().unwrap(), "/proj/digits"]));
    let (code, body) = cell.curl(
        2,
        Some(&cell.admin),
        "GET",
        "/v1/fs/proj/digits",
        &["-H", "Range: bytes=4194300-4194309"],
    );
    assert_eq!(code, 206);
    assert_eq!(body.as_bytes(), &digits[4194300..4194310]);
    ok(cell.wos(0, &["fs", "rm", "/proj/digits"]));
    let etag = format!("If-None-Match: \"{}.{}\"", entry.ino, entry.version);
    let (code, _) = cell.curl(
        2,
        Some(&cell.admin),
        "GET",
        "/v1/fs/proj/data/big",
        &["-H", &etag],
    );
    assert_eq!(code, 304);
    let (code, _) = cell.curl(
        2,
        Some(&cell.admin),
        "GET",
        "/v1/fs/proj/data/big",
        &["-H", "Range: bytes=99999999-"],
    );
    assert_eq!(code, 416);

    // Every chunk is on R = 3 nodes.
    let report = fsck(&cell, 1);
    assert!(report.healthy(), "{report:?}");
    assert_eq!(report.chunks, 3);

    // R per directory: fewer copies below /proj/two, still healthy.
    ok(cell.wos(0, &["fs", "mkdir", "/proj/two"]));
    ok(cell.wos(0, &["fs", "replicas", "/proj/two", "2"]));
    assert_eq!(
        cell.wos(0, &["fs", "replicas", "/proj/two", "0"])
            .status
            .code(),
        Some(1)
    );
    ok(cell.wos(1, &["fs", "put", local.to_str().unwrap(), "/proj/two/f"]));
    assert!(fsck(&cell, 2).healthy());
    ok(cell.wos(1, &["fs", "rm", "/proj/two/f"]));
    ok(cell.wos(1, &["fs", "rm", "/proj/two"]));

    // Listing, atomic rename, removal, via any node.
    let listing: FsListing =
        serde_json::from_slice(&cell.wos(1, &["fs", "ls", "/proj/data", "--json"]).stdout).unwrap();
    assert_eq!(listing.entries.len(), 1);
    ok(cell.wos(1, &["fs", "mv", "/proj/data/big", "/proj/big2"]));
    let out = cell.wos(2, &["fs", "stat", "/proj/data/big"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let moved: FsEntry =
        serde_json::from_slice(&cell.wos(2, &["fs", "stat", "/proj/big2", "--json"]).stdout)
            .unwrap();
    assert_eq!(moved.ino, entry.ino, "an object keeps its id when renamed");
    let out = cell.wos(0, &["fs", "rm", "/proj"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "a non-empty directory stays: {}",
        text(&out.stderr)
    );
    ok(cell.wos(0, &["fs", "rm", "/proj/big2"]));
    ok(cell.wos(0, &["fs", "rm", "/proj/data"]));
    // wos://CELL/path names the same file; another cell's name is refused.
    ok(cell.wos(0, &["fs", "put", local.to_str().unwrap(), "/x"]));
    let status = cell.status(0).unwrap();
    ok(cell.wos(1, &["fs", "stat", &format!("wos://{}/x", status.cell)]));
    let out = cell.wos(1, &["fs", "stat", "wos://other.cell/x"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not other.cell"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn racing_conditional_writes_one_wins_and_nothing_is_torn() {
    let cell = Cell::start(bin(), 3, 3).expect("cell starts");
    let v1 = write_local(&cell, "v1", &data(5 << 20, 1));
    ok(cell.wos(0, &["fs", "put", v1.to_str().unwrap(), "/f"]));
    let a = data(5 << 20, 2);
    let b = data(5 << 20, 3);
    let pa = write_local(&cell, "a", &a);
    let pb = write_local(&cell, "b", &b);
    let mut ca = cell
        .wos_command(
            0,
            &cell.admin,
            &["fs", "put", pa.to_str().unwrap(), "/f", "--if-version", "1"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cb = cell
        .wos_command(
            1,
            &cell.admin,
            &["fs", "put", pb.to_str().unwrap(), "/f", "--if-version", "1"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A reader meanwhile only ever sees one whole version.
    let v1_bytes = std::fs::read(&v1).unwrap();
    for i in 0..5 {
        let back = cell.dir.path().join(format!("during-{i}"));
        ok(cell.wos(2, &["fs", "get", "/f", back.to_str().unwrap()]));
        let got = std::fs::read(&back).unwrap();
        assert!(got == v1_bytes || got == a || got == b, "a torn read");
    }
    let ra = ca.wait().unwrap();
    let rb = cb.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    let (mut ea, mut eb) = (String::new(), String::new());
    ca.stderr.take().unwrap().read_to_string(&mut ea).unwrap();
    cb.stderr.take().unwrap().read_to_string(&mut eb).unwrap();
    err.push_str(&ea);
    err.push_str(&eb);
    assert_eq!(
        [ra.success(), rb.success()].iter().filter(|s| **s).count(),
        1,
        "exactly one writer wins: {err}"
    );
    let loser = if ra.success() { rb } else { ra };
    assert_eq!(loser.code(), Some(5), "{err}");
    assert!(err.contains("someone else committed first"), "{err}");
    let back = cell.dir.path().join("after");
    ok(cell.wos(2, &["fs", "get", "/f", back.to_str().unwrap()]));
    let got = std::fs::read(&back).unwrap();
    assert!(got == a || got == b);
    let e: FsEntry =
        serde_json::from_slice(&cell.wos(2, &["fs", "stat", "/f", "--json"]).stdout).unwrap();
    assert_eq!(e.version, 2);
    // A conditional write on a missing file changes nothing.
    let out = cell.wos(
        0,
        &[
            "fs",
            "put",
            pa.to_str().unwrap(),
            "/nope",
            "--if-version",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(cell.wos(0, &["fs", "stat", "/nope"]).status.code(), Some(4));
}

/// This node's count of WebFS reads that had to ask the metadata leader.
fn leader_round_trips(cell: &Cell, via: usize) -> u64 {
    cell.counter(via, "wos_fs_leader_round_trips_total")
}

/// Reads `/cb/f` through `via`'s gateway: its bytes, its stat and its
/// directory's listing, as a program opening it does.
fn open_cb(cell: &Cell, via: usize) -> String {
    let (code, body) = cell.curl(via, Some(&cell.admin), "GET", "/v1/fs/cb?stat=true", &[]);
    assert_eq!(code, 200, "{body}");
    let (code, body) = cell.curl(via, Some(&cell.admin), "GET", "/v1/fs/cb", &[]);
    assert_eq!(code, 200, "{body}");
    let (code, body) = cell.curl(via, Some(&cell.admin), "GET", "/v1/fs/cb/f?stat=true", &[]);
    assert_eq!(code, 200, "{body}");
    let (code, body) = cell.curl(via, Some(&cell.admin), "GET", "/v1/fs/cb/f", &[]);
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn reopening_an_unchanged_file_asks_no_leader_and_changes_show_at_once() {
    let cell = Cell::start(bin(), 3, 3).expect("cell starts");
    let leader = cell.status(0).and_then(|s| s.leader).expect("a leader");
    // Read through a node that does not lead: its replica is the cache.
    let via = (0..3)
        .find(|i| cell.hosts[*i].name != leader)
        .expect("a follower");
    let writer = (via + 1) % 3;
    let v1 = write_local(&cell, "v1", b"first version\n");
    ok(cell.wos(writer, &["fs", "mkdir", "/cb"]));
    // Two copies: writes still complete while one node is cut off below.
    ok(cell.wos(writer, &["fs", "replicas", "/cb", "2"]));
    ok(cell.wos(writer, &["fs", "put", v1.to_str().unwrap(), "/cb/f"]));

    assert_eq!(open_cb(&cell, via), "first version\n");
    let before = leader_round_trips(&cell, via);
    for _ in 0..3 {
        assert_eq!(open_cb(&cell, via), "first version\n");
    }
    assert_eq!(
        leader_round_trips(&cell, via),
        before,
        "re-opening an unchanged file asked the metadata leader"
    );

    // A change through another node: the very next open here sees it.
    let v2 = write_local(&cell, "v2", b"second version\n");
    ok(cell.wos(writer, &["fs", "put", v2.to_str().unwrap(), "/cb/f"]));
    assert_eq!(open_cb(&cell, via), "second version\n");
    assert!(leader_round_trips(&cell, via) > before);
    // And a new name in the directory shows in its next listing.
    ok(cell.wos(writer, &["fs", "put", v1.to_str().unwrap(), "/cb/g"]));
    let (code, body) = cell.curl(via, Some(&cell.admin), "GET", "/v1/fs/cb", &[]);
    assert_eq!(code, 200, "{body}");
    let listing: FsListing = serde_json::from_str(&body).unwrap();
    assert!(listing.entries.iter().any(|e| e.name == "g"), "{body}");

    // One copy only: two nodes read it from the third, then from their
    // own chunk cache.
    ok(cell.wos(writer, &["fs", "mkdir", "/one"]));
    ok(cell.wos(writer, &["fs", "replicas", "/one", "1"]));
    let big = data(5 << 20, 3);
    let local = write_local(&cell, "one", &big);
    ok(cell.wos(writer, &["fs", "put", local.to_str().unwrap(), "/one/f"]));
    let hits = |i: usize| cell.counter(i, "wos_fs_chunk_cache_total{result=\"hit\"}");
    let hits_before: u64 = (0..3).map(hits).sum();
    for _ in 0..2 {
        for i in 0..3 {
            let back = cell.dir.path().join(format!("one-{i}"));
            ok(cell.wos(i, &["fs", "get", "/one/f", back.to_str().unwrap()]));
            assert!(
                std::fs::read(&back).unwrap() == big,
                "node {i} read other bytes"
            );
        }
    }
    // Two chunks, read a second time by the two nodes that lack them (the
    // cache is filled in the background: allow a late first fill).
    let hits_after: u64 = (0..3).map(hits).sum();
    assert!(
        hits_after - hits_before >= 2,
        "no chunk came from a node's cache ({hits_before} -> {hits_after})"
    );

    if !cell.can_partition() {
        return;
    }
    // A caching node cut off from the cell: the write still completes (its
    // callback runs out instead of being broken), and the cut-off node
    // never serves the version it cached once its lease has run out.
    let before = open_cb(&cell, via);
    cell.partition(via).unwrap();
    let v3 = write_local(&cell, "v3", b"third version\n");
    ok(cell.wos(writer, &["fs", "put", v3.to_str().unwrap(), "/cb/f"]));
    let (code, body) = cell.curl(via, Some(&cell.admin), "GET", "/v1/fs/cb/f", &[]);
    assert!(
        code != 200 || body == "third version\n",
        "a cut-off node served {body:?} (had {before:?}) after a newer write was acknowledged"
    );
    cell.heal(via).unwrap();
    let back = wait_for(Duration::from_secs(30), || {
        let (code, body) = cell.curl(via, Some(&cell.admin), "GET", "/v1/fs/cb/f", &[]);
        (code == 200).then_some(body)
    });
    assert_eq!(back.as_deref(), Some("third version\n"));
}

#[test]
fn acknowledged_writes_survive_a_crash_and_repair_restores_replicas() {
    let mut cell = Cell::start(bin(), 4, 3).expect("cell starts");
    let mut files = vec![];
    for i in 0..4 {
        let bytes = data((3 << 20) + i * 1000, 10 + i as u32);
        let p = write_local(&cell, &format!("f{i}"), &bytes);
        ok(cell.wos(0, &["fs", "put", p.to_str().unwrap(), &format!("/f{i}")]));
        files.push(bytes);
    }
    // Node 4 (a worker) holds replicas of some chunks: kill it while
    // writing more.
    let victim = 3;
    cell.crash(victim);
    for i in 4..6 {
        let bytes = data(1 << 20, 20 + i as u32);
        let p = write_local(&cell, &format!("f{i}"), &bytes);
        // Written while the dead node may still be thought alive: retried
        // chunk stores move on to the next node.
        ok(cell.wos(1, &["fs", "put", p.to_str().unwrap(), &format!("/f{i}")]));
        files.push(bytes);
    }
    for (i, bytes) in files.iter().enumerate() {
        let back = cell.dir.path().join(format!("back{i}"));
        ok(cell.wos(2, &["fs", "get", &format!("/f{i}"), back.to_str().unwrap()]));
        assert!(&std::fs::read(&back).unwrap() == bytes, "file {i} changed");
    }
    // Once membership declares the node dead, repair brings every chunk
    // back to R = 3 on the three live nodes.
    let report = wait_for(Duration::from_secs(60), || {
        let r = fsck(&cell, 0);
        (r.healthy() && r.nodes_asked.len() == 3 && r.nodes_unreachable.is_empty()).then_some(r)
    })
    .unwrap_or_else(|| panic!("fsck never healthy: {:?}\n{}", fsck(&cell, 0), cell.logs()));
    assert_eq!(report.files, 6);
}

#[test]
fn rights_on_directories_hold_on_every_path() {
    let cell = Cell::start(bin(), 2, 2).expect("cell starts");
    let bob = cell.dir.path().join("bob.identity");
    ok(cell.wos(0, &["user", "add", "bob", "--out", bob.to_str().unwrap()]));
    let secret = write_local(&cell, "s", b"secret");
    ok(cell.wos(0, &["fs", "mkdir", "-p", "/private"]));
    ok(cell.wos(0, &["fs", "put", secret.to_str().unwrap(), "/private/s"]));
    for args in [
        vec!["fs", "ls", "/private"],
        vec!["fs", "cat", "/private/s"],
        vec!["fs", "put", secret.to_str().unwrap(), "/private/t"],
        vec!["fs", "rm", "/private/s"],
    ] {
        let out = cell.wos_as(1, &bob, &args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("lacks"), "{}", text(&out.stderr));
    }
    let (code, _) = cell.curl(1, Some(&bob), "GET", "/v1/fs/private/s", &[]);
    assert_eq!(code, 403);
    let (code, _) = cell.curl(
        1,
        Some(&bob),
        "PUT",
        "/v1/fs/private/t",
        &["--data-binary", "x"],
    );
    assert_eq!(code, 403);
    // Read granted on the directory: reads, still no writes, and not the
    // neighbour whose name shares a prefix.
    ok(cell.wos(0, &["acl", "set", "fs:/private", "bob", "read"]));
    ok(cell.wos(0, &["fs", "mkdir", "/privateer"]));
    assert_eq!(
        ok(cell.wos_as(1, &bob, &["fs", "cat", "/private/s"])),
        "secret"
    );
    let out = cell.wos_as(
        1,
        &bob,
        &["fs", "put", secret.to_str().unwrap(), "/private/t"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        cell.wos_as(1, &bob, &["fs", "ls", "/privateer"])
            .status
            .code(),
        Some(3)
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let cell = Cell::start(bin(), 2, 2).expect("cell starts");
    ok(cell.wos(0, &["fs", "mkdir", "/d"]));
    let before = ok(cell.wos(0, &["fs", "ls", "/", "--json"]));
    for (path, why) in [
        ("/v1/fs/d/..%2F..%2Fetc", "'..'"),
        ("/v1/fs/d/%2E%2E/x", "'..'"),
        ("/v1/fs/d/a%00b", "NUL"),
    ] {
        let (code, body) = cell.curl(
            0,
            None.or(Some(&cell.admin)),
            "PUT",
            path,
            &["--data-binary", "x"],
        );
        assert_eq!(code, 400, "{path}: {body}");
        assert!(
            body.contains(why) || body.contains("may not") || body.contains("invalid"),
            "{path}: {body}"
        );
    }
    let long = "n".repeat(300);
    let (code, body) = cell.curl(
        0,
        Some(&cell.admin),
        "PUT",
        &format!("/v1/fs/d/{long}"),
        &["--data-binary", "x"],
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("255"), "{body}");
    let (code, _) = cell.curl(
        0,
        Some(&cell.admin),
        "PUT",
        "/v1/fs/missing/dir/f",
        &["--data-binary", "x"],
    );
    assert_eq!(code, 404);

    // An upload cut off midway (the client dies) commits nothing.
    let mut child = cell
        .wos_command(0, &cell.admin, &["fs", "put", "-", "/d/cut"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data(6 << 20, 9)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    let _ = child.wait();
    drop(stdin);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        cell.wos(0, &["fs", "stat", "/d/cut"]).status.code(),
        Some(4)
    );
    assert_eq!(ok(cell.wos(0, &["fs", "ls", "/", "--json"])), before);
}

/// Peak resident set (VmHWM) and current (VmRSS) of a process, KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Runs a CLI command to its end, sampling its resident memory; returns the
/// largest sample (KiB).
fn run_sampling(cell: &Cell, via: usize, args: &[&str]) -> u64 {
    let mut child = cell
        .wos_command(via, &cell.admin, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    // `nsenter` execs wos, so the child's pid is the CLI's.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        if let Some((_, rss)) = memory_kib(child.id()) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "wos {args:?}: {err}");
            return peak;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "wos {args:?} took over 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hash_file(path: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).unwrap()).unwrap();
    h.finalize()
}

#[test]
fn a_2_gib_file_round_trips_and_no_memory_grows_with_it() {
    let cell = Cell::start(bin(), 3, 3).expect("cell starts");
    let big = cell.dir.path().join("big");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        for block in 0..256u32 {
            f.write_all(&data(8 << 20, block + 1)).unwrap();
        }
    }
    let sent = hash_file(&big);
    let nodes_before: Vec<u64> = (0..3)
        .map(|i| memory_kib(cell.pid(i).unwrap().as_raw() as u32).unwrap().1)
        .collect();
    let put_peak = run_sampling(&cell, 0, &["fs", "put", big.to_str().unwrap(), "/big"]);
    std::fs::remove_file(&big).unwrap();
    let back = cell.dir.path().join("back");
    let get_peak = run_sampling(&cell, 1, &["fs", "get", "/big", back.to_str().unwrap()]);
    assert_eq!(hash_file(&back), sent, "the 2 GiB file came back different");
    std::fs::remove_file(&back).unwrap();
    eprintln!("CLI resident memory: put {put_peak} KiB, get {get_peak} KiB");
    assert!(put_peak < 200 << 10, "wos fs put held {put_peak} KiB");
    assert!(get_peak < 200 << 10, "wos fs get held {get_peak} KiB");
    for (i, before) in nodes_before.iter().enumerate() {
        let (peak, _) = memory_kib(cell.pid(i).unwrap().as_raw() as u32).unwrap();
        eprintln!("node {i}: {before} KiB before, peak {peak} KiB");
        assert!(
            peak < before + (256 << 10),
            "node {i} grew from {before} KiB to a peak of {peak} KiB for a 2 GiB file"
        );
    }
}
