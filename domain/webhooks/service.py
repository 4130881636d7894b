"""Webhook use cases: subscriptions managed by enterprise admins, and the relay's bookkeeping.

Delivery is at least once and in sequence order per subscription:
- `plan` turns the sealed events after a subscription's cursor into delivery rows, committed
  before anything is sent;
- `claim` leases subscriptions whose queue head is due, so that one relay at a time (in whichever
  process) works a subscription;
- the relay sends the head (`next_outbound`), then `record_attempt` marks it delivered on a 2xx, or
  schedules the next attempt. The head blocks the queue until it is delivered; sustained failure
  disables the subscription (its head is then `failed`) and enabling it resumes from that head.
A relay that stops between sending and recording leaves the delivery pending: it is sent again,
with the same `webhook-id`, once the lease runs out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import SYSTEM, Actor, PrincipalKind, Role
from domain.audit import service as audit
from domain.audit.models import Event
from domain.base import utcnow
from domain.errors import Conflict, InvalidInput, NotFound
from domain.ids import new_id
from domain.registry.service import get_enterprise, require_enterprise_admin
from domain.webhooks.models import Delivery, DeliveryAttempt, Subscription
from domain.webhooks.rules import (
    GONE,
    DeliveryStatus,
    SubscriptionStatus,
    accepted,
    check_destination,
    message_id,
    new_secret,
    normalise_event_types,
    origin_of,
    retry_delay,
    should_disable,
    type_patterns,
)
from domain.webhooks.rules import DestinationRefused as _Refused

MAX_ACTIVE_SUBSCRIPTIONS = 20  # per enterprise


class DestinationRefused(InvalidInput):
    code = "destination_refused"
    title = "The webhook URL is not an allowed destination"


class InvalidEventTypes(InvalidInput):
    code = "invalid_event_types"
    title = "Unknown event type pattern"


class TooManyWebhooks(Conflict):
    code = "too_many_webhooks"
    title = "The enterprise has as many active webhooks as allowed"


class AlreadyDelivered(Conflict):
    code = "already_delivered"
    title = "The delivery has been delivered"


class WebhookDisabled(Conflict):
    code = "webhook_disabled"
    title = "The webhook is disabled"


class SecretVault(Protocol):
    """Authenticated encryption of secrets at rest (AES-GCM in `integrations`)."""

    def seal(self, plaintext: bytes, context: bytes) -> bytes: ...

    def open(self, sealed: bytes, context: bytes) -> bytes: ...


def secret_context(subscription_id: uuid.UUID) -> bytes:
    """Associated data of a sealed secret: it opens for its own subscription only."""
    return b"webhook-secret:" + subscription_id.bytes


# --- subscriptions ----------------------------------------------------------------------------


def subscription_visible_to(actor: Actor) -> ColumnElement[bool]:
    """Platform admins see every subscription; an enterprise its own (the route lets admins in)."""
    if actor.is_platform_admin:
        return true()
    if actor.enterprise_id is not None:
        return col(Subscription.enterprise_id) == actor.enterprise_id
    return col(Subscription.id).is_(None)


async def head_seq(session: AsyncSession) -> int:
    """The last sealed sequence number (sealed events form a gapless prefix)."""
    return int(await session.scalar(select(func.coalesce(func.max(Event.seq), 0))) or 0)


async def create_subscription(
    session: AsyncSession,
    actor: Actor,
    vault: SecretVault,
    *,
    url: str,
    event_types: Sequence[str],
    enterprise_id: uuid.UUID | None = None,
    description: str | None = None,
    allow_private: bool = False,
) -> tuple[Subscription, str]:
    """A subscription of the enterprise to the events that touch it, sealed after now; and its
    signing secret, which is returned this once and only stored sealed."""
    owner = enterprise_id or actor.enterprise_id
    if owner is None:
        raise InvalidInput(
            "a platform admin names the enterprise the webhook is for",
            errors=[{"pointer": "/enterprise_id", "detail": "required for platform admins"}],
        )
    await get_enterprise(session, actor, owner)
    require_enterprise_admin(actor, owner)
    try:
        types = normalise_event_types(event_types)
    except ValueError as error:
        raise InvalidEventTypes(
            str(error), errors=[{"pointer": "/event_types", "detail": str(error)}]
        ) from error
    try:
        check_destination(url, allow_private=allow_private)
    except _Refused as error:
        raise DestinationRefused(
            str(error), errors=[{"pointer": "/url", "detail": str(error)}]
        ) from error
    active = await session.scalar(
        select(func.count())
        .select_from(Subscription)
        .where(
            col(Subscription.enterprise_id) == owner,
            col(Subscription.status) == SubscriptionStatus.active.value,
        )
    )
    if (active or 0) >= MAX_ACTIVE_SUBSCRIPTIONS:
        raise TooManyWebhooks(
            f"an enterprise has at most {MAX_ACTIVE_SUBSCRIPTIONS} active webhooks; disable one"
        )
    subscription_id = new_id()
    secret = new_secret()
    subscription = Subscription(
        id=subscription_id,
        enterprise_id=owner,
        url=url,
        description=description,
        event_types=types,
        secret_sealed=vault.seal(secret.encode(), secret_context(subscription_id)),
        created_by=actor.principal_id,
        cursor_seq=await head_seq(session),
    )
    session.add(subscription)
    await session.flush()
    await audit.record(
        session,
        actor,
        "webhook.created",
        subject_type="webhook",
        subject_id=subscription_id,
        enterprise_ids=[owner],
        payload={"origin": origin_of(url), "event_types": types},
    )
    return subscription, secret


async def get_subscription(
    session: AsyncSession, actor: Actor, subscription_id: uuid.UUID, *, lock: bool = False
) -> Subscription:
    query = select(Subscription).where(
        col(Subscription.id) == subscription_id, subscription_visible_to(actor)
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    subscription = await session.scalar(query)
    if subscription is None:
        raise NotFound(f"webhook {subscription_id} not found")
    return subscription


async def list_subscriptions(
    session: AsyncSession,
    actor: Actor,
    *,
    enterprise_id: uuid.UUID | None = None,
    after: uuid.UUID | None,
    limit: int,
) -> tuple[Sequence[Subscription], uuid.UUID | None]:
    query = select(Subscription).where(subscription_visible_to(actor))
    if enterprise_id is not None:
        query = query.where(col(Subscription.enterprise_id) == enterprise_id)
    if after is not None:
        query = query.where(col(Subscription.id) > after)
    rows = (await session.scalars(query.order_by(col(Subscription.id)).limit(limit + 1))).all()
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def _disable(subscription: Subscription, now: datetime, reason: str) -> None:
    subscription.status = SubscriptionStatus.disabled.value
    subscription.disabled_at = now
    subscription.disabled_reason = reason[:500]
    subscription.updated_at = now
    subscription.lease_until = None
    subscription.lease_owner = None


async def disable_subscription(
    session: AsyncSession, actor: Actor, subscription_id: uuid.UUID, reason: str | None = None
) -> Subscription:
    """Stop sending (idempotent). Queued deliveries stay queued for when it is enabled again."""
    subscription = await get_subscription(session, actor, subscription_id, lock=True)
    require_enterprise_admin(actor, subscription.enterprise_id)
    if subscription.status == SubscriptionStatus.active.value:
        _disable(subscription, utcnow(), reason or "disabled by an admin")
        await session.flush()
        await audit.record(
            session,
            actor,
            "webhook.disabled",
            subject_type="webhook",
            subject_id=subscription.id,
            enterprise_ids=[subscription.enterprise_id],
            payload={"reason": subscription.disabled_reason},
        )
    return subscription


async def enable_subscription(
    session: AsyncSession, actor: Actor, subscription_id: uuid.UUID
) -> Subscription:
    """Send again (idempotent): from the delivery that was failing, in order, at once; then the
    events sealed while it was disabled."""
    subscription = await get_subscription(session, actor, subscription_id, lock=True)
    require_enterprise_admin(actor, subscription.enterprise_id)
    if subscription.status == SubscriptionStatus.active.value:
        return subscription
    now = utcnow()
    subscription.status = SubscriptionStatus.active.value
    subscription.disabled_at = None
    subscription.disabled_reason = None
    subscription.consecutive_failures = 0
    subscription.failing_since = None
    subscription.updated_at = now
    await session.execute(
        update(Delivery)
        .where(
            col(Delivery.subscription_id) == subscription.id,
            col(Delivery.status).in_([DeliveryStatus.pending.value, DeliveryStatus.failed.value]),
        )
        .values(status=DeliveryStatus.pending.value, next_attempt_at=now)
    )
    await session.flush()
    await audit.record(
        session,
        actor,
        "webhook.enabled",
        subject_type="webhook",
        subject_id=subscription.id,
        enterprise_ids=[subscription.enterprise_id],
        payload={},
    )
    return subscription


# --- deliveries as their owners see them --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryView:
    delivery: Delivery
    attempts: Sequence[DeliveryAttempt]


async def list_deliveries(
    session: AsyncSession,
    actor: Actor,
    subscription_id: uuid.UUID,
    *,
    status: DeliveryStatus | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> tuple[list[DeliveryView], int | None]:
    """Newest event first, with every attempt; and the event seq to continue before."""
    await get_subscription(session, actor, subscription_id)
    query = select(Delivery).where(col(Delivery.subscription_id) == subscription_id)
    if status is not None:
        query = query.where(col(Delivery.status) == status.value)
    if before_seq is not None:
        query = query.where(col(Delivery.event_seq) < before_seq)
    rows = (
        await session.scalars(query.order_by(col(Delivery.event_seq).desc()).limit(limit + 1))
    ).all()
    page = rows[:limit]
    attempts: dict[uuid.UUID, list[DeliveryAttempt]] = {d.id: [] for d in page}
    if page:
        for attempt in await session.scalars(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.delivery_id).in_(list(attempts)))
            .order_by(col(DeliveryAttempt.attempted_at), col(DeliveryAttempt.id))
        ):
            attempts[attempt.delivery_id].append(attempt)
    views = [DeliveryView(d, attempts[d.id]) for d in page]
    return views, (page[-1].event_seq if len(rows) > limit else None)


async def retry_delivery(
    session: AsyncSession, actor: Actor, subscription_id: uuid.UUID, delivery_id: uuid.UUID
) -> DeliveryView:
    """Send a pending or failed delivery now. Order still holds: the deliveries queued before it
    are made due now as well, and go first."""
    subscription = await get_subscription(session, actor, subscription_id, lock=True)
    require_enterprise_admin(actor, subscription.enterprise_id)
    delivery = await session.scalar(
        select(Delivery).where(
            col(Delivery.id) == delivery_id, col(Delivery.subscription_id) == subscription_id
        )
    )
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} not found")
    if delivery.status == DeliveryStatus.delivered.value:
        raise AlreadyDelivered(f"delivery {delivery_id} was delivered at {delivery.delivered_at}")
    if subscription.status != SubscriptionStatus.active.value:
        raise WebhookDisabled(
            "the webhook is disabled: enable it, which retries its failed deliveries in order"
        )
    now = utcnow()
    await session.execute(
        update(Delivery)
        .where(
            col(Delivery.subscription_id) == subscription_id,
            col(Delivery.status).in_([DeliveryStatus.pending.value, DeliveryStatus.failed.value]),
            col(Delivery.event_seq) <= delivery.event_seq,
        )
        .values(status=DeliveryStatus.pending.value, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(delivery)
    attempts = (
        await session.scalars(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.delivery_id) == delivery.id)
            .order_by(col(DeliveryAttempt.attempted_at), col(DeliveryAttempt.id))
        )
    ).all()
    return DeliveryView(delivery, attempts)


# --- the relay's side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    schedule: Sequence[float]
    disable_after_failures: int
    disable_after: timedelta
    lease: timedelta


def _subscriber(enterprise_id: uuid.UUID) -> Actor:
    """Who a subscription receives events as: its enterprise, seeing what the audit trail shows
    that enterprise."""
    return Actor(
        principal_id=None,
        principal_kind=PrincipalKind.system,
        role=Role.viewer,
        enterprise_id=enterprise_id,
    )


def _type_filter(event_types: Sequence[str]) -> ColumnElement[bool]:
    everything, exact, prefixes = type_patterns(event_types)
    if everything:
        return true()
    return or_(
        col(Event.type).in_(exact),
        *(col(Event.type).startswith(p, autoescape=True) for p in prefixes),
    )


async def plan(
    session: AsyncSession, *, now: datetime, subscriptions: int = 100, events: int = 1000
) -> int:
    """Queue the sealed events after each active subscription's cursor that it receives; move
    the cursor past what was considered. Returns the number of deliveries queued."""
    head = await head_seq(session)
    behind = (
        await session.scalars(
            select(Subscription)
            .where(
                col(Subscription.status) == SubscriptionStatus.active.value,
                col(Subscription.cursor_seq) < head,
            )
            .order_by(col(Subscription.cursor_seq))
            .limit(subscriptions)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    ).all()
    queued = 0
    for subscription in behind:
        found = await session.execute(
            select(col(Event.id), col(Event.seq), col(Event.type))
            .where(
                col(Event.seq) > subscription.cursor_seq,
                col(Event.seq) <= head,
                audit.event_visible_to(_subscriber(subscription.enterprise_id)),
                _type_filter(subscription.event_types),
            )
            .order_by(col(Event.seq))
            .limit(events)
        )
        rows = [(int(i or 0), int(q or 0), t) for i, q, t in found]
        if rows:
            await session.execute(
                insert(Delivery)
                .values(
                    [
                        {
                            "id": new_id(),
                            "subscription_id": subscription.id,
                            "enterprise_id": subscription.enterprise_id,
                            "event_seq": seq,
                            "event_id": event_id,
                            "event_type": event_type,
                            "webhook_id": message_id(subscription.id, event_id),
                            "status": DeliveryStatus.pending.value,
                            "attempts": 0,
                            "next_attempt_at": now,
                        }
                        for event_id, seq, event_type in rows
                    ]
                )
                .on_conflict_do_nothing()
            )
            queued += len(rows)
        subscription.cursor_seq = rows[-1][1] if len(rows) == events else head
    await session.flush()
    return queued


async def claim(
    session: AsyncSession, owner: uuid.UUID, *, now: datetime, lease: timedelta, limit: int
) -> list[uuid.UUID]:
    """Lease up to `limit` active subscriptions whose queue head is due and that no relay holds."""
    if limit <= 0:
        return []
    head_due = (
        select(col(Delivery.next_attempt_at))
        .where(
            col(Delivery.subscription_id) == col(Subscription.id),
            col(Delivery.status) == DeliveryStatus.pending.value,
        )
        .order_by(col(Delivery.event_seq))
        .limit(1)
        .scalar_subquery()
    )
    ids = list(
        (
            await session.scalars(
                select(col(Subscription.id))
                .where(
                    col(Subscription.status) == SubscriptionStatus.active.value,
                    or_(
                        col(Subscription.lease_until).is_(None),
                        col(Subscription.lease_until) < now,
                    ),
                    head_due <= now,
                )
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )
    if ids:
        await session.execute(
            update(Subscription)
            .where(col(Subscription.id).in_(ids))
            .values(lease_until=now + lease, lease_owner=owner)
            .execution_options(synchronize_session=False)
        )
    return ids


@dataclass(frozen=True, slots=True)
class Outbound:
    """What the relay needs to send one delivery."""

    subscription_id: uuid.UUID
    delivery_id: uuid.UUID
    webhook_id: str
    url: str
    secret_sealed: bytes
    event: Event


async def next_outbound(
    session: AsyncSession, subscription_id: uuid.UUID, owner: uuid.UUID, *, now: datetime
) -> Outbound | None:
    """The head of the subscription's queue if it is due and the lease is still `owner`'s."""
    subscription = await session.scalar(
        select(Subscription)
        .where(
            col(Subscription.id) == subscription_id,
            col(Subscription.status) == SubscriptionStatus.active.value,
            col(Subscription.lease_owner) == owner,
            col(Subscription.lease_until) > now,
        )
        .execution_options(populate_existing=True)
    )
    if subscription is None:
        return None
    delivery = await session.scalar(
        select(Delivery)
        .where(
            col(Delivery.subscription_id) == subscription_id,
            col(Delivery.status) == DeliveryStatus.pending.value,
        )
        .order_by(col(Delivery.event_seq))
        .limit(1)
        .execution_options(populate_existing=True)
    )
    if delivery is None or delivery.next_attempt_at > now:
        return None
    event = await session.get_one(Event, delivery.event_id)
    return Outbound(
        subscription_id=subscription_id,
        delivery_id=delivery.id,
        webhook_id=delivery.webhook_id,
        url=subscription.url,
        secret_sealed=subscription.secret_sealed,
        event=event,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: the receiver's status code, or why there was none."""

    attempted_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    retry_after: timedelta | None = field(default=None)

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and accepted(self.status_code)


async def record_attempt(
    session: AsyncSession,
    outbound: Outbound,
    owner: uuid.UUID,
    outcome: Outcome,
    policy: RelayPolicy,
    *,
    now: datetime,
) -> Delivery:
    """Write the attempt and its consequence: delivered; or the next attempt scheduled (the
    schedule's step, or the receiver's Retry-After if longer); or, after sustained failure or a
    410 Gone, the subscription disabled and this delivery failed. Renews `owner`'s lease."""
    subscription = await session.scalar(
        select(Subscription)
        .where(col(Subscription.id) == outbound.subscription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    delivery = await session.scalar(
        select(Delivery)
        .where(col(Delivery.id) == outbound.delivery_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert subscription is not None
    assert delivery is not None
    session.add(
        DeliveryAttempt(
            delivery_id=delivery.id,
            enterprise_id=delivery.enterprise_id,
            attempted_at=outcome.attempted_at,
            status_code=outcome.status_code,
            error=None if outcome.error is None else outcome.error[:500],
            duration_ms=outcome.duration_ms,
        )
    )
    delivery.attempts += 1
    delivery.last_attempt_at = outcome.attempted_at
    delivery.last_status = outcome.status_code
    delivery.last_error = None if outcome.error is None else outcome.error[:500]
    if outcome.delivered:
        delivery.status = DeliveryStatus.delivered.value
        delivery.delivered_at = now
        subscription.consecutive_failures = 0
        subscription.failing_since = None
    elif delivery.status == DeliveryStatus.pending.value:
        subscription.consecutive_failures += 1
        if subscription.failing_since is None:
            subscription.failing_since = outcome.attempted_at
        delivery.next_attempt_at = now + retry_delay(
            subscription.consecutive_failures, policy.schedule, outcome.retry_after
        )
        reason = _give_up(subscription, outcome, policy, now)
        if reason is not None and subscription.status == SubscriptionStatus.active.value:
            delivery.status = DeliveryStatus.failed.value
            _disable(subscription, now, reason)
            await session.flush()
            await audit.record(
                session,
                SYSTEM,
                "webhook.disabled",
                subject_type="webhook",
                subject_id=subscription.id,
                enterprise_ids=[subscription.enterprise_id],
                payload={"reason": subscription.disabled_reason, "automatic": True},
            )
    if subscription.lease_owner == owner:
        subscription.lease_until = now + policy.lease
    await session.flush()
    return delivery


def _give_up(
    subscription: Subscription, outcome: Outcome, policy: RelayPolicy, now: datetime
) -> str | None:
    if outcome.status_code == GONE:
        return "the receiver answered 410 Gone"
    if should_disable(
        subscription.consecutive_failures,
        subscription.failing_since,
        now,
        after_failures=policy.disable_after_failures,
        after=policy.disable_after,
    ):
        return (
            f"{subscription.consecutive_failures} failed attempts in a row since "
            f"{subscription.failing_since:%Y-%m-%dT%H:%M:%SZ}"
        )
    return None


async def release(session: AsyncSession, subscription_id: uuid.UUID, owner: uuid.UUID) -> None:
    """Give the lease back, so that another relay may take the subscription at once."""
    await session.execute(
        update(Subscription)
        .where(col(Subscription.id) == subscription_id, col(Subscription.lease_owner) == owner)
        .values(lease_until=None, lease_owner=None)
        .execution_options(synchronize_session=False)
    )
