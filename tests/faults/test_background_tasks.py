"""A background loop of the API process (sealer, webhook relay) that ends while the service runs
is logged as an error, not left to be noticed at shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from api.worker import watched
from domain.retry import next_backoff


async def _broken() -> None:
    raise RuntimeError("a bug outside the retry loop")


async def _finished() -> None:
    return


async def test_a_loop_that_ends_while_the_service_runs_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="scrapflow.worker"):
        for work in (_broken, _finished):
            task = watched(asyncio.create_task(work(), name=work.__name__), stop)
            await asyncio.wait([task])
            await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    ended = [r for r in caplog.records if "ended while the service runs" in r.getMessage()]
    assert [r.args for r in ended] == [("_broken",), ("_finished",)]
    assert ended[0].exc_info is not None
    assert ended[0].exc_info[1] is not None
    assert str(ended[0].exc_info[1]) == "a bug outside the retry loop"
    assert ended[1].exc_info in (None, (None, None, None))


async def test_a_loop_that_ends_after_stop_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    stop.set()
    with caplog.at_level(logging.ERROR, logger="scrapflow.worker"):
        task = watched(asyncio.create_task(_finished()), stop)
        await task
        await asyncio.sleep(0)
    assert not [r for r in caplog.records if "ended while the service runs" in r.getMessage()]


def test_the_backoff_of_the_loops_doubles_up_to_five_seconds() -> None:
    # A database back after a long outage is sealed against within five seconds.
    waits = [0.5]
    for _ in range(6):
        waits.append(next_backoff(waits[-1]))
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
