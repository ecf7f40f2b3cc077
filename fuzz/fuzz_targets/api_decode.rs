//! API request bodies from untrusted input: decoding arbitrary bytes into
//! every request type must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wos_api::*;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<JoinRequest>(data);
    let _ = serde_json::from_slice::<AddUserRequest>(data);
    let _ = serde_json::from_slice::<CreateTokenRequest>(data);
    let _ = serde_json::from_slice::<KvPut>(data);
    let _ = serde_json::from_slice::<MintCapRequest>(data);
    let _ = serde_json::from_slice::<RevokeCapRequest>(data);
    let _ = serde_json::from_slice::<SetAclRequest>(data);
    let _ = serde_json::from_slice::<SetGroupRequest>(data);
    let _ = serde_json::from_slice::<AuditQuery>(data);
    if let Ok(q) = serde_json::from_slice::<AuditQuery>(data) {
        let e = AuditEntry {
            time_ms: 1,
            node: "n".into(),
            principal: "user:a".into(),
            action: "Read".into(),
            object: "kv:a".into(),
            allowed: true,
            reason: String::new(),
        };
        let _ = q.matches(&e);
    }
});
