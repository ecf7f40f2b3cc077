//! Capability tokens: signed, attenuable, delegable rights on objects.
//!
//! Tokens are Biscuits (`biscuit-auth`), signed by the cell's capability root
//! key (Ed25519), which only core nodes hold. The authority block says what
//! the token grants:
//!
//! ```text
//! right("kv:proj/", "write");   // object prefix, right
//! holder("user:alice");         // only with --for: who may present it
//! minted_by("user:admin");
//! check if time($t), $t <= 2026-12-01T00:00:00Z;
//! ```
//!
//! Anyone holding a token can narrow it offline by appending a block of
//! checks ([`attenuate`]); nobody can widen it (appended blocks cannot add
//! rights). A holder passes it on with [`delegate`]: a third-party block
//! signed with the holder's own key naming the next holder, so the verifier
//! can follow the chain link by link. Revocation ids are the blocks'
//! signatures: revoking a token revokes everything attenuated from it.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::Term;
use biscuit_auth::datalog::RunLimits;
use biscuit_auth::error::{FailedCheck, Logic, Token as TokenError};
use biscuit_auth::{
    Algorithm, AuthorizerBuilder, Biscuit, BlockBuilder, KeyPair, PrivateKey, PublicKey,
    UnverifiedBiscuit,
};
use serde::{Deserialize, Serialize};

/// Rights a token may carry.
pub const RIGHTS: &[&str] = &[
    "read", "write", "list", "admin", "run", "signal", "logs", "run-on", "drain",
];

/// Datalog evaluation budget per request.
const LIMITS: RunLimits = RunLimits {
    max_facts: 1000,
    max_iterations: 100,
    max_time: Duration::from_millis(20),
};

/// Verified tokens kept to skip signature checks on reuse.
const CACHE_ENTRIES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("not a valid capability token: {0}")]
    Malformed(String),
    #[error("invalid capability request: {0}")]
    Invalid(String),
    #[error("capability token operation failed: {0}")]
    Biscuit(String),
}

fn biscuit_err(e: TokenError) -> CapError {
    CapError::Biscuit(format!("{e:?}"))
}

/// A fresh root key pair for a cell: (private `ed25519-private/HEX`, public `ed25519/HEX`).
pub fn generate_root() -> (String, String) {
    let kp = KeyPair::new();
    (kp.private().to_prefixed_string(), kp.public().to_string())
}

/// What to put in a new token.
#[derive(Debug, Clone)]
pub struct MintSpec {
    /// Object prefix: `cell`, `node:NAME`, `principal:NAME`, `kv:PREFIX`.
    pub object: String,
    pub rights: Vec<String>,
    pub ttl: Duration,
    /// Principal id (`user:NAME`, `node:NAME`) who alone may present it.
    pub holder: Option<String>,
    pub minted_by: String,
}

/// A minted token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Minted {
    pub token: String,
    /// Revocation id of the token (hex of its last block's signature).
    pub id: String,
    /// Unix seconds.
    pub expires: u64,
}

pub fn check_rights(rights: &[String]) -> Result<(), CapError> {
    if rights.is_empty() {
        return Err(CapError::Invalid("no rights given".into()));
    }
    for r in rights {
        if !RIGHTS.contains(&r.as_str()) {
            return Err(CapError::Invalid(format!(
                "unknown right {r:?}: rights are {}",
                RIGHTS.join(", ")
            )));
        }
    }
    Ok(())
}

/// Checks an object name: a kind (`cell`, `node:`, `principal:`, `kv:`,
/// `job:`, `fs:/PATH`) and no control characters.
pub fn check_object(object: &str) -> Result<(), CapError> {
    let kind_ok = object == "cell"
        || ["node:", "principal:", "kv:", "job:", "fs:/"]
            .iter()
            .any(|k| object.starts_with(k));
    if !kind_ok || object.len() > 1024 || object.chars().any(char::is_control) {
        return Err(CapError::Invalid(format!(
            "invalid object {object:?}: use cell, node:NAME, principal:NAME, kv:PREFIX, job:ID or fs:/PATH"
        )));
    }
    Ok(())
}

fn params(pairs: &[(&str, Term)]) -> HashMap<String, Term> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Mints a token with the cell's root key (`ed25519-private/HEX`).
pub fn mint(root_private: &str, spec: &MintSpec) -> Result<Minted, CapError> {
    check_object(&spec.object)?;
    check_rights(&spec.rights)?;
    let root: PrivateKey = root_private
        .parse()
        .map_err(|e| CapError::Invalid(format!("bad root key: {e:?}")))?;
    let kp = KeyPair::from(&root);
    let expires = SystemTime::now() + spec.ttl;
    let mut b = Biscuit::builder()
        .code_with_params(
            "minted_by({by}); check if time($t), $t <= {exp};",
            params(&[
                ("by", Term::from(spec.minted_by.as_str())),
                ("exp", Term::from(expires)),
            ]),
            HashMap::new(),
        )
        .map_err(biscuit_err)?;
    for r in &spec.rights {
        b = b
            .code_with_params(
                "right({obj}, {right});",
                params(&[
                    ("obj", Term::from(spec.object.as_str())),
                    ("right", Term::from(r.as_str())),
                ]),
                HashMap::new(),
            )
            .map_err(biscuit_err)?;
    }
    if let Some(h) = &spec.holder {
        b = b
            .code_with_params(
                "holder({h});",
                params(&[("h", Term::from(h.as_str()))]),
                HashMap::new(),
            )
            .map_err(biscuit_err)?;
    }
    let token = b.build(&kp).map_err(biscuit_err)?;
    let text = token.to_base64().map_err(biscuit_err)?;
    Ok(Minted {
        id: last_id(&token.revocation_identifiers()),
        token: text,
        expires: expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
}

fn last_id(ids: &[Vec<u8>]) -> String {
    ids.last().map(hex::encode).unwrap_or_default()
}

/// Narrowing of a token: each given limit becomes a check every use must pass.
#[derive(Debug, Clone, Default)]
pub struct Attenuation {
    pub rights: Option<Vec<String>>,
    pub path_prefix: Option<String>,
    pub ttl: Option<Duration>,
    pub node: Option<String>,
}

impl Attenuation {
    fn block(&self, mut b: BlockBuilder) -> Result<BlockBuilder, CapError> {
        if let Some(rights) = &self.rights {
            check_rights(rights)?;
            let set: BTreeSet<Term> = rights.iter().map(|r| Term::from(r.as_str())).collect();
            b = b
                .code_with_params(
                    "check if operation($op), {rights}.contains($op);",
                    params(&[("rights", Term::Set(set))]),
                    HashMap::new(),
                )
                .map_err(biscuit_err)?;
        }
        if let Some(p) = &self.path_prefix {
            check_object(p)?;
            b = b
                .code_with_params(
                    "check if resource($r), $r.starts_with({p});",
                    params(&[("p", Term::from(p.as_str()))]),
                    HashMap::new(),
                )
                .map_err(biscuit_err)?;
        }
        if let Some(ttl) = self.ttl {
            b = b
                .code_with_params(
                    "check if time($t), $t <= {exp};",
                    params(&[("exp", Term::from(SystemTime::now() + ttl))]),
                    HashMap::new(),
                )
                .map_err(biscuit_err)?;
        }
        if let Some(n) = &self.node {
            b = b
                .code_with_params(
                    "check if node($n), $n == {n};",
                    params(&[("n", Term::from(n.as_str()))]),
                    HashMap::new(),
                )
                .map_err(biscuit_err)?;
        }
        Ok(b)
    }

    pub fn is_empty(&self) -> bool {
        self.rights.is_none()
            && self.path_prefix.is_none()
            && self.ttl.is_none()
            && self.node.is_none()
    }
}

fn parse_unverified(token: &str) -> Result<UnverifiedBiscuit, CapError> {
    UnverifiedBiscuit::from_base64(token.trim()).map_err(|e| CapError::Malformed(format!("{e:?}")))
}

/// Narrows a token offline (no key needed). The result is a new token.
pub fn attenuate(token: &str, att: &Attenuation) -> Result<Minted, CapError> {
    if att.is_empty() {
        return Err(CapError::Invalid(
            "nothing to narrow: give --rights, --path-prefix, --ttl or --node".into(),
        ));
    }
    let t = parse_unverified(token)?;
    let narrowed = t
        .append(att.block(BlockBuilder::new())?)
        .map_err(biscuit_err)?;
    finish(narrowed)
}

fn finish(t: UnverifiedBiscuit) -> Result<Minted, CapError> {
    Ok(Minted {
        id: last_id(&t.revocation_identifiers()),
        token: t.to_base64().map_err(biscuit_err)?,
        expires: 0,
    })
}

/// Passes a token on to principal `to` (e.g. `user:bob`), signed with the
/// delegator's own Ed25519 key (its 32-byte seed), optionally narrowing it.
pub fn delegate(
    token: &str,
    to: &str,
    delegator_seed: &[u8; 32],
    att: &Attenuation,
) -> Result<Minted, CapError> {
    let t = parse_unverified(token)?;
    let key = PrivateKey::from_bytes(delegator_seed, Algorithm::Ed25519)
        .map_err(|e| CapError::Invalid(format!("{e:?}")))?;
    let block = BlockBuilder::new()
        .code_with_params(
            "delegate({to});",
            params(&[("to", Term::from(to))]),
            HashMap::new(),
        )
        .map_err(biscuit_err)?;
    let block = att.block(block)?;
    let request = t.third_party_request().map_err(biscuit_err)?;
    let signed = request.create_block(&key, block).map_err(biscuit_err)?;
    let bytes = signed.serialize().map_err(biscuit_err)?;
    let passed = t.append_third_party(&bytes).map_err(biscuit_err)?;
    finish(passed)
}

/// One block of a token, for `wos cap inspect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockInfo {
    pub index: usize,
    /// `authority`, `attenuation`, or `delegation signed by ed25519/HEX`.
    pub kind: String,
    pub source: String,
    pub revocation_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub blocks: Vec<BlockInfo>,
}

/// Reads a token offline (signatures are checked only by the cell).
pub fn inspect(token: &str) -> Result<TokenInfo, CapError> {
    let t = parse_unverified(token)?;
    let ext = t.external_public_keys();
    let ids = t.revocation_identifiers();
    let mut blocks = Vec::new();
    for i in 0..t.block_count() {
        let kind = match (i, ext.get(i).copied().flatten()) {
            (0, _) => "authority".to_string(),
            (_, Some(k)) => format!("delegation signed by {k}"),
            (_, None) => "attenuation".to_string(),
        };
        blocks.push(BlockInfo {
            index: i,
            kind,
            source: t.print_block_source(i).map_err(biscuit_err)?,
            revocation_id: ids.get(i).map(hex::encode).unwrap_or_default(),
        });
    }
    Ok(TokenInfo {
        id: last_id(&ids),
        blocks,
    })
}

/// The revocation id of a token (what `wos cap revoke` records).
pub fn token_id(token: &str) -> Result<String, CapError> {
    Ok(last_id(&parse_unverified(token)?.revocation_identifiers()))
}

/// One request, as a capability must cover it.
pub struct CapRequest<'a> {
    /// Principal id of the presenter (`user:bob`), or `None` if anonymous.
    pub presenter: Option<&'a str>,
    pub operation: &'a str,
    pub resource: &'a str,
    pub node: &'a str,
}

/// What the verifier needs from the cell's metadata.
pub trait CapDirectory {
    fn is_revoked(&self, id_hex: &str) -> bool;
    /// The principal id whose Ed25519 public key (hex) this is.
    fn principal_with_key(&self, key_hex: &str) -> Option<String>;
}

/// Verifies tokens against the cell's root public key. Cheap to share.
pub struct CapVerifier {
    root: PublicKey,
    cache: Mutex<HashMap<String, Arc<Biscuit>>>,
    /// The allow policy and the delegation query, parsed once.
    policy: biscuit_auth::builder::Policy,
    delegation_query: biscuit_auth::builder::Rule,
}

impl CapVerifier {
    pub fn new(root_public: &str) -> Result<CapVerifier, CapError> {
        let root = root_public.parse().map_err(|e| {
            CapError::Invalid(format!("bad capability root key {root_public:?}: {e:?}"))
        })?;
        let policy = biscuit_auth::builder::Policy::try_from(
            "allow if operation($op), resource($r), right($o, $op), $r.starts_with($o)",
        )
        .map_err(|e| CapError::Invalid(format!("{e:?}")))?;
        let delegation_query =
            biscuit_auth::builder::Rule::try_from("d($to) <- delegate($to) trusting {k}")
                .map_err(|e| CapError::Invalid(format!("{e:?}")))?;
        Ok(CapVerifier {
            root,
            cache: Mutex::new(HashMap::new()),
            policy,
            delegation_query,
        })
    }

    fn verified(&self, token: &str) -> Result<Arc<Biscuit>, String> {
        if let Some(t) = self.cache.lock().expect("cap cache").get(token) {
            return Ok(t.clone());
        }
        let t = Biscuit::from_base64(token.trim(), self.root)
            .map_err(|e| format!("the capability token is not valid for this cell (altered, truncated or forged): {e}"))?;
        let t = Arc::new(t);
        let mut cache = self.cache.lock().expect("cap cache");
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(token.to_string(), t.clone());
        Ok(t)
    }

    /// Allows `req` under `token`, or says why not. On success, returns the
    /// token id for the audit log.
    pub fn authorize(
        &self,
        token: &str,
        req: &CapRequest,
        dir: &dyn CapDirectory,
    ) -> Result<String, String> {
        let t = self.verified(token)?;
        let ids = t.revocation_identifiers();
        if let Some(revoked) = ids.iter().map(hex::encode).find(|id| dir.is_revoked(id)) {
            return Err(format!(
                "the capability token was revoked (id {})",
                &revoked[..16]
            ));
        }
        let id = last_id(&ids);
        use biscuit_auth::builder::{fact, string};
        let mut az = AuthorizerBuilder::new()
            .fact(fact("operation", &[string(req.operation)]))
            .and_then(|b| b.fact(fact("resource", &[string(req.resource)])))
            .and_then(|b| b.fact(fact("node", &[string(req.node)])))
            .and_then(|b| b.policy(self.policy.clone()))
            .map_err(|e| format!("{e:?}"))?
            .time()
            .set_limits(LIMITS)
            .build(&t)
            .map_err(|e| format!("{e:?}"))?;
        let holders = valid_holders(&mut az, &t, dir, &self.delegation_query)?;
        if let Some(holders) = holders {
            let who = req.presenter.unwrap_or("anonymous");
            if !holders.contains(who) {
                let mut names: Vec<&String> = holders.iter().collect();
                names.sort();
                return Err(format!(
                    "the capability token was issued to {names:?}, not to {who} (present it with that principal's identity)"
                ));
            }
        }
        az.authorize().map(|_| id).map_err(|e| explain(&e, req))
    }
}

/// `None` for a bearer token (no holder); otherwise every principal reachable
/// from the authority's holders through delegations, each signed by the key
/// of the principal who delegates.
fn valid_holders(
    az: &mut biscuit_auth::Authorizer,
    t: &Biscuit,
    dir: &dyn CapDirectory,
    delegation_query: &biscuit_auth::builder::Rule,
) -> Result<Option<HashSet<String>>, String> {
    let roots: Vec<(String,)> = az
        .query("h($h) <- holder($h)")
        .map_err(|e| format!("{e:?}"))?;
    if roots.is_empty() {
        return Ok(None);
    }
    let mut edges: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen = HashSet::new();
    for key in t.external_public_keys().into_iter().flatten() {
        if !seen.insert(key) {
            continue;
        }
        let Some(from) = dir.principal_with_key(&key.to_bytes_hex()) else {
            continue;
        };
        // Only facts that blocks signed by this key state themselves.
        let mut rule = delegation_query.clone();
        rule.set_scope("k", key).map_err(|e| format!("{e:?}"))?;
        let tos: Vec<(String,)> = az.query(rule).map_err(|e| format!("{e:?}"))?;
        edges
            .entry(from)
            .or_default()
            .extend(tos.into_iter().map(|(to,)| to));
    }
    let mut holders: HashSet<String> = roots.into_iter().map(|(h,)| h).collect();
    let mut queue: VecDeque<String> = holders.iter().cloned().collect();
    while let Some(h) = queue.pop_front() {
        for to in edges.get(&h).into_iter().flatten() {
            if holders.insert(to.clone()) {
                queue.push_back(to.clone());
            }
        }
    }
    Ok(Some(holders))
}

/// A denial in words: which right was missing, or which narrowing failed.
fn explain(e: &TokenError, req: &CapRequest) -> String {
    let checks = |cs: &[FailedCheck]| {
        cs.iter()
            .map(|c| match c {
                FailedCheck::Block(b) => format!("block {}: {}", b.block_id, b.rule),
                FailedCheck::Authorizer(a) => a.rule.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    match e {
        TokenError::FailedLogic(Logic::NoMatchingPolicy { checks: cs }) if cs.is_empty() => {
            format!(
                "the capability token does not grant {} on {}",
                req.operation, req.resource
            )
        }
        TokenError::FailedLogic(Logic::NoMatchingPolicy { checks: cs })
        | TokenError::FailedLogic(Logic::Unauthorized { checks: cs, .. }) => format!(
            "the capability token does not allow {} on {}: failed {}",
            req.operation,
            req.resource,
            checks(cs)
        ),
        other => format!("the capability token could not be checked: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir {
        revoked: HashSet<String>,
        keys: HashMap<String, String>,
    }

    impl CapDirectory for Dir {
        fn is_revoked(&self, id: &str) -> bool {
            self.revoked.contains(id)
        }
        fn principal_with_key(&self, key: &str) -> Option<String> {
            self.keys.get(key).cloned()
        }
    }

    fn user_key() -> ([u8; 32], String) {
        let kp = KeyPair::new();
        let seed: [u8; 32] = kp.private().to_bytes().as_slice().try_into().unwrap();
        (seed, kp.public().to_bytes_hex())
    }

    fn req<'a>(who: Option<&'a str>, op: &'a str, res: &'a str) -> CapRequest<'a> {
        CapRequest {
            presenter: who,
            operation: op,
            resource: res,
            node: "n1",
        }
    }

    #[test]
    fn mint_attenuate_delegate_revoke() {
        let (root_priv, root_pub) = generate_root();
        let v = CapVerifier::new(&root_pub).unwrap();
        let (alice_seed, alice_pub) = user_key();
        let (bob_seed, bob_pub) = user_key();
        let (carol_seed, carol_pub) = user_key();
        let mut dir = Dir {
            revoked: HashSet::new(),
            keys: HashMap::from([
                (alice_pub, "user:alice".to_string()),
                (bob_pub, "user:bob".to_string()),
                (carol_pub, "user:carol".to_string()),
            ]),
        };
        let rw = mint(
            &root_priv,
            &MintSpec {
                object: "kv:proj/".into(),
                rights: vec!["read".into(), "write".into()],
                ttl: Duration::from_secs(3600),
                holder: None,
                minted_by: "user:admin".into(),
            },
        )
        .unwrap();
        assert!(
            v.authorize(&rw.token, &req(None, "write", "kv:proj/x"), &dir)
                .is_ok()
        );
        assert!(
            v.authorize(&rw.token, &req(None, "write", "kv:other"), &dir)
                .is_err()
        );
        let ro = attenuate(
            &rw.token,
            &Attenuation {
                rights: Some(vec!["read".into()]),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            v.authorize(&ro.token, &req(None, "read", "kv:proj/x"), &dir)
                .is_ok()
        );
        let denied = v
            .authorize(&ro.token, &req(None, "write", "kv:proj/x"), &dir)
            .unwrap_err();
        assert!(denied.contains("write"), "{denied}");
        // Any changed byte breaks it.
        let mut bytes = ro.token.clone().into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(
            v.authorize(&tampered, &req(None, "read", "kv:proj/x"), &dir)
                .is_err()
        );
        // Revoking the parent revokes the child.
        dir.revoked.insert(rw.id.clone());
        assert!(
            v.authorize(&ro.token, &req(None, "read", "kv:proj/x"), &dir)
                .unwrap_err()
                .contains("revoked")
        );
        dir.revoked.clear();

        // Delegation: admin -> alice -> bob -> carol.
        let for_alice = mint(
            &root_priv,
            &MintSpec {
                object: "kv:".into(),
                rights: vec!["read".into()],
                ttl: Duration::from_secs(3600),
                holder: Some("user:alice".into()),
                minted_by: "user:admin".into(),
            },
        )
        .unwrap();
        let r = |who| req(Some(who), "read", "kv:a");
        assert!(
            v.authorize(&for_alice.token, &r("user:alice"), &dir)
                .is_ok()
        );
        assert!(v.authorize(&for_alice.token, &r("user:bob"), &dir).is_err());
        let none = Attenuation::default();
        let to_bob = delegate(&for_alice.token, "user:bob", &alice_seed, &none).unwrap();
        let to_carol = delegate(&to_bob.token, "user:carol", &bob_seed, &none).unwrap();
        assert!(v.authorize(&to_carol.token, &r("user:carol"), &dir).is_ok());
        assert!(v.authorize(&to_carol.token, &r("user:dave"), &dir).is_err());
        // A link signed by someone who does not hold the token does not count.
        let forged = delegate(&for_alice.token, "user:carol", &carol_seed, &none).unwrap();
        assert!(v.authorize(&forged.token, &r("user:carol"), &dir).is_err());
        // A delegation that narrows applies to everyone after it.
        let narrowed = delegate(
            &for_alice.token,
            "user:bob",
            &alice_seed,
            &Attenuation {
                path_prefix: Some("kv:bob/".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            v.authorize(
                &narrowed.token,
                &req(Some("user:bob"), "read", "kv:bob/x"),
                &dir
            )
            .is_ok()
        );
        assert!(
            v.authorize(
                &narrowed.token,
                &req(Some("user:bob"), "read", "kv:a"),
                &dir
            )
            .is_err()
        );
        let info = inspect(&to_carol.token).unwrap();
        assert_eq!(info.blocks.len(), 3);
        assert!(info.blocks[2].kind.starts_with("delegation signed by"));
    }

    #[test]
    fn appended_blocks_cannot_widen_a_token() {
        let (root_priv, root_pub) = generate_root();
        let v = CapVerifier::new(&root_pub).unwrap();
        let (seed, key_hex) = user_key();
        let dir = Dir {
            revoked: HashSet::new(),
            keys: HashMap::from([(key_hex, "user:mallory".to_string())]),
        };
        let ro = mint(
            &root_priv,
            &MintSpec {
                object: "kv:a/".into(),
                rights: vec!["read".into()],
                ttl: Duration::from_secs(3600),
                holder: None,
                minted_by: "user:admin".into(),
            },
        )
        .unwrap();
        let t = UnverifiedBiscuit::from_base64(&ro.token).unwrap();
        let claims = r#"right("kv:", "write"); right("kv:a/", "write"); right("kv:", "read");"#;
        // A first-party block claiming more rights.
        let widened = t
            .append(BlockBuilder::new().code(claims).unwrap())
            .unwrap()
            .to_base64()
            .unwrap();
        assert!(
            v.authorize(&widened, &req(None, "write", "kv:a/x"), &dir)
                .is_err()
        );
        assert!(
            v.authorize(&widened, &req(None, "read", "kv:b"), &dir)
                .is_err()
        );
        assert!(
            v.authorize(&widened, &req(None, "read", "kv:a/x"), &dir)
                .is_ok()
        );
        // A third-party block signed by a known principal claiming the same.
        let key = PrivateKey::from_bytes(&seed, Algorithm::Ed25519).unwrap();
        let block = t
            .third_party_request()
            .unwrap()
            .create_block(&key, BlockBuilder::new().code(claims).unwrap())
            .unwrap();
        let widened = t
            .append_third_party(&block.serialize().unwrap())
            .unwrap()
            .to_base64()
            .unwrap();
        assert!(
            v.authorize(&widened, &req(None, "write", "kv:a/x"), &dir)
                .is_err()
        );
        assert!(
            v.authorize(&widened, &req(None, "read", "kv:b"), &dir)
                .is_err()
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (root_priv, root_pub) = generate_root();
        let v = CapVerifier::new(&root_pub).unwrap();
        let dir = Dir {
            revoked: HashSet::new(),
            keys: HashMap::new(),
        };
        let t = mint(
            &root_priv,
            &MintSpec {
                object: "cell".into(),
                rights: vec!["read".into()],
                ttl: Duration::from_secs(0),
                holder: None,
                minted_by: "user:admin".into(),
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let e = v
            .authorize(&t.token, &req(None, "read", "cell"), &dir)
            .unwrap_err();
        assert!(e.contains("time"), "{e}");
    }
}
