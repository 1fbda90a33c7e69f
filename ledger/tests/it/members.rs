//! Member nodes in the genesis: who may connect to the network, and which of them vote.

use tradeloop_crypto::SigningKey;
use tradeloop_ledger::model::genesis::MemberNode;
use tradeloop_ledger::sample::{ids, Cast};
use tradeloop_ledger::Genesis;

#[test]
fn a_networked_cast_lists_a_member_node_for_every_party_without_a_validator() {
    let cast =
        Cast::networked(4, 3, 1_700_000_000_000, &mut |l| Ok(SigningKey::from_seed_label(l)))
            .unwrap();
    let members = cast.genesis.member_nodes();
    assert_eq!(members.len(), 7, "4 validators and the exporter, importer and forwarder");
    assert!(members[..4].iter().all(|m| m.power > 0));
    assert!(members[4..].iter().all(|m| m.power == 0));
    for party in [ids::EXPORTER, ids::IMPORTER, ids::FORWARDER] {
        let i = cast.node_of(party).unwrap();
        assert!(i >= 4, "{party} has its own member node");
        assert_eq!(members[i].participant, party);
        assert_eq!(members[i].node_key, cast.node_keys()[i].public_key());
    }
    assert_eq!(cast.node_of(ids::DE_CUSTOMS), Some(0), "customs submits to its validator");
    assert_eq!(
        cast.node_names(),
        [
            "de-customs-node",
            "cn-customs-node",
            "de-bank-hanseatic-node",
            "cn-bank-shenzhen-node",
            "cn-exporter-bright-node",
            "de-importer-hanse-node",
            "forwarder-pacific-link-node"
        ]
    );
    // More member nodes than parties: second nodes, named apart.
    let five =
        Cast::networked(4, 5, 1_700_000_000_000, &mut |l| Ok(SigningKey::from_seed_label(l)))
            .unwrap();
    assert_eq!(five.node_names()[7], "cn-exporter-bright-node-2");
    assert_eq!(five.genesis.member_nodes().len(), 9);
    // The field survives the file round trip, and changes the chain's name.
    let reparsed = Genesis::from_json_bytes(&cast.genesis.canonical).unwrap();
    assert_eq!(reparsed.hash, cast.genesis.hash);
    let plain = Cast::deterministic(4, 1_700_000_000_000).unwrap();
    assert_ne!(plain.genesis.hash, cast.genesis.hash);
}

#[test]
fn a_genesis_without_member_nodes_writes_no_such_field_and_keeps_its_hash() {
    let plain = Cast::deterministic(4, 1_700_000_000_000).unwrap();
    let text = String::from_utf8(plain.genesis.canonical.clone()).unwrap();
    assert!(!text.contains("member_nodes"), "{text}");
}

#[test]
fn member_nodes_are_checked() {
    let cast = Cast::deterministic(4, 1_700_000_000_000).unwrap();
    let refused = |mutate: &dyn Fn(&mut tradeloop_ledger::GenesisDoc)| {
        let mut doc = cast.genesis.doc.clone();
        mutate(&mut doc);
        Genesis::from_doc(doc).unwrap_err().to_string()
    };
    let node = SigningKey::from_seed_label("member").public_key();
    let err = refused(&|d| {
        d.member_nodes.push(MemberNode { participant: "nobody".into(), node_key: node })
    });
    assert!(err.contains("unknown participant nobody"), "{err}");
    let validator_key = cast.genesis.doc.validators[0].node_key;
    let err = refused(&|d| {
        d.member_nodes
            .push(MemberNode { participant: ids::EXPORTER.into(), node_key: validator_key })
    });
    assert!(err.contains("appears twice"), "{err}");
    let event_key = cast.keys[ids::EXPORTER].public_key();
    let err = refused(&|d| {
        d.member_nodes.push(MemberNode { participant: ids::EXPORTER.into(), node_key: event_key })
    });
    assert!(err.contains("also an event-signing key"), "{err}");
}
