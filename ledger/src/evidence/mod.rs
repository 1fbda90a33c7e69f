//! What an auditor checks with the genesis alone: a whole chain ([`audit`]), an evidence
//! bundle for one event or trade ([`proof`]), and two copies of one chain ([`compare`]).

pub mod audit;
pub mod compare;
pub mod proof;
