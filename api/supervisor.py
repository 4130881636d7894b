"""The supervisor of several server processes: uvicorn's process manager, in an interpreter that
has not imported the application.

`scrapflow serve` with SCRAPFLOW_WORKERS above 1 and a DATABASE_URL migrates and bootstraps, then
replaces itself with `python -m api.supervisor` (the same process id, so signals from a terminal
or a container runtime reach it as before). The workers it spawns load `api.asgi:create`. Kept
small on purpose: the process only watches the others, and every module imported here would be
paid once more by each worker too, since a spawned worker imports its parent's main module."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from integrations.logging import configure_logging

# A worker answers the supervisor's health check only once its interpreter has started and
# imported this module; on a busy machine that takes longer than uvicorn's 5 s, and the
# supervisor would kill and respawn it over and over.
HEALTHCHECK_SECONDS = 30


def server_options(host: str, port: int) -> dict[str, Any]:
    """uvicorn's options for the API, one process or several."""
    return {
        "host": host,
        "port": port,
        "log_config": None,  # integrations.logging's JSON lines
        "access_log": False,  # the middleware logs each request
        "proxy_headers": True,
    }


def run_workers(host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "api.asgi:create",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
        **server_options(host, port),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api.supervisor", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    run_workers(args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
