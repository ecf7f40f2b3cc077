//! `wos mount`: the cell's files as a local file system (FUSE), served by
//! `wos-fuse` until unmounted.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use wos_fuse::{MountError, MountOptions};

use crate::cli::Global;
use crate::client::connect;

#[derive(Args, Debug)]
pub struct MountArgs {
    /// An existing directory to mount the cell's root at.
    pub mountpoint: PathBuf,
    /// Where files open for writing are kept until closed (needs room for
    /// the largest file written at once; default: the temporary directory).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Let other local users use the mount, as far as the modes shown allow
    /// (non-root: needs user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    pub allow_other: bool,
}

pub async fn run(g: &Global, a: MountArgs) -> anyhow::Result<()> {
    init_logging();
    let client = connect(g)?;
    let runtime = tokio::runtime::Handle::current();
    let opts = MountOptions {
        cache_dir: a.cache_dir,
        allow_other: a.allow_other,
        ..MountOptions::default()
    };
    let mountpoint = a.mountpoint;
    eprintln!(
        "mounting the cell's files at {} (Ctrl-C or `umount {}` to stop)",
        mountpoint.display(),
        mountpoint.display()
    );
    // The FUSE loop blocks its threads on the async client, so it must not
    // run on a runtime worker.
    let served =
        tokio::task::spawn_blocking(move || wos_fuse::mount(client, runtime, &mountpoint, opts))
            .await
            .context("the mount thread failed")?;
    match served {
        Ok(()) => Ok(()),
        // The API failure itself, so that the exit code says why (denied,
        // unavailable, ...).
        Err(MountError::Cell(f)) => {
            Err(anyhow::Error::new(f).context("cannot reach the cell's files"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Problems while serving (the cell unreachable, a file changed underneath)
/// are logged to stderr; `RUST_LOG=debug` shows every refusal. fuser's own
/// warnings stay hidden by default: after an outside `umount` it warns that
/// its own unmount failed, which is expected.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,fuser=error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
