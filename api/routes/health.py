"""Liveness, readiness (the database answers) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.problems import problem_response, responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _answers(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with asyncio.timeout(2):
        async with sessionmaker() as session:
            await session.execute(text("SELECT 1"))


@router.get(
    "/readyz",
    summary="The database answers; with a read replica configured, whether it does too",
    responses=responses(503),
)
async def readyz(request: Request) -> Response:
    try:
        await _answers(request.app.state.sessionmaker)
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        return problem_response(
            503,
            "not_ready",
            f"the database does not answer: {type(error).__name__}",
            headers={"Retry-After": "1"},
        )
    body = {"status": "ready"}
    if request.app.state.read_engine is not None:
        # Reported, not required: writes and the other reads work without the replica, and every
        # instance shares it, so a failing replica must not take them all out of the balancer.
        try:
            await _answers(request.app.state.read_sessionmaker)
            body["replica"] = "ready"
        except Exception as error:  # noqa: BLE001 - any failure means "unavailable"
            body["replica"] = f"unavailable: {type(error).__name__}"
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
