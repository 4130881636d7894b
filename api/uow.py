"""The unit of work is the request: one session per request, committed before the response is
sent (so an acknowledged write is durable) and rolled back on any error.

FastAPI runs the teardown of yield-dependencies after the response is sent, too late to report a
failed commit; so the transaction lives in this route class instead. It also stores the response of
an idempotent request in the same transaction as the write it describes."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.routing import APIRoute

from api import query
from api.deps import CurrentActor
from domain.actor import Actor
from domain.errors import DomainError, InvalidInput
from integrations import idempotency


class _Replay(Exception):
    def __init__(self, stored: idempotency.StoredResponse):
        self.stored = stored


class UnitOfWorkRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        single = query.single_valued(self.dependant)

        async def in_transaction(request: Request) -> Response:
            query.refuse_repeated(request, single)
            async with request.app.state.sessionmaker() as session:
                request.state.session = session
                try:
                    response = await handler(request)
                except _Replay as replay:
                    await session.rollback()
                    return _replayed(replay.stored)
                except DomainError as error:
                    if error.keeps_writes:
                        await session.commit()
                    raise
                if response.status_code >= 400:
                    await session.rollback()
                    return response
                claim: idempotency.Claim | None = getattr(request.state, "idempotency", None)
                if claim is not None:
                    await idempotency.remember(
                        session,
                        claim,
                        response.status_code,
                        dict(response.headers),
                        _without_secrets(request, bytes(response.body)),
                    )
                await session.commit()
                if getattr(request.state, "forget_principals", False):
                    request.app.state.principals.clear()
                return response

        return in_transaction


def _without_secrets(request: Request, body: bytes) -> bytes:
    """Secrets are shown once and never stored, not even inside a remembered response."""
    fields: tuple[str, ...] = getattr(request.state, "secret_fields", ())
    if not fields:
        return body
    document = json.loads(body)
    for field in fields:
        document[field] = None
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def keeps_secrets(*fields: str) -> Any:
    """Dependency for routes whose response carries a one-time secret."""

    async def mark(request: Request) -> None:
        request.state.secret_fields = fields

    return Depends(mark)


def _replayed(stored: idempotency.StoredResponse) -> Response:
    return Response(
        content=stored.body,
        status_code=stored.status_code,
        headers={**stored.headers, "Idempotent-Replayed": "true"},
    )


async def idempotent(
    request: Request,
    actor: CurrentActor,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Any unique string (a UUID is best). A retry with the same key and body "
            "replays the first response; with another body it is 422; while the first is still "
            "running it is 409. Keys are kept 24 hours, per principal.",
            max_length=idempotency.MAX_KEY_LENGTH,
        ),
    ] = None,
) -> Actor:
    """Dependency for creating POSTs; gives the caller."""
    if key is None:
        return actor
    if not key.strip() or not key.isprintable():
        raise InvalidInput("Idempotency-Key must be printable and not blank")
    if actor.principal_id is None:
        return actor
    claim = idempotency.Claim(
        principal_id=actor.principal_id,
        key=key,
        fingerprint=idempotency.fingerprint(request.method, request.url.path, await request.body()),
    )
    ttl = timedelta(hours=request.app.state.settings.idempotency_ttl_hours)
    stored = await idempotency.claim(request.state.session, claim, ttl)
    if stored is not None:
        raise _Replay(stored)
    request.state.idempotency = claim
    return actor


Idempotent = Depends(idempotent)
# The caller of a creating POST, its Idempotency-Key claimed: one dependency instead of
# `Idempotent` beside `CurrentActor`, which FastAPI would solve twice (the hot write routes).
IdempotentActor = Annotated[Actor, Idempotent]
