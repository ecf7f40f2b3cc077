//! Membership: which nodes of the cell are alive, suspect or dead, and what
//! each one's sensors read.
//!
//! Owns a SWIM failure detector (the `foca` crate, not a hand-written
//! protocol) and the dissemination of sensors as foca custom broadcasts. Its
//! datagrams travel as `POST /internal/gossip` on the node's mutual-TLS port, so
//! that gossip is authenticated like every other node-to-node call; the node's
//! router hands received bodies to [`Membership::receive`].
//!
//! Nothing here is durable or consistent: it is the cell as this node observes
//! it, each value with its age. Decisions that must agree go to `wos-meta`.

mod swim;

pub use swim::{MemberState, MemberView, Membership, MembershipConfig};
