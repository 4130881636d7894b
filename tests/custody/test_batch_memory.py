"""A 5,000-lot batch's memory (issue 8; DESIGN §7: the server within 300 MB under load). The lots'
rows go to COPY as tuples made on the way, and each event's row and JSON are made as COPY takes
them, so the request's Python allocations peak at about half of what holding every row, event and
payload at once took (27.8 MB, measured in this same in-process set-up)."""

from __future__ import annotations

import json
import tracemalloc

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.custody.conftest import Custody, lot_body

LOTS = "/api/v1/lots"
MB = 1024 * 1024


async def _counts(session: AsyncSession) -> tuple[int, int]:
    row = (
        await session.execute(
            text("SELECT (SELECT count(*) FROM lot), (SELECT count(*) FROM event)")
        )
    ).one()
    return int(row[0]), int(row[1])


async def test_a_5000_lot_batch_allocates_at_most_20_mb_at_its_peak(
    custody: Custody, session: AsyncSession
) -> None:
    headers = {**custody.world.a_operator.headers, "Content-Type": "application/json"}
    warm_up = json.dumps({"lots": [lot_body(custody.point_a)] * 25}).encode()  # the COPY path
    assert (await custody.client.post(f"{LOTS}/batch", content=warm_up, headers=headers)).is_success
    body = json.dumps({"lots": [lot_body(custody.point_a)] * 5000}).encode()
    before = await _counts(session)

    tracemalloc.start()
    try:
        response = await custody.client.post(f"{LOTS}/batch", content=body, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 201, response.text[:500]
    assert response.json()["count"] == 5000
    assert await _counts(session) == (before[0] + 5000, before[1] + 5000)
    assert peak < 20 * MB, f"peak {peak / MB:.1f} MB"
