//! One validator decides heights through Malachite, and the decisions commit through the ledger
//! with certificates that `verify` accepts.

use tradeloop_ledger::evidence::audit::verify_data_dir;
use tradeloop_ledger::model::block::CertifiedBlock;
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::Ledger;
use tradeloop_node::consensus::context::{TradeContext, Validators};
use tradeloop_node::consensus::core::{propose, Action, ConsensusCore};
use tradeloop_node::consensus::guard::SignGuard;

const T0: u64 = 1_780_000_000_000;

#[test]
fn a_single_validator_decides_heights_that_the_ledger_commits_and_verify_accepts() {
    let cast = Cast::deterministic(1, T0 - 1000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut ledger = Ledger::open(&data, cast.genesis.clone()).unwrap();
    let key = cast.validator_keys[0].clone();
    let ctx = TradeContext::new(cast.genesis.hash);
    let guard =
        SignGuard::open(&dir.path().join("sign-state.bin"), cast.genesis.hash, key.public_key())
            .unwrap();
    let mut core = ConsensusCore::new(
        ctx,
        key.clone(),
        guard,
        Validators::from_ledger(&cast.genesis.validators),
        &cast.genesis.doc.consensus,
        1,
    );
    let events = trade_events(&cast, 1, T0);
    for (i, chunk) in events.chunks(5).enumerate() {
        let height = i as u64 + 1;
        let actions = core.handle(core.start_height(height)).unwrap();
        let Some(round) = actions.iter().find_map(|a| match a {
            Action::BuildBlock { height: h, round } if *h == height => Some(*round),
            _ => None,
        }) else {
            panic!("height {height}: the only validator was not asked to propose: {actions:?}");
        };
        let built = ledger.build_block(chunk, T0 + 1000 * height, &key).unwrap();
        assert!(built.rejected.is_empty());
        let actions = core.handle(propose(height, round, built.hash)).unwrap();
        let decided = actions.into_iter().find_map(|a| match a {
            Action::Decided { height: h, block_hash, certificate } => {
                Some((h, block_hash, certificate))
            }
            _ => None,
        });
        let Some((h, block_hash, certificate)) = decided else {
            panic!("height {height}: no decision");
        };
        assert_eq!((h, block_hash), (height, built.hash));
        ledger.commit_block(&CertifiedBlock { block: built.block, certificate }).unwrap();
    }
    let tip = ledger.tip().clone();
    drop(ledger);
    let report = verify_data_dir(&data, &cast.genesis, &mut |_, _| {}).unwrap();
    assert_eq!(report.blocks, tip.height);
    assert_eq!(report.events, events.len() as u64);
}

#[test]
fn after_a_restart_the_guard_refuses_to_sign_a_conflicting_proposal() {
    let cast = Cast::deterministic(1, T0 - 1000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("data"), cast.genesis.clone()).unwrap();
    let key = cast.validator_keys[0].clone();
    let ctx = TradeContext::new(cast.genesis.hash);
    let guard_path = dir.path().join("sign-state.bin");
    let validators = Validators::from_ledger(&cast.genesis.validators);
    let events = trade_events(&cast, 1, T0);
    let block_a = ledger.build_block(&events[..2], T0 + 1000, &key).unwrap();
    let block_b = ledger.build_block(&events[..1], T0 + 1000, &key).unwrap();
    assert_ne!(block_a.hash, block_b.hash);
    {
        let guard = SignGuard::open(&guard_path, cast.genesis.hash, key.public_key()).unwrap();
        let consensus = &cast.genesis.doc.consensus;
        let mut core =
            ConsensusCore::new(ctx.clone(), key.clone(), guard, validators.clone(), consensus, 1);
        core.handle(core.start_height(1)).unwrap();
        let actions = core.handle(propose(1, malachite_round(0), block_a.hash)).unwrap();
        assert!(actions.iter().any(|a| matches!(a, Action::Decided { .. })));
    } // crash: Malachite's in-memory state is gone, the guard file is not
    let guard = SignGuard::open(&guard_path, cast.genesis.hash, key.public_key()).unwrap();
    let mut core = ConsensusCore::new(ctx, key, guard, validators, &cast.genesis.doc.consensus, 1);
    core.handle(core.start_height(1)).unwrap();
    let refused = core.handle(propose(1, malachite_round(0), block_b.hash));
    match refused {
        Err(e) => assert!(e.to_string().contains("signing refused"), "{e}"),
        Ok(actions) => panic!("a restarted validator signed a conflicting proposal: {actions:?}"),
    }
}

fn malachite_round(r: u32) -> malachite_core_types::Round {
    malachite_core_types::Round::new(r)
}

/// The core schedules the timeouts of the genesis, not Malachite's defaults: the same validator
/// started from genesis parameters with another `timeout_propose_ms` asks for that duration.
#[test]
fn the_scheduled_propose_timeout_is_the_genesis_one() {
    use malachite_core_types::TimeoutKind;
    let cast = Cast::deterministic(1, T0 - 1000).unwrap();
    let key = cast.validator_keys[0].clone();
    let scheduled = |timeout_propose_ms: u64| {
        let dir = tempfile::tempdir().unwrap();
        let guard = SignGuard::open(
            &dir.path().join("sign-state.bin"),
            cast.genesis.hash,
            key.public_key(),
        )
        .unwrap();
        let mut consensus = cast.genesis.doc.consensus.clone();
        consensus.timeout_propose_ms = timeout_propose_ms;
        let mut core = ConsensusCore::new(
            TradeContext::new(cast.genesis.hash),
            key.clone(),
            guard,
            Validators::from_ledger(&cast.genesis.validators),
            &consensus,
            1,
        );
        let actions = core.handle(core.start_height(1)).unwrap();
        actions
            .iter()
            .find_map(|a| match a {
                Action::ScheduleTimeout { timeout, duration_ms }
                    if timeout.kind == TimeoutKind::Propose =>
                {
                    Some((timeout.round.as_u32(), *duration_ms))
                }
                _ => None,
            })
            .expect("starting a height schedules the propose timeout of round 0")
    };
    assert_eq!(cast.genesis.doc.consensus.timeout_propose_ms, 3000, "the sample uses the default");
    assert_eq!(scheduled(3000), (Some(0), 3000));
    assert_eq!(scheduled(7250), (Some(0), 7250), "a non-default genesis timeout is used");
    assert_eq!(scheduled(40), (Some(0), 40));
}
