//! Who may emit what: the permission matrix of docs/events.md, by participant role.

use crate::model::genesis::Role;

/// Whether a role may emit a kind: the permission matrix of docs/events.md.
pub fn role_permits(role: Role, kind: &str) -> bool {
    use Role::*;
    match kind {
        "trade.order_placed" | "shipment.received" => role == Importer,
        "trade.order_accepted" | "trade.invoice_issued" => role == Exporter,
        "shipment.booked" => matches!(role, Exporter | Forwarder),
        "shipment.picked_up" | "shipment.departed" | "shipment.arrived" | "shipment.delivered"
        | "shipment.exception" => role == Forwarder,
        "document.anchored" => role != Auditor,
        "customs.declaration_filed" => matches!(role, Exporter | Importer | Forwarder),
        "customs.cleared" | "customs.held" | "customs.duties_assessed" => role == Customs,
        "payment.lc_issued" | "payment.settled" => role == Bank,
        "payment.documents_presented" => matches!(role, Exporter | Bank),
        _ => false,
    }
}
