//! Which nodes hold a chunk: weighted rendezvous (highest random weight) hashing.
//!
//! Every node scores every chunk as `w / -ln(h)`, where `h` in (0, 1) is a hash
//! of the chunk and the node's name and `w` its free bytes; the chunk goes to
//! the `r` best scores. A node then holds a share of the chunks proportional
//! to its weight, and a node joining or leaving only moves the chunks it gains
//! or loses: every other pair's score is untouched.
//!
//! Every node of a cell must compute the same placement, and cells mix CPU
//! architectures. Rust's `f64::ln` is not guaranteed to give the same bits
//! everywhere (it calls the platform's maths library), so the logarithm here
//! is computed from IEEE-754 basic operations only, which are exactly
//! rounded on every platform.

use std::collections::HashSet;
use std::f64::consts::{LN_2, SQRT_2};

use crate::id::ChunkId;

/// A node that may hold chunks, with the free bytes it offers (its weight).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub name: String,
    pub free_bytes: u64,
}

impl Candidate {
    pub fn new(name: impl Into<String>, free_bytes: u64) -> Candidate {
        Candidate {
            name: name.into(),
            free_bytes,
        }
    }
}

/// The names of the nodes that should hold `chunk`: the best `min(r, n)` of
/// the `n` distinct candidate names, best first.
///
/// Deterministic for the same inputs, whatever their order. Candidates with
/// no free bytes are never chosen. If a name appears more than once, its best
/// score counts and it is returned once.
pub fn place(chunk: &ChunkId, nodes: &[Candidate], r: usize) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = nodes
        .iter()
        .filter(|c| c.free_bytes > 0)
        .map(|c| (score(chunk, c), c.name.as_str()))
        .collect();
    // Ties (equal weights and hashes) are broken by name so that the order
    // never depends on the order of `nodes`.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut seen = HashSet::new();
    scored
        .into_iter()
        .filter(|(_, name)| seen.insert(*name))
        .take(r)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// The weighted rendezvous score of `node` for `chunk`: `w / -ln(h)`.
fn score(chunk: &ChunkId, node: &Candidate) -> f64 {
    let h = unit_hash(chunk, &node.name);
    // `h` is in (0, 1), so `-ln(h)` is positive and finite.
    node.free_bytes as f64 / -portable_ln(h)
}

/// A hash of (chunk, node name) mapped into the open interval (0, 1).
fn unit_hash(chunk: &ChunkId, name: &str) -> f64 {
    // A derived-key hasher keeps these hashes apart from chunk ids, which are
    // plain BLAKE3 of other bytes. The chunk id has a fixed length, so the
    // concatenation with the name is unambiguous.
    let mut hasher = blake3::Hasher::new_derive_key("wos-blocks 2025 chunk placement v1");
    hasher.update(chunk.as_bytes());
    hasher.update(name.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    // 52 bits plus one half: exactly representable, never 0 and never 1.
    let bits = u64::from_le_bytes(first) >> 12;
    (bits as f64 + 0.5) / (1u64 << 52) as f64
}

/// The natural logarithm of a positive, normal `x`, bit-for-bit the same on
/// every platform (see the module comment).
fn portable_ln(x: f64) -> f64 {
    // x = m * 2^e with m in [1, 2), then m moved into [sqrt(1/2), sqrt(2))
    // so that the series below converges fast.
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    // ln(m) = 2 * atanh(s) = 2 * (s + s^3/3 + s^5/5 + ...), s = (m-1)/(m+1),
    // |s| < 0.172: 14 terms are below f64 precision.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..14 {
        sum += term / f64::from(2 * k + 1);
        term *= s2;
    }
    2.0 * sum + e as f64 * LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_ln_matches_ln() {
        let mut x: f64 = 1e-16;
        while x < 1.0 {
            let want = x.ln();
            let got = portable_ln(x);
            assert!(
                ((got - want) / want).abs() < 1e-14,
                "ln({x}) = {want}, got {got}"
            );
            x *= 1.37;
        }
        assert_eq!(portable_ln(1.0), 0.0);
        assert!((portable_ln(0.5) + LN_2).abs() < 1e-16);
    }

    #[test]
    fn unit_hash_is_inside_zero_one() {
        for i in 0..1000u32 {
            let h = unit_hash(&ChunkId::of(&i.to_le_bytes()), "node");
            assert!(h > 0.0 && h < 1.0, "{h}");
        }
    }

    #[test]
    fn placement_is_pinned() {
        // Every node of a cell must agree; a change of the hash or the
        // formula must be deliberate (it moves every chunk).
        let nodes: Vec<Candidate> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| Candidate::new(*n, 1 << 30))
            .collect();
        let placed: Vec<Vec<String>> = (0..4u8)
            .map(|i| place(&ChunkId::of(&[i]), &nodes, 2))
            .collect();
        assert_eq!(
            placed,
            [["a", "b"], ["a", "c"], ["a", "d"], ["d", "a"]].map(|p| p.map(String::from))
        );
    }
}
