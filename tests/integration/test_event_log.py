"""DESIGN §2.8: every registry change writes its event, with the actor, in the same transaction;
the log refuses edits."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import Actor, PrincipalKind, Role
from domain.audit.models import Event
from domain.identity import service as identity
from domain.registry import service as registry
from domain.registry.rules import Status
from tests.factories import random_uscc

ADMIN = Actor(
    principal_id=uuid.uuid4(),
    principal_kind=PrincipalKind.api_key,
    role=Role.platform_admin,
    request_id="req-test-1",
)


async def _events(session: AsyncSession, subject_id: uuid.UUID) -> list[Event]:
    rows = await session.scalars(
        select(Event).where(Event.subject_id == str(subject_id)).order_by(Event.id)  # type: ignore[arg-type]
    )
    return list(rows)


async def test_every_registry_change_has_its_event_with_the_actor(session: AsyncSession) -> None:
    enterprise = await registry.create_enterprise(
        session, ADMIN, name="E", uscc=random_uscc(), roles=["recycler"], region_code="520102"
    )
    facility = await registry.create_facility(
        session,
        ADMIN,
        enterprise_id=enterprise.id,
        name="F",
        kind="collection_point",
        region_code="520103",
        address="addr",
    )
    await registry.update_enterprise(
        session, ADMIN, enterprise.id, expected_version=1, changes={"name": "E2"}
    )
    await registry.update_facility(
        session, ADMIN, facility.id, expected_version=1, changes={"address": "new"}
    )
    await registry.set_facility_status(session, ADMIN, facility.id, Status.suspended, "audit")
    await registry.set_enterprise_status(session, ADMIN, enterprise.id, Status.suspended, "audit")
    await registry.set_enterprise_status(session, ADMIN, enterprise.id, Status.active, "cleared")
    authority = await registry.create_authority(session, ADMIN, name="A", jurisdiction="5201")
    user = await identity.create_user(
        session,
        ADMIN,
        username=f"u{uuid.uuid4().hex[:8]}",
        display_name="U",
        password="long enough password",
        role=Role.viewer,
        owner=identity.Owner(enterprise.id, None),
    )
    key, _ = await identity.create_api_key(
        session,
        ADMIN,
        name="k",
        role=Role.inspector,
        owner=identity.Owner(None, authority.id),
        expires_at=None,
    )
    await identity.revoke_api_key(session, ADMIN, key.id)

    expected = {
        enterprise.id: [
            "enterprise.registered",
            "enterprise.updated",
            "enterprise.suspended",
            "enterprise.reinstated",
        ],
        facility.id: ["facility.registered", "facility.updated", "facility.suspended"],
        authority.id: ["authority.registered"],
        user.id: ["user.created"],
        key.id: ["api_key.created", "api_key.revoked"],
    }
    for subject, types in expected.items():
        events = await _events(session, subject)
        assert [e.type for e in events] == types
        for event in events:
            assert event.actor_principal_id == ADMIN.principal_id
            assert event.actor_role == "platform_admin"
            assert event.actor_kind == "api_key"
            assert event.request_id == "req-test-1"
            assert event.txid is not None and event.seq is None

    facility_events = await _events(session, facility.id)
    assert all(e.facility_ids == [facility.id] for e in facility_events)
    assert all(e.region_codes == ["520103"] for e in facility_events)
    assert all(enterprise.id in e.enterprise_ids for e in facility_events)
    suspended = facility_events[2]
    assert suspended.payload["reason"] == "audit"
    assert suspended.payload["after"] == {"status": "suspended"}


async def test_a_refused_change_writes_no_event(session: AsyncSession) -> None:
    uscc = random_uscc()
    await registry.create_enterprise(
        session, ADMIN, name="E", uscc=uscc, roles=["recycler"], region_code="520102"
    )
    before = await session.scalar(text("SELECT count(*) FROM event"))
    with pytest.raises(registry.DuplicateUscc):
        await registry.create_enterprise(
            session, ADMIN, name="E again", uscc=uscc, roles=["recycler"], region_code="520102"
        )
    assert await session.scalar(text("SELECT count(*) FROM event")) == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE event SET payload = '{}'::jsonb",
        "UPDATE event SET type = 'forged'",
        "DELETE FROM event",
        "TRUNCATE event",
    ],
)
async def test_the_log_refuses_edits(session: AsyncSession, statement: str) -> None:
    await registry.create_authority(session, ADMIN, name="A", jurisdiction="52")
    with pytest.raises(DBAPIError, match="append-only"):
        async with session.begin_nested():
            await session.execute(text(statement))


async def test_sealing_may_fill_the_chain_columns_once(session: AsyncSession) -> None:
    authority = await registry.create_authority(session, ADMIN, name="A", jurisdiction="52")
    (event,) = await _events(session, authority.id)
    seal = text("UPDATE event SET seq = :seq, hash = :h, prev_hash = :p WHERE id = :id")
    await session.execute(seal, {"seq": 10**12, "h": b"x" * 32, "p": b"\0" * 32, "id": event.id})
    with pytest.raises(DBAPIError, match="append-only"):
        async with session.begin_nested():
            await session.execute(
                seal, {"seq": 10**12 + 1, "h": b"y" * 32, "p": b"\0" * 32, "id": event.id}
            )


async def test_the_trigger_guards_every_column_but_the_chains(session: AsyncSession) -> None:
    """The trigger lets the sealing update through by comparing the columns in its WHEN clause:
    a column added to the table later must be compared too, or it could be edited at sealing."""
    columns = set(
        await session.scalars(
            text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'event'"
            )
        )
    )
    definition = await session.scalar(
        text(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger"
            " WHERE tgname = 'event_append_only' AND tgrelid = 'event'::regclass"
        )
    )
    assert definition is not None
    guarded = {c for c in columns if f"old.{c} " in definition or f"old.{c})" in definition}
    assert columns - guarded == {"prev_hash", "hash"}  # seq is checked on its own
    assert "old.seq IS NOT NULL" in definition
