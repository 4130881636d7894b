"""Builders of valid test data."""

from __future__ import annotations

import random

from domain.registry.rules import USCC_CHARSET, uscc_check_character


def random_uscc(region: str = "520102") -> str:
    body = "91" + region + "".join(random.choice(USCC_CHARSET) for _ in range(9))
    return body + uscc_check_character(body)
