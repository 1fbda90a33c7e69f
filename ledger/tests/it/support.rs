//! Shared helpers: a temp ledger with the sample cast.

use tradeloop_ledger::sample::Cast;
use tradeloop_ledger::{Ledger, Rejection, SignedEvent};

pub const T0: u64 = 1_780_000_000_000;

pub struct Fixture {
    pub cast: Cast,
    pub ledger: Ledger,
    pub dir: tempfile::TempDir,
    pub time_ms: u64,
}

impl Fixture {
    pub fn new(validators: usize) -> Fixture {
        let cast = Cast::deterministic(validators, T0 - 1000).expect("cast");
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone()).expect("open");
        Fixture { cast, ledger, dir, time_ms: T0 }
    }

    /// Appends events as one self-certified block; returns the rejections.
    pub fn append(&mut self, events: &[SignedEvent]) -> Vec<(usize, Rejection)> {
        self.time_ms += 1000;
        let key = self.cast.validator_keys[0].clone();
        let (_, rejected) = self.ledger.append_local(events, self.time_ms, &key).expect("append");
        rejected
    }

    /// Appends one event and returns its rejection code, if any.
    pub fn try_one(&mut self, author: &str, kind: &str, fields: serde_json::Value, nonce: &str) -> Option<String> {
        let e = self.cast.sign(author, kind, fields, self.time_ms + 1000, nonce);
        self.append(&[e]).first().map(|(_, r)| r.code.as_str())
    }

    pub fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}
