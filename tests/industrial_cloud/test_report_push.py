"""Pushing the industrial-cloud report (issue 7 point 3) to a real HTTP server on loopback that
checks the signature with its own code and fails sometimes: retries keep their idempotency key,
Retry-After is honoured, every attempt and the outcome are recorded (with an event), a delivered
report is never sent again, a permanently failing endpoint ends recorded as failed, the monthly
schedule pushes the previous month once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from api import worker
from domain.industrial_cloud import service as cloud_service
from domain.industrial_cloud.models import ReportPush, ReportSchedule
from domain.industrial_cloud.rules import Period, Trigger, idempotency_key, previous_period
from integrations import industrial_cloud
from integrations.industrial_cloud import NotConfigured, push_due, push_period
from integrations.settings import Settings
from tests.conftest import Live, World
from tests.industrial_cloud.conftest import Answer, Receiver, cloud_settings

Maker = async_sessionmaker[AsyncSession]


def this_month() -> Period:
    """The month the test's data falls in (enterprises are registered now)."""
    return previous_period(datetime.now(UTC) + timedelta(days=32))


async def push_row(session: AsyncSession, enterprise: uuid.UUID, period: Period) -> ReportPush:
    found = await session.scalar(
        select(ReportPush)
        .where(col(ReportPush.enterprise_id) == enterprise, col(ReportPush.period) == period.month)
        .execution_options(populate_existing=True)
    )
    assert found is not None
    return found


async def events(session: AsyncSession, subject_id: uuid.UUID) -> list[Any]:
    rows = await session.execute(
        text("SELECT type, payload, enterprise_ids FROM event WHERE subject_id = :s ORDER BY id"),
        {"s": str(subject_id)},
    )
    return list(rows.all())


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_failures_are_retried_with_one_key_until_delivered(
    world: World, sessionmaker: Maker, session: AsyncSession, receiver: Receiver, cloud: Settings
) -> None:
    """500, then a hang past the 0.5 s timeout (the receiver does take that one: its answer is
    lost), then 429 with Retry-After: 1, then 200 (a duplicate the receiver drops)."""
    receiver.answers(
        Answer(500), Answer(200, hang=1.5), Answer(429, headers={"Retry-After": "1"}), Answer(200)
    )
    period = this_month()
    (outcome,) = await push_period(sessionmaker, cloud, period, [world.enterprise_a])
    assert (outcome.status, outcome.attempts, outcome.status_code) == ("delivered", 4, 200)

    requests = receiver.received()
    assert [r.answered for r in requests] == [500, 200, 429, 200]
    key = idempotency_key(world.enterprise_a, period.month)
    assert {r.key for r in requests} == {key}
    assert all(r.signature_ok for r in requests)
    assert len({r.body for r in requests}) == 1  # the same bytes every time
    assert [r.headers["x-scrapflow-attempt"] for r in requests] == ["1", "2", "3", "4"]
    assert {r.headers["x-scrapflow-schema-version"] for r in requests} == {"1.0"}
    assert requests[3].at - requests[2].at >= 1.0  # Retry-After honoured
    assert list(receiver.kept) == [key]  # one report, however many attempts
    document = requests[0].document
    assert document["report_id"] == key
    assert document["period"] == {
        "month": period.month,
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
    }

    push = await push_row(session, world.enterprise_a, period)
    assert (push.status, push.attempts, push.last_status_code) == ("delivered", 4, 200)
    assert push.delivered_at is not None and push.claimed_until is None
    assert push.idempotency_key == key
    assert push.body_sha256 == hashlib.sha256(requests[0].body).hexdigest()
    assert push.document == json.loads(requests[0].body)
    attempts = await cloud_service.attempts_of(session, push.id)
    assert [a.number for a in attempts] == [1, 2, 3, 4]
    assert [a.status_code for a in attempts] == [500, None, 429, 200]
    errors = [a.error for a in attempts]
    assert errors[0] is not None and errors[0].startswith("HTTP 500")
    assert errors[1] is not None and errors[1].startswith("timeout")
    assert errors[2] is not None and errors[2].startswith("HTTP 429")
    assert errors[3] is None
    (event,) = await events(session, push.id)
    assert event.type == "industrial_cloud.report_delivered"
    assert event.payload["attempts"] == 4
    assert event.payload["idempotency_key"] == key
    assert event.payload["period"] == period.month
    assert event.enterprise_ids == [world.enterprise_a]

    # Delivered is final: pushing again, by hand or on schedule, sends nothing.
    (again,) = await push_period(sessionmaker, cloud, period, [world.enterprise_a])
    assert (again.status, again.attempts) == ("already_delivered", 0)
    (scheduled,) = await push_period(
        sessionmaker, cloud, period, [world.enterprise_a], trigger=Trigger.schedule
    )
    assert scheduled.status == "already_delivered"
    assert len(receiver.received()) == 4
    assert len(await events(session, push.id)) == 1


async def test_a_permanently_failing_endpoint_ends_recorded_as_failed(
    world: World, sessionmaker: Maker, session: AsyncSession, receiver: Receiver, settings: Settings
) -> None:
    config = cloud_settings(settings, receiver.url, industrial_cloud_retries=2)
    receiver.answers(then=Answer(503, headers={"Retry-After": "0"}))
    period = this_month()
    (outcome,) = await push_period(sessionmaker, config, period, [world.enterprise_b])
    assert (outcome.status, outcome.attempts, outcome.status_code) == ("failed", 3, 503)
    assert len(receiver.received()) == 3
    assert receiver.kept == {}

    push = await push_row(session, world.enterprise_b, period)
    assert (push.status, push.attempts, push.last_status_code) == ("failed", 3, 503)
    assert push.last_error is not None and push.last_error.startswith("HTTP 503")
    assert push.delivered_at is None and push.claimed_until is None
    (event,) = await events(session, push.id)
    assert event.type == "industrial_cloud.report_failed"
    assert (event.payload["attempts"], event.payload["status_code"]) == (3, 503)

    # Once the cloud is back, a later push delivers the same report under the same key.
    receiver.answers(then=Answer(200))
    (later,) = await push_period(sessionmaker, config, period, [world.enterprise_b])
    assert (later.status, later.attempts) == ("delivered", 1)
    keys = {r.key for r in receiver.received()}
    assert keys == {idempotency_key(world.enterprise_b, period.month)}
    push = await push_row(session, world.enterprise_b, period)
    assert (push.status, push.attempts) == ("delivered", 4)
    assert [a.number for a in await cloud_service.attempts_of(session, push.id)] == [1, 2, 3, 4]
    assert [e.type for e in await events(session, push.id)] == [
        "industrial_cloud.report_failed",
        "industrial_cloud.report_delivered",
    ]


async def test_a_refusal_is_not_retried(
    world: World, sessionmaker: Maker, session: AsyncSession, receiver: Receiver, cloud: Settings
) -> None:
    receiver.answers(then=Answer(422))
    (outcome,) = await push_period(sessionmaker, cloud, this_month(), [world.enterprise_a])
    assert (outcome.status, outcome.attempts, outcome.status_code) == ("failed", 1, 422)
    assert len(receiver.received()) == 1


async def test_a_wrong_secret_fails_the_receiver_check(
    world: World, sessionmaker: Maker, receiver: Receiver, settings: Settings
) -> None:
    from pydantic import SecretStr

    config = cloud_settings(
        settings, receiver.url, industrial_cloud_secret=SecretStr("not-the-shared-secret")
    )
    (outcome,) = await push_period(sessionmaker, config, this_month(), [world.enterprise_a])
    assert (outcome.status, outcome.status_code) == ("failed", 401)
    (request,) = receiver.received()
    assert not request.signature_ok
    assert receiver.kept == {}


async def test_an_unreachable_endpoint_is_retried_then_failed(
    world: World, sessionmaker: Maker, session: AsyncSession, settings: Settings
) -> None:
    config = cloud_settings(
        settings, f"http://127.0.0.1:{closed_port()}/reports", industrial_cloud_retries=2
    )
    (outcome,) = await push_period(sessionmaker, config, this_month(), [world.enterprise_a])
    assert (outcome.status, outcome.attempts, outcome.status_code) == ("failed", 3, None)
    push = await push_row(session, world.enterprise_a, this_month())
    assert push.last_error is not None and "ConnectError" in push.last_error
    assert push.last_status_code is None


async def test_without_url_secret_or_https_nothing_is_pushed(
    world: World, sessionmaker: Maker, session: AsyncSession, receiver: Receiver, settings: Settings
) -> None:
    period = this_month()
    for config in (
        settings,  # nothing configured
        cloud_settings(settings, receiver.url, industrial_cloud_allow_http=False),
        cloud_settings(settings, receiver.url, industrial_cloud_secret=None),
    ):
        with pytest.raises(NotConfigured):
            await push_period(sessionmaker, config, period, [world.enterprise_a])
    assert not industrial_cloud.configured(settings)
    assert receiver.received() == []
    assert await session.scalar(select(ReportPush).limit(1)) is None or not await session.scalar(
        select(ReportPush).where(col(ReportPush.enterprise_id) == world.enterprise_a)
    )


async def test_an_unknown_enterprise_is_404_and_a_bad_month_422(
    sessionmaker: Maker, cloud: Settings
) -> None:
    from domain.errors import InvalidInput, NotFound

    with pytest.raises(NotFound):
        await push_period(sessionmaker, cloud, this_month(), [uuid.uuid4()])
    for bad in ("2026-13", "2026-1", "26-10", "2026-10-01", ""):
        with pytest.raises(InvalidInput):
            cloud_service.month(bad)
    assert cloud_service.month(" 2026-10 ").start.isoformat() == "2026-10-01T00:00:00+08:00"


async def test_a_stopped_sender_gives_the_report_back(
    world: World, sessionmaker: Maker, session: AsyncSession, receiver: Receiver, settings: Settings
) -> None:
    config = cloud_settings(settings, receiver.url, industrial_cloud_backoff_seconds=30.0)
    receiver.answers(then=Answer(503))
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    (outcome,) = await push_period(
        sessionmaker, config, this_month(), [world.enterprise_a], stop=stop
    )
    assert (outcome.status, outcome.attempts) == ("stopped", 1)
    push = await push_row(session, world.enterprise_a, this_month())
    assert (push.status, push.attempts, push.claimed_until) == ("pending", 1, None)
    assert await events(session, push.id) == []


async def test_the_schedule_pushes_the_previous_month_once(
    world: World, sessionmaker: Maker, session: AsyncSession, receiver: Receiver, cloud: Settings
) -> None:
    period = this_month()
    mine = {
        idempotency_key(world.enterprise_a, period.month),
        idempotency_key(world.enterprise_b, period.month),
    }

    def mine_received() -> list[str]:
        return sorted(r.key for r in receiver.received() if r.key in mine)

    # Within the grace period after the month: not yet.
    assert await push_due(sessionmaker, cloud, period.end + timedelta(hours=23)) is None
    assert receiver.received() == []

    # The worker's loop, a day and an hour after the month ended, pushes every enterprise.
    due = period.end + timedelta(hours=25)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.report_schedule(sessionmaker, cloud, stop, lambda: due))
    # Every enterprise in the database is pushed: with the data other tests committed that may
    # be hundreds, so wait for the month to be finished rather than for a fixed time.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = await session.scalar(
            select(col(ReportSchedule.finished_at))
            .where(col(ReportSchedule.period) == period.month)
            .execution_options(populate_existing=True)
        )
        if done is not None:
            break
        await asyncio.sleep(0.05)
    assert done is not None, "the schedule did not finish the month"
    await asyncio.sleep(0.2)  # a few more rounds of the loop: they must push nothing
    stop.set()
    await loop
    assert mine_received() == sorted(mine)
    keys = [r.key for r in receiver.received()]
    assert len(keys) == len(set(keys))  # no enterprise twice

    schedule = await session.get_one(ReportSchedule, period.month, populate_existing=True)
    assert schedule.finished_at is not None
    assert schedule.delivered == schedule.enterprises >= 2
    assert schedule.failed == 0
    for enterprise in (world.enterprise_a, world.enterprise_b):
        push = await push_row(session, enterprise, period)
        assert (push.status, push.trigger, push.attempts) == ("delivered", "schedule", 1)

    # Later rounds, in this worker or another, find the month done.
    assert await push_due(sessionmaker, cloud, due + timedelta(days=3)) is None
    assert len(receiver.received()) == len(keys)


async def test_the_schedule_is_idle_without_configuration(
    sessionmaker: Maker, settings: Settings
) -> None:
    stop = asyncio.Event()
    await asyncio.wait_for(worker.report_schedule(sessionmaker, settings, stop), 1)


async def test_two_senders_at_once_send_one_report(live: Live, receiver: Receiver) -> None:
    """Real concurrent transactions: the second sender finds the report claimed."""
    config = cloud_settings(live.app.state.settings, receiver.url)
    receiver.answers(Answer(200, hang=0.3))
    period = this_month()
    enterprise = live.world.enterprise_a
    maker = live.sessionmaker()

    async def send() -> industrial_cloud.PushOutcome:
        async with httpx.AsyncClient(timeout=5) as client:
            return await industrial_cloud.push_report(
                maker, config, client, enterprise, period, trigger=Trigger.cli
            )

    outcomes = await asyncio.gather(send(), send())
    assert sorted(o.status for o in outcomes) == ["delivered", "in_progress"]
    assert len(receiver.received()) == 1
