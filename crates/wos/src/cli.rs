//! Command-line definitions and dispatch.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{bench, client, daemon};

#[derive(Parser)]
#[command(
    name = "wos",
    version,
    about = "wos: many machines, one system",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

/// How a client finds the cell and proves who it is.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// API address of a node of the cell (host:port or https://host:port).
    #[arg(long, global = true, env = "WOS_CELL")]
    pub cell: Option<String>,
    /// Identity file (certificate and key) to authenticate with.
    #[arg(long, global = true, env = "WOS_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// A capability token to present with the request (it alone then
    /// decides what the request may do).
    #[arg(long, global = true, env = "WOS_CAP", hide_env_values = true)]
    pub cap: Option<String>,
    /// How long a request may take.
    #[arg(long, global = true, default_value = "15s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Start a working cell in the foreground with no configuration.
    Up(UpArgs),
    /// Create or manage a cell.
    #[command(subcommand)]
    Cell(CellCmd),
    /// Run a node (after `wos cell init`, or joining with --join/--token).
    Agent(AgentArgs),
    /// Show the cell: name, leader, voters, node counts.
    Status(JsonFlag),
    /// Nodes of the cell.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Users (principals).
    #[command(subcommand)]
    User(UserCmd),
    /// The cell's replicated key-value space.
    #[command(subcommand)]
    Kv(KvCmd),
    /// Access control lists on objects (AFS-like; checked by the same monitor).
    #[command(subcommand)]
    Acl(AclCmd),
    /// Groups of principals, for ACLs.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Capability tokens: mint, narrow, pass on, inspect, revoke.
    #[command(subcommand)]
    Cap(CapCmd),
    /// Decisions of the reference monitors of every node (admin).
    Audit(AuditArgs),
    /// Run a program on a node of the cell, sandboxed and limited, with its
    /// stdin, stdout, stderr and signals carried both ways.
    Run(crate::jobs::RunArgs),
    /// Jobs: running ones, or all that the cell remembers with --all.
    Ps {
        #[arg(long, short = 'a')]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// A job's output (stdout to stdout, stderr to stderr).
    Logs {
        /// Keep printing until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
        job: String,
    },
    /// Send a signal to a job.
    Kill {
        /// Signal name (TERM, INT, KILL, HUP, ...).
        #[arg(long, short = 's', default_value = "TERM")]
        signal: String,
        job: String,
    },
    /// Wait for a job to end; exit with its exit code.
    Wait { job: String },
    /// The cell's files (WebFS): ls, stat, cat, put, get, rm, mkdir, mv, fsck.
    #[command(subcommand)]
    Fs(crate::fs::FsCmd),
    /// Mount the cell's files (WebFS) at MOUNTPOINT with FUSE, until
    /// unmounted (umount, fusermount3 -u, Ctrl-C).
    Mount(crate::mount::MountArgs),
    /// Measure the cell.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum AclCmd {
    /// Grant PRINCIPAL (user:NAME, node:NAME, group:NAME, anyuser, or a user
    /// name) RIGHTS (comma-separated, or `none` to remove) on OBJECT and below.
    Set {
        object: String,
        principal: String,
        rights: String,
    },
    /// The ACL entries that apply to OBJECT.
    Get {
        object: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Set the members of a group (none: remove it).
    Set { name: String, members: Vec<String> },
}

/// Ways to narrow a token; each given one becomes a check.
#[derive(Args, Clone, Default)]
pub struct Narrowing {
    /// Keep only these rights (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub rights: Option<Vec<String>>,
    /// Only objects starting with this (e.g. kv:proj/).
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// Expire sooner.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// Only on this node.
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Subcommand)]
pub enum CapCmd {
    /// Mint a token for rights you hold; prints it alone on the last line.
    Mint {
        /// cell, node:NAME, principal:NAME, kv:PREFIX, job:ID or fs:/PATH.
        #[arg(long)]
        object: String,
        /// Comma-separated: read, write, list, admin, run, signal, logs, run-on, drain.
        #[arg(long, value_delimiter = ',', required = true)]
        rights: Vec<String>,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Only this principal may use it (a user name, or user:NAME / node:NAME).
        #[arg(long = "for")]
        holder: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Narrow a token offline (no cell needed); prints the new token.
    Attenuate {
        token: String,
        #[command(flatten)]
        narrowing: Narrowing,
    },
    /// Pass a token you hold on to another principal, signed with your identity's key.
    Delegate {
        token: String,
        /// The next holder: a user name, or user:NAME / node:NAME.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        narrowing: Narrowing,
    },
    /// Show what a token grants, to whom, until when, through which chain (offline).
    Inspect {
        token: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token (and everything narrowed or passed on from it) on every node.
    Revoke {
        /// The token, or its revocation id (hex, from `wos cap inspect`).
        token_or_id: String,
    },
}

#[derive(Args)]
pub struct AuditArgs {
    /// Only decisions about this principal (`user:NAME`, `node:NAME`, `anonymous`).
    #[arg(long)]
    pub principal: Option<String>,
    /// Only decisions about objects starting with this (`cell`, `node:N`, `kv:KEY`, ...).
    #[arg(long)]
    pub object: Option<String>,
    /// Only decisions since this long ago (e.g. 10m, 2h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct UpArgs {
    /// Data directory (default $XDG_DATA_HOME/wos, or ~/.local/share/wos).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address of the (first) node's API.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: String,
    /// Start a local development cell of this many nodes (separate processes).
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Also mount the cell's files at this directory (as `wos mount` does,
    /// with the admin identity), unmounted when the node stops.
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum CellCmd {
    /// Create a cell: its CA, its first (core) node in --data, the admin identity, and a join token
    /// (printed alone on the last line).
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Cell name, e.g. lab.example.org.
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub listen: String,
    /// Address other nodes reach this node at (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Name of the first node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Where to write the admin identity (default DATA/admin.identity).
    #[arg(long)]
    pub identity_out: Option<PathBuf>,
    /// Lifetime of the printed join token.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
}

#[derive(Args)]
pub struct AgentArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub listen: Option<String>,
    /// Address other nodes reach this node at (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address of a node of the cell to join (first start only).
    #[arg(long, requires = "token")]
    pub join: Option<String>,
    /// Join token from `wos cell init` or `wos token create`.
    #[arg(long, requires = "join")]
    pub token: Option<String>,
    /// Join as a core node (a Raft voter holding the cell's metadata).
    #[arg(long, requires = "join")]
    pub core: bool,
    /// Node name (default: the host name; made unique within the cell).
    #[arg(long, requires = "join")]
    pub name: Option<String>,
    /// Also mount the cell's files at this directory once the node serves
    /// (as `wos mount` does), unmounted when the node stops.
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,
    /// The identity the mount uses (default: DATA/admin.identity, which the
    /// first node of a cell has).
    #[arg(long, value_name = "FILE", requires = "mount")]
    pub mount_identity: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// List the nodes with role, state, load and when each was last heard.
    Ls(JsonFlag),
    /// Remove a dead node from the cell (its record, principal and Raft membership).
    Rm {
        node: String,
        /// Remove it even if it looks alive.
        #[arg(long)]
        force: bool,
    },
    /// Make a node a core node (Raft voter).
    Promote { node: String },
    /// Make a core node a worker (Raft learner).
    Demote { node: String },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a join token (printed alone on the last line).
    Create {
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user and write its identity file (default ./NAME.identity).
    Add {
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Make the user a cell administrator.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
pub enum KvCmd {
    /// Write a value (acknowledged once committed by a majority of core nodes).
    Put {
        key: String,
        value: String,
        /// Only if the key is at this revision (0: only if absent).
        #[arg(long)]
        if_revision: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Read a value (linearizable unless --stale).
    Get {
        key: String,
        #[arg(long)]
        stale: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Cmd::Up(a) => daemon::up(a).await,
        Cmd::Cell(CellCmd::Init(a)) => daemon::cell_init(a).await,
        Cmd::Agent(a) => daemon::agent(a).await,
        Cmd::Status(f) => client::status(&g, f.json).await,
        Cmd::Node(NodeCmd::Ls(f)) => client::node_ls(&g, f.json).await,
        Cmd::Node(NodeCmd::Promote { node }) => client::set_role(&g, &node, true).await,
        Cmd::Node(NodeCmd::Rm { node, force }) => client::node_rm(&g, &node, force).await,
        Cmd::Node(NodeCmd::Demote { node }) => client::set_role(&g, &node, false).await,
        Cmd::Token(TokenCmd::Create { ttl, json }) => client::token_create(&g, ttl, json).await,
        Cmd::User(UserCmd::Add { name, out, admin }) => {
            client::user_add(&g, &name, out, admin).await
        }
        Cmd::Kv(KvCmd::Put {
            key,
            value,
            if_revision,
            json,
        }) => client::kv_put(&g, &key, &value, if_revision, json).await,
        Cmd::Kv(KvCmd::Get { key, stale, json }) => client::kv_get(&g, &key, stale, json).await,
        Cmd::Audit(a) => client::audit(&g, a).await,
        Cmd::Cap(c) => crate::cap::run(&g, c).await,
        Cmd::Acl(AclCmd::Set {
            object,
            principal,
            rights,
        }) => client::acl_set(&g, &object, &principal, &rights).await,
        Cmd::Acl(AclCmd::Get { object, json }) => client::acl_get(&g, &object, json).await,
        Cmd::Group(GroupCmd::Set { name, members }) => client::group_set(&g, &name, members).await,
        Cmd::Run(a) => crate::jobs::run(&g, a).await,
        Cmd::Ps { all, json } => crate::jobs::ps(&g, all, json).await,
        Cmd::Logs { follow, job } => crate::jobs::logs(&g, &job, follow).await,
        Cmd::Kill { signal, job } => crate::jobs::kill(&g, &job, &signal).await,
        Cmd::Wait { job } => crate::jobs::wait(&g, &job).await,
        Cmd::Fs(c) => crate::fs::run(&g, c).await,
        Cmd::Mount(a) => crate::mount::run(&g, a).await,
        Cmd::Bench(b) => bench::run(&g, b).await,
    }
}
