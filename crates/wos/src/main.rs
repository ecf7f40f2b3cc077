//! `wos`: one binary that is both the daemon (`wos up`, `wos agent`,
//! `wos cell init`) and the CLI of a cell (`wos status`, `wos node ls`, ...).
//!
//! Exit codes (scripts may rely on them): 0 success; 1 other failure; 2 bad
//! usage; 3 denied (401/403); 4 not found; 5 conflict; 6 cell unavailable
//! (unreachable, or no metadata leader).

mod bench;
mod cap;
mod cli;
mod client;
mod daemon;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(cli::dispatch(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = client::exit_code(&e);
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}
