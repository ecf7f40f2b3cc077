//! Capabilities across a real cell: minting, attenuation, delegation chains,
//! expiry, tampering, revocation on every node (also one that was cut off),
//! through the CLI and plain HTTP, and the audit log of it all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wos_testkit::{Cell, wait_for};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wos"))
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a CLI command that must succeed and returns its last stdout line.
fn ok(cell: &Cell, via: usize, identity: &Path, args: &[&str]) -> String {
    let out = cell.wos_as(via, identity, args);
    assert!(
        out.status.success(),
        "wos {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out).lines().last().unwrap_or_default().to_string()
}

fn add_user(cell: &Cell, name: &str) -> PathBuf {
    let path = cell.dir.path().join(format!("{name}.identity"));
    let out = cell.wos(0, &["user", "add", name, "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    path
}

/// GET a key with a bearer token and no client certificate.
fn http_get(cell: &Cell, via: usize, key: &str, token: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {token}");
    cell.curl(via, None, "GET", &format!("/v1/kv/{key}"), &["-H", &auth])
}

fn http_put(cell: &Cell, via: usize, key: &str, token: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {token}");
    cell.curl(
        via,
        None,
        "PUT",
        &format!("/v1/kv/{key}"),
        &[
            "-H",
            &auth,
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"value":"http"}"#,
        ],
    )
}

/// A read-only token attenuated from a read-write one reads and cannot
/// write, by CLI and HTTP; changed, expired, foreign-held and revoked tokens
/// are refused, on every node within 5 s of revocation, a healed one too;
/// every decision is audited.
#[test]
fn tokens_grant_exactly_what_they_say_until_revoked() {
    let cell = Cell::start(bin(), 3, 3).unwrap();
    let admin = cell.admin.clone();
    let rw = ok(
        &cell,
        0,
        &admin,
        &[
            "cap",
            "mint",
            "--object",
            "kv:proj/",
            "--rights",
            "read,write",
            "--ttl",
            "1h",
        ],
    );
    let ro = ok(
        &cell,
        0,
        &admin,
        &["cap", "attenuate", &rw, "--rights", "read"],
    );

    // CLI: write with rw, read with ro, ro cannot write.
    ok(
        &cell,
        1,
        &admin,
        &["--cap", &rw, "kv", "put", "proj/x", "v1"],
    );
    assert_eq!(
        ok(&cell, 1, &admin, &["--cap", &ro, "kv", "get", "proj/x"]),
        "v1"
    );
    let out = cell.wos(1, &["--cap", &ro, "kv", "put", "proj/x", "v2"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not allow write"),
        "{}",
        stderr(&out)
    );
    // Outside the object, even rw is refused.
    let out = cell.wos(1, &["--cap", &rw, "kv", "put", "elsewhere", "v"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // HTTP with the bearer token alone (no client certificate).
    assert_eq!(http_get(&cell, 2, "proj/x", &ro).0, 200);
    let (code, body) = http_put(&cell, 2, "proj/x", &ro);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("write"), "{body}");
    assert_eq!(http_put(&cell, 2, "proj/y", &rw).0, 200);
    // Without a token, an anonymous client gets nothing.
    assert_eq!(cell.curl(2, None, "GET", "/v1/kv/proj/x", &[]).0, 401);

    // Any changed byte makes a token invalid.
    let mut bytes = ro.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let (code, body) = http_get(&cell, 0, "proj/x", &tampered);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not valid"), "{body}");

    // An expired token is refused.
    let short = ok(
        &cell,
        0,
        &admin,
        &[
            "cap", "mint", "--object", "kv:proj/", "--rights", "read", "--ttl", "1s",
        ],
    );
    std::thread::sleep(Duration::from_millis(2100));
    let (code, body) = http_get(&cell, 0, "proj/x", &short);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("time"), "{body}");

    // A token issued for alice is refused to bob and to anonymous clients.
    let alice = add_user(&cell, "alice");
    let bob = add_user(&cell, "bob");
    let for_alice = ok(
        &cell,
        0,
        &admin,
        &[
            "cap", "mint", "--object", "kv:proj/", "--rights", "read", "--for", "alice",
        ],
    );
    assert_eq!(
        ok(
            &cell,
            0,
            &alice,
            &["--cap", &for_alice, "kv", "get", "proj/x"]
        ),
        "v1"
    );
    let out = cell.wos_as(0, &bob, &["--cap", &for_alice, "kv", "get", "proj/x"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("issued to"), "{}", stderr(&out));
    assert_eq!(http_get(&cell, 0, "proj/x", &for_alice).0, 403);
    // A user cannot mint what she does not hold.
    let out = cell.wos_as(
        0,
        &alice,
        &["cap", "mint", "--object", "cell", "--rights", "admin"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot grant admin"),
        "{}",
        stderr(&out)
    );

    // Revocation: cut node-3 off, revoke the parent rw token, and every node
    // refuses its child ro within 5 s, node-3 within 5 s of coming back.
    let can_cut = cell.can_partition();
    if can_cut {
        cell.partition(2).unwrap();
    }
    ok(&cell, 0, &admin, &["cap", "revoke", &rw]);
    let revoked_at = Instant::now();
    for via in [0, 1] {
        let refused = wait_for(Duration::from_secs(5), || {
            let (code, body) = http_get(&cell, via, "proj/x", &ro);
            (code == 403 && body.contains("revoked")).then_some(())
        });
        assert!(
            refused.is_some(),
            "node {via} still accepts a revoked token"
        );
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(6));
    if can_cut {
        cell.heal(2).unwrap();
        let refused = wait_for(Duration::from_secs(5), || {
            let (code, body) = http_get(&cell, 2, "proj/x", &ro);
            (code == 403 && body.contains("revoked")).then_some(())
        });
        assert!(
            refused.is_some(),
            "healed node still accepts a revoked token:\n{}",
            cell.logs()
        );
    }
    // The unrelated token still works.
    assert_eq!(
        ok(
            &cell,
            0,
            &alice,
            &["--cap", &for_alice, "kv", "get", "proj/x"]
        ),
        "v1"
    );

    // The audit log holds the decisions, with the token that allowed them.
    let entries: Vec<wos_api::AuditEntry> = wait_for(Duration::from_secs(5), || {
        let e: Vec<wos_api::AuditEntry> = cell.wos_json(
            0,
            &["audit", "--object", "kv:proj/", "--limit", "1000", "--json"],
        )?;
        (e.iter().any(|x| x.reason.contains("revoked"))
            && e.iter().any(|x| x.reason.starts_with("capability")))
        .then_some(e)
    })
    .expect("capability decisions in the audit log");
    assert!(
        entries
            .iter()
            .any(|e| !e.allowed && e.reason.contains("does not allow write"))
    );
    assert!(
        entries
            .iter()
            .any(|e| !e.allowed && e.reason.contains("issued to"))
    );
}

/// A delegation chain admin -> alice -> bob -> carol works; a link signed by
/// someone who does not hold the token, a changed link, and an escape from a
/// narrowing made along the chain are refused.
#[test]
fn delegation_chain_of_three_links() {
    let cell = Cell::start(bin(), 1, 1).unwrap();
    let admin = cell.admin.clone();
    let alice = add_user(&cell, "alice");
    let bob = add_user(&cell, "bob");
    let carol = add_user(&cell, "carol");
    let dave = add_user(&cell, "dave");
    ok(&cell, 0, &admin, &["kv", "put", "team/doc", "shared"]);
    ok(&cell, 0, &admin, &["kv", "put", "secret", "no"]);

    let t1 = ok(
        &cell,
        0,
        &admin,
        &[
            "cap", "mint", "--object", "kv:", "--rights", "read", "--for", "alice",
        ],
    );
    let t2 = ok(&cell, 0, &alice, &["cap", "delegate", &t1, "--to", "bob"]);
    let t3 = ok(
        &cell,
        0,
        &bob,
        &[
            "cap",
            "delegate",
            &t2,
            "--to",
            "carol",
            "--path-prefix",
            "kv:team/",
        ],
    );
    assert_eq!(
        ok(&cell, 0, &carol, &["--cap", &t3, "kv", "get", "team/doc"]),
        "shared"
    );
    // The narrowing bob made binds carol.
    let out = cell.wos_as(0, &carol, &["--cap", &t3, "kv", "get", "secret"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Carol cannot use a token not passed to her.
    let out = cell.wos_as(0, &carol, &["--cap", &t2, "kv", "get", "team/doc"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Dave does not hold t1, so his delegation to carol counts for nothing.
    let forged = ok(&cell, 0, &dave, &["cap", "delegate", &t1, "--to", "carol"]);
    let out = cell.wos_as(0, &carol, &["--cap", &forged, "kv", "get", "team/doc"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Changing a byte anywhere in the chain breaks it.
    let mut bytes = t3.clone().into_bytes();
    let i = bytes.len() * 2 / 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let broken = String::from_utf8(bytes).unwrap();
    let out = cell.wos_as(0, &carol, &["--cap", &broken, "kv", "get", "team/doc"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Inspect shows the chain.
    let out = cell.wos_as(0, &carol, &["cap", "inspect", &t3, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let blocks = info["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3);
    assert!(
        blocks[1]["kind"]
            .as_str()
            .unwrap()
            .starts_with("delegation signed by")
    );
    assert!(blocks[2]["source"].as_str().unwrap().contains("user:carol"));
}

/// ACLs decide what plain users may do, by principal, group or anyuser, on an
/// object and below it; denials say which right was missing; holders of admin
/// on an object may set its ACL; the audit log names the ACL that allowed.
#[test]
fn acls_decide_for_users_and_explain_denials() {
    let cell = Cell::start(bin(), 1, 1).unwrap();
    let admin = cell.admin.clone();
    let alice = add_user(&cell, "alice");
    let bob = add_user(&cell, "bob");
    let carol = add_user(&cell, "carol");
    for key in ["proj/x", "proj/sub/y", "team/a", "pub/b"] {
        ok(&cell, 0, &admin, &["kv", "put", key, "v"]);
    }
    // Default deny, with the missing right named.
    let out = cell.wos_as(0, &alice, &["kv", "get", "proj/x"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("user:alice lacks read on kv:proj/x"),
        "{}",
        stderr(&out)
    );

    ok(
        &cell,
        0,
        &admin,
        &["acl", "set", "kv:proj/", "alice", "read,write"],
    );
    ok(&cell, 0, &alice, &["kv", "put", "proj/x", "by-alice"]);
    assert_eq!(ok(&cell, 0, &alice, &["kv", "get", "proj/x"]), "by-alice");
    let out = cell.wos_as(0, &bob, &["kv", "put", "proj/x", "no"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("user:bob lacks write on kv:proj/x"),
        "{}",
        stderr(&out)
    );
    // The same decision over plain HTTP with the client certificate.
    let (code, body) = cell.curl(0, Some(&bob), "GET", "/v1/kv/proj/x", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("lacks read"), "{body}");
    let (code, _) = cell.curl(0, Some(&alice), "GET", "/v1/kv/proj/x", &[]);
    assert_eq!(code, 200);

    // Groups and anyuser.
    ok(&cell, 0, &admin, &["group", "set", "team", "bob"]);
    ok(
        &cell,
        0,
        &admin,
        &["acl", "set", "kv:team/", "group:team", "read"],
    );
    ok(
        &cell,
        0,
        &admin,
        &["acl", "set", "kv:pub/", "anyuser", "read"],
    );
    assert_eq!(ok(&cell, 0, &bob, &["kv", "get", "team/a"]), "v");
    assert_eq!(
        cell.wos_as(0, &carol, &["kv", "get", "team/a"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(ok(&cell, 0, &carol, &["kv", "get", "pub/b"]), "v");

    // Alice cannot set ACLs until she holds admin on the object.
    let out = cell.wos_as(0, &alice, &["acl", "set", "kv:proj/sub/", "bob", "read"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    ok(
        &cell,
        0,
        &admin,
        &["acl", "set", "kv:proj/", "alice", "read,write,admin"],
    );
    ok(
        &cell,
        0,
        &alice,
        &["acl", "set", "kv:proj/sub/", "bob", "read"],
    );
    assert_eq!(ok(&cell, 0, &bob, &["kv", "get", "proj/sub/y"]), "v");
    assert_eq!(
        cell.wos_as(0, &bob, &["kv", "get", "proj/x"]).status.code(),
        Some(3)
    );
    // Removing an entry takes the right away.
    ok(
        &cell,
        0,
        &admin,
        &["acl", "set", "kv:team/", "group:team", "none"],
    );
    assert_eq!(
        cell.wos_as(0, &bob, &["kv", "get", "team/a"]).status.code(),
        Some(3)
    );
    let acl: Vec<wos_api::AclEntry> = cell
        .wos_json(0, &["acl", "get", "kv:proj/sub/y", "--json"])
        .unwrap();
    assert_eq!(acl.len(), 2, "{acl:?}");

    let audit: Vec<wos_api::AuditEntry> = wait_for(Duration::from_secs(5), || {
        let e: Vec<wos_api::AuditEntry> = cell.wos_json(
            0,
            &[
                "audit",
                "--principal",
                "user:alice",
                "--limit",
                "1000",
                "--json",
            ],
        )?;
        e.iter()
            .any(|x| x.reason.contains("ACL on kv:proj/ grants write"))
            .then_some(e)
    })
    .expect("ACL decisions in the audit log");
    assert!(
        audit
            .iter()
            .any(|e| !e.allowed && e.reason.contains("lacks read"))
    );
}
