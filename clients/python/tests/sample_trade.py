"""The sample closed-loop trade of ``tradeloop demo`` (ledger/src/sample.rs, ``trade_steps``),
as (author, kind, fields) steps, for any order number."""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Tuple

EXPORTER = "cn-exporter-bright"
IMPORTER = "de-importer-hanse"
FORWARDER = "forwarder-pacific-link"
EXPORTER_BANK = "cn-bank-shenzhen"
IMPORTER_BANK = "de-bank-hanseatic"
CN_CUSTOMS = "cn-customs"
DE_CUSTOMS = "de-customs"

Step = Tuple[str, str, Dict[str, Any]]


def iso6346_check_digit(first_ten: str) -> int:
    """ISO 6346 check digit (letters map to 10..38 skipping multiples of 11)."""

    def value(c: str) -> int:
        if c.isdigit():
            return int(c)
        v = 10
        letter = "A"
        while letter < c:
            v += 1
            if v % 11 == 0:
                v += 1
            letter = chr(ord(letter) + 1)
        return v

    return sum(value(c) << i for i, c in enumerate(first_ten)) % 11 % 10


def container_number(serial: int) -> str:
    base = f"TLPU{serial % 1_000_000:06d}"
    return f"{base}{iso6346_check_digit(base)}"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def trade_steps(n: str) -> List[Step]:
    """The steps of sample trade ``n`` (ids ``PO-n``, ``SHP-n``, ...) in an order the rules
    accept: order -> acceptance -> letter of credit -> invoice -> booking -> export declaration
    and clearance -> transport -> import declaration, duties and clearance -> arrival ->
    delivery -> receipt -> documents presented -> payment."""
    po, inv, shp, lc = f"PO-{n}", f"INV-{n}", f"SHP-{n}", f"LC-{n}"
    exp, imp, bl, ci = f"EXD-CN-{n}", f"IMD-DE-{n}", f"BL-{n}", f"CI-{n}"
    serial = int(hashlib.sha256(n.encode()).hexdigest()[:8], 16)
    return [
        (
            IMPORTER,
            "trade.order_placed",
            {
                "order_id": po,
                "seller": EXPORTER,
                "incoterm": "FOB",
                "currency": "USD",
                "amount": "48000.00",
                "lines": [
                    {"sku": "BR-LED-40", "description": "LED panel 40W", "hs_code": "940542",
                     "quantity": "2000", "unit": "PCE"},
                    {"sku": "BR-DRV-40", "description": "LED driver 40W", "hs_code": "850440",
                     "quantity": "2000", "unit": "PCE"},
                ],
                "ucr": f"6DE123456789-{n}",
            },
        ),
        (EXPORTER, "trade.order_accepted", {"order_id": po}),
        (
            IMPORTER_BANK,
            "payment.lc_issued",
            {"lc_id": lc, "order_id": po, "applicant": IMPORTER, "beneficiary": EXPORTER,
             "currency": "USD", "amount": "48000.00", "expiry": "2099-12-31"},
        ),
        (
            EXPORTER,
            "trade.invoice_issued",
            {"invoice_id": inv, "order_id": po, "currency": "USD", "amount": "48000.00",
             "due_date": "2099-06-30"},
        ),
        (
            EXPORTER,
            "shipment.booked",
            {"shipment_id": shp, "order_ids": [po], "forwarder": FORWARDER, "origin": "CNSZX",
             "destination": "DEHAM", "mode": "sea", "containers": [container_number(serial)],
             "packages": 400, "gross_kg": "6120.5"},
        ),
        (
            EXPORTER,
            "document.anchored",
            {"doc_type": "commercial_invoice", "doc_id": ci, "sha256": sha256_hex(ci),
             "refs": [f"order:{po}", f"invoice:{inv}"]},
        ),
        (
            FORWARDER,
            "customs.declaration_filed",
            {"declaration_id": exp, "shipment_id": shp, "direction": "export", "country": "CN",
             "declared_value": "48000.00", "currency": "USD", "hs_codes": ["940542", "850440"]},
        ),
        (CN_CUSTOMS, "customs.cleared", {"declaration_id": exp}),
        (FORWARDER, "shipment.picked_up", {"shipment_id": shp, "location": "CNSZX", "event_time_ms": 1}),
        (
            FORWARDER,
            "shipment.departed",
            {"shipment_id": shp, "location": "CNYTN", "event_time_ms": 2, "vessel_imo": "9811000",
             "voyage": "045W"},
        ),
        (
            FORWARDER,
            "document.anchored",
            {"doc_type": "bill_of_lading", "doc_id": bl, "sha256": sha256_hex(bl),
             "refs": [f"shipment:{shp}"]},
        ),
        (
            IMPORTER,
            "customs.declaration_filed",
            {"declaration_id": imp, "shipment_id": shp, "direction": "import", "country": "DE",
             "declared_value": "48000.00", "currency": "USD", "hs_codes": ["940542", "850440"]},
        ),
        (DE_CUSTOMS, "customs.duties_assessed", {"declaration_id": imp, "amount": "1795.20", "currency": "EUR"}),
        (DE_CUSTOMS, "customs.cleared", {"declaration_id": imp}),
        (
            FORWARDER,
            "shipment.arrived",
            {"shipment_id": shp, "location": "DEHAM", "event_time_ms": 3, "vessel_imo": "9811000",
             "voyage": "045W"},
        ),
        (FORWARDER, "shipment.delivered", {"shipment_id": shp, "location": "DEHAM", "event_time_ms": 4}),
        (IMPORTER, "shipment.received", {"shipment_id": shp, "condition": "ok", "note": "400 packages, seals intact"}),
        (EXPORTER_BANK, "payment.documents_presented", {"lc_id": lc, "doc_ids": [bl, ci]}),
        (
            IMPORTER_BANK,
            "payment.settled",
            {"payment_id": f"UETR-{n}", "invoice_id": inv, "lc_id": lc, "payer": IMPORTER,
             "payee": EXPORTER, "currency": "USD", "amount": "48000.00"},
        ),
    ]
