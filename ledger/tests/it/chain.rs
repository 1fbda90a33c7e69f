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
