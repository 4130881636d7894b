"""Pushing the monthly industrial-cloud report to the province's Guizhou Industrial Cloud
(README "Industrial-cloud report").

A push POSTs the report's JSON (keys sorted, compact; the same bytes on every attempt of one push)
with these headers:
- `Idempotency-Key`: the same for every push of one enterprise's month, ever, so the receiver
  keeps the first it gets and drops repeats (a push whose answer was lost is sent again);
- `X-Scrapflow-Signature`: `sha256=` + hex HMAC-SHA256 of the body under the shared secret;
- `X-Scrapflow-Schema-Version` and `X-Scrapflow-Attempt` (1, 2, ... within this push).

A 2xx delivers; no answer (timeout, refused or reset connection), 5xx, 408, 409, 425 and 429 are
retried with exponential backoff and jitter, waiting at least what Retry-After asks; any other
answer is a refusal and not retried. Every attempt is committed as it happens; the outcome is
recorded with an event. A delivered report is never sent again."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.base import utcnow
from domain.errors import DomainError
from domain.industrial_cloud import service as cloud
from domain.industrial_cloud.rules import (
    Period,
    Trigger,
    Verdict,
    parse_retry_after,
    previous_period,
    retry_delay,
    verdict,
)
from integrations.settings import Settings

log = logging.getLogger("scrapflow.industrial_cloud")
USER_AGENT = "scrapflow-industrial-cloud/1"
SIGNATURE_HEADER = "X-Scrapflow-Signature"
ERROR_SNIPPET = 200  # characters of a refusing receiver's answer kept with the attempt
Clock = Callable[[], datetime]


class NotConfigured(DomainError):
    code = "industrial_cloud_not_configured"
    status = 503
    title = "The industrial-cloud push is not configured"


@dataclass(frozen=True, slots=True)
class PushOutcome:
    enterprise_id: uuid.UUID
    period: str
    # delivered | failed | already_delivered | in_progress (another sender) | stopped
    status: str
    attempts: int = 0  # made by this push
    status_code: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "enterprise_id": str(self.enterprise_id),
            "period": self.period,
            "status": self.status,
            "attempts": self.attempts,
            "status_code": self.status_code,
            "error": self.error,
        }


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: `sha256=` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret, body, sha256).hexdigest()


def encode(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def configured(settings: Settings) -> bool:
    return bool(settings.industrial_cloud_url and settings.industrial_cloud_secret)


def _destination(settings: Settings) -> tuple[str, bytes]:
    url, secret = settings.industrial_cloud_url, settings.industrial_cloud_secret
    if not url or secret is None or not secret.get_secret_value():
        raise NotConfigured(
            "set SCRAPFLOW_INDUSTRIAL_CLOUD_URL and SCRAPFLOW_INDUSTRIAL_CLOUD_SECRET"
        )
    scheme = urlsplit(url).scheme
    if scheme != "https" and not (scheme == "http" and settings.industrial_cloud_allow_http):
        raise NotConfigured(
            f"the industrial-cloud URL must be https (got {scheme or 'no scheme'});"
            " plain http only with SCRAPFLOW_INDUSTRIAL_CLOUD_ALLOW_HTTP, for tests"
        )
    return url, secret.get_secret_value().encode()


def _lease(settings: Settings) -> timedelta:
    """How long a sender holds a report between two of its records: one attempt and one wait."""
    return timedelta(
        seconds=settings.industrial_cloud_timeout_seconds
        + settings.industrial_cloud_max_backoff_seconds
        + 60
    )


async def _pause(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _send(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int | None, str | None, float | None]:
    """One request: the status code (None without an answer), an error, and Retry-After."""
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException as error:
        return None, f"timeout ({type(error).__name__})", None
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:ERROR_SNIPPET], None
    if 200 <= response.status_code < 300:
        return response.status_code, None, None
    snippet = response.text[:ERROR_SNIPPET]
    retry_after = parse_retry_after(response.headers.get("retry-after"), utcnow())
    return response.status_code, f"HTTP {response.status_code}: {snippet}", retry_after


async def push_report(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    client: httpx.AsyncClient,
    enterprise_id: uuid.UUID,
    period: Period,
    *,
    trigger: Trigger,
    stop: asyncio.Event | None = None,
    clock: Clock = utcnow,
) -> PushOutcome:
    """Push one enterprise's month: build it, then send until delivered, refused, or out of
    retries. Each attempt is committed as it ends, so a crash leaves a true record."""
    url, secret = _destination(settings)
    lease = _lease(settings)
    async with sessionmaker() as session:
        push = await cloud.claim_push(
            session, enterprise_id, period, trigger=trigger, now=clock(), lease=lease
        )
        if push is None:
            found = await cloud.push_of(session, enterprise_id, period)
            delivered = found is not None and found.status == "delivered"
            return PushOutcome(
                enterprise_id, period.month, "already_delivered" if delivered else "in_progress"
            )
        document = await cloud.enterprise_report(session, enterprise_id, period, clock())
        body = encode(document)
        await cloud.keep_document(session, push, document, body)
        push_id, key = push.id, push.idempotency_key
        await session.commit()

    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": key,
        SIGNATURE_HEADER: sign(secret, body),
        "X-Scrapflow-Schema-Version": str(document["schema_version"]),
    }
    attempts = 1 + settings.industrial_cloud_retries
    for attempt in range(1, attempts + 1):
        started, at = time.monotonic(), clock()
        code, error, retry_after = await _send(
            client, url, body, {**headers, "X-Scrapflow-Attempt": str(attempt)}
        )
        async with sessionmaker() as session:
            await cloud.record_attempt(
                session,
                push_id,
                at=at,
                status_code=code,
                error=error,
                duration_ms=round((time.monotonic() - started) * 1000),
                lease=lease,
            )
            await session.commit()
        outcome = verdict(code)
        if outcome is Verdict.retry and attempt < attempts:
            delay = retry_delay(
                attempt,
                settings.industrial_cloud_backoff_seconds,
                settings.industrial_cloud_max_backoff_seconds,
                retry_after,
                jitter=0.5 + secrets.randbelow(501) / 1000,
            )
            log.info(
                "industrial-cloud push of %s %s: attempt %d failed (%s); retrying in %.1f s",
                enterprise_id,
                period.month,
                attempt,
                error,
                delay,
            )
            await _pause(stop, delay)
            if stop is not None and stop.is_set():
                async with sessionmaker() as session:
                    await cloud.release_push(session, push_id)
                    await session.commit()
                return PushOutcome(enterprise_id, period.month, "stopped", attempt, code, error)
            continue
        delivered = outcome is Verdict.delivered
        async with sessionmaker() as session:
            await cloud.finish_push(
                session, push_id, delivered=delivered, now=clock(), attempts=attempt
            )
            await session.commit()
        status = "delivered" if delivered else "failed"
        log_at = logging.INFO if delivered else logging.WARNING
        log.log(log_at, "industrial-cloud push of %s %s: %s", enterprise_id, period.month, status)
        return PushOutcome(enterprise_id, period.month, status, attempt, code, error)
    raise AssertionError("unreachable: the last attempt always ends the push")


def _client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.industrial_cloud_timeout_seconds, follow_redirects=False
    )


async def push_period(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    period: Period,
    enterprise_ids: Sequence[uuid.UUID] | None = None,
    *,
    trigger: Trigger = Trigger.cli,
    stop: asyncio.Event | None = None,
    clock: Clock = utcnow,
    on_pushed: Callable[[PushOutcome], Any] | None = None,
) -> list[PushOutcome]:
    """Push the month's reports of the given enterprises (default: every enterprise registered
    before the month ended), one after another. Delivered ones are not sent again."""
    _destination(settings)  # refuse at once when not configured
    if enterprise_ids is None:
        async with sessionmaker() as session:
            enterprise_ids = await cloud.enterprises_to_report(session, period)
    outcomes = []
    async with _client(settings) as client:
        for enterprise_id in enterprise_ids:
            if stop is not None and stop.is_set():
                break
            outcome = await push_report(
                sessionmaker,
                settings,
                client,
                enterprise_id,
                period,
                trigger=trigger,
                stop=stop,
                clock=clock,
            )
            outcomes.append(outcome)
            if on_pushed is not None:
                await on_pushed(outcome)
    return outcomes


async def push_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime,
    stop: asyncio.Event | None = None,
) -> list[PushOutcome] | None:
    """The schedule: once the previous month is over (and its grace period), push it, once.
    None when there is nothing to do (too early, done, or another worker is on it)."""
    period = previous_period(now)
    if now < period.end + timedelta(hours=settings.industrial_cloud_grace_hours):
        return None
    lease = _lease(settings) * (1 + settings.industrial_cloud_retries)
    async with sessionmaker() as session:
        taken = await cloud.claim_schedule(session, period, now=now, lease=lease)
        await session.commit()
    if not taken:
        return None
    log.info("industrial-cloud schedule: pushing %s", period.month)

    async def keep_claim(outcome: PushOutcome) -> None:
        async with sessionmaker() as session:
            await cloud.extend_schedule(session, period, now=utcnow(), lease=lease)
            await session.commit()

    outcomes = await push_period(
        sessionmaker, settings, period, trigger=Trigger.schedule, stop=stop, on_pushed=keep_claim
    )
    if stop is not None and stop.is_set():
        return outcomes  # unfinished: another run takes the month on when the claim runs out
    async with sessionmaker() as session:
        await cloud.finish_schedule(session, period, now=utcnow())
        await session.commit()
    return outcomes
