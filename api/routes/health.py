"""Liveness, readiness (the database answers) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.problems import problem_response, responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers", responses=responses(503))
async def readyz(request: Request) -> Response:
    try:
        async with asyncio.timeout(2):
            async with request.app.state.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        return problem_response(
            503,
            "not_ready",
            f"the database does not answer: {type(error).__name__}",
            headers={"Retry-After": "1"},
        )
    return Response('{"status":"ready"}', media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
