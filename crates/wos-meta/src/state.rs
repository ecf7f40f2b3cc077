//! The cell's metadata and the commands that change it: a deterministic state
//! machine, with no I/O, so that every replica applying the same log reaches
//! the same state. Later parts (files, jobs, slices, services) add their own
//! tables and commands here.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use wos_api::{JobInfo, JobState, JobUsage};
use wos_auth::{PrincipalDirectory, PrincipalRecord, TokenRecord};
use wos_net::PeerKind;

/// A node as the cell records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// The Raft node id.
    pub id: u64,
    /// `host:port` of its API and node-to-node port.
    pub address: String,
    /// Unix seconds when it joined.
    pub joined: u64,
    /// Core nodes are Raft voters.
    pub core: bool,
    /// The node's Ed25519 public key, hex.
    pub public_key: String,
}

/// A value in the cell's key-value space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvValue {
    pub value: String,
    pub revision: u64,
}

/// The whole replicated metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellState {
    pub cell: String,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub principals: BTreeMap<String, PrincipalRecord>,
    pub tokens: BTreeMap<String, TokenRecord>,
    pub kv: BTreeMap<String, KvValue>,
    /// The public root key of the cell's capability tokens (`ed25519/HEX`).
    pub cap_root: String,
    /// Revocation ids (hex) of revoked capability tokens.
    pub revoked: std::collections::BTreeSet<String>,
    /// Access control lists: object id (a prefix) -> principal id, group
    /// (`group:NAME`) or `anyuser` -> rights.
    pub acls: BTreeMap<String, BTreeMap<String, std::collections::BTreeSet<String>>>,
    /// Groups: name -> member principal ids.
    pub groups: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Jobs, running and recently ended.
    pub jobs: BTreeMap<String, JobInfo>,
    /// Idempotency keys of job starts: `OWNER\nKEY` -> job id.
    pub job_keys: BTreeMap<String, String>,
    /// Ended jobs, oldest first, so that the history stays bounded.
    pub jobs_ended: VecDeque<String>,
    /// The WebFS namespace: directories, files (versions as chunk lists),
    /// symlinks.
    pub fs: wos_fsmeta::FsState,
}

/// How many ended jobs the cell remembers.
pub const JOB_HISTORY: usize = 2000;

/// A change to the metadata, proposed to the Raft leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// The first entry of a cell.
    InitCell {
        cell: String,
        admin: PrincipalRecord,
        first_node: NodeRecord,
        cap_root: String,
    },
    /// Admit a node with a join token. `now` is the proposer's clock, so that
    /// every replica judges expiry the same way.
    RegisterNode {
        token_id: String,
        token_secret: String,
        now: u64,
        name: String,
        id: u64,
        address: String,
        core: bool,
        public_key: String,
    },
    /// Make a node a voter (`core`) or a learner.
    /// Forget a node: its record and its principal (the leader then takes it
    /// out of the Raft group).
    RemoveNode {
        name: String,
    },
    SetNodeRole {
        name: String,
        core: bool,
    },
    /// A known node moved to another address.
    SetNodeAddress {
        name: String,
        address: String,
    },
    AddPrincipal {
        record: PrincipalRecord,
    },
    AddToken {
        record: TokenRecord,
    },
    KvPut {
        key: String,
        value: String,
        if_revision: Option<u64>,
    },
    /// Set what `principal` may do on `object` (no rights: remove the entry).
    SetAcl {
        object: String,
        principal: String,
        rights: Vec<String>,
    },
    /// Set the members of a group (none: remove the group).
    SetGroup {
        name: String,
        members: Vec<String>,
    },
    /// Refuse every capability token carrying this revocation id (hex).
    Revoke {
        id: String,
    },
    /// Record a job that is starting. With an idempotency key already used
    /// by the same owner, nothing changes and the existing job is answered.
    JobStart {
        job: JobInfo,
        key: Option<String>,
    },
    /// A job ended (or failed to start).
    JobEnd {
        id: String,
        state: JobState,
        ended_ms: u64,
        usage: Option<JobUsage>,
    },
    /// Every job still running on `node` that started before `before_ms` is
    /// lost (the node died or restarted).
    JobsLost {
        node: String,
        reason: String,
        before_ms: u64,
        ended_ms: u64,
    },
    /// A change to the WebFS namespace.
    Fs {
        op: wos_fsmeta::FsOp,
    },
    /// Set aside `count` WebFS inode ids for `owner` (see
    /// [`wos_fsmeta::FsState::reserve_ids`]). Changes no visible object, so
    /// it breaks no callback.
    ReserveFileIds {
        owner: String,
        count: u64,
    },
    /// No change: used to measure the log.
    Noop,
}

impl Command {
    /// The WebFS objects this command changes (see [`wos_fsmeta::FsOp::touched`]).
    pub fn touched_files(&self) -> Vec<wos_fsmeta::Ino> {
        match self {
            Command::Fs { op } => op.touched(),
            _ => vec![],
        }
    }
}

/// What applying a command answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// The node was admitted under this (unique) name.
    NodeAdmitted {
        name: String,
    },
    Kv {
        key: String,
        value: KvValue,
    },
    /// A job start: the job as recorded, and whether it existed already
    /// (same owner and idempotency key).
    Job {
        job: Box<JobInfo>,
        existing: bool,
    },
    /// The answer to a namespace change (a refusal changed nothing).
    Fs {
        reply: Box<Result<wos_fsmeta::FsReply, wos_fsmeta::FsError>>,
    },
    /// The ids [`Command::ReserveFileIds`] set aside (a refusal changed nothing).
    FileIds {
        ids: Result<std::ops::Range<u64>, wos_fsmeta::FsError>,
    },
    /// The command was refused and changed nothing.
    Rejected {
        reason: Rejection,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    BadToken(String),
    Exists(String),
    NotFound(String),
    Conflict(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::BadToken(m)
            | Rejection::Exists(m)
            | Rejection::NotFound(m)
            | Rejection::Conflict(m) => f.write_str(m),
        }
    }
}

impl CellState {
    /// Applies `cmd`, written at log index `index`. Refusals change nothing.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Outcome {
        match cmd {
            Command::Noop => Outcome::Done,
            Command::InitCell {
                cell,
                admin,
                first_node,
                cap_root,
            } => {
                if !self.cell.is_empty() {
                    return reject(Rejection::Exists(format!(
                        "cell {} is already initialised",
                        self.cell
                    )));
                }
                self.cell = cell.clone();
                self.cap_root = cap_root.clone();
                self.principals.insert(admin.name.clone(), admin.clone());
                self.add_node(first_node.clone());
                Outcome::Done
            }
            Command::RegisterNode {
                token_id,
                token_secret,
                now,
                name,
                id,
                address,
                core,
                public_key,
            } => {
                let Some(token) = self.tokens.get(token_id) else {
                    return reject(Rejection::BadToken(
                        "join token is not valid for this cell (unknown token id)".into(),
                    ));
                };
                if let Some(why) = token.refuse(token_secret, *now) {
                    return reject(Rejection::BadToken(why.into()));
                }
                // A node that joins again with the same id keeps its name.
                if let Some(existing) = self.nodes.values().find(|n| n.id == *id) {
                    let name = existing.name.clone();
                    self.nodes.get_mut(&name).expect("found above").address = address.clone();
                    return Outcome::NodeAdmitted { name };
                }
                let name = self.unique_name(name);
                self.add_node(NodeRecord {
                    name: name.clone(),
                    id: *id,
                    address: address.clone(),
                    joined: *now,
                    core: *core,
                    public_key: public_key.clone(),
                });
                Outcome::NodeAdmitted { name }
            }
            Command::RemoveNode { name } => match self.nodes.remove(name) {
                Some(_) => {
                    self.principals.remove(name);
                    Outcome::Done
                }
                None => reject(Rejection::NotFound(format!("no node named {name}"))),
            },
            Command::SetNodeRole { name, core } => match self.nodes.get_mut(name) {
                Some(n) => {
                    n.core = *core;
                    Outcome::Done
                }
                None => reject(Rejection::NotFound(format!("no node named {name}"))),
            },
            Command::SetNodeAddress { name, address } => match self.nodes.get_mut(name) {
                Some(n) => {
                    n.address = address.clone();
                    Outcome::Done
                }
                None => reject(Rejection::NotFound(format!("no node named {name}"))),
            },
            Command::AddPrincipal { record } => {
                if self.principals.contains_key(&record.name) {
                    return reject(Rejection::Exists(format!(
                        "a principal named {} already exists: choose another name",
                        record.name
                    )));
                }
                self.principals.insert(record.name.clone(), record.clone());
                Outcome::Done
            }
            Command::SetAcl {
                object,
                principal,
                rights,
            } => {
                let acl = self.acls.entry(object.clone()).or_default();
                if rights.is_empty() {
                    acl.remove(principal);
                } else {
                    acl.insert(principal.clone(), rights.iter().cloned().collect());
                }
                if acl.is_empty() {
                    self.acls.remove(object);
                }
                Outcome::Done
            }
            Command::SetGroup { name, members } => {
                if members.is_empty() {
                    self.groups.remove(name);
                } else {
                    self.groups
                        .insert(name.clone(), members.iter().cloned().collect());
                }
                Outcome::Done
            }
            Command::Revoke { id } => {
                self.revoked.insert(id.clone());
                Outcome::Done
            }
            Command::AddToken { record } => {
                self.tokens.insert(record.id.clone(), record.clone());
                Outcome::Done
            }
            Command::JobStart { job, key } => self.job_start(job, key.as_deref()),
            Command::Fs { op } => Outcome::Fs {
                reply: Box::new(self.fs.apply(op)),
            },
            Command::ReserveFileIds { owner, count } => Outcome::FileIds {
                ids: self.fs.reserve_ids(owner, *count),
            },
            Command::JobEnd {
                id,
                state,
                ended_ms,
                usage,
            } => {
                let Some(job) = self.jobs.get_mut(id) else {
                    return reject(Rejection::NotFound(format!("no job {id}")));
                };
                // A node that was thought dead may still report the real end.
                let first_end = job.state.is_running();
                job.state = state.clone();
                job.ended_ms = Some(*ended_ms);
                job.usage = usage.clone();
                if first_end {
                    self.job_ended(id);
                }
                Outcome::Done
            }
            Command::JobsLost {
                node,
                reason,
                before_ms,
                ended_ms,
            } => {
                let lost: Vec<String> = self
                    .jobs
                    .values()
                    .filter(|j| &j.node == node && j.state.is_running())
                    .filter(|j| j.started_ms < *before_ms)
                    .map(|j| j.id.clone())
                    .collect();
                for id in lost {
                    let job = self.jobs.get_mut(&id).expect("listed above");
                    job.state = JobState::Lost {
                        reason: reason.clone(),
                    };
                    job.ended_ms = Some(*ended_ms);
                    self.job_ended(&id);
                }
                Outcome::Done
            }
            Command::KvPut {
                key,
                value,
                if_revision,
            } => {
                let current = self.kv.get(key).map(|v| v.revision).unwrap_or(0);
                if let Some(expected) = if_revision
                    && *expected != current
                {
                    return reject(Rejection::Conflict(format!(
                        "{key} is at revision {current}, not {expected}: someone else wrote it first"
                    )));
                }
                let v = KvValue {
                    value: value.clone(),
                    revision: index,
                };
                self.kv.insert(key.clone(), v.clone());
                Outcome::Kv {
                    key: key.clone(),
                    value: v,
                }
            }
        }
    }

    fn job_start(&mut self, job: &JobInfo, key: Option<&str>) -> Outcome {
        let key = key.map(|k| format!("{}\n{k}", job.owner));
        if let Some(existing) = key.as_ref().and_then(|k| self.job_keys.get(k))
            && let Some(found) = self.jobs.get(existing)
        {
            return Outcome::Job {
                job: Box::new(found.clone()),
                existing: true,
            };
        }
        if self.jobs.contains_key(&job.id) {
            return reject(Rejection::Exists(format!("job {} exists already", job.id)));
        }
        if let Some(k) = key {
            self.job_keys.insert(k, job.id.clone());
        }
        self.jobs.insert(job.id.clone(), job.clone());
        if !job.state.is_running() {
            self.job_ended(&job.id);
        }
        Outcome::Job {
            job: Box::new(job.clone()),
            existing: false,
        }
    }

    /// Notes that a job ended and forgets the oldest ended jobs past
    /// [`JOB_HISTORY`].
    fn job_ended(&mut self, id: &str) {
        self.jobs_ended.push_back(id.to_string());
        while self.jobs_ended.len() > JOB_HISTORY {
            let old = self.jobs_ended.pop_front().expect("non-empty");
            if let Some(job) = self.jobs.remove(&old) {
                let prefix = format!("{}\n", job.owner);
                self.job_keys
                    .retain(|k, v| !(v == &old && k.starts_with(&prefix)));
            }
        }
    }

    fn add_node(&mut self, node: NodeRecord) {
        let principal = PrincipalRecord {
            name: node.name.clone(),
            kind: PeerKind::Node,
            admin: false,
            created: node.joined,
            public_key: node.public_key.clone(),
        };
        self.principals.insert(node.name.clone(), principal);
        self.nodes.insert(node.name.clone(), node);
    }

    /// `name`, or `name-2`, `name-3`, ... whichever is free among principals.
    fn unique_name(&self, name: &str) -> String {
        if !self.principals.contains_key(name) {
            return name.to_string();
        }
        (2..)
            .map(|i| format!("{name}-{i}"))
            .find(|n| !self.principals.contains_key(n))
            .expect("some suffix is free")
    }

    pub fn node_by_id(&self, id: u64) -> Option<&NodeRecord> {
        self.nodes.values().find(|n| n.id == id)
    }
}

fn reject(reason: Rejection) -> Outcome {
    Outcome::Rejected { reason }
}

/// Whether an ACL on `acl_object` applies to `object_id`: by name prefix,
/// except that file system ACLs follow path components (an ACL on
/// `fs:/proj` covers `/proj` and `/proj/x`, not `/project`).
fn acl_covers(acl_object: &str, object_id: &str) -> bool {
    match acl_object.strip_prefix("fs:") {
        Some(dir) => {
            let dir = dir.trim_end_matches('/');
            let Some(path) = object_id.strip_prefix("fs:") else {
                return false;
            };
            dir.is_empty()
                || path == dir
                || path
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
        None => object_id.starts_with(acl_object),
    }
}

impl wos_auth::cap::CapDirectory for CellState {
    fn is_revoked(&self, id_hex: &str) -> bool {
        self.revoked.contains(id_hex)
    }

    fn principal_with_key(&self, key_hex: &str) -> Option<String> {
        let p = self
            .principals
            .values()
            .find(|p| !p.public_key.is_empty() && p.public_key == key_hex)?;
        let principal = match p.kind {
            PeerKind::Node => wos_auth::Principal::Node(p.name.clone()),
            PeerKind::User => wos_auth::Principal::User(p.name.clone()),
        };
        Some(principal.id())
    }
}

impl PrincipalDirectory for CellState {
    fn principal(&self, name: &str) -> Option<PrincipalRecord> {
        self.principals.get(name).cloned()
    }

    fn owner(&self, object: &wos_auth::Object) -> Option<String> {
        match object {
            wos_auth::Object::Job(id) => self.jobs.get(id).map(|j| j.owner.clone()),
            _ => None,
        }
    }

    fn acl_grant(&self, principal_id: &str, right: &str, object_id: &str) -> Option<String> {
        let member_of = |group: &str| {
            self.groups
                .get(group)
                .is_some_and(|m| m.contains(principal_id))
        };
        self.acls
            .iter()
            .filter(|(obj, _)| acl_covers(obj, object_id))
            .find(|(_, entries)| {
                entries.iter().any(|(who, rights)| {
                    let applies = who == principal_id
                        || (who == "anyuser" && principal_id.starts_with("user:"))
                        || who.strip_prefix("group:").is_some_and(member_of);
                    applies && rights.contains(right)
                })
            })
            .map(|(obj, _)| obj.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wos_auth::JoinToken;

    fn cell() -> CellState {
        let mut s = CellState::default();
        let admin = PrincipalRecord {
            name: "admin".into(),
            kind: PeerKind::User,
            admin: true,
            created: 0,
            public_key: String::new(),
        };
        let first_node = NodeRecord {
            name: "n1".into(),
            id: 1,
            address: "a:1".into(),
            joined: 0,
            core: true,
            public_key: String::new(),
        };
        assert_eq!(
            s.apply(
                1,
                &Command::InitCell {
                    cell: "lab".into(),
                    admin,
                    first_node,
                    cap_root: String::new(),
                }
            ),
            Outcome::Done
        );
        s
    }

    #[test]
    fn join_checks_token_and_makes_names_unique() {
        let mut s = cell();
        let t = JoinToken::generate("ff");
        s.apply(
            2,
            &Command::AddToken {
                record: t.record(100, "admin"),
            },
        );
        let join = |name: &str, id: u64, secret: &str, now: u64| Command::RegisterNode {
            token_id: t.id.clone(),
            token_secret: secret.into(),
            now,
            name: name.into(),
            id,
            address: "b:1".into(),
            core: false,
            public_key: String::new(),
        };
        let before = s.clone();
        assert!(matches!(
            s.apply(3, &join("n2", 2, "00", 1)),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            s.apply(3, &join("n2", 2, &t.secret, 100)),
            Outcome::Rejected { .. }
        ));
        assert_eq!(s, before, "refusals change nothing");
        assert_eq!(
            s.apply(4, &join("n1", 2, &t.secret, 5)),
            Outcome::NodeAdmitted {
                name: "n1-2".into()
            }
        );
        // Re-joining with the same id keeps the name.
        assert_eq!(
            s.apply(5, &join("other", 2, &t.secret, 5)),
            Outcome::NodeAdmitted {
                name: "n1-2".into()
            }
        );
        assert_eq!(s.nodes.len(), 2);
    }

    #[test]
    fn file_system_acls_follow_path_components() {
        assert!(acl_covers("fs:/proj", "fs:/proj"));
        assert!(acl_covers("fs:/proj", "fs:/proj/a/b"));
        assert!(acl_covers("fs:/proj/", "fs:/proj/a"));
        assert!(!acl_covers("fs:/proj", "fs:/project"));
        assert!(acl_covers("fs:/", "fs:/anything"));
        assert!(!acl_covers("fs:/", "kv:x"));
        assert!(acl_covers("kv:pro", "kv:project"));
    }

    #[test]
    fn acls_grant_by_prefix_principal_group_and_anyuser() {
        let mut s = cell();
        let set = |o: &str, p: &str, r: &[&str]| Command::SetAcl {
            object: o.into(),
            principal: p.into(),
            rights: r.iter().map(|x| x.to_string()).collect(),
        };
        s.apply(2, &set("kv:proj/", "user:alice", &["read", "write"]));
        s.apply(3, &set("kv:pub/", "anyuser", &["read"]));
        s.apply(4, &set("kv:team/", "group:team", &["read"]));
        s.apply(
            5,
            &Command::SetGroup {
                name: "team".into(),
                members: vec!["user:bob".into()],
            },
        );
        assert_eq!(
            s.acl_grant("user:alice", "write", "kv:proj/x"),
            Some("kv:proj/".into())
        );
        assert_eq!(s.acl_grant("user:alice", "admin", "kv:proj/x"), None);
        assert_eq!(s.acl_grant("user:bob", "write", "kv:proj/x"), None);
        assert!(s.acl_grant("user:carol", "read", "kv:pub/a").is_some());
        assert!(s.acl_grant("node:n1", "read", "kv:pub/a").is_none());
        assert!(s.acl_grant("user:bob", "read", "kv:team/a").is_some());
        s.apply(6, &set("kv:proj/", "user:alice", &[]));
        assert_eq!(s.acl_grant("user:alice", "read", "kv:proj/x"), None);
        assert!(!s.acls.contains_key("kv:proj/"));
    }

    #[test]
    fn kv_compare_and_swap() {
        let mut s = cell();
        let put = |v: &str, r| Command::KvPut {
            key: "k".into(),
            value: v.into(),
            if_revision: r,
        };
        assert!(matches!(s.apply(2, &put("a", Some(0))), Outcome::Kv { .. }));
        assert!(matches!(
            s.apply(3, &put("b", Some(0))),
            Outcome::Rejected {
                reason: Rejection::Conflict(_)
            }
        ));
        assert!(matches!(s.apply(4, &put("c", Some(2))), Outcome::Kv { .. }));
        assert_eq!(
            s.kv["k"],
            KvValue {
                value: "c".into(),
                revision: 4
            }
        );
    }

    fn job(id: &str, node: &str, started_ms: u64) -> JobInfo {
        JobInfo {
            id: id.into(),
            owner: "user:alice".into(),
            node: node.into(),
            kind: wos_api::JobKind::Native,
            argv: vec!["true".into()],
            limits: Default::default(),
            started_ms,
            ended_ms: None,
            state: JobState::Running,
            usage: None,
        }
    }

    fn start(s: &mut CellState, j: JobInfo, key: Option<&str>) -> Outcome {
        s.apply(
            1,
            &Command::JobStart {
                job: j,
                key: key.map(String::from),
            },
        )
    }

    #[test]
    fn job_starts_are_idempotent_per_owner_and_key() {
        let mut s = CellState::default();
        let first = start(&mut s, job("j1", "n1", 10), Some("k"));
        assert!(matches!(
            first,
            Outcome::Job {
                existing: false,
                ..
            }
        ));
        // Same key, same owner: the first job, nothing new.
        match start(&mut s, job("j2", "n2", 11), Some("k")) {
            Outcome::Job {
                job,
                existing: true,
            } => assert_eq!(job.id, "j1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.jobs.len(), 1);
        // Another owner's key is another key.
        let mut other = job("j3", "n1", 12);
        other.owner = "user:bob".into();
        assert!(matches!(
            start(&mut s, other, Some("k")),
            Outcome::Job {
                existing: false,
                ..
            }
        ));
        // A reused id is refused.
        assert!(matches!(
            start(&mut s, job("j1", "n1", 13), None),
            Outcome::Rejected { .. }
        ));
    }

    #[test]
    fn jobs_end_get_lost_and_history_is_bounded() {
        let mut s = CellState::default();
        start(&mut s, job("a", "n1", 10), None);
        start(&mut s, job("b", "n1", 20), None);
        start(&mut s, job("c", "n2", 10), None);
        s.apply(
            2,
            &Command::JobEnd {
                id: "a".into(),
                state: JobState::Exited { code: 0 },
                ended_ms: 15,
                usage: None,
            },
        );
        // Only jobs on the node, running, and started before the cut-off.
        s.apply(
            3,
            &Command::JobsLost {
                node: "n1".into(),
                reason: "died".into(),
                before_ms: 25,
                ended_ms: 30,
            },
        );
        assert_eq!(s.jobs["a"].state, JobState::Exited { code: 0 });
        assert!(matches!(s.jobs["b"].state, JobState::Lost { .. }));
        assert!(s.jobs["c"].state.is_running());
        // A real end reported after all wins over "lost", once.
        s.apply(
            4,
            &Command::JobEnd {
                id: "b".into(),
                state: JobState::Exited { code: 1 },
                ended_ms: 40,
                usage: None,
            },
        );
        assert_eq!(s.jobs["b"].state, JobState::Exited { code: 1 });
        assert_eq!(s.jobs_ended.len(), 2);
        for i in 0..JOB_HISTORY + 10 {
            let id = format!("x{i}");
            start(&mut s, job(&id, "n3", 50), Some(&id));
            s.apply(
                5,
                &Command::JobEnd {
                    id,
                    state: JobState::Exited { code: 0 },
                    ended_ms: 60,
                    usage: None,
                },
            );
        }
        assert_eq!(s.jobs_ended.len(), JOB_HISTORY);
        assert!(s.jobs.contains_key("c"), "running jobs are never forgotten");
        assert!(!s.jobs.contains_key("a"));
        assert!(s.job_keys.len() <= JOB_HISTORY);
    }
}
