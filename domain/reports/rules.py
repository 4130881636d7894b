"""Pure carbon and share arithmetic of statements (DESIGN §2.6, §2.7): integer grams in, exact
decimals inside, figures quantized only at the end.

Emission factors come from the reference factor set; the units the arithmetic assumes are checked
when a set is published (`domain.reference.rules.COMPUTED_FACTOR_UNITS`): metal factors in
tCO2e/t (= kgCO2e/kg), freight factors in kgCO2e/t-km."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from domain.lots.rules import Metal
from domain.mass import GRAMS_PER_KG
from domain.shipments.rules import VehicleEnergy

KG_CO2E = Decimal("0.001")  # emissions in kg CO2e, to the gram
TONNE_KM = Decimal("0.001")
PERCENT = Decimal("0.01")
GRAMS_PER_TONNE = 1_000_000

# Avoided emissions of recycled metal: what making it from ore would emit, less what remelting
# emits (both per kg of metal).
PRIMARY_FACTOR = {Metal.aluminium: "primary_aluminium_china", Metal.copper: "primary_copper"}
RECYCLED_FACTOR = {Metal.aluminium: "recycled_aluminium", Metal.copper: "recycled_copper"}

# Road freight per tonne-kilometre by the shipment's vehicle energy. Hydrogen and hybrid trucks
# have no factor in the reference set yet: their tonne-km are reported without emissions.
FREIGHT_FACTOR = {
    VehicleEnergy.diesel: "road_freight_diesel",
    VehicleEnergy.lng: "road_freight_lng",
    VehicleEnergy.electric: "road_freight_electric",
}


def avoided_emissions_kg(
    recycled_g: int, primary_factor: Decimal, recycled_factor: Decimal
) -> Decimal:
    """Recycled kg × (primary factor − recycled factor), in kg CO2e with 3 decimals."""
    exact = Decimal(recycled_g) / GRAMS_PER_KG * (primary_factor - recycled_factor)
    return exact.quantize(KG_CO2E, rounding=ROUND_HALF_EVEN)


def tonne_km(gram_km: Decimal) -> Decimal:
    """Tonne-kilometres of gram-kilometres (grams carried × km driven), 3 decimals."""
    return (gram_km / GRAMS_PER_TONNE).quantize(TONNE_KM, rounding=ROUND_HALF_EVEN)


def transport_emissions_kg(gram_km: Decimal, factor: Decimal) -> Decimal:
    """Tonne-km × the vehicle's factor (kgCO2e/t-km), in kg CO2e with 3 decimals; computed from
    the exact tonne-km, not the rounded figure."""
    exact = gram_km / GRAMS_PER_TONNE * factor
    return exact.quantize(KG_CO2E, rounding=ROUND_HALF_EVEN)


def share_percent(part_g: int, whole_g: int) -> Decimal | None:
    """A share in percent with 2 decimals (half to even); None when there is no whole."""
    if whole_g == 0:
        return None
    return (Decimal(part_g) * 100 / Decimal(whole_g)).quantize(PERCENT, rounding=ROUND_HALF_EVEN)


# A period lies within these bounds: far enough apart for any real question, and clear of the
# ends of the datetime range once time zones are applied.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def out_of_range(moment: datetime) -> bool:
    return not EARLIEST <= moment <= LATEST


def twelve_months_before(moment: datetime) -> datetime:
    """The same instant a year earlier (29 February falls back to the 28th)."""
    try:
        return moment.replace(year=moment.year - 1)
    except ValueError:
        return moment.replace(year=moment.year - 1, day=28)
