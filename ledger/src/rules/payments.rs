//! Payments: letters of credit, documents presented under them, and settlements of invoices.

use super::{rej, ApplyError, BlockExecutor, Effects};
use crate::error::{RejectCode, Rejection};
use crate::model::event::Event;
use crate::model::fields::{day_of_ms, parse_date, Decimal};
use crate::model::genesis::Role;
use crate::rules::state::*;

impl<S: StateRead> BlockExecutor<'_, S> {
    /// A bank issues a letter of credit for an order, between its buyer and its seller.
    pub(super) fn lc_issued(
        &self,
        e: &Event,
        l: &crate::model::event::LcIssued,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Lc.key(&l.lc_id);
        if self.exists(&key)? {
            return rej(
                RejectCode::DuplicateLc,
                format!("letter of credit {} already exists", l.lc_id),
            );
        }
        let okey = Entity::Order.key(&l.order_id);
        let mut order: OrderState =
            self.need(&okey, RejectCode::UnknownOrder, "order", &l.order_id)?;
        if l.applicant != order.buyer || l.beneficiary != order.seller {
            return rej(
                RejectCode::LcPartyMismatch,
                format!(
                    "order {} is from {} to {}; the credit names applicant {} and beneficiary {}",
                    l.order_id, order.buyer, order.seller, l.applicant, l.beneficiary
                ),
            );
        }
        if l.currency != order.currency {
            return rej(
                RejectCode::CurrencyMismatch,
                format!(
                    "credit is in {} but order {} is in {}",
                    l.currency, l.order_id, order.currency
                ),
            );
        }
        let expiry_day = parse_date(&l.expiry)
            .map_err(|e| Rejection::new(RejectCode::InvalidField, e.to_string()))?;
        order.lcs.push(l.lc_id.clone());
        let lc = LcState {
            order_id: l.order_id.clone(),
            issuing_bank: author.into(),
            applicant: l.applicant.clone(),
            beneficiary: l.beneficiary.clone(),
            currency: l.currency.clone(),
            amount: l.amount.value,
            expiry_day,
            presented: false,
            settled: Decimal::default(),
        };
        fx.put(key.clone(), &lc);
        fx.put(okey.clone(), &order);
        fx.refer(key);
        fx.refer(okey);
        Ok(())
    }

    /// The beneficiary, or a bank of its country other than the issuer, presents anchored
    /// documents under an unexpired credit.
    pub(super) fn documents_presented(
        &self,
        e: &Event,
        p: &crate::model::event::DocumentsPresented,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Lc.key(&p.lc_id);
        let mut lc: LcState =
            self.need(&key, RejectCode::UnknownLc, "letter of credit", &p.lc_id)?;
        let allowed = author == lc.beneficiary
            || (self.role_of(author) == Some(Role::Bank)
                && author != lc.issuing_bank
                && self.country_of(author) == self.country_of(&lc.beneficiary));
        if !allowed {
            return rej(
                RejectCode::NotAParty,
                format!(
                    "documents under {} are presented by the beneficiary {} or its bank",
                    p.lc_id, lc.beneficiary
                ),
            );
        }
        if day_of_ms(e.time_ms) > lc.expiry_day {
            return rej(RejectCode::LcExpired, format!("letter of credit {} has expired", p.lc_id));
        }
        for doc in &p.doc_ids {
            if !self.exists(&Entity::Document.key(doc))? {
                return rej(
                    RejectCode::UnknownDocument,
                    format!(
                        "document {doc} is not anchored; anchor it with document.anchored first"
                    ),
                );
            }
        }
        lc.presented = true;
        fx.put(key.clone(), &lc);
        fx.refer(key);
        fx.refer(Entity::Order.key(&lc.order_id));
        Ok(())
    }

    pub(super) fn payment_settled(
        &self,
        author: &str,
        p: &crate::model::event::PaymentSettled,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let pkey = Entity::Payment.key(&p.payment_id);
        if self.exists(&pkey)? {
            return rej(
                RejectCode::DuplicatePayment,
                format!("payment {} is already recorded", p.payment_id),
            );
        }
        let ikey = Entity::Invoice.key(&p.invoice_id);
        let mut invoice: InvoiceState =
            self.need(&ikey, RejectCode::UnknownInvoice, "invoice", &p.invoice_id)?;
        let okey = Entity::Order.key(&invoice.order_id);
        let order: OrderState =
            self.need(&okey, RejectCode::UnknownOrder, "order", &invoice.order_id)?;
        if p.payer != order.buyer || p.payee != order.seller {
            return rej(
                RejectCode::PaymentPartyMismatch,
                format!(
                    "invoice {} is owed by {} to {}; the payment names payer {} and payee {}",
                    p.invoice_id, order.buyer, order.seller, p.payer, p.payee
                ),
            );
        }
        if p.currency != invoice.currency {
            return rej(
                RejectCode::CurrencyMismatch,
                format!(
                    "payment is in {} but invoice {} is in {}",
                    p.currency, p.invoice_id, invoice.currency
                ),
            );
        }
        let settled = invoice.settled.plus(p.amount.value);
        if settled > invoice.amount {
            return rej(
                RejectCode::Overpayment,
                format!(
                    "invoice {} is for {} {}, {} already settled; {} more would overpay it",
                    p.invoice_id, invoice.amount, invoice.currency, invoice.settled, p.amount.value
                ),
            );
        }
        if let Some(lc_id) = &p.lc_id {
            let lkey = Entity::Lc.key(lc_id);
            let mut lc: LcState =
                self.need(&lkey, RejectCode::UnknownLc, "letter of credit", lc_id)?;
            if lc.order_id != invoice.order_id {
                return rej(
                    RejectCode::LcPartyMismatch,
                    format!(
                        "credit {lc_id} secures order {}, not {}",
                        lc.order_id, invoice.order_id
                    ),
                );
            }
            if lc.issuing_bank != author {
                return rej(
                    RejectCode::NotIssuingBank,
                    format!("only the issuing bank {} pays under credit {lc_id}", lc.issuing_bank),
                );
            }
            if !lc.presented {
                return rej(
                    RejectCode::LcDocumentsNotPresented,
                    format!(
                    "no documents were presented under credit {lc_id}; it cannot be honoured yet"),
                );
            }
            let lc_settled = lc.settled.plus(p.amount.value);
            if lc_settled > lc.amount {
                return rej(
                    RejectCode::LcOverdrawn,
                    format!(
                        "credit {lc_id} is for {} {}; {} would overdraw it",
                        lc.amount, lc.currency, lc_settled
                    ),
                );
            }
            lc.settled = lc_settled;
            fx.put(lkey.clone(), &lc);
            fx.refer(lkey);
        } else if self.country_of(author) != self.country_of(&order.buyer) {
            // Open account: the payer's bank executes the payment.
            return rej(
                RejectCode::PaymentPartyMismatch,
                format!(
                    "an open-account payment is reported by the payer's bank (in {}), not {author}",
                    self.country_of(&order.buyer)
                ),
            );
        }
        invoice.settled = settled;
        fx.put(ikey.clone(), &invoice);
        fx.put(pkey.clone(), &p.invoice_id);
        fx.refer(pkey);
        fx.refer(ikey);
        fx.refer(okey);
        Ok(())
    }
}
