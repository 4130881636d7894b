"""Enterprise statements (DESIGN §2.6, §2.7): per metal, what an enterprise smelted, collected,
handled, received with certificates and transported over a period, with the emissions avoided
and caused, each figure naming the emission-factor set it used.

Every query starts from the enterprise's facilities and the period, through (facility, time)
indexes, so a statement costs what the enterprise did in the period, not the size of the
database. Masses are summed in SQL as integers (numeric, never floats). Masses that later change
on the lot row (a receipt rescales a lot, a run takes part of it) are read as they were recorded:
from the receipt line, the run's input line, or the recording event."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import Actor
from domain.base import utcnow
from domain.errors import InvalidInput
from domain.lots.rules import LotKind, Metal
from domain.reference.models import EmissionFactor, EmissionFactorSet
from domain.reference.service import emission_factors
from domain.registry.models import Enterprise
from domain.registry.service import get_enterprise
from domain.reports.rules import (
    EARLIEST,
    FREIGHT_FACTOR,
    LATEST,
    PRIMARY_FACTOR,
    RECYCLED_FACTOR,
    avoided_emissions_kg,
    out_of_range,
    share_percent,
    tonne_km,
    transport_emissions_kg,
    twelve_months_before,
)
from domain.transformations.rules import SMELTING


class InvalidPeriod(InvalidInput):
    code = "invalid_period"
    title = "The period is not valid"


# --- the statement ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FactorUsed:
    key: str
    value: Decimal
    unit: str


@dataclass(frozen=True, slots=True)
class Avoided:
    """Avoided emissions of recycled metal; `kgco2e` is None when the set lacks a factor."""

    kgco2e: Decimal | None
    factor_set_version: int
    primary: FactorUsed | None
    recycled: FactorUsed | None


@dataclass(slots=True)
class Smelting:
    runs: int = 0
    post_consumer_g: int = 0
    pre_consumer_g: int = 0
    scrap_input_g: int = 0  # scrap lots melted, recycled or not
    primary_input_g: int = 0
    remelted_product_g: int = 0  # product lots put back in a furnace: counted where first made
    product_output_g: int = 0
    recycled_percent: Decimal | None = None
    avoided: Avoided | None = None

    @property
    def recycled_g(self) -> int:
        return self.post_consumer_g + self.pre_consumer_g

    @property
    def metal_input_g(self) -> int:
        return self.scrap_input_g + self.primary_input_g


@dataclass(frozen=True, slots=True)
class Tally:
    """Lots and grams of one category (or product form) and channel."""

    category: str | None
    channel: str | None
    lots: int
    grams: int


@dataclass(frozen=True, slots=True)
class Pretreatment:
    process: str
    runs: int
    input_g: int
    output_g: int
    loss_g: int


@dataclass(slots=True)
class Collection:
    tallies: list[Tally] = field(default_factory=list)

    @property
    def lots(self) -> int:
        return sum(t.lots for t in self.tallies)

    @property
    def grams(self) -> int:
        return sum(t.grams for t in self.tallies)


@dataclass(slots=True)
class Handling:
    received: list[Tally] = field(default_factory=list)  # scrap accepted at the facilities
    pretreatment: list[Pretreatment] = field(default_factory=list)

    @property
    def received_g(self) -> int:
        return sum(t.grams for t in self.received)

    @property
    def pretreatment_input_g(self) -> int:
        return sum(p.input_g for p in self.pretreatment)


@dataclass(slots=True)
class Processing:
    certificates: int = 0
    certified_mass_g: int = 0
    certified_post_consumer_g: int = 0
    certified_pre_consumer_g: int = 0
    products_received: list[Tally] = field(default_factory=list)  # by product form
    certified_percent: Decimal | None = None

    @property
    def certified_recycled_g(self) -> int:
        return self.certified_post_consumer_g + self.certified_pre_consumer_g

    @property
    def product_received_g(self) -> int:
        return sum(t.grams for t in self.products_received)


@dataclass(frozen=True, slots=True)
class Haul:
    """Shipments of one vehicle energy; tonne-km and emissions over those with a distance."""

    vehicle_energy: str | None
    shipments: int
    shipments_without_distance: int
    grams: int
    grams_without_distance: int
    gram_km: Decimal
    factor_set_version: int
    factor: FactorUsed | None
    kgco2e: Decimal | None  # None: no factor for this vehicle energy

    @property
    def tonne_km(self) -> Decimal:
        return tonne_km(self.gram_km)


@dataclass(slots=True)
class Transport:
    """A shipment has one vehicle energy, so the hauls add up; a shipment carrying both metals
    counts in both metals' statements, with the gram-km of its lots of each."""

    factor_set_version: int
    hauls: list[Haul] = field(default_factory=list)

    @property
    def shipments(self) -> int:
        return sum(h.shipments for h in self.hauls)

    @property
    def shipments_without_distance(self) -> int:
        return sum(h.shipments_without_distance for h in self.hauls)

    @property
    def grams(self) -> int:
        return sum(h.grams for h in self.hauls)

    @property
    def gram_km(self) -> Decimal:
        return sum((h.gram_km for h in self.hauls), Decimal(0))

    @property
    def tonne_km(self) -> Decimal:
        return tonne_km(self.gram_km)

    @property
    def kgco2e(self) -> Decimal:
        return sum((h.kgco2e for h in self.hauls if h.kgco2e is not None), Decimal("0.000"))

    @property
    def shipments_without_factor(self) -> int:
        return sum(h.shipments for h in self.hauls if h.kgco2e is None)


@dataclass(slots=True)
class MetalStatement:
    metal: Metal
    smelting: Smelting
    collection: Collection
    handling: Handling
    processing: Processing
    transport: Transport


@dataclass(frozen=True, slots=True)
class Statement:
    enterprise: Enterprise
    period_from: datetime
    period_to: datetime
    factor_set: EmissionFactorSet
    metals: list[MetalStatement]
    generated_at: datetime


# --- queries ----------------------------------------------------------------------------------
# Each is driven by the enterprise's facilities (`facility.enterprise_id` index) and the period
# through a (facility, time) index: transformation (facility_id, ended_at), lot
# (registered_facility_id, registered_at), shipment (to_facility_id, received_at) and
# (from_facility_id, dispatched_at); certificates by (recipient_enterprise_id, issued_at). The
# metal filter, when given, is a constant fragment.

_FACILITIES = "SELECT f.id FROM facility f WHERE f.enterprise_id = :enterprise"
_SMELTING_PROCESSES = ", ".join(f"'{p.value}'" for p in sorted(SMELTING))

_SMELTING = f"""
SELECT t.metal, count(*) AS runs, sum(t.primary_g) AS primary_g,
       sum(i.scrap_g) AS scrap_g, sum(i.post_g) AS post_g, sum(i.pre_g) AS pre_g,
       sum(i.product_g) AS remelted_g, sum(o.product_g) AS product_g
FROM transformation t
CROSS JOIN LATERAL (
    SELECT coalesce(sum(ti.taken_g) FILTER (WHERE l.kind = 'scrap'), 0) AS scrap_g,
           coalesce(sum(ti.post_consumer_g) FILTER (WHERE l.kind = 'scrap'), 0) AS post_g,
           coalesce(sum(ti.pre_consumer_g) FILTER (WHERE l.kind = 'scrap'), 0) AS pre_g,
           coalesce(sum(ti.taken_g) FILTER (WHERE l.kind = 'product'), 0) AS product_g
    FROM transformation_input ti JOIN lot l ON l.id = ti.lot_id
    WHERE ti.transformation_id = t.id
) i
CROSS JOIN LATERAL (
    SELECT coalesce(sum((made ->> 'net_g')::bigint), 0) AS product_g
    FROM event e CROSS JOIN jsonb_array_elements(e.payload -> 'outputs') made
    WHERE e.subject_type = 'transformation' AND e.subject_id = t.id::text
      AND e.type = 'transformation.recorded' AND made ->> 'kind' = 'product'
) o
WHERE t.facility_id IN ({_FACILITIES})
  AND t.ended_at >= :start AND t.ended_at < :end
  AND t.status = 'recorded' AND t.process IN ({_SMELTING_PROCESSES}) {{metal}}
GROUP BY t.metal
"""  # noqa: S608 - constant fragments only

_PRETREATMENT = f"""
SELECT t.metal, t.process, count(*) AS runs, sum(t.input_g) AS input_g,
       sum(t.output_g) AS output_g, sum(t.loss_g) AS loss_g
FROM transformation t
WHERE t.facility_id IN ({_FACILITIES})
  AND t.ended_at >= :start AND t.ended_at < :end
  AND t.status = 'recorded' AND t.process NOT IN ({_SMELTING_PROCESSES}) {{metal}}
GROUP BY t.metal, t.process
"""  # noqa: S608

# Lots bought from sellers: registered at a collection point, with a collection time and no
# parent (split and refused parts have one; transformation outputs have no collection time).
# Their mass is the registered one, from the registration event: a lot's own mass changes
# with later weighings and partial use.
_COLLECTION = f"""
SELECT l.metal, l.category, l.channel, count(*) AS lots,
       sum((e.payload ->> 'net_g')::bigint) AS grams
FROM lot l
JOIN event e ON e.subject_type = 'lot' AND e.subject_id = l.id::text
            AND e.type = 'lot.registered'
WHERE l.registered_facility_id IN ({_FACILITIES})
  AND l.registered_at >= :start AND l.registered_at < :end
  AND l.kind = 'scrap' AND l.collected_at IS NOT NULL AND l.parent_lot_id IS NULL
  AND l.status <> 'voided' {{metal}}
GROUP BY l.metal, l.category, l.channel
"""  # noqa: S608

# What the facilities accepted at receipts: received minus refused, as weighed.
_RECEIVED = f"""
SELECT l.metal, l.kind, coalesce(l.category, l.product_form) AS category, l.channel,
       count(*) AS lots, sum(i.received_g - i.refused_g) AS grams
FROM shipment s
JOIN shipment_item i ON i.shipment_id = s.id
JOIN lot l ON l.id = i.lot_id
WHERE s.to_facility_id IN ({_FACILITIES})
  AND s.received_at >= :start AND s.received_at < :end
  AND i.received_g IS NOT NULL AND i.received_g > i.refused_g {{metal}}
GROUP BY l.metal, l.kind, coalesce(l.category, l.product_form), l.channel
"""  # noqa: S608

_CERTIFICATES = """
SELECT c.metal, count(*) AS certificates, sum(c.mass_g) AS mass_g,
       sum(c.claimed_post_consumer_g) AS post_g, sum(c.claimed_pre_consumer_g) AS pre_g
FROM certificate c
WHERE c.recipient_enterprise_id = :enterprise
  AND c.issued_at >= :start AND c.issued_at < :end
  AND c.status = 'valid' {metal}
GROUP BY c.metal
"""

# Gram-kilometres per item: a shipment carrying both metals is split between them by mass.
_TRANSPORT = f"""
SELECT l.metal, s.vehicle_energy,
       count(DISTINCT s.id) AS shipments,
       count(DISTINCT s.id) FILTER (WHERE s.distance_km IS NULL) AS without_distance,
       sum(i.dispatched_g) AS grams,
       coalesce(sum(i.dispatched_g) FILTER (WHERE s.distance_km IS NULL), 0) AS grams_nd,
       coalesce(sum(i.dispatched_g * s.distance_km), 0) AS gram_km
FROM shipment s
JOIN shipment_item i ON i.shipment_id = s.id
JOIN lot l ON l.id = i.lot_id
WHERE s.from_facility_id IN ({_FACILITIES})
  AND s.dispatched_at >= :start AND s.dispatched_at < :end
  AND s.status <> 'cancelled' {{metal}}
GROUP BY l.metal, s.vehicle_energy
"""  # noqa: S608


def statement_queries(metal: Metal | None) -> dict[str, Any]:
    """The statement's SQL, with the metal filter in place (also used to EXPLAIN them)."""

    def sql(template: str, alias: str) -> Any:
        fragment = f"AND {alias}.metal = :metal" if metal is not None else ""
        return text(template.format(metal=fragment))

    return {
        "smelting": sql(_SMELTING, "t"),
        "pretreatment": sql(_PRETREATMENT, "t"),
        "collection": sql(_COLLECTION, "l"),
        "received": sql(_RECEIVED, "l"),
        "certificates": sql(_CERTIFICATES, "c"),
        "transport": sql(_TRANSPORT, "l"),
    }


def _int(value: Any) -> int:
    return int(value or 0)


def _factor(factors: Mapping[str, EmissionFactor], key: str | None) -> FactorUsed | None:
    found = factors.get(key) if key is not None else None
    return None if found is None else FactorUsed(found.key, found.value, found.unit)


async def statement(
    session: AsyncSession,
    actor: Actor,
    enterprise_id: uuid.UUID,
    *,
    period_from: datetime | None = None,
    period_to: datetime | None = None,
    metal: Metal | None = None,
    factor_set_version: int | None = None,
) -> Statement:
    """The statement of an enterprise over [from, to), for one metal or both. Without a period,
    the last 12 months up to now; with only `to`, the 12 months before it; with only `from`,
    from then to now. Visible to the enterprise's members, authorities governing its home region
    or one of its facilities, and platform admins; to anyone else it does not exist (404)."""
    enterprise = await get_enterprise(session, actor, enterprise_id)
    now = utcnow()
    for name, moment in (("from", period_from), ("to", period_to)):
        if moment is not None and out_of_range(moment):
            raise InvalidPeriod(
                f"{name} must lie between {EARLIEST.date()} and {LATEST.date()}",
                errors=[{"pointer": f"/{name}", "detail": "out of range", "location": "query"}],
            )
    end = period_to or now
    start = period_from or twelve_months_before(end)
    if start >= end:
        raise InvalidPeriod(
            f"the period [{start.isoformat()}, {end.isoformat()}) is empty: from must be before to",
            errors=[{"pointer": "/from", "detail": "must be before to", "location": "query"}],
        )
    factor_set, factor_rows = await emission_factors(
        session, factor_set_version, field="factor_set"
    )
    factors = {f.key: f for f in factor_rows}
    metals = [metal] if metal is not None else list(Metal)
    sections = {
        m: MetalStatement(
            m, Smelting(), Collection(), Handling(), Processing(), Transport(factor_set.version)
        )
        for m in metals
    }
    params: dict[str, Any] = {"enterprise": enterprise.id, "start": start, "end": end}
    if metal is not None:
        params["metal"] = metal.value
    queries = statement_queries(metal)

    async def rows(name: str) -> Sequence[Any]:
        return (await session.execute(queries[name], params)).all()

    for row in await rows("smelting"):
        smelting = sections[Metal(row.metal)].smelting
        smelting.runs = _int(row.runs)
        smelting.primary_input_g = _int(row.primary_g)
        smelting.scrap_input_g = _int(row.scrap_g)
        smelting.post_consumer_g = _int(row.post_g)
        smelting.pre_consumer_g = _int(row.pre_g)
        smelting.remelted_product_g = _int(row.remelted_g)
        smelting.product_output_g = _int(row.product_g)
    for row in await rows("pretreatment"):
        sections[Metal(row.metal)].handling.pretreatment.append(
            Pretreatment(
                row.process, _int(row.runs), _int(row.input_g), _int(row.output_g), _int(row.loss_g)
            )
        )
    for row in await rows("collection"):
        sections[Metal(row.metal)].collection.tallies.append(
            Tally(row.category, row.channel, _int(row.lots), _int(row.grams))
        )
    for row in await rows("received"):
        tally = Tally(row.category, row.channel, _int(row.lots), _int(row.grams))
        section = sections[Metal(row.metal)]
        if row.kind == LotKind.product:
            section.processing.products_received.append(tally)
        else:
            section.handling.received.append(tally)
    for row in await rows("certificates"):
        processing = sections[Metal(row.metal)].processing
        processing.certificates = _int(row.certificates)
        processing.certified_mass_g = _int(row.mass_g)
        processing.certified_post_consumer_g = _int(row.post_g)
        processing.certified_pre_consumer_g = _int(row.pre_g)
    for row in await rows("transport"):
        energy = row.vehicle_energy
        factor = _factor(factors, FREIGHT_FACTOR.get(energy) if energy else None)
        gram_km = Decimal(row.gram_km)
        sections[Metal(row.metal)].transport.hauls.append(
            Haul(
                vehicle_energy=energy,
                shipments=_int(row.shipments),
                shipments_without_distance=_int(row.without_distance),
                grams=_int(row.grams),
                grams_without_distance=_int(row.grams_nd),
                gram_km=gram_km,
                factor_set_version=factor_set.version,
                factor=factor,
                kgco2e=None if factor is None else transport_emissions_kg(gram_km, factor.value),
            )
        )

    for section in sections.values():
        _finish(section, factors, factor_set.version)
    return Statement(enterprise, start, end, factor_set, list(sections.values()), now)


def _finish(section: MetalStatement, factors: Mapping[str, EmissionFactor], version: int) -> None:
    """Shares and avoided emissions, and a stable order of the lists."""
    smelting = section.smelting
    smelting.recycled_percent = share_percent(smelting.recycled_g, smelting.metal_input_g)
    primary = _factor(factors, PRIMARY_FACTOR[section.metal])
    recycled = _factor(factors, RECYCLED_FACTOR[section.metal])
    smelting.avoided = Avoided(
        kgco2e=(
            avoided_emissions_kg(smelting.recycled_g, primary.value, recycled.value)
            if primary is not None and recycled is not None
            else None
        ),
        factor_set_version=version,
        primary=primary,
        recycled=recycled,
    )
    processing = section.processing
    processing.certified_percent = share_percent(
        processing.certified_recycled_g, processing.product_received_g
    )

    def by_name(tally: Tally) -> tuple[str, str]:
        return (tally.category or "~", tally.channel or "~")  # unknowns last

    section.collection.tallies.sort(key=by_name)
    section.handling.received.sort(key=by_name)
    section.handling.pretreatment.sort(key=lambda p: p.process)
    processing.products_received.sort(key=by_name)
    section.transport.hauls.sort(key=lambda h: h.vehicle_energy or "~")
