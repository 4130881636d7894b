"""Fixtures: a migrated database per worker, a transaction per test (the app's commits become
savepoints), an in-process HTTP client, and principals of every role."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from domain.actor import SYSTEM, Role
from domain.identity import service as identity
from domain.registry import service as registry
from integrations.database import create_engine
from integrations.settings import Settings
from tests.databases import drop_database, migrated_database
from tests.factories import random_uscc

JWT_SECRET = "test-secret-" + "x" * 32


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    # A suffix keeps concurrent runs from one checkout (several shells) off each other's databases.
    suffix = os.environ.get("SCRAPFLOW_TEST_DB_SUFFIX", "")
    url = migrated_database(f"sf_test_{worker}{suffix}")
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=None,
        data_dir=tmp_path_factory.mktemp("data"),
        jwt_secret=JWT_SECRET,
    )


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        yield conn
        await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def app(
    settings: Settings, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> FastAPI:
    return create_app(settings, database_url, sessionmaker=sessionmaker)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@dataclass
class Principal:
    """A caller with its bearer token, and the ids of what it belongs to."""

    token: str
    role: Role
    enterprise_id: uuid.UUID | None = None
    authority_id: uuid.UUID | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_key(
    session: AsyncSession,
    role: Role,
    enterprise_id: uuid.UUID | None = None,
    authority_id: uuid.UUID | None = None,
) -> Principal:
    _, secret = await identity.create_api_key(
        session,
        SYSTEM,
        name=f"test {role.value}",
        role=role,
        owner=identity.Owner(enterprise_id, authority_id),
        expires_at=None,
    )
    return Principal(secret, role, enterprise_id, authority_id)


@dataclass
class World:
    """Two enterprises (A in Guiyang, B in Zunyi), a facility each, and an authority per scope."""

    admin: Principal
    enterprise_a: uuid.UUID
    enterprise_b: uuid.UUID
    facility_a: uuid.UUID
    facility_b: uuid.UUID
    a_admin: Principal
    a_operator: Principal
    a_viewer: Principal
    b_admin: Principal
    province_authority: uuid.UUID
    guiyang_authority: uuid.UUID
    province_inspector: Principal
    province_supervisor: Principal
    guiyang_supervisor: Principal
    zunyi_supervisor: Principal


async def _enterprise(session: AsyncSession, region: str, name: str) -> uuid.UUID:
    enterprise = await registry.create_enterprise(
        session,
        SYSTEM,
        name=name,
        uscc=random_uscc(region),
        roles=["recycler"],
        region_code=region,
    )
    return enterprise.id


async def _facility(session: AsyncSession, enterprise_id: uuid.UUID, region: str) -> uuid.UUID:
    facility = await registry.create_facility(
        session,
        SYSTEM,
        enterprise_id=enterprise_id,
        name=f"point {region}",
        kind="collection_point",
        region_code=region,
        address="somewhere",
    )
    return facility.id


async def _authority(session: AsyncSession, name: str, jurisdiction: str) -> uuid.UUID:
    return (
        await registry.create_authority(session, SYSTEM, name=name, jurisdiction=jurisdiction)
    ).id


async def build_world(session: AsyncSession) -> World:
    a = await _enterprise(session, "520102", "A recycling")
    b = await _enterprise(session, "520302", "B recycling")
    province = await _authority(session, "Guizhou industry and IT department", "52")
    guiyang = await _authority(session, "Guiyang bureau", "5201")
    zunyi = await _authority(session, "Zunyi bureau", "5203")
    return World(
        admin=await make_key(session, Role.platform_admin),
        enterprise_a=a,
        enterprise_b=b,
        facility_a=await _facility(session, a, "520102"),
        facility_b=await _facility(session, b, "520302"),
        a_admin=await make_key(session, Role.admin, a),
        a_operator=await make_key(session, Role.operator, a),
        a_viewer=await make_key(session, Role.viewer, a),
        b_admin=await make_key(session, Role.admin, b),
        province_authority=province,
        guiyang_authority=guiyang,
        province_inspector=await make_key(session, Role.inspector, authority_id=province),
        province_supervisor=await make_key(session, Role.supervisor, authority_id=province),
        guiyang_supervisor=await make_key(session, Role.supervisor, authority_id=guiyang),
        zunyi_supervisor=await make_key(session, Role.supervisor, authority_id=zunyi),
    )


@pytest.fixture
async def world(session: AsyncSession) -> World:
    world = await build_world(session)
    await session.commit()  # a savepoint release: visible to the app's sessions on this connection
    return world


@dataclass
class Live:
    """The app on its real engine: every request commits, as in production. For races and other
    tests that need real concurrent transactions; their data stays (unique per test)."""

    app: FastAPI
    client: httpx.AsyncClient
    engine: AsyncEngine
    world: World

    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return async_sessionmaker(self.engine, expire_on_commit=False)


@pytest.fixture
async def live(settings: Settings, database_url: str) -> AsyncIterator[Live]:
    app = create_app(settings, database_url)
    engine: AsyncEngine = app.state.engine
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        world = await build_world(session)
        await session.commit()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Live(app, client, engine, world)
    await engine.dispose()


Json = dict[str, Any]
Call = Callable[..., Awaitable[httpx.Response]]
