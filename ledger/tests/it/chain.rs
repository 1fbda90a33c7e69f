//! A whole closed-loop trade, verified and exported.

use tradeloop_ledger::evidence::audit::{verify_data_dir, verify_export};
use tradeloop_ledger::sample::trade_events;

use crate::support::*;

#[test]
fn closed_loop_trade_commits_closes_and_verifies() {
    let mut f = Fixture::new(1);
    let events = trade_events(&f.cast, 1, T0 + 1000);
    for e in &events {
        let rejected = f.append(std::slice::from_ref(e));
        assert!(rejected.is_empty(), "{rejected:?}");
    }
    let status = f.ledger.trade_status("PO-1").unwrap();
    assert!(status.closed, "{status:?}");
    assert!(status.open_legs.is_empty());
    let trace = f.ledger.trace("shipment:SHP-1").unwrap();
    assert!(trace.len() >= 10, "{}", trace.len());
    let order_trace = f.ledger.trace("order:PO-1").unwrap();
    assert_eq!(order_trace.len(), events.len(), "an order's trace shows the whole loop");
    let export = f.dir.path().join("chain.tlx");
    tradeloop_ledger::export::binary::export(&f.ledger, &export).unwrap();
    let Fixture { ledger, cast, dir, .. } = f;
    drop(ledger);
    let report = verify_data_dir(&dir.path().join("data"), &cast.genesis, &mut |_, _| {}).unwrap();
    assert_eq!(report.events, events.len() as u64);
    let report2 = verify_export(&export, &cast.genesis, &mut |_, _| {}).unwrap();
    assert_eq!(report2.tip_hash, report.tip_hash);
}

#[test]
fn a_trade_not_yet_invoiced_says_so_rather_than_paid_zero_of_zero() {
    let mut f = Fixture::new(1);
    let events = trade_events(&f.cast, 1, T0 + 1000);
    let kind = |e: &tradeloop_ledger::SignedEvent| {
        tradeloop_ledger::check_event(&f.cast.genesis, e).unwrap().payload.kind()
    };
    let order_only: Vec<_> =
        events.iter().take_while(|e| kind(e) != "trade.invoice_issued").cloned().collect();
    assert!(!order_only.is_empty() && order_only.len() < events.len());
    assert!(f.append(&order_only).is_empty());
    let status = f.ledger.trade_status("PO-1").unwrap();
    let paid = status.legs.iter().find(|l| l.leg == "paid").unwrap();
    assert!(!paid.done);
    assert_eq!(paid.detail, "nothing invoiced yet");
}

#[test]
fn proposals_are_validated_without_a_certificate() {
    let f = Fixture::new(4);
    let events = trade_events(&f.cast, 1, T0 + 1000);
    let key = f.cast.validator_keys[1].clone();
    let built = f.ledger.build_block(&events[..3], T0 + 2000, &key).unwrap();
    assert_eq!(f.ledger.validate_proposal(&built.block).unwrap(), built.hash);
    // A proposal whose state commitment the rules do not produce.
    let mut wrong_app = built.block.clone();
    wrong_app.header.app_hash.0[0] ^= 1;
    let e = f.ledger.validate_proposal(&wrong_app).unwrap_err().to_string();
    assert!(e.contains("app_hash"), "{e}");
    // A proposal carrying an event the rules reject (acceptance before the order exists).
    let mut bad = f.ledger.build_block(&events[..1], T0 + 2000, &key).unwrap().block;
    bad.events = vec![events[1].clone()];
    bad.header.events_root = tradeloop_ledger::model::block::events_root(&[events[1].id()]);
    let e = f.ledger.validate_proposal(&bad).unwrap_err().to_string();
    assert!(e.contains("UNKNOWN_ORDER"), "{e}");
    // A proposal for the wrong height.
    let mut far = built.block.clone();
    far.header.height = 5;
    assert!(f.ledger.validate_proposal(&far).is_err());
}

#[test]
fn remembered_signatures_spare_a_certificates_checks_but_never_pass_a_bad_one() {
    use std::sync::Arc;
    use tradeloop_crypto::VerifiedSignatures;
    use tradeloop_ledger::model::block::{vote_sign_bytes, VoteType};
    use tradeloop_ledger::{check_event, CertifiedBlock, CommitCertificate};

    let mut f = Fixture::new(4);
    let memo = Arc::new(VerifiedSignatures::new());
    f.ledger.remember_signatures(memo.clone());
    let events = trade_events(&f.cast, 1, T0 + 1000);
    let keys: Vec<_> = f.cast.validator_keys.iter().collect();
    let built = f.ledger.build_block(&events[..3], T0 + 2000, keys[0]).unwrap();
    let prepare = |ledger: &tradeloop_ledger::Ledger| {
        let checks = built.block.events.iter().map(|e| check_event(&f.cast.genesis, e)).collect();
        ledger.prepare_proposal(&built.block, checks, &[]).unwrap()
    };
    let good = CommitCertificate::sign(&f.cast.genesis.hash, 1, 0, built.hash, &keys);

    // Three of the four precommits arrived as votes: the node verified them through the memo.
    let bytes = vote_sign_bytes(&f.cast.genesis.hash, VoteType::Precommit, 1, 0, Some(&built.hash));
    for s in &good.signatures[..3] {
        memo.verify(&s.validator, &bytes, &s.signature).unwrap();
    }
    assert_eq!(memo.len(), 3);

    // One signature forged: refused with the memo as without it, and not remembered.
    let mut forged = good.clone();
    forged.signatures[1].signature.0[0] ^= 1;
    let block = built.block.clone();
    let e = f
        .ledger
        .commit_prepared(
            &CertifiedBlock { block: block.clone(), certificate: forged },
            prepare(&f.ledger),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not verify"), "{e}");
    assert_eq!(memo.len(), 3);
    assert_eq!(f.ledger.tip().height, 0);

    // The good certificate commits: three signatures answered from memory, the fourth
    // verified through it (and so remembered).
    let prepared = prepare(&f.ledger);
    f.ledger.commit_prepared(&CertifiedBlock { block, certificate: good }, prepared).unwrap();
    assert_eq!(f.ledger.tip().height, 1);
    assert_eq!(memo.len(), 4);
}
