"""A facility's register of incoming and outgoing lots, streamed as CSV, XLSX or JSON."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
import xlsxwriter
from fastapi import Query, Request
from fastapi.responses import StreamingResponse

from api.deps import CurrentActor, ReadSession
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Timestamp
from domain.base import utcnow
from domain.errors import InvalidInput
from domain.reports import registers
from domain.reports.registers import COLUMNS, Direction, RegisterQuery

router = resource_router("reports")
Rows = AsyncIterator[list[tuple[Any, ...]]]
Format = Literal["csv", "xlsx", "json"]
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}
KG = COLUMNS.index("kg")


def _cell(index: int, value: Any) -> Any:
    if value is None:
        return ""
    if index == KG:
        return Decimal(value) / 1000
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _cells(row: tuple[Any, ...]) -> list[Any]:
    return [_cell(i, v) for i, v in enumerate(row)]


async def _csv(rows: Rows) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")  # so that spreadsheet programs read the Chinese names as UTF-8
    writer.writerow(COLUMNS)
    async for chunk in rows:
        writer.writerows(_cells(row) for row in chunk)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


async def _json(rows: Rows) -> AsyncIterator[bytes]:
    yield b"["
    first = True
    async for chunk in rows:
        parts = [
            orjson.dumps(dict(zip(COLUMNS, _cells(row), strict=True)), default=str) for row in chunk
        ]
        if parts:
            yield (b"" if first else b",") + b",".join(parts)
            first = False
    yield b"]"


async def _xlsx(rows: Rows) -> AsyncIterator[bytes]:
    """xlsxwriter's constant-memory mode keeps one row in memory and the sheet in a temporary
    file; the finished workbook is streamed from disk."""
    fd, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(fd)
    try:
        workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_numbers": False})
        sheet = workbook.add_worksheet("register")
        sheet.write_row(0, 0, COLUMNS, workbook.add_format({"bold": True}))
        line = 1
        async for chunk in rows:
            for row in chunk:
                cells = _cells(row)
                cells[KG] = float(cells[KG]) if cells[KG] != "" else ""  # a number in the sheet
                sheet.write_row(line, 0, cells)
                line += 1
        await asyncio.to_thread(workbook.close)
        with open(path, "rb") as f:  # noqa: ASYNC230 - local temporary file, read in chunks
            while block := f.read(64 * 1024):
                yield block
    finally:
        os.unlink(path)


RENDER = {"csv": _csv, "xlsx": _xlsx, "json": _json}


@router.get(
    "/facilities/{facility_id}/register",
    response_class=StreamingResponse,
    responses={
        **responses(401, 404, 422),
        200: {
            "description": "The register, oldest first: one row per lot movement",
            "content": {media: {} for media in MEDIA.values()},
        },
    },
    summary="A facility's register of incoming or outgoing lots (CSV, XLSX or JSON, streamed)",
)
async def register(
    facility_id: uuid.UUID,
    request: Request,
    session: ReadSession,
    actor: CurrentActor,
    direction: Direction = Direction.incoming,
    period_from: Annotated[
        Timestamp | None, Query(alias="from", description="Default: 30 days before `to`")
    ] = None,
    period_to: Annotated[Timestamp | None, Query(alias="to", description="Default: now")] = None,
    format: Format = "csv",
) -> StreamingResponse:
    facility = await registers.register_facility(session, actor, facility_id)
    end = period_to or utcnow()
    start = period_from or end - timedelta(days=30)
    if start >= end:
        raise InvalidInput(
            "`from` must be before `to`",
            errors=[{"pointer": "/from", "detail": "not before `to`", "location": "query"}],
        )
    query = RegisterQuery(facility.id, direction, start, end)
    sessionmaker = request.app.state.read_sessionmaker

    async def rows() -> Rows:
        # The request's sessions have closed by the time the body streams: a session of its own
        # for the cursor, on the replica when there is one.
        async with sessionmaker() as reader:
            async for chunk in registers.register_rows(reader, query):
                yield chunk

    name = f"register-{facility.id}-{direction.value}-{start:%Y%m%d}-{end:%Y%m%d}.{format}"
    return StreamingResponse(
        RENDER[format](rows()),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
