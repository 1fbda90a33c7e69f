//! Shared helpers: a temp ledger with the sample cast.

use serde_json::Value as Json;
use tradeloop_crypto::SigningKey;
use tradeloop_ledger::model::genesis::Role;
use tradeloop_ledger::sample::{trade_steps, Cast};
use tradeloop_ledger::{Ledger, Rejection, SignedEvent};

pub const T0: u64 = 1_780_000_000_000;

/// Participants beyond the sample cast, for rules that need a second party of a role.
pub const EXTRA: &[(&str, &str, Role, &str)] = &[
    ("cn-exporter-other", "Other Exporter", Role::Exporter, "CN"),
    ("de-importer-other", "Other Importer", Role::Importer, "DE"),
    ("forwarder-other", "Other Forwarder", Role::Forwarder, "SG"),
    ("us-bank-other", "Other Bank", Role::Bank, "US"),
    ("auditor-kpmg", "Audit Firm", Role::Auditor, "DE"),
];

pub struct Fixture {
    pub cast: Cast,
    pub ledger: Ledger,
    pub dir: tempfile::TempDir,
    pub time_ms: u64,
    nonce: u64,
}

impl Fixture {
    pub fn new(validators: usize) -> Fixture {
        let cast = Cast::with_extra(validators, T0 - 1000, EXTRA, &mut |l| {
            Ok(SigningKey::from_seed_label(l))
        })
        .expect("cast");
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone()).expect("open");
        Fixture { cast, ledger, dir, time_ms: T0, nonce: 0 }
    }

    /// Appends events as one self-certified block; returns the rejections.
    pub fn append(&mut self, events: &[SignedEvent]) -> Vec<(usize, Rejection)> {
        self.time_ms += 1000;
        let key = self.cast.validator_keys[0].clone();
        let (_, rejected) = self.ledger.append_local(events, self.time_ms, &key).expect("append");
        rejected
    }

    pub fn sign(&mut self, author: &str, kind: &str, fields: Json) -> SignedEvent {
        self.nonce += 1;
        let nonce = format!("n{}", self.nonce);
        self.cast.sign(author, kind, fields, self.time_ms + 1000, &nonce)
    }

    /// Appends one event; returns its rejection code, or None if it committed.
    pub fn try_one(&mut self, author: &str, kind: &str, fields: Json) -> Option<String> {
        let e = self.sign(author, kind, fields);
        self.append(&[e]).first().map(|(_, r)| r.code.as_str())
    }

    /// Appends one event; its rejection's code and message, if it is refused.
    pub fn rejection(
        &mut self,
        author: &str,
        kind: &str,
        fields: Json,
    ) -> Option<(String, String)> {
        let e = self.sign(author, kind, fields);
        self.append(&[e]).first().map(|(_, r)| (r.code.as_str(), r.message.clone()))
    }

    /// Appends one event that must commit.
    pub fn ok(&mut self, author: &str, kind: &str, fields: Json) {
        let code = self.try_one(author, kind, fields);
        assert_eq!(code, None, "{kind} by {author} should commit");
    }

    /// Appends one event that must be rejected with `code`.
    pub fn rejects(&mut self, code: &str, author: &str, kind: &str, fields: Json) {
        let got = self.try_one(author, kind, fields);
        assert_eq!(got.as_deref(), Some(code), "{kind} by {author}");
    }

    /// Runs steps `[0, upto)` of sample trade `n`, each of which must commit.
    pub fn run_trade(&mut self, n: u64, upto: usize) {
        for (author, kind, fields) in trade_steps(n).into_iter().take(upto) {
            self.ok(author, kind, fields);
        }
    }

    /// Runs steps `[from, to)` of sample trade `n`.
    pub fn run_trade_steps(&mut self, n: u64, from: usize, to: usize) {
        for (author, kind, fields) in trade_steps(n).into_iter().skip(from).take(to - from) {
            self.ok(author, kind, fields);
        }
    }

    /// The index of the first step of sample trade `n` of `kind` (by `author` if given).
    pub fn step(kind: &str, author: Option<&str>) -> usize {
        trade_steps(0)
            .iter()
            .position(|(a, k, _)| *k == kind && author.is_none_or(|x| x == *a))
            .expect("step exists")
    }

    pub fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}
