"""The application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import problems, worker
from api.deps import PrincipalCache
from api.limits import Limits, document
from api.middleware import RequestContext
from api.routes import (
    audit as audit_routes,
)
from api.routes import (
    auth,
    authorities,
    certificates,
    credits,
    discrepancies,
    enterprises,
    epcis,
    facilities,
    health,
    lots,
    principals,
    reference,
    registers,
    reports,
    shipments,
    statements,
    transformations,
    webhooks,
    weighbridge,
)
from api.schemas.lots import LotBatchCreate
from api.tokens import TokenIssuer
from domain.audit import service as audit
from integrations.database import create_engine, session_factory
from integrations.secrets import file_secret
from integrations.settings import Settings
from integrations.signing import load_signer, trusted_keys
from integrations.vault import AesGcmVault, decode_key
from integrations.webhooks import relaying

DESCRIPTION = """
The system of record for recycled aluminium and copper in Guizhou: enterprises and facilities,
lots and their custody, mass balance, recycled content and a tamper-evident audit trail.

**Authentication**: `Authorization: Bearer <token>` with an API key (`sfk_…`) or an access token
from `POST /api/v1/auth/token`. **Errors** are `application/problem+json` with a stable `code`.
**Creating POSTs** accept `Idempotency-Key`; **updates** need `If-Match` with the ETag you read.
**Lists** take `limit` and `cursor` and answer `{"items": [...], "next_cursor": ...}`.
"""


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document, plus the models of bodies that routes read themselves."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (LotBatchCreate,):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, nested in definition.pop("$defs", {}).items():
                components.setdefault(name, nested)
            components[model.__name__] = definition
        document(schema, app.state.settings)  # the configured maxima
        problems.document_credentials(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(
    settings: Settings,
    database_url: str,
    *,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
) -> FastAPI:
    engine = create_engine(
        database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
    )
    # Reports and regulators read from a replica when one is configured (api.deps.ReadSession).
    read_engine = (
        create_engine(
            settings.read_database_url,
            pool_size=settings.read_db_pool_size,
            max_overflow=0,
            read_only=True,
        )
        if settings.read_database_url
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with app.state.sessionmaker() as session:  # published before anything is signed
            await audit.publish_key(session, app.state.signer.key_id, app.state.signer.public_key)
            await session.commit()
        stop = asyncio.Event()
        sealer = (
            worker.watched(
                asyncio.create_task(
                    worker.sealing(app.state.sessionmaker, app.state.signer, settings, stop),
                    name="sealer",
                ),
                stop,
            )
            if settings.sealer_in_api
            else None
        )
        relay = (
            worker.watched(
                asyncio.create_task(
                    relaying(app.state.sessionmaker, app.state.vault, settings, stop),
                    name="webhook relay",
                ),
                stop,
            )
            if settings.webhook_relay_in_api
            else None
        )
        yield
        stop.set()
        if sealer is not None:
            await sealer
        if relay is not None:
            await relay
        await engine.dispose()
        if read_engine is not None:
            await read_engine.dispose()

    app = FastAPI(
        title="scrapflow",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    secret = (
        settings.jwt_secret.get_secret_value().encode()
        if settings.jwt_secret
        else file_secret(settings.data_dir / "keys" / "jwt.key")
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker or session_factory(engine)
    app.state.read_engine = read_engine
    app.state.read_sessionmaker = (
        session_factory(read_engine) if read_engine is not None else app.state.sessionmaker
    )
    app.state.vault = AesGcmVault.from_secret(
        decode_key(settings.seller_key.get_secret_value())
        if settings.seller_key
        else file_secret(settings.data_dir / "keys" / "seller.key")
    )
    app.state.signer = load_signer(settings)
    app.state.trusted_keys = trusted_keys(settings)
    app.state.principals = PrincipalCache(settings.principal_cache_seconds)
    app.state.tokens = TokenIssuer(
        secret=secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime=timedelta(minutes=settings.access_token_minutes),
    )
    problems.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # The custody routes carry the traffic: matched first (FastAPI tries routes in order).
    routers = (
        lots, shipments, transformations, discrepancies, health, auth, enterprises,
        facilities, authorities, principals, reference, certificates, credits,
        audit_routes, registers, statements, reports, epcis,
        weighbridge,
        webhooks,
    )  # fmt: skip
    for module in routers:
        app.include_router(module.router)
    app.include_router(certificates.public)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "Location", "X-Request-ID", "Idempotent-Replayed"],
        )
    app.add_middleware(Limits, settings=settings)
    app.add_middleware(RequestContext)
    return app
