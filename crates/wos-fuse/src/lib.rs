//! `wos mount`: a cell's files (WebFS) as a POSIX file system, through FUSE.
//!
//! Every FUSE request becomes calls to the node's HTTP gateway
//! (`/v1/fs/...`) through [`wos_api::Client`]:
//!
//! * A FUSE inode number is the WebFS object id, stable across renames; the
//!   mount remembers each inode's parent and name to build paths.
//! * Names and attributes are trusted for one second (see `fs::TTL`): a
//!   change made elsewhere shows up in `stat` within that; an open always
//!   asks the node, which answers from its cache under callbacks.
//! * A sequential reader reads one streamed response from where it started
//!   to the end of the file (the gateway fetches chunks ahead on it); other
//!   reads are small `Range` requests. A handle reads the version it
//!   opened; if another client commits a new one meanwhile, its reads fail
//!   with ESTALE rather than mix two versions.
//! * Writes are close-to-open, as in AFS: a file open for writing gets a
//!   local spool file (filled from the cell on its first write, unless
//!   created or truncated), and `close`/`fsync` upload it, streamed, as the
//!   file's next version, which readers see whole. The last close wins.
//! * Special files (FIFOs, sockets, device nodes) are WebFS names with
//!   attributes; the kernel gives FIFOs and sockets their behaviour among
//!   local programs, and the mount is `nodev`.
//! * Times are WebFS's (ms): `utimensat` sets atime and mtime; a file
//!   being written here shows its local change time until it is uploaded.
//!
//! Not supported: hard links (EPERM), extended attributes (EOPNOTSUPP),
//! changing owners (EPERM: owners are cell principals). Locks are the
//! kernel's own, so they only hold among programs using the same mount.

mod deferred;
mod errno;
mod files;
mod fs;
mod namespace;
mod nodes;
mod remote;
mod spool;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use fuser::{Config, MountOption, Session, SessionACL};
use tokio::runtime::Handle;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};
use wos_api::{ApiFailure, Client, ErrorKind};

use crate::fs::WosFs;
use crate::remote::Remote;
use crate::spool::SpoolDir;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Where files open for writing are spooled (default: the system's
    /// temporary directory). It needs room for the largest file written at
    /// once; a private subdirectory is made in it and removed at unmount.
    pub cache_dir: Option<PathBuf>,
    /// Let other local users use the mount too (with this mount's cell
    /// identity, within the modes shown). Non-root users need
    /// `user_allow_other` in `/etc/fuse.conf`.
    pub allow_other: bool,
    /// Threads serving the kernel: one slow transfer does not hold up the
    /// others.
    pub threads: usize,
    /// Unmount on SIGINT or SIGTERM (the process should then exit).
    pub unmount_on_signal: bool,
}

impl Default for MountOptions {
    fn default() -> MountOptions {
        MountOptions {
            cache_dir: None,
            allow_other: false,
            threads: 16,
            unmount_on_signal: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot reach the cell's files: {0}")]
    Cell(#[source] ApiFailure),
    #[error("{path}: {reason}")]
    Mountpoint { path: PathBuf, reason: String },
    #[error("cannot use the cache directory {path}: {source} (pick another with --cache-dir)")]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "mounting at {path} failed: {source} (as root this needs /dev/fuse; other users need \
         fusermount3, from Debian's fuse3 package)"
    )]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the FUSE session at {path} ended with an error: {source}")]
    Session {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Mounts the cell's files that `client` reaches at `mountpoint` and serves
/// them until the file system is unmounted (`umount`, `fusermount3 -u`, or
/// a signal when [`MountOptions::unmount_on_signal`]).
///
/// Blocks the calling thread, and FUSE threads call the async client with
/// `runtime.block_on`: call it from a thread of its own or
/// `spawn_blocking`, never from a runtime worker.
pub fn mount(
    client: Client,
    runtime: Handle,
    mountpoint: &Path,
    opts: MountOptions,
) -> Result<(), MountError> {
    check_mountpoint(mountpoint)?;
    let remote = Remote::new(client, runtime.clone());
    let root = match remote.stat("/") {
        Ok(root) => root,
        // Someone who may read only parts of the tree (ACLs below the root).
        Err(f) if f.kind == ErrorKind::Denied => namespace::traverse_only("/", ""),
        Err(f) => return Err(MountError::Cell(f)),
    };
    let spools =
        SpoolDir::new(opts.cache_dir.as_deref()).map_err(|source| MountError::CacheDir {
            path: opts.cache_dir.clone().unwrap_or_else(std::env::temp_dir),
            source,
        })?;
    let notifier = Arc::new(OnceLock::new());
    let fs = WosFs::new(remote, root, spools, notifier.clone());
    let session =
        Session::new(fs, mountpoint, &config(&opts)).map_err(|source| MountError::Mount {
            path: mountpoint.to_path_buf(),
            source,
        })?;
    let _ = notifier.set(session.notifier());
    info!("mounted the cell's files at {}", mountpoint.display());
    let watcher = opts
        .unmount_on_signal
        .then(|| runtime.spawn(unmount_on_signal(mountpoint.to_path_buf())));
    let result = session.run();
    if let Some(w) = watcher {
        w.abort();
    }
    info!("unmounted {}", mountpoint.display());
    result.map_err(|source| MountError::Session {
        path: mountpoint.to_path_buf(),
        source,
    })
}

fn check_mountpoint(mountpoint: &Path) -> Result<(), MountError> {
    let bad = |reason: String| MountError::Mountpoint {
        path: mountpoint.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(mountpoint).map_err(|e| {
        bad(format!(
            "{e} (the mount point must be an existing directory)"
        ))
    })?;
    if !meta.is_dir() {
        return Err(bad(
            "not a directory (the mount point must be a directory)".into()
        ));
    }
    Ok(())
}

fn config(opts: &MountOptions) -> Config {
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName("wos".into()),
        MountOption::Subtype("wos".into()),
        // The kernel checks modes itself (against the mounting user, whom
        // every file shows as its owner): with --allow-other, other users
        // get only what the modes grant them, not this identity's rights.
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    cfg.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(opts.threads.max(1));
    cfg
}

/// Unmounts on SIGINT or SIGTERM; the FUSE session then ends.
async fn unmount_on_signal(mountpoint: PathBuf) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!(
            "cannot catch signals: unmount {} with umount",
            mountpoint.display()
        );
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        info!("unmounting {}", mountpoint.display());
        let mp = mountpoint.clone();
        match tokio::task::spawn_blocking(move || unmount(&mp)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("unmounting {}: {e}", mountpoint.display()),
            Err(e) => warn!("unmounting {}: {e}", mountpoint.display()),
        }
    }
}

/// Unmounts the file system at `mountpoint`: with umount(2) as root (lazily
/// when files are still open: it vanishes from the namespace now and its
/// session ends when they are closed), else with `fusermount3 -u`.
pub fn unmount(mountpoint: &Path) -> std::io::Result<()> {
    let c = CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EBUSY) => {
            warn!(
                "{} is busy: detached; open files keep working until closed",
                mountpoint.display()
            );
            // SAFETY: as above.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        Some(libc::EPERM) => fusermount_unmount(mountpoint),
        // Not a mount point (any more): nothing to do.
        Some(libc::EINVAL) => Ok(()),
        _ => Err(err),
    }
}

fn fusermount_unmount(mountpoint: &Path) -> std::io::Result<()> {
    for bin in ["fusermount3", "fusermount"] {
        match Command::new(bin)
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .status()
        {
            Ok(s) if s.success() => return Ok(()),
            Ok(s) => {
                return Err(std::io::Error::other(format!(
                    "{bin} -u {} failed ({s})",
                    mountpoint.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "only root can unmount without fusermount3: install Debian's fuse3 package",
    ))
}
