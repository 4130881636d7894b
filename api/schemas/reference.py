"""Reference data, each row with its source and confidence."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict

from api.schemas.common import JsonNumber


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
