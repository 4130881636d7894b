"""Credit arithmetic and the certificate payload: pure, in whole grams.

The ledger follows the mass-balance credit method (ISO 22095, ASI): a smelter earns the recycled
grams of the products it makes, by metal and class; a certificate spends them. `proportional`
claims exactly the recycled composition of the certified mass; `mass_balance` claims any amount up
to the certified mass from the balance, post-consumer first unless a class is asked for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

import orjson

from domain.lots.rules import Composition, apportion, split_composition

ACCOUNTING_PERIOD_DAYS = 365  # credits expire after 12 months unless settings say otherwise


class RecycledClass(StrEnum):
    post_consumer = "post_consumer"
    pre_consumer = "pre_consumer"


class Method(StrEnum):
    proportional = "proportional"
    mass_balance = "mass_balance"


class EntryKind(StrEnum):
    credit = "credit"  # a product was made
    debit = "debit"  # a certificate claimed it
    expiry = "expiry"  # the accounting period ended with credits unused
    reversal = "reversal"  # the run that made the product was voided
    restore = "restore"  # the certificate that claimed it was revoked


class CertificateStatus(StrEnum):
    valid = "valid"
    revoked = "revoked"


@dataclass(frozen=True)
class Claim:
    post_consumer_g: int
    pre_consumer_g: int

    @property
    def total_g(self) -> int:
        return self.post_consumer_g + self.pre_consumer_g

    def of(self, recycled_class: RecycledClass) -> int:
        return (
            self.post_consumer_g
            if recycled_class is RecycledClass.post_consumer
            else self.pre_consumer_g
        )


def recycled_of(composition: Composition) -> dict[RecycledClass, int]:
    """What a product earns: its recycled grams by class (classes with none are left out)."""
    earned = {
        RecycledClass.post_consumer: composition.post_consumer_g,
        RecycledClass.pre_consumer: composition.pre_consumer_g,
    }
    return {c: g for c, g in earned.items() if g > 0}


def earned(
    products: Sequence[Composition], taken: Composition, from_products: Composition
) -> list[dict[RecycledClass, int]]:
    """What each product of a run earns, by class: its recycled grams, less their share that came
    from product inputs (`from_products` of all `taken`), which were credited when those products
    were made: a kilogram is credited once. Rounded down per class, then shared out to the gram
    in proportion to the products' recycled grams (classes with none are left out)."""
    shares: list[dict[RecycledClass, int]] = [{} for _ in products]
    for recycled_class in RecycledClass:
        grams = [_of(p, recycled_class) for p in products]
        pooled = _of(taken, recycled_class)
        new = pooled - _of(from_products, recycled_class)
        fresh = sum(grams) * new // pooled if pooled else 0
        for share, g in zip(shares, apportion([fresh, sum(grams) - fresh], grams)[0], strict=True):
            if g > 0:
                share[recycled_class] = g
    return shares


def _of(composition: Composition, recycled_class: RecycledClass) -> int:
    if recycled_class is RecycledClass.post_consumer:
        return composition.post_consumer_g
    return composition.pre_consumer_g


def proportional_claim(composition: Composition, mass_g: int) -> Claim:
    """The recycled grams of `mass_g` of a lot of this composition (all of it, or a share rounded
    by largest remainder so that the certified and the rest add up)."""
    part = (
        composition
        if mass_g == composition.total_g
        else split_composition(composition, [mass_g, composition.total_g - mass_g])[0]
    )
    return Claim(part.post_consumer_g, part.pre_consumer_g)


def mass_balance_claim(
    claimed_g: int, balances: dict[RecycledClass, int], only: RecycledClass | None
) -> Claim | None:
    """Spread a claim over the classes (post-consumer first), or None when the balance is short."""
    order = [only] if only else [RecycledClass.post_consumer, RecycledClass.pre_consumer]
    taken: dict[RecycledClass, int] = {}
    left = claimed_g
    for recycled_class in order:
        taken[recycled_class] = min(left, balances.get(recycled_class, 0))
        left -= taken[recycled_class]
    if left:
        return None
    return Claim(
        taken.get(RecycledClass.post_consumer, 0), taken.get(RecycledClass.pre_consumer, 0)
    )


def draw(remaining: Sequence[int], grams: int) -> list[int]:
    """How much to take from each tranche, oldest first, to make `grams`."""
    taken = []
    for available in remaining:
        take = min(available, grams)
        taken.append(take)
        grams -= take
    if grams:
        raise ValueError("the tranches hold less than the claim")
    return taken


def expires_at(credited_at: datetime, period_days: int) -> datetime:
    return credited_at + timedelta(days=period_days)


def percent(part_g: int, whole_g: int) -> Decimal:
    """A share in percent with two decimals, rounded half to even (0 of nothing is 0)."""
    if whole_g == 0:
        return Decimal("0.00")
    return (Decimal(part_g) * 100 / Decimal(whole_g)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_EVEN
    )


def kg(grams: int) -> Decimal:
    return Decimal(grams) / 1000


def canonical_json(payload: dict[str, Any]) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (RFC 8785 style for the values we sign:
    strings, integers and objects; decimals are written as strings, so no float formatting)."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
