"""Industrial-cloud report use cases: the monthly report of an enterprise (built on its
statement, DESIGN §2.6-2.7, plus the energy its runs reported), and the bookkeeping of pushes:
claiming a report for sending, each attempt, the outcome with its event, and the worker's
schedule of months. Sending itself is in `integrations.industrial_cloud`."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import SYSTEM
from domain.audit import service as audit
from domain.errors import InvalidInput
from domain.ids import new_id
from domain.industrial_cloud.models import ReportPush, ReportPushAttempt, ReportSchedule
from domain.industrial_cloud.rules import (
    SCHEMA,
    SCHEMA_VERSION,
    Energy,
    Period,
    PushStatus,
    Trigger,
    idempotency_key,
    kg,
    number,
    parse_period,
    total,
)
from domain.reference.models import EmissionFactor
from domain.reference.rules import GUIZHOU
from domain.reference.service import emission_factors
from domain.registry.models import Enterprise
from domain.registry.service import get_enterprise
from domain.reports.service import MetalStatement, Statement, statement

KG_CO2 = Decimal("0.001")
GRID_IN_GUIZHOU = "grid_guizhou"
GRID_ELSEWHERE = "grid_china_average"
ERROR_LENGTH = 1000


class InvalidMonth(InvalidInput):
    code = "invalid_period"
    title = "Not a month"


def month(written: str) -> Period:
    period = parse_period(written)
    if period is None:
        raise InvalidMonth(f"period must be a month written YYYY-MM, like 2026-10; got {written!r}")
    return period


# --- the report -------------------------------------------------------------------------------

# Energy of the enterprise's recorded runs in the month, per metal; electricity split by whether
# the facility is in Guizhou (its grid factor) or elsewhere (the national average).
_ENERGY = text(f"""
SELECT t.metal, count(*) AS runs,
       count(*) FILTER (WHERE t.electricity_kwh IS NOT NULL OR t.natural_gas_m3 IS NOT NULL
                        OR t.other_fuel_kgce IS NOT NULL) AS reporting,
       coalesce(sum(t.electricity_kwh), 0) AS kwh,
       coalesce(sum(t.electricity_kwh) FILTER (WHERE t.region_code LIKE '{GUIZHOU}%'), 0)
           AS kwh_guizhou,
       coalesce(sum(t.natural_gas_m3), 0) AS gas_m3,
       coalesce(sum(t.other_fuel_kgce), 0) AS fuel_kgce
FROM transformation t
WHERE t.facility_id IN (SELECT f.id FROM facility f WHERE f.enterprise_id = :enterprise)
  AND t.ended_at >= :start AND t.ended_at < :end AND t.status = 'recorded'
GROUP BY t.metal
""")  # noqa: S608 - a constant


def _kgco2(kwh: Decimal, factor: EmissionFactor | None) -> Decimal | None:
    if factor is None:
        return None
    return (kwh * factor.value).quantize(KG_CO2, rounding=ROUND_HALF_EVEN)


async def _energy(
    session: AsyncSession,
    enterprise_id: uuid.UUID,
    period: Period,
    factors: Mapping[str, EmissionFactor],
) -> dict[str, Energy]:
    rows = await session.execute(
        _ENERGY, {"enterprise": enterprise_id, "start": period.start, "end": period.end}
    )
    found = {}
    for row in rows:
        kwh, in_guizhou = Decimal(row.kwh), Decimal(row.kwh_guizhou)
        found[row.metal] = Energy(
            runs=int(row.runs),
            runs_reporting=int(row.reporting),
            electricity_kwh=kwh,
            natural_gas_m3=Decimal(row.gas_m3),
            other_fuel_kgce=Decimal(row.fuel_kgce),
            electricity_kgco2=total(
                [
                    _kgco2(in_guizhou, factors.get(GRID_IN_GUIZHOU)),
                    _kgco2(kwh - in_guizhou, factors.get(GRID_ELSEWHERE)),
                ]
            ),
        )
    return found


def _metal(section: MetalStatement, energy: Energy) -> dict[str, Any]:
    smelting, collection, handling = section.smelting, section.collection, section.handling
    by_channel = {"online": 0, "offline": 0}
    for tally in collection.tallies:
        if tally.channel in by_channel:
            by_channel[tally.channel] += tally.grams
    avoided = smelting.avoided.kgco2e if smelting.avoided is not None else None
    transport = section.transport
    return {
        "metal": section.metal.value,
        "collected_kg": kg(collection.grams),
        "collected_lots": collection.lots,
        "collected_online_kg": kg(by_channel["online"]),
        "collected_offline_kg": kg(by_channel["offline"]),
        "received_kg": kg(handling.received_g),
        "processed_kg": kg(handling.pretreatment_input_g + smelting.scrap_input_g),
        "pretreated_kg": kg(handling.pretreatment_input_g),
        "melted_scrap_kg": kg(smelting.scrap_input_g),
        "primary_input_kg": kg(smelting.primary_input_g),
        "recycled_input_kg": kg(smelting.recycled_g),
        "recycled_post_consumer_kg": kg(smelting.post_consumer_g),
        "recycled_pre_consumer_kg": kg(smelting.pre_consumer_g),
        "produced_kg": kg(smelting.product_output_g),
        "recycled_ratio_percent": number(smelting.recycled_percent),
        "energy": energy.as_json(),
        "emissions": {
            "avoided_kgco2e": number(avoided),
            "transport_kgco2e": float(transport.kgco2e),
            "transport_tonne_km": float(transport.tonne_km),
            "transport_shipments_without_factor": transport.shipments_without_factor,
            "electricity_kgco2": number(energy.electricity_kgco2),
        },
    }


def report_document(
    found: Statement,
    energy: Mapping[str, Energy],
    period: Period,
    generated_at: datetime,
) -> dict[str, Any]:
    """The report as pushed (README "Industrial-cloud report" documents every field)."""
    enterprise = found.enterprise
    metals = [_metal(m, energy.get(m.metal.value, Energy())) for m in found.metals]
    everything = [energy.get(m.metal.value, Energy()) for m in found.metals]
    avoided = [m.smelting.avoided.kgco2e if m.smelting.avoided else None for m in found.metals]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "report_id": idempotency_key(enterprise.id, period.month),
        "generated_at": generated_at.isoformat(),
        "enterprise": {
            "id": str(enterprise.id),
            "name": enterprise.name,
            "uscc": enterprise.uscc,
            "region_code": enterprise.region_code,
            "roles": sorted(enterprise.roles),
            "status": enterprise.status,
        },
        "period": {
            "month": period.month,
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
        },
        "emission_factor_set_version": found.factor_set.version,
        "metals": metals,
        "totals": {
            "energy": {
                "electricity_kwh": float(sum((e.electricity_kwh for e in everything), Decimal(0))),
                "natural_gas_m3": float(sum((e.natural_gas_m3 for e in everything), Decimal(0))),
                "other_fuel_kgce": float(sum((e.other_fuel_kgce for e in everything), Decimal(0))),
            },
            "emissions": {
                "avoided_kgco2e": number(total(avoided)),
                "transport_kgco2e": float(
                    sum((m.transport.kgco2e for m in found.metals), Decimal(0))
                ),
                "electricity_kgco2": number(total([e.electricity_kgco2 for e in everything])),
            },
        },
    }


async def enterprise_report(
    session: AsyncSession, enterprise_id: uuid.UUID, period: Period, generated_at: datetime
) -> dict[str, Any]:
    """The month's report of an enterprise (404 for an unknown one)."""
    found = await statement(
        session, SYSTEM, enterprise_id, period_from=period.start, period_to=period.end
    )
    _, factor_rows = await emission_factors(session, found.factor_set.version)
    energy = await _energy(session, enterprise_id, period, {f.key: f for f in factor_rows})
    return report_document(found, energy, period, generated_at)


async def enterprises_to_report(session: AsyncSession, period: Period) -> list[uuid.UUID]:
    """Every enterprise registered before the month ended, suspended ones too (their activity
    is what a regulator wants to see), in id order."""
    ids = await session.scalars(
        select(col(Enterprise.id))
        .where(col(Enterprise.created_at) < period.end)
        .order_by(col(Enterprise.id))
    )
    return list(ids)


# --- pushes -----------------------------------------------------------------------------------


async def claim_push(
    session: AsyncSession,
    enterprise_id: uuid.UUID,
    period: Period,
    *,
    trigger: Trigger,
    now: datetime,
    lease: timedelta,
) -> ReportPush | None:
    """Take the report of this enterprise and month for sending until `now + lease`. None when
    it was delivered already (a report is delivered once) or another sender holds it."""
    await get_enterprise(session, SYSTEM, enterprise_id)
    await session.execute(
        insert(ReportPush)
        .values(
            id=new_id(),
            enterprise_id=enterprise_id,
            period=period.month,
            idempotency_key=idempotency_key(enterprise_id, period.month),
            status=PushStatus.pending.value,
            trigger=trigger.value,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["enterprise_id", "period"])
    )
    claimed: ReportPush | None = await session.scalar(
        update(ReportPush)
        .where(
            col(ReportPush.enterprise_id) == enterprise_id,
            col(ReportPush.period) == period.month,
            col(ReportPush.status) != PushStatus.delivered.value,
            or_(
                col(ReportPush.status) != PushStatus.sending.value,
                col(ReportPush.claimed_until) < now,
            ),
        )
        .values(status=PushStatus.sending.value, trigger=trigger.value, claimed_until=now + lease)
        .returning(ReportPush)
        .execution_options(populate_existing=True)
    )
    return claimed


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def keep_document(
    session: AsyncSession, push: ReportPush, document: dict[str, Any], body: bytes
) -> None:
    """The document about to be sent, and the hash of its exact bytes."""
    push.document = document
    push.schema_version = str(document["schema_version"])
    push.body_sha256 = body_sha256(body)
    await session.flush()


async def record_attempt(
    session: AsyncSession,
    push_id: uuid.UUID,
    *,
    at: datetime,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    lease: timedelta,
) -> ReportPush:
    """One request and what came of it; the sender's claim is extended by `lease`."""
    push = await session.get_one(ReportPush, push_id, with_for_update=True)
    push.attempts += 1
    push.last_status_code = status_code
    push.last_error = None if error is None else error[:ERROR_LENGTH]
    push.last_attempt_at = at
    push.claimed_until = at + lease
    session.add(
        ReportPushAttempt(
            push_id=push.id,
            number=push.attempts,
            attempted_at=at,
            status_code=status_code,
            error=push.last_error,
            duration_ms=duration_ms,
        )
    )
    await session.flush()
    return push


async def finish_push(
    session: AsyncSession, push_id: uuid.UUID, *, delivered: bool, now: datetime, attempts: int
) -> ReportPush:
    """The outcome of a push, with its event: delivered (never sent again) or failed."""
    push = await session.get_one(ReportPush, push_id, with_for_update=True)
    enterprise = await session.get_one(Enterprise, push.enterprise_id)
    push.status = (PushStatus.delivered if delivered else PushStatus.failed).value
    push.claimed_until = None
    if delivered:
        push.delivered_at = now
    await session.flush()
    await audit.record(
        session,
        SYSTEM,
        f"industrial_cloud.report_{push.status}",
        subject_type="report_push",
        subject_id=push.id,
        enterprise_ids=[push.enterprise_id],
        region_codes=[enterprise.region_code],
        payload={
            "enterprise_id": push.enterprise_id,
            "period": push.period,
            "idempotency_key": push.idempotency_key,
            "schema_version": push.schema_version,
            "body_sha256": push.body_sha256,
            "trigger": push.trigger,
            "attempts": attempts,  # of this push
            "attempts_total": push.attempts,
            "status_code": push.last_status_code,
            "error": push.last_error,
        },
    )
    return push


async def release_push(session: AsyncSession, push_id: uuid.UUID) -> None:
    """A sender stopping before an outcome gives the report back (pending) for a later push."""
    await session.execute(
        update(ReportPush)
        .where(col(ReportPush.id) == push_id, col(ReportPush.status) == PushStatus.sending.value)
        .values(status=PushStatus.pending.value, claimed_until=None)
    )


async def push_of(
    session: AsyncSession, enterprise_id: uuid.UUID, period: Period
) -> ReportPush | None:
    found: ReportPush | None = await session.scalar(
        select(ReportPush).where(
            col(ReportPush.enterprise_id) == enterprise_id,
            col(ReportPush.period) == period.month,
        )
    )
    return found


async def attempts_of(session: AsyncSession, push_id: uuid.UUID) -> Sequence[ReportPushAttempt]:
    rows = await session.scalars(
        select(ReportPushAttempt)
        .where(col(ReportPushAttempt.push_id) == push_id)
        .order_by(col(ReportPushAttempt.number))
    )
    return rows.all()


# --- the monthly schedule ---------------------------------------------------------------------


async def claim_schedule(
    session: AsyncSession, period: Period, *, now: datetime, lease: timedelta
) -> bool:
    """Take the month on for the schedule, unless it is done or another worker holds it."""
    await session.execute(
        insert(ReportSchedule)
        .values(period=period.month, started_at=now, enterprises=0, delivered=0, failed=0)
        .on_conflict_do_nothing(index_elements=["period"])
    )
    taken = await session.scalar(
        update(ReportSchedule)
        .where(
            col(ReportSchedule.period) == period.month,
            col(ReportSchedule.finished_at).is_(None),
            or_(
                col(ReportSchedule.claimed_until).is_(None),
                col(ReportSchedule.claimed_until) < now,
            ),
        )
        .values(claimed_until=now + lease)
        .returning(col(ReportSchedule.period))
    )
    return taken is not None


async def extend_schedule(
    session: AsyncSession, period: Period, *, now: datetime, lease: timedelta
) -> None:
    await session.execute(
        update(ReportSchedule)
        .where(col(ReportSchedule.period) == period.month)
        .values(claimed_until=now + lease)
    )


async def finish_schedule(session: AsyncSession, period: Period, *, now: datetime) -> None:
    """The month is done: counted from the pushes as they stand."""
    rows = await session.execute(
        select(col(ReportPush.status), func.count())
        .where(col(ReportPush.period) == period.month)
        .group_by(col(ReportPush.status))
    )
    counts: dict[str, int] = {status: int(n) for status, n in rows.all()}
    await session.execute(
        update(ReportSchedule)
        .where(col(ReportSchedule.period) == period.month)
        .values(
            finished_at=now,
            claimed_until=None,
            enterprises=sum(counts.values()),
            delivered=counts.get(PushStatus.delivered.value, 0),
            failed=counts.get(PushStatus.failed.value, 0),
        )
    )
