//! A whole closed-loop trade, verified and exported.

use tradeloop_ledger::audit::{verify_data_dir, verify_export};
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
    tradeloop_ledger::export::export(&f.ledger, &export).unwrap();
    let Fixture { ledger, cast, dir, .. } = f;
    drop(ledger);
    let report = verify_data_dir(&dir.path().join("data"), &cast.genesis, &mut |_, _| {}).unwrap();
    assert_eq!(report.events, events.len() as u64);
    let report2 = verify_export(&export, &cast.genesis, &mut |_, _| {}).unwrap();
    assert_eq!(report2.tip_hash, report.tip_hash);
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
    bad.header.events_root = tradeloop_ledger::block::events_root(&[events[1].id()]);
    let e = f.ledger.validate_proposal(&bad).unwrap_err().to_string();
    assert!(e.contains("UNKNOWN_ORDER"), "{e}");
    // A proposal for the wrong height.
    let mut far = built.block.clone();
    far.header.height = 5;
    assert!(f.ledger.validate_proposal(&far).is_err());
}
