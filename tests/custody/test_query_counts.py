"""No N+1 queries on the main list and detail endpoints: a page of many rows, or a shipment of
many lots, takes the same number of SQL statements as a page of one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.custody.conftest import Plant, at_centre


@contextmanager
def counted(engine: AsyncEngine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_key" not in statement:  # the caller's credentials, when the cache expired
            statements.append(statement)

    sa_event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa_event.remove(engine.sync_engine, "before_cursor_execute", count)


async def _statements(plant: Plant, engine: AsyncEngine, path: str, **params: Any) -> int:
    await plant.client.get(path, params=params, headers=plant.b)  # warm: credentials cached
    with counted(engine) as statements:
        response = await plant.client.get(path, params=params, headers=plant.b)
    assert response.status_code == 200, response.text
    return len(statements)


async def test_lists_take_as_many_statements_for_one_row_as_for_many(
    plant: Plant, engine: AsyncEngine
) -> None:
    for _ in range(3):
        await at_centre(plant, 10, 20)  # a shipment of two lots each time
    for path, params in [
        ("/api/v1/lots", {"facility_id": plant.centre}),
        ("/api/v1/shipments", {}),
        ("/api/v1/discrepancies", {}),
        (f"/api/v1/enterprises/{plant.world.enterprise_b}/credits", {}),
    ]:
        one = await _statements(plant, engine, path, limit=1, **params)
        many = await _statements(plant, engine, path, limit=50, **params)
        assert 0 < one == many <= 6, (path, one, many)


async def test_details_take_a_fixed_number_of_statements(plant: Plant, engine: AsyncEngine) -> None:
    small = await at_centre(plant, 10)
    large = await at_centre(plant, 10, 20, 30, 40, 50)
    listed = await plant.client.get("/api/v1/shipments", params={"limit": 50}, headers=plant.b)
    one_lot, five_lots = (s["id"] for s in listed.json()["items"])  # in id order
    counts = [
        await _statements(plant, engine, f"/api/v1/shipments/{shipment}")
        for shipment in (one_lot, five_lots)
    ]
    detail = await plant.client.get(f"/api/v1/shipments/{five_lots}", headers=plant.b)
    assert len(detail.json()["items"]) == 5
    assert 0 < counts[0] == counts[1], counts
    lot_counts = [
        await _statements(plant, engine, f"/api/v1/lots/{lot['id']}")
        for lot in (small[0], large[-1])
    ]
    assert 0 < lot_counts[0] == lot_counts[1] <= 3, lot_counts
