"""Lots: registration, reading, splitting, the seller."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import KilogramsOut, PositiveKilograms, Reason, Strict, Timestamp
from domain.audit.models import Event
from domain.lots.models import Lot
from domain.lots.rules import (
    CONFORMITY_STANDARDS,
    Channel,
    ConsumerClass,
    LotKind,
    LotStatus,
    Metal,
)
from domain.lots.service import NewLot
from domain.mass import g_to_kg

ConformityStandard = Literal["GB/T 38470", "GB/T 38471", "GB/T 38472", "GB/T 40382", "GB/T 40386"]
assert set(ConformityStandard.__args__) == set(CONFORMITY_STANDARDS)  # type: ignore[attr-defined]


class DomesticOrigin(Strict):
    type: Literal["domestic"] = "domestic"


class ImportOrigin(Strict):
    type: Literal["import"]
    country: Annotated[
        str,
        StringConstraints(max_length=2, pattern=r"^[A-Z]{2}$"),
        Field(description="ISO 3166-1 alpha-2 code of the exporting country", examples=["JP"]),
    ]
    customs_declaration_no: Annotated[
        str,
        StringConstraints(max_length=18, pattern=r"^[0-9]{18}$"),
        Field(description="18-digit declaration"),
    ]
    conformity_standard: ConformityStandard


class IndividualSeller(Strict):
    kind: Literal["individual"]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
    id_number: Annotated[
        str,
        StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=18),
        Field(description="18-character resident identity number; stored encrypted, shown masked"),
    ]


class OrganisationSeller(Strict):
    kind: Literal["organisation"]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    uscc: (
        Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, max_length=18)]
        | None
    ) = None


class LotCreate(Strict):
    facility_id: uuid.UUID = Field(description="A collection point of the caller's enterprise")
    metal: Metal
    category: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        description="A code from GET /api/v1/reference/scrap-categories for this metal"
    )
    net_kg: Annotated[PositiveKilograms, Field(le=1_000_000)]
    consumer_class: ConsumerClass
    channel: Channel
    collected_at: Timestamp
    origin: DomesticOrigin | ImportOrigin = Field(
        default_factory=DomesticOrigin, discriminator="type"
    )
    seller: IndividualSeller | OrganisationSeller = Field(discriminator="kind")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "facility_id": "01936f1e-8d4a-7c3e-9a51-2b7c1d0e4f55",
                    "metal": "aluminium",
                    "category": "GB13586-WROUGHT",
                    "net_kg": 1250.5,
                    "consumer_class": "post_consumer",
                    "channel": "offline",
                    "collected_at": "2026-11-24T09:30:00+08:00",
                    "origin": {"type": "domestic"},
                    "seller": {
                        "kind": "individual",
                        "name": "王五",
                        "id_number": "52010219900101123X",
                    },
                }
            ]
        },
    )


class LotBatchCreate(Strict):
    # The maximum is a setting (max_batch_items), checked by the route and shown in the OpenAPI.
    lots: list[LotCreate] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid")


class CompositionOut(BaseModel):
    post_consumer_kg: KilogramsOut
    pre_consumer_kg: KilogramsOut
    primary_kg: KilogramsOut


class SellerOut(BaseModel):
    kind: str
    name: str | None = Field(description="Masked for individuals")
    id_number: str | None = Field(description="Masked; the full number only via seller-view")


class OriginOut(BaseModel):
    type: str
    country: str | None = None
    customs_declaration_no: str | None = None
    conformity_standard: str | None = None


class LotOut(BaseModel):
    id: uuid.UUID
    code: str
    kind: LotKind
    metal: Metal
    category: str | None
    product_form: str | None
    net_kg: KilogramsOut
    composition: CompositionOut
    consumer_class: str | None
    channel: str | None
    origin: OriginOut
    collected_at: datetime | None
    seller: SellerOut | None
    status: LotStatus
    holder_facility_id: uuid.UUID
    holder_enterprise_id: uuid.UUID
    registered_facility_id: uuid.UUID
    parent_lot_id: uuid.UUID | None
    version: int
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, lot: Lot | NewLot) -> LotOut:
        return cls(
            id=lot.id,
            code=lot.code,
            kind=LotKind(lot.kind),
            metal=Metal(lot.metal),
            category=lot.category,
            product_form=lot.product_form,
            net_kg=g_to_kg(lot.net_g),
            composition=CompositionOut(
                post_consumer_kg=g_to_kg(lot.post_consumer_g),
                pre_consumer_kg=g_to_kg(lot.pre_consumer_g),
                primary_kg=g_to_kg(lot.primary_g),
            ),
            consumer_class=lot.consumer_class,
            channel=lot.channel,
            origin=OriginOut(
                type=lot.origin,
                country=lot.import_country,
                customs_declaration_no=lot.customs_declaration_no,
                conformity_standard=lot.conformity_standard,
            ),
            collected_at=lot.collected_at,
            seller=None
            if lot.seller_kind is None
            else SellerOut(
                kind=lot.seller_kind, name=lot.seller_name_masked, id_number=lot.seller_id_masked
            ),
            status=LotStatus(lot.status),
            holder_facility_id=lot.holder_facility_id,
            holder_enterprise_id=lot.holder_enterprise_id,
            registered_facility_id=lot.registered_facility_id,
            parent_lot_id=lot.parent_lot_id,
            version=lot.version,
            registered_at=lot.registered_at,
            updated_at=lot.updated_at,
        )


class LotRef(BaseModel):
    id: uuid.UUID
    code: str
    net_kg: KilogramsOut


class LotBatchOut(BaseModel):
    count: int
    lots: list[LotRef] = Field(description="In the order of the request")


class SplitIn(Strict):
    parts_kg: list[PositiveKilograms] = Field(
        min_length=2, max_length=1000, description="Parts that sum exactly to the lot's mass"
    )


class SplitOut(BaseModel):
    parent: LotOut
    children: list[LotOut]


class SellerViewIn(Strict):
    reason: Reason = Field(description="Why the personal data is needed; kept in the audit trail")


class SellerFull(BaseModel):
    name: str
    id_number: str


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type: str
    subject_type: str
    subject_id: str
    occurred_at: datetime
    actor_kind: str
    actor_principal_id: uuid.UUID | None
    actor_role: str
    actor_enterprise_id: uuid.UUID | None
    actor_authority_id: uuid.UUID | None
    request_id: str | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls.model_validate(event)
