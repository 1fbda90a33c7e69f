//! Who may emit what: the permission matrix of docs/events.md, by participant role and kind.

use crate::model::event::Kind;
use crate::model::genesis::Role;

/// Whether a role may emit a kind: the permission matrix of docs/events.md. Every kind is
/// named, so a new kind does not compile until its row is written.
pub fn role_permits(role: Role, kind: Kind) -> bool {
    use Role::*;
    match kind {
        Kind::OrderPlaced | Kind::ShipmentReceived => role == Importer,
        Kind::OrderAccepted | Kind::InvoiceIssued => role == Exporter,
        Kind::ShipmentBooked => matches!(role, Exporter | Forwarder),
        Kind::ShipmentPickedUp
        | Kind::ShipmentDeparted
        | Kind::ShipmentArrived
        | Kind::ShipmentDelivered
        | Kind::ShipmentException => role == Forwarder,
        Kind::DocumentAnchored => role != Auditor,
        Kind::DeclarationFiled => matches!(role, Exporter | Importer | Forwarder),
        Kind::CustomsCleared | Kind::CustomsHeld | Kind::DutiesAssessed => role == Customs,
        Kind::LcIssued | Kind::PaymentSettled => role == Bank,
        Kind::DocumentsPresented => matches!(role, Exporter | Bank),
    }
}
