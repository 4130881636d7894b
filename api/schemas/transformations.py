"""Transformations (process runs) and lineage."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import JsonNumber, KilogramsOut, PositiveKilograms, Strict, Timestamp
from api.schemas.lots import LotOut
from domain.lots.rules import LotKind, Metal
from domain.mass import g_to_kg
from domain.transformations.rules import DestinationUse, LossKind, Process, ProductForm
from domain.transformations.service import Recorded

Energy = Annotated[Decimal, Field(ge=0, le=10**9, decimal_places=3)]


class InputIn(Strict):
    lot_id: uuid.UUID
    kg: PositiveKilograms = Field(description="Taken from the lot: all of it, or part")


class PrimaryInputIn(Strict):
    metal: Metal
    kg: PositiveKilograms
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ] = Field(examples=["primary aluminium ingot AL99.70"])


class OutputIn(Strict):
    kind: LotKind
    metal: Metal
    kg: PositiveKilograms
    category: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None, description="For scrap outputs: a reference category of the metal"
    )
    product_form: ProductForm | None = Field(default=None, description="For products")
    destination_use: DestinationUse | None = Field(
        default=None, description="Required for molten aluminium (the plan's direct alloying)"
    )


class LossIn(Strict):
    kind: LossKind
    kg: PositiveKilograms


class EnergyIn(Strict):
    electricity_kwh: Energy | None = None
    natural_gas_m3: Energy | None = None
    other_fuel_kgce: Energy | None = None


class TransformationCreate(Strict):
    facility_id: uuid.UUID
    process: Process
    started_at: Timestamp
    ended_at: Timestamp
    inputs: list[InputIn] = Field(min_length=1, max_length=1000)
    primary_inputs: list[PrimaryInputIn] = Field(default_factory=list, max_length=50)
    outputs: list[OutputIn] = Field(min_length=1, max_length=200)
    losses: list[LossIn] = Field(default_factory=list, max_length=20)
    energy: EnergyIn | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "facility_id": "01936f1e-8d4a-7c3e-9a51-2b7c1d0e4f55",
                    "process": "melting",
                    "started_at": "2026-11-24T08:00:00+08:00",
                    "ended_at": "2026-11-24T11:30:00+08:00",
                    "inputs": [{"lot_id": "01936f20-0a1b-7c2d-8e3f-4a5b6c7d8e9f", "kg": 20000}],
                    "primary_inputs": [
                        {"metal": "aluminium", "kg": 5000, "description": "primary AL99.70"}
                    ],
                    "outputs": [
                        {
                            "kind": "product",
                            "metal": "aluminium",
                            "kg": 24100,
                            "product_form": "molten",
                            "destination_use": "direct_alloying",
                        }
                    ],
                    "losses": [{"kind": "dross", "kg": 900}],
                    "energy": {"electricity_kwh": 9800},
                }
            ]
        },
    )


class VoidIn(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class TakenOut(BaseModel):
    lot_id: uuid.UUID
    kg: KilogramsOut
    post_consumer_kg: KilogramsOut
    pre_consumer_kg: KilogramsOut
    primary_kg: KilogramsOut


class PrimaryOut(BaseModel):
    metal: str
    kg: KilogramsOut
    description: str


class LossOut(BaseModel):
    kind: str
    kg: KilogramsOut
    post_consumer_kg: KilogramsOut
    pre_consumer_kg: KilogramsOut
    primary_kg: KilogramsOut


class TransformationOut(BaseModel):
    id: uuid.UUID
    facility_id: uuid.UUID
    enterprise_id: uuid.UUID
    process: Process
    metal: str
    status: Literal["recorded", "voided"]
    input_kg: KilogramsOut
    primary_input_kg: KilogramsOut
    output_kg: KilogramsOut
    loss_kg: KilogramsOut
    loss_flagged: bool = Field(description="Loss share above the process's threshold")
    electricity_kwh: Annotated[Decimal, JsonNumber] | None
    natural_gas_m3: Annotated[Decimal, JsonNumber] | None
    other_fuel_kgce: Annotated[Decimal, JsonNumber] | None
    started_at: datetime
    ended_at: datetime
    recorded_at: datetime
    void_reason: str | None
    voided_at: datetime | None
    version: int
    inputs: list[TakenOut]
    primary_inputs: list[PrimaryOut]
    outputs: list[LotOut]
    losses: list[LossOut]

    @classmethod
    def of(cls, recorded: Recorded) -> TransformationOut:
        t = recorded.transformation
        return cls(
            id=t.id,
            facility_id=t.facility_id,
            enterprise_id=t.enterprise_id,
            process=Process(t.process),
            metal=t.metal,
            status="voided" if t.status == "voided" else "recorded",
            input_kg=g_to_kg(t.input_g),
            primary_input_kg=g_to_kg(t.primary_g),
            output_kg=g_to_kg(t.output_g),
            loss_kg=g_to_kg(t.loss_g),
            loss_flagged=t.loss_flagged,
            electricity_kwh=t.electricity_kwh,
            natural_gas_m3=t.natural_gas_m3,
            other_fuel_kgce=t.other_fuel_kgce,
            started_at=t.started_at,
            ended_at=t.ended_at,
            recorded_at=t.recorded_at,
            void_reason=t.void_reason,
            voided_at=t.voided_at,
            version=t.version,
            inputs=[
                TakenOut(
                    lot_id=i.lot_id,
                    kg=g_to_kg(i.taken_g),
                    post_consumer_kg=g_to_kg(i.post_consumer_g),
                    pre_consumer_kg=g_to_kg(i.pre_consumer_g),
                    primary_kg=g_to_kg(i.primary_g),
                )
                for i in recorded.inputs
            ],
            primary_inputs=[
                PrimaryOut(metal=p.metal, kg=g_to_kg(p.grams), description=p.description)
                for p in recorded.primary_inputs
            ],
            outputs=[LotOut.of(lot) for lot in recorded.outputs],
            losses=[
                LossOut(
                    kind=x.kind,
                    kg=g_to_kg(x.grams),
                    post_consumer_kg=g_to_kg(x.post_consumer_g),
                    pre_consumer_kg=g_to_kg(x.pre_consumer_g),
                    primary_kg=g_to_kg(x.primary_g),
                )
                for x in recorded.losses
            ],
        )


class LineageLot(BaseModel):
    lot_id: uuid.UUID
    code: str
    kind: str
    metal: str
    category: str | None
    product_form: str | None
    status: str
    depth: int = Field(description="Steps from the lot asked about")
    end: bool = Field(description="Upstream: a source lot; downstream: nothing came of it yet")
    holder_facility_id: uuid.UUID
    registered_facility_id: uuid.UUID
    kg: KilogramsOut = Field(
        description="Upstream: what this lot contributed to the lot asked about; downstream: "
        "how much of the lot asked about is in this one"
    )


class LineageFacility(BaseModel):
    facility_id: uuid.UUID
    kg: KilogramsOut


class LineageOut(BaseModel):
    lot_id: uuid.UUID
    code: str
    direction: Literal["upstream", "downstream"]
    net_kg: KilogramsOut
    primary_kg: KilogramsOut = Field(description="Upstream: the part that was primary metal")
    complete: bool = Field(description="False when max_depth stopped the walk")
    lots: list[LineageLot]
    facilities: list[LineageFacility] = Field(
        description="Upstream: collection points with what they contributed; downstream: "
        "facilities holding the metal now"
    )
