"""Shapes shared by every resource."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Generic, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)

T = TypeVar("T")

# Masses and capacities travel as JSON numbers; Decimal keeps the input exact until it is
# converted to integer grams.
JsonNumber = PlainSerializer(float, return_type=float, when_used="json")
Tonnes = Annotated[Decimal, Field(ge=0, le=1_000_000_000, decimal_places=6), JsonNumber]
Kilograms = Annotated[
    Decimal,
    Field(
        ge=0, le=1_000_000, decimal_places=3, description="Kilograms, at most 3 decimals (grams)"
    ),
    JsonNumber,
]
PositiveKilograms = Annotated[
    Decimal,
    Field(
        gt=0,
        le=1_000_000,
        decimal_places=3,
        description="Kilograms, more than 0, at most 3 decimals",
    ),
    JsonNumber,
]
# Outgoing masses: exact grams rendered as kilograms.
KilogramsOut = Annotated[Decimal, JsonNumber]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
RegionCode = Annotated[
    str,
    StringConstraints(max_length=6, pattern=r"^[0-9]{6}$"),
    Field(description="6-digit GB/T 2260 county code", examples=["520102"]),
]


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_text(value: object) -> object:
    # Pydantic also reads a number, or a string of digits, as seconds since 1970: `to=0.5` would
    # be a valid, silently wrong bound. A timestamp is RFC 3339 text or refused.
    if isinstance(value, int | float | Decimal) or (
        isinstance(value, str) and not _RFC3339.match(value)
    ):
        raise ValueError("expected RFC 3339 with an offset, e.g. 2026-11-20T08:00:00+08:00")
    return value


# A point in time in a request: RFC 3339 with an offset, never a bare number.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


class Strict(BaseModel):
    """Request bodies refuse unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class ReasonBody(Strict):
    reason: Reason
