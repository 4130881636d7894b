"""Background work of the service: the audit sealer (issue 6), run in the API process and in
`scrapflow worker`. An advisory lock in the database lets only one sealer work at a time, so any
number of processes may run it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.audit import service as audit
from domain.audit.service import Signer
from domain.base import utcnow
from domain.retry import next_backoff
from integrations import industrial_cloud
from integrations.settings import Settings

log = logging.getLogger("scrapflow.worker")
BATCH = 5000


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def watched(task: asyncio.Task[None], stop: asyncio.Event) -> asyncio.Task[None]:
    """Log a background loop that ends while the service still runs. The loops retry every
    failure, so this is a bug; unlogged, it would show only as events no longer sealed (or
    deliveries no longer sent) until the shutdown awaited the task."""

    def ended(done: asyncio.Task[None]) -> None:
        if stop.is_set():
            return
        error = None if done.cancelled() else done.exception()
        log.error(
            "background task %s ended while the service runs", done.get_name(), exc_info=error
        )

    task.add_done_callback(ended)
    return task


async def seal_once(
    sessionmaker: async_sessionmaker[AsyncSession], signer: Signer, settings: Settings
) -> audit.Sealed:
    async with sessionmaker() as session:
        sealed = await audit.seal(
            session,
            signer,
            limit=BATCH,
            checkpoint_every=settings.checkpoint_every_events,
            checkpoint_after=timedelta(seconds=settings.checkpoint_every_seconds),
        )
        await session.commit()
    return sealed


async def sealing(
    sessionmaker: async_sessionmaker[AsyncSession],
    signer: Signer,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    """Seal until `stop` is set: at once while there is a backlog, else every interval. A failure
    (the database restarting, say) is logged and retried with backoff, never fatal."""
    backoff = settings.seal_interval_seconds
    while not stop.is_set():
        try:
            sealed = await seal_once(sessionmaker, signer, settings)
        except Exception:
            log.warning("sealing failed; retrying in %.1f s", backoff, exc_info=True)
            await _pause(stop, backoff)
            backoff = next_backoff(backoff)
            continue
        backoff = settings.seal_interval_seconds
        if sealed.count:
            log.debug("sealed %d events, head %d", sealed.count, sealed.head_seq)
        if sealed.count < BATCH:
            await _pause(stop, settings.seal_interval_seconds)


async def report_schedule(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """The monthly industrial-cloud push, in `scrapflow worker`: every interval, push the
    previous month once it is over (and its grace period); the month is recorded, so it is pushed
    once whichever worker gets there first. Idle when the push is not configured."""
    if not industrial_cloud.configured(settings):
        log.info("industrial-cloud push not configured: no monthly schedule")
        return
    while not stop.is_set():
        try:
            await industrial_cloud.push_due(sessionmaker, settings, clock(), stop)
        except Exception:
            log.warning("industrial-cloud schedule failed; trying again later", exc_info=True)
        await _pause(stop, settings.industrial_cloud_schedule_interval_seconds)
