"""The pure credit arithmetic (DESIGN §2.6): what products earn, proportional and mass-balance
claims, drawing tranches oldest first, percentages and the canonical payload."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.credits.rules import (
    Claim,
    RecycledClass,
    canonical_json,
    draw,
    earned,
    mass_balance_claim,
    percent,
    proportional_claim,
)
from domain.lots.rules import Composition

POST, PRE = RecycledClass.post_consumer, RecycledClass.pre_consumer


def test_products_of_scrap_earn_all_their_recycled_grams() -> None:
    products = [Composition(57_600, 19_200, 19_200), Composition(57_600, 0, 38_400)]
    taken = Composition(120_000, 20_000, 0)
    assert earned(products, taken, Composition(0, 0, 0)) == [
        {POST: 57_600, PRE: 19_200},
        {POST: 57_600},
    ]


def test_products_of_products_earn_nothing_again() -> None:
    """Casting a credited molten lot into ingots: its recycled grams were credited already."""
    molten = Composition(115_200, 38_400, 38_400)
    ingots = [Composition(57_000, 19_000, 19_000), Composition(57_000, 19_000, 19_000)]
    assert earned(ingots, molten, molten) == [{}, {}]


def test_a_remelt_with_fresh_scrap_earns_the_fresh_share_rounded_down() -> None:
    """100 kg of post-consumer scrap melted with a 100 kg ingot holding 60 kg post-consumer: the
    pool's post-consumer metal is 160 kg of which 100 kg are new; the 190 kg product holds 152 kg
    post-consumer and earns 152 × 100/160 = 95 kg. Odd grams round down, never up."""
    product = Composition(152_000, 0, 38_000)
    taken = Composition(160_000, 0, 40_000)
    from_products = Composition(60_000, 0, 40_000)
    assert earned([product], taken, from_products) == [{POST: 95_000}]
    odd = earned([Composition(10, 0, 0)], Composition(3, 0, 0), Composition(1, 0, 0))
    assert odd == [{POST: 6}]  # 10 × 2/3 = 6.67


@given(
    st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)), min_size=1, max_size=5),
    st.integers(0, 10**7),
    st.integers(0, 10**7),
)
def test_earned_never_exceeds_the_new_recycled_grams(
    products: list[tuple[int, int]], extra_post: int, old_post: int
) -> None:
    compositions = [Composition(post, pre, 0) for post, pre in products]
    pooled_post = sum(p for p, _ in products) + extra_post + old_post
    pooled_pre = sum(p for _, p in products)
    taken = Composition(pooled_post, pooled_pre, 0)
    shares = earned(compositions, taken, Composition(old_post, 0, 0))
    for share, composition in zip(shares, compositions, strict=True):
        assert 0 <= share.get(POST, 0) <= composition.post_consumer_g
        assert share.get(PRE, 0) == composition.pre_consumer_g  # no pre-consumer came from products
        assert all(g > 0 for g in share.values())
    products_post = sum(c.post_consumer_g for c in compositions)
    new = pooled_post - old_post
    expected = products_post * new // pooled_post if pooled_post else 0
    assert sum(s.get(POST, 0) for s in shares) == expected


def test_a_whole_lot_claims_its_composition_exactly() -> None:
    lot = Composition(57_600, 19_200, 19_200)
    assert proportional_claim(lot, 96_000) == Claim(57_600, 19_200)


def test_a_share_of_a_lot_is_rounded_to_the_gram_by_largest_remainder() -> None:
    """10.001 kg of a 96 kg lot (60/20/20 %): exact shares 6000.6, 2000.2 and 2000.2 g; the one
    gram left over goes to the largest remainder (post-consumer)."""
    lot = Composition(57_600, 19_200, 19_200)
    assert proportional_claim(lot, 10_001) == Claim(6_001, 2_000)
    assert proportional_claim(lot, 1) == Claim(1, 0)


@pytest.mark.parametrize(
    ("balances", "only", "claimed", "expected"),
    [
        ({POST: 100, PRE: 50}, None, 120, Claim(100, 20)),  # post-consumer first
        ({POST: 100, PRE: 50}, None, 80, Claim(80, 0)),
        ({POST: 100, PRE: 50}, PRE, 50, Claim(0, 50)),
        ({POST: 100, PRE: 50}, PRE, 51, None),  # the class asked for is short
        ({POST: 100, PRE: 50}, None, 151, None),
        ({}, None, 1, None),
    ],
)
def test_mass_balance_spreads_a_claim_over_the_classes(
    balances: dict[RecycledClass, int],
    only: RecycledClass | None,
    claimed: int,
    expected: Claim | None,
) -> None:
    assert mass_balance_claim(claimed, balances, only) == expected


def test_tranches_are_drawn_in_order_until_the_claim_is_met() -> None:
    assert draw([30, 50, 70], 60) == [30, 30, 0]
    assert draw([30, 50], 80) == [30, 50]
    with pytest.raises(ValueError, match="less than the claim"):
        draw([30, 50], 81)


def test_percent_has_two_decimals_rounded_half_to_even() -> None:
    assert percent(76_800, 96_000) == Decimal("80.00")
    assert percent(50_000, 60_000) == Decimal("83.33")
    assert percent(1, 800) == Decimal("0.12")  # 0.125 → 0.12
    assert percent(3, 800) == Decimal("0.38")  # 0.375 → 0.38
    assert percent(0, 0) == Decimal("0.00")


def test_the_payload_is_canonical_json_in_utf8() -> None:
    payload = {"b": {"z": "1", "a": "贵阳"}, "a": 1, "c": [1, "x"]}
    signed = canonical_json(payload)
    assert signed == b'{"a":1,"b":{"a":"\xe8\xb4\xb5\xe9\x98\xb3","z":"1"},"c":[1,"x"]}'
    text = signed.decode()
    assert json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ) == (text)
