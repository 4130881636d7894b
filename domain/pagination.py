"""Keyset pagination over time-ordered ids: stable while rows are inserted."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_after: uuid.UUID | None


async def keyset_page(
    session: AsyncSession,
    query: Select[T],
    key: Mapped[uuid.UUID],
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Page[T]:
    if after is not None:
        query = query.where(key > after)
    rows = (await session.scalars(query.order_by(key).limit(limit + 1))).all()
    items = rows[:limit]
    if len(rows) <= limit:
        return Page(items=items, next_after=None)
    name = cast(InstrumentedAttribute[uuid.UUID], key).key
    last: uuid.UUID = getattr(items[-1], name)
    return Page(items=items, next_after=last)
