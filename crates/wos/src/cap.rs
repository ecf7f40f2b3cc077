//! `wos cap`: capability tokens. Attenuate, delegate and inspect work
//! offline; mint and revoke ask the cell.

use anyhow::Context;
use wos_api::{Identity, MintCapRequest, MintCapResponse, RevokeCapRequest, RevokeCapResponse};
use wos_auth::cap::{self, Attenuation};

use crate::cli::{CapCmd, Global, Narrowing};
use crate::client::{connect, identity_path, principal_id, print_json};

fn attenuation(n: Narrowing) -> Attenuation {
    Attenuation {
        rights: n.rights,
        path_prefix: n.path_prefix,
        ttl: n.ttl,
        node: n.node,
    }
}

pub async fn run(g: &Global, cmd: CapCmd) -> anyhow::Result<()> {
    match cmd {
        CapCmd::Mint {
            object,
            rights,
            ttl,
            holder,
            json,
        } => {
            let c = connect(g)?;
            let req = MintCapRequest {
                object,
                rights,
                ttl_secs: ttl.as_secs().max(1),
                holder,
            };
            let m: MintCapResponse = c.post("/v1/caps", &req).await?;
            if json {
                return print_json(&m);
            }
            println!("{}", m.token);
        }
        CapCmd::Attenuate { token, narrowing } => {
            let m = cap::attenuate(&token, &attenuation(narrowing))?;
            println!("{}", m.token);
        }
        CapCmd::Delegate {
            token,
            to,
            narrowing,
        } => {
            let me = Identity::load(&identity_path(g)?)?;
            let seed = wos_net::ed25519_seed(&me.key).context("reading your identity's key")?;
            let m = cap::delegate(&token, &principal_id(&to), &seed, &attenuation(narrowing))?;
            println!("{}", m.token);
        }
        CapCmd::Inspect { token, json } => {
            let info = cap::inspect(&token)?;
            if json {
                return print_json(&info);
            }
            println!("token id {}", info.id);
            for b in &info.blocks {
                println!("-- block {} ({})", b.index, b.kind);
                for line in b.source.lines().filter(|l| !l.trim().is_empty()) {
                    println!("   {line}");
                }
            }
        }
        CapCmd::Revoke { token_or_id } => {
            let c = connect(g)?;
            let is_id =
                token_or_id.len() == 128 && token_or_id.bytes().all(|b| b.is_ascii_hexdigit());
            let req = if is_id {
                RevokeCapRequest {
                    token: None,
                    id: Some(token_or_id),
                }
            } else {
                RevokeCapRequest {
                    token: Some(token_or_id),
                    id: None,
                }
            };
            let r: RevokeCapResponse = c.post("/v1/caps/revoke", &req).await?;
            println!("revoked {}", r.id);
        }
    }
    Ok(())
}
