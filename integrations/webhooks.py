"""The webhook relay: sealed events to enterprises' endpoints, signed as Standard Webhooks
(https://www.standardwebhooks.com) specifies.

Each request carries `webhook-id` (the same on every attempt at one event for one subscription),
`webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`: `v1,` + base64 of
HMAC-SHA256, keyed with the base64-decoded secret after `whsec_`, over `{id}.{timestamp}.{body}`.
The body is `{"type", "timestamp", "data"}` where `data` is the sealed event as the audit trail
shows it (with its seq and chain hashes).

Order and delivery guarantees (see domain/webhooks/service.py): per subscription, strictly in
sequence order, one request at a time, the head retried until it is delivered or the subscription
is disabled; subscriptions are sent to concurrently. At least once: a delivery row is committed
before its first request and marked delivered only after a 2xx, so a relay stopped in between
sends it again with the same `webhook-id` once its lease has run out. Receivers drop duplicates
by `webhook-id`.

Destinations are checked again when sending: the host name is resolved, every address must be
public (unless settings allow private ones), and the request goes to the checked address (with
the original Host and TLS server name), so a name cannot be re-pointed in between."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import socket
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.audit.models import Event
from domain.base import utcnow
from domain.retry import next_backoff
from domain.webhooks import service as webhooks
from domain.webhooks.rules import parse_retry_after, public_address, secret_key
from domain.webhooks.service import Outbound, Outcome, RelayPolicy, SecretVault
from integrations.settings import Settings

log = logging.getLogger("scrapflow.webhooks")
USER_AGENT = "scrapflow-webhooks/1"
ERROR_SNIPPET = 200  # bytes of a refusing receiver's answer kept with the attempt
PLAN_SUBSCRIPTIONS = 100
PLAN_EVENTS = 1000


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def event_body(event: Event) -> bytes:
    """The JSON body for an event: the same bytes on every attempt."""
    assert event.hash is not None
    assert event.prev_hash is not None
    data: dict[str, Any] = {
        "seq": event.seq,
        "id": event.id,
        "type": event.type,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "actor_kind": event.actor_kind,
        "actor_principal_id": event.actor_principal_id,
        "actor_role": event.actor_role,
        "actor_enterprise_id": event.actor_enterprise_id,
        "actor_authority_id": event.actor_authority_id,
        "request_id": event.request_id,
        "enterprise_ids": event.enterprise_ids,
        "facility_ids": event.facility_ids,
        "lot_ids": event.lot_ids,
        "region_codes": event.region_codes,
        "occurred_at": event.occurred_at,
        "payload": event.payload,
        "prev_hash": event.prev_hash.hex(),
        "hash": event.hash.hex(),
    }
    envelope = {"type": event.type, "timestamp": event.occurred_at, "data": data}
    return orjson.dumps(envelope, default=_uuid_text, option=orjson.OPT_SORT_KEYS)


def _uuid_text(value: Any) -> str:
    """The driver's own UUID type (inside arrays) as its text."""
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


class PrivateAddress(Exception):
    pass


async def _pinned(url: str, allow_private: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL to request, with the Host header and TLS server name to send: the host name is
    resolved once here and every address must be public; the request goes to the address
    checked, not to a second resolution."""
    if allow_private:
        return url, {}, {}
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    refused = [a for a in addresses if not public_address(a)]
    if not addresses or refused:
        raise PrivateAddress(
            f"{host} resolves to {refused[0] if refused else 'nothing'}: private, loopback,"
            " link-local, multicast and reserved addresses are refused"
        )
    address = addresses[0]
    netloc = f"[{address}]" if ":" in address else address
    if parts.port is not None:
        netloc += f":{parts.port}"
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}, extensions


async def _snippet(response: httpx.Response) -> str:
    """The start of a refusing receiver's answer, read no further (it could be endless)."""
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= ERROR_SNIPPET:
            break
    return kept[:ERROR_SNIPPET].decode("utf-8", "replace")


async def send(
    client: httpx.AsyncClient, outbound: Outbound, secret: str, settings: Settings
) -> Outcome:
    """One attempt, within the timeout (resolution included); never raises for the receiver's
    or the network's faults, which become the outcome."""
    body = event_body(outbound.event)
    attempted_at = utcnow()
    started = time.perf_counter()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": outbound.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, outbound.webhook_id, timestamp, body),
    }
    status: int | None = None
    error: str | None = None
    retry_after: timedelta | None = None
    try:
        async with asyncio.timeout(settings.webhook_timeout_seconds):
            url, host, extensions = await _pinned(
                outbound.url, settings.webhook_allow_private_destinations
            )
            request = client.build_request(
                "POST", url, content=body, headers={**headers, **host}, extensions=extensions
            )
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                # Read (a little of) the answer either way: a drained connection is reused.
                snippet = await _snippet(response)
                if not 200 <= status < 300:
                    error = f"HTTP {status}: {snippet}".strip()
                    retry_after = parse_retry_after(response.headers.get("retry-after"), utcnow())
            finally:
                await response.aclose()
    except TimeoutError:
        error = f"no answer within {settings.webhook_timeout_seconds:g} s"
    except PrivateAddress as refused:
        error = str(refused)
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as failure:
        error = f"{type(failure).__name__}: {failure}".rstrip(": ")
    if status is not None and 200 <= status < 300:
        error = None  # accepted; a slow or broken body after the status line does not matter
    duration_ms = round((time.perf_counter() - started) * 1000)
    return Outcome(attempted_at, duration_ms, status, error, retry_after)


def policy_of(settings: Settings) -> RelayPolicy:
    timeout = settings.webhook_timeout_seconds
    return RelayPolicy(
        schedule=tuple(settings.webhook_retry_schedule_seconds),
        disable_after_failures=settings.webhook_disable_after_failures,
        disable_after=timedelta(hours=settings.webhook_disable_after_hours),
        # Long enough for one attempt and its bookkeeping; a relay that stopped mid-attempt
        # holds its subscriptions no longer than this.
        lease=timedelta(seconds=2 * timeout + 5),
    )


class Relay:
    """One relay process's share of the work: it plans deliveries, leases subscriptions whose
    queue head is due, and works each leased subscription's queue in a task of its own."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: SecretVault,
        settings: Settings,
        client: httpx.AsyncClient,
        stop: asyncio.Event,
    ):
        self.sessionmaker = sessionmaker
        self.vault = vault
        self.settings = settings
        self.client = client
        self.stop = stop
        self.policy = policy_of(settings)
        self.owner = uuid.uuid4()  # this relay's name on its leases
        self.working: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def step(self) -> bool:
        """Plan, then lease and start what is due. True when there is a backlog to plan."""
        async with self.sessionmaker() as session:
            queued = await webhooks.plan(
                session, now=utcnow(), subscriptions=PLAN_SUBSCRIPTIONS, events=PLAN_EVENTS
            )
            await session.commit()
        free = self.settings.webhook_relay_concurrency - len(self.working)
        async with self.sessionmaker() as session:
            claimed = await webhooks.claim(
                session, self.owner, now=utcnow(), lease=self.policy.lease, limit=free
            )
            await session.commit()
        for subscription_id in claimed:
            self.working[subscription_id] = asyncio.create_task(self._work(subscription_id))
        return queued >= PLAN_EVENTS

    async def _work(self, subscription_id: uuid.UUID) -> None:
        try:
            await self._deliver_queue(subscription_id)
        except asyncio.CancelledError:
            self._done(subscription_id)
            raise  # stopped: the lease runs out by itself
        except Exception:
            log.warning("webhook relay failed on %s", subscription_id, exc_info=True)
        try:
            async with self.sessionmaker() as session:
                await webhooks.release(session, subscription_id, self.owner)
                await session.commit()
        except Exception:
            log.warning("could not release the lease of %s", subscription_id, exc_info=True)
        finally:
            self._done(subscription_id)

    def _done(self, subscription_id: uuid.UUID) -> None:
        # Released, the subscription may have been claimed again already: keep the new task.
        if self.working.get(subscription_id) is asyncio.current_task():
            del self.working[subscription_id]

    async def _deliver_queue(self, subscription_id: uuid.UUID) -> None:
        """The subscription's due deliveries, one at a time in sequence order, until the head
        fails (it waits for its next attempt) or nothing is due."""
        while not self.stop.is_set():
            async with self.sessionmaker() as session:
                outbound = await webhooks.next_outbound(
                    session, subscription_id, self.owner, now=utcnow()
                )
            if outbound is None:
                return
            outcome = await self._attempt(outbound)
            async with self.sessionmaker() as session:
                await webhooks.record_attempt(
                    session, outbound, self.owner, outcome, self.policy, now=utcnow()
                )
                await session.commit()
            if not outcome.delivered:
                return

    async def _attempt(self, outbound: Outbound) -> Outcome:
        try:
            secret = self.vault.open(
                outbound.secret_sealed, webhooks.secret_context(outbound.subscription_id)
            ).decode()
        except (InvalidTag, KeyError, IndexError, UnicodeDecodeError):  # a changed key
            log.error("the secret of webhook %s does not open", outbound.subscription_id)
            return Outcome(utcnow(), 0, None, "the signing secret cannot be opened (key changed?)")
        return await send(self.client, outbound, secret, self.settings)

    async def drain(self, *, cancel: bool) -> None:
        tasks = list(self.working.values())
        if cancel:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def client_for(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,  # a redirect is a failed attempt, not a new destination
        trust_env=False,
        limits=httpx.Limits(
            max_connections=settings.webhook_relay_concurrency * 2,
            max_keepalive_connections=settings.webhook_relay_concurrency,
        ),
    )


async def relaying(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: SecretVault,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    """Relay until `stop` is set; then finish the attempts under way. Cancelled, it abandons
    them (they are sent again later). A failure (the database restarting, say) is logged and
    retried with backoff, never fatal. Any number of relays may run, in any processes."""
    interval = settings.webhook_relay_interval_seconds
    backoff = interval
    async with client_for(settings) as client:
        relay = Relay(sessionmaker, vault, settings, client, stop)
        finished = False
        try:
            while not stop.is_set():
                try:
                    backlog = await relay.step()
                except Exception:
                    log.warning(
                        "webhook relay step failed; retrying in %.1f s", backoff, exc_info=True
                    )
                    await _pause(stop, backoff)
                    backoff = next_backoff(backoff)
                    continue
                backoff = interval
                if not backlog:
                    await _pause(stop, interval)
            finished = True
        finally:
            await relay.drain(cancel=not finished)
