"""DESIGN §2.8 and issue 6: the sealer chains committed events in commit-safe order, checkpoints
are signed, and verification finds every edit, deletion and reordering at the right sequence
number. Each test has a database of its own (tampering needs the trigger off, and exact sequence
numbers need a chain nobody else writes to); the PostgreSQL server is the shared test server."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.actor import SYSTEM, Actor, PrincipalKind, Role
from domain.audit import rules
from domain.audit import service as audit
from integrations.database import create_engine, session_factory
from integrations.signing import Ed25519Signer
from tests.databases import drop_database, in_thread, migrated_database

SIGNER = Ed25519Signer(bytes(range(32)))
SEAL_TIMEOUT = 60.0  # xmin is cluster-wide: other workers' open transactions can hold sealing

# The sealed fields as rules.py documents them, spelled out here so that the test does not take
# the implementation's word for them.
FIELDS = (
    "seq", "id", "type", "subject_type", "subject_id", "actor_kind", "actor_principal_id",
    "actor_role", "actor_enterprise_id", "actor_authority_id", "request_id", "enterprise_ids",
    "facility_ids", "lot_ids", "region_codes", "occurred_at", "payload",
)  # fmt: skip

ENTERPRISE = uuid.uuid4()
OPERATOR = Actor(
    principal_id=uuid.uuid4(),
    principal_kind=PrincipalKind.user,
    role=Role.operator,
    enterprise_id=ENTERPRISE,
    request_id="req-audit-1",
)
INSPECTOR = Actor(
    principal_id=uuid.uuid4(),
    principal_kind=PrincipalKind.api_key,
    role=Role.inspector,
    authority_id=uuid.uuid4(),
    jurisdiction="52",
)

# Payloads that a naive canonical form gets wrong: non-ASCII text, escapes, astral characters,
# nested objects whose keys jsonb orders by length (not alphabetically), floats, big integers.
PAYLOADS: list[dict[str, Any]] = [
    {
        "code": "AL-2026-00000001",
        "metal": "aluminium",
        "category": "GB13586-WROUGHT",
        "net_g": 812_345,
        "post_consumer_g": 812_345,
        "pre_consumer_g": 0,
        "primary_g": 0,
        "collected_at": "2026-11-20T00:00:00Z",
        "seller_kind": "individual",
        "import_country": None,
    },
    {
        "name": "贵阳再生资源回收有限公司",
        "address": '贵阳市云岩区中华北路 1 号\n二楼\t"东" \\ </script>',
        "latitude": 26.58,
        "longitude": 106.71,
        "mark": "♻️😀\u2028\u00e9\u0001",
        "nested": {"zz": [1, 2.5, None, True, False], "a": {"é": "x", "b": {}, "aaa": []}},
    },
    {"big": 2**62, "negative": -12, "zero": 0, "fraction": 1234.5678, "empty": {}, "list": []},
    {"parts_g": [300_000, 512_345], "after": {"status": "split"}, "reason": "检验 OK"},
]


# --- helpers ------------------------------------------------------------------------------------


@dataclass
class Db:
    url: str
    engine: AsyncEngine

    @property
    def dsn(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(False)


@pytest.fixture
async def db() -> AsyncIterator[Db]:
    url = migrated_database("sf_audit")
    engine = create_engine(url, pool_size=8)
    try:
        yield Db(url, engine)
    finally:
        await engine.dispose()
        drop_database(url)


async def write_events(db: Db, count: int, *, per_transaction: int = 3) -> None:
    """`count` events with varied actors, arrays and payloads, committed a few at a time."""
    makers = session_factory(db.engine)
    written = 0
    while written < count:
        async with makers() as session:
            for _ in range(min(per_transaction, count - written)):
                n = written
                actor = (OPERATOR, INSPECTOR, SYSTEM)[n % 3]
                await audit.record(
                    session,
                    actor,
                    ("lot.registered", "shipment.dispatched", "facility.updated")[n % 3],
                    subject_type="lot",
                    subject_id=uuid.uuid4(),
                    payload={**PAYLOADS[n % len(PAYLOADS)], "n": n},
                    enterprise_ids=[ENTERPRISE, uuid.uuid4()] if n % 2 else [],
                    facility_ids=[uuid.uuid4() for _ in range(n % 3)],
                    region_codes=["520102", "520302"][: n % 3],
                    lot_ids=[uuid.uuid4() for _ in range(n % 4)],  # order kept, not sorted
                )
                written += 1
            await session.commit()


async def seal_once(db: Db, signer: Ed25519Signer = SIGNER, **options: Any) -> audit.Sealed:
    async with session_factory(db.engine)() as session:
        sealed = await audit.seal(session, signer, **options)
        await session.commit()
    return sealed


async def eventually(what: str, step: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + SEAL_TIMEOUT
    while not await step():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {SEAL_TIMEOUT:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def seal_all(db: Db, **options: Any) -> list[audit.Sealed]:
    """Seal until no event is left unsealed (every writer here has finished)."""
    results: list[audit.Sealed] = []

    async def step() -> bool:
        results.append(await seal_once(db, **options))
        return await unsealed(db) == 0

    await eventually("every committed event sealed", step)
    return results


async def settled(db: Db) -> None:
    """Wait until every unsealed event is sealable (no transaction older than it still runs), so
    that batch boundaries, and with them checkpoint positions, are exactly as asked."""

    async def step() -> bool:
        conn = await asyncpg.connect(db.dsn)
        try:
            return not await conn.fetchval(
                "SELECT count(*) FROM event"
                " WHERE seq IS NULL AND txid >= pg_snapshot_xmin(pg_current_snapshot())"
            )
        finally:
            await conn.close()

    await eventually("every event's transaction older than any running one", step)


async def unsealed(db: Db) -> int:
    conn = await asyncpg.connect(db.dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event WHERE seq IS NULL"))
    finally:
        await conn.close()


async def rows(db: Db, order: str = "seq") -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db.dsn)
    try:
        return await conn.fetch(f"SELECT * FROM event ORDER BY {order}")  # noqa: S608
    finally:
        await conn.close()


def _text(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def independent_hash(prev_hash: bytes, row: asyncpg.Record) -> bytes:
    """sha256(prev_hash + canonical JSON), with the standard library only."""
    document = {name: _text(row[name]) for name in FIELDS}
    document["payload"] = json.loads(row["payload"])  # the jsonb as stored
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash + canonical.encode()).digest()


async def verify(db: Db, from_seq: int = 1, to_seq: int | None = None) -> audit.Verification:
    async with session_factory(db.engine)() as session:
        return await audit.verify_chain(session, from_seq, to_seq)


@asynccontextmanager
async def as_owner(db: Db) -> AsyncIterator[asyncpg.Connection]:
    """The database owner with triggers off: what an insider could do. Only ever on `db`, a
    database of this test's own."""
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        yield conn
    finally:
        await conn.close()


async def sealed_chain(db: Db, count: int, **options: Any) -> None:
    await write_events(db, count)
    await seal_all(db, **options)
    assert (await verify(db)).valid


# --- 1. the chain -------------------------------------------------------------------------------


async def test_sealing_chains_every_event_gapless_with_hashes_anyone_can_recompute(db: Db) -> None:
    await write_events(db, 40)
    await settled(db)
    results = await seal_all(db, limit=7)
    assert sum(r.count for r in results) == 40
    assert max(r.count for r in results) == 7  # in batches

    chain = await rows(db)
    assert [r["seq"] for r in chain] == list(range(1, 41))
    previous = bytes(32)
    for row in chain:
        assert row["prev_hash"] == previous, row["seq"]
        assert row["hash"] == independent_hash(previous, row), row["seq"]
        previous = row["hash"]
    assert set(FIELDS) == set(rules.SEALED_FIELDS)

    result = await verify(db)
    assert result.valid, result.broken
    assert (result.from_seq, result.to_seq, result.head_seq, result.events_checked) == (
        1,
        40,
        40,
        40,
    )
    assert result.checkpoints_checked >= 1
    # Nothing left: sealing again changes nothing.
    again = await seal_once(db, limit=7)
    assert again.count == 0 and again.head_seq == 40
    assert [r["hash"] for r in await rows(db)] == [r["hash"] for r in chain]


async def test_the_log_refuses_resealing_or_editing_a_sealed_event(db: Db) -> None:
    await sealed_chain(db, 3)
    conn = await asyncpg.connect(db.dsn)
    try:
        for statement in (
            "UPDATE event SET seq = 99 WHERE seq = 1",
            "UPDATE event SET hash = prev_hash WHERE seq = 2",
            "UPDATE event SET payload = '{}' WHERE seq = 3",
            "DELETE FROM event WHERE seq = 3",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()
    assert (await verify(db)).valid


# --- 2. commit-safe order -----------------------------------------------------------------------

INSERT = """
INSERT INTO event (type, subject_type, subject_id, actor_kind, actor_role, enterprise_ids,
                   facility_ids, region_codes, payload)
VALUES ('test.event', 'test', $1, 'system', 'platform_admin', '{}', '{}', '{}', '{}')
RETURNING id
"""


async def _seq_of(db: Db, event_id: int) -> int | None:
    conn = await asyncpg.connect(db.dsn)
    try:
        seq = await conn.fetchval("SELECT seq FROM event WHERE id = $1", event_id)
        return None if seq is None else int(seq)
    finally:
        await conn.close()


async def test_an_event_committed_after_an_older_open_transaction_waits_for_it(db: Db) -> None:
    a = await asyncpg.connect(db.dsn)
    b = await asyncpg.connect(db.dsn)
    try:
        a_tx = a.transaction()
        await a_tx.start()
        a_id = await a.fetchval(INSERT, "A")  # A takes its transaction id first ...
        async with b.transaction():
            b_id = await b.fetchval(INSERT, "B")  # ... B later, and B commits first.
        assert b_id > a_id
        for _ in range(5):
            sealed = await seal_once(db)
            assert sealed.count == 0, "sealed B while A, older, could still commit"
            assert await _seq_of(db, b_id) is None
            await asyncio.sleep(0.05)
        await a_tx.commit()
    finally:
        await a.close()
        await b.close()
    await seal_all(db)
    a_seq, b_seq = await _seq_of(db, a_id), await _seq_of(db, b_id)
    assert a_seq == 1 and b_seq == 2
    assert (await verify(db)).valid


async def test_an_open_younger_transaction_does_not_hold_back_older_commits(db: Db) -> None:
    """B gets its transaction id first and commits while A (younger) is still open: B may be
    sealed at once, since A can only ever be sealed after it."""
    a = await asyncpg.connect(db.dsn)
    b = await asyncpg.connect(db.dsn)
    try:
        b_tx = b.transaction()
        await b_tx.start()
        b_id = await b.fetchval(INSERT, "B")
        a_tx = a.transaction()
        await a_tx.start()
        a_id = await a.fetchval(INSERT, "A")
        await b_tx.commit()

        async def b_sealed() -> bool:
            await seal_once(db)
            return await _seq_of(db, b_id) is not None

        await eventually("B sealed while the younger A is open", b_sealed)
        assert await _seq_of(db, a_id) is None
        await a_tx.commit()
    finally:
        await a.close()
        await b.close()
    await seal_all(db)
    assert (await _seq_of(db, b_id), await _seq_of(db, a_id)) == (1, 2)


async def test_rolled_back_events_never_enter_the_chain(db: Db) -> None:
    conn = await asyncpg.connect(db.dsn)
    try:
        async with conn.transaction():
            await conn.fetchval(INSERT, "kept 1")
        transaction = conn.transaction()
        await transaction.start()
        await conn.fetchval(INSERT, "rolled back")
        await transaction.rollback()
        async with conn.transaction():
            await conn.fetchval(INSERT, "kept 2")
    finally:
        await conn.close()
    await seal_all(db)
    assert [(r["seq"], r["subject_id"]) for r in await rows(db)] == [(1, "kept 1"), (2, "kept 2")]


# --- 3. tampering -------------------------------------------------------------------------------


async def test_an_edited_payload_is_found_at_its_seq(db: Db) -> None:
    await sealed_chain(db, 12)
    async with as_owner(db) as owner:
        await owner.execute("UPDATE event SET payload = payload || '{\"n\": 1000}' WHERE seq = 7")
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (7, "edited")
    assert result.events_checked == 6
    # Ranges: before it and after it the chain still holds.
    assert (await verify(db, 1, 6)).valid
    assert (await verify(db, 8)).valid
    assert (await verify(db, 7, 7)).broken == result.broken


@pytest.mark.parametrize(
    ("column", "statement"),
    [
        ("occurred_at", "occurred_at = occurred_at + interval '1 microsecond'"),
        ("region_codes", "region_codes = ARRAY['520302']"),
        ("enterprise_ids", "enterprise_ids = enterprise_ids[2:]"),
        ("actor_role", "actor_role = 'inspector'"),
        ("type", "type = 'lot.voided'"),
        (
            "lot_ids",
            "lot_ids = ARRAY(SELECT lot_ids[i] FROM generate_subscripts(lot_ids, 1) i"
            " ORDER BY i DESC)",
        ),
    ],
)
async def test_an_edit_of_any_sealed_column_is_found(db: Db, column: str, statement: str) -> None:
    await sealed_chain(db, 12)
    async with as_owner(db) as owner:
        # Seq 4 (n = 3) and seq 12 (n = 11) have two enterprises, two regions and lots.
        target = 12 if column in ("enterprise_ids", "lot_ids") else 6
        changed = await owner.execute(f"UPDATE event SET {statement} WHERE seq = $1", target)  # noqa: S608
        assert changed == "UPDATE 1"
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (target, "edited")


async def _verify_paged(db: Db, *, read_ahead: bool, **options: Any) -> audit.Verification:
    async with session_factory(db.engine)() as session:
        if not read_ahead:  # a session already in a transaction reads on its own connection
            await session.execute(select(1))
        return await audit.verify_chain(session, **options)


@pytest.mark.parametrize("read_ahead", [True, False])
async def test_verification_in_small_pages_finds_the_same(db: Db, read_ahead: bool) -> None:
    await _checkpointed_chain(db, count=40, every=10)
    whole = await _verify_paged(db, read_ahead=read_ahead, page=3)
    assert whole.valid and whole.events_checked == 40 and whole.checkpoints_checked == 4
    part = await _verify_paged(db, read_ahead=read_ahead, page=4, from_seq=7, to_seq=33)
    assert part.valid and part.events_checked == 27 and part.checkpoints_checked == 3
    async with as_owner(db) as owner:
        await owner.execute("UPDATE event SET subject_id = 'x' WHERE seq = 27")
        await owner.execute("DELETE FROM event WHERE seq = 35")
    for page in (1, 3, 7, 100):
        result = await _verify_paged(db, read_ahead=read_ahead, page=page)
        assert result.broken is not None
        assert (result.broken.seq, result.broken.reason) == (27, "edited")
        assert result.events_checked == 26
        after = await _verify_paged(db, read_ahead=read_ahead, page=page, from_seq=28)
        assert after.broken is not None
        assert (after.broken.seq, after.broken.reason) == (35, "missing")


async def test_a_deleted_event_is_missing_at_its_seq(db: Db) -> None:
    await sealed_chain(db, 12)
    async with as_owner(db) as owner:
        await owner.execute("DELETE FROM event WHERE seq = 5")
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (5, "missing")


async def test_two_swapped_events_are_reordered(db: Db) -> None:
    await sealed_chain(db, 12)
    async with as_owner(db) as owner:
        await owner.execute("UPDATE event SET seq = -1 WHERE seq = 4")
        await owner.execute("UPDATE event SET seq = 4 WHERE seq = 5")
        await owner.execute("UPDATE event SET seq = 5 WHERE seq = -1")
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (4, "reordered")


async def test_events_swapped_with_their_links_are_still_found(db: Db) -> None:
    """Swapping whole positions (seq, prev_hash, hash) keeps every link but breaks the hashes."""
    await sealed_chain(db, 12)
    async with as_owner(db) as owner:
        a = await owner.fetchrow("SELECT id, prev_hash, hash FROM event WHERE seq = 8")
        b = await owner.fetchrow("SELECT id, prev_hash, hash FROM event WHERE seq = 9")
        move = "UPDATE event SET seq = $2, prev_hash = $3, hash = $4 WHERE id = $1"
        await owner.execute("UPDATE event SET seq = -1 WHERE id = $1", a["id"])
        await owner.execute(move, b["id"], 8, a["prev_hash"], a["hash"])
        await owner.execute(move, a["id"], 9, b["prev_hash"], b["hash"])
    result = await verify(db)
    assert result.broken is not None
    assert result.broken.seq == 8
    assert result.broken.reason in ("edited", "reordered")


async def test_an_event_carried_over_from_another_chain_position_is_found(db: Db) -> None:
    """An insider inserts a forged event with a correct-looking seq after a deletion."""
    await sealed_chain(db, 6)
    async with as_owner(db) as owner:
        await owner.execute("DELETE FROM event WHERE seq = 3")
        forged = await owner.fetchrow("SELECT * FROM event WHERE seq = 2")
        await owner.execute(
            """
            INSERT INTO event (type, subject_type, subject_id, actor_kind, actor_role,
                               enterprise_ids, facility_ids, region_codes, payload, seq,
                               prev_hash, hash)
            VALUES ('lot.registered', 'lot', 'x', 'system', 'platform_admin', '{}', '{}',
                    '{}', '{}', 3, $1, $2)
            """,
            forged["hash"],
            forged["hash"],
        )
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (3, "edited")


async def _checkpointed_chain(db: Db, count: int = 30, every: int = 10) -> list[int]:
    await write_events(db, count)
    await settled(db)
    await seal_all(db, limit=every, checkpoint_every=every)
    conn = await asyncpg.connect(db.dsn)
    try:
        seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM audit_checkpoint ORDER BY 1")]
    finally:
        await conn.close()
    assert seqs == list(range(every, count + 1, every))
    assert (await verify(db)).checkpoints_checked == len(seqs)
    return seqs


@pytest.mark.parametrize(
    "forgery",
    [
        "signature = decode(repeat('00', 64), 'hex')",
        "signature = set_byte(signature, 0, get_byte(signature, 0) # 1)",
        "payload = replace(payload, '\"seq\":20', '\"seq\":21'), seq = 21",
        "head_hash = decode(repeat('ab', 32), 'hex')",
        "payload = replace(payload, encode(head_hash, 'hex'), repeat('ab', 32)),"
        " head_hash = decode(repeat('ab', 32), 'hex')",
        "made_at = made_at - interval '1 day'",
        "key_id = 'ed25519-0000000000000000'",
    ],
)
async def test_a_forged_checkpoint_is_a_bad_checkpoint_signature(db: Db, forgery: str) -> None:
    await _checkpointed_chain(db)
    async with as_owner(db) as owner:
        changed = await owner.execute(f"UPDATE audit_checkpoint SET {forgery} WHERE seq = 20")  # noqa: S608
        assert changed == "UPDATE 1"
    result = await verify(db)
    assert result.broken is not None
    assert result.broken.reason == "bad_checkpoint_signature", result.broken
    assert result.broken.seq in (20, 21)
    assert result.checkpoints_checked == 1


async def test_a_checkpoint_signed_by_another_key_is_refused(db: Db) -> None:
    await _checkpointed_chain(db)
    intruder = Ed25519Signer(bytes(32))
    async with as_owner(db) as owner:
        head = await owner.fetchrow("SELECT seq, hash FROM event WHERE seq = 25")
        made_at = datetime.now(UTC)
        # Signed with the intruder's key under the platform key's id.
        payload = rules.checkpoint_payload(25, head["hash"], made_at, SIGNER.key_id)
        await owner.execute(
            "INSERT INTO audit_checkpoint (seq, head_hash, made_at, key_id, payload, signature)"
            " VALUES (25, $1, $2, $3, $4, $5)",
            head["hash"],
            made_at,
            SIGNER.key_id,
            payload.decode(),
            intruder.sign(payload),
        )
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (25, "bad_checkpoint_signature")


async def _edit_and_rechain(owner: asyncpg.Connection, seq: int) -> None:
    """Edit the event at `seq`, then recompute every hash from it on, exactly as the sealer would:
    a chain that is consistent again, which only the signed checkpoints can catch."""
    await owner.execute(
        "UPDATE event SET payload = payload || '{\"net_g\": 1}' WHERE seq = $1", seq
    )
    previous = await owner.fetchval("SELECT hash FROM event WHERE seq = $1", seq - 1)
    for row in await owner.fetch("SELECT * FROM event WHERE seq >= $1 ORDER BY seq", seq):
        event = dict(row)
        event["payload"] = json.loads(event["payload"])
        digest = rules.chain_hash(previous, event)
        await owner.execute(
            "UPDATE event SET prev_hash = $1, hash = $2 WHERE id = $3", previous, digest, row["id"]
        )
        previous = digest


async def test_a_consistently_rewritten_chain_is_caught_by_its_checkpoint(db: Db) -> None:
    await _checkpointed_chain(db, count=30, every=10)
    async with as_owner(db) as owner:
        await _edit_and_rechain(owner, 15)
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (20, "checkpoint_mismatch")
    assert result.events_checked == 30  # the links and hashes themselves hold
    assert result.checkpoints_checked == 1  # the one at 10


async def test_an_insiders_own_key_in_the_database_does_not_make_a_forgery_valid(
    db: Db,
) -> None:
    """Someone who can write the database rewrites an event, recomputes the chain, publishes a key
    of their own and re-signs every checkpoint with it. Against the keys in the database that is
    consistent; against the keys the platform holds outside it, it is not."""
    await _checkpointed_chain(db, count=30, every=10)
    insider = Ed25519Signer(b"i" * 32)
    async with as_owner(db) as owner:
        await _edit_and_rechain(owner, 5)
        await owner.execute(
            "INSERT INTO signing_key (key_id, algorithm, public_key) VALUES ($1, 'Ed25519', $2)",
            insider.key_id,
            insider.public_key,
        )
        for checkpoint in await owner.fetch("SELECT seq, made_at FROM audit_checkpoint"):
            head = await owner.fetchval("SELECT hash FROM event WHERE seq = $1", checkpoint["seq"])
            payload = rules.checkpoint_payload(
                checkpoint["seq"], head, checkpoint["made_at"], insider.key_id
            )
            await owner.execute(
                "UPDATE audit_checkpoint SET head_hash = $1, key_id = $2, payload = $3,"
                " signature = $4 WHERE seq = $5",
                head,
                insider.key_id,
                payload.decode(),
                insider.sign(payload),
                checkpoint["seq"],
            )
    assert (await verify(db)).valid  # the database alone vouches for itself
    async with session_factory(db.engine)() as session:
        result = await audit.verify_chain(session, trusted_keys={SIGNER.key_id: SIGNER.public_key})
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (10, "bad_checkpoint_signature")


async def test_events_deleted_at_the_end_under_a_checkpoint_are_missing(db: Db) -> None:
    await _checkpointed_chain(db, count=30, every=10)
    async with as_owner(db) as owner:
        await owner.execute("DELETE FROM event WHERE seq >= 28")
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (28, "missing")


async def test_a_checkpointed_head_deleted_alone_is_missing(db: Db) -> None:
    await _checkpointed_chain(db, count=30, every=10)
    async with as_owner(db) as owner:
        await owner.execute("DELETE FROM event WHERE seq = 30")
    result = await verify(db)
    assert result.broken is not None
    assert (result.broken.seq, result.broken.reason) == (30, "missing")


# --- 4. concurrent sealers ----------------------------------------------------------------------


async def test_two_sealers_and_many_writers_seal_every_event_once_in_commit_order(
    db: Db,
) -> None:
    writers_done = asyncio.Event()
    committed: list[int] = []
    counts: dict[str, list[int]] = {"one": [], "two": []}
    makers = session_factory(db.engine)

    async def writer(index: int) -> None:
        rng = random.Random(index)
        for round_ in range(30):
            async with makers() as session:
                for k in range(rng.randint(1, 3)):
                    await audit.record(
                        session,
                        OPERATOR,
                        "lot.registered",
                        subject_type="lot",
                        subject_id=f"w{index}-{round_}-{k}",
                        payload={**PAYLOADS[k % len(PAYLOADS)], "writer": index},
                        enterprise_ids=[ENTERPRISE],
                        region_codes=["520102"],
                    )
                await asyncio.sleep(rng.random() / 100)  # stay open while others commit
                if rng.random() < 0.2:
                    await session.rollback()
                    continue
                await session.commit()
                committed.append(k + 1)

    async def sealer(name: str) -> None:
        while True:
            done = writers_done.is_set()
            sealed = await seal_once(db, limit=5, checkpoint_every=7)
            counts[name].append(sealed.count)
            if done and await unsealed(db) == 0:
                return
            await asyncio.sleep(random.random() / 200)

    async def write_all() -> None:
        await asyncio.gather(*(writer(i) for i in range(4)))
        writers_done.set()

    await asyncio.wait_for(
        asyncio.gather(write_all(), sealer("one"), sealer("two")), SEAL_TIMEOUT * 2
    )
    total = sum(committed)
    assert total > 100
    assert sum(counts["one"]) + sum(counts["two"]) == total  # each event sealed exactly once
    assert sum(counts["one"]) > 0 or sum(counts["two"]) > 0
    by_seq = await rows(db, "seq")
    assert [r["seq"] for r in by_seq] == list(range(1, total + 1))
    # Commit-safe order is the order of the inserting transactions, then of insertion.
    by_txid = await rows(db, "txid, id")
    assert [r["id"] for r in by_seq] == [r["id"] for r in by_txid]
    previous = bytes(32)
    for row in by_seq:
        assert row["hash"] == independent_hash(previous, row)
        previous = row["hash"]
    result = await verify(db)
    assert result.valid, result.broken
    assert result.events_checked == total
    # A checkpoint whenever 7 or more events were sealed since the last (5 at most per call).
    conn = await asyncpg.connect(db.dsn)
    try:
        marks = [r["seq"] for r in await conn.fetch("SELECT seq FROM audit_checkpoint ORDER BY 1")]
    finally:
        await conn.close()
    assert marks[0] <= 5
    assert all(7 <= b - a <= 11 for a, b in itertools.pairwise(marks))
    assert total - marks[-1] < 7
    assert result.checkpoints_checked == len(marks)


# --- 5. checkpoints -----------------------------------------------------------------------------


async def test_checkpoints_come_every_n_events_signed_over_the_head(db: Db) -> None:
    await write_events(db, 31)
    # One event per call: a checkpoint at the first seal, then whenever 10 more are sealed.
    await seal_all(db, limit=1, checkpoint_every=10, checkpoint_after=timedelta(hours=1))
    conn = await asyncpg.connect(db.dsn)
    try:
        checkpoints = await conn.fetch("SELECT * FROM audit_checkpoint ORDER BY seq")
        hashes = {r["seq"]: r["hash"] for r in await conn.fetch("SELECT seq, hash FROM event")}
        key = await conn.fetchval(
            "SELECT public_key FROM signing_key WHERE key_id = $1", SIGNER.key_id
        )
    finally:
        await conn.close()
    assert [c["seq"] for c in checkpoints] == [1, 11, 21, 31]
    public_key = Ed25519PublicKey.from_public_bytes(key)
    for checkpoint in checkpoints:
        statement = json.loads(checkpoint["payload"])
        assert statement == {
            "seq": checkpoint["seq"],
            "head_hash": hashes[checkpoint["seq"]].hex(),
            "made_at": _text(checkpoint["made_at"]),
            "key_id": SIGNER.key_id,
        }
        assert checkpoint["head_hash"] == hashes[checkpoint["seq"]]
        public_key.verify(checkpoint["signature"], checkpoint["payload"].encode())
    assert (await verify(db)).checkpoints_checked == 4


async def test_a_checkpoint_comes_after_its_interval_but_never_without_new_events(db: Db) -> None:
    await write_events(db, 3)
    await seal_all(db, checkpoint_every=1000, checkpoint_after=timedelta(hours=1))
    again = await seal_once(db, checkpoint_every=1000, checkpoint_after=timedelta(0))
    assert again.checkpoint is None  # the head did not move
    await write_events(db, 2)
    hourly = await seal_all(db, checkpoint_every=1000, checkpoint_after=timedelta(hours=1))
    assert all(r.checkpoint is None for r in hourly)
    await write_events(db, 1)
    await settled(db)  # else a first call that seals nothing would checkpoint the head at 5
    results = await seal_all(db, checkpoint_every=1000, checkpoint_after=timedelta(0))
    made = [r.checkpoint for r in results if r.checkpoint is not None]
    assert [c.seq for c in made] == [6]
    async with session_factory(db.engine)() as session:
        latest = await audit.latest_checkpoint(session)
    assert latest is not None and latest.seq == 6


# --- the database's documents are the canonical form --------------------------------------------

_text_values = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(-1e15, 1e15, allow_nan=False)
    | _text_values,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text_values, inner, max_size=4),
    max_leaves=16,
)
_events = st.fixed_dictionaries(
    {
        "type": _text_values,
        "subject_id": _text_values,
        "actor_principal_id": st.none() | st.uuids(),
        "actor_enterprise_id": st.none() | st.uuids(),
        "request_id": st.none() | _text_values,
        "enterprise_ids": st.lists(st.uuids(), max_size=3),
        "lot_ids": st.lists(st.uuids(), max_size=3),
        "region_codes": st.lists(st.text("0123456789", min_size=2, max_size=6), max_size=3),
        "occurred_at": st.datetimes(
            datetime(1000, 1, 1), datetime(9999, 12, 30), timezones=st.just(UTC)
        ),
        "payload": st.dictionaries(_text_values, _json, max_size=6),
    }
)

_INSERT_ANY = """
INSERT INTO event (type, subject_type, subject_id, actor_kind, actor_principal_id, actor_role,
                   actor_enterprise_id, request_id, enterprise_ids, facility_ids, lot_ids,
                   region_codes, occurred_at, payload)
VALUES ($1, 'test', $2, 'user', $3, 'operator', $4, $5, $6, '{}', $7, $8, $9, $10)
RETURNING id
"""


async def _both_hashes(dsn: str, events: list[dict[str, Any]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        ids = []
        for event in events:
            ids.append(
                await conn.fetchval(
                    _INSERT_ANY,
                    event["type"],
                    event["subject_id"],
                    event["actor_principal_id"],
                    event["actor_enterprise_id"],
                    event["request_id"],
                    event["enterprise_ids"],
                    event["lot_ids"],
                    event["region_codes"],
                    event["occurred_at"],
                    json.dumps(event["payload"]),
                )
            )
        query = (
            f"SELECT e.*, {audit.DOCUMENT} AS document FROM {audit.DOCUMENT_FROM}"  # noqa: S608
            " WHERE e.id = any($1)"
        )
        for n, row in enumerate(await conn.fetch(query, ids)):
            reference = {**dict(row), "seq": n + 1, "payload": json.loads(row["payload"])}
            prev = hashlib.sha256(str(n).encode()).digest()
            assert rules.document_hash(prev, n + 1, row["document"]) == rules.chain_hash(
                prev, reference
            ), (row["document"], reference)
    finally:
        await conn.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(_events, min_size=1, max_size=8))
def test_the_database_spells_every_event_exactly_as_canonical_event(
    db: Db, events: list[dict[str, Any]]
) -> None:
    """The sealer and verification hash documents PostgreSQL builds (`audit.DOCUMENT`); the
    reference is `canonical_event` over the decoded columns. Any text, any JSON, any time."""
    in_thread(asyncio.run, _both_hashes(db.dsn, events))
