"""Shared table plumbing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, text
from sqlmodel import SQLModel

metadata = SQLModel.metadata  # with the naming convention set in domain/__init__.py


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(*, now: bool = False, nullable: bool | None = None) -> Column[datetime]:
    """A `timestamptz` column; `now=True` fills it with the transaction time and makes it
    required, otherwise it is optional unless `nullable=False`."""
    return Column(
        DateTime(timezone=True),
        nullable=(not now) if nullable is None else nullable,
        server_default=text("now()") if now else None,
    )


def grams_column() -> Column[int]:
    """A required mass in integer grams (never a float)."""
    return Column(BigInteger, nullable=False)
