//! The openraft type configuration of the metadata group.

use std::fmt;

use openraft::type_config::alias::{
    EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf,
};

use crate::state::{Command, Outcome};

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets (join tokens) into logs.
        match self {
            Command::RegisterNode { name, id, .. } => write!(f, "RegisterNode({name}, {id})"),
            Command::KvPut { key, .. } => write!(f, "KvPut({key})"),
            Command::AddPrincipal { record } => write!(f, "AddPrincipal({})", record.name),
            Command::AddToken { record } => write!(f, "AddToken({})", record.id),
            other => write!(
                f,
                "{}",
                format!("{other:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("?")
            ),
        }
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub type SnapshotData = Vec<u8>;
pub type LogId = LogIdOf<TypeConfig>;
pub type Vote = VoteOf<TypeConfig>;
pub type Entry = EntryOf<TypeConfig>;
pub type SnapMeta = SnapshotMetaOf<TypeConfig>;
pub type Snap = SnapshotOf<TypeConfig, SnapshotData>;
pub type StoredMembership = StoredMembershipOf<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig, crate::sm::StateMachine>;
