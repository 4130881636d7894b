"""The application for worker processes: `scrapflow serve` with SCRAPFLOW_WORKERS above 1 runs
`uvicorn api.asgi:create --factory` in each worker, the database URL handed down by the parent
(which also owns the embedded PostgreSQL)."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from api.app import create_app
from integrations.logging import configure_logging
from integrations.settings import get_settings


def tune_garbage_collector() -> None:
    """Everything loaded so far lives as long as the process: move it out of the collector's
    sight, and collect the young generation less often. Full collections over the whole heap
    otherwise land in the middle of requests and stretch the latency tail."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def create() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level)
    if settings.database_url is None:
        raise RuntimeError("worker processes need DATABASE_URL (set by `scrapflow serve`)")
    app = create_app(settings, settings.database_url)
    tune_garbage_collector()
    return app
