"""Pure rules of transformations: which process runs where, exact mass balance, and the pooled
composition (ISO 22095 controlled blending) shared out to outputs and losses in whole grams."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from domain.lots.rules import Composition, apportion
from domain.registry.rules import FacilityKind


class Process(StrEnum):
    sorting = "sorting"
    shredding = "shredding"
    baling = "baling"
    briquetting = "briquetting"
    decoating = "decoating"
    drying = "drying"
    splitting = "splitting"
    bulking = "bulking"
    melting = "melting"
    refining = "refining"
    casting = "casting"


PRETREATMENT = frozenset(
    {Process.sorting, Process.shredding, Process.baling, Process.briquetting,
     Process.decoating, Process.drying, Process.splitting, Process.bulking}
)  # fmt: skip
SMELTING = frozenset({Process.melting, Process.refining, Process.casting})

ALLOWED: dict[FacilityKind, frozenset[Process]] = {
    FacilityKind.collection_point: PRETREATMENT,
    FacilityKind.pretreatment_center: PRETREATMENT,
    FacilityKind.smelter: SMELTING,
}

# Loss share above which a run is accepted but flagged for the anomaly report.
LOSS_THRESHOLD: dict[Process, Decimal] = {
    Process.sorting: Decimal("0.05"),
    Process.shredding: Decimal("0.03"),
    Process.baling: Decimal("0.01"),
    Process.briquetting: Decimal("0.02"),
    Process.decoating: Decimal("0.10"),
    Process.drying: Decimal("0.15"),
    Process.splitting: Decimal("0.01"),
    Process.bulking: Decimal("0.01"),
    Process.melting: Decimal("0.08"),
    Process.refining: Decimal("0.05"),
    Process.casting: Decimal("0.03"),
}


class LossKind(StrEnum):
    moisture = "moisture"
    non_metallic_residue = "non_metallic_residue"
    dross = "dross"
    dust = "dust"
    other = "other"


class ProductForm(StrEnum):
    molten = "molten"
    ingot = "ingot"
    billet = "billet"
    slab = "slab"
    rod = "rod"
    cathode = "cathode"
    wire = "wire"
    other = "other"


class DestinationUse(StrEnum):
    direct_alloying = "direct_alloying"
    casting = "casting"
    sale = "sale"


def processes_at(kind: str) -> frozenset[Process]:
    return ALLOWED.get(FacilityKind(kind), frozenset())


def unbalanced(inputs_g: int, primary_g: int, outputs_g: int, losses_g: int) -> str | None:
    """Why a run does not balance to the gram, or None."""
    went_in, came_out = inputs_g + primary_g, outputs_g + losses_g
    if went_in == came_out:
        return None
    return (
        f"inputs {inputs_g} g + primary inputs {primary_g} g = {went_in} g, but outputs "
        f"{outputs_g} g + losses {losses_g} g = {came_out} g; they must be equal to the gram"
    )


def loss_flagged(process: Process, losses_g: int, inputs_g: int, primary_g: int) -> bool:
    total = inputs_g + primary_g
    return total > 0 and Decimal(losses_g) / Decimal(total) > LOSS_THRESHOLD[process]


def taken_part(composition: Composition, taken_g: int) -> tuple[Composition, Composition]:
    """The part of a lot a run takes, and what stays, each with its share of the composition."""
    if taken_g == composition.total_g:
        return composition, Composition(0, 0, 0)
    taken, kept = apportion([taken_g, composition.total_g - taken_g], composition.parts)
    return Composition.of(taken), Composition.of(kept)


@dataclass(frozen=True, slots=True)
class Pooled:
    """A run's result: the composition of every output and loss (in the order given), and the
    grams of every output that came from each input (edges for lineage; the rest is primary)."""

    compositions: list[Composition]
    from_inputs: list[list[int]]  # [output][input] grams


def pool(taken: Sequence[Composition], primary_g: int, results_g: Sequence[int]) -> Pooled:
    """Controlled blending: inputs (primary metal counts as primary material) are pooled, and each
    output and loss takes the pool's proportions, rounded to grams so every sum is exact."""
    pooled = Composition(
        sum(c.post_consumer_g for c in taken),
        sum(c.pre_consumer_g for c in taken),
        sum(c.primary_g for c in taken) + primary_g,
    )
    compositions = [Composition.of(row) for row in apportion(results_g, pooled.parts)]
    sources = [c.total_g for c in taken] + [primary_g]
    shares = apportion(results_g, sources)
    return Pooled(compositions, [row[:-1] for row in shares])
