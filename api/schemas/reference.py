"""Reference data, each row with its source and confidence."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import JsonNumber, Strict


class RegionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    level: str
    name_zh: str
    name_en: str
    source: str
    confidence: str


class ScrapCategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    metal: str
    scheme: str
    name_zh: str
    name_en: str
    note: str
    source: str
    confidence: str


class EmissionFactorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    value: Annotated[Decimal, JsonNumber]
    unit: str
    year: int | None
    scope: str
    source: str
    confidence: str


class EmissionFactorSetOut(BaseModel):
    version: int
    label: str
    source: str
    published_at: datetime
    factors: list[EmissionFactorOut]


Unit = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text300 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Text500 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class EmissionFactorIn(Strict):
    key: Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z][a-z0-9_]{0,63}$")] = (
        Field(
            examples=["primary_aluminium_china"],
            description="Lower-case key; an existing key is replaced, a new one added",
        )
    )
    value: Annotated[Decimal, Field(ge=0, lt=10**8, decimal_places=6), JsonNumber] = Field(
        description="0 or more, at most 6 decimals"
    )
    unit: Unit = Field(
        examples=["tCO2e/t"],
        description="Factors the platform computes with keep their unit: tCO2e/t (or kgCO2e/kg)"
        " for primary_*/recycled_* metal factors, kgCO2e/t-km for road_freight_*",
    )
    year: int | None = Field(default=None, ge=1900, le=2100)
    scope: Text300
    source: Text500
    confidence: Literal["high", "medium", "low"]


class EmissionFactorSetCreate(Strict):
    label: Label = Field(examples=["2027 provincial update"])
    source: Text300 = Field(examples=["Guizhou DRC notice 2027-03"])
    factors: list[EmissionFactorIn] = Field(
        min_length=1,
        max_length=500,
        description="The factors that change or are new. Every key of the previous version that"
        " is not given is carried over unchanged; a factor cannot be removed, only replaced.",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "label": "2027 provincial update",
                    "source": "Guizhou DRC notice 2027-03",
                    "factors": [
                        {
                            "key": "primary_aluminium_china",
                            "value": 15.6,
                            "unit": "tCO2e/t",
                            "year": 2026,
                            "scope": "cradle-to-gate primary aluminium, China average",
                            "source": "adopted provincial factor",
                            "confidence": "high",
                        }
                    ],
                }
            ]
        },
    )


class PublishedSetOut(EmissionFactorSetOut):
    carried_over: list[str] = Field(description="Keys copied unchanged from the previous version")
