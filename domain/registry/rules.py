"""Pure registry rules: the unified social credit code and the vocabularies of the registry."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))


class EnterpriseRole(StrEnum):
    recycler = "recycler"
    pretreater = "pretreater"
    smelter = "smelter"
    processor = "processor"
    transporter = "transporter"
    importer = "importer"


class FacilityKind(StrEnum):
    collection_point = "collection_point"
    pretreatment_center = "pretreatment_center"
    smelter = "smelter"
    processing_plant = "processing_plant"
    warehouse = "warehouse"


class Status(StrEnum):
    active = "active"
    suspended = "suspended"


@dataclass(frozen=True, slots=True)
class UsccViolation:
    rule: str  # length | charset | region_code | check_character
    detail: str


def uscc_check_character(first17: str) -> str:
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def uscc_violation(code: str) -> UsccViolation | None:
    """The first GB 32100-2015 rule the code breaks, or None when it is valid."""
    if len(code) != 18:
        return UsccViolation("length", f"a USCC has 18 characters, this one has {len(code)}")
    for position, char in enumerate(code, start=1):
        if char not in USCC_CHARSET:
            return UsccViolation(
                "charset",
                f"character {char!r} at position {position} is not in {USCC_CHARSET} "
                "(I, O, S, V, Z and lower case never appear)",
            )
    if not code[2:8].isdigit():
        return UsccViolation(
            "region_code",
            f"positions 3-8 must be the registering authority's GB/T 2260 region code, "
            f"got {code[2:8]!r}",
        )
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        return UsccViolation(
            "check_character",
            f"check character (position 18) should be {expected!r} for this code, got {code[17]!r}",
        )
    return None


def enterprise_roles_valid(roles: list[str]) -> bool:
    return bool(roles) and all(r in EnterpriseRole.__members__ for r in roles)
