from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM
from domain.identity import service as identity
from domain.reference import service as reference
from domain.reference.service import UnknownRegion
from domain.registry import service as registry
from tests.databases import drop_database, migrated_database
from tests.factories import random_uscc


async def test_reference_rows_keep_source_and_confidence(session: AsyncSession) -> None:
    regions = await reference.list_regions(session)
    assert len(regions) == 34 + 9  # every province-level division and Guizhou's prefectures
    assert {r.code for r in regions if r.level == "prefecture"} == {
        "5201",
        "5202",
        "5203",
        "5204",
        "5205",
        "5206",
        "5223",
        "5226",
        "5227",
    }
    assert all(r.source and r.confidence in {"high", "medium", "low"} for r in regions)
    categories = await reference.list_scrap_categories(session, "copper")
    assert categories and all(c.metal == "copper" and c.source for c in categories)
    factor_set, factors = await reference.current_emission_factors(session)
    assert factor_set.version == 1
    by_key = {f.key: f for f in factors}
    assert str(by_key["primary_aluminium_china"].value) == "16.000000"
    assert by_key["primary_aluminium_china"].confidence == "low"


@pytest.mark.parametrize(
    ("region", "ok"),
    [
        ("520102", True),  # Guiyang
        ("522301", True),  # Qianxinan
        ("440300", True),  # Shenzhen: out of province is allowed, province 44 exists
        ("529901", False),  # Guizhou prefecture 5299 does not exist
        ("990101", False),  # no province 99
        ("52010", False),
        ("52O102", False),
    ],
)
async def test_facility_region_codes(session: AsyncSession, region: str, ok: bool) -> None:
    enterprise = await registry.create_enterprise(
        session, SYSTEM, name="E", uscc=random_uscc(), roles=["recycler"], region_code="520102"
    )
    create = registry.create_facility(
        session,
        SYSTEM,
        enterprise_id=enterprise.id,
        name="F",
        kind="warehouse",
        region_code=region,
        address="a",
    )
    if ok:
        assert (await create).region_code == region
    else:
        with pytest.raises(UnknownRegion):
            await create


async def test_first_start_creates_one_admin_key_once() -> None:
    """On an empty database the bootstrap returns a key; never again afterwards."""
    from integrations.database import create_engine, session_factory

    url = migrated_database("sf_bootstrap")
    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            secret = await identity.bootstrap_platform_admin(session, SYSTEM)
            await session.commit()
        assert secret is not None and secret.startswith("sfk_")
        async with session_factory(engine)() as session:
            assert await identity.bootstrap_platform_admin(session, SYSTEM) is None
            actor = await identity.actor_for_api_key(session, secret)
            assert actor.is_platform_admin
            stored = await session.scalar(text("SELECT count(*) FROM api_key"))
            assert stored == 1
            leaked = await session.scalar(
                text("SELECT count(*) FROM api_key WHERE secret_hash = :s OR prefix = :s"),
                {"s": secret},
            )
            assert leaked == 0
            events = await session.scalar(
                text("SELECT count(*) FROM event WHERE type = 'api_key.created'")
            )
            assert events == 1
    finally:
        await engine.dispose()
        drop_database(url)


async def test_suspended_enterprise_cannot_open_facilities(session: AsyncSession) -> None:
    enterprise = await registry.create_enterprise(
        session, SYSTEM, name="E", uscc=random_uscc(), roles=["smelter"], region_code="520102"
    )
    await registry.set_enterprise_status(
        session, SYSTEM, enterprise.id, registry.Status.suspended, "permit expired"
    )
    with pytest.raises(registry.EnterpriseSuspended):
        await registry.create_facility(
            session,
            SYSTEM,
            enterprise_id=enterprise.id,
            name="F",
            kind="smelter",
            region_code="520102",
            address="a",
        )
    assert uuid.UUID(str(enterprise.id))
