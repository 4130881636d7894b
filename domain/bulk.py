"""Writing many rows fast: PostgreSQL's COPY through the session's own connection, so the rows
are part of the request's transaction like any other write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def copy_rows(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """COPY rows into `table` (binary protocol). JSON columns take serialised text; columns left
    out take their defaults."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        table, records=rows, columns=list(columns)
    )
