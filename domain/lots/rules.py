"""Pure rules of lots: vocabularies, composition in whole grams, codes, seller identity."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class Metal(StrEnum):
    aluminium = "aluminium"
    copper = "copper"


class LotKind(StrEnum):
    scrap = "scrap"
    product = "product"


class LotStatus(StrEnum):
    active = "active"
    in_transit = "in_transit"
    consumed = "consumed"
    refused = "refused"
    split_ = "split"  # `split` would shadow str.split
    voided = "voided"


# A lot can leave its holder (be shipped or split) in these states: a refused lot waits at the
# sender until it is shipped again.
MOVABLE = (LotStatus.active, LotStatus.refused)


class ConsumerClass(StrEnum):
    post_consumer = "post_consumer"
    pre_consumer = "pre_consumer"


class Channel(StrEnum):
    online = "online"
    offline = "offline"


class Origin(StrEnum):
    domestic = "domestic"
    import_ = "import"


# Which national standard makes a raw material importable (announcement No. 23 of 2024).
CONFORMITY_STANDARDS: dict[str, Metal] = {
    "GB/T 38470": Metal.copper,  # recycled brass / copper alloy raw material
    "GB/T 38471": Metal.copper,  # recycled copper raw material
    "GB/T 38472": Metal.aluminium,  # recycled cast aluminium alloy raw material
    "GB/T 40382": Metal.aluminium,  # recycled wrought aluminium alloy raw material
    "GB/T 40386": Metal.aluminium,  # recycled pure aluminium raw material
}

MAX_LOT_GRAMS = 1_000_000 * 1000  # 1,000 t: far above a truckload (30 t), catches unit slips


@dataclass(frozen=True, slots=True)
class Composition:
    """How many grams of a lot are post-consumer, pre-consumer and primary material."""

    post_consumer_g: int
    pre_consumer_g: int
    primary_g: int

    @property
    def total_g(self) -> int:
        return self.post_consumer_g + self.pre_consumer_g + self.primary_g

    @property
    def parts(self) -> tuple[int, int, int]:
        return (self.post_consumer_g, self.pre_consumer_g, self.primary_g)

    @classmethod
    def of(cls, parts: Sequence[int]) -> Composition:
        post, pre, primary = parts
        return cls(post, pre, primary)

    @classmethod
    def registered(cls, consumer_class: ConsumerClass, net_g: int) -> Composition:
        """A scrap lot is registered as wholly post- or wholly pre-consumer material."""
        if consumer_class is ConsumerClass.post_consumer:
            return cls(net_g, 0, 0)
        return cls(0, net_g, 0)


def apportion(row_totals: Sequence[int], column_totals: Sequence[int]) -> list[list[int]]:
    """Split a table of grams exactly: cell (i, j) is near row_i * column_j / total, every row sums
    to its row total, every column to its column total, no cell is negative, and every cell is
    within 1 g of its exact proportional share.

    Rows are the outputs (parts of a split, outputs and losses of a melt), columns the composition
    classes. Each cell is first floored; the grams still missing in rows and columns are then
    handed out one per cell, each row giving its missing grams to the columns with the most
    missing grams (larger fractional share first on ties). This is the Gale-Ryser construction:
    the floored fractions are a feasible fractional solution, so an integral one always exists and
    the greedy finds it."""
    total = sum(column_totals)
    if sum(row_totals) != total:
        raise ValueError(f"rows sum to {sum(row_totals)} g, columns to {total} g")
    if any(v < 0 for v in (*row_totals, *column_totals)):
        raise ValueError("cannot apportion negative grams")
    if total == 0:
        return [[0] * len(column_totals) for _ in row_totals]
    table = [[row * column // total for column in column_totals] for row in row_totals]
    column_missing = [
        column - sum(table[i][j] for i in range(len(row_totals)))
        for j, column in enumerate(column_totals)
    ]
    for i, row in enumerate(row_totals):
        missing = row - sum(table[i])
        if missing == 0:
            continue
        # Largest remaining column need first; then the larger fractional share.
        order = sorted(
            range(len(column_totals)),
            key=lambda j: (column_missing[j], row * column_totals[j] % total),
            reverse=True,
        )
        for j in order[:missing]:
            if column_missing[j] <= 0:
                raise AssertionError("apportionment found no column to give a gram to")
            table[i][j] += 1
            column_missing[j] -= 1
    return table


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """`total` grams shared in proportion to `weights`: floors, then one more gram each to the
    largest remainders. Sums exactly; each share is within 1 g of its exact value."""
    weight = sum(weights)
    if weight <= 0:
        raise ValueError("cannot share in proportion to nothing")
    shares = [w * total // weight for w in weights]
    order = sorted(range(len(weights)), key=lambda j: weights[j] * total % weight, reverse=True)
    for j in order[: total - sum(shares)]:
        shares[j] += 1
    return shares


def rescale(composition: Composition, net_g: int) -> Composition:
    """The composition of a lot whose mass changed (weighed at receipt), in proportion."""
    return Composition.of(largest_remainder(net_g, composition.parts))


def split_composition(composition: Composition, parts_g: Sequence[int]) -> list[Composition]:
    return [Composition.of(row) for row in apportion(parts_g, composition.parts)]


# --- lot codes --------------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CHECK = _CROCKFORD + "*~$=U"


def lot_code(metal: Metal, year: int, serial: int) -> str:
    """Short, printable, unique: metal letter, two-digit year, a base-32 serial and a check
    symbol (Crockford's mod-37), e.g. `A26-0000K7X`. Typos in a hand-copied code are caught."""
    body = ""
    number = serial
    while number:
        number, digit = divmod(number, 32)
        body = _CROCKFORD[digit] + body
    body = body.rjust(6, "0")
    return f"{metal.value[0].upper()}{year % 100:02d}-{body}{_CHECK[serial % 37]}"


# --- seller identity --------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"^[1-9][0-9]{16}[0-9X]$")


def resident_id_violation(number: str) -> str | None:
    """Why an 18-digit resident identity number (GB 11643-1999) is invalid, or None."""
    if not _ID_SHAPE.match(number):
        return "an ID number has 17 digits and a check digit or X"
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return f"positions 7-14 must be a birth date, got {number[6:14]}"
    if born.year < 1900 or born > date.today():
        return f"birth date {born.isoformat()} is not plausible"
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    expected = _ID_CHECK[total % 11]
    if number[17] != expected:
        return f"check digit should be {expected}, got {number[17]}"
    return None


def resident_id_check_digit(first17: str) -> str:
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1)


def mask_id_number(number: str) -> str:
    return number[:4] + "*" * (len(number) - 6) + number[-2:]
