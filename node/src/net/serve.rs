//! Answers to peers' requests (a tip, committed blocks, a proposal's events): by the node's
//! network task and by the simulator alike.

use crate::chain::ChainHandle;
use crate::consensus::streamed::StreamedBlocks;
use crate::net::message::{self, Request, Response};

/// The answer to one request from a peer.
pub async fn answer(
    chain: &ChainHandle,
    streamed: &StreamedBlocks,
    genesis_hash: tradeloop_crypto::Hash,
    data: &[u8],
) -> Response {
    match Request::decode(data) {
        Err(e) => Response::Error(format!("malformed request: {e}")),
        Ok(Request::Status) => match chain.tip().await {
            Ok(tip) => {
                Response::Status { chain: genesis_hash, height: tip.height, tip_hash: tip.hash }
            }
            Err(e) => Response::Error(e.to_string()),
        },
        Ok(Request::Blocks { from, count }) => {
            let count = count.min(message::MAX_SYNC_BLOCKS);
            match chain.blocks(from, count, message::MAX_SYNC_RESPONSE_BYTES).await {
                Ok(blocks) => Response::Blocks(blocks),
                Err(e) => Response::Error(e.to_string()),
            }
        }
        Ok(Request::Events { ids }) => answer_events(streamed, &ids),
    }
}

/// The answer to a fetch of a proposal's events: those this node streamed, within the bounds.
fn answer_events(streamed: &StreamedBlocks, ids: &[tradeloop_crypto::Hash]) -> Response {
    if ids.len() > message::MAX_FETCH_IDS {
        return Response::Error(format!(
            "{} event ids asked; at most {} a request",
            ids.len(),
            message::MAX_FETCH_IDS
        ));
    }
    Response::Events(streamed.events(ids, message::MAX_FETCH_RESPONSE_BYTES))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tradeloop_crypto::Hash;
    use tradeloop_ledger::sample::Cast;

    /// A fetch is answered from the blocks this node streamed; one over the id bound is
    /// refused as a whole.
    #[test]
    fn event_fetches_are_answered_within_their_bounds() {
        let cast = Cast::deterministic(1, 1_700_000_000_000).unwrap();
        let events = tradeloop_ledger::sample::trade_events(&cast, 1, 1_700_000_001_000);
        let block = tradeloop_ledger::Block {
            header: tradeloop_ledger::Header {
                chain: cast.genesis.hash,
                height: 1,
                prev_hash: Hash::ZERO,
                time_ms: 1,
                proposer: cast.validator_keys[0].public_key(),
                events_root: Hash::ZERO,
                event_count: 19,
                app_hash: Hash::ZERO,
                validators_hash: Hash::ZERO,
            },
            events: events.clone(),
        };
        let streamed = StreamedBlocks::new();
        let ids: Vec<Hash> = events.iter().map(tradeloop_ledger::SignedEvent::id).collect();
        streamed.add(&block, &ids);
        let asked = vec![ids[4], Hash([9; 32]), ids[0]];
        let Response::Events(got) = answer_events(&streamed, &asked) else { panic!("events") };
        assert_eq!(got, vec![events[4].clone(), events[0].clone()]);
        let too_many = vec![ids[0]; message::MAX_FETCH_IDS + 1];
        assert!(matches!(answer_events(&streamed, &too_many), Response::Error(_)));
        assert!(matches!(
            answer_events(&streamed, &too_many[..message::MAX_FETCH_IDS]),
            Response::Events(e) if e.len() == message::MAX_FETCH_IDS
        ));
    }
}
