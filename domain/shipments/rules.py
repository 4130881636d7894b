"""Pure rules of shipments: states, receipt arithmetic in grams, tolerances."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from domain.lots.rules import Composition, rescale, split_composition


class ShipmentStatus(StrEnum):
    dispatched = "dispatched"
    received = "received"
    partially_refused = "partially_refused"
    refused = "refused"
    cancelled = "cancelled"


class VehicleEnergy(StrEnum):
    diesel = "diesel"
    lng = "lng"
    electric = "electric"
    hydrogen = "hydrogen"
    hybrid = "hybrid"


class DiscrepancyStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    disputed = "disputed"
    resolved = "resolved"


DEFAULT_TOLERANCE = Decimal("0.01")  # 1 % of the dispatched mass


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a receipt does to one lot: the accepted part stays with the receiver, the refused part
    goes back to the sender; the transit difference is recorded, never silently absorbed."""

    accepted: Composition | None
    refused: Composition | None
    difference_g: int  # dispatched - received: positive is a loss in transit


def settle(composition: Composition, received_g: int, refused_g: int) -> Settlement:
    weighed = rescale(composition, received_g)
    difference = composition.total_g - received_g
    if refused_g == 0:
        return Settlement(weighed, None, difference)
    if refused_g == received_g:
        return Settlement(None, weighed, difference)
    accepted, refused = split_composition(weighed, [received_g - refused_g, refused_g])
    return Settlement(accepted, refused, difference)


def tolerance_g(dispatched_g: int, tolerance: Decimal) -> int:
    return int((Decimal(dispatched_g) * tolerance).to_integral_value(ROUND_FLOOR))


def outcome(settlements: list[Settlement]) -> ShipmentStatus:
    if all(s.refused is None for s in settlements):
        return ShipmentStatus.received
    if all(s.accepted is None for s in settlements):
        return ShipmentStatus.refused
    return ShipmentStatus.partially_refused
