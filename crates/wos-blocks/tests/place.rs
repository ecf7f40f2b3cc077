//! Placement by weighted rendezvous hashing.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use wos_blocks::{Candidate, ChunkId, place};

fn nodes(n: usize, free: u64) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate::new(format!("node-{i}"), free))
        .collect()
}

fn chunk(i: u32) -> ChunkId {
    ChunkId::of(&i.to_le_bytes())
}

/// How many of `count` chunks each node is first choice for.
fn first_choices(nodes: &[Candidate], count: u32) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for i in 0..count {
        let first = place(&chunk(i), nodes, 1).remove(0);
        *counts.entry(first).or_insert(0) += 1;
    }
    counts
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::btree_map("[a-z]{1,8}", 1u64..1 << 40, 1..12).prop_map(|m| {
        m.into_iter()
            .map(|(name, free)| Candidate::new(name, free))
            .collect()
    })
}

fn chunk_id() -> impl Strategy<Value = ChunkId> {
    any::<[u8; 32]>().prop_map(ChunkId)
}

proptest! {
    #[test]
    fn deterministic_and_order_independent(
        id in chunk_id(),
        nodes in candidates(),
        r in 0usize..6,
    ) {
        let first = place(&id, &nodes, r);
        prop_assert_eq!(&first, &place(&id, &nodes, r));
        let mut reversed = nodes.clone();
        reversed.reverse();
        prop_assert_eq!(&first, &place(&id, &reversed, r));
    }

    #[test]
    fn distinct_names_and_right_count(
        id in chunk_id(),
        nodes in candidates(),
        r in 0usize..15,
    ) {
        let placed = place(&id, &nodes, r);
        prop_assert_eq!(placed.len(), r.min(nodes.len()));
        let distinct: HashSet<&String> = placed.iter().collect();
        prop_assert_eq!(distinct.len(), placed.len());
        for name in &placed {
            prop_assert!(nodes.iter().any(|c| &c.name == name));
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_chunks(
        id in chunk_id(),
        nodes in candidates(),
        gone in any::<prop::sample::Index>(),
        r in 1usize..5,
    ) {
        let before = place(&id, &nodes, r);
        let mut after_nodes = nodes.clone();
        let removed = after_nodes.remove(gone.index(nodes.len()));
        let after = place(&id, &after_nodes, r);
        if before.contains(&removed.name) {
            // The others keep their order; one replacement comes last.
            let kept: Vec<&String> = before.iter().filter(|n| **n != removed.name).collect();
            prop_assert_eq!(kept, after.iter().take(before.len() - 1).collect::<Vec<_>>());
        } else {
            prop_assert_eq!(before, after);
        }
    }

    #[test]
    fn adding_a_node_moves_only_chunks_to_it(
        id in chunk_id(),
        nodes in candidates(),
        free in 1u64..1 << 40,
        r in 1usize..5,
    ) {
        let before = place(&id, &nodes, r);
        let mut more = nodes.clone();
        more.push(Candidate::new("newcomer-0", free));
        let after = place(&id, &more, r);
        if after.iter().any(|n| n == "newcomer-0") {
            let others: Vec<&String> = after.iter().filter(|n| *n != "newcomer-0").collect();
            prop_assert_eq!(others, before.iter().take(after.len() - 1).collect::<Vec<_>>());
        } else {
            prop_assert_eq!(before, after);
        }
    }

    #[test]
    fn full_nodes_are_never_chosen(
        id in chunk_id(),
        nodes in candidates(),
        full in any::<prop::sample::Index>(),
    ) {
        let mut nodes = nodes;
        let i = full.index(nodes.len());
        nodes[i].free_bytes = 0;
        let placed = place(&id, &nodes, nodes.len());
        prop_assert_eq!(placed.len(), nodes.len() - 1);
        prop_assert!(!placed.contains(&nodes[i].name));
    }
}

#[test]
fn equal_weights_spread_evenly() {
    let nodes = nodes(10, 100 << 30);
    let counts = first_choices(&nodes, 10_000);
    assert_eq!(counts.len(), 10, "{counts:?}");
    for (name, count) in &counts {
        assert!(
            (750..=1250).contains(count),
            "{name} got {count} of 10000 chunks: {counts:?}"
        );
    }
}

#[test]
fn triple_weight_gets_about_triple() {
    let mut nodes = nodes(10, 100 << 30);
    nodes[0].free_bytes = 300 << 30;
    let counts = first_choices(&nodes, 10_000);
    let heavy = f64::from(counts["node-0"]);
    let others = f64::from(counts.values().sum::<u32>() - counts["node-0"]) / 9.0;
    let ratio = heavy / others;
    assert!((2.4..=3.6).contains(&ratio), "ratio {ratio}: {counts:?}");
}

#[test]
fn r_beyond_node_count_gives_all_nodes() {
    let nodes = nodes(3, 1 << 30);
    let mut placed = place(&chunk(1), &nodes, 5);
    placed.sort();
    assert_eq!(placed, ["node-0", "node-1", "node-2"]);
    assert!(place(&chunk(1), &nodes, 0).is_empty());
    assert!(place(&chunk(1), &[], 3).is_empty());
}

#[test]
fn duplicate_names_count_once() {
    let nodes = vec![
        Candidate::new("a", 1 << 30),
        Candidate::new("a", 1 << 20),
        Candidate::new("b", 1 << 30),
    ];
    let placed = place(&chunk(7), &nodes, 3);
    let mut sorted = placed.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "b"]);
}
