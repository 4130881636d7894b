"""Webhook tests run on committed data (`live`): the sealer and the relay work in their own
transactions, as in production, against receivers on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text

from api import worker
from domain.actor import SYSTEM
from domain.audit import service as audit
from integrations.settings import Settings
from integrations.webhooks import relaying
from tests.conftest import Json, Live, Principal
from tests.webhooks.receiver import Receiver

# Sealing waits for every older transaction in the cluster to end (xmin is cluster-wide), so a
# long test on another xdist worker can hold it up for a while.
WAIT = 90.0


@pytest.fixture
def relay_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_allow_private_destinations": True,
            "webhook_timeout_seconds": 2.0,
            "webhook_retry_schedule_seconds": [0.05, 0.1, 0.2],
            "webhook_relay_interval_seconds": 0.05,
            "webhook_disable_after_failures": 1000,
            "seal_interval_seconds": 0.05,
        }
    )


async def until(
    predicate: Callable[[], Any], within: float = WAIT, what: str = "the condition"
) -> None:
    deadline = time.monotonic() + within
    while True:
        if await _value(predicate()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {within:g} s")
        await asyncio.sleep(0.05)


async def _value(result: Any) -> Any:
    if asyncio.iscoroutine(result):
        return await result
    return result


@dataclass
class Hooks:
    live: Live
    settings: Settings
    receivers: list[Receiver] = field(default_factory=list)
    tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)

    def receiver(self, **behaviour: Any) -> Receiver:
        receiver = Receiver(**behaviour).start()
        self.receivers.append(receiver)
        return receiver

    async def subscribe(
        self,
        principal: Principal,
        receiver: Receiver,
        event_types: list[str] | None = None,
        **extra: Any,
    ) -> Json:
        body = {"url": receiver.url, "event_types": event_types or ["test.*"], **extra}
        response = await self.live.client.post(
            "/api/v1/webhooks", json=body, headers=principal.headers
        )
        assert response.status_code == 201, response.text
        created: Json = response.json()
        receiver.secret = created["secret"]
        return created

    async def emit(
        self,
        enterprise_ids: list[uuid.UUID],
        count: int = 1,
        type: str = "test.ping",
        **payload: Any,
    ) -> list[uuid.UUID]:
        """Committed events touching `enterprise_ids`; their subject ids."""
        subjects = [uuid.uuid4() for _ in range(count)]
        async with self.live.sessionmaker()() as session:
            await audit.record_many(
                session,
                SYSTEM,
                [
                    audit.Change(
                        type=type,
                        subject_type="test",
                        subject_id=subject,
                        payload={"n": n, **payload},
                        enterprise_ids=enterprise_ids,
                    )
                    for n, subject in enumerate(subjects)
                ],
            )
            await session.commit()
        return subjects

    def start_sealer(self) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            worker.sealing(
                self.live.sessionmaker(), self.live.app.state.signer, self.settings, stop
            )
        )
        self.tasks.append((stop, task))

    def start_relay(
        self, settings: Settings | None = None
    ) -> tuple[asyncio.Event, asyncio.Task[None]]:
        stop = asyncio.Event()
        task = asyncio.create_task(
            relaying(
                self.live.sessionmaker(), self.live.app.state.vault, settings or self.settings, stop
            )
        )
        self.tasks.append((stop, task))
        return stop, task

    async def get(self, path: str, principal: Principal) -> Json:
        response = await self.live.client.get(path, headers=principal.headers)
        assert response.status_code == 200, response.text
        found: Json = response.json()
        return found

    async def deliveries(self, principal: Principal, webhook_id: str, **query: str) -> list[Json]:
        """Every delivery of a webhook, following the cursor."""
        items: list[Json] = []
        cursor: str | None = None
        while True:
            params = {"limit": "7", **query, **({"cursor": cursor} if cursor else {})}
            response = await self.live.client.get(
                f"/api/v1/webhooks/{webhook_id}/deliveries",
                params=params,
                headers=principal.headers,
            )
            assert response.status_code == 200, response.text
            page = response.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    async def settled(self, principal: Principal, webhook_id: str, count: int) -> list[Json]:
        """The deliveries once `count` of them are delivered (the receiver may have answered
        before the relay recorded the answer)."""

        async def done() -> bool:
            found = await self.deliveries(principal, webhook_id, status="delivered")
            return len(found) == count

        await until(done, what=f"{count} deliveries recorded")
        return await self.deliveries(principal, webhook_id)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.live.sessionmaker()() as session:
            return await session.scalar(text(sql), params)

    async def close(self) -> None:
        for stop, _ in self.tasks:
            stop.set()
        for _, task in self.tasks:
            if not task.done():
                await task
            elif not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        for receiver in self.receivers:
            receiver.stop()
        # Later tests on this database run relays of their own: leave nothing for them to send.
        async with self.live.sessionmaker()() as session:
            await session.execute(
                text(
                    "UPDATE webhook_subscription SET status = 'disabled', disabled_reason = 'test"
                    " over', lease_until = NULL WHERE status = 'active'"
                )
            )
            await session.commit()


@pytest.fixture
async def hooks(live: Live, relay_settings: Settings) -> AsyncIterator[Hooks]:
    live.app.state.settings = relay_settings
    hooks = Hooks(live, relay_settings)
    try:
        yield hooks
    finally:
        await hooks.close()
