//! The canonical JSON fast path against the general one.
//!
//! `Value::parse_canonical(bytes)` is documented to return `Some(v)` exactly when
//! `Value::parse(bytes)` gives `v` and `v.to_canonical() == bytes`; it declines (None) documents
//! nested deeper than its depth limit (64 arrays/objects), which then take the general path.
//!
//! Asserts: no panic; `Some(v)` from the fast path implies the slow path gives the same `v` and
//! `v` re-serialises to exactly the input; `None` from the fast path with the slow path
//! accepting happens only for documents nested more than 64 deep.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::encoding::canonical::Value;

/// The fast path's nesting limit (`MAX_CANONICAL_DEPTH` in ledger/src/canonical.rs).
const FAST_PATH_DEPTH: usize = 64;

/// Containers nested in `v` (0 for a scalar). serde_json's own recursion limit (128) bounds the
/// recursion here.
fn container_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(container_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(container_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let fast = Value::parse_canonical(data);
    let slow = Value::parse(data).ok().filter(|v| v.to_canonical() == data);
    match (&fast, &slow) {
        (Some(f), Some(s)) => assert_eq!(f, s, "the two paths read different values"),
        (None, None) => {}
        (Some(f), None) => panic!("fast path accepted a non-canonical document as {f:?}"),
        (None, Some(s)) => assert!(
            container_depth(s) > FAST_PATH_DEPTH,
            "fast path refused a canonical document of depth {}",
            container_depth(s)
        ),
    }
});
