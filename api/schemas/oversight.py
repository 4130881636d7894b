"""Regulators' reports: flows, indicators, anomalies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from api.schemas.common import KilogramsOut
from domain.mass import g_to_kg
from domain.reports.oversight import Anomaly, Flow, Flows, Indicator


class PeriodOut(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime

    model_config = {"populate_by_name": True}


class FlowOut(BaseModel):
    from_region: str = Field(description="4-digit prefecture in Guizhou, else 2-digit province")
    to_region: str
    metal: str
    shipments: int
    dispatched_kg: KilogramsOut
    accepted_kg: KilogramsOut = Field(description="Received less refused, so far")

    @classmethod
    def of(cls, flow: Flow) -> FlowOut:
        return cls(
            from_region=flow.from_code,
            to_region=flow.to_code,
            metal=flow.metal,
            shipments=flow.shipments,
            dispatched_kg=g_to_kg(flow.dispatched_g),
            accepted_kg=g_to_kg(flow.accepted_g),
        )


class FlowsOut(BaseModel):
    jurisdiction: str
    period: PeriodOut
    level: str
    flows: list[FlowOut]
    within_province_kg: dict[str, KilogramsOut]
    into_province_kg: dict[str, KilogramsOut]
    out_of_province_kg: dict[str, KilogramsOut]

    @classmethod
    def of(cls, jurisdiction: str, period: PeriodOut, found: Flows) -> FlowsOut:
        def kg(grams: dict[str, int]) -> dict[str, Decimal]:
            return {metal: g_to_kg(g) for metal, g in sorted(grams.items())}

        return cls(
            jurisdiction=jurisdiction,
            period=period,
            level=found.level,
            flows=[FlowOut.of(f) for f in found.flows],
            within_province_kg=kg(found.within_g),
            into_province_kg=kg(found.into_g),
            out_of_province_kg=kg(found.out_of_g),
        )


def _plain(figure: Decimal | int | None) -> Decimal | None:
    """asyncpg decodes a numeric sum such as 80000 as Decimal('8E+4'); a whole figure is spelled
    out in digits so that it reads (and compares as text) like the number it is."""
    if figure is None:
        return None
    figure = Decimal(figure)
    return figure.quantize(Decimal(1)) if figure == figure.to_integral_value() else figure


class IndicatorOut(BaseModel):
    key: str
    value: Decimal | None = Field(description="Null when there is nothing to measure yet")
    unit: str
    target: Decimal | None = Field(description="The plan's figure, where it gives one")
    target_note: str
    met: bool | None
    numerator: Decimal | None
    denominator: Decimal | None
    detail: list[dict[str, Any]]

    @classmethod
    def of(cls, indicator: Indicator) -> IndicatorOut:
        return cls(
            key=indicator.key,
            value=indicator.value,
            unit=indicator.unit,
            target=indicator.target,
            target_note=indicator.target_note,
            met=indicator.met,
            numerator=_plain(indicator.numerator),
            denominator=_plain(indicator.denominator),
            detail=indicator.detail,
        )


class IndicatorsOut(BaseModel):
    jurisdiction: str
    period: PeriodOut
    metal: str | None
    indicators: list[IndicatorOut]


class AnomalyOut(BaseModel):
    kind: str = Field(
        description="weight_discrepancy, transit_too_long, loss_above_threshold, over_capacity,"
        " duplicate_weighbridge_ticket or suspended_enterprise_activity"
    )
    severity: str = Field(description="high, medium or low")
    subject_type: str
    subject_id: str
    region_code: str
    at: datetime
    detail: str

    @classmethod
    def of(cls, anomaly: Anomaly) -> AnomalyOut:
        return cls(
            kind=anomaly.kind,
            severity=anomaly.severity,
            subject_type=anomaly.subject_type,
            subject_id=anomaly.subject_id,
            region_code=anomaly.region_code,
            at=anomaly.at,
            detail=anomaly.detail,
        )


class AnomaliesOut(BaseModel):
    jurisdiction: str
    period: PeriodOut
    anomalies: list[AnomalyOut]
