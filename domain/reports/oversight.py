"""Oversight for regulators (DESIGN §2.9): flows between regions, the plan's indicators and
anomalies, always within the authority's jurisdiction (a region prefix; everything for a platform
admin). Figures are sums of integer grams in SQL; ratios are computed from them exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import Actor
from domain.base import utcnow
from domain.errors import NotFound
from domain.reference.rules import GUIZHOU

DIRECT_ALLOYING_TARGET = Decimal("90")  # percent of molten aluminium, by 2025 (the plan, §3.1)
CLEAN_VEHICLES = ("electric", "hydrogen")  # new-energy vehicles; LNG and hybrids are not counted
TRANSIT_TOO_LONG = timedelta(days=7)
DISCREPANCY_OVERDUE = timedelta(days=15)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is asking about what: the jurisdiction prefix ('' = everything), the period, a metal."""

    jurisdiction: str
    period_from: datetime
    period_to: datetime
    metal: str | None = None

    def params(self, **extra: Any) -> dict[str, Any]:
        return {
            "j": self.jurisdiction + "%",
            "from": self.period_from,
            "to": self.period_to,
            "metal": self.metal,
            **extra,
        }


def jurisdiction_of(actor: Actor) -> str:
    """Reports are for authorities (and platform admins); to anyone else they do not exist."""
    if actor.is_platform_admin:
        return ""
    if actor.jurisdiction is None:
        raise NotFound("reports are for authorities")
    return actor.jurisdiction


def share(part: int, whole: int) -> Decimal | None:
    """Percent with two decimals; None when there is nothing to share."""
    if whole == 0:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01"))


async def _rows(session: AsyncSession, sql: str, params: dict[str, Any]) -> list[Any]:
    return list((await session.execute(text(sql), params)).all())


# --- flows -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    from_code: str
    to_code: str
    metal: str
    shipments: int
    dispatched_g: int
    accepted_g: int  # received less refused, on shipments received so far


@dataclass(frozen=True, slots=True)
class Flows:
    level: str
    flows: list[Flow]
    # Per metal: grams dispatched within the province, into it, and out of it.
    within_g: dict[str, int] = field(default_factory=dict)
    into_g: dict[str, int] = field(default_factory=dict)
    out_of_g: dict[str, int] = field(default_factory=dict)


_FLOWS = """
SELECT left(s.from_region, CASE WHEN s.from_region LIKE '52%' THEN :digits ELSE 2 END),
       left(s.to_region, CASE WHEN s.to_region LIKE '52%' THEN :digits ELSE 2 END),
       l.metal, count(DISTINCT s.id), sum(i.dispatched_g),
       coalesce(sum(i.received_g - coalesce(i.refused_g, 0)), 0)
FROM shipment s JOIN shipment_item i ON i.shipment_id = s.id JOIN lot l ON l.id = i.lot_id
WHERE s.status <> 'cancelled' AND s.dispatched_at >= :from AND s.dispatched_at < :to
  AND (s.from_region LIKE :j OR s.to_region LIKE :j)
  AND (CAST(:metal AS text) IS NULL OR l.metal = :metal)
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


async def flows(session: AsyncSession, scope: Scope, level: str) -> Flows:
    """Kilograms and shipments between regions: prefectures inside Guizhou (or the province as a
    whole at `province` level), provinces outside it. Only flows that touch the jurisdiction."""
    digits = 4 if level == "prefecture" else 2
    rows = await _rows(session, _FLOWS, scope.params(digits=digits))
    found = [Flow(a, b, m, int(n), int(d), int(r)) for a, b, m, n, d, r in rows]
    result = Flows(level, found)
    for flow in found:
        inside = (flow.from_code.startswith(GUIZHOU), flow.to_code.startswith(GUIZHOU))
        bucket = {
            (True, True): result.within_g,
            (False, True): result.into_g,
            (True, False): result.out_of_g,
        }.get(inside)
        if bucket is not None:
            bucket[flow.metal] = bucket.get(flow.metal, 0) + flow.dispatched_g
    return result


# --- indicators --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Indicator:
    key: str
    value: Decimal | None  # percent, or the unit named
    unit: str
    target: Decimal | None
    target_note: str
    numerator: Decimal | int | None = None
    denominator: Decimal | int | None = None
    detail: list[dict[str, Any]] = field(default_factory=list)

    @property
    def met(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.value >= self.target


# Products made in the period, with the mass they had when made (later runs may take from them).
_PRODUCTS = """
SELECT l.metal, l.product_form, l.destination_use, l.post_consumer_g, l.pre_consumer_g, l.net_g,
       coalesce((SELECT max(src.of_g) FROM lot_source src WHERE src.lot_id = l.id), l.net_g)
FROM transformation t
JOIN transformation_output o ON o.transformation_id = t.id
JOIN lot l ON l.id = o.lot_id AND l.kind = 'product'
WHERE t.status = 'recorded' AND t.ended_at >= :from AND t.ended_at < :to
  AND t.region_code LIKE :j AND (CAST(:metal AS text) IS NULL OR l.metal = :metal)
"""

_TRANSPORT = """
SELECT s.vehicle_energy, count(*), sum(s.dispatched_g::numeric * s.distance_km) / 1e6,
       count(*) FILTER (WHERE s.distance_km IS NULL)
FROM shipment s
WHERE s.status <> 'cancelled' AND s.dispatched_at >= :from AND s.dispatched_at < :to
  AND (s.from_region LIKE :j OR s.to_region LIKE :j)
GROUP BY 1
"""

_IMPORTS = """
SELECT coalesce(sum(l.net_g) FILTER (WHERE l.origin = 'import'), 0),
       coalesce(sum(l.net_g), 0),
       count(*) FILTER (WHERE l.origin = 'import'),
       count(*) FILTER (WHERE l.origin = 'import' AND l.conformity_standard IS NOT NULL)
FROM lot l JOIN facility f ON f.id = l.registered_facility_id
WHERE l.collected_at IS NOT NULL AND l.registered_at >= :from AND l.registered_at < :to
  AND f.region_code LIKE :j AND (CAST(:metal AS text) IS NULL OR l.metal = :metal)
"""

_PRETREATMENT = """
WITH prefecture AS (
    -- Guizhou's prefectures within the jurisdiction, or the one a county authority sits in
    SELECT code, name_en FROM ref_region
    WHERE length(code) = 4 AND code LIKE '52%' AND (code LIKE :j OR :j LIKE code || '%')
), centre AS (
    SELECT left(f.region_code, 4) AS code, count(*) AS centres,
           coalesce(sum(f.annual_capacity_g), 0) AS capacity_g
    FROM facility f
    WHERE f.kind = 'pretreatment_center' AND f.status = 'active' AND f.region_code LIKE :j
    GROUP BY 1
), handled AS (
    SELECT left(t.region_code, 4) AS code, sum(t.input_g) AS input_g
    FROM transformation t JOIN facility f ON f.id = t.facility_id
    WHERE f.kind = 'pretreatment_center' AND t.status = 'recorded'
      AND t.ended_at >= :from AND t.ended_at < :to AND t.region_code LIKE :j
      AND (CAST(:metal AS text) IS NULL OR t.metal = :metal)
    GROUP BY 1
)
SELECT p.code, p.name_en, coalesce(c.centres, 0), coalesce(c.capacity_g, 0),
       coalesce(h.input_g, 0)
FROM prefecture p LEFT JOIN centre c USING (code) LEFT JOIN handled h USING (code)
ORDER BY p.code
"""

_ENERGY = """
SELECT t.process, t.metal, count(*), count(t.electricity_kwh),
       coalesce(sum(t.electricity_kwh), 0),
       coalesce(sum(t.output_g) FILTER (WHERE t.electricity_kwh IS NOT NULL), 0)
FROM transformation t
WHERE t.status = 'recorded' AND t.ended_at >= :from AND t.ended_at < :to
  AND t.region_code LIKE :j AND (CAST(:metal AS text) IS NULL OR t.metal = :metal)
GROUP BY 1, 2 ORDER BY 1, 2
"""

NO_TARGET = "the plan sets no figure"


async def indicators(session: AsyncSession, scope: Scope) -> list[Indicator]:
    params = scope.params()
    products = await _rows(session, _PRODUCTS, params)
    result = [_direct_alloying(products), *_recycled_share(products)]
    result.append(_clean_transport(await _rows(session, _TRANSPORT, params)))
    result += _imports(*(await _rows(session, _IMPORTS, params))[0])
    result.append(_pretreatment(await _rows(session, _PRETREATMENT, params), scope))
    result.append(_energy(await _rows(session, _ENERGY, params)))
    return result


def _direct_alloying(products: list[Any]) -> Indicator:
    molten = [p for p in products if p[0] == "aluminium" and p[1] == "molten"]
    direct = sum(p[6] for p in molten if p[2] == "direct_alloying")
    total = sum(p[6] for p in molten)
    return Indicator(
        "direct_alloying_rate",
        share(direct, total),
        "percent of molten aluminium made, by mass",
        DIRECT_ALLOYING_TARGET,
        "at least 90% of molten aluminium directly alloyed by 2025",
        direct,
        total,
    )


def _recycled_share(products: list[Any]) -> list[Indicator]:
    """Recycled share of the metal made, per metal (each product at the mass it was made with;
    its composition's proportions do not change when part of it is used later)."""
    result = []
    for metal in sorted({p[0] for p in products}):
        made = [p for p in products if p[0] == metal]
        total = sum(p[6] for p in made)
        recycled = sum(Decimal(p[3] + p[4]) * p[6] / p[5] for p in made)
        result.append(
            Indicator(
                f"recycled_share_{metal}",
                share(int(recycled), total),
                f"percent of {metal} products made, by mass",
                None,
                NO_TARGET + "; it asks to raise the share of recycled metal",
                int(recycled),
                total,
            )
        )
    return result


def _clean_transport(rows: list[Any]) -> Indicator:
    tkm = {energy: Decimal(t or 0) for energy, _, t, _ in rows}
    clean = sum((tkm.get(e, Decimal(0)) for e in CLEAN_VEHICLES), Decimal(0))
    total = sum(tkm.values(), Decimal(0))
    return Indicator(
        "clean_transport_share",
        None if total == 0 else (clean * 100 / total).quantize(Decimal("0.01")),
        "percent of tonne-kilometres by new-energy vehicles (electric, hydrogen)",
        None,
        NO_TARGET + "; it asks for a clean transport system",
        clean.quantize(Decimal("0.001")),
        total.quantize(Decimal("0.001")),
        [
            {
                "vehicle_energy": energy or "unstated",
                "shipments": n,
                "tonne_km": Decimal(t or 0).quantize(Decimal("0.001")),
                "without_distance": missing,
            }
            for energy, n, t, missing in rows
        ],
    )


def _imports(import_g: int, total_g: int, imports: int, conforming: int) -> list[Indicator]:
    return [
        Indicator(
            "import_share",
            share(import_g, total_g),
            "percent of scrap registered, by mass",
            None,
            NO_TARGET + "; it encourages imports of high-quality recycled aluminium",
            import_g,
            total_g,
        ),
        Indicator(
            "import_conformity",
            share(conforming, imports),
            "percent of imported lots stating a conformity standard",
            Decimal(100),
            "imported recycled raw material must meet its standard (GB/T 38472 and kin)",
            conforming,
            imports,
        ),
    ]


def _pretreatment(rows: list[Any], scope: Scope) -> Indicator:
    days = Decimal((scope.period_to - scope.period_from).total_seconds()) / 86400
    detail = []
    for code, name, centres, capacity_g, input_g in rows:
        period_capacity = Decimal(capacity_g) * days / 365
        detail.append(
            {
                "prefecture": code,
                "name": name,
                "centres": centres,
                "annual_capacity_t": Decimal(capacity_g) / 1_000_000,
                "handled_kg": Decimal(input_g) / 1000,
                "utilisation_percent": None
                if period_capacity == 0
                else (Decimal(input_g) * 100 / period_capacity).quantize(Decimal("0.01")),
            }
        )
    covered = sum(1 for d in detail if d["centres"])
    return Indicator(
        "pretreatment_coverage",
        share(covered, len(detail)),
        "percent of prefectures with an active pretreatment centre",
        None,
        NO_TARGET + "; it asks for regional pretreatment and distribution centres",
        covered,
        len(detail),
        detail,
    )


def _energy(rows: list[Any]) -> Indicator:
    detail = [
        {
            "process": process,
            "metal": metal,
            "runs": runs,
            "runs_reporting": reporting,
            "kwh_per_tonne": None
            if output_g == 0
            else (Decimal(kwh) * 1_000_000 / output_g).quantize(Decimal("0.1")),
        }
        for process, metal, runs, reporting, kwh, output_g in rows
    ]
    runs = sum(d["runs"] for d in detail)
    reporting = sum(d["runs_reporting"] for d in detail)
    return Indicator(
        "energy_reporting",
        share(reporting, runs),
        "percent of runs reporting electricity (intensity per process in detail)",
        None,
        NO_TARGET + " for remelting; electrolytic aluminium benchmarks apply to primary metal",
        reporting,
        runs,
        detail,
    )


# --- anomalies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    severity: str  # high, medium, low
    subject_type: str
    subject_id: str
    region_code: str
    at: datetime
    detail: str


_DISCREPANCIES = """
SELECT d.id, d.status, d.metal, d.difference_g, d.tolerance_g, d.opened_at, d.to_region
FROM discrepancy d
WHERE d.opened_at >= :from AND d.opened_at < :to
  AND (d.from_region LIKE :j OR d.to_region LIKE :j)
  AND (CAST(:metal AS text) IS NULL OR d.metal = :metal)
ORDER BY d.opened_at LIMIT :limit
"""

_IN_TRANSIT = """
SELECT s.id, s.dispatched_at, s.from_region, s.to_region, s.dispatched_g
FROM shipment s
WHERE s.status = 'dispatched' AND s.dispatched_at < :stale
  AND (s.from_region LIKE :j OR s.to_region LIKE :j)
ORDER BY s.dispatched_at LIMIT :limit
"""

_LOSSES = """
SELECT t.id, t.process, t.metal, t.loss_g, t.input_g + t.primary_g, t.ended_at, t.region_code
FROM transformation t
WHERE t.loss_flagged AND t.status = 'recorded' AND t.ended_at >= :from AND t.ended_at < :to
  AND t.region_code LIKE :j AND (CAST(:metal AS text) IS NULL OR t.metal = :metal)
ORDER BY t.ended_at LIMIT :limit
"""

# What a facility took in over the period (received and accepted, registered from sellers),
# against its annual capacity pro rata.
_CAPACITY = """
WITH intake AS (
    SELECT s.to_facility_id AS facility_id,
           sum(i.received_g - coalesce(i.refused_g, 0)) AS grams
    FROM shipment s JOIN shipment_item i ON i.shipment_id = s.id
    WHERE s.received_at >= :from AND s.received_at < :to
      AND s.to_region LIKE :j
    GROUP BY 1
    UNION ALL
    SELECT l.registered_facility_id, sum(l.net_g)
    FROM lot l JOIN facility f ON f.id = l.registered_facility_id
    WHERE l.collected_at IS NOT NULL AND l.registered_at >= :from AND l.registered_at < :to
      AND f.region_code LIKE :j
    GROUP BY 1
)
SELECT f.id, f.name, f.region_code, f.annual_capacity_g, sum(intake.grams)
FROM intake JOIN facility f ON f.id = intake.facility_id
WHERE f.annual_capacity_g > 0
GROUP BY f.id
HAVING sum(intake.grams) * 365 > f.annual_capacity_g * :days
LIMIT :limit
"""

_TICKETS = """
SELECT s.to_facility_id, s.weighbridge_ticket_no, count(*), min(s.received_at), min(s.to_region)
FROM shipment s
WHERE s.weighbridge_ticket_no IS NOT NULL AND s.received_at >= :from AND s.received_at < :to
  AND s.to_region LIKE :j
GROUP BY 1, 2 HAVING count(*) > 1 LIMIT :limit
"""

# Tickets a weighbridge posted with a number already recorded at its facility (refused, kept).
_REFUSED_TICKETS = """
SELECT d.ticket_id, d.ticket_no, d.net_g, t.net_g, d.attempted_at, d.region_code
FROM weighbridge_duplicate d JOIN weighbridge_ticket t ON t.id = d.ticket_id
WHERE d.attempted_at >= :from AND d.attempted_at < :to AND d.region_code LIKE :j
ORDER BY d.attempted_at LIMIT :limit
"""

_SUSPENDED = """
WITH suspended AS (
    SELECT en.id, max(e.occurred_at) AS since, min(en.region_code) AS region_code
    FROM enterprise en
    JOIN event e ON e.type = 'enterprise.suspended' AND e.subject_id = en.id::text
    WHERE en.status = 'suspended'
    GROUP BY en.id
)
SELECT s.id, s.region_code, a.type, a.occurred_at, a.id
FROM suspended s
CROSS JOIN LATERAL (
    SELECT e.type, e.occurred_at, e.id FROM event e
    WHERE e.enterprise_ids @> ARRAY[s.id] AND e.occurred_at > s.since
      AND e.type NOT IN ('enterprise.suspended', 'enterprise.reinstated', 'enterprise.updated')
      AND e.occurred_at >= :from AND e.occurred_at < :to
    ORDER BY e.occurred_at LIMIT :limit
) a
WHERE EXISTS (
    SELECT 1 FROM facility f WHERE f.enterprise_id = s.id AND f.region_code LIKE :j
) OR s.region_code LIKE :j
LIMIT :limit
"""


def _kg(grams: int) -> str:
    return f"{Decimal(grams) / 1000} kg"


async def anomalies(session: AsyncSession, scope: Scope, *, limit: int = 500) -> list[Anomaly]:
    """Each kind of anomaly, at most `limit` of each, oldest first."""
    now = utcnow()
    days = Decimal((scope.period_to - scope.period_from).total_seconds()) / 86400
    params = scope.params(limit=limit, stale=now - TRANSIT_TOO_LONG, days=days)
    found: list[Anomaly] = []
    for d_id, status, metal, diff, tolerance, opened, region in await _rows(
        session, _DISCREPANCIES, params
    ):
        overdue = status in ("open", "disputed") and now - opened > DISCREPANCY_OVERDUE
        found.append(
            Anomaly(
                "weight_discrepancy",
                "high" if overdue or abs(diff) > 5 * tolerance else "medium",
                "discrepancy",
                str(d_id),
                region,
                opened,
                f"{metal}: {_kg(diff)} missing at receipt against a tolerance of"
                f" {_kg(tolerance)}; {status}" + (", unresolved after 15 days" if overdue else ""),
            )
        )
    for s_id, dispatched_at, source, target, grams in await _rows(session, _IN_TRANSIT, params):
        waited = (now - dispatched_at).days
        found.append(
            Anomaly(
                "transit_too_long",
                "high" if waited > 30 else "medium",
                "shipment",
                str(s_id),
                target,
                dispatched_at,
                f"{_kg(grams)} dispatched from {source} to {target} {waited} days ago,"
                " not yet received",
            )
        )
    for t_id, process, metal, loss, total, ended, region in await _rows(session, _LOSSES, params):
        found.append(
            Anomaly(
                "loss_above_threshold",
                "medium",
                "transformation",
                str(t_id),
                region,
                ended,
                f"{process} of {metal} lost {share(loss, total)}% ({_kg(loss)} of {_kg(total)}),"
                " above the process threshold",
            )
        )
    for f_id, name, region, capacity, intake in await _rows(session, _CAPACITY, params):
        allowed = Decimal(capacity) * days / 365
        ratio = Decimal(intake) * 100 / allowed
        found.append(
            Anomaly(
                "over_capacity",
                "high" if ratio > 120 else "medium",
                "facility",
                str(f_id),
                region,
                scope.period_to,
                f"{name} took in {_kg(intake)} in the period, {ratio:.1f}% of its annual"
                " capacity pro rata",
            )
        )
    for f_id, ticket, count, first, region in await _rows(session, _TICKETS, params):
        found.append(
            Anomaly(
                "duplicate_weighbridge_ticket",
                "high",
                "facility",
                str(f_id),
                region,
                first,
                f"weighbridge ticket {ticket} was used on {count} receipts",
            )
        )
    for t_id, ticket, net, first_net, at, region in await _rows(session, _REFUSED_TICKETS, params):
        found.append(
            Anomaly(
                "duplicate_weighbridge_ticket",
                "high" if net != first_net else "medium",
                "weighbridge_ticket",
                str(t_id),
                region,
                at,
                f"weighbridge ticket {ticket} was posted again with net {_kg(net)}"
                f" (recorded: {_kg(first_net)}); the repeat was refused",
            )
        )
    for e_id, region, event_type, at, event_id in await _rows(session, _SUSPENDED, params):
        found.append(
            Anomaly(
                "suspended_enterprise_activity",
                "high",
                "enterprise",
                str(e_id),
                region,
                at,
                f"{event_type} (event {event_id}) touched the enterprise while it is suspended",
            )
        )
    return found
