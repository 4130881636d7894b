"""Set-based writes: many rows of a table as one JSON parameter, typed by the table itself
(`jsonb_populate_recordset(NULL::table, ...)`), so a request writes any number of rows, and
several tables, in one statement whose text never changes with the number of rows (one
prepared statement per connection). For the hot custody writes: dispatch, receipt, runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key


def _default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)  # exact: numeric columns take the text, not a float
    if isinstance(value, uuid.UUID):
        return str(value)  # asyncpg's own UUID subclass, read back from a row
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def rows_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """The parameter for `recordset`: UUIDs, times and decimals as their text."""
    return orjson.dumps(rows, default=_default).decode()


def recordset(table: str, parameter: int) -> str:
    """The rows of JSON parameter `$parameter` as rows of `table` (absent keys are NULL)."""
    return f"jsonb_populate_recordset(NULL::{table}, ${parameter}::jsonb)"


def insert_rows(table: str, columns: Sequence[str], parameter: int) -> str:
    """INSERT of the rows of JSON parameter `$parameter`; columns left out take their defaults."""
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) SELECT {names} FROM {recordset(table, parameter)}"  # noqa: S608 - constants


def forget(session: AsyncSession, model: type[Any], keys: Iterable[Any]) -> None:
    """Rows just written past the ORM: drop the session's copies of them (if it holds any), so
    a later read in this session loads them afresh instead of trusting stale attributes."""
    identity_map = session.sync_session.identity_map
    if not len(identity_map):
        return
    for key in keys:
        found = identity_map.get(identity_key(model, key))
        if found is not None:
            session.expunge(found)
