//! Talking to peers: the libp2p network layer ([`p2p`]), the messages peers exchange
//! ([`message`]), the answers this node serves them ([`serve`]) and block sync ([`sync`]).

pub mod message;
pub mod p2p;
pub mod serve;
pub mod sync;
