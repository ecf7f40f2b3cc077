//! `wos`: one binary that is both the daemon (`wos up`, `wos agent`,
//! `wos cell init`) and the CLI of a cell (`wos status`, `wos node ls`, ...).
//!
//! Exit codes (scripts may rely on them): 0 success; 1 other failure; 2 bad
//! usage; 3 denied (401/403); 4 not found; 5 conflict; 6 cell unavailable
//! (unreachable, or no metadata leader). `wos run` and `wos wait` exit with
//! the job's code (128 + N for signal N), and 125 when wos itself failed.

mod bench;
mod bench_exec;
mod bench_fs;
mod cap;
mod cli;
mod client;
mod daemon;
mod fs;
mod jobs;
mod mount;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `wos jail` (the job sandbox, exec'd by the node) must stay
    // single-threaded: it forks and builds namespaces. It is dispatched
    // before clap and the tokio runtime, and never returns.
    if std::env::args_os().nth(1).is_some_and(|a| a == "jail") {
        wos_exec::jail::main_from_env();
    }
    let args = cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(cli::dispatch(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(jobs::JobExit(code)) = e.downcast_ref::<jobs::JobExit>() {
                // The job's own exit code. Exit at once: a read of stdin
                // may still be blocked in the runtime's thread pool.
                let _ = std::io::Write::flush(&mut std::io::stdout());
                std::process::exit(i32::from(*code));
            }
            let code = if e.downcast_ref::<jobs::RunFailure>().is_some() {
                jobs::RUN_FAILED
            } else {
                client::exit_code(&e)
            };
            eprintln!("error: {e:#}");
            if code == jobs::RUN_FAILED {
                std::process::exit(i32::from(code));
            }
            ExitCode::from(code)
        }
    }
}
