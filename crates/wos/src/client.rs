//! Client commands: talk to a node's `/v1/` API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use wos_api::*;

use crate::cli::Global;

/// The exit code for an error (see the crate doc).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(f) = e.downcast_ref::<ApiFailure>() {
        return match f.kind {
            ErrorKind::Denied => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::Conflict => 5,
            ErrorKind::Unavailable => 6,
            ErrorKind::BadRequest | ErrorKind::Other => 1,
        };
    }
    1
}

fn load_client_config() -> anyhow::Result<ClientConfig> {
    let Some(path) = default_client_config_path() else {
        return Ok(ClientConfig::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("invalid client config {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Builds a client from --cell/--identity, the environment, or the config
/// that `wos up` wrote.
pub fn connect(g: &Global) -> anyhow::Result<Client> {
    let cfg = load_client_config()?;
    let path = g.identity.clone().or(cfg.identity).ok_or_else(|| {
        anyhow!("no identity: pass --identity FILE or set WOS_IDENTITY (`wos up` writes a default config)")
    })?;
    let identity = Identity::load(&path)?;
    let base = g
        .cell
        .clone()
        .or(cfg.cell)
        .or_else(|| identity.addresses.first().cloned())
        .ok_or_else(|| anyhow!("no cell address: pass --cell ADDR or set WOS_CELL"))?;
    Ok(Client::new(&base, &identity, g.timeout)?.with_bearer(g.cap.clone()))
}

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn status(g: &Global, json: bool) -> anyhow::Result<()> {
    let s = connect(g)?.status().await?;
    if json {
        return print_json(&s);
    }
    println!("cell:      {}", s.cell);
    println!("answered:  {} (applied index {})", s.node, s.applied_index);
    println!(
        "leader:    {} (term {})",
        s.leader.as_deref().unwrap_or("none"),
        s.term
    );
    println!("voters:    {}", s.voters.join(", "));
    println!(
        "nodes:     {} total, {} alive, {} suspect, {} dead",
        s.nodes.total, s.nodes.alive, s.nodes.suspect, s.nodes.dead
    );
    Ok(())
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

pub async fn node_ls(g: &Global, json: bool) -> anyhow::Result<()> {
    let nodes = connect(g)?.nodes().await?;
    if json {
        return print_json(&nodes);
    }
    println!(
        "{:<20} {:<22} {:<7} {:<8} {:>6} {:>10} {:>10} {:>10}",
        "NAME", "ADDRESS", "ROLE", "STATE", "LOAD", "MEM FREE", "DISK FREE", "HEARD"
    );
    for n in nodes {
        let name = if n.leader {
            format!("{} *", n.name)
        } else {
            n.name.clone()
        };
        let (load, mem, disk) = match &n.sensors {
            Some(s) => (
                format!("{:.2}", s.cpu_load),
                human_bytes(s.mem_free_bytes),
                human_bytes(s.disk_free_bytes),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let heard = n
            .last_heard_secs
            .map(|s| format!("{s:.1}s ago"))
            .unwrap_or_else(|| "never".into());
        println!(
            "{name:<20} {:<22} {:<7} {:<8} {load:>6} {mem:>10} {disk:>10} {heard:>10}",
            n.address,
            n.role.to_string(),
            n.state.to_string()
        );
    }
    Ok(())
}

pub async fn set_role(g: &Global, node: &str, core: bool) -> anyhow::Result<()> {
    let c = connect(g)?;
    let verb = if core { "promote" } else { "demote" };
    let info: NodeInfo = c
        .post(&format!("/v1/nodes/{node}/{verb}"), &serde_json::json!({}))
        .await?;
    println!(
        "{}: {} requested; the leader changes the voters once it has caught up (see `wos status`)",
        info.name,
        if core { "core" } else { "worker" }
    );
    Ok(())
}

pub async fn token_create(g: &Global, ttl: Duration, json: bool) -> anyhow::Result<()> {
    let c = connect(g)?;
    let t: CreateTokenResponse = c
        .post(
            "/v1/tokens",
            &CreateTokenRequest {
                ttl_secs: ttl.as_secs(),
            },
        )
        .await?;
    if json {
        return print_json(&t);
    }
    println!(
        "join token (valid for {}):",
        humantime::format_duration(ttl)
    );
    println!("{}", t.token);
    Ok(())
}

pub async fn user_add(
    g: &Global,
    name: &str,
    out: Option<PathBuf>,
    admin: bool,
) -> anyhow::Result<()> {
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.identity")));
    if out.exists() {
        anyhow::bail!("{} exists: choose another --out", out.display());
    }
    let c = connect(g)?;
    let (key, spki) = wos_net::generate_keypair()?;
    let resp: AddUserResponse = c
        .post(
            "/v1/users",
            &AddUserRequest {
                name: name.into(),
                public_key_pem: spki,
                admin,
            },
        )
        .await?;
    let me = Identity::load(&identity_path(g)?)?;
    let identity = Identity {
        cell: me.cell,
        principal: resp.name.clone(),
        addresses: vec![c.base().to_string()],
        ca_cert: resp.ca_cert_pem,
        cert: resp.cert_pem,
        key,
    };
    identity.save_new(&out)?;
    println!(
        "added user {}; identity written to {} (mode 0600)",
        resp.name,
        out.display()
    );
    Ok(())
}

pub fn identity_path(g: &Global) -> anyhow::Result<PathBuf> {
    let cfg = load_client_config()?;
    g.identity
        .clone()
        .or(cfg.identity)
        .ok_or_else(|| anyhow!("no identity configured"))
}

pub async fn kv_put(
    g: &Global,
    key: &str,
    value: &str,
    if_revision: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let e = connect(g)?.kv_put(key, value, if_revision).await?;
    if json {
        return print_json(&e);
    }
    println!("{} = {:?} (revision {})", e.key, e.value, e.revision);
    Ok(())
}

pub async fn kv_get(g: &Global, key: &str, stale: bool, json: bool) -> anyhow::Result<()> {
    let c = connect(g)?;
    let e: KvEntry = if stale {
        c.get(&format!("/v1/kv/{key}?stale=true")).await?
    } else {
        c.kv_get(key).await?
    };
    if json {
        return print_json(&e);
    }
    println!("{}", e.value);
    Ok(())
}

/// Writes the client config so that CLI commands find the cell without flags.
pub fn write_client_config(url: &str, identity: &Path) -> anyhow::Result<PathBuf> {
    let path = default_client_config_path().ok_or_else(|| anyhow!("no HOME or XDG_CONFIG_HOME"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let cfg = ClientConfig {
        cell: Some(url.to_string()),
        identity: Some(
            identity
                .canonicalize()
                .unwrap_or_else(|_| identity.to_path_buf()),
        ),
    };
    std::fs::write(&path, toml::to_string(&cfg)?)?;
    Ok(path)
}

pub async fn audit(g: &Global, a: crate::cli::AuditArgs) -> anyhow::Result<()> {
    let c = connect(g)?;
    let mut query: Vec<(String, String)> = vec![("limit".into(), a.limit.to_string())];
    if let Some(p) = a.principal {
        query.push(("principal".into(), p));
    }
    if let Some(o) = a.object {
        query.push(("object".into(), o));
    }
    if let Some(s) = a.since {
        let since = std::time::SystemTime::now() - s;
        let ms = since
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        query.push(("since_ms".into(), ms.to_string()));
    }
    let qs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let entries: Vec<AuditEntry> = c.get(&format!("/v1/audit?{}", qs.join("&"))).await?;
    if a.json {
        return print_json(&entries);
    }
    for e in entries {
        let when = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(e.time_ms),
        );
        println!(
            "{when} {:<8} {:<6} {:<18} {:<11} {:<24} {}",
            e.node,
            if e.allowed { "allow" } else { "DENY" },
            e.principal,
            e.action,
            e.object,
            e.reason
        );
    }
    Ok(())
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `alice` means `user:alice`; prefixed names and `anyuser` stand as they are.
pub fn principal_id(name: &str) -> String {
    if name.contains(':') || name == "anyuser" {
        name.to_string()
    } else {
        format!("user:{name}")
    }
}

fn print_acl(entries: &[AclEntry]) {
    if entries.is_empty() {
        println!("(no ACL entries apply: only cell admins have access)");
    }
    for e in entries {
        println!(
            "{:<24} {:<20} {}",
            e.object,
            e.principal,
            e.rights.join(",")
        );
    }
}

pub async fn acl_set(
    g: &Global,
    object: &str,
    principal: &str,
    rights: &str,
) -> anyhow::Result<()> {
    let rights: Vec<String> = if rights == "none" {
        vec![]
    } else {
        rights
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect()
    };
    let req = SetAclRequest {
        principal: principal_id(principal),
        rights,
    };
    let entries: Vec<AclEntry> = connect(g)?.put(&format!("/v1/acl/{object}"), &req).await?;
    print_acl(&entries);
    Ok(())
}

pub async fn acl_get(g: &Global, object: &str, json: bool) -> anyhow::Result<()> {
    let entries: Vec<AclEntry> = connect(g)?.get(&format!("/v1/acl/{object}")).await?;
    if json {
        return print_json(&entries);
    }
    print_acl(&entries);
    Ok(())
}

pub async fn group_set(g: &Global, name: &str, members: Vec<String>) -> anyhow::Result<()> {
    let req = SetGroupRequest {
        members: members.iter().map(|m| principal_id(m)).collect(),
    };
    let set: Vec<String> = connect(g)?.put(&format!("/v1/groups/{name}"), &req).await?;
    println!(
        "group {name}: {}",
        if set.is_empty() {
            "removed".to_string()
        } else {
            set.join(", ")
        }
    );
    Ok(())
}

pub async fn node_rm(g: &Global, node: &str, force: bool) -> anyhow::Result<()> {
    let _left: Vec<NodeInfo> = connect(g)?
        .delete(&format!("/v1/nodes/{node}?force={force}"))
        .await?;
    println!("removed {node} from the cell");
    Ok(())
}
