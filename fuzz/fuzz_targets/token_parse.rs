//! Capability tokens from untrusted input: parsing, inspecting, narrowing and
//! verifying arbitrary bytes must never panic, and never allow.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wos_auth::JoinToken;
use wos_auth::cap::{self, Attenuation, CapDirectory, CapRequest, CapVerifier};

struct NoOne;

impl CapDirectory for NoOne {
    fn is_revoked(&self, _: &str) -> bool {
        false
    }
    fn principal_with_key(&self, _: &str) -> Option<String> {
        None
    }
}

fn verifier() -> &'static CapVerifier {
    static V: OnceLock<CapVerifier> = OnceLock::new();
    V.get_or_init(|| CapVerifier::new(&cap::generate_root().1).expect("root key"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = cap::inspect(text);
    let _ = cap::token_id(text);
    let narrow = Attenuation { rights: Some(vec!["read".into()]), ..Default::default() };
    let _ = cap::attenuate(text, &narrow);
    let _ = JoinToken::parse(text);
    let _ = wos_auth::parse_object(text);
    let req = CapRequest { presenter: Some("user:x"), operation: "read", resource: "kv:a", node: "n" };
    // No token made by a fuzzer carries this fresh root key's signature.
    assert!(verifier().authorize(text, &req, &NoOne).is_err());
});
