"""Lot use cases: register (one or a batch, one code path), split, read, history, seller view."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import orjson
from sqlalchemy import ColumnElement, Select, false, func, insert, or_, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor, Role
from domain.audit import service as audit
from domain.audit.models import Event
from domain.base import metadata, utcnow
from domain.bulk import copy_rows, driver
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.ids import new_id
from domain.lots.models import Lot, LotSource
from domain.lots.rules import (
    CONFORMITY_STANDARDS,
    MOVABLE,
    Composition,
    ConsumerClass,
    LotKind,
    LotStatus,
    Metal,
    Origin,
    largest_remainder,
    lot_code,
    mask_id_number,
    mask_name,
    resident_id_violation,
    split_composition,
)
from domain.mass import g_to_kg
from domain.pagination import Page, keyset_page
from domain.reference.models import ScrapCategory
from domain.registry.models import Facility
from domain.registry.rules import EnterpriseRole, FacilityKind, Status, uscc_violation
from domain.registry.service import EnterpriseSuspended

CLOCK_SKEW = timedelta(minutes=5)  # a phone's clock may run a little ahead


class SellerVault(Protocol):
    """Seals personal data at rest (implemented with AES-GCM in `integrations`)."""

    def seal(self, plaintext: bytes, context: bytes) -> bytes: ...

    def open(self, sealed: bytes, context: bytes) -> bytes: ...


class LotNotAvailable(Conflict):
    code = "lot_not_available"
    title = "The lot is not available for this"


class FacilitySuspended(Forbidden):
    code = "facility_suspended"
    title = "The facility is suspended"


class WrongFacility(InvalidInput):
    code = "wrong_facility"
    title = "This facility cannot do that"


@dataclass(frozen=True, slots=True)
class Seller:
    kind: str  # individual | organisation
    name: str
    id_number: str | None = None
    uscc: str | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    facility_id: uuid.UUID
    metal: Metal
    category: str
    net_g: int
    consumer_class: ConsumerClass
    channel: str
    collected_at: datetime
    origin: Origin = Origin.domestic
    import_country: str | None = None
    customs_declaration_no: str | None = None
    conformity_standard: str | None = None
    seller: Seller | None = None


@dataclass
class Problems:
    """Problems of a request, each with a JSON pointer; raised together as one 422."""

    prefix: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, pointer: str, detail: str) -> None:
        self.errors.append({"pointer": f"{self.prefix}{pointer}", "detail": detail})

    def raise_if_any(self, error: type[InvalidInput] = InvalidInput) -> None:
        if self.errors:
            first = self.errors[0]
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            raise error(f"{first['pointer']}: {first['detail']}{more}", errors=self.errors)


# --- visibility -------------------------------------------------------------------------------


def lot_visible_to(actor: Actor) -> ColumnElement[bool]:
    """Current and past holders, and authorities whose jurisdiction holds a facility it touched."""
    if actor.is_platform_admin:
        return true()
    if actor.enterprise_id is not None:
        return col(Lot.enterprise_ids).contains([actor.enterprise_id])
    if actor.jurisdiction is not None:
        return col(Lot.region_prefixes).contains([actor.jurisdiction])
    return false()


def region_prefixes(region_code: str) -> list[str]:
    return [region_code[:2], region_code[:4], region_code]


def composition_of(lot: Lot) -> Composition:
    """How many of a lot's grams are post-consumer, pre-consumer and primary."""
    return Composition(lot.post_consumer_g, lot.pre_consumer_g, lot.primary_g)


async def get_lot(
    session: AsyncSession, actor: Actor, lot_id: uuid.UUID, *, lock: bool = False
) -> Lot:
    query = select(Lot).where(col(Lot.id) == lot_id, lot_visible_to(actor))
    # FOR NO KEY UPDATE: writers of the lot wait in turn, but rows that merely refer to it (a
    # ledger entry drawing its credits, under an account lock the holder may be waiting for) do
    # not wait for the holder: that wait would close a deadlock.
    lot = await session.scalar(query.with_for_update(key_share=True) if lock else query)
    if lot is None:
        raise NotFound(f"lot {lot_id} not found")
    return lot


@dataclass(frozen=True, slots=True)
class LotFilter:
    facility_id: uuid.UUID | None = None
    status: LotStatus | None = None
    metal: Metal | None = None
    category: str | None = None
    collected_from: datetime | None = None
    collected_to: datetime | None = None


async def _holds_it(session: AsyncSession, actor: Actor, facility_id: uuid.UUID) -> bool:
    """Whether the facility is the caller's own: then every lot it holds is visible (a holder
    is always among a lot's enterprises), and leaving that condition out lets PostgreSQL walk
    the facility's lots in id order instead of gathering and sorting all of them."""
    if actor.enterprise_id is None:
        return False
    owner = await session.scalar(
        select(col(Facility.enterprise_id)).where(col(Facility.id) == facility_id)
    )
    return owner == actor.enterprise_id


async def list_lots(
    session: AsyncSession, actor: Actor, where: LotFilter, *, after: uuid.UUID | None, limit: int
) -> Page[Lot]:
    query: Select[Lot] = select(Lot)
    if where.facility_id is not None:
        query = query.where(col(Lot.holder_facility_id) == where.facility_id)
    if where.facility_id is None or not await _holds_it(session, actor, where.facility_id):
        query = query.where(lot_visible_to(actor))
    if where.status is not None:
        query = query.where(col(Lot.status) == where.status.value)
    if where.metal is not None:
        query = query.where(col(Lot.metal) == where.metal.value)
    if where.category is not None:
        query = query.where(col(Lot.category) == where.category)
    if where.collected_from is not None:
        query = query.where(col(Lot.collected_at) >= where.collected_from)
    if where.collected_to is not None:
        query = query.where(col(Lot.collected_at) < where.collected_to)
    return await keyset_page(session, query, col(Lot.id), after=after, limit=limit)


async def lot_history(session: AsyncSession, actor: Actor, lot_id: uuid.UUID) -> Sequence[Event]:
    """The lot's story up to the caller's last part in it (its provenance, as lineage shows it),
    and after that only the events the caller's own audit trail shows, oldest first: a past
    holder sees its lot leave, not what the next holder then did with it and with its own lots
    (a run's payload names every input). Changes to one lot are serialised by its row lock, so
    their ids are in commit order."""
    await get_lot(session, actor, lot_id)
    of_lot = col(Event.lot_ids).contains([lot_id])
    visible = audit.event_visible_to(actor)
    last_part = select(func.max(col(Event.id))).where(of_lot, visible).scalar_subquery()
    rows = await session.scalars(
        select(Event)
        .where(of_lot, or_(visible, col(Event.id) <= last_part))
        .order_by(col(Event.id))
    )
    return rows.all()


# --- registration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CollectionPoint:
    facility_id: uuid.UUID
    enterprise_id: uuid.UUID
    region_code: str


_COLLECTION_POINT = """
SELECT f.enterprise_id, f.region_code, f.status, f.kind, e.status AS enterprise_status, e.roles
FROM facility f JOIN enterprise e ON e.id = f.enterprise_id WHERE f.id = $1
"""


async def _collection_point(
    session: AsyncSession, actor: Actor, facility_id: uuid.UUID
) -> CollectionPoint:
    """The caller's own active collection point, in a recycling enterprise."""
    row = await (await driver(session)).fetchrow(_COLLECTION_POINT, facility_id)
    if row is None or (not actor.is_platform_admin and row["enterprise_id"] != actor.enterprise_id):
        raise NotFound(f"facility {facility_id} not found")
    require_operator(actor)
    if row["enterprise_status"] != Status.active:
        raise EnterpriseSuspended(f"enterprise {row['enterprise_id']} is suspended")
    if row["status"] != Status.active:
        raise FacilitySuspended(f"facility {facility_id} is suspended")
    if row["kind"] != FacilityKind.collection_point:
        raise WrongFacility(
            f"lots are registered at collection points; facility {facility_id} is a {row['kind']}"
        )
    if EnterpriseRole.recycler not in row["roles"]:
        raise Forbidden("only enterprises with the recycler role register lots from sellers")
    return CollectionPoint(facility_id, row["enterprise_id"], row["region_code"])


def require_operator(actor: Actor) -> None:
    """Enterprise admins and operators act for their enterprise; viewers only read."""
    if not actor.is_platform_admin and actor.role not in (Role.admin, Role.operator):
        raise Forbidden(f"role {actor.role.value} may not change custody records")


_categories_cache: dict[str, str] = {}


async def categories(session: AsyncSession) -> dict[str, str]:
    """Scrap category → metal. Reference data changes only with a migration: read it once."""
    if not _categories_cache:
        rows = await session.execute(select(col(ScrapCategory.code), col(ScrapCategory.metal)))
        _categories_cache.update(rows.all())
    return _categories_cache


def _check_registration(
    item: Registration, categories: dict[str, str], now: datetime, problems: Problems
) -> None:
    metal = categories.get(item.category)
    if metal is None:
        problems.add("/category", f"unknown scrap category {item.category!r}")
    elif metal != item.metal:
        problems.add("/category", f"category {item.category} is {metal} scrap, not {item.metal}")
    if item.collected_at > now + CLOCK_SKEW:
        problems.add("/collected_at", "collected_at is in the future")
    if item.origin is Origin.import_:
        standard = item.conformity_standard
        if standard is not None and CONFORMITY_STANDARDS.get(standard) != item.metal:
            problems.add(
                "/origin/conformity_standard",
                f"{standard} does not cover {item.metal} raw material",
            )
    seller = item.seller
    if seller is not None and seller.kind == "individual" and seller.id_number is not None:
        reason = resident_id_violation(seller.id_number)
        if reason:
            problems.add("/seller/id_number", reason)
    if seller is not None and seller.kind == "organisation" and seller.uscc is not None:
        violation = uscc_violation(seller.uscc)
        if violation:
            problems.add("/seller/uscc", f"{violation.rule}: {violation.detail}")


def _seller_columns(lot_id: uuid.UUID, seller: Seller | None, vault: SellerVault) -> dict[str, Any]:
    if seller is None:
        return {}
    if seller.kind == "organisation":
        return {
            "seller_kind": "organisation",
            "seller_name_masked": seller.name,
            "seller_id_masked": seller.uscc,
        }
    assert seller.id_number is not None
    secret = orjson.dumps({"name": seller.name, "id_number": seller.id_number})
    return {
        "seller_kind": "individual",
        "seller_name_masked": mask_name(seller.name),
        "seller_id_masked": mask_id_number(seller.id_number),
        "seller_sealed": vault.seal(secret, lot_id.bytes),
    }


CODE_BLOCK = 100  # lot_code_seq steps by this much: one nextval reserves a block of serials


class _Serials:
    """Serials reserved by this process, handed out without a round trip. Unused ones are lost
    when the process ends; codes only need to be unique, not gapless."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._lock = threading.Lock()  # tests drive several event loops in threads

    def take(self, n: int) -> list[int] | None:
        with self._lock:
            if len(self._free) < n:
                return None
            taken = self._free[:n]
            del self._free[:n]
            return taken

    def add(self, block_starts: Sequence[int]) -> None:
        with self._lock:
            for start in block_starts:
                self._free.extend(range(start, start + CODE_BLOCK))


_serials: dict[str, _Serials] = {}


def _serials_of(session: AsyncSession) -> _Serials:
    """Each database has its own sequence: serials reserved from one are never used in another
    (one process serves one database, but tools and tests may use several)."""
    bind = session.bind
    key = "" if bind is None else bind.engine.url.render_as_string(hide_password=True)
    return _serials.setdefault(key, _Serials())


async def next_codes(session: AsyncSession, metals: Sequence[Metal]) -> list[str]:
    pool = _serials_of(session)
    serials = pool.take(len(metals))
    while serials is None:
        blocks = -(-len(metals) // CODE_BLOCK)
        starts = await session.scalars(
            text("SELECT nextval('lot_code_seq') FROM generate_series(1, :n)"), {"n": blocks}
        )
        pool.add(list(starts))
        serials = pool.take(len(metals))
    year = utcnow().year
    return [lot_code(m, year, s) for m, s in zip(metals, serials, strict=True)]


@dataclass(frozen=True, slots=True)
class Registered:
    id: uuid.UUID
    code: str
    net_g: int


COPY_FROM = 20  # lots per request from which COPY beats a multi-row insert


@dataclass(frozen=True, slots=True)
class NewLot:
    """A lot as registration writes it, its fields in `LOT_COLUMNS` order. The single-lot path
    answers with this rather than an ORM `Lot`: building an instrumented instance cost more than
    the rest of the response."""

    id: uuid.UUID
    code: str
    kind: str
    metal: str
    category: str
    net_g: int
    post_consumer_g: int
    pre_consumer_g: int
    primary_g: int
    consumer_class: str
    channel: str
    origin: str
    import_country: str | None
    customs_declaration_no: str | None
    conformity_standard: str | None
    collected_at: datetime
    registered_facility_id: uuid.UUID
    holder_facility_id: uuid.UUID
    holder_enterprise_id: uuid.UUID
    status: str
    version: int
    enterprise_ids: list[uuid.UUID]
    region_prefixes: list[str]
    facility_ids: list[uuid.UUID]
    seller_kind: str | None
    seller_name_masked: str | None
    seller_id_masked: str | None
    seller_sealed: bytes | None
    registered_at: datetime
    updated_at: datetime
    # Never set at registration (a scrap lot has no product form and no parent).
    product_form: None = None
    parent_lot_id: None = None


LOT_COLUMNS = tuple(
    f.name for f in fields(NewLot) if f.name not in ("product_form", "parent_lot_id")
)


async def register_lot(
    session: AsyncSession, actor: Actor, vault: SellerVault, item: Registration
) -> NewLot:
    (row,) = await _register(session, actor, vault, [item], batch=False)
    return NewLot(**row)


async def register_batch(
    session: AsyncSession,
    actor: Actor,
    vault: SellerVault,
    items: Sequence[Registration | None],
    known_errors: Sequence[dict[str, Any]] = (),
) -> list[Registered]:
    """All or nothing. `None` stands for an item the caller could not even read (its problems
    are in `known_errors`); the others are still checked, so one answer names every bad item."""
    rows = await _register(session, actor, vault, items, batch=True, known_errors=known_errors)
    return [Registered(row["id"], row["code"], row["net_g"]) for row in rows]


async def _register(
    session: AsyncSession,
    actor: Actor,
    vault: SellerVault,
    items: Sequence[Registration | None],
    *,
    batch: bool,
    known_errors: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Register lots all or nothing. Every problem is reported with its pointer (`/lots/{i}/...`
    for a batch) before anything is written. A few lots and their events go in as one statement,
    many through COPY."""
    readable = [item for item in items if item is not None]
    places: dict[uuid.UUID, CollectionPoint] = {}
    for facility_id in dict.fromkeys(item.facility_id for item in readable):
        places[facility_id] = await _collection_point(session, actor, facility_id)
    known = await categories(session)
    now = utcnow()
    problems = Problems(errors=list(known_errors))
    for index, item in enumerate(items):
        problems.prefix = f"/lots/{index}" if batch else ""
        if item is not None:
            _check_registration(item, known, now, problems)
    problems.raise_if_any()
    assert len(readable) == len(items)  # every unreadable item has a known error
    items = readable

    codes = await next_codes(session, [item.metal for item in items])
    rows = [
        _lot_row(item, code, places[item.facility_id], vault, now)
        for item, code in zip(items, codes, strict=True)
    ]
    # Made as they are written: the COPY path streams them (see audit.copy_events).
    changes = (
        audit.Change(
            type="lot.registered",
            subject_type="lot",
            subject_id=row["id"],
            enterprise_ids=[row["holder_enterprise_id"]],
            facility_ids=[row["holder_facility_id"]],
            region_codes=[places[row["holder_facility_id"]].region_code],
            lot_ids=[row["id"]],
            payload=registered_payload(row),
        )
        for row in rows
    )
    if len(rows) == 1:
        (event,) = audit.event_rows(actor, changes)
        event["payload"] = audit.payload_json(event["payload"])
        await (await driver(session)).execute(
            _ONE_LOT_WITH_ITS_EVENT,
            *(rows[0][c] for c in LOT_COLUMNS),
            *(event[c] for c in audit.EVENT_COLUMNS),
        )
    elif len(rows) < COPY_FROM:
        await session.execute(insert(LOT_TABLE), rows)
        await audit.record_many(session, actor, changes)
    else:
        records = (tuple(r[c] for c in LOT_COLUMNS) for r in rows)
        await copy_rows(session, "lot", LOT_COLUMNS, records)
        await audit.copy_events(session, actor, changes)
    return rows


LOT_TABLE = metadata.tables["lot"]

# One round trip for the lot and its event, as one statement prepared once per connection.
_ONE_LOT_WITH_ITS_EVENT = (
    f"WITH registered AS (INSERT INTO lot ({', '.join(LOT_COLUMNS)})"  # noqa: S608 - constants
    f" VALUES ({', '.join(f'${i + 1}' for i in range(len(LOT_COLUMNS)))}))"
    f" INSERT INTO event ({', '.join(audit.EVENT_COLUMNS)}) VALUES ("
    + ", ".join(f"${len(LOT_COLUMNS) + i + 1}" for i in range(len(audit.EVENT_COLUMNS)))
    + ")"
)


def _lot_row(
    item: Registration,
    code: str,
    place: CollectionPoint,
    vault: SellerVault,
    now: datetime,
) -> dict[str, Any]:
    lot_id = new_id()
    composition = Composition.registered(item.consumer_class, item.net_g)
    return {
        "id": lot_id,
        "code": code,
        "kind": LotKind.scrap.value,
        "metal": item.metal.value,
        "category": item.category,
        "net_g": item.net_g,
        "post_consumer_g": composition.post_consumer_g,
        "pre_consumer_g": composition.pre_consumer_g,
        "primary_g": composition.primary_g,
        "consumer_class": item.consumer_class.value,
        "channel": item.channel,
        "origin": item.origin.value,
        "import_country": item.import_country,
        "customs_declaration_no": item.customs_declaration_no,
        "conformity_standard": item.conformity_standard,
        "collected_at": item.collected_at,
        "registered_facility_id": place.facility_id,
        "holder_facility_id": place.facility_id,
        "holder_enterprise_id": place.enterprise_id,
        "status": LotStatus.active.value,
        "version": 1,
        "enterprise_ids": [place.enterprise_id],
        "region_prefixes": region_prefixes(place.region_code),
        "facility_ids": [place.facility_id],
        "seller_kind": None,
        "seller_name_masked": None,
        "seller_id_masked": None,
        "seller_sealed": None,
        "registered_at": now,
        "updated_at": now,
        **_seller_columns(lot_id, item.seller, vault),
    }


REGISTERED_FIELDS = (
    "code", "metal", "category", "net_g", "post_consumer_g", "pre_consumer_g", "primary_g",
    "channel", "origin", "import_country", "customs_declaration_no", "conformity_standard",
    "collected_at", "seller_kind",
)  # fmt: skip


def registered_payload(row: dict[str, Any]) -> dict[str, Any]:
    """What the event log keeps of a registration: never the seller's personal data."""
    return {
        **{name: row[name] for name in REGISTERED_FIELDS},
        "facility_id": row["holder_facility_id"],
    }


# --- split ------------------------------------------------------------------------------------


async def split_lot(
    session: AsyncSession, actor: Actor, lot_id: uuid.UUID, parts_g: Sequence[int]
) -> tuple[Lot, list[Lot]]:
    """Split a lot held by the caller into parts summing exactly to it; the composition is split
    by the largest-remainder rule. The parent becomes `split`, the children are `active`."""
    lot = await get_lot(session, actor, lot_id, lock=True)
    if not actor.is_platform_admin and lot.holder_enterprise_id != actor.enterprise_id:
        raise NotFound(f"lot {lot_id} not found")  # past holders see it, only the holder splits
    require_operator(actor)
    if lot.status not in MOVABLE:
        raise LotNotAvailable(f"lot {lot.code} is {lot.status}; only a lot at rest can be split")
    problems = Problems()
    if len(parts_g) < 2:
        problems.add("/parts_kg", "a split needs at least two parts")
    for index, part in enumerate(parts_g):
        if part <= 0:
            problems.add(f"/parts_kg/{index}", "every part must be more than 0 kg")
    if sum(parts_g) != lot.net_g:
        problems.add(
            "/parts_kg",
            f"parts sum to {g_to_kg(sum(parts_g))} kg but the lot has {g_to_kg(lot.net_g)} kg;"
            " they must match exactly",
        )
    problems.raise_if_any()

    composition = composition_of(lot)
    metals = [Metal(lot.metal)] * len(parts_g)
    codes = await next_codes(session, metals)
    children = [
        child_of(lot, code, part)
        for code, part in zip(codes, split_composition(composition, parts_g), strict=True)
    ]
    session.add_all(children)
    session.add_all(derived_from(lot, child, "split") for child in children)
    lot.status = LotStatus.split_.value
    lot.version += 1
    lot.updated_at = utcnow()
    await session.flush()
    facility = await session.get_one(Facility, lot.holder_facility_id)
    await audit.record(
        session,
        actor,
        "lot.split",
        subject_type="lot",
        subject_id=lot.id,
        enterprise_ids=[lot.holder_enterprise_id],
        facility_ids=[lot.holder_facility_id],
        region_codes=[facility.region_code],
        lot_ids=[lot.id, *(c.id for c in children)],
        payload={
            "parent": lot.code,
            "net_g": lot.net_g,
            "children": [{"id": c.id, "code": c.code, "net_g": c.net_g} for c in children],
        },
    )
    return lot, children


def derived_from(source: Lot, lot: Lot, via: str) -> LotSource:
    """Lineage edge: all of `lot`, as created, came from `source`."""
    return LotSource(
        lot_id=lot.id, source_lot_id=source.id, grams=lot.net_g, of_g=lot.net_g, via=via
    )


def child_of(
    parent: Lot,
    code: str,
    composition: Composition,
    *,
    status: LotStatus = LotStatus.active,
    holder: Facility | None = None,
) -> Lot:
    """A new lot carrying part of `parent`: same material and origin, its own mass and code."""
    fields = parent.model_dump(
        exclude={
            "id",
            "code",
            "net_g",
            "post_consumer_g",
            "pre_consumer_g",
            "primary_g",
            "status",
            "version",
            "parent_lot_id",
            "registered_at",
            "updated_at",
        }
    )
    child = Lot.model_validate(
        {
            **fields,
            "code": code,
            "net_g": composition.total_g,
            "post_consumer_g": composition.post_consumer_g,
            "pre_consumer_g": composition.pre_consumer_g,
            "primary_g": composition.primary_g,
            "status": status.value,
            "parent_lot_id": parent.id,
        }
    )
    if holder is not None:
        child.holder_facility_id = holder.id
        child.holder_enterprise_id = holder.enterprise_id
    return child


# --- seller identity --------------------------------------------------------------------------


_FIRST_ANCESTOR = text(
    """
    WITH RECURSIVE line AS (
        SELECT id, parent_lot_id FROM lot WHERE id = :lot_id
        UNION ALL
        SELECT lot.id, lot.parent_lot_id FROM lot JOIN line ON lot.id = line.parent_lot_id
    )
    SELECT id FROM line WHERE parent_lot_id IS NULL
    """
)


async def reveal_seller(
    session: AsyncSession, actor: Actor, vault: SellerVault, lot_id: uuid.UUID, reason: str
) -> dict[str, str]:
    """The seller's full name and ID number, for an authority supervisor only; the view itself
    is an audited event (who, when, why)."""
    if actor.role is not Role.supervisor:
        raise Forbidden("only an authority supervisor may see a seller's personal data")
    lot = await get_lot(session, actor, lot_id)
    if lot.seller_sealed is None:
        raise NotFound(f"lot {lot.code} has no individual seller on record")
    # Sealed with the id of the lot it was registered on; split and refused parts inherit it.
    registered_on = await session.scalar(_FIRST_ANCESTOR, {"lot_id": lot.id})
    seller: dict[str, str] = json.loads(vault.open(lot.seller_sealed, registered_on.bytes))
    await audit.record(
        session,
        actor,
        "lot.seller_viewed",
        subject_type="lot",
        subject_id=lot.id,
        lot_ids=[lot.id],
        # Where the lot has been, so that the regions' own audit queries find who looked.
        enterprise_ids=lot.enterprise_ids,
        facility_ids=lot.facility_ids,
        region_codes=[p for p in lot.region_prefixes if len(p) == 6],
        payload={"reason": reason, "code": lot.code},
    )
    return seller


# --- lineage ----------------------------------------------------------------------------------

MAX_LINEAGE_DEPTH = 50
_SHARE_SCALE = 10**18  # shares become integer weights for the largest-remainder rounding

# Share = the part of the reached lot's mass that came from the start (downstream) or that the
# reached lot gave to the start (upstream): the product of `grams / of_g` along each path, summed
# over paths. Voided lots are not followed.
_UPSTREAM = text(
    """
    WITH RECURSIVE walk(lot_id, share, depth) AS (
        SELECT CAST(:lot_id AS uuid), CAST(1 AS numeric), 0
        UNION ALL
        SELECT s.source_lot_id, walk.share * s.grams / s.of_g, walk.depth + 1
        FROM walk JOIN lot_source s ON s.lot_id = walk.lot_id
        WHERE walk.depth < :max_depth
    )
    SELECT l.id, l.code, l.kind, l.metal, l.category, l.product_form, l.status, l.net_g,
           l.holder_facility_id, l.registered_facility_id, sum(walk.share) AS share,
           min(walk.depth) AS depth,
           NOT EXISTS (SELECT 1 FROM lot_source s WHERE s.lot_id = l.id) AS is_source
    FROM walk JOIN lot l ON l.id = walk.lot_id
    WHERE walk.depth > 0
    GROUP BY l.id
    ORDER BY min(walk.depth), l.id
    """
)
_DOWNSTREAM = text(
    """
    WITH RECURSIVE walk(lot_id, share, depth) AS (
        SELECT CAST(:lot_id AS uuid), CAST(1 AS numeric), 0
        UNION ALL
        SELECT s.lot_id, walk.share * s.grams / s.of_g, walk.depth + 1
        FROM walk
        JOIN lot_source s ON s.source_lot_id = walk.lot_id
        JOIN lot child ON child.id = s.lot_id AND child.status <> 'voided'
        WHERE walk.depth < :max_depth
    )
    SELECT l.id, l.code, l.kind, l.metal, l.category, l.product_form, l.status, l.net_g,
           l.holder_facility_id, l.registered_facility_id, sum(walk.share) AS share,
           min(walk.depth) AS depth,
           NOT EXISTS (
               SELECT 1 FROM lot_source s JOIN lot c ON c.id = s.lot_id
               WHERE s.source_lot_id = l.id AND c.status <> 'voided'
           ) AS is_source
    FROM walk JOIN lot l ON l.id = walk.lot_id
    WHERE walk.depth > 0
    GROUP BY l.id
    ORDER BY min(walk.depth), l.id
    """
)
_HELD = (LotStatus.active.value, LotStatus.in_transit.value, LotStatus.refused.value)


@dataclass(frozen=True, slots=True)
class Reached:
    """A lot reached by lineage, and how many grams of metal link it to the start."""

    lot_id: uuid.UUID
    code: str
    kind: str
    metal: str
    category: str | None
    product_form: str | None
    status: str
    holder_facility_id: uuid.UUID
    registered_facility_id: uuid.UUID
    depth: int
    end: bool  # a source (upstream) or where the metal is now (downstream)
    grams: int


@dataclass(frozen=True, slots=True)
class Lineage:
    lot: Lot
    direction: str
    lots: list[Reached]
    facilities: dict[uuid.UUID, int]  # collection points (upstream), holders now (downstream)
    primary_g: int  # upstream: the start's grams that came from primary metal
    complete: bool  # False when max_depth cut the walk short


async def lineage(
    session: AsyncSession, actor: Actor, lot_id: uuid.UUID, direction: str, max_depth: int
) -> Lineage:
    """Upstream: every lot this one came from, and each source lot and collection point with the
    grams it contributed; the sources' grams and the primary metal sum exactly to the lot's mass.
    Downstream: where this lot's metal went, what it became, and where it is now."""
    lot = await get_lot(session, actor, lot_id)
    query = _UPSTREAM if direction == "upstream" else _DOWNSTREAM
    rows = (await session.execute(query, {"lot_id": lot.id, "max_depth": max_depth})).all()
    complete = not any(row.depth == max_depth and not row.is_source for row in rows)
    if direction == "upstream":
        return _upstream(lot, rows, max_depth, complete)
    return _downstream(lot, rows, complete)


def _reached(row: Any, grams: int, end: bool) -> Reached:
    return Reached(
        lot_id=row.id,
        code=row.code,
        kind=row.kind,
        metal=row.metal,
        category=row.category,
        product_form=row.product_form,
        status=row.status,
        holder_facility_id=row.holder_facility_id,
        registered_facility_id=row.registered_facility_id,
        depth=row.depth,
        end=end,
        grams=grams,
    )


def _weight(share: Decimal) -> int:
    return int(share * _SHARE_SCALE)


def _upstream(lot: Lot, rows: Sequence[Any], max_depth: int, complete: bool) -> Lineage:
    """The ends (sources, or where max_depth stopped the walk) and the primary metal share the
    lot's mass exactly, by the largest-remainder rule."""
    if not rows:  # a lot registered from a seller is its own source
        return Lineage(lot, "upstream", [], {}, 0, complete)
    ends = [row for row in rows if row.is_source or row.depth == max_depth]
    weights = [_weight(row.share) for row in ends]
    weights.append(max(_SHARE_SCALE - sum(weights), 0))  # what primary metal contributed
    exact = largest_remainder(lot.net_g, weights)
    by_end = {row.id: grams for row, grams in zip(ends, exact, strict=False)}
    reached = [
        _reached(row, by_end.get(row.id, _scaled(row.share, lot.net_g)), row.id in by_end)
        for row in rows
    ]
    facilities: dict[uuid.UUID, int] = {}
    for row in ends:
        if row.is_source:
            place = row.registered_facility_id
            facilities[place] = facilities.get(place, 0) + by_end[row.id]
    return Lineage(lot, "upstream", reached, facilities, exact[-1], complete)


def _downstream(lot: Lot, rows: Sequence[Any], complete: bool) -> Lineage:
    reached = []
    facilities: dict[uuid.UUID, int] = {}
    for row in rows:
        grams = _scaled(row.share, row.net_g)
        reached.append(_reached(row, grams, row.is_source))
        if row.status in _HELD:
            facilities[row.holder_facility_id] = facilities.get(row.holder_facility_id, 0) + grams
    return Lineage(lot, "downstream", reached, facilities, 0, complete)


def _scaled(share: Decimal, grams: int) -> int:
    return int((share * grams).to_integral_value())
