"""Weighbridge rules: a ticket's figures, and the masses a ticket gives a receipt."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.weighbridge.rules import net_mismatch, ticket_problems, weigh_receipt

grams = st.integers(min_value=1, max_value=10**12)


def test_ticket_figures() -> None:
    assert ticket_problems(31_840_500, 14_220_000) == []
    assert [p.pointer for p in ticket_problems(1000, 0)] == ["/tare_kg"]
    assert [p.pointer for p in ticket_problems(1000, 1000)] == ["/gross_kg"]
    assert [p.pointer for p in ticket_problems(0, 0)] == ["/tare_kg", "/gross_kg"]
    assert net_mismatch(31_840_500, 14_220_000, 17_620_500) is None
    message = net_mismatch(31_840_500, 14_220_000, 17_620_000)
    assert message is not None
    assert "17620 kg" in message and "17620.5 kg" in message


@given(gross=grams, tare=grams)
def test_net_is_exactly_gross_less_tare(gross: int, tare: int) -> None:
    assert net_mismatch(gross, tare, gross - tare) is None
    assert net_mismatch(gross, tare, gross - tare + 1) is not None


def test_one_lot_takes_the_net_or_must_equal_it() -> None:
    assert weigh_receipt(99_500, [None]).received_g == [99_500]
    assert weigh_receipt(99_500, [99_500]).received_g == [99_500]
    wrong = weigh_receipt(99_500, [99_400])
    assert wrong.problem is not None and wrong.items_g == 99_400
    assert wrong.problem.pointer == "/items/0/received_kg"


def test_several_lots_state_their_masses_and_sum_to_the_net() -> None:
    assert weigh_receipt(100_000, [60_000, 40_000]).received_g == [60_000, 40_000]
    short = weigh_receipt(100_000, [60_000, 39_000])
    assert short.problem is not None and short.problem.pointer == "/items"
    assert short.items_g == 99_000
    assert "99 kg" in short.problem.detail and "100 kg" in short.problem.detail
    unstated = weigh_receipt(100_000, [60_000, None])
    assert unstated.problem is not None and unstated.problem.pointer == "/items/1/received_kg"


@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=2, max_size=20))
def test_items_summing_to_the_net_pass_as_stated(masses: list[int]) -> None:
    net = sum(masses)
    assert weigh_receipt(net, list(masses)).received_g == masses
    assert weigh_receipt(net + 1, list(masses)).problem is not None
