//! Documents: trade documents anchored by hash, each tied to the entity it belongs to.

use super::{rej, ApplyError, BlockExecutor, Effects};
use crate::error::{RejectCode, Rejection};
use crate::model::event::{parse_ref, RefKind};
use crate::model::genesis::Role;
use crate::rules::state::*;

impl<S: StateRead> BlockExecutor<'_, S> {
    pub(super) fn document_anchored(
        &self,
        author: &str,
        d: &crate::model::event::DocumentAnchored,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let key = Entity::Document.key(&d.doc_id);
        if self.exists(&key)? {
            return rej(
                RejectCode::DuplicateDocument,
                format!("document {} is already anchored", d.doc_id),
            );
        }
        let mut is_party = false;
        let mut ref_keys = Vec::new();
        for r in &d.refs {
            let (kind, id) = parse_ref(r)
                .map_err(|e| Rejection::new(RejectCode::InvalidField, e.to_string()))?;
            let parties: Vec<String> = match kind {
                RefKind::Order => {
                    let o: Option<OrderState> = self.get(&Entity::Order.key(id))?;
                    o.map(|o| vec![o.buyer, o.seller]).unwrap_or_default()
                }
                RefKind::Invoice => {
                    let i: Option<InvoiceState> = self.get(&Entity::Invoice.key(id))?;
                    let o: Option<OrderState> = match &i {
                        Some(i) => self.get(&Entity::Order.key(&i.order_id))?,
                        None => None,
                    };
                    o.filter(|_| i.is_some()).map(|o| vec![o.buyer, o.seller]).unwrap_or_default()
                }
                RefKind::Shipment => {
                    let s: Option<ShipmentState> = self.get(&Entity::Shipment.key(id))?;
                    s.map(|s| vec![s.buyer, s.seller, s.forwarder]).unwrap_or_default()
                }
                RefKind::Declaration => {
                    let dc: Option<DeclarationState> = self.get(&Entity::Declaration.key(id))?;
                    let mut parties = Vec::new();
                    if let Some(dc) = &dc {
                        if let Some(s) =
                            self.get::<ShipmentState>(&Entity::Shipment.key(&dc.shipment_id))?
                        {
                            parties = vec![s.buyer, s.seller, s.forwarder];
                        }
                        if self.role_of(author) == Some(Role::Customs)
                            && self.country_of(author) == dc.country
                        {
                            parties.push(author.into());
                        }
                    }
                    parties
                }
                RefKind::Lc => {
                    let l: Option<LcState> = self.get(&Entity::Lc.key(id))?;
                    let mut parties = l
                        .map(|l| vec![l.applicant, l.beneficiary, l.issuing_bank])
                        .unwrap_or_default();
                    if !parties.is_empty() && self.role_of(author) == Some(Role::Bank) {
                        // The beneficiary's (advising) bank acts for it.
                        if self.country_of(author) == self.country_of(&parties[1]) {
                            parties.push(author.into());
                        }
                    }
                    parties
                }
            };
            if parties.is_empty() {
                return rej(
                    RejectCode::UnknownReference,
                    format!("{r} does not exist on the ledger"),
                );
            }
            is_party |= parties.iter().any(|p| p == author);
            ref_keys.push(Entity::from(kind).key(id));
        }
        if !is_party {
            return rej(RejectCode::NotAParty, format!(
                "{author} is not a party to any of {}; only parties to a trade anchor its documents",
                // Joined, not `{:?}`: Debug escapes some non-ASCII (combining marks) in ids.
                d.refs.join(", ")));
        }
        let doc = DocumentState {
            author: author.into(),
            doc_type: d.doc_type,
            sha256: d.sha256.to_ascii_lowercase(),
            refs: d.refs.clone(),
        };
        fx.put(key.clone(), &doc);
        fx.refer(key);
        for k in ref_keys {
            fx.refer(k);
        }
        Ok(())
    }
}
