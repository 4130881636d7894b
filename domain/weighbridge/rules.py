"""Pure weighbridge rules: a ticket's figures, and how a ticket's net mass weighs a receipt.
Masses are integer grams; every message states the figures it compares, in kilograms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain.mass import g_to_kg


@dataclass(frozen=True, slots=True)
class Problem:
    pointer: str
    detail: str


def kg(grams: int) -> str:
    return f"{g_to_kg(grams)} kg"


def ticket_problems(gross_g: int, tare_g: int) -> list[Problem]:
    """What is wrong with a ticket's gross and tare: tare > 0 and gross > tare."""
    problems = []
    if tare_g <= 0:
        problems.append(Problem("/tare_kg", "the tare (the empty vehicle) must be more than 0 kg"))
    if gross_g <= tare_g:
        problems.append(
            Problem("/gross_kg", f"gross {kg(gross_g)} must be more than the tare {kg(tare_g)}")
        )
    return problems


def net_mismatch(gross_g: int, tare_g: int, net_g: int) -> str | None:
    """Net must be exactly gross − tare (the scale's own arithmetic, to the gram)."""
    if net_g == gross_g - tare_g:
        return None
    return (
        f"net {kg(net_g)} is not gross − tare = {kg(gross_g)} − {kg(tare_g)}"
        f" = {kg(gross_g - tare_g)}"
    )


@dataclass(frozen=True, slots=True)
class Weighing:
    """The received masses a ticket gives a receipt's items, or why it cannot."""

    received_g: list[int]
    problem: Problem | None = None
    items_g: int | None = None  # the items' sum, when it is the problem


def weigh_receipt(net_g: int, stated_g: Sequence[int | None]) -> Weighing:
    """A single-lot receipt takes the ticket's net as its received mass (a stated mass must
    equal it); the items of a several-lot receipt each state their mass and sum to the net."""
    if len(stated_g) == 1:
        stated = stated_g[0]
        if stated is None or stated == net_g:
            return Weighing([net_g])
        return Weighing(
            [],
            Problem(
                "/items/0/received_kg",
                f"received {kg(stated)} differs from the weighbridge ticket's net {kg(net_g)}",
            ),
            stated,
        )
    missing = [i for i, grams in enumerate(stated_g) if grams is None]
    if missing:
        return Weighing(
            [],
            Problem(
                f"/items/{missing[0]}/received_kg",
                "with several lots on one ticket, every item states its received mass",
            ),
        )
    masses = [grams for grams in stated_g if grams is not None]
    if sum(masses) != net_g:
        return Weighing(
            [],
            Problem(
                "/items",
                f"the items sum to {kg(sum(masses))} but the weighbridge ticket's net is"
                f" {kg(net_g)}",
            ),
            sum(masses),
        )
    return Weighing(masses)
