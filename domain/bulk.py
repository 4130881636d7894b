"""The hot paths' direct line to PostgreSQL: the asyncpg connection under the request's session,
so that rows written here are part of the request's transaction like any other write. Used where
the ORM's per-statement cost shows in the profile (registration) or COPY is needed (batches)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def driver(session: AsyncSession) -> Any:
    """The asyncpg connection of the session's transaction, looked up once per transaction (a
    registration asks twice, and each lookup is two greenlet hops through SQLAlchemy)."""
    cached = session.info.get(_DRIVER)
    if cached is not None and cached[0] is session.sync_session.get_transaction():
        return cached[1]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    session.info[_DRIVER] = (session.sync_session.get_transaction(), raw.driver_connection)
    return raw.driver_connection


_DRIVER = "scrapflow.driver"  # session.info key: (the root transaction, its asyncpg connection)


async def copy_rows(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY rows into `table` (binary protocol). JSON columns take serialised text; columns left
    out take their defaults. `rows` may be a generator: the driver encodes and sends them as they
    come, so a big batch's rows never all exist at once."""
    await (await driver(session)).copy_records_to_table(table, records=rows, columns=list(columns))
