//! `wos-wasm run`: instantiate a WASI preview 1 command with the job's limits, call `_start`, and turn
//! the outcome into this process's exit status or death by signal.

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use wasmtime::error::Context as _;
use wasmtime::{Engine, Linker, Result, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cpu::{self, CpuLimitExceeded};
use crate::engine;

/// A WASI command has one function table, holding one entry per address-taken function: thousands,
/// not millions. The cap keeps a hostile module from making the host allocate huge tables, which
/// `--mem` (linear memory only) would not count.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Some toolchains emit an extra table or two (e.g. for reference types); a few is plenty.
const MAX_TABLES: usize = 4;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Cap on the program's linear memory, in bytes: memory.grow past it returns -1 (malloc returns
    /// NULL) instead of trapping.
    #[arg(long, value_name = "BYTES")]
    mem: Option<usize>,
    /// CPU time budget in seconds; past it the runner reports it and dies by SIGXCPU, like a native
    /// job at RLIMIT_CPU.
    #[arg(long, value_name = "S")]
    cpu_seconds: Option<u64>,
    /// Make host directory HOST visible to the program as GUEST, read-write (repeatable). Without
    /// `::GUEST` it appears under its host path.
    #[arg(long = "dir", value_name = "HOST::GUEST", value_parser = parse_dir)]
    dirs: Vec<Preopen>,
    /// An environment variable of the program (repeatable); it sees exactly these and no others.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    envs: Vec<(String, String)>,
    /// The program's argv[0] [default: MODULE as given].
    #[arg(long, value_name = "NAME")]
    argv0: Option<String>,
    /// The module: a .cwasm from `wos-wasm compile`, or a plain .wasm (compiled here, slower).
    module: PathBuf,
    /// The program's arguments, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// A `--dir`: a host directory and the path the program sees it at.
#[derive(Clone, Debug)]
pub struct Preopen {
    host: PathBuf,
    guest: String,
}

fn parse_dir(s: &str) -> Result<Preopen, String> {
    let (host, guest) = s.split_once("::").unwrap_or((s, s));
    if host.is_empty() || guest.is_empty() {
        return Err(format!(
            "expected HOST::GUEST (two non-empty paths), got {s:?}"
        ));
    }
    Ok(Preopen {
        host: host.into(),
        guest: guest.into(),
    })
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(format!("expected K=V with a non-empty K, got {s:?}")),
    }
}

/// What the store holds: the WASI state and the resource limits the store consults.
pub struct StoreData {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// The imports a command may use: WASI preview 1 and nothing else. `compile` uses it too, to reject
/// a module with other imports before it is ever cached.
pub fn linker(engine: &Engine) -> Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |data: &mut StoreData| &mut data.wasi)?;
    Ok(linker)
}

/// Runs the command; returns only when the program exited normally or the runner could not start it.
pub fn run(args: RunArgs) -> ExitCode {
    let (mut store, start) = match prepare(&args) {
        Ok(ready) => ready,
        Err(e) => return crate::not_started(&e),
    };
    let outcome = start.call(&mut store, ());
    finish(outcome, args.cpu_seconds)
}

/// Everything up to, not including, the program's first instruction. An error here means exit 125.
fn prepare(args: &RunArgs) -> Result<(Store<StoreData>, TypedFunc<(), ()>)> {
    let engine = engine::engine()?;
    let module = engine::load(&engine, &args.module)?;
    let pre = linker(&engine)?.instantiate_pre(&module).with_context(|| {
        format!(
            "{} needs imports that wos does not provide (only wasi_snapshot_preview1)",
            args.module.display()
        )
    })?;
    let data = StoreData {
        wasi: wasi_ctx(args)?,
        limits: limits(args.mem),
    };
    let mut store = Store::new(&engine, data);
    store.limiter(|data| &mut data.limits);
    cpu::arm(
        &mut store,
        &engine,
        args.cpu_seconds.map(Duration::from_secs),
    )?;
    let instance = pre.instantiate(&mut store).with_context(|| {
        format!(
            "cannot instantiate {} (with --mem, is the cap below the module's initial memory?)",
            args.module.display()
        )
    })?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    Ok((store, start))
}

fn wasi_ctx(args: &RunArgs) -> Result<WasiP1Ctx> {
    let mut wasi = WasiCtxBuilder::new();
    // One program per process, called synchronously: let WASI file operations block this thread
    // instead of round-tripping through tokio's blocking pool (faster, and no pool to start). Set
    // before the preopens, which capture it.
    wasi.allow_blocking_current_thread(true);
    wasi.inherit_stdio();
    let argv0 = args
        .argv0
        .clone()
        .unwrap_or_else(|| args.module.display().to_string());
    wasi.arg(argv0).args(&args.args);
    // Exactly the given variables: the runner's own environment (the node's) is not the job's.
    for (key, value) in &args.envs {
        wasi.env(key, value);
    }
    for dir in &args.dirs {
        wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadWrite)
            .with_context(|| {
                format!(
                    "cannot open --dir {} (it must be an existing directory)",
                    dir.host.display()
                )
            })?;
    }
    Ok(wasi.build_p1())
}

fn limits(mem: Option<usize>) -> StoreLimits {
    let limits = StoreLimitsBuilder::new()
        // A command is one instance with one memory: so `--mem` bounds all of its linear memory.
        .instances(1)
        .memories(1)
        .tables(MAX_TABLES)
        .table_elements(MAX_TABLE_ELEMENTS)
        // A failed memory.grow returns -1, as on a host out of memory: malloc returns NULL and the
        // program can cope, as a native program does at its memory limit.
        .trap_on_grow_failure(false);
    match mem {
        Some(bytes) => limits.memory_size(bytes).build(),
        None => limits.build(),
    }
}

/// Maps how `_start` ended to the process outcome the node expects (see the crate doc's table).
fn finish(outcome: Result<()>, cpu_seconds: Option<u64>) -> ExitCode {
    let Err(error) = outcome else {
        return ExitCode::SUCCESS;
    };
    if let Some(I32Exit(status)) = error.downcast_ref::<I32Exit>() {
        // WASI allows 0..126 only; the low byte is what the OS would keep of any status anyway.
        return ExitCode::from((status & 0xff) as u8);
    }
    if error.is::<CpuLimitExceeded>() {
        eprintln!(
            "wos-wasm: CPU time limit exceeded ({} s)",
            cpu_seconds.unwrap_or_default()
        );
        die_by_signal(libc::SIGXCPU);
    }
    // `{:?}` includes the wasm backtrace and the trap's cause.
    eprintln!("wos-wasm: trap: {error:?}");
    die_by_signal(libc::SIGABRT);
}

/// Ends this process by `sig` with its default action, so that the node's wait status reads exactly as
/// for a native job killed by that signal.
fn die_by_signal(sig: libc::c_int) -> ! {
    // Whatever the program wrote must reach its pipes before the process is gone.
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: plain libc calls on valid arguments; the process is about to end, so changing its signal
    // disposition, mask and core limit cannot surprise any other code.
    unsafe {
        // No core file: it would hold the runner's memory (GiBs of reserved guest address space), not
        // anything the job's owner can debug, and it would cost the node disk.
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        // wasmtime or the program's host may have installed a handler or blocked the signal.
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    // Unreachable in practice: the default action of both signals used here ends the process.
    std::process::exit(128 + sig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_with_and_without_guest_path() {
        let p = parse_dir("/host/data::/data").unwrap();
        assert_eq!(
            (p.host, p.guest.as_str()),
            (PathBuf::from("/host/data"), "/data")
        );
        let p = parse_dir("/wos").unwrap();
        assert_eq!((p.host, p.guest.as_str()), (PathBuf::from("/wos"), "/wos"));
        assert!(parse_dir("::/data").is_err());
        assert!(parse_dir("/host::").is_err());
    }

    #[test]
    fn env_needs_a_key() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(
            parse_env("EMPTY=").unwrap(),
            ("EMPTY".into(), String::new())
        );
        assert!(parse_env("=x").is_err());
        assert!(parse_env("NOEQUALS").is_err());
    }
}
