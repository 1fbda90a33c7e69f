//! Orders and invoices: an importer orders from an exporter, which accepts and invoices.

use super::{rej, ApplyError, BlockExecutor, Effects};
use crate::error::RejectCode;
use crate::model::event::Event;
use crate::model::fields::Decimal;
use crate::model::genesis::Role;
use crate::rules::state::*;

impl<S: StateRead> BlockExecutor<'_, S> {
    /// An importer places an order with an exporter.
    pub(super) fn order_placed(
        &self,
        e: &Event,
        p: &crate::model::event::OrderPlaced,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Order.key(&p.order_id);
        if self.exists(&key)? {
            return rej(RejectCode::DuplicateOrder, format!("order {} already exists", p.order_id));
        }
        match self.role_of(&p.seller) {
            Some(Role::Exporter) => {}
            Some(r) => {
                return rej(
                    RejectCode::SellerNotExporter,
                    format!("seller {} is a {}, not an exporter", p.seller, r.as_str()),
                )
            }
            None => {
                return rej(
                    RejectCode::UnknownParticipant,
                    format!("seller {} is not a participant", p.seller),
                )
            }
        }
        let order = OrderState {
            buyer: author.into(),
            seller: p.seller.clone(),
            currency: p.currency.clone(),
            amount: p.amount.value,
            accepted: false,
            invoiced: Decimal::default(),
            invoices: vec![],
            shipments: vec![],
            lcs: vec![],
        };
        fx.put(key.clone(), &order);
        fx.refer(key);
        Ok(())
    }

    /// The seller accepts its order.
    pub(super) fn order_accepted(
        &self,
        e: &Event,
        p: &crate::model::event::OrderRef,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Order.key(&p.order_id);
        let mut order: OrderState =
            self.need(&key, RejectCode::UnknownOrder, "order", &p.order_id)?;
        if order.seller != author {
            return rej(
                RejectCode::NotOrderSeller,
                format!("only the seller {} may accept order {}", order.seller, p.order_id),
            );
        }
        if order.accepted {
            return rej(
                RejectCode::OrderAlreadyAccepted,
                format!("order {} is already accepted", p.order_id),
            );
        }
        order.accepted = true;
        fx.put(key.clone(), &order);
        fx.refer(key);
        Ok(())
    }

    /// The seller invoices an accepted order, in its currency, within its amount.
    pub(super) fn invoice_issued(
        &self,
        e: &Event,
        p: &crate::model::event::InvoiceIssued,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let okey = Entity::Order.key(&p.order_id);
        let ikey = Entity::Invoice.key(&p.invoice_id);
        let mut order: OrderState =
            self.need(&okey, RejectCode::UnknownOrder, "order", &p.order_id)?;
        if self.exists(&ikey)? {
            return rej(
                RejectCode::DuplicateInvoice,
                format!("invoice {} already exists", p.invoice_id),
            );
        }
        if order.seller != author {
            return rej(
                RejectCode::NotOrderSeller,
                format!("only the seller {} may invoice order {}", order.seller, p.order_id),
            );
        }
        if !order.accepted {
            return rej(
                RejectCode::OrderNotAccepted,
                format!("order {} is not accepted yet; accept it before invoicing", p.order_id),
            );
        }
        if order.currency != p.currency {
            return rej(
                RejectCode::CurrencyMismatch,
                format!(
                    "invoice is in {} but order {} is in {}",
                    p.currency, p.order_id, order.currency
                ),
            );
        }
        let invoiced = order.invoiced.plus(p.amount.value);
        if invoiced > order.amount {
            return rej(
                RejectCode::InvoiceExceedsOrder,
                format!(
                    "invoices would total {invoiced} {} but order {} is for {} {}",
                    order.currency, p.order_id, order.amount, order.currency
                ),
            );
        }
        order.invoiced = invoiced;
        order.invoices.push(p.invoice_id.clone());
        let invoice = InvoiceState {
            order_id: p.order_id.clone(),
            issuer: author.into(),
            currency: p.currency.clone(),
            amount: p.amount.value,
            settled: Decimal::default(),
        };
        fx.put(okey.clone(), &order);
        fx.put(ikey.clone(), &invoice);
        fx.refer(ikey);
        fx.refer(okey);
        Ok(())
    }
}
