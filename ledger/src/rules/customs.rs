//! Customs: declarations filed for a shipment, cleared or held by customs, duties assessed.

use super::{rej, ApplyError, BlockExecutor, Effects};
use crate::error::RejectCode;
use crate::model::event::{Direction, Event, Payload};
use crate::model::genesis::Role;
use crate::rules::state::*;

impl<S: StateRead> BlockExecutor<'_, S> {
    pub(super) fn customs_declaration(
        &self,
        author: &str,
        key: &[u8],
        id: &str,
    ) -> Result<DeclarationState, ApplyError> {
        let d: DeclarationState =
            self.need(key, RejectCode::UnknownDeclaration, "declaration", id)?;
        if self.country_of(author) != d.country {
            return rej(
                RejectCode::CustomsWrongCountry,
                format!(
                    "declaration {id} is filed in {}; customs of {} cannot act on it",
                    d.country,
                    self.country_of(author)
                ),
            );
        }
        Ok(d)
    }

    pub(super) fn declaration_filed(
        &self,
        author: &str,
        d: &crate::model::event::DeclarationFiled,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let skey = Entity::Shipment.key(&d.shipment_id);
        let mut s: ShipmentState =
            self.need(&skey, RejectCode::UnknownShipment, "shipment", &d.shipment_id)?;
        let declarant_ok = match self.role_of(author) {
            Some(Role::Exporter) => d.direction == Direction::Export && s.seller == author,
            Some(Role::Importer) => d.direction == Direction::Import && s.buyer == author,
            Some(Role::Forwarder) => s.forwarder == author,
            _ => false,
        };
        if !declarant_ok {
            return rej(RejectCode::NotDeclarant, format!(
                "{author} may not declare shipment {}: the seller files exports, the buyer imports, \
                 the booked forwarder either as broker", d.shipment_id));
        }
        let country = match d.direction {
            Direction::Export => s.export_country(),
            Direction::Import => s.import_country(),
        };
        if d.country != country {
            return rej(
                RejectCode::DeclarationCountryMismatch,
                format!(
                    "an {:?} declaration for shipment {} belongs in {country}, not {}",
                    d.direction, d.shipment_id, d.country
                ),
            );
        }
        let key = Entity::Declaration.key(&d.declaration_id);
        let refiling = match self.get::<DeclarationState>(&key)? {
            None => false,
            Some(old)
                if old.status == DeclarationStatus::Held
                    && old.shipment_id == d.shipment_id
                    && old.direction == d.direction =>
            {
                true
            }
            Some(_) => {
                return rej(RejectCode::DuplicateDeclaration, format!(
                    "declaration {} exists and is not held; only a held declaration may be filed again",
                    d.declaration_id));
            }
        };
        // One live (filed or cleared) declaration per shipment and direction.
        for other in &s.declarations {
            if *other == d.declaration_id {
                continue;
            }
            let od: DeclarationState = self.need(
                &Entity::Declaration.key(other),
                RejectCode::UnknownDeclaration,
                "declaration",
                other,
            )?;
            if od.direction == d.direction && od.status != DeclarationStatus::Held {
                return rej(
                    RejectCode::DeclarationExists,
                    format!(
                        "shipment {} already has {:?} declaration {other} ({:?})",
                        d.shipment_id, d.direction, od.status
                    ),
                );
            }
        }
        let state = DeclarationState {
            shipment_id: d.shipment_id.clone(),
            direction: d.direction,
            country: d.country.clone(),
            declarant: author.into(),
            status: DeclarationStatus::Filed,
            duties: vec![],
        };
        if !refiling {
            s.declarations.push(d.declaration_id.clone());
            fx.put(skey.clone(), &s);
        }
        fx.put(key.clone(), &state);
        fx.refer(key);
        fx.refer(skey);
        Ok(())
    }

    /// Customs clears or holds a declaration; a clearance clears the shipment for the
    /// declaration's direction.
    pub(super) fn customs_decision(
        &self,
        e: &Event,
        c: &crate::model::event::CustomsDecision,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Declaration.key(&c.declaration_id);
        let mut d = self.customs_declaration(author, &key, &c.declaration_id)?;
        match (&e.payload, d.status) {
            (_, DeclarationStatus::Cleared) => {
                return rej(
                    RejectCode::DeclarationAlreadyDecided,
                    format!("declaration {} is already cleared", c.declaration_id),
                )
            }
            (Payload::CustomsCleared(_), DeclarationStatus::Held) => {
                return rej(
                    RejectCode::DeclarationHeld,
                    format!(
                        "declaration {} is held; it needs a new filing before it can be cleared",
                        c.declaration_id
                    ),
                )
            }
            (Payload::CustomsHeld(_), DeclarationStatus::Held) => {
                return rej(
                    RejectCode::DeclarationAlreadyDecided,
                    format!("declaration {} is already held", c.declaration_id),
                )
            }
            _ => {}
        }
        let skey = Entity::Shipment.key(&d.shipment_id);
        if matches!(e.payload, Payload::CustomsCleared(_)) {
            d.status = DeclarationStatus::Cleared;
            let mut s: ShipmentState =
                self.need(&skey, RejectCode::UnknownShipment, "shipment", &d.shipment_id)?;
            match d.direction {
                Direction::Export => s.export_cleared = true,
                Direction::Import => s.import_cleared = true,
            }
            fx.put(skey.clone(), &s);
        } else {
            d.status = DeclarationStatus::Held;
        }
        fx.put(key.clone(), &d);
        fx.refer(key);
        fx.refer(skey);
        Ok(())
    }

    /// Customs assesses duties on a declaration.
    pub(super) fn duties_assessed(
        &self,
        e: &Event,
        a: &crate::model::event::DutiesAssessed,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Declaration.key(&a.declaration_id);
        let mut d = self.customs_declaration(author, &key, &a.declaration_id)?;
        match d.duties.iter_mut().find(|(c, _)| *c == a.currency) {
            Some((_, total)) => *total = total.plus(a.amount.value),
            None => d.duties.push((a.currency.clone(), a.amount.value)),
        }
        let skey = Entity::Shipment.key(&d.shipment_id);
        fx.put(key.clone(), &d);
        fx.refer(key);
        fx.refer(skey);
        Ok(())
    }
}
