"""The mapping of log events the HTTP scenario does not reach, without a database: a receipt
refusing everything, log events without EPCIS meaning, identifiers and kilograms."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft7Validator

from domain.audit.models import Event
from integrations import epcis
from tests.epcis.conftest import problems

SENDER, RECEIVER = uuid.uuid4(), uuid.uuid4()
SOURCE, TARGET = uuid.uuid4(), uuid.uuid4()
SHIPMENT, LOT = uuid.uuid4(), uuid.uuid4()
AT = datetime(2026, 11, 20, 0, 30, 15, 123456, tzinfo=UTC)


def _event(type: str, payload: dict[str, Any], **fields: Any) -> Event:
    return Event(
        seq=fields.pop("seq", 9),
        type=type,
        subject_type=type.split(".")[0],
        subject_id=str(fields.pop("subject_id", SHIPMENT)),
        actor_kind="api_key",
        actor_role="admin",
        enterprise_ids=[SENDER, RECEIVER],
        facility_ids=[SOURCE, TARGET],
        lot_ids=[LOT],
        region_codes=["520102"],
        occurred_at=AT,
        payload=payload,
        **fields,
    )


def _facts() -> epcis.Facts:
    return epcis.Facts(
        lot_codes={LOT: "C26-00000AB"},
        uscc={SENDER: "91520102MA6DKWX05Q", RECEIVER: "91520302MA6DKWX05Q"},
        shipments={
            SHIPMENT: epcis.ShipmentFacts(SHIPMENT, SOURCE, TARGET, SENDER, RECEIVER),
        },
    )


def _document(events: list[dict[str, Any]]) -> dict[str, Any]:
    return epcis.query_document(events, AT)


def test_a_receipt_refusing_everything(validator: Draft7Validator) -> None:
    """No accepting event; the refused lot is the lot itself (no child), back with the sender."""
    received = _event(
        "shipment.received",
        {
            "status": "refused",
            "received_at": "2026-11-20T08:20:00+08:00",
            "weighbridge_ticket_no": "WB-1",
            "items": [
                {
                    "lot_id": str(LOT),
                    "dispatched_g": 1_000_500,
                    "received_g": 1_000_250,
                    "refused_g": 1_000_250,
                    "refusal_reason": "radioactive",
                    "refused_lot_id": None,
                }
            ],
        },
    )
    events = epcis.epcis_events(received, _facts())
    assert [e["bizStep"] for e in events] == ["receiving", "inspecting"]
    receiving, inspecting = events
    assert receiving["quantityList"] == [
        {"epcClass": "urn:scrapflow:lot:C26-00000AB", "quantity": 1000.25, "uom": "KGM"}
    ]
    assert receiving["scrapflow:weighbridgeTicketNo"] == "WB-1"
    assert receiving["eventTime"] == "2026-11-20T08:20:00.000+08:00"
    assert receiving["recordTime"] == "2026-11-20T08:30:15.123+08:00"
    assert inspecting["disposition"] == "non_conformant"
    assert inspecting["quantityList"] == receiving["quantityList"]
    assert inspecting["scrapflow:refusals"][0]["scrapflow:reason"] == "radioactive"
    assert problems(validator, _document(events)) == []


def test_a_receipt_without_a_stated_time_happened_when_recorded() -> None:
    received = _event(
        "shipment.received",
        {
            "received_at": None,
            "items": [
                {
                    "lot_id": str(LOT),
                    "received_g": 5,
                    "refused_g": 0,
                    "refusal_reason": None,
                    "refused_lot_id": None,
                }
            ],
        },
    )
    (receiving, accepting) = epcis.epcis_events(received, _facts())
    assert receiving["eventTime"] == receiving["recordTime"] == "2026-11-20T08:30:15.123+08:00"
    assert accepting["quantityList"][0]["quantity"] == 0.005


@pytest.mark.parametrize(
    "type",
    [
        "enterprise.registered",
        "facility.registered",
        "authority.registered",
        "user.created",
        "api_key.created",
        "discrepancy.opened",
        "discrepancy.resolved",
        "lot.seller_viewed",
        "emission_factors.published",
        "something.new",
    ],
)
def test_events_without_epcis_meaning_are_left_out(type: str) -> None:
    assert epcis.epcis_events(_event(type, {}), _facts()) == []
    assert type not in {t for kinds in epcis.EVENT_TYPES.values() for t in kinds}


def test_a_voided_run_whose_record_is_missing_declares_nothing() -> None:
    voided = _event("transformation.voided", {"reason": "x"}, subject_id=uuid.uuid4())
    assert epcis.epcis_events(voided, _facts()) == []


def test_identifiers() -> None:
    assert epcis.lot_class("A26-00003B~") == "urn:scrapflow:lot:A26-00003B~"
    assert epcis.lot_class("A26 0") == "urn:scrapflow:lot:A26%200"
    assert epcis.party("91520102MA6DKWX05Q") == "urn:scrapflow:party:uscc:91520102MA6DKWX05Q"
    assert epcis.event_id(7, "accepting") == "urn:scrapflow:event:7:accepting"
    assert epcis.kgm("urn:x", 812_345) == {"epcClass": "urn:x", "quantity": 812.345, "uom": "KGM"}
