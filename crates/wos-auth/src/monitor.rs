//! The reference monitor.

use wos_net::{PeerId, PeerKind};

use crate::PrincipalRecord;

/// An authenticated principal as the monitor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    Node(String),
    User(String),
}

impl From<&PeerId> for Principal {
    fn from(p: &PeerId) -> Principal {
        match p {
            PeerId::Anonymous => Principal::Anonymous,
            PeerId::Principal {
                kind: PeerKind::Node,
                name,
            } => Principal::Node(name.clone()),
            PeerId::Principal {
                kind: PeerKind::User,
                name,
            } => Principal::User(name.clone()),
        }
    }
}

impl Principal {
    /// The canonical name, as the audit log records it: `user:NAME`,
    /// `node:NAME` or `anonymous`.
    pub fn id(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Node(n) => format!("node:{n}"),
            Principal::User(n) => format!("user:{n}"),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => write!(f, "an anonymous client"),
            Principal::Node(n) => write!(f, "node {n}"),
            Principal::User(n) => write!(f, "user {n}"),
        }
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Download the cell CA certificate (public).
    FetchCa,
    /// Join the cell with a join token (the token is checked by the handler).
    Join,
    /// Read cell status, the node list and other non-secret state.
    Read,
    /// Write cell data (the key-value space; later files).
    Write,
    /// Change who belongs to the cell: users, tokens, voters.
    Administer,
    /// Node-to-node traffic: Raft, gossip, forwarded requests.
    NodeRpc,
    /// Mint a capability token (for rights the principal holds, which the
    /// handler checks right by right with [`ReferenceMonitor::decide`]).
    Mint,
    /// Start a job on a node.
    Run,
}

impl Action {
    /// Whether decisions on this action go to the audit log even when they
    /// allow (every denial does).
    pub fn privileged(self) -> bool {
        matches!(
            self,
            Action::Join | Action::Write | Action::Administer | Action::Mint | Action::Run
        )
    }

    /// The capability right that covers this action, if a capability can.
    pub fn right(self) -> Option<&'static str> {
        match self {
            Action::Read => Some("read"),
            Action::Write => Some("write"),
            Action::Administer => Some("admin"),
            Action::Run => Some("run"),
            Action::FetchCa | Action::Join | Action::NodeRpc | Action::Mint => None,
        }
    }

    /// The action a capability right stands for, to check that a minter
    /// holds what it grants.
    pub fn for_right(right: &str) -> Action {
        match right {
            "read" => Action::Read,
            "write" | "list" => Action::Write,
            "run" => Action::Run,
            _ => Action::Administer,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::FetchCa => "fetch the CA certificate of",
            Action::Join => "join",
            Action::Read => "read",
            Action::Write => "write",
            Action::Administer => "administer",
            Action::NodeRpc => "make node-to-node calls in",
            Action::Mint => "mint capabilities in",
            Action::Run => "run jobs on",
        }
    }
}

/// What a request acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Cell,
    Node(String),
    Principal(String),
    /// A key of the cell's key-value space.
    Kv(String),
    /// A job (read: see it and its output; write: signal it).
    Job(String),
    /// A WebFS path (`/dir/file`); ACLs on a directory cover what is below.
    Fs(String),
}

impl Object {
    /// The canonical name of the object, as the audit log records it:
    /// `cell`, `node:NAME`, `principal:NAME`, `kv:KEY`.
    pub fn id(&self) -> String {
        match self {
            Object::Cell => "cell".into(),
            Object::Node(n) => format!("node:{n}"),
            Object::Principal(n) => format!("principal:{n}"),
            Object::Kv(k) => format!("kv:{k}"),
            Object::Job(j) => format!("job:{j}"),
            Object::Fs(p) => format!("fs:{p}"),
        }
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Cell => write!(f, "the cell"),
            Object::Node(n) => write!(f, "node {n}"),
            Object::Principal(n) => write!(f, "principal {n}"),
            Object::Kv(k) => write!(f, "key {k}"),
            Object::Job(j) => write!(f, "job {j}"),
            Object::Fs(p) => write!(f, "path {p}"),
        }
    }
}

/// Why a request was refused. `unauthenticated` maps to HTTP 401, the rest to 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub unauthenticated: bool,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

/// Parses a capability object name (`cell`, `node:N`, `principal:N`, `kv:K`,
/// `job:J`).
pub fn parse_object(s: &str) -> Option<Object> {
    if s == "cell" {
        return Some(Object::Cell);
    }
    let (kind, rest) = s.split_once(':')?;
    Some(match kind {
        "node" => Object::Node(rest.into()),
        "principal" => Object::Principal(rest.into()),
        "kv" => Object::Kv(rest.into()),
        "job" => Object::Job(rest.into()),
        "fs" => Object::Fs(rest.into()),
        _ => return None,
    })
}

/// Where the monitor looks principals up (the cell metadata implements it).
pub trait PrincipalDirectory {
    fn principal(&self, name: &str) -> Option<PrincipalRecord>;

    /// The object whose ACL grants `right` on `object_id` to `principal_id`
    /// (directly, through a group, or to `anyuser`), if one does. ACLs apply
    /// to their object and everything it prefixes.
    fn acl_grant(&self, _principal_id: &str, _right: &str, _object_id: &str) -> Option<String> {
        None
    }

    /// The principal id that owns `object` (a job's starter), if it has one.
    fn owner(&self, _object: &Object) -> Option<String> {
        None
    }
}

/// The one authorization point of a node.
#[derive(Debug, Default, Clone)]
pub struct ReferenceMonitor;

impl ReferenceMonitor {
    /// Decides `(principal, action, object)`. Default deny: a request is allowed
    /// only by a rule below that names it.
    pub fn decide(
        &self,
        dir: &dyn PrincipalDirectory,
        who: &Principal,
        action: Action,
        object: &Object,
    ) -> Decision {
        let decision = self.rule(dir, who, action, object);
        if let Decision::Deny(d) = &decision {
            tracing::info!(target: "wos::audit", principal = %who, ?action, %object, "denied: {}", d.message);
        }
        decision
    }

    /// Decides a request that presents a capability token: the token alone
    /// decides (not the presenter's own rights), and a token bound to a
    /// holder must be presented by that holder or a delegate. Returns the
    /// decision and, for the audit log, the token that allowed it.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_capability(
        &self,
        verifier: &crate::cap::CapVerifier,
        dir: &dyn crate::cap::CapDirectory,
        who: &Principal,
        action: Action,
        object: &Object,
        token: &str,
        node: &str,
    ) -> (Decision, String) {
        let Some(right) = action.right() else {
            let msg = format!("a capability token cannot {} {object}", action.verb());
            return (
                Decision::Deny(Denial {
                    unauthenticated: false,
                    message: msg.clone(),
                }),
                msg,
            );
        };
        let presenter = match who {
            Principal::Anonymous => None,
            _ => Some(who.id()),
        };
        let req = crate::cap::CapRequest {
            presenter: presenter.as_deref(),
            operation: right,
            resource: &object.id(),
            node,
        };
        match verifier.authorize(token, &req, dir) {
            Ok(id) => (
                Decision::Allow,
                format!("capability {}", &id[..id.len().min(16)]),
            ),
            Err(message) => {
                tracing::info!(target: "wos::audit", principal = %who, ?action, %object, "denied: {message}");
                (
                    Decision::Deny(Denial {
                        unauthenticated: false,
                        message: message.clone(),
                    }),
                    message,
                )
            }
        }
    }

    fn rule(
        &self,
        dir: &dyn PrincipalDirectory,
        who: &Principal,
        action: Action,
        object: &Object,
    ) -> Decision {
        if matches!(action, Action::FetchCa | Action::Join) {
            return Decision::Allow;
        }
        let deny = |msg: String| {
            Decision::Deny(Denial {
                unauthenticated: false,
                message: msg,
            })
        };
        let (name, kind) = match who {
            Principal::Anonymous => {
                return Decision::Deny(Denial {
                    unauthenticated: true,
                    message: "no credentials: present a client certificate of this cell \
                              (use --identity FILE or WOS_IDENTITY; an admin creates one with `wos user add`)"
                        .into(),
                });
            }
            Principal::Node(n) => (n, PeerKind::Node),
            Principal::User(n) => (n, PeerKind::User),
        };
        // A node certificate is proof enough for node-to-node calls: the CA
        // issues one only to a node the cell admitted, and a node that has
        // just joined must accept Raft traffic before its replica knows anyone.
        if kind == PeerKind::Node && action == Action::NodeRpc {
            return Decision::Allow;
        }
        let Some(record) = dir.principal(name).filter(|r| r.kind == kind) else {
            return deny(format!(
                "{who} is not a principal of this cell (removed, or from another cell)"
            ));
        };
        // Cell admins may do everything a user can; node-to-node calls stay
        // for nodes.
        if record.admin && kind == PeerKind::User && action != Action::NodeRpc {
            return Decision::Allow;
        }
        match (action, object) {
            (Action::FetchCa | Action::Join, _) => Decision::Allow,
            (Action::Read, Object::Cell | Object::Node(_) | Object::Principal(_)) => {
                Decision::Allow
            }
            (Action::Read, _) if kind == PeerKind::Node => Decision::Allow,
            (Action::Mint, _) if kind == PeerKind::User => Decision::Allow,
            // A job's owner may see and signal it.
            (Action::Read | Action::Write, Object::Job(_))
                if dir.owner(object).as_deref() == Some(who.id().as_str()) =>
            {
                Decision::Allow
            }
            (
                Action::Read | Action::Write | Action::Administer,
                Object::Kv(_) | Object::Job(_) | Object::Fs(_),
            )
            | (Action::Run, Object::Node(_))
                if kind == PeerKind::User =>
            {
                let right = action.right().expect("these actions have rights");
                match dir.acl_grant(&who.id(), right, &object.id()) {
                    Some(_) => Decision::Allow,
                    None => deny(format!(
                        "{} lacks {right} on {}: no ACL grants it (see `wos acl get {}`)",
                        who.id(),
                        object.id(),
                        object.id()
                    )),
                }
            }
            (Action::Administer, _) => deny(format!(
                "{who} may not administer {object}: that needs the cell admin right"
            )),
            _ => deny(format!("{who} may not {} {object}", action.verb())),
        }
    }

    /// Why an allowed request was allowed, for the audit log.
    pub fn reason(
        &self,
        dir: &dyn PrincipalDirectory,
        who: &Principal,
        action: Action,
        object: &Object,
    ) -> String {
        if let (
            Principal::User(name),
            Some(right),
            Object::Kv(_) | Object::Job(_) | Object::Node(_),
        ) = (who, action.right(), object)
        {
            let admin = dir.principal(name).is_some_and(|r| r.admin);
            if !admin && dir.owner(object).as_deref() == Some(who.id().as_str()) {
                return "owner".into();
            }
            if !admin && let Some(acl) = dir.acl_grant(&who.id(), right, &object.id()) {
                return format!("ACL on {acl} grants {right}");
            }
        }
        "certificate of the cell".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Dir(HashMap<String, PrincipalRecord>);
    impl PrincipalDirectory for Dir {
        fn principal(&self, name: &str) -> Option<PrincipalRecord> {
            self.0.get(name).cloned()
        }
    }

    fn dir() -> Dir {
        let rec = |name: &str, kind, admin| {
            (
                name.to_string(),
                PrincipalRecord {
                    name: name.into(),
                    kind,
                    admin,
                    created: 0,
                    public_key: String::new(),
                },
            )
        };
        Dir(HashMap::from([
            rec("admin", PeerKind::User, true),
            rec("alice", PeerKind::User, false),
            rec("n1", PeerKind::Node, false),
        ]))
    }

    fn decide(who: Principal, action: Action) -> Decision {
        ReferenceMonitor.decide(&dir(), &who, action, &Object::Cell)
    }

    #[test]
    fn default_deny_and_rules() {
        use Action::*;
        let anon = Principal::Anonymous;
        let alice = Principal::User("alice".into());
        let admin = Principal::User("admin".into());
        let node = Principal::Node("n1".into());
        assert_eq!(decide(anon.clone(), Join), Decision::Allow);
        assert!(matches!(
            decide(anon, Read),
            Decision::Deny(Denial {
                unauthenticated: true,
                ..
            })
        ));
        assert_eq!(decide(alice.clone(), Read), Decision::Allow);
        assert!(matches!(
            decide(alice.clone(), Administer),
            Decision::Deny(Denial {
                unauthenticated: false,
                ..
            })
        ));
        assert!(matches!(decide(alice, NodeRpc), Decision::Deny(_)));
        assert_eq!(decide(admin.clone(), Administer), Decision::Allow);
        assert!(matches!(decide(admin, NodeRpc), Decision::Deny(_)));
        assert_eq!(decide(node.clone(), NodeRpc), Decision::Allow);
        assert!(matches!(decide(node, Administer), Decision::Deny(_)));
        // A user certificate whose name is a node's does not make it that node.
        assert!(matches!(
            decide(Principal::User("n1".into()), NodeRpc),
            Decision::Deny(_)
        ));
        assert!(matches!(
            decide(Principal::User("mallory".into()), Read),
            Decision::Deny(_)
        ));
    }
}
