"""Enterprises, facilities and authorities."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import Name, RegionCode, Strict, Tonnes
from domain.mass import g_to_kg
from domain.registry.models import Facility
from domain.registry.rules import EnterpriseRole, FacilityKind, Status

Uscc = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=40),
    Field(
        description="Unified social credit code (GB 32100-2015), check character verified",
        examples=["91520000214434146R"],
    ),
]


class EnterpriseCreate(Strict):
    name: Name
    uscc: Uscc
    roles: list[EnterpriseRole] = Field(min_length=1, max_length=6)
    region_code: RegionCode

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "贵阳再生资源回收有限公司",
                    "uscc": "91520000214434146R",
                    "roles": ["recycler"],
                    "region_code": "520102",
                }
            ]
        },
    )


class EnterprisePatch(Strict):
    name: Name | None = None
    roles: list[EnterpriseRole] | None = Field(default=None, min_length=1, max_length=6)
    region_code: RegionCode | None = None


class EnterpriseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    uscc: str
    roles: list[EnterpriseRole]
    region_code: str
    status: Status
    version: int
    created_at: datetime
    updated_at: datetime


class FacilityFields(Strict):
    name: Name
    kind: FacilityKind
    region_code: RegionCode
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    annual_capacity_t: Tonnes | None = None
    permit_no: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None


class FacilityCreate(FacilityFields):
    enterprise_id: uuid.UUID

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "enterprise_id": "01936f1e-8d4a-7c3e-9a51-2b7c1d0e4f55",
                    "name": "云岩区回收网点 1",
                    "kind": "collection_point",
                    "region_code": "520103",
                    "address": "贵阳市云岩区中华北路 1 号",
                    "latitude": 26.58,
                    "longitude": 106.71,
                    "annual_capacity_t": 1200,
                    "permit_no": "GZ-RR-2026-0001",
                }
            ]
        },
    )


class FacilityPatch(Strict):
    name: Name | None = None
    address: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
        | None
    ) = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    annual_capacity_t: Tonnes | None = None
    permit_no: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None


class FacilityOut(BaseModel):
    id: uuid.UUID
    enterprise_id: uuid.UUID
    name: str
    kind: FacilityKind
    region_code: str
    address: str
    latitude: float | None
    longitude: float | None
    annual_capacity_t: Tonnes | None
    permit_no: str | None
    status: Status
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, facility: Facility) -> FacilityOut:
        capacity = facility.annual_capacity_g
        return cls.model_validate(
            {
                **facility.model_dump(),
                "annual_capacity_t": None if capacity is None else g_to_kg(capacity) / 1000,
            }
        )


def capacity_grams(tonnes: Decimal | None) -> int | None:
    return None if tonnes is None else int(tonnes * 1_000_000)


class AuthorityCreate(Strict):
    name: Name
    jurisdiction: Annotated[
        str,
        StringConstraints(max_length=6, pattern=r"^[0-9]{2}([0-9]{2}){0,2}$"),
        Field(description="Region prefix: 52 is Guizhou, 5201 Guiyang", examples=["52"]),
    ]


class AuthorityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    jurisdiction: str
    created_at: datetime
