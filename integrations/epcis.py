"""EPCIS 2.0 (GS1) for partners using GS1 traceability standards: the caller's sealed events as a
JSON-LD `EPCISQueryDocument`, valid against the GS1 EPCIS 2.0 JSON Schema.

How the log maps (one log event gives one EPCIS event; a receipt up to three):

- `lot.registered`: ObjectEvent ADD, bizStep `commissioning`, disposition `active`; the lot's
  master data in `ilmd`; the buying enterprise as destination owning and possessing party.
- `lot.split`: TransformationEvent, bizStep `commissioning`: the parent lot in, the parts out.
- `shipment.dispatched`: ObjectEvent OBSERVE, bizStep `shipping`, disposition `in_transit`;
  source and destination locations and parties; the shipment as a `desadv` business transaction.
- `shipment.received`: ObjectEvent OBSERVE `receiving` (the weighed kg of every lot); then
  `accepting` (the accepted kg, where any) with the same parties; then `inspecting` with
  disposition `non_conformant` (the refused kg and the reasons, where any).
- `shipment.cancelled`: ObjectEvent OBSERVE, bizStep `void_shipping`.
- `transformation.recorded`: TransformationEvent, bizStep `commissioning`, input (lots and
  primary metal) and output quantity lists, `transformationID`; losses as an extension.
- `transformation.voided`: the run's TransformationEvent again, same `eventID`, with an
  `errorDeclaration` (reason `did_not_occur`): EPCIS's way to retract an event.
- `certificate.issued` / `certificate.revoked`: ObjectEvent OBSERVE of the certified lot, bizStep
  `urn:scrapflow:bizstep:certifying` / `urn:scrapflow:bizstep:revoking_certificate`, the
  certificate's public verification URL in `certificationInfo`.

Other log events (registry, identity, discrepancies, reference data) have no EPCIS meaning and
are left out. A certificate is also in `certificationInfo` of every later event about its lot
that its recipient is a party to, while it was valid at that event's time.

Identifiers (no GS1 company prefixes are held, so they live under `urn:scrapflow:`):

- facility (readPoint, bizLocation, `location` source/destination): `urn:scrapflow:loc:<id>`
- enterprise (`owning_party`, `possessing_party`): `urn:scrapflow:party:uscc:<USCC>`
- lot (class-level `epcClass`, quantities in kilograms, uom `KGM`): `urn:scrapflow:lot:<code>`
- primary metal put into a melt: `urn:scrapflow:primary:<metal>`
- event: `urn:scrapflow:event:<audit seq>`; a receipt's others add `:accepting`, `:inspecting`
- shipment (business transaction of type `desadv`): `urn:scrapflow:shipment:<id>`
- transformation (`transformationID`): `urn:scrapflow:transformation:<id>`
- extension fields: the prefix `scrapflow:` (`urn:scrapflow:voc:`, declared in `@context`);
  every event's `scrapflow:auditSeq` is the log event it comes from in the audit trail

Times: `eventTime` is when it happened (a receipt's stated `received_at`, a run's end, otherwise
when it was recorded), `recordTime` when the platform recorded it; both in China Standard Time
(+08:00), where every facility is."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import orjson
from sqlalchemy import ColumnElement, DateTime, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from domain.actor import Actor
from domain.audit.models import Event
from domain.audit.service import event_visible_to
from domain.credits.models import Certificate
from domain.lots.models import Lot
from domain.mass import g_to_kg
from domain.registry.models import Enterprise, Facility
from domain.shipments.models import Shipment, ShipmentItem

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
VOCABULARY = "urn:scrapflow:voc:"
DOCUMENT_CONTEXT: list[Any] = [CONTEXT, {"scrapflow": VOCABULARY}]
MEDIA_TYPE = "application/ld+json"
SCHEMA_VERSION = "2.0"
CHINA = timezone(timedelta(hours=8), "CST")
OFFSET = "+08:00"
CERTIFYING = "urn:scrapflow:bizstep:certifying"
REVOKING = "urn:scrapflow:bizstep:revoking_certificate"

OBJECT_EVENTS = (
    "lot.registered",
    "shipment.dispatched",
    "shipment.received",
    "shipment.cancelled",
    "certificate.issued",
    "certificate.revoked",
)
TRANSFORMATION_EVENTS = ("lot.split", "transformation.recorded", "transformation.voided")
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "ObjectEvent": OBJECT_EVENTS,
    "TransformationEvent": TRANSFORMATION_EVENTS,
}

Json = dict[str, Any]


# --- identifiers ------------------------------------------------------------------------------


def location(facility_id: uuid.UUID | str) -> str:
    return f"urn:scrapflow:loc:{facility_id}"


def party(uscc: str) -> str:
    return f"urn:scrapflow:party:uscc:{uscc}"


def lot_class(code: str) -> str:
    # Lot codes are Crockford base-32 with a check symbol (`*~$=U`): all legal in a URN.
    return "urn:scrapflow:lot:" + quote(code, safe="-._~!$&'()*+,;=:@")


def primary_class(metal: str) -> str:
    return f"urn:scrapflow:primary:{quote(metal, safe='')}"


def event_id(seq: int, part: str | None = None) -> str:
    return f"urn:scrapflow:event:{seq}" + (f":{part}" if part else "")


def shipment_uri(shipment_id: uuid.UUID | str) -> str:
    return f"urn:scrapflow:shipment:{shipment_id}"


def transformation_uri(transformation_id: uuid.UUID | str) -> str:
    return f"urn:scrapflow:transformation:{transformation_id}"


def term(name: str) -> str:
    """An extension field, compacted with the `scrapflow` prefix of the document's context."""
    return f"scrapflow:{name}"


def kgm(epc_class: str, grams: int) -> Json:
    """A quantity element in kilograms (UN/ECE Recommendation 20 `KGM`), exact to the gram."""
    return {"epcClass": epc_class, "quantity": float(g_to_kg(grams)), "uom": "KGM"}


def timestamp(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="milliseconds")


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


# --- what a page needs besides its events ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    id: uuid.UUID
    number: str
    lot_id: uuid.UUID
    issuer_enterprise_id: uuid.UUID
    recipient_enterprise_id: uuid.UUID
    mass_g: int
    verification_url: str
    issued_at: datetime
    revoked_at: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        return self.issued_at <= moment and (self.revoked_at is None or self.revoked_at > moment)


@dataclass(frozen=True, slots=True)
class ShipmentFacts:
    id: uuid.UUID
    from_facility_id: uuid.UUID
    to_facility_id: uuid.UUID
    sender_enterprise_id: uuid.UUID
    receiver_enterprise_id: uuid.UUID
    dispatched_g: dict[uuid.UUID, int] = field(default_factory=dict)  # per lot


@dataclass(slots=True)
class Facts:
    """Everything the events of one page refer to, loaded in a fixed number of queries."""

    lot_codes: dict[uuid.UUID, str] = field(default_factory=dict)
    facility_enterprise: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    uscc: dict[uuid.UUID, str] = field(default_factory=dict)
    shipments: dict[uuid.UUID, ShipmentFacts] = field(default_factory=dict)
    certificates: dict[uuid.UUID, CertificateFacts] = field(default_factory=dict)
    # The `transformation.recorded` event of each voided run, by run id.
    recorded: dict[str, Event] = field(default_factory=dict)

    def code(self, lot_id: uuid.UUID | str) -> str:
        return self.lot_codes[uuid.UUID(str(lot_id))]

    def party_of_enterprise(self, enterprise_id: uuid.UUID) -> str:
        return party(self.uscc[enterprise_id])

    def party_of_facility(self, facility_id: uuid.UUID | str) -> str:
        return self.party_of_enterprise(self.facility_enterprise[uuid.UUID(str(facility_id))])


def _uuids(values: Iterable[Any]) -> set[uuid.UUID]:
    return {uuid.UUID(str(v)) for v in values if v is not None}


async def load_facts(session: AsyncSession, events: Sequence[Event]) -> Facts:
    facts = Facts()
    voided = [e.subject_id for e in events if e.type == "transformation.voided"]
    if voided:
        originals = await session.scalars(
            select(Event).where(
                col(Event.type) == "transformation.recorded",
                col(Event.subject_type) == "transformation",
                col(Event.subject_id).in_(voided),
            )
        )
        facts.recorded = {e.subject_id: e for e in originals}
    every = [*events, *facts.recorded.values()]
    lot_ids = _uuids(i for e in every for i in e.lot_ids)
    facility_ids = _uuids(i for e in every for i in e.facility_ids)
    shipment_ids = _uuids(e.subject_id for e in events if e.type.startswith("shipment."))
    certificate_ids = _uuids(e.subject_id for e in events if e.type.startswith("certificate."))

    if lot_ids:
        codes = await session.execute(
            select(col(Lot.id), col(Lot.code)).where(col(Lot.id).in_(lot_ids))
        )
        facts.lot_codes = dict(codes.all())
    if shipment_ids:
        for row in await session.scalars(
            select(Shipment).where(col(Shipment.id).in_(shipment_ids))
        ):
            facts.shipments[row.id] = ShipmentFacts(
                row.id,
                row.from_facility_id,
                row.to_facility_id,
                row.sender_enterprise_id,
                row.receiver_enterprise_id,
            )
            facility_ids |= {row.from_facility_id, row.to_facility_id}
        cancelled = _uuids(e.subject_id for e in events if e.type == "shipment.cancelled")
        if cancelled:
            items = await session.execute(
                select(
                    col(ShipmentItem.shipment_id),
                    col(ShipmentItem.lot_id),
                    col(ShipmentItem.dispatched_g),
                ).where(col(ShipmentItem.shipment_id).in_(cancelled))
            )
            for shipment_id, lot_id, grams in items:
                facts.shipments[shipment_id].dispatched_g[lot_id] = grams
    if lot_ids or certificate_ids:
        certificates = await session.scalars(
            select(Certificate).where(
                or_(col(Certificate.lot_id).in_(lot_ids), col(Certificate.id).in_(certificate_ids))
            )
        )
        for c in certificates:
            facts.certificates[c.id] = CertificateFacts(
                c.id,
                c.number,
                c.lot_id,
                c.issuer_enterprise_id,
                c.recipient_enterprise_id,
                c.mass_g,
                str(orjson.loads(c.payload)["verification_url"]),
                c.issued_at,
                c.revoked_at,
            )
    if facility_ids:
        owners = await session.execute(
            select(col(Facility.id), col(Facility.enterprise_id)).where(
                col(Facility.id).in_(facility_ids)
            )
        )
        facts.facility_enterprise = dict(owners.all())
    enterprise_ids = {
        *facts.facility_enterprise.values(),
        *(s.sender_enterprise_id for s in facts.shipments.values()),
        *(s.receiver_enterprise_id for s in facts.shipments.values()),
        *(c.issuer_enterprise_id for c in facts.certificates.values()),
        *(c.recipient_enterprise_id for c in facts.certificates.values()),
    }
    if enterprise_ids:
        codes = await session.execute(
            select(col(Enterprise.id), col(Enterprise.uscc)).where(
                col(Enterprise.id).in_(enterprise_ids)
            )
        )
        facts.uscc = dict(codes.all())
    return facts


# --- mapping ----------------------------------------------------------------------------------


def event_time(event: Event, facts: Facts) -> datetime:
    """When it happened: must agree with `event_time_column`, which filters on it."""
    assert event.occurred_at is not None
    if event.type == "shipment.received":
        return _moment(event.payload.get("received_at")) or event.occurred_at
    if event.type == "transformation.recorded":
        return _moment(event.payload.get("ended_at")) or event.occurred_at
    if event.type == "transformation.voided" and event.subject_id in facts.recorded:
        return event_time(facts.recorded[event.subject_id], facts)
    return event.occurred_at


def _common(kind: str, event: Event, facts: Facts, part: str | None = None) -> Json:
    assert event.seq is not None
    assert event.occurred_at is not None
    return {
        "type": kind,
        "eventID": event_id(event.seq, part),
        "eventTime": timestamp(event_time(event, facts)),
        "eventTimeZoneOffset": OFFSET,
        "recordTime": timestamp(event.occurred_at),
        term("auditSeq"): event.seq,
    }


def _certified(event: Event, facts: Facts, lot_ids: Iterable[uuid.UUID | str]) -> list[str]:
    """Verification URLs of the certificates of the event's lots that a party of the event
    received, valid at the time it was recorded."""
    assert event.occurred_at is not None
    lots = _uuids(lot_ids)
    parties = set(event.enterprise_ids)
    return sorted(
        {
            c.verification_url
            for c in facts.certificates.values()
            if c.lot_id in lots
            and c.recipient_enterprise_id in parties
            and c.valid_at(event.occurred_at)
        }
    )


def _with_certificates(body: Json, urls: list[str]) -> Json:
    if urls:
        body["certificationInfo"] = urls
    return body


def _place(facility_id: uuid.UUID | str) -> Json:
    return {
        "readPoint": {"id": location(facility_id)},
        "bizLocation": {"id": location(facility_id)},
    }


def _transfer(facts: Facts, shipment: ShipmentFacts) -> Json:
    sender = facts.party_of_enterprise(shipment.sender_enterprise_id)
    receiver = facts.party_of_enterprise(shipment.receiver_enterprise_id)
    return {
        "sourceList": [
            {"type": "location", "source": location(shipment.from_facility_id)},
            {"type": "owning_party", "source": sender},
            {"type": "possessing_party", "source": sender},
        ],
        "destinationList": [
            {"type": "location", "destination": location(shipment.to_facility_id)},
            {"type": "owning_party", "destination": receiver},
            {"type": "possessing_party", "destination": receiver},
        ],
        "bizTransactionList": [{"type": "desadv", "bizTransaction": shipment_uri(shipment.id)}],
    }


def _registered(event: Event, facts: Facts) -> list[Json]:
    p = event.payload
    holder = facts.party_of_facility(p["facility_id"])
    ilmd = {
        term("metal"): p["metal"],
        term("category"): p.get("category"),
        term("postConsumerKg"): float(g_to_kg(p["post_consumer_g"])),
        term("preConsumerKg"): float(g_to_kg(p["pre_consumer_g"])),
        term("primaryKg"): float(g_to_kg(p["primary_g"])),
        term("channel"): p.get("channel"),
        term("origin"): p.get("origin"),
        term("importCountry"): p.get("import_country"),
        term("customsDeclarationNo"): p.get("customs_declaration_no"),
        term("conformityStandard"): p.get("conformity_standard"),
        term("collectedAt"): (
            timestamp(collected) if (collected := _moment(p.get("collected_at"))) else None
        ),
    }
    return [
        {
            **_common("ObjectEvent", event, facts),
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "quantityList": [kgm(lot_class(p["code"]), p["net_g"])],
            **_place(p["facility_id"]),
            "destinationList": [
                {"type": "owning_party", "destination": holder},
                {"type": "possessing_party", "destination": holder},
            ],
            "ilmd": {k: v for k, v in ilmd.items() if v is not None},
        }
    ]


def _split(event: Event, facts: Facts) -> list[Json]:
    p = event.payload
    body = {
        **_common("TransformationEvent", event, facts),
        "inputQuantityList": [kgm(lot_class(p["parent"]), p["net_g"])],
        "outputQuantityList": [kgm(lot_class(c["code"]), c["net_g"]) for c in p["children"]],
        "bizStep": "commissioning",
        "disposition": "active",
    }
    if event.facility_ids:
        body.update(_place(event.facility_ids[0]))
    return [_with_certificates(body, _certified(event, facts, event.lot_ids))]


def _dispatched(event: Event, facts: Facts) -> list[Json]:
    p = event.payload
    shipment = facts.shipments[uuid.UUID(event.subject_id)]
    body = {
        **_common("ObjectEvent", event, facts),
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "quantityList": [kgm(lot_class(lot["code"]), lot["net_g"]) for lot in p["lots"]],
        **_place(shipment.from_facility_id),
        **_transfer(facts, shipment),
    }
    if p.get("carrier"):
        body[term("carrier")] = p["carrier"]
    if p.get("vehicle_energy"):
        body[term("vehicleEnergy")] = p["vehicle_energy"]
    if p.get("distance_km") is not None:
        body[term("distanceKm")] = float(p["distance_km"])
    return [_with_certificates(body, _certified(event, facts, event.lot_ids))]


def _received(event: Event, facts: Facts) -> list[Json]:
    p = event.payload
    shipment = facts.shipments[uuid.UUID(event.subject_id)]
    items = p["items"]
    certified = _certified(event, facts, event.lot_ids)
    transfer = _transfer(facts, shipment)
    receiving: Json = {
        **_common("ObjectEvent", event, facts),
        "action": "OBSERVE",
        "bizStep": "receiving",
        "quantityList": [kgm(lot_class(facts.code(i["lot_id"])), i["received_g"]) for i in items],
        **_place(shipment.to_facility_id),
        **transfer,
    }
    if p.get("weighbridge_ticket_no"):
        receiving[term("weighbridgeTicketNo")] = p["weighbridge_ticket_no"]
    events = [_with_certificates(receiving, certified)]
    accepted = [
        kgm(lot_class(facts.code(i["lot_id"])), i["received_g"] - (i["refused_g"] or 0))
        for i in items
        if i["received_g"] - (i["refused_g"] or 0) > 0
    ]
    if accepted:
        accepting = {
            **_common("ObjectEvent", event, facts, "accepting"),
            "action": "OBSERVE",
            "bizStep": "accepting",
            "quantityList": accepted,
            **_place(shipment.to_facility_id),
            **transfer,
        }
        events.append(_with_certificates(accepting, certified))
    refused = [i for i in items if (i["refused_g"] or 0) > 0]
    if refused:
        # A refused part stays in the sender's custody: a child lot when the refusal was partial.
        def refused_code(item: Json) -> str:
            return facts.code(item["refused_lot_id"] or item["lot_id"])

        inspecting = {
            **_common("ObjectEvent", event, facts, "inspecting"),
            "action": "OBSERVE",
            "bizStep": "inspecting",
            "disposition": "non_conformant",
            "quantityList": [kgm(lot_class(refused_code(i)), i["refused_g"]) for i in refused],
            "readPoint": {"id": location(shipment.to_facility_id)},
            "bizTransactionList": transfer["bizTransactionList"],
            term("refusals"): [
                {
                    term("lot"): lot_class(refused_code(i)),
                    term("refusedKg"): float(g_to_kg(i["refused_g"])),
                    term("reason"): i["refusal_reason"],
                }
                for i in refused
            ],
        }
        events.append(inspecting)
    return events


def _cancelled(event: Event, facts: Facts) -> list[Json]:
    shipment = facts.shipments[uuid.UUID(event.subject_id)]
    quantities = [
        kgm(lot_class(facts.code(lot_id)), shipment.dispatched_g[lot_id])
        for lot_id in map(uuid.UUID, map(str, event.lot_ids))
        if lot_id in shipment.dispatched_g
    ]
    body = {
        **_common("ObjectEvent", event, facts),
        "action": "OBSERVE",
        "bizStep": "void_shipping",
        "quantityList": quantities,
        **_place(shipment.from_facility_id),
        "bizTransactionList": [{"type": "desadv", "bizTransaction": shipment_uri(shipment.id)}],
    }
    if event.payload.get("reason"):
        body[term("reason")] = event.payload["reason"]
    return [body]


def _transformation(event: Event, facts: Facts) -> Json:
    p = event.payload
    inputs = [kgm(lot_class(facts.code(i["lot_id"])), i["taken_g"]) for i in p["inputs"]]
    inputs += [kgm(primary_class(x["metal"]), x["grams"]) for x in p["primary_inputs"]]
    body: Json = {
        **_common("TransformationEvent", event, facts),
        "inputQuantityList": inputs,
        "outputQuantityList": [kgm(lot_class(o["code"]), o["net_g"]) for o in p["outputs"]],
        "transformationID": transformation_uri(event.subject_id),
        "bizStep": "commissioning",
        "disposition": "active",
        **_place(p["facility_id"]),
        term("process"): p["process"],
    }
    if p["losses"]:
        body[term("losses")] = [
            {term("kind"): x["kind"], term("kg"): float(g_to_kg(x["grams"]))} for x in p["losses"]
        ]
    return _with_certificates(body, _certified(event, facts, event.lot_ids))


def _voided(event: Event, facts: Facts) -> list[Json]:
    """EPCIS corrects an event by capturing it again, same eventID, with an errorDeclaration."""
    original = facts.recorded.get(event.subject_id)
    if original is None:
        return []  # a run recorded before the log kept its events: nothing to declare against
    assert event.occurred_at is not None
    body = _transformation(original, facts)
    body["recordTime"] = timestamp(event.occurred_at)
    body[term("auditSeq")] = event.seq
    body["errorDeclaration"] = {
        "declarationTime": timestamp(event.occurred_at),
        "reason": "did_not_occur",
        **({term("reason"): event.payload["reason"]} if event.payload.get("reason") else {}),
    }
    return [body]


def _certificate(event: Event, facts: Facts) -> list[Json]:
    certificate = facts.certificates[uuid.UUID(event.subject_id)]
    revoked = event.type == "certificate.revoked"
    body: Json = {
        **_common("ObjectEvent", event, facts),
        "action": "OBSERVE",
        "bizStep": REVOKING if revoked else CERTIFYING,
        "quantityList": [kgm(lot_class(facts.code(certificate.lot_id)), certificate.mass_g)],
        "certificationInfo": [certificate.verification_url],
        term("certificateNumber"): certificate.number,
        term("issuer"): facts.party_of_enterprise(certificate.issuer_enterprise_id),
        term("recipient"): facts.party_of_enterprise(certificate.recipient_enterprise_id),
    }
    p = event.payload
    if revoked:
        body[term("reason")] = p.get("reason")
    else:
        body[term("method")] = p.get("method")
        body[term("claimedPostConsumerKg")] = float(g_to_kg(p["claimed_post_consumer_g"]))
        body[term("claimedPreConsumerKg")] = float(g_to_kg(p["claimed_pre_consumer_g"]))
    return [{k: v for k, v in body.items() if v is not None}]


MAPPERS = {
    "lot.registered": _registered,
    "lot.split": _split,
    "shipment.dispatched": _dispatched,
    "shipment.received": _received,
    "shipment.cancelled": _cancelled,
    "transformation.recorded": lambda event, facts: [_transformation(event, facts)],
    "transformation.voided": _voided,
    "certificate.issued": _certificate,
    "certificate.revoked": _certificate,
}
assert set(MAPPERS) == set(OBJECT_EVENTS) | set(TRANSFORMATION_EVENTS)


def epcis_events(event: Event, facts: Facts) -> list[Json]:
    """The EPCIS events of one log event (none for kinds without EPCIS meaning)."""
    mapper = MAPPERS.get(event.type)
    return [] if mapper is None else mapper(event, facts)


def query_document(events: list[Json], created: datetime) -> Json:
    return {
        "@context": DOCUMENT_CONTEXT,
        "type": "EPCISQueryDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": timestamp(created),
        "epcisBody": {
            "queryResults": {
                "queryName": "SimpleEventQuery",
                "resultsBody": {"eventList": events},
            }
        },
    }


# --- the query --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventQuery:
    event_types: Sequence[str] = ()  # EPCIS types; empty means all
    ge_event_time: datetime | None = None
    lt_event_time: datetime | None = None
    ge_record_time: datetime | None = None
    lt_record_time: datetime | None = None


_STAMP = DateTime(timezone=True)


def event_time_column() -> ColumnElement[datetime]:
    """`event_time` in SQL, for the eventTime filters."""
    original = aliased(Event)
    original_end = (
        select(cast(col(original.payload)["ended_at"].astext, _STAMP))
        .where(
            col(original.type) == "transformation.recorded",
            col(original.subject_type) == "transformation",
            col(original.subject_id) == col(Event.subject_id),
        )
        .limit(1)
        .scalar_subquery()
    )
    occurred = col(Event.occurred_at)
    return case(
        (
            col(Event.type) == "shipment.received",
            func.coalesce(cast(col(Event.payload)["received_at"].astext, _STAMP), occurred),
        ),
        (
            col(Event.type) == "transformation.recorded",
            func.coalesce(cast(col(Event.payload)["ended_at"].astext, _STAMP), occurred),
        ),
        (col(Event.type) == "transformation.voided", func.coalesce(original_end, occurred)),
        else_=occurred,
    )


async def sealed_events(
    session: AsyncSession, actor: Actor, query: EventQuery, *, after_seq: int, limit: int
) -> tuple[Sequence[Event], int | None]:
    """The caller's visible sealed log events with an EPCIS meaning, in sequence order from
    `after_seq`; and the seq to continue after, if there may be more."""
    kinds = [t for name in (query.event_types or EVENT_TYPES) for t in EVENT_TYPES[name]]
    statement = select(Event).where(
        col(Event.seq) > after_seq,
        col(Event.seq).is_not(None),
        col(Event.type).in_(kinds),
        event_visible_to(actor),
    )
    if query.ge_record_time is not None:
        statement = statement.where(col(Event.occurred_at) >= query.ge_record_time)
    if query.lt_record_time is not None:
        statement = statement.where(col(Event.occurred_at) < query.lt_record_time)
    if query.ge_event_time is not None or query.lt_event_time is not None:
        happened = event_time_column()
        if query.ge_event_time is not None:
            statement = statement.where(happened >= query.ge_event_time)
        if query.lt_event_time is not None:
            statement = statement.where(happened < query.lt_event_time)
    rows = (await session.scalars(statement.order_by(col(Event.seq)).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].seq if more else None)


@dataclass(frozen=True, slots=True)
class QueryPage:
    document: Json
    next_after_seq: int | None


async def query(
    session: AsyncSession,
    actor: Actor,
    where: EventQuery,
    *,
    after_seq: int,
    limit: int,
    now: datetime,
) -> QueryPage:
    """One page of the caller's events as an EPCIS query document: `limit` log events, each
    mapped to its EPCIS events, with what they refer to loaded for the whole page at once."""
    rows, next_after = await sealed_events(session, actor, where, after_seq=after_seq, limit=limit)
    facts = await load_facts(session, rows)
    events = [e for row in rows for e in epcis_events(row, facts)]
    return QueryPage(query_document(events, now), next_after)
