"""The application's routes as tests walk them: every route × method, through included routers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Route

from api.deps import current_actor


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """The API routes, through included routers (FastAPI keeps those as one entry each)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


def plain_routes(routes: Iterable[Any]) -> Iterator[Route]:
    """Starlette's own routes beside the API (the OpenAPI document and the documentation pages)."""
    for route in routes:
        if isinstance(route, Route) and not isinstance(route, APIRoute):
            yield route


def needs_principal(dependant: Any) -> bool:
    """Whether the route (or any dependency of it) asks who the caller is."""
    return any(d.call is current_actor or needs_principal(d) for d in dependant.dependencies)
