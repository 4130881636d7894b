"""Keyset pagination over time-ordered ids: stable while rows are inserted."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_after: uuid.UUID | None


async def keyset_page(
    session: AsyncSession,
    query: Select[tuple[T]],
    key: InstrumentedAttribute[Any],
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Page[T]:
    if after is not None:
        query = query.where(key > after)
    rows = (await session.scalars(query.order_by(key).limit(limit + 1))).all()
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items=items, next_after=getattr(items[-1], key.key) if more else None)
