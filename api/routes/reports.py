"""Reports for regulators, within their jurisdiction: flows, indicators, anomalies. To anyone
else (enterprises) they do not exist: 404."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import Depends, Query

from api.deps import CurrentActor, ReadSession
from api.limits import page_size
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Timestamp
from api.schemas.oversight import (
    AnomaliesOut,
    AnomalyOut,
    FlowsOut,
    IndicatorOut,
    IndicatorsOut,
    PeriodOut,
)
from domain.base import utcnow
from domain.errors import InvalidInput
from domain.lots.rules import Metal
from domain.reports import oversight

router = resource_router("reports")


async def _scope(
    actor: CurrentActor,
    period_from: Annotated[
        Timestamp | None, Query(alias="from", description="Default: 12 months before `to`")
    ] = None,
    period_to: Annotated[Timestamp | None, Query(alias="to", description="Default: now")] = None,
    metal: Metal | None = None,
) -> oversight.Scope:
    jurisdiction = oversight.jurisdiction_of(actor)
    end = period_to or utcnow()
    start = period_from or end - timedelta(days=365)
    if start >= end:
        raise InvalidInput(
            "`from` must be before `to`",
            errors=[{"pointer": "/from", "detail": "not before `to`", "location": "query"}],
        )
    return oversight.Scope(jurisdiction, start, end, metal.value if metal else None)


ReportScope = Annotated[oversight.Scope, Depends(_scope)]


def _period(scope: oversight.Scope) -> PeriodOut:
    return PeriodOut.model_validate({"from": scope.period_from, "to": scope.period_to})


@router.get(
    "/reports/flows",
    response_model=FlowsOut,
    responses=responses(401, 404, 422),
    summary="Kilograms and shipments between regions (prefectures of Guizhou, other provinces)",
)
async def flows(
    session: ReadSession,
    scope: ReportScope,
    level: Literal["prefecture", "province"] = "prefecture",
) -> FlowsOut:
    found = await oversight.flows(session, scope, level)
    return FlowsOut.of(scope.jurisdiction, _period(scope), found)


@router.get(
    "/reports/indicators",
    response_model=IndicatorsOut,
    responses=responses(401, 404, 422),
    summary="The plan's indicators with their targets where the plan gives one",
)
async def indicators(session: ReadSession, scope: ReportScope) -> IndicatorsOut:
    found = await oversight.indicators(session, scope)
    return IndicatorsOut(
        jurisdiction=scope.jurisdiction,
        period=_period(scope),
        metal=scope.metal,
        indicators=[IndicatorOut.of(i) for i in found],
    )


@router.get(
    "/reports/anomalies",
    response_model=AnomaliesOut,
    responses=responses(401, 404, 422),
    summary="Weight discrepancies, long transits, high losses, over capacity, duplicate tickets,"
    " activity of suspended enterprises",
)
async def anomalies(
    session: ReadSession,
    scope: ReportScope,
    limit: Annotated[
        int,
        page_size("max_anomalies_per_kind", 500, "At most this many of each kind (default 500)"),
    ],
) -> AnomaliesOut:
    found = await oversight.anomalies(session, scope, limit=limit)
    return AnomaliesOut(
        jurisdiction=scope.jurisdiction,
        period=_period(scope),
        anomalies=[AnomalyOut.of(a) for a in found],
    )
