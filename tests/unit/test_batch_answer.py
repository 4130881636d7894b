"""The batch registration's answer is written without the response models, for speed: it must be
the very bytes the documented model (LotBatchOut) would give."""

from __future__ import annotations

import uuid

from api.routes.lots import batch_answer
from api.schemas.lots import LotBatchOut, LotRef
from domain.lots.service import Registered
from domain.mass import g_to_kg


def test_the_batch_answer_is_the_models_json_byte_for_byte() -> None:
    grams = [1, 999, 1000, 1001, 812_345, 1_000_000_000, 123_456_789, 7, 10**9 - 1, 333_333]
    registered = [Registered(uuid.uuid4(), f"AL2026{i:08d}", g) for i, g in enumerate(grams)]
    model = LotBatchOut(
        count=len(registered),
        lots=[LotRef(id=r.id, code=r.code, net_kg=g_to_kg(r.net_g)) for r in registered],
    )
    assert batch_answer(registered) == model.model_dump_json().encode()
    assert batch_answer([]) == LotBatchOut(count=0, lots=[]).model_dump_json().encode()
