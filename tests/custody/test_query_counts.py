"""No N+1 queries on the main list and detail endpoints: a page of many rows, or a shipment of
many lots, takes the same number of SQL statements as a page of one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.custody.conftest import END, START, Plant, at_centre, scrap


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


# --- writes: every round trip on the connection, the driver's own statements included ---------

_SENDING = {
    asyncpg.connection.Connection: (
        "execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table",
    ),
    PreparedStatement: ("fetch", "fetchrow", "fetchval", "executemany", "cursor"),
}  # fmt: skip


@contextmanager
def round_trips() -> Iterator[list[str]]:
    """Every statement sent to PostgreSQL: SQLAlchemy's (which `counted` sees) and those the hot
    paths send straight through the asyncpg connection (which it does not)."""
    sent: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for kind, methods in _SENDING.items():
            for method in methods:
                original = getattr(kind, method)

                def spy(original: Any = original) -> Any:
                    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
                        query = self.get_query() if isinstance(self, PreparedStatement) else args[0]
                        sent.append(query)
                        return original(self, *args, **kwargs)

                    return send

                patch.setattr(kind, method, spy())
        yield sent


async def test_dispatch_and_receipt_take_as_many_statements_for_twenty_lots_as_for_one(
    plant: Plant,
) -> None:
    custody = plant.custody
    await plant.client.get("/api/v1/shipments", headers=plant.b)  # warm: credentials cached
    counts = {}
    for size in (1, 20):
        lots = [await custody.register(100) for _ in range(size)]
        with round_trips() as dispatch:
            shipped = await custody.ship([lot["id"] for lot in lots])
        assert shipped.status_code == 201, shipped.text
        assert len(shipped.json()["items"]) == size
        # Every kind of line: one fully refused, the rest short beyond tolerance (discrepancies).
        items: list[dict[str, Any]] = [{"lot_id": lot["id"], "received_kg": 90} for lot in lots[1:]]
        items.append(
            {
                "lot_id": lots[0]["id"],
                "received_kg": 100,
                "refused_kg": 100,
                "refusal_reason": "wet",
            }
        )
        with round_trips() as receipt:
            received = await custody.receive(shipped.json()["id"], items)
        assert received.status_code == 201, received.text
        discrepancies = await plant.client.get(
            "/api/v1/discrepancies", params={"limit": 50}, headers=plant.b
        )
        on_this = [
            d for d in discrepancies.json()["items"] if d["shipment_id"] == shipped.json()["id"]
        ]
        assert len(on_this) == size - 1
        counts[size] = (len(dispatch), len(receipt))
    assert counts[1] == counts[20], counts
    # The floor (tests/bench/floor.py) sends 6 and 5 statements between BEGIN and COMMIT; here
    # the savepoint and its release stand for those two.
    assert counts[1][0] <= 5 and counts[1][1] <= 5, counts


async def test_a_run_takes_as_many_statements_for_twenty_inputs_as_for_one(plant: Plant) -> None:
    custody = plant.custody
    counts = []
    for size in (1, 20):
        lots = [await custody.register(100) for _ in range(size)]
        body = {
            "facility_id": custody.point_a,
            "process": "sorting",
            "started_at": START,
            "ended_at": END,
            "inputs": [{"lot_id": lot["id"], "kg": 100} for lot in lots],
            "outputs": [scrap(100 * size - 1, "GB13586-WROUGHT")],
            "losses": [{"kind": "dust", "kg": 1}],
        }
        with round_trips() as sent:
            recorded = await plant.client.post(
                "/api/v1/transformations", json=body, headers=plant.world.a_operator.headers
            )
        assert recorded.status_code == 201, recorded.text
        assert len(recorded.json()["inputs"]) == size
        # A block of lot codes is reserved once per 100 lots, by whichever request runs out.
        counts.append(len([s for s in sent if "lot_code_seq" not in s]))
    assert counts[0] == counts[1], counts
    # Inside the savepoint: the facility, its enterprise, the inputs locked, the run, its output
    # lots, its losses, then one statement for the inputs taken, lineage and the event.
    assert counts[0] <= 9, counts
