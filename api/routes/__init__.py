"""One router module per resource."""

from fastapi import APIRouter

from api.uow import UnitOfWorkRoute


def resource_router(tag: str) -> APIRouter:
    return APIRouter(prefix="/api/v1", tags=[tag], route_class=UnitOfWorkRoute)
