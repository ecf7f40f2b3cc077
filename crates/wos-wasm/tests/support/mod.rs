//! Test support: the C test programs (built once per test binary by `scripts/build-wasm-programs.sh`)
//! and running processes with a watchdog, so that a hung runner fails a test instead of hanging CI.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The runner under test.
pub const RUNNER: &str = env!("CARGO_BIN_EXE_wos-wasm");

/// The directory with `hello.wasm`, `spin.wasm`, ..., `hello-native`, built on first use.
///
/// The programs need clang with wasi-libc. When they are missing this panics with the script's
/// message: the tests fail rather than skip, because CI installs the tools and a skipped runner test
/// would hide a broken runner.
pub fn programs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_programs)
}

/// Path of one built program, e.g. `program("hello.wasm")`.
pub fn program(name: &str) -> PathBuf {
    programs().join(name)
}

fn build_programs() -> PathBuf {
    // A fixed directory under the target's scratch space, rebuilt on every test run: no stale
    // programs, and no temp directories left behind by a static that is never dropped.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wos-wasm-programs");
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-wasm-programs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "building the wasm test programs failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    dir
}

/// What a finished process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` to the end with `stdin` as its input, killing it and panicking after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, stdin: &[u8], timeout: Duration) -> Finished {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    // Feed stdin and drain both outputs on their own threads: a pipe that fills up would otherwise
    // deadlock the child against this test.
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = thread::spawn(move || {
        // The child may exit without reading everything (EPIPE); that is its business.
        let _ = input.write_all(&stdin);
    });
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_or_kill(&mut child, timeout, cmd);
    let elapsed = started.elapsed();
    feeder.join().unwrap();
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
        elapsed,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        pipe.read_to_end(&mut buf).unwrap();
        buf
    })
}

fn wait_or_kill(child: &mut Child, timeout: Duration, cmd: &Command) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}; killed it");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// `len` bytes of deterministic pseudo-random data (xorshift64*), incompressible enough to catch any
/// byte the runner drops, duplicates or reorders.
pub fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}
