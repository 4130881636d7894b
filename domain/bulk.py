"""The hot paths' direct line to PostgreSQL: the asyncpg connection under the request's session,
so that rows written here are part of the request's transaction like any other write. Used where
the ORM's per-statement cost shows in the profile (registration) or COPY is needed (batches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def driver(session: AsyncSession) -> Any:
    """The asyncpg connection of the session's transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def copy_rows(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """COPY rows into `table` (binary protocol). JSON columns take serialised text; columns left
    out take their defaults."""
    await (await driver(session)).copy_records_to_table(table, records=rows, columns=list(columns))
