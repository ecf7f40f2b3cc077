//! `wos-wasm`: the WebAssembly runner of wos.
//!
//! This crate owns everything wos does with wasmtime: compiling a WASI preview 1 *command* module
//! ahead of time (`wos-wasm compile IN.wasm OUT.cwasm`) and running one (`wos-wasm run ...`) with the
//! job's limits. It is a leaf: no other crate depends on it, and no other crate may link wasmtime. The
//! node daemon (`wos`) only execs this binary, so a wasmtime upgrade or crash never touches the daemon.
//!
//! # How the node uses it
//!
//! * On a cache miss the node runs `wos-wasm compile` *outside* the sandbox and keeps `OUT.cwasm` per
//!   node, keyed by the module's BLAKE3 hash. The output is written atomically (temp file + rename), so a
//!   crashed compile never leaves a half-written cache entry.
//! * To start the job it execs `wos-wasm run [limits] OUT.cwasm -- ARGS...` *inside* the job's sandbox
//!   (namespaces, cgroups, read-only root, private /tmp, the cell's files at /wos), with stdin, stdout and
//!   stderr already being the job's pipes.
//!
//! # Outcomes, as the node sees them
//!
//! | what happened | process outcome |
//! |---|---|
//! | `_start` returned | exit 0 |
//! | the program called `proc_exit(n)` | exit `n` |
//! | CPU time passed `--cpu-seconds` | message on stderr, killed by SIGXCPU (as a native job at RLIMIT_CPU) |
//! | any other trap | `wos-wasm: trap: ...` with the wasm backtrace, killed by SIGABRT |
//! | the program never started (bad module, missing file, bad arguments) | message on stderr, exit 125 |
//!
//! # Start latency
//!
//! Start-to-first-output matters (goal: under 5 ms for hello world from a cached `.cwasm`). The run path
//! therefore does no cache-config lookup, starts no compile thread pool (a `.cwasm` is mmapped by
//! `Module::deserialize_file`, not compiled), starts the epoch ticker thread only when `--cpu-seconds` is
//! given, and lets WASI file operations block the calling thread instead of hopping through tokio.
//!
//! It is measured as the time from `spawn` of `wos-wasm run hello.cwasm` to the first byte read from its
//! stdout pipe, over 50 runs, reporting the median: the `start_latency` test in `tests/runner.rs` does
//! exactly that and prints the p50 (`cargo test -p wos-wasm --release start_latency -- --nocapture`).
//! The node can measure the same from its side: the time between its `spawn` and the first byte of the
//! job's stdout.

mod cpu;
mod engine;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status when the program never started: bad arguments, an unreadable or invalid module, a
/// missing import. 125 is what `env`, `timeout` and container runtimes use for "the runner failed", so
/// it cannot be mistaken for a status the program chose (WASI `proc_exit` only allows 0..126).
pub const EXIT_NOT_STARTED: u8 = 125;

#[derive(Parser, Debug)]
#[command(
    name = "wos-wasm",
    version,
    about = "Compile and run WASI preview 1 command modules for wos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile IN (.wasm) to OUT (.cwasm) for this node, checking that it is a WASI command.
    Compile {
        /// The WebAssembly module (binary format).
        input: PathBuf,
        /// Where to write the compiled module; replaced atomically.
        output: PathBuf,
    },
    /// Run a WASI preview 1 command module (.cwasm from `compile`, or a plain .wasm).
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match cli.command {
        Command::Compile { input, output } => match engine::compile_file(&input, &output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => not_started(&e),
        },
        Command::Run(args) => run::run(args),
    }
}

/// `--help` and `--version` succeed; any other parse error means the program never started.
fn usage_error(e: &clap::Error) -> ExitCode {
    // Printing can only fail when stderr/stdout are gone; nothing useful is left to do then.
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(EXIT_NOT_STARTED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Reports an error that happened before the program started and returns exit status 125.
pub fn not_started(e: &wasmtime::Error) -> ExitCode {
    // `{:#}` prints the whole context chain on one line: "what we tried: why it failed".
    eprintln!("wos-wasm: {e:#}");
    ExitCode::from(EXIT_NOT_STARTED)
}
