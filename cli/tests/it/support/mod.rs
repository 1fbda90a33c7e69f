//! Helpers shared by the CLI's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

pub mod python;

use tradeloop_crypto::keyfile::write_key_file;
use tradeloop_ledger::sample::Cast;

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A temporary directory holding a one-validator sample chain's `genesis.json`, its
/// `validator.json` and every participant's key file (`<participant>.json`), with the cast.
pub fn chain_dir() -> (tempfile::TempDir, Cast) {
    let dir = tempfile::tempdir().unwrap();
    let cast = Cast::deterministic(1, now_ms() - 1000).unwrap();
    std::fs::write(dir.path().join("genesis.json"), cast.genesis.doc.to_json_bytes()).unwrap();
    write_key_file(&dir.path().join("validator.json"), &cast.validator_keys[0]).unwrap();
    for (id, key) in &cast.keys {
        write_key_file(&dir.path().join(format!("{id}.json")), key).unwrap();
    }
    (dir, cast)
}
