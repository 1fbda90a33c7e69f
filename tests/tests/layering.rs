//! One-way crate dependencies: crypto <- ledger <- node <- cli, and no async or networking stack
//! below the node (docs/architecture.md). Read from `cargo metadata`'s resolved graph, so a
//! transitive dependency counts too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Names of every crate `root` depends on for normal builds, transitively.
fn normal_closure(meta: &Value, root: &str) -> BTreeSet<String> {
    let packages: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let start =
        packages.iter().find(|(_, name)| **name == root).map(|(id, _)| *id).expect("root package");
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(packages[dep_id].to_string()) {
                stack.push(dep_id);
            }
        }
    }
    seen
}

#[test]
fn ledger_and_crypto_stay_free_of_async_and_networking() {
    let meta = metadata();
    for krate in ["tradeloop-ledger", "tradeloop-crypto"] {
        let deps = normal_closure(&meta, krate);
        for banned in ["tokio", "libp2p", "axum", "hyper", "async-std", "futures"] {
            assert!(
                !deps.iter().any(|d| d == banned || d.starts_with(&format!("{banned}-"))),
                "{krate} depends on {banned}"
            );
        }
    }
}

#[test]
fn workspace_crates_depend_one_way() {
    let meta = metadata();
    let crypto = normal_closure(&meta, "tradeloop-crypto");
    assert!(!crypto.iter().any(|d| d.starts_with("tradeloop")), "crypto depends on {crypto:?}");
    let ledger = normal_closure(&meta, "tradeloop-ledger");
    assert!(ledger.contains("tradeloop-crypto"));
    assert!(!ledger.contains("tradeloop-node") && !ledger.contains("tradeloop"));
    let node = normal_closure(&meta, "tradeloop-node");
    assert!(!node.contains("tradeloop"), "node must not depend on the cli");
}

fn crate_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

#[test]
fn no_import_circles_between_files() {
    let mut found = Vec::new();
    for krate in ["crypto", "ledger", "node", "cli"] {
        let graph = tradeloop_tests::modules::graph(&crate_dir(krate));
        for circle in tradeloop_tests::modules::circles(&graph) {
            let edges = tradeloop_tests::modules::edges_within(&graph, &circle);
            found.push(format!("{krate}: {}\n    {}", circle.join(" <-> "), edges.join("\n    ")));
        }
    }
    assert!(found.is_empty(), "import circles between files:\n{}", found.join("\n"));
}

/// The consensus core and the mempool are pure: no async runtime, no network, no HTTP, neither
/// in their own files nor in any file of the node they import, directly or not. The node's
/// runtime drives them (docs/architecture.md).
#[test]
fn consensus_and_mempool_reach_no_runtime_network_or_http() {
    const IMPURE: [&str; 6] = ["tokio", "libp2p", "axum", "hyper", "tower", "futures"];
    let graph = tradeloop_tests::modules::graph(&crate_dir("node"));
    let mut found = Vec::new();
    let pure = graph
        .files
        .keys()
        .filter(|m| matches!(m.first().map(String::as_str), Some("consensus" | "mempool")));
    for start in pure {
        for (module, path) in tradeloop_tests::modules::reachable(&graph, start) {
            for krate in graph.external.get(&module).into_iter().flatten() {
                if IMPURE.contains(&krate.as_str()) {
                    found.push(format!("{} uses {krate}", path.join(" -> ")));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    assert!(graph.files.keys().any(|m| m.first().is_some_and(|f| f == "consensus")));
}

/// The binary's build carries no test support: no workspace crate is built for it with its
/// `testing` feature (the fake runtimes of the API tests), whatever the tests turn on.
#[test]
fn the_binary_is_built_without_test_support() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--locked", "-p", "tradeloop", "-e", "normal", "--prefix", "none"])
        .args(["-f", "{p} [{f}]", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).unwrap();
    let ours: Vec<&str> = tree.lines().filter(|l| l.starts_with("tradeloop")).collect();
    assert!(ours.iter().any(|l| l.starts_with("tradeloop-node ")), "{tree}");
    let with_testing: Vec<&&str> = ours.iter().filter(|l| l.contains("testing")).collect();
    assert!(with_testing.is_empty(), "built with test support: {with_testing:?}");
}

/// No function of the crates' source is over 120 lines: a reader sees each step by name.
#[test]
fn no_function_is_over_120_lines() {
    let mut found = Vec::new();
    for krate in ["crypto", "ledger", "node", "cli"] {
        found.extend(tradeloop_tests::modules::long_functions(&crate_dir(krate), 120));
    }
    assert!(found.is_empty(), "functions over 120 lines:\n{}", found.join("\n"));
}
