"""Credit ledger and certificate use cases.

Every change to an account's credits happens under that account's row lock (`_lock_accounts`,
always both classes of a metal, in class order): the balance can neither be overdrawn nor spent
twice by concurrent requests, and the tranches under it need no locks of their own."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from domain.actor import Actor, Role
from domain.audit import service as audit
from domain.audit.service import Signer
from domain.base import utcnow
from domain.credits import rules
from domain.credits.models import Certificate, CreditAccount, CreditEntry, CreditTranche
from domain.credits.rules import (
    CertificateStatus,
    Claim,
    EntryKind,
    Method,
    RecycledClass,
    canonical_json,
    draw,
    expires_at,
    kg,
    mass_balance_claim,
    percent,
    proportional_claim,
)
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.lots.models import Lot
from domain.lots.rules import Composition, LotKind, LotStatus
from domain.lots.service import composition_of, get_lot, lot_visible_to, require_operator
from domain.pagination import Page, keyset_page
from domain.registry.models import Enterprise, Facility
from domain.registry.rules import Status
from domain.registry.service import EnterpriseSuspended, get_enterprise


class InsufficientCredits(Conflict):
    code = "insufficient_credits"
    title = "Not enough recycled credits"


class AlreadyCertified(Conflict):
    code = "already_certified"
    title = "The lot is already certified"


class CreditsClaimed(Conflict):
    code = "credits_claimed"
    title = "Credits this run earned have been claimed"


class NotAProduct(InvalidInput):
    code = "not_a_product"
    title = "Only product lots are certified"


class UnknownRecipient(InvalidInput):
    code = "unknown_recipient"
    title = "The recipient enterprise does not exist"


# --- the ledger -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Movement:
    """A change to one tranche, written as one ledger entry."""

    tranche: CreditTranche
    grams: int  # signed: positive adds to the balance
    kind: EntryKind


async def _lock_accounts(
    session: AsyncSession, enterprise_id: uuid.UUID, metal: str
) -> dict[RecycledClass, CreditAccount]:
    """Both class accounts of an enterprise's metal, created at zero if new, locked in order."""
    await session.execute(
        insert(CreditAccount)
        .values(
            [
                {
                    "enterprise_id": enterprise_id,
                    "metal": metal,
                    "recycled_class": c.value,
                    "balance_g": 0,
                }
                for c in RecycledClass
            ]
        )
        .on_conflict_do_nothing()
    )
    rows = await session.scalars(
        select(CreditAccount)
        .where(col(CreditAccount.enterprise_id) == enterprise_id, col(CreditAccount.metal) == metal)
        .order_by(col(CreditAccount.recycled_class))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {RecycledClass(a.recycled_class): a for a in rows}


async def _book(
    session: AsyncSession,
    accounts: dict[RecycledClass, CreditAccount],
    movements: Sequence[Movement],
    *,
    new_tranches: bool = False,
    certificate_id: uuid.UUID | None = None,
    transformation_id: uuid.UUID | None = None,
) -> list[CreditEntry]:
    """Apply movements to their accounts and tranches (new tranches are written with what they
    hold) and write the ledger entries."""
    entries = []
    for move in movements:
        account = accounts[RecycledClass(move.tranche.recycled_class)]
        account.balance_g += move.grams
        if not new_tranches:
            move.tranche.remaining_g += move.grams
        entry = CreditEntry(
            enterprise_id=account.enterprise_id,
            metal=account.metal,
            recycled_class=account.recycled_class,
            kind=move.kind.value,
            grams=move.grams,
            balance_after_g=account.balance_g,
            tranche_id=move.tranche.id,
            lot_id=move.tranche.lot_id,
            certificate_id=certificate_id,
            transformation_id=transformation_id,
        )
        session.add(entry)
        entries.append(entry)
    for account in accounts.values():
        account.updated_at = utcnow()
    await session.flush()
    return entries


async def _expire(
    session: AsyncSession,
    accounts: dict[RecycledClass, CreditAccount],
    enterprise_id: uuid.UUID,
    metal: str,
    now: datetime,
) -> None:
    """What is left of tranches past their accounting period leaves the balance."""
    overdue = (
        await session.scalars(
            select(CreditTranche)
            .where(
                col(CreditTranche.enterprise_id) == enterprise_id,
                col(CreditTranche.metal) == metal,
                col(CreditTranche.remaining_g) > 0,
                col(CreditTranche.expires_at) <= now,
            )
            .order_by(col(CreditTranche.expires_at), col(CreditTranche.id))
        )
    ).all()
    if overdue:
        await _book(
            session,
            accounts,
            [Movement(t, -t.remaining_g, EntryKind.expiry) for t in overdue],
        )


async def credit_products(
    session: AsyncSession,
    transformation_id: uuid.UUID,
    enterprise_id: uuid.UUID,
    products: Sequence[Lot],
    period_days: int,
    *,
    taken: Composition,
    taken_from_products: Composition,
) -> None:
    """A run made products: their recycled grams are credited to the producer, one tranche per
    product and class, expiring after the accounting period. What the run took from product lots
    (`taken_from_products` of all it `taken`) was credited when those were made, and is not
    credited again."""
    shares = rules.earned([composition_of(lot) for lot in products], taken, taken_from_products)
    earned = [
        (lot, c, g) for lot, share in zip(products, shares, strict=True) for c, g in share.items()
    ]
    if not earned:
        return
    now = utcnow()
    for metal in sorted({lot.metal for lot, _, _ in earned}):
        accounts = await _lock_accounts(session, enterprise_id, metal)
        await _expire(session, accounts, enterprise_id, metal, now)
        tranches = [
            CreditTranche(
                enterprise_id=enterprise_id,
                metal=metal,
                recycled_class=c.value,
                lot_id=lot.id,
                transformation_id=transformation_id,
                credited_g=g,
                remaining_g=g,
                credited_at=now,
                expires_at=expires_at(now, period_days),
            )
            for lot, c, g in earned
            if lot.metal == metal
        ]
        session.add_all(tranches)
        await session.flush()  # the entries refer to them
        await _book(
            session,
            accounts,
            [Movement(t, t.credited_g, EntryKind.credit) for t in tranches],
            new_tranches=True,
            transformation_id=transformation_id,
        )


async def reverse_credits(
    session: AsyncSession,
    transformation_id: uuid.UUID,
    enterprise_id: uuid.UUID,
    metal: str,
    products: Sequence[Lot],
) -> None:
    """A voided run takes back what its products earned; refused once a product is certified or
    any of its credits was claimed or has expired."""
    certified = await session.scalar(
        select(col(Certificate.number)).where(
            col(Certificate.lot_id).in_([lot.id for lot in products]),
            col(Certificate.status) == CertificateStatus.valid,
        )
    )
    if certified is not None:
        raise CreditsClaimed(f"a product of this run is certified by {certified}: revoke it first")
    accounts = await _lock_accounts(session, enterprise_id, metal)
    tranches = (
        await session.scalars(
            select(CreditTranche)
            .where(col(CreditTranche.transformation_id) == transformation_id)
            .order_by(col(CreditTranche.id))
        )
    ).all()
    if not tranches:
        return
    for tranche in tranches:
        if tranche.remaining_g != tranche.credited_g:
            raise CreditsClaimed(
                f"{kg(tranche.credited_g - tranche.remaining_g)} kg of the credits this run earned"
                " have been claimed by certificates or have expired: revoke those certificates"
                " first"
            )
    await _book(
        session,
        accounts,
        [Movement(t, -t.remaining_g, EntryKind.reversal) for t in tranches],
        transformation_id=transformation_id,
    )


@dataclass(frozen=True, slots=True)
class Balance:
    metal: str
    recycled_class: str
    balance_g: int
    # Still in the balance but past its period: leaves it at the account's next movement.
    expired_g: int


@dataclass(frozen=True, slots=True)
class Credits:
    enterprise: Enterprise
    balances: list[Balance]
    entries: Page[CreditEntry]


async def credits(
    session: AsyncSession,
    actor: Actor,
    enterprise_id: uuid.UUID,
    *,
    metal: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Credits:
    enterprise = await get_enterprise(session, actor, enterprise_id)
    accounts = select(CreditAccount).where(col(CreditAccount.enterprise_id) == enterprise_id)
    entries = select(CreditEntry).where(col(CreditEntry.enterprise_id) == enterprise_id)
    overdue = (
        select(
            col(CreditTranche.metal),
            col(CreditTranche.recycled_class),
            func.sum(col(CreditTranche.remaining_g)),
        )
        .where(
            col(CreditTranche.enterprise_id) == enterprise_id,
            col(CreditTranche.remaining_g) > 0,
            col(CreditTranche.expires_at) <= func.now(),
        )
        .group_by(col(CreditTranche.metal), col(CreditTranche.recycled_class))
    )
    if metal is not None:
        accounts = accounts.where(col(CreditAccount.metal) == metal)
        entries = entries.where(col(CreditEntry.metal) == metal)
        overdue = overdue.where(col(CreditTranche.metal) == metal)
    expired = {(m, c): int(g) for m, c, g in await session.execute(overdue)}
    balances = [
        Balance(
            a.metal,
            a.recycled_class,
            a.balance_g - expired.get((a.metal, a.recycled_class), 0),
            expired.get((a.metal, a.recycled_class), 0),
        )
        for a in await session.scalars(
            accounts.order_by(col(CreditAccount.metal), col(CreditAccount.recycled_class))
        )
    ]
    page = await keyset_page(session, entries, col(CreditEntry.id), after=after, limit=limit)
    return Credits(enterprise, balances, page)


# --- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issue:
    lot_id: uuid.UUID
    recipient_enterprise_id: uuid.UUID
    method: Method
    # The certified mass; the lot's mass not yet certified when not given.
    mass_g: int | None = None
    # Mass balance only: the recycled grams claimed, and optionally from which class.
    claimed_g: int | None = None
    recycled_class: RecycledClass | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    certificate: Certificate
    payload: dict[str, Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _party(session: AsyncSession, enterprise_id: uuid.UUID) -> Enterprise | None:
    return await session.get(Enterprise, enterprise_id)


def _party_json(enterprise: Enterprise) -> dict[str, str]:
    return {"id": str(enterprise.id), "name": enterprise.name, "uscc": enterprise.uscc}


async def _producer(session: AsyncSession, lot: Lot) -> uuid.UUID:
    producer = await session.scalar(
        select(col(Facility.enterprise_id)).where(col(Facility.id) == lot.registered_facility_id)
    )
    assert producer is not None  # a foreign key
    return producer


async def _certified_g(session: AsyncSession, lot_id: uuid.UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(col(Certificate.mass_g)), 0)).where(
            col(Certificate.lot_id) == lot_id, col(Certificate.status) == CertificateStatus.valid
        )
    )
    return int(total or 0)


async def _left_to_claim(session: AsyncSession, lot: Lot) -> Composition:
    """The lot's composition less what its valid proportional certificates claimed of it (their
    unclaimed mass counted as primary): shares of the rest add up to the lot, to the gram."""
    mass, post, pre = (
        await session.execute(
            select(
                func.coalesce(func.sum(col(Certificate.mass_g)), 0),
                func.coalesce(func.sum(col(Certificate.claimed_post_consumer_g)), 0),
                func.coalesce(func.sum(col(Certificate.claimed_pre_consumer_g)), 0),
            ).where(
                col(Certificate.lot_id) == lot.id,
                col(Certificate.status) == CertificateStatus.valid,
                col(Certificate.method) == Method.proportional,
            )
        )
    ).one()
    return Composition(
        max(lot.post_consumer_g - int(post), 0),
        max(lot.pre_consumer_g - int(pre), 0),
        max(lot.primary_g - (int(mass) - int(post) - int(pre)), 0),
    )


async def _draw(
    session: AsyncSession,
    accounts: dict[RecycledClass, CreditAccount],
    claim: Claim,
    lot_id: uuid.UUID,
    now: datetime,
) -> list[Movement]:
    """Tranches to debit for the claim: the certified lot's own credits first, then the oldest."""
    movements = []
    for recycled_class, account in accounts.items():
        grams = claim.of(recycled_class)
        if grams == 0:
            continue
        if account.balance_g < grams:
            raise InsufficientCredits(
                f"the claim needs {kg(grams)} kg of {recycled_class.value} recycled"
                f" {account.metal} credits; the balance holds {kg(account.balance_g)} kg",
                needed_kg=float(kg(grams)),
                balance_kg=float(kg(account.balance_g)),
            )
        ordering = (
            (col(CreditTranche.lot_id) == lot_id).desc(),
            col(CreditTranche.expires_at),
            col(CreditTranche.id),
        )
        running = (
            select(
                col(CreditTranche.id),
                col(CreditTranche.remaining_g),
                func.sum(col(CreditTranche.remaining_g)).over(order_by=ordering).label("upto"),
            )
            .where(
                col(CreditTranche.enterprise_id) == account.enterprise_id,
                col(CreditTranche.metal) == account.metal,
                col(CreditTranche.recycled_class) == account.recycled_class,
                col(CreditTranche.remaining_g) > 0,
                col(CreditTranche.expires_at) > now,
            )
            .subquery()
        )
        needed = select(running.c.id).where(running.c.upto - running.c.remaining_g < grams)
        tranches = (
            await session.scalars(
                select(CreditTranche).where(col(CreditTranche.id).in_(needed)).order_by(*ordering)
            )
        ).all()
        taken = draw([t.remaining_g for t in tranches], grams)
        movements += [
            Movement(t, -g, EntryKind.debit) for t, g in zip(tranches, taken, strict=True) if g
        ]
    return movements


async def issue_certificate(
    session: AsyncSession,
    actor: Actor,
    signer: Signer,
    request: Issue,
    verification_url: str,
) -> Issued:
    """Certify recycled content of a product lot to a recipient, spending credits under the
    account lock. `verification_url` has a `{number}` placeholder."""
    require_operator(actor)
    if not actor.is_platform_admin and not actor.enterprise_active:
        raise EnterpriseSuspended("a suspended enterprise cannot issue certificates")
    lot = await get_lot(session, actor, request.lot_id, lock=True)
    producer_id = await _producer(session, lot)
    issuer_id = actor.enterprise_id or producer_id  # a platform admin issues for the producer
    if issuer_id not in (lot.holder_enterprise_id, producer_id):
        raise Forbidden("only the enterprise that produced or holds the lot may certify it")
    if lot.kind != LotKind.product:
        raise NotAProduct(
            f"lot {lot.code} is {lot.kind}, not a product",
            errors=[{"pointer": "/lot_id", "detail": "not a product lot"}],
        )
    if lot.status in (LotStatus.voided, LotStatus.consumed):
        # A consumed lot's metal lives on in what was made from it: certify those instead.
        raise Conflict(f"lot {lot.code} is {lot.status}: certify what was made from it")
    recipient = await _party(session, request.recipient_enterprise_id)
    if recipient is None:
        raise UnknownRecipient(
            f"enterprise {request.recipient_enterprise_id} does not exist",
            errors=[{"pointer": "/recipient_enterprise_id", "detail": "unknown enterprise"}],
        )
    if recipient.id == issuer_id:
        raise InvalidInput(
            "a certificate is issued to another enterprise",
            errors=[{"pointer": "/recipient_enterprise_id", "detail": "the issuer itself"}],
        )
    if recipient.status != Status.active:
        raise Conflict(f"the recipient {recipient.name} is suspended")
    already = await session.scalar(
        select(col(Certificate.number)).where(
            col(Certificate.lot_id) == lot.id,
            col(Certificate.recipient_enterprise_id) == recipient.id,
            col(Certificate.status) == CertificateStatus.valid,
        )
    )
    if already is not None:
        raise AlreadyCertified(
            f"lot {lot.code} is already certified to {recipient.name} by {already}"
        )
    uncertified = lot.net_g - await _certified_g(session, lot.id)
    mass_g = uncertified if request.mass_g is None else request.mass_g
    if uncertified <= 0 or mass_g > uncertified:
        raise AlreadyCertified(
            f"{kg(lot.net_g - uncertified)} kg of lot {lot.code} ({kg(lot.net_g)} kg) are"
            f" certified already; {kg(max(uncertified, 0))} kg are left to certify"
        )

    debited_id = producer_id if request.method is Method.proportional else issuer_id
    now = utcnow()
    accounts = await _lock_accounts(session, debited_id, lot.metal)
    await _expire(session, accounts, debited_id, lot.metal, now)
    left = await _left_to_claim(session, lot) if request.method is Method.proportional else None
    claim = _claim(request, lot, mass_g, accounts, left)
    if claim.total_g == 0:
        raise InvalidInput(f"lot {lot.code} holds no recycled metal to certify")
    movements = await _draw(session, accounts, claim, lot.id, now)

    issuer = await _party(session, issuer_id)
    assert issuer is not None
    serial = await session.scalar(text("SELECT nextval('certificate_number_seq')"))
    number = f"SFC-{now.year}-{serial:07d}"
    credited = [m.tranche.credited_at for m in movements]
    payload = {
        "number": number,
        "issuer": _party_json(issuer),
        "recipient": _party_json(recipient),
        "lot": {"id": str(lot.id), "code": lot.code, "product_form": lot.product_form},
        "metal": lot.metal,
        "mass_kg": str(kg(mass_g)),
        "claimed_recycled_kg": {
            "post_consumer": str(kg(claim.post_consumer_g)),
            "pre_consumer": str(kg(claim.pre_consumer_g)),
            "total": str(kg(claim.total_g)),
        },
        "recycled_percent": str(percent(claim.total_g, mass_g)),
        "method": request.method.value,
        "period": {
            "from": min(credited).date().isoformat(),
            "to": max(credited).date().isoformat(),
        },
        "issued_at": now.isoformat(),
        "key_id": signer.key_id,
        "verification_url": verification_url.format(number=number),
    }
    signed = canonical_json(payload)
    await audit.publish_key(session, signer.key_id, signer.public_key)
    certificate = Certificate(
        number=number,
        lot_id=lot.id,
        issuer_enterprise_id=issuer_id,
        recipient_enterprise_id=recipient.id,
        debited_enterprise_id=debited_id,
        method=request.method.value,
        metal=lot.metal,
        mass_g=mass_g,
        claimed_post_consumer_g=claim.post_consumer_g,
        claimed_pre_consumer_g=claim.pre_consumer_g,
        payload=signed.decode(),
        signature=signer.sign(signed),
        key_id=signer.key_id,
        issued_at=now,
    )
    session.add(certificate)
    await session.flush()
    await _book(session, accounts, movements, certificate_id=certificate.id)
    await audit.record(
        session,
        actor,
        "certificate.issued",
        subject_type="certificate",
        subject_id=certificate.id,
        enterprise_ids={issuer_id, recipient.id, debited_id},
        facility_ids=lot.facility_ids,
        region_codes=[p for p in lot.region_prefixes if len(p) == 6],
        lot_ids=[lot.id],
        payload={
            "number": number,
            "method": request.method.value,
            "mass_g": mass_g,
            "claimed_post_consumer_g": claim.post_consumer_g,
            "claimed_pre_consumer_g": claim.pre_consumer_g,
        },
    )
    return Issued(certificate, payload)


def _claim(
    request: Issue,
    lot: Lot,
    mass_g: int,
    accounts: dict[RecycledClass, CreditAccount],
    left: Composition | None,
) -> Claim:
    """`left`: for a proportional claim, what of the lot's composition is not claimed yet."""
    if request.method is Method.proportional:
        if request.claimed_g is not None or request.recycled_class is not None:
            raise InvalidInput(
                "a proportional certificate claims the lot's own composition: leave out"
                " claimed_recycled_kg and recycled_class"
            )
        assert left is not None
        return proportional_claim(left, mass_g)
    if request.claimed_g is None:
        raise InvalidInput(
            "a mass-balance certificate states claimed_recycled_kg",
            errors=[{"pointer": "/claimed_recycled_kg", "detail": "required for mass_balance"}],
        )
    if request.claimed_g > mass_g:
        raise InvalidInput(
            f"the claim ({kg(request.claimed_g)} kg) exceeds the certified mass ({kg(mass_g)} kg)",
            errors=[{"pointer": "/claimed_recycled_kg", "detail": "more than the certified mass"}],
        )
    balances = {c: a.balance_g for c, a in accounts.items()}
    claim = mass_balance_claim(request.claimed_g, balances, request.recycled_class)
    if claim is None:
        only = request.recycled_class
        which = only.value if only else "recycled"
        held = balances.get(only, 0) if only else sum(balances.values())  # what the claim may use
        raise InsufficientCredits(
            f"the claim needs {kg(request.claimed_g)} kg of {which} {lot.metal} credits;"
            f" the balance holds {kg(held)} kg",
            needed_kg=float(kg(request.claimed_g)),
            balance_kg=float(kg(held)),
        )
    return claim


def _certificate_visible(actor: Actor, certificate: Certificate, lot: Lot) -> bool:
    if actor.is_platform_admin:
        return True
    if actor.enterprise_id is not None:
        return actor.enterprise_id in (
            certificate.issuer_enterprise_id,
            certificate.recipient_enterprise_id,
            certificate.debited_enterprise_id,
        )
    return actor.jurisdiction is not None and actor.jurisdiction in lot.region_prefixes


async def get_certificate(
    session: AsyncSession, actor: Actor, certificate_id: uuid.UUID, *, lock: bool = False
) -> Certificate:
    query = select(Certificate, Lot).join(Lot, col(Lot.id) == col(Certificate.lot_id))
    query = query.where(col(Certificate.id) == certificate_id)
    # FOR NO KEY UPDATE (see `get_lot`): the account is locked next.
    row = (await session.execute(query.with_for_update(key_share=True) if lock else query)).first()
    if row is None or not _certificate_visible(actor, *row):
        raise NotFound(f"certificate {certificate_id} not found")
    certificate: Certificate = row[0]
    return certificate


async def list_certificates(
    session: AsyncSession, actor: Actor, *, after: uuid.UUID | None, limit: int
) -> Page[Certificate]:
    """Certificates the caller issued or received, or that concern lots in its jurisdiction."""
    query = select(Certificate)
    if actor.enterprise_id is not None:
        mine = actor.enterprise_id
        query = query.where(
            (col(Certificate.issuer_enterprise_id) == mine)
            | (col(Certificate.recipient_enterprise_id) == mine)
            | (col(Certificate.debited_enterprise_id) == mine)
        )
    elif not actor.is_platform_admin:
        query = query.join(Lot, col(Lot.id) == col(Certificate.lot_id)).where(lot_visible_to(actor))
    return await keyset_page(session, query, col(Certificate.id), after=after, limit=limit)


async def revoke_certificate(
    session: AsyncSession, actor: Actor, certificate_id: uuid.UUID, reason: str
) -> Certificate:
    """By the issuer or a supervising authority over the lot: the claim's credits still in their
    accounting period go back to the account they came from."""
    certificate = await get_certificate(session, actor, certificate_id, lock=True)
    issuer = actor.enterprise_id == certificate.issuer_enterprise_id
    if actor.enterprise_id is not None:
        if not issuer:
            raise Forbidden("only the issuer or a supervising authority may revoke it")
        require_operator(actor)
    elif not actor.is_platform_admin and actor.role is not Role.supervisor:
        raise Forbidden("only an authority supervisor may revoke certificates")
    if certificate.status != CertificateStatus.valid:
        raise Conflict(f"certificate {certificate.number} is already {certificate.status}")
    now = utcnow()
    certificate.status = CertificateStatus.revoked.value
    certificate.revoked_at = now
    certificate.revocation_reason = reason
    certificate.version += 1
    accounts = await _lock_accounts(session, certificate.debited_enterprise_id, certificate.metal)
    debits = (
        await session.execute(
            select(CreditTranche, col(CreditEntry.grams))
            .join(CreditEntry, col(CreditEntry.tranche_id) == col(CreditTranche.id))
            .where(
                col(CreditEntry.certificate_id) == certificate.id,
                col(CreditEntry.kind) == EntryKind.debit,
            )
            .order_by(col(CreditTranche.id))
        )
    ).all()
    restored = [
        Movement(tranche, -grams, EntryKind.restore)
        for tranche, grams in debits
        if tranche.expires_at > now
    ]
    await _book(session, accounts, restored, certificate_id=certificate.id)
    lot = await session.get_one(Lot, certificate.lot_id)
    await audit.record(
        session,
        actor,
        "certificate.revoked",
        subject_type="certificate",
        subject_id=certificate.id,
        enterprise_ids={
            certificate.issuer_enterprise_id,
            certificate.recipient_enterprise_id,
            certificate.debited_enterprise_id,
        },
        facility_ids=lot.facility_ids,
        region_codes=[p for p in lot.region_prefixes if len(p) == 6],
        lot_ids=[lot.id],
        payload={
            "number": certificate.number,
            "reason": reason,
            "restored_g": sum(m.grams for m in restored),
        },
    )
    return certificate


async def public_certificate(session: AsyncSession, number: str) -> Certificate | None:
    """For anyone holding the number (printed or in a QR code): no login, no visibility rule."""
    return await session.scalar(select(Certificate).where(col(Certificate.number) == number))
