//! The cell, tested with real `wos` processes as separate hosts (network
//! namespaces as root, loopback otherwise): formation, failure detection,
//! leader failover, partitions, full restarts, authentication and bad input.
//! Each test's comment names the promise of GUARANTEES.md it holds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wos_api::{NodeState, Status};
use wos_testkit::{Cell, wait_for};

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_wos"))
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The leader's name as node `via` reports it.
fn leader_seen(cell: &Cell, via: usize) -> Option<String> {
    cell.status(via).and_then(|s: Status| s.leader)
}

fn kv_put(cell: &Cell, via: usize, key: &str, value: &str) -> bool {
    cell.wos(via, &["kv", "put", key, value]).status.success()
}

fn kv_get_stale(cell: &Cell, via: usize, key: &str) -> Option<String> {
    let o = cell.wos(via, &["kv", "get", "--stale", key]);
    o.status.success().then(|| stdout(&o).trim().to_string())
}

/// G1: a 3-node cell forms and every node lists all 3 alive within 5 s.
#[test]
fn three_nodes_form_a_cell_and_all_see_each_other_alive() {
    let mut cell = Cell::prepare(bin(), 3).unwrap();
    cell.init_first().unwrap();
    cell.start_node(0).unwrap();
    cell.wait_api(0, Duration::from_secs(15)).unwrap();
    cell.join_node(1, true).unwrap();
    cell.join_node(2, true).unwrap();
    let took = cell.wait_all_alive(Duration::from_secs(5));
    assert!(
        took.is_some(),
        "not all alive on all nodes within 5 s:\n{}",
        cell.logs()
    );
    // Everyone agrees on one leader and three voters.
    let statuses: Vec<Status> = (0..3).map(|i| cell.status(i).unwrap()).collect();
    let leader = statuses[0].leader.clone().expect("a leader");
    for s in &statuses {
        assert_eq!(s.leader.as_ref(), Some(&leader));
        assert_eq!(s.nodes.alive, 3);
    }
    let voters = wait_for(Duration::from_secs(10), || {
        cell.status(0)
            .filter(|s| s.voters.len() == 3)
            .map(|s| s.voters)
    });
    assert!(
        voters.is_some(),
        "the two --core joiners did not become voters:\n{}",
        cell.logs()
    );
    // The JSON listing has the documented fields.
    let raw = stdout(&cell.wos(2, &["node", "ls", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    for n in v.as_array().unwrap() {
        for field in ["name", "address", "role", "state"] {
            assert!(n.get(field).is_some(), "missing {field} in {n}");
        }
        assert_eq!(n["state"], "alive");
    }
}

/// G2: a SIGKILLed node is marked dead by the others within 10 s; restarted,
/// it is alive again and has caught up with writes made while it was down.
#[test]
fn crashed_node_is_declared_dead_and_rejoins_caught_up() {
    let mut cell = Cell::start(bin(), 3, 3).unwrap();
    cell.crash(2);
    let crashed_at = Instant::now();
    let dead = wait_for(Duration::from_secs(10), || {
        let seen = |via| cell.state_seen(via, "node-3") == Some(NodeState::Dead);
        (seen(0) && seen(1)).then(|| crashed_at.elapsed())
    });
    assert!(
        dead.is_some(),
        "node-3 not dead on both survivors within 10 s:\n{}",
        cell.logs()
    );
    // Suspect comes before dead: the detector is SWIM, not a timeout.
    assert!(
        kv_put(&cell, 0, "while-down", "v1"),
        "write with one node down failed"
    );

    cell.start_node(2).unwrap();
    let alive = cell.wait_all_alive(Duration::from_secs(15));
    assert!(
        alive.is_some(),
        "restarted node not alive everywhere:\n{}",
        cell.logs()
    );
    let caught_up = wait_for(Duration::from_secs(10), || {
        (kv_get_stale(&cell, 2, "while-down").as_deref() == Some("v1")).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "restarted node did not catch up:\n{}",
        cell.logs()
    );
}

/// G3: SIGKILL the leader: a new leader within 5 s, writes go on, and no
/// acknowledged write is lost.
#[test]
fn leader_crash_elects_a_new_leader_and_loses_no_acknowledged_write() {
    let cell = Cell::start(bin(), 3, 3).unwrap();
    let old = leader_seen(&cell, 0).expect("a leader");
    let old_i = cell.index_of(&old);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old_i).collect();

    // A writer on a survivor keeps writing through the crash; it records
    // exactly the writes the cell acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cell = Arc::new(Mutex::new(cell));
    let writer = {
        let (cell, acked, stop) = (cell.clone(), acked.clone(), stop.clone());
        let via = survivors[0];
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 400 {
                let key = format!("w/{i}");
                let out = {
                    let c = cell.lock().unwrap();
                    c.wos(via, &["kv", "put", &key, &i.to_string()])
                };
                if out.status.success() {
                    acked.lock().unwrap().push(key);
                }
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let crashed_at = {
        let mut c = cell.lock().unwrap();
        c.crash(old_i);
        Instant::now()
    };
    let new_leader = wait_for(Duration::from_secs(5), || {
        let c = cell.lock().unwrap();
        let l = leader_seen(&c, survivors[1])?;
        (l != old).then_some((l, crashed_at.elapsed()))
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let cell = cell.lock().unwrap();
    assert!(
        new_leader.is_some(),
        "no new leader within 5 s:\n{}",
        cell.logs()
    );
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 5,
        "too few writes acknowledged: {}",
        acked.len()
    );
    // Every acknowledged write is there, read linearizably from the other survivor.
    for key in &acked {
        let out = cell.wos(survivors[1], &["kv", "get", key]);
        assert!(
            out.status.success(),
            "acknowledged write {key} lost: {}",
            stderr(&out)
        );
    }
    assert!(
        kv_put(&cell, survivors[1], "after", "x"),
        "writes do not go on after failover"
    );
}

/// G4: partition one core node of three: the majority goes on; on the cut-off
/// node, requests that need the leader fail with a clear error in bounded
/// time; after healing it converges.
#[test]
fn partitioned_minority_fails_fast_and_converges_after_heal() {
    let cell = Cell::start(bin(), 3, 3).unwrap();
    if !cell.can_partition() {
        eprintln!("skipped: partitions need root (network namespaces)");
        return;
    }
    let leader = leader_seen(&cell, 0).expect("a leader");
    let leader_i = cell.index_of(&leader);
    let cut = (0..3).find(|i| *i != leader_i).unwrap();
    let other = (0..3).find(|i| *i != leader_i && *i != cut).unwrap();
    cell.partition(cut).unwrap();

    assert!(
        kv_put(&cell, other, "during", "majority"),
        "majority cannot write:\n{}",
        cell.logs()
    );
    let started = Instant::now();
    let out = cell.wos(cut, &["kv", "put", "minority", "x"]);
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(6),
        "expected exit 6 (unavailable): {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("no metadata leader"),
        "unclear error: {}",
        stderr(&out)
    );
    assert!(
        took < Duration::from_secs(10),
        "minority write took {took:?}"
    );
    let out = cell.wos(cut, &["kv", "get", "during"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "linearizable read on the minority: {}",
        stderr(&out)
    );
    // What the minority node can do alone still works: its own view.
    assert!(cell.status(cut).is_some());

    cell.heal(cut).unwrap();
    let converged = wait_for(Duration::from_secs(30), || {
        (kv_get_stale(&cell, cut, "during").as_deref() == Some("majority")).then_some(())
    });
    assert!(
        converged.is_some(),
        "healed node did not converge:\n{}",
        cell.logs()
    );
    assert!(
        kv_put(&cell, cut, "healed", "x"),
        "healed node cannot write"
    );
    assert!(
        cell.wos(other, &["kv", "get", "minority"]).status.code() == Some(4),
        "refused write was applied"
    );
}

/// G5: stop every node, start them again: the cell resumes with all metadata.
#[test]
fn full_stop_and_start_resumes_with_all_metadata() {
    let mut cell = Cell::start(bin(), 3, 3).unwrap();
    for i in 0..20 {
        assert!(kv_put(&cell, i % 3, &format!("k/{i}"), &format!("v{i}")));
    }
    let alice = cell.dir.path().join("alice.identity");
    let out = cell.wos(
        0,
        &["user", "add", "alice", "--out", alice.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..3 {
        cell.stop(i);
    }
    for i in 0..3 {
        cell.start_node(i).unwrap();
    }
    assert!(
        cell.wait_all_alive(Duration::from_secs(30)).is_some(),
        "{}",
        cell.logs()
    );
    for i in 0..20 {
        let out = cell.wos(i % 3, &["kv", "get", &format!("k/{i}")]);
        assert!(out.status.success(), "k/{i} lost: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), format!("v{i}"));
    }
    let out = cell.wos_as(1, &alice, &["status"]);
    assert!(out.status.success(), "alice lost: {}", stderr(&out));

    // A node whose private key others can read refuses to start.
    use std::os::unix::fs::PermissionsExt;
    cell.stop(2);
    let key = cell.hosts[2].data.join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    cell.start_node(2).unwrap();
    let refused = wait_for(Duration::from_secs(10), || {
        cell.log(2).contains("chmod 600").then_some(())
    });
    assert!(
        refused.is_some(),
        "node started with an exposed key:\n{}",
        cell.log(2)
    );
}

/// G6: a wrong or expired join token, a client with no credentials and a
/// plain user calling an admin action are refused with 401/403 and a message,
/// and change nothing.
#[test]
fn bad_tokens_anonymous_clients_and_plain_users_are_refused() {
    let mut cell = Cell::prepare(bin(), 3).unwrap();
    cell.init_first().unwrap();
    cell.start_node(0).unwrap();
    cell.wait_api(0, Duration::from_secs(15)).unwrap();

    // A token of another cell: the joiner sees the CA fingerprint differ and
    // refuses to send its secret at all.
    let good = cell.token.clone();
    let mut parts: Vec<&str> = good.split('.').collect();
    let other_fp = "ab".repeat(32);
    parts[1] = &other_fp;
    cell.token = parts.join(".");
    cell.join_node(1, false).unwrap();
    let refused = wait_for(Duration::from_secs(15), || {
        let log = cell.log(1);
        log.contains("fingerprint mismatch").then_some(())
    });
    assert!(
        refused.is_some(),
        "foreign token not refused:\n{}",
        cell.logs()
    );
    cell.crash(1);
    assert!(
        !cell.hosts[1].data.join("node.toml").exists(),
        "a refused join left node state behind"
    );

    // A wrong secret (same cell, so the CA check passes and the cell judges it).
    let (prefix, _) = good.rsplit_once('.').unwrap();
    cell.token = format!("{prefix}.{}", "0".repeat(32));
    cell.join_node(1, false).unwrap();
    let refused = wait_for(Duration::from_secs(15), || {
        let log = cell.log(1);
        log.contains("refused to admit").then_some(log)
    });
    let log = refused.unwrap_or_else(|| panic!("wrong token not refused:\n{}", cell.logs()));
    assert!(log.contains("401"), "{log}");
    assert!(log.contains("wrong secret"), "{log}");

    // An expired token.
    let out = cell.wos(0, &["token", "create", "--ttl", "1s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    cell.token = stdout(&out).lines().last().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(2));
    cell.crash(1);
    cell.join_node(2, false).unwrap();
    let refused = wait_for(Duration::from_secs(15), || {
        let log = cell.log(2);
        log.contains("refused to admit").then_some(log)
    });
    let log = refused.unwrap_or_else(|| panic!("expired token not refused:\n{}", cell.logs()));
    assert!(log.contains("expired"), "{log}");
    let nodes = cell.node_ls(0).unwrap();
    assert_eq!(nodes.len(), 1, "a refused join changed the cell: {nodes:?}");

    // No credentials at all.
    let (code, body) = cell.curl(0, None, "GET", "/v1/status", &[]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("no credentials"), "{body}");
    let (code, _) = cell.curl(
        0,
        None,
        "PUT",
        "/v1/kv/x",
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"value":"v"}"#,
        ],
    );
    assert_eq!(code, 401);

    // A plain user reads status but cannot add users or tokens.
    let alice = cell.dir.path().join("alice.identity");
    let out = cell.wos(
        0,
        &["user", "add", "alice", "--out", alice.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cell.wos_as(0, &alice, &["status"]).status.success());
    let bob = cell.dir.path().join("bob.identity");
    let out = cell.wos_as(
        0,
        &alice,
        &["user", "add", "bob", "--out", bob.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("may not administer"),
        "{}",
        stderr(&out)
    );
    assert!(!bob.exists());
    let out = cell.wos_as(0, &alice, &["token", "create"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let (code, body) = cell.curl(0, Some(&alice), "POST", "/v1/nodes/node-1/demote", &[]);
    assert_eq!(code, 403, "{body}");
    // Nothing changed: bob does not exist (the admin can create him), the
    // node is still core.
    let out = cell.wos(0, &["user", "add", "bob", "--out", bob.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cell.status(0).unwrap().voters, vec!["node-1".to_string()]);
    // Every decision above is in the audit log, denials with their reason.
    let audit: Vec<wos_api::AuditEntry> = wait_for(Duration::from_secs(5), || {
        let all: Vec<wos_api::AuditEntry> =
            cell.wos_json(0, &["audit", "--principal", "user:alice", "--json"])?;
        (all.iter().filter(|e| !e.allowed).count() >= 3).then_some(all)
    })
    .expect("alice's denials in the audit log");
    assert!(
        audit.iter().any(|e| !e.allowed
            && e.action == "Administer"
            && e.reason.contains("may not administer")),
        "{audit:?}"
    );
    assert!(audit.iter().all(|e| e.principal == "user:alice"));
    let anon: Vec<wos_api::AuditEntry> = cell
        .wos_json(0, &["audit", "--principal", "anonymous", "--json"])
        .unwrap();
    assert!(
        anon.iter()
            .any(|e| !e.allowed && e.reason.contains("no credentials")),
        "{anon:?}"
    );
    let joins: Vec<wos_api::AuditEntry> = cell.wos_json(0, &["audit", "--json"]).unwrap();
    assert!(
        joins.iter().any(|e| e.action == "Join"),
        "joins are audited"
    );
    let out = cell.wos_as(0, &alice, &["audit"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a plain user read the audit log"
    );
    // A user identity file readable by others is refused by the CLI.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&alice, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cell.wos_as(0, &alice, &["status"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

/// G7: malformed requests get a 4xx with a message, never a crash.
#[test]
fn malformed_requests_get_4xx_with_a_message() {
    let cell = Cell::start(bin(), 1, 1).unwrap();
    let admin = cell.admin.clone();
    let json = ["-H", "content-type: application/json"];
    let cases: Vec<(&str, &str, Vec<&str>, u16, &str)> = vec![
        (
            "PUT",
            "/v1/kv/a",
            vec!["-d", "{not json"],
            400,
            "invalid request body",
        ),
        (
            "PUT",
            "/v1/kv/a",
            vec!["-d", r#"{"value":"x","bogus":1}"#],
            422,
            "unknown field",
        ),
        (
            "PUT",
            "/v1/kv/a",
            vec!["-d", r#"{"value":7}"#],
            422,
            "invalid type",
        ),
        (
            "PUT",
            "/v1/kv/a//b",
            vec!["-d", r#"{"value":"x"}"#],
            400,
            "invalid key",
        ),
        (
            "POST",
            "/v1/tokens",
            vec!["-d", r#"{"ttl_secs":0}"#],
            400,
            "ttl_secs",
        ),
        (
            "POST",
            "/v1/users",
            vec!["-d", r#"{"name":"Bad Name","public_key_pem":"x"}"#],
            400,
            "invalid name",
        ),
        (
            "POST",
            "/v1/users",
            vec!["-d", r#"{"name":"carol","public_key_pem":"not a key"}"#],
            400,
            "public key",
        ),
        (
            "POST",
            "/v1/nodes/nobody/promote",
            vec![],
            404,
            "no node named",
        ),
        ("GET", "/v1/nothing-here", vec![], 404, "no such endpoint"),
        (
            "POST",
            "/internal/raft/append",
            vec!["-d", "garbage"],
            403,
            "may not",
        ),
    ];
    for (method, path, extra, want, needle) in cases {
        let mut args: Vec<&str> = json.to_vec();
        args.extend(extra);
        let (code, body) = cell.curl(0, Some(&admin), method, path, &args);
        assert_eq!(code, want, "{method} {path}: {body}");
        let msg: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        let text = msg["error"].as_str().unwrap_or_default();
        assert!(
            text.to_lowercase().contains(needle),
            "{method} {path}: {text}"
        );
    }
    // Missing content type.
    let (code, _) = cell.curl(
        0,
        Some(&admin),
        "PUT",
        "/v1/kv/a",
        &["-d", r#"{"value":"x"}"#],
    );
    assert_eq!(code, 415);
    // A huge body is cut off at the limit. (Over HTTP/1.1: curl 7.x reports
    // the HTTP/2 stream reset that follows an early answer as an error.)
    let big = cell.dir.path().join("big.json");
    std::fs::write(&big, format!(r#"{{"value":"{}"}}"#, "x".repeat(3 << 20))).unwrap();
    let at = format!("@{}", big.display());
    let (code, body) = cell.curl(
        0,
        Some(&admin),
        "PUT",
        "/v1/kv/a",
        &[
            "--http1.1",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &at,
        ],
    );
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("too large"), "{body}");
    // Plain garbage on the TLS port does not hurt the node.
    let host = cell.hosts[0].addr.clone();
    let (h, p) = host.rsplit_once(':').unwrap();
    let _ = cell.exec(
        0,
        "bash",
        &[
            "-c",
            &format!("head -c 100000 /dev/urandom > /dev/tcp/{h}/{p}"),
        ],
    );
    // Metrics are served in Prometheus text format to principals of the cell.
    let (code, body) = cell.curl(0, Some(&admin), "GET", "/metrics", &[]);
    assert_eq!(code, 200);
    assert!(body.contains("wos_raft_term"), "{body}");
    assert!(body.contains("wos_http_requests_total"), "{body}");
    // Nothing above changed the cell, and it still serves.
    let out = cell.wos(0, &["kv", "get", "a"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a refused write was applied: {}",
        stdout(&out)
    );
    assert!(cell.status(0).is_some(), "node died:\n{}", cell.logs());
    assert!(kv_put(&cell, 0, "a", "ok"));
}

/// G8: `wos node promote` / `demote` change the voter set; a promoted worker
/// receives the CA key; a worker without the CA key still serves requests
/// that need it (it asks a core node).
#[test]
fn promote_and_demote_change_the_voters() {
    let cell = Cell::start(bin(), 3, 1).unwrap();
    assert_eq!(cell.status(0).unwrap().voters, vec!["node-1".to_string()]);
    assert!(
        !cell.hosts[1].data.join("ca.key").exists(),
        "a worker got the CA key"
    );
    // A worker forwards certificate issuing to a core node.
    let dave = cell.dir.path().join("dave.identity");
    let out = cell.wos(2, &["user", "add", "dave", "--out", dave.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "user add through a worker: {}",
        stderr(&out)
    );
    assert!(cell.wos_as(2, &dave, &["status"]).status.success());

    for name in ["node-2", "node-3"] {
        let out = cell.wos(1, &["node", "promote", name]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let three = wait_for(Duration::from_secs(20), || {
        cell.status(2).filter(|s| s.voters.len() == 3)
    });
    assert!(
        three.is_some(),
        "promotions did not take effect:\n{}",
        cell.logs()
    );
    let key = wait_for(Duration::from_secs(20), || {
        cell.hosts[1].data.join("ca.key").exists().then_some(())
    });
    assert!(
        key.is_some(),
        "promoted node did not receive the CA key:\n{}",
        cell.logs()
    );
    let nodes = cell.node_ls(0).unwrap();
    assert!(
        nodes.iter().all(|n| n.role == wos_api::Role::Core),
        "{nodes:?}"
    );

    let out = cell.wos(0, &["node", "demote", "node-3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let two = wait_for(Duration::from_secs(20), || {
        cell.status(0)
            .filter(|s| s.voters.len() == 2 && !s.voters.contains(&"node-3".to_string()))
    });
    assert!(
        two.is_some(),
        "demotion did not take effect:\n{}",
        cell.logs()
    );
    // The demoted node still replicates and answers.
    assert!(kv_put(&cell, 0, "after-demote", "y"));
    let seen = wait_for(Duration::from_secs(10), || {
        (kv_get_stale(&cell, 2, "after-demote").as_deref() == Some("y")).then_some(())
    });
    assert!(seen.is_some(), "demoted node stopped replicating");
    // Unknown nodes and demoting the last voter are refused.
    assert_eq!(
        cell.wos(0, &["node", "promote", "nobody"]).status.code(),
        Some(4)
    );
}

/// Starts `wos up ARGS` with its own HOME and XDG directories; returns the
/// child and the line-reader of its stdout.
fn spawn_up(
    home: &std::path::Path,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(bin())
        .arg("up")
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env_remove("WOS_CELL")
        .env_remove("WOS_IDENTITY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wos_plain(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("WOS_CELL")
        .env_remove("WOS_IDENTITY")
        .output()
        .unwrap()
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn interrupt_and_wait(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = wait_for(Duration::from_secs(15), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
    }
    status
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// G9: `wos up` with no configuration starts a working single-node cell that
/// the CLI finds by itself; Ctrl-C stops it cleanly; `wos up` again resumes
/// the same cell with everything it held.
#[test]
fn wos_up_starts_a_cell_the_cli_finds_and_resumes_it() {
    let home = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut child, rx) = spawn_up(home.path(), &["--listen", &listen]);
    assert!(wait_line(&rx, "wos is up"), "wos up did not come up");
    let out = wos_plain(home.path(), &["status", "--json"]);
    assert!(out.status.success(), "CLI without flags: {}", stderr(&out));
    let s: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.cell, "local");
    let out = wos_plain(home.path(), &["kv", "put", "kept", "across-restarts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = interrupt_and_wait(&mut child);
    assert!(
        status.is_some_and(|s| s.success()),
        "Ctrl-C did not stop wos up cleanly: {status:?}"
    );

    let (mut child, rx) = spawn_up(home.path(), &["--listen", &listen]);
    assert!(
        wait_line(&rx, "wos is up: resumed"),
        "wos up did not resume"
    );
    let out = wos_plain(home.path(), &["kv", "get", "kept"]);
    assert_eq!(stdout(&out).trim(), "across-restarts", "{}", stderr(&out));
    assert!(interrupt_and_wait(&mut child).is_some_and(|s| s.success()));
}

/// G10: `wos up --nodes 3` starts a local cell of three separate processes
/// with distinct addresses, all core and alive.
#[test]
fn wos_up_nodes_3_starts_a_local_three_node_cell() {
    let home = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut child, rx) = spawn_up(home.path(), &["--nodes", "3", "--listen", &listen]);
    assert!(
        wait_line(&rx, "wos is up"),
        "wos up --nodes 3 did not come up"
    );
    let formed = wait_for(Duration::from_secs(20), || {
        let out = wos_plain(home.path(), &["node", "ls", "--json"]);
        let nodes: Vec<wos_api::NodeInfo> = serde_json::from_slice(&out.stdout).ok()?;
        let ok = nodes.len() == 3
            && nodes
                .iter()
                .all(|n| n.state == NodeState::Alive && n.role == wos_api::Role::Core);
        ok.then_some(nodes)
    });
    let nodes = formed.expect("three alive core nodes");
    let mut addrs: Vec<&str> = nodes.iter().map(|n| n.address.as_str()).collect();
    addrs.dedup();
    assert_eq!(addrs.len(), 3);
    assert!(
        interrupt_and_wait(&mut child).is_some(),
        "wos up --nodes 3 did not stop"
    );
}

/// G2b: a paused node (SIGSTOP) is first suspect, then dead; resumed
/// (SIGCONT), it is alive again everywhere.
#[test]
fn paused_node_goes_suspect_then_dead_and_comes_back() {
    let cell = Cell::start(bin(), 3, 3).unwrap();
    cell.pause(2);
    let mut seen = Vec::new();
    let dead = wait_for(Duration::from_secs(15), || {
        let s = cell.state_seen(0, "node-3")?;
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        (s == NodeState::Dead).then_some(())
    });
    cell.resume(2);
    assert!(dead.is_some(), "paused node never declared dead: {seen:?}");
    assert!(
        seen.contains(&NodeState::Suspect),
        "no suspect phase before dead: {seen:?}"
    );
    let back = cell.wait_all_alive(Duration::from_secs(20));
    assert!(
        back.is_some(),
        "resumed node not alive again:\n{}",
        cell.logs()
    );
}

/// G15: snapshots compact the log, and a node that was down past the kept
/// log catches up by installing a snapshot.
#[test]
fn lagging_node_catches_up_from_a_snapshot_after_compaction() {
    let mut cell = Cell::start(bin(), 3, 3).unwrap();
    for i in 0..3 {
        cell.stop(i);
    }
    for h in &cell.hosts {
        let path = h.data.join("node.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace("snapshot_every = 5000", "snapshot_every = 20")
            .replace("snapshot_keep_logs = 500", "snapshot_keep_logs = 0");
        std::fs::write(&path, text).unwrap();
    }
    for i in 0..3 {
        cell.start_node(i).unwrap();
    }
    assert!(
        cell.wait_all_alive(Duration::from_secs(30)).is_some(),
        "{}",
        cell.logs()
    );
    cell.crash(2);
    let survivor = (0..2).find(|i| cell.status(*i).is_some()).unwrap();
    for i in 0..60 {
        assert!(
            kv_put(&cell, survivor, &format!("s/{i}"), &i.to_string()),
            "write {i}"
        );
    }
    let compacted = wait_for(Duration::from_secs(10), || {
        cell.status(survivor)
            .filter(|s| s.purged_index.unwrap_or(0) > 20)
    });
    assert!(
        compacted.is_some(),
        "log not compacted: {:?}",
        cell.status(survivor)
    );
    cell.start_node(2).unwrap();
    let caught_up = wait_for(Duration::from_secs(20), || {
        (kv_get_stale(&cell, 2, "s/59").as_deref() == Some("59")).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "lagging node did not catch up:\n{}",
        cell.logs()
    );
    let s = cell.status(2).unwrap();
    assert!(
        s.snapshot_index.unwrap_or(0) > 20,
        "node-3 did not install a snapshot: {s:?}"
    );
    assert_eq!(
        kv_get_stale(&cell, 2, "s/0").as_deref(),
        Some("0"),
        "early write missing after snapshot"
    );
}

/// G16: `wos node rm` forgets a dead node: it leaves the node list and the
/// Raft group, and the cell goes on; a live node is not removed without
/// --force.
#[test]
fn dead_node_is_removed_from_the_cell() {
    let mut cell = Cell::start(bin(), 3, 3).unwrap();
    let out = cell.wos(0, &["node", "rm", "node-3"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "removing a live node: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("is alive"), "{}", stderr(&out));
    cell.crash(2);
    let dead = wait_for(Duration::from_secs(15), || {
        (cell.state_seen(0, "node-3") == Some(NodeState::Dead)).then_some(())
    });
    assert!(dead.is_some(), "{}", cell.logs());
    let out = cell.wos(0, &["node", "rm", "node-3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let gone = wait_for(Duration::from_secs(15), || {
        let s = cell.status(1)?;
        let ls = cell.node_ls(1)?;
        (s.voters.len() == 2 && ls.len() == 2).then_some(())
    });
    assert!(
        gone.is_some(),
        "node-3 still in the cell: {:?}",
        cell.status(1)
    );
    assert!(
        kv_put(&cell, 1, "after-rm", "x"),
        "writes stop after removing a node"
    );
    assert_eq!(
        cell.wos(0, &["node", "rm", "node-3"]).status.code(),
        Some(4)
    );
}
