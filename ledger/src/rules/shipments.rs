//! Shipments: booked for an order, moved by the booked forwarder through its milestones,
//! received by the consignee.

use std::collections::HashSet;

use super::{rej, ApplyError, BlockExecutor, Effects};
use crate::error::RejectCode;
use crate::model::event::{Event, Payload};
use crate::model::genesis::Role;
use crate::rules::state::*;

impl<S: StateRead> BlockExecutor<'_, S> {
    pub(super) fn shipment_booked(
        &self,
        e: &Event,
        p: &crate::model::event::ShipmentBooked,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Shipment.key(&p.shipment_id);
        if self.exists(&key)? {
            return rej(
                RejectCode::DuplicateShipment,
                format!("shipment {} already exists", p.shipment_id),
            );
        }
        if self.role_of(&p.forwarder) != Some(Role::Forwarder) {
            return rej(
                RejectCode::UnknownForwarder,
                format!("{} is not a forwarder on this chain", p.forwarder),
            );
        }
        if self.role_of(author) == Some(Role::Forwarder) && author != p.forwarder {
            return rej(
                RejectCode::NotBookedForwarder,
                format!("a forwarder books shipments with itself; {author} named {}", p.forwarder),
            );
        }
        let mut seen = HashSet::new();
        let mut parties: Option<(String, String)> = None;
        let mut orders = Vec::new();
        for id in &p.order_ids {
            if !seen.insert(id) {
                return rej(RejectCode::InvalidField, format!("order {id} is listed twice"));
            }
            let okey = Entity::Order.key(id);
            let order: OrderState = self.need(&okey, RejectCode::UnknownOrder, "order", id)?;
            if !order.accepted {
                return rej(
                    RejectCode::OrderNotAccepted,
                    format!("order {id} is not accepted yet"),
                );
            }
            if self.role_of(author) == Some(Role::Exporter) && order.seller != author {
                return rej(
                    RejectCode::NotOrderSeller,
                    format!("{author} is not the seller of order {id}"),
                );
            }
            match &parties {
                None => parties = Some((order.buyer.clone(), order.seller.clone())),
                Some((b, s)) if *b != order.buyer || *s != order.seller => {
                    return rej(
                        RejectCode::InvalidField,
                        "one shipment carries orders of one buyer and one seller",
                    );
                }
                Some(_) => {}
            }
            orders.push((okey, order));
        }
        let Some((buyer, seller)) = parties else {
            return rej(RejectCode::InvalidField, "order_ids is empty");
        };
        for (okey, mut order) in orders {
            order.shipments.push(p.shipment_id.clone());
            fx.put(okey.clone(), &order);
            fx.refer(okey);
        }
        let shipment = ShipmentState {
            order_ids: p.order_ids.clone(),
            booked_by: author.into(),
            forwarder: p.forwarder.clone(),
            buyer,
            seller,
            origin: p.origin.clone(),
            destination: p.destination.clone(),
            status: ShipmentStatus::Booked,
            export_cleared: false,
            import_cleared: false,
            condition: None,
            declarations: vec![],
            exceptions: 0,
        };
        fx.put(key.clone(), &shipment);
        fx.refer(key);
        Ok(())
    }

    /// A transport milestone of the booked forwarder, in the order of a shipment's life;
    /// departure needs export clearance, delivery import clearance.
    pub(super) fn shipment_milestone(
        &self,
        e: &Event,
        m: &crate::model::event::Milestone,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Shipment.key(&m.shipment_id);
        let mut s: ShipmentState =
            self.need(&key, RejectCode::UnknownShipment, "shipment", &m.shipment_id)?;
        if s.forwarder != author {
            return rej(
                RejectCode::NotBookedForwarder,
                format!("shipment {} is booked with {}, not {author}", m.shipment_id, s.forwarder),
            );
        }
        use ShipmentStatus::*;
        let (allowed, next): (&[ShipmentStatus], ShipmentStatus) = match &e.payload {
            Payload::ShipmentPickedUp(_) => (&[Booked], PickedUp),
            Payload::ShipmentDeparted(_) => (&[Booked, PickedUp, Arrived], Departed),
            Payload::ShipmentArrived(_) => (&[Departed], Arrived),
            _ => (&[Arrived], Delivered),
        };
        if !allowed.contains(&s.status) {
            return rej(
                RejectCode::ShipmentOutOfOrder,
                format!(
                    "shipment {} is {}; {} may come only when it is {}",
                    m.shipment_id,
                    s.status,
                    e.payload.kind(),
                    allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(" or ")
                ),
            );
        }
        if next == Departed && !s.export_cleared {
            return rej(
                RejectCode::ExportNotCleared,
                format!(
                    "shipment {} has no export clearance from customs of {}; it may not depart",
                    m.shipment_id,
                    s.export_country()
                ),
            );
        }
        if next == Delivered && !s.import_cleared {
            return rej(
                RejectCode::ImportNotCleared,
                format!(
                "shipment {} has no import clearance from customs of {}; it may not be delivered",
                m.shipment_id, s.import_country()),
            );
        }
        s.status = next;
        fx.put(key.clone(), &s);
        fx.refer(key);
        Ok(())
    }

    /// The consignee confirms receipt of a delivered shipment.
    pub(super) fn shipment_received(
        &self,
        e: &Event,
        r: &crate::model::event::ShipmentReceived,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Shipment.key(&r.shipment_id);
        let mut s: ShipmentState =
            self.need(&key, RejectCode::UnknownShipment, "shipment", &r.shipment_id)?;
        if s.buyer != author {
            return rej(
                RejectCode::NotOrderBuyer,
                format!(
                    "only the consignee {} may confirm receipt of shipment {}",
                    s.buyer, r.shipment_id
                ),
            );
        }
        if s.status != ShipmentStatus::Delivered {
            return rej(
                RejectCode::ShipmentOutOfOrder,
                format!(
                    "shipment {} is {}; it can be received only after delivery",
                    r.shipment_id, s.status
                ),
            );
        }
        s.status = ShipmentStatus::Received;
        s.condition = Some(r.condition);
        fx.put(key.clone(), &s);
        fx.refer(key);
        Ok(())
    }

    /// The booked forwarder reports an exception.
    pub(super) fn shipment_exception(
        &self,
        e: &Event,
        x: &crate::model::event::ShipmentException,
        fx: &mut Effects,
    ) -> Result<(), ApplyError> {
        let author = e.author.as_str();
        let key = Entity::Shipment.key(&x.shipment_id);
        let mut s: ShipmentState =
            self.need(&key, RejectCode::UnknownShipment, "shipment", &x.shipment_id)?;
        if s.forwarder != author {
            return rej(
                RejectCode::NotBookedForwarder,
                format!("shipment {} is booked with {}, not {author}", x.shipment_id, s.forwarder),
            );
        }
        s.exceptions = s.exceptions.saturating_add(1);
        fx.put(key.clone(), &s);
        fx.refer(key);
        Ok(())
    }
}
