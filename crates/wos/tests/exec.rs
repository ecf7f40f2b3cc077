//! Remote execution across a real cell: `wos run` from one host onto
//! another, streams and exit codes, signals, limits (cgroups), the sandbox
//! seen from inside, WebAssembly jobs, a node dying mid-job, and who may run
//! where (the cell's rights and the node owner's policy).
//!
//! These tests need root (namespaces, cgroups); without it they say so and
//! pass nothing off as checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use wos_api::{JobInfo, JobState};
use wos_testkit::{Cell, wait_for};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wos"))
}

use wos_testkit::text;

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIPPED: remote execution tests need root (namespaces, cgroups)");
    false
}

fn cell(n: usize) -> Cell {
    Cell::start(bin(), n, n.min(3)).expect("cell starts")
}

fn run(cell: &Cell, via: usize, args: &[&str]) -> Output {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    cell.wos(via, &all)
}

fn jobs(cell: &Cell, via: usize) -> Vec<JobInfo> {
    cell.wos_json(via, &["ps", "--all", "--json"])
        .expect("wos ps --all --json")
}

fn job(cell: &Cell, via: usize, id: &str) -> Option<JobInfo> {
    jobs(cell, via).into_iter().find(|j| j.id == id)
}

/// Waits until job `id` has ended as the cell records it.
fn ended(cell: &Cell, via: usize, id: &str, limit: Duration) -> JobInfo {
    wait_for(limit, || {
        job(cell, via, id).filter(|j| !j.state.is_running())
    })
    .unwrap_or_else(|| {
        panic!(
            "job {id} did not end within {limit:?}: {:?}",
            job(cell, via, id)
        )
    })
}

fn node_name(cell: &Cell, i: usize) -> String {
    cell.hosts[i].name.clone()
}

#[test]
fn run_streams_output_exit_codes_and_stdin_across_nodes() {
    if !root() {
        return;
    }
    let cell = cell(3);
    let b = node_name(&cell, 1);

    // Both streams, in order, and the exit code, from node A onto node B.
    let mut cmd = cell.wos_command(
        0,
        &cell.admin,
        &[
            "run",
            "--on",
            &b,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let ordered = cell.exec(
        0,
        "sh",
        &[
            "-c",
            &format!(
                "{} --cell {} --identity {} run --on {b} -- sh -c 'echo out; echo err >&2; exit 3' 2>&1; echo code $?",
                bin().display(),
                cell.hosts[0].addr,
                cell.admin.display()
            ),
        ],
    );
    assert_eq!(
        text(&ordered.stdout),
        "out\nerr\ncode 3\n",
        "{}",
        text(&ordered.stderr)
    );

    // 10 MiB through stdin comes back byte-identical.
    let data: Vec<u8> = (0..10 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut child = cell
        .wos_command(0, &cell.admin, &["run", "--on", &b, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = {
        let data = data.clone();
        std::thread::spawn(move || {
            stdin.write_all(&data).unwrap();
        })
    };
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "stdin did not come back byte-identical");

    // Detached: an id at once; the record, the output and the exit code
    // from any node.
    let out = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "--detach",
            "--",
            "sh",
            "-c",
            "sleep 0.5; echo later; exit 7",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let waited = cell.wos(2, &["wait", &id]);
    assert_eq!(waited.status.code(), Some(7), "{}", text(&waited.stderr));
    let logs = cell.wos(2, &["logs", &id]);
    assert_eq!(text(&logs.stdout), "later\n");
    let rec = job(&cell, 2, &id).expect("job listed");
    assert_eq!(rec.node, b);
    assert_eq!(rec.owner, "user:admin");
    assert_eq!(rec.state, JobState::Exited { code: 7 });
    assert!(rec.usage.is_some(), "usage recorded");
    assert!(rec.ended_ms.is_some());

    // `wos logs -f` from a third node follows a running job to its end.
    let out = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "-d",
            "--",
            "sh",
            "-c",
            "echo a; sleep 1; echo b >&2",
        ],
    );
    let id = text(&out.stdout).trim().to_string();
    let followed = cell.wos(2, &["logs", "-f", &id]);
    assert!(followed.status.success(), "{}", text(&followed.stderr));
    assert_eq!(text(&followed.stdout), "a\n");
    assert_eq!(text(&followed.stderr), "b\n");

    // The same idempotency key never starts the job twice.
    let first = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "--detach",
            "--idempotency-key",
            "k-1",
            "--",
            "sleep",
            "1",
        ],
    );
    let again = run(
        &cell,
        2,
        &[
            "--on",
            &b,
            "--detach",
            "--idempotency-key",
            "k-1",
            "--",
            "sleep",
            "1",
        ],
    );
    assert!(first.status.success() && again.status.success());
    assert_eq!(text(&first.stdout), text(&again.stdout));
    let sleeps = jobs(&cell, 0)
        .into_iter()
        .filter(|j| j.argv == ["sleep", "1"])
        .count();
    assert_eq!(sleeps, 1, "one job for one idempotency key");

    // Without --on, the cell places the job on some node and it runs.
    let out = run(&cell, 0, &["--", "sh", "-c", "echo placed on $WOS_NODE"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("placed on node-"));

    // A program that does not exist: the shell's 127 and a clear message.
    let out = run(&cell, 0, &["--on", &b, "--", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("no-such-program"),
        "{}",
        text(&out.stderr)
    );
    // Bad input changes nothing and says what was wrong.
    let before = jobs(&cell, 0).len();
    let out = run(&cell, 0, &["--on", &b, "--mem", "12Q", "--", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("--mem"), "{}", text(&out.stderr));
    let out = run(&cell, 0, &["--on", "no-such-node", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no node named"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(jobs(&cell, 0).len(), before);
}

#[test]
fn signals_end_jobs_and_limits_hold() {
    if !root() {
        return;
    }
    let cell = cell(2);
    let b = node_name(&cell, 1);

    // Ctrl-C on `wos run` ends the remote job within a second.
    let mut child = cell
        .wos_command(0, &cell.admin, &["run", "--on", &b, "--", "sleep", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = wait_for(Duration::from_secs(10), || {
        jobs(&cell, 0)
            .into_iter()
            .find(|j| j.argv == ["sleep", "100"] && j.state.is_running())
    })
    .expect("the job runs");
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(1), "Ctrl-C took {took:?}");
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    let rec = ended(&cell, 0, &running.id, Duration::from_secs(5));
    assert!(
        matches!(&rec.state, JobState::Signaled { signal, .. } if signal == "INT"),
        "{:?}",
        rec.state
    );

    // `wos kill` from the other node.
    let id = text(&run(&cell, 0, &["--on", &b, "-d", "--", "sleep", "100"]).stdout)
        .trim()
        .to_string();
    let out = cell.wos(1, &["kill", "-s", "TERM", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rec = ended(&cell, 0, &id, Duration::from_secs(5));
    assert!(
        matches!(&rec.state, JobState::Signaled { signal, reason } if signal == "TERM" && reason.contains("user:admin")),
        "{:?}",
        rec.state
    );

    // Memory past --mem: killed, and said so.
    let out = run(
        &cell,
        0,
        &["--on", &b, "--mem", "64M", "--", "tail", "/dev/zero"],
    );
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGKILL),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("memory limit exceeded"),
        "{}",
        text(&out.stderr)
    );
    let last = jobs(&cell, 0).into_iter().last().unwrap();
    let last = ended(&cell, 0, &last.id, Duration::from_secs(5));
    assert!(
        matches!(&last.state, JobState::Signaled { reason, .. } if reason.contains("memory limit exceeded")),
        "{:?}",
        last.state
    );

    // A fork bomb is held by --pids (bounded: 200 attempts; python, because
    // a shell gives up at its first failed fork).
    let bomb = r#"
import os, time
ok = fail = 0
for i in range(200):
    try:
        pid = os.fork()
    except OSError:
        fail += 1
        continue
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    ok += 1
print(ok, fail)
"#;
    let out = run(
        &cell,
        0,
        &["--on", &b, "--pids", "20", "--", "python3", "-c", bomb],
    );
    let said = text(&out.stdout);
    let counts: Vec<u32> = said
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(
        counts.len(),
        2,
        "unexpected output {said:?} {}",
        text(&out.stderr)
    );
    assert!(
        counts[0] < 20,
        "{} forks succeeded despite --pids 20",
        counts[0]
    );
    assert!(counts[1] > 0, "no fork was refused");

    // A CPU spinner with --cpu 0.5 gets about half a core (upper bound only:
    // a loaded machine may give it less).
    let out = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "--cpu",
            "0.5",
            "-d",
            "--",
            "timeout",
            "3",
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    let id = text(&out.stdout).trim().to_string();
    let rec = ended(&cell, 0, &id, Duration::from_secs(20));
    let cpu = rec.usage.expect("usage").cpu_millis as f64 / 1000.0;
    let wall = (rec.ended_ms.unwrap() - rec.started_ms) as f64 / 1000.0;
    eprintln!("spinner with --cpu 0.5: {cpu:.2} CPU-seconds in {wall:.2} s");
    assert!(
        cpu < 0.7 * wall,
        "{cpu} CPU-seconds in {wall} s is more than half a core"
    );
    assert!(cpu > 0.05, "the spinner ran");
}

/// A probe compiled on the host, sent to the job through stdin, that tries
/// what a job must not do.
fn probe_binary(dir: &Path) -> PathBuf {
    let src = dir.join("probe.c");
    std::fs::write(
        &src,
        r#"#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sched.h>
#include <unistd.h>
int main(void) {
    int r = mount("none", "/tmp", "tmpfs", 0, 0);
    printf("mount=%s\n", r == 0 ? "ok" : strerror(errno));
    r = (int)ptrace(PTRACE_TRACEME, 0, 0, 0);
    printf("ptrace=%s\n", r == 0 ? "ok" : strerror(errno));
    r = unshare(CLONE_NEWUSER);
    printf("unshare=%s\n", r == 0 ? "ok" : strerror(errno));
    printf("uid=%d\n", (int)getuid());
    return 0;
}
"#,
    )
    .unwrap();
    let out_path = dir.join("probe");
    let out = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&out_path)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "cc: {}", text(&out.stderr));
    out_path
}

#[test]
fn the_sandbox_confines_a_job() {
    if !root() {
        return;
    }
    let cell = cell(2);
    let b = node_name(&cell, 1);
    let script = "echo pids $(ls /proc | grep -c '^[0-9]'); \
                  echo uid $(id -u); \
                  touch /etc/x 2>/dev/null && echo etc-writable; \
                  touch /x 2>/dev/null && echo root-writable; \
                  touch /usr/x 2>/dev/null && echo usr-writable; \
                  touch /tmp/x && echo tmp-ok; \
                  touch /wos/x-$WOS_JOB && echo wos-ok; \
                  grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status";
    let out = run(&cell, 0, &["--on", &b, "--", "sh", "-c", script]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    let pids: u32 = said
        .lines()
        .find_map(|l| l.strip_prefix("pids "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        pids < 8,
        "the job sees {pids} processes: host processes leak in\n{said}"
    );
    assert!(!said.contains("uid 0"), "{said}");
    assert!(!said.contains("writable"), "{said}");
    assert!(said.contains("tmp-ok") && said.contains("wos-ok"), "{said}");
    assert!(
        said.contains("NoNewPrivs:\t1") && said.contains("Seccomp:\t2"),
        "{said}"
    );

    // mount, ptrace and new namespaces are refused by the seccomp policy.
    let probe = probe_binary(cell.dir.path());
    let out = cell
        .wos_command(
            0,
            &cell.admin,
            &[
                "run",
                "--on",
                &b,
                "--",
                "sh",
                "-c",
                "cat > /tmp/probe && chmod +x /tmp/probe && /tmp/probe",
            ],
        )
        .stdin(std::fs::File::open(&probe).unwrap())
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    for call in ["mount", "ptrace", "unshare"] {
        assert!(
            said.contains(&format!("{call}=Operation not permitted")),
            "{call}: {said}"
        );
    }
    assert!(!said.contains("uid=0"), "{said}");

    // The host's /tmp is not the job's.
    let marker = format!("/tmp/wos-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let out = run(&cell, 0, &["--on", &b, "--", "cat", &marker]);
    assert_ne!(out.status.code(), Some(0), "the job read the host's /tmp");
    std::fs::remove_file(&marker).unwrap();
}

#[test]
fn a_node_dying_mid_job_ends_wos_run_and_the_job_is_lost() {
    if !root() {
        return;
    }
    let mut cell = cell(3);
    let c = node_name(&cell, 2);
    let mut child = cell
        .wos_command(
            0,
            &cell.admin,
            &[
                "run",
                "--on",
                &c,
                "--",
                "sh",
                "-c",
                "echo started; sleep 100",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = wait_for(Duration::from_secs(10), || {
        jobs(&cell, 0)
            .into_iter()
            .find(|j| j.node == c && j.state.is_running())
    })
    .expect("the job runs");
    let crashed = Instant::now();
    cell.crash(2);
    let status =
        wait_for(Duration::from_secs(20), || child.try_wait().unwrap()).expect("wos run ended");
    let took = crashed.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(
        took < Duration::from_secs(15),
        "wos run took {took:?} to notice"
    );
    assert_eq!(status.code(), Some(125));
    assert_eq!(text(&out.stdout), "started\n");
    assert!(
        text(&out.stderr).contains(&format!("lost contact with node {c}")),
        "{}",
        text(&out.stderr)
    );
    let rec = ended(&cell, 0, &running.id, Duration::from_secs(30));
    assert!(
        matches!(rec.state, JobState::Lost { .. }),
        "{:?}",
        rec.state
    );
}

#[test]
fn rights_and_node_policy_decide_who_runs_where() {
    if !root() {
        return;
    }
    let cell = cell(3);
    let (a, b, c) = (
        node_name(&cell, 0),
        node_name(&cell, 1),
        node_name(&cell, 2),
    );
    let bob = cell.dir.path().join("bob.identity");
    let out = cell.wos(0, &["user", "add", "bob", "--out", bob.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // No right to run anywhere: refused, with what is missing.
    let out = cell.wos_as(0, &bob, &["run", "--on", &b, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("lacks run on node:"),
        "{}",
        text(&out.stderr)
    );
    let out = cell.wos_as(0, &bob, &["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));

    // Granted on node B only.
    let out = cell.wos(0, &["acl", "set", &format!("node:{b}"), "bob", "run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cell.wos_as(0, &bob, &["run", "--on", &b, "--", "id", "-u"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cell.wos_as(0, &bob, &["run", "--on", &c, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    // Placement picks the node bob may use.
    let out = cell.wos_as(0, &bob, &["run", "--", "sh", "-c", "echo $WOS_NODE"]);
    assert_eq!(text(&out.stdout).trim(), b, "{}", text(&out.stderr));

    // Bob sees and signals his jobs, not the admin's.
    let admin_job = text(&run(&cell, 0, &["--on", &a, "-d", "--", "sleep", "30"]).stdout)
        .trim()
        .to_string();
    let listed: Vec<JobInfo> =
        serde_json::from_slice(&cell.wos_as(0, &bob, &["ps", "--all", "--json"]).stdout).unwrap();
    assert!(listed.iter().all(|j| j.owner == "user:bob"), "{listed:?}");
    let out = cell.wos_as(0, &bob, &["kill", &admin_job]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = cell.wos_as(0, &bob, &["logs", &admin_job]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        cell.wos(0, &["kill", "-s", "KILL", &admin_job])
            .status
            .success()
    );

    // A capability for `run` on node A, made for bob, lets him run there
    // (the token alone decides); without it he may not.
    let out = cell.wos(
        0,
        &[
            "cap",
            "mint",
            "--object",
            &format!("node:{a}"),
            "--rights",
            "run",
            "--for",
            "bob",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().lines().last().unwrap().to_string();
    let out = cell.wos_as(0, &bob, &["--cap", &token, "run", "--on", &a, "--", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cell.wos_as(0, &bob, &["--cap", &token, "run", "--on", &c, "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "the token names node {a} only"
    );
    let out = cell.wos_as(0, &bob, &["run", "--on", &a, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));

    // Plain HTTP: a JSON description starts a detached job; the record can
    // be waited for.
    let (code, body) = cell.curl(
        0,
        Some(&cell.admin),
        "POST",
        "/v1/jobs",
        &[
            "-H",
            "content-type: application/json",
            "-d",
            &format!(r#"{{"node":"{c}","argv":["sh","-c","exit 5"]}}"#),
        ],
    );
    assert_eq!(code, 200, "{body}");
    let started: JobInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(started.node, c);
    let (code, body) = cell.curl(
        0,
        Some(&cell.admin),
        "GET",
        &format!("/v1/jobs/{}?wait=20", started.id),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let done: JobInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(done.state, JobState::Exited { code: 5 });
    let (code, body) = cell.curl(
        0,
        Some(&bob),
        "GET",
        &format!("/v1/jobs/{}", started.id),
        &[],
    );
    assert_eq!(code, 403, "{body}");

    // The node owner's policy wins over the cell: B no longer lets bob in,
    // and lets nobody have more than 1 GiB.
    std::fs::write(
        cell.hosts[1].data.join("policy.toml"),
        "[exec]\nallow = [\"user:admin\"]\nmax_memory = \"1G\"\n",
    )
    .unwrap();
    let out = cell.wos_as(0, &bob, &["run", "--on", &b, "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("does not let user:bob run"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&cell, 0, &["--on", &b, "--mem", "2G", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("more than the node gives"),
        "{}",
        text(&out.stderr)
    );

    // Automatic placement moves past nodes whose owners refuse.
    for i in [0, 1] {
        std::fs::write(
            cell.hosts[i].data.join("policy.toml"),
            "[exec]\nenabled = false\n",
        )
        .unwrap();
    }
    for _ in 0..3 {
        let out = run(&cell, 0, &["--", "sh", "-c", "echo $WOS_NODE"]);
        assert_eq!(text(&out.stdout).trim(), c, "{}", text(&out.stderr));
    }
    // Denials went to the audit log.
    let audit = cell.wos(0, &["audit", "--principal", "user:bob", "--limit", "1000"]);
    let said = text(&audit.stdout);
    assert!(said.contains("Run") && said.contains("node:"), "{said}");
}

/// The C test programs of `wos-wasm`, built for wasm32-wasi (and hello for
/// the host), into `dir`.
fn wasm_programs(dir: &Path) -> PathBuf {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wos-wasm/scripts/build-wasm-programs.sh");
    let out_dir = dir.join("wasm");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the WebAssembly test programs failed (CI installs clang, lld, wasi-libc): {}",
        text(&out.stderr)
    );
    out_dir
}

#[test]
fn webassembly_jobs_run_on_any_node_within_limits() {
    if !root() {
        return;
    }
    let runner = bin().with_file_name("wos-wasm");
    assert!(
        runner.exists(),
        "{} is missing: build it with `cargo build -p wos-wasm` (nextest --workspace does)",
        runner.display()
    );
    let cell = cell(2);
    let b = node_name(&cell, 1);
    let progs = wasm_programs(cell.dir.path());
    let hello = progs.join("hello.wasm");

    // The same output as the program built natively and run here, with
    // arguments, environment and a file written under /wos.
    let native = Command::new(progs.join("hello-native"))
        .args(["x", "y z"])
        .env_clear()
        .env("WOS_TEST", "42")
        .output()
        .unwrap();
    let native_out = text(&native.stdout).replace("hello-native", "hello.wasm");
    let remote = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "-e",
            "WOS_TEST=42",
            "--",
            hello.to_str().unwrap(),
            "x",
            "y z",
        ],
    );
    assert!(remote.status.success(), "{}", text(&remote.stderr));
    let remote_out = text(&remote.stdout);
    assert_eq!(
        remote_out
            .lines()
            .filter(|l| !l.starts_with("argv[0]"))
            .collect::<Vec<_>>(),
        native_out
            .lines()
            .filter(|l| !l.starts_with("argv[0]"))
            .collect::<Vec<_>>()
    );
    assert!(remote_out.contains("argv[0]=hello.wasm"), "{remote_out}");
    // Run again (now from the node's compiled-module cache), writing to /wos.
    let out = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "--",
            hello.to_str().unwrap(),
            "write=/wos",
            "exit=4",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("wrote out.txt"));
    assert!(cell.hosts[1].data.join("files/out.txt").exists());

    // An infinite loop is stopped by its CPU limit.
    let started = Instant::now();
    let out = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "--cpu-seconds",
            "1",
            "--",
            progs.join("spin.wasm").to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGXCPU),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("CPU time limit exceeded"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // A memory grower is capped.
    let out = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "--mem",
            "16M",
            "--",
            progs.join("grow.wasm").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let mib: u32 = said
        .trim()
        .strip_prefix("capped after ")
        .and_then(|s| s.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {said:?}"));
    assert!(mib < 16, "grew to {mib} MiB under --mem 16M");

    // Something that is not a runnable module is refused, clearly.
    let out = run(
        &cell,
        0,
        &[
            "--on",
            &b,
            "--",
            progs.join("reactor.wasm").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("_start"),
        "{}",
        text(&out.stderr)
    );
}
