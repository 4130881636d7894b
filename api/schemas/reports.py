"""Enterprise statements: per metal, smelting, collection, handling, processing and transport,
masses in kilograms (3 decimals), emissions in kg CO2e naming the factor set they used."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field

from api.schemas.common import JsonNumber, KilogramsOut
from domain.mass import g_to_kg
from domain.reports import service as reports

Percent = Annotated[Decimal, JsonNumber, Field(description="Percent, 2 decimals")]
KgCO2e = Annotated[Decimal, JsonNumber, Field(description="kg CO2e, 3 decimals")]
TonneKm = Annotated[Decimal, JsonNumber, Field(description="Tonne-kilometres, 3 decimals")]


class FactorOut(BaseModel):
    key: str
    value: Annotated[Decimal, JsonNumber]
    unit: str

    @classmethod
    def of(cls, factor: reports.FactorUsed | None) -> FactorOut | None:
        return None if factor is None else cls(key=factor.key, value=factor.value, unit=factor.unit)


class AvoidedOut(BaseModel):
    kgco2e: KgCO2e | None = Field(
        description="Recycled kg × (primary factor − recycled factor); null when the factor set "
        "lacks one of them"
    )
    factor_set_version: int
    primary_factor: FactorOut | None
    recycled_factor: FactorOut | None


class RecycledOut(BaseModel):
    post_consumer_kg: KilogramsOut
    pre_consumer_kg: KilogramsOut
    total_kg: KilogramsOut


class SmeltingOut(BaseModel):
    """Melting, refining and casting runs that ended in the period (voided runs left out)."""

    runs: int
    recycled_input: RecycledOut = Field(description="Recycled content of the scrap melted")
    scrap_input_kg: KilogramsOut
    primary_input_kg: KilogramsOut
    total_metal_input_kg: KilogramsOut = Field(description="Scrap + primary inputs")
    recycled_content_percent: Percent | None = Field(
        description="Recycled input over total metal input; null without input"
    )
    remelted_product_kg: KilogramsOut = Field(
        description="Product lots put back in a furnace (casting molten metal, remelting ingot):"
        " their recycled content was counted where they were made, so they are left out of the"
        " input, the ratio and the avoided emissions"
    )
    product_output_kg: KilogramsOut = Field(description="Product lots made, as recorded")
    avoided_emissions: AvoidedOut

    @classmethod
    def of(cls, s: reports.Smelting) -> SmeltingOut:
        assert s.avoided is not None
        return cls(
            runs=s.runs,
            recycled_input=RecycledOut(
                post_consumer_kg=g_to_kg(s.post_consumer_g),
                pre_consumer_kg=g_to_kg(s.pre_consumer_g),
                total_kg=g_to_kg(s.recycled_g),
            ),
            scrap_input_kg=g_to_kg(s.scrap_input_g),
            primary_input_kg=g_to_kg(s.primary_input_g),
            total_metal_input_kg=g_to_kg(s.metal_input_g),
            recycled_content_percent=s.recycled_percent,
            remelted_product_kg=g_to_kg(s.remelted_product_g),
            product_output_kg=g_to_kg(s.product_output_g),
            avoided_emissions=AvoidedOut(
                kgco2e=s.avoided.kgco2e,
                factor_set_version=s.avoided.factor_set_version,
                primary_factor=FactorOut.of(s.avoided.primary),
                recycled_factor=FactorOut.of(s.avoided.recycled),
            ),
        )


class TallyOut(BaseModel):
    category: str | None = Field(description="Scrap category, or product form for products")
    channel: str | None = Field(description="online | offline; null for lots made by a run")
    lots: int
    kg: KilogramsOut

    @classmethod
    def of(cls, t: reports.Tally) -> TallyOut:
        return cls(category=t.category, channel=t.channel, lots=t.lots, kg=g_to_kg(t.grams))


class CollectionOut(BaseModel):
    """Lots bought from sellers at the enterprise's collection points, registered in the period,
    with their registered mass."""

    lots: int
    kg: KilogramsOut
    by_category_and_channel: list[TallyOut]

    @classmethod
    def of(cls, c: reports.Collection) -> CollectionOut:
        return cls(
            lots=c.lots,
            kg=g_to_kg(c.grams),
            by_category_and_channel=[TallyOut.of(t) for t in c.tallies],
        )


class PretreatmentOut(BaseModel):
    process: str
    runs: int
    input_kg: KilogramsOut
    output_kg: KilogramsOut
    loss_kg: KilogramsOut


class HandlingOut(BaseModel):
    """Scrap accepted at the enterprise's facilities (receipts in the period: received − refused,
    transfers between its own facilities included) and what went into its pretreatment runs that
    ended in the period."""

    received_kg: KilogramsOut
    received_by_category_and_channel: list[TallyOut]
    pretreatment_input_kg: KilogramsOut
    pretreatment_by_process: list[PretreatmentOut]

    @classmethod
    def of(cls, h: reports.Handling) -> HandlingOut:
        return cls(
            received_kg=g_to_kg(h.received_g),
            received_by_category_and_channel=[TallyOut.of(t) for t in h.received],
            pretreatment_input_kg=g_to_kg(h.pretreatment_input_g),
            pretreatment_by_process=[
                PretreatmentOut(
                    process=p.process,
                    runs=p.runs,
                    input_kg=g_to_kg(p.input_g),
                    output_kg=g_to_kg(p.output_g),
                    loss_kg=g_to_kg(p.loss_g),
                )
                for p in h.pretreatment
            ],
        )


class ProcessingOut(BaseModel):
    """Valid certificates issued to the enterprise in the period, over the product lots its
    facilities accepted at receipts in the period."""

    certificates: int
    certified_mass_kg: KilogramsOut
    certified_recycled: RecycledOut
    product_received_kg: KilogramsOut
    product_received_by_form: list[TallyOut]
    certified_recycled_percent: Percent | None = Field(
        description="Certified recycled kg over product kg received; null without products"
    )

    @classmethod
    def of(cls, p: reports.Processing) -> ProcessingOut:
        return cls(
            certificates=p.certificates,
            certified_mass_kg=g_to_kg(p.certified_mass_g),
            certified_recycled=RecycledOut(
                post_consumer_kg=g_to_kg(p.certified_post_consumer_g),
                pre_consumer_kg=g_to_kg(p.certified_pre_consumer_g),
                total_kg=g_to_kg(p.certified_recycled_g),
            ),
            product_received_kg=g_to_kg(p.product_received_g),
            product_received_by_form=[TallyOut.of(t) for t in p.products_received],
            certified_recycled_percent=p.certified_percent,
        )


class HaulOut(BaseModel):
    vehicle_energy: str | None = Field(description="null when the shipment did not state it")
    shipments: int
    shipments_without_distance: int = Field(
        description="Shipments with no distance: their kg are counted, their tonne-km unknown"
    )
    kg: KilogramsOut
    kg_without_distance: KilogramsOut
    tonne_km: TonneKm = Field(description="Over the shipments with a distance")
    emissions_kgco2e: KgCO2e | None = Field(
        description="Tonne-km × the vehicle factor; null when the set has no factor for it"
    )
    factor_set_version: int
    factor: FactorOut | None

    @classmethod
    def of(cls, h: reports.Haul) -> HaulOut:
        return cls(
            vehicle_energy=h.vehicle_energy,
            shipments=h.shipments,
            shipments_without_distance=h.shipments_without_distance,
            kg=g_to_kg(h.grams),
            kg_without_distance=g_to_kg(h.grams_without_distance),
            tonne_km=h.tonne_km,
            emissions_kgco2e=h.kgco2e,
            factor_set_version=h.factor_set_version,
            factor=FactorOut.of(h.factor),
        )


class TransportOut(BaseModel):
    """Shipments dispatched from the enterprise's facilities in the period (not cancelled), by
    the mass of this metal they carried."""

    shipments: int
    shipments_without_distance: int
    shipments_without_factor: int
    kg: KilogramsOut
    tonne_km: TonneKm
    emissions_kgco2e: KgCO2e = Field(description="Sum over the vehicle energies with a factor")
    factor_set_version: int
    by_vehicle_energy: list[HaulOut]

    @classmethod
    def of(cls, t: reports.Transport) -> TransportOut:
        return cls(
            shipments=t.shipments,
            shipments_without_distance=t.shipments_without_distance,
            shipments_without_factor=t.shipments_without_factor,
            kg=g_to_kg(t.grams),
            tonne_km=t.tonne_km,
            emissions_kgco2e=t.kgco2e,
            factor_set_version=t.factor_set_version,
            by_vehicle_energy=[HaulOut.of(h) for h in t.hauls],
        )


class MetalStatementOut(BaseModel):
    metal: str
    smelting: SmeltingOut
    collection: CollectionOut
    handling: HandlingOut
    processing: ProcessingOut
    transport: TransportOut


class FactorSetRef(BaseModel):
    version: int
    label: str
    published_at: datetime


class PeriodOut(BaseModel):
    from_: datetime = Field(alias="from", description="Inclusive")
    to: datetime = Field(description="Exclusive")

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class StatementOut(BaseModel):
    enterprise_id: uuid.UUID
    enterprise_name: str
    period: PeriodOut
    factor_set: FactorSetRef = Field(description="The emission factors every figure here used")
    generated_at: datetime
    metals: list[MetalStatementOut] = Field(description="One section per metal asked for")

    @classmethod
    def of(cls, s: reports.Statement) -> StatementOut:
        return cls(
            enterprise_id=s.enterprise.id,
            enterprise_name=s.enterprise.name,
            period=PeriodOut(from_=s.period_from, to=s.period_to),
            factor_set=FactorSetRef(
                version=s.factor_set.version,
                label=s.factor_set.label,
                published_at=s.factor_set.published_at,
            ),
            generated_at=s.generated_at,
            metals=[
                MetalStatementOut(
                    metal=m.metal.value,
                    smelting=SmeltingOut.of(m.smelting),
                    collection=CollectionOut.of(m.collection),
                    handling=HandlingOut.of(m.handling),
                    processing=ProcessingOut.of(m.processing),
                    transport=TransportOut.of(m.transport),
                )
                for m in s.metals
            ],
        )
