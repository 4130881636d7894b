"""Webhooks: enterprise admins (and platform admins) subscribe their systems to the events that
touch their enterprise; the relay delivers them signed, in order, at least once."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Request, Response

from api.deps import (
    ENTERPRISE_MANAGERS,
    AppSettings,
    CurrentActor,
    InvalidCursor,
    PageParams,
    Session,
    encode_cursor,
    require,
)
from api.limits import PageSize
from api.problems import responses
from api.routes import resource_router
from api.schemas.common import Page
from api.schemas.webhooks import (
    DeliveryOut,
    DeliveryPage,
    DisableIn,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
)
from api.uow import Idempotent, keeps_secrets
from domain.webhooks import service as webhooks
from domain.webhooks.rules import DeliveryStatus
from domain.webhooks.service import SecretVault

router = resource_router("webhooks")
_managers = require(*ENTERPRISE_MANAGERS)


def _vault(request: Request) -> SecretVault:
    vault: SecretVault = request.app.state.vault
    return vault


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    dependencies=[_managers, Idempotent, keeps_secrets("secret")],
    responses=responses(401, 403, 404, 409, 422),
    summary="Subscribe a URL to the enterprise's events; the signing secret is in this response"
    " only",
)
async def create(
    body: WebhookCreate,
    request: Request,
    session: Session,
    actor: CurrentActor,
    settings: AppSettings,
    response: Response,
) -> WebhookCreated:
    subscription, secret = await webhooks.create_subscription(
        session,
        actor,
        _vault(request),
        url=body.url,
        event_types=body.event_types,
        enterprise_id=body.enterprise_id,
        description=body.description,
        allow_private=settings.webhook_allow_private_destinations,
    )
    response.headers["Location"] = f"/api/v1/webhooks/{subscription.id}"
    return WebhookCreated.model_validate({**subscription.model_dump(), "secret": secret})


@router.get(
    "/webhooks",
    response_model=Page[WebhookOut],
    dependencies=[_managers],
    responses=responses(401, 403, 422),
    summary="The enterprise's webhooks (platform admins: all, or one enterprise's)",
)
async def list_webhooks(
    session: Session,
    actor: CurrentActor,
    page: PageParams,
    enterprise_id: uuid.UUID | None = None,
) -> Page[WebhookOut]:
    rows, after = await webhooks.list_subscriptions(
        session, actor, enterprise_id=enterprise_id, after=page.after, limit=page.limit
    )
    return Page(items=[WebhookOut.of(s) for s in rows], next_cursor=encode_cursor(after))


@router.get(
    "/webhooks/{webhook_id}",
    response_model=WebhookOut,
    dependencies=[_managers],
    responses=responses(401, 403, 404, 422),
    summary="One webhook: status, failures in a row, why it was disabled",
)
async def get_webhook(webhook_id: uuid.UUID, session: Session, actor: CurrentActor) -> WebhookOut:
    return WebhookOut.of(await webhooks.get_subscription(session, actor, webhook_id))


@router.post(
    "/webhooks/{webhook_id}/disable",
    response_model=WebhookOut,
    dependencies=[_managers, Idempotent],
    responses=responses(401, 403, 404, 422),
    summary="Stop sending (idempotent); queued deliveries wait for the webhook to be enabled",
)
async def disable(
    webhook_id: uuid.UUID, session: Session, actor: CurrentActor, body: DisableIn | None = None
) -> WebhookOut:
    reason = body.reason if body is not None else None
    return WebhookOut.of(await webhooks.disable_subscription(session, actor, webhook_id, reason))


@router.post(
    "/webhooks/{webhook_id}/enable",
    response_model=WebhookOut,
    dependencies=[_managers, Idempotent],
    responses=responses(401, 403, 404, 422),
    summary="Send again (idempotent): failed and queued deliveries now, in order, then the events"
    " sealed meanwhile",
)
async def enable(webhook_id: uuid.UUID, session: Session, actor: CurrentActor) -> WebhookOut:
    return WebhookOut.of(await webhooks.enable_subscription(session, actor, webhook_id))


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    dependencies=[_managers],
    responses=responses(401, 403, 404, 422),
    summary="Deliveries, newest event first, with every attempt (time, status code or error,"
    " duration)",
)
async def deliveries(
    webhook_id: uuid.UUID,
    session: Session,
    actor: CurrentActor,
    limit: PageSize,
    status: Annotated[DeliveryStatus | None, Query(description="Only in this status")] = None,
    cursor: Annotated[
        str | None, Query(max_length=20, description="next_cursor of the previous page")
    ] = None,
) -> DeliveryPage:
    if cursor is not None and not cursor.isdigit():
        raise InvalidCursor(
            "cursor is not one this service returned; pass next_cursor unchanged",
            errors=[{"pointer": "/cursor", "detail": "malformed", "location": "query"}],
        )
    views, before = await webhooks.list_deliveries(
        session,
        actor,
        webhook_id,
        status=status,
        before_seq=None if cursor is None else int(cursor),
        limit=limit,
    )
    return DeliveryPage(
        items=[DeliveryOut.of(v) for v in views],
        next_cursor=None if before is None else str(before),
    )


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
    response_model=DeliveryOut,
    dependencies=[_managers, Idempotent],
    responses=responses(401, 403, 404, 409, 422),
    summary="Send a pending or failed delivery now (those queued before it go first)",
)
async def retry(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, session: Session, actor: CurrentActor
) -> DeliveryOut:
    return DeliveryOut.of(await webhooks.retry_delivery(session, actor, webhook_id, delivery_id))
