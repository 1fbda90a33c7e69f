//! Ledger state: the entities the rules keep, their keys, and reading them.
//!
//! State is a map from byte keys to bincode values (see `docs/formats.md`):
//!
//! | key                         | value            |
//! |-----------------------------|------------------|
//! | `order/<order_id>`          | [`OrderState`]   |
//! | `invoice/<invoice_id>`      | [`InvoiceState`] |
//! | `shipment/<shipment_id>`    | [`ShipmentState`]|
//! | `declaration/<id>`          | [`DeclarationState`] |
//! | `lc/<lc_id>`                | [`LcState`]      |
//! | `document/<doc_id>`         | [`DocumentState`]|
//! | `payment/<payment_id>`      | invoice id       |
//! | `nonce/<author>\0<nonce>`   | event id (also the replay check) |

use serde::{Deserialize, Serialize};

use crate::model::event::{Condition, Direction, DocType, RefKind};
use crate::model::fields::Decimal;
use crate::LedgerError;

/// Reads committed state. Implemented by the sled index and by the in-memory replay of `verify`.
pub trait StateRead {
    /// The value stored under a state key.
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError>;
    /// Calls `f` with the value under `key` (borrowed where the store can lend it).
    fn with_state<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, LedgerError> {
        Ok(f(self.get_state(key)?.as_deref()))
    }
    /// Whether a value is stored under `key`.
    fn has_state(&self, key: &[u8]) -> Result<bool, LedgerError> {
        Ok(self.get_state(key)?.is_some())
    }
}

/// The kinds of entity the rules keep a record of, each under a state key prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entity {
    /// `order/<order_id>`.
    Order,
    /// `invoice/<invoice_id>`.
    Invoice,
    /// `shipment/<shipment_id>`.
    Shipment,
    /// `declaration/<declaration_id>`.
    Declaration,
    /// `lc/<lc_id>`.
    Lc,
    /// `document/<doc_id>`.
    Document,
    /// `payment/<payment_id>`.
    Payment,
}

impl Entity {
    /// The state key prefix, e.g. `order`.
    pub fn prefix(self) -> &'static str {
        match self {
            Entity::Order => "order",
            Entity::Invoice => "invoice",
            Entity::Shipment => "shipment",
            Entity::Declaration => "declaration",
            Entity::Lc => "lc",
            Entity::Document => "document",
            Entity::Payment => "payment",
        }
    }

    /// The state key of the entity `id` of this kind.
    pub fn key(self, id: &str) -> Vec<u8> {
        entity_key(self.prefix(), id)
    }
}

impl From<RefKind> for Entity {
    fn from(kind: RefKind) -> Entity {
        match kind {
            RefKind::Order => Entity::Order,
            RefKind::Invoice => Entity::Invoice,
            RefKind::Shipment => Entity::Shipment,
            RefKind::Declaration => Entity::Declaration,
            RefKind::Lc => Entity::Lc,
        }
    }
}

/// The state key of an entity by its prefix ([`Entity::prefix`]).
fn entity_key(prefix: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 1 + id.len());
    key.extend_from_slice(prefix.as_bytes());
    key.push(b'/');
    key.extend_from_slice(id.as_bytes());
    key
}

/// The state key of an author's nonce: `nonce/<author>\0<nonce state key>`.
pub fn nonce_key(author: &str, nonce: &crate::model::event::Nonce) -> Vec<u8> {
    let mut key = Vec::with_capacity(6 + author.len() + 1 + 24);
    key.extend_from_slice(b"nonce/");
    key.extend_from_slice(author.as_bytes());
    key.push(0);
    nonce.write_state_key(&mut key);
    key
}

/// An order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct OrderState {
    pub buyer: String,
    pub seller: String,
    pub currency: String,
    pub amount: Decimal,
    pub accepted: bool,
    /// Sum of invoices issued against it.
    pub invoiced: Decimal,
    pub invoices: Vec<String>,
    pub shipments: Vec<String>,
    pub lcs: Vec<String>,
}

/// An invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct InvoiceState {
    pub order_id: String,
    pub issuer: String,
    pub currency: String,
    pub amount: Decimal,
    /// Sum of payments settled against it.
    pub settled: Decimal,
}

/// Where a shipment is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ShipmentStatus {
    Booked,
    PickedUp,
    Departed,
    Arrived,
    Delivered,
    Received,
}

impl ShipmentStatus {
    /// The status in words, as messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Booked => "booked",
            ShipmentStatus::PickedUp => "picked up",
            ShipmentStatus::Departed => "departed",
            ShipmentStatus::Arrived => "arrived",
            ShipmentStatus::Delivered => "delivered",
            ShipmentStatus::Received => "received",
        }
    }
}

impl std::fmt::Display for ShipmentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A shipment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ShipmentState {
    pub order_ids: Vec<String>,
    pub booked_by: String,
    pub forwarder: String,
    pub buyer: String,
    pub seller: String,
    pub origin: String,
    pub destination: String,
    pub status: ShipmentStatus,
    pub export_cleared: bool,
    pub import_cleared: bool,
    pub condition: Option<Condition>,
    pub declarations: Vec<String>,
    pub exceptions: u32,
}

impl ShipmentState {
    /// The export country (the origin's UN/LOCODE country).
    pub fn export_country(&self) -> &str {
        self.origin.get(..2).unwrap_or("")
    }
    /// The import country (the destination's UN/LOCODE country).
    pub fn import_country(&self) -> &str {
        self.destination.get(..2).unwrap_or("")
    }
}

/// Status of a customs declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum DeclarationStatus {
    Filed,
    Held,
    Cleared,
}

/// A customs declaration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DeclarationState {
    pub shipment_id: String,
    pub direction: Direction,
    pub country: String,
    pub declarant: String,
    pub status: DeclarationStatus,
    /// Duties assessed, per currency.
    pub duties: Vec<(String, Decimal)>,
}

/// A letter of credit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct LcState {
    pub order_id: String,
    pub issuing_bank: String,
    pub applicant: String,
    pub beneficiary: String,
    pub currency: String,
    pub amount: Decimal,
    /// Expiry, days since 1970-01-01.
    pub expiry_day: i64,
    pub presented: bool,
    pub settled: Decimal,
}

/// An anchored document (its hash; the file stays off-chain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DocumentState {
    pub author: String,
    pub doc_type: DocType,
    pub sha256: String,
    pub refs: Vec<String>,
}
