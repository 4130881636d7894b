"""Pure webhook rules: secrets and ids, event-type patterns, destinations, backoff, disabling;
and the relay's signature against the Standard Webhooks reference vector."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.webhooks.rules import (
    RETRY_AFTER_CAP,
    DestinationRefused,
    check_destination,
    message_id,
    new_secret,
    normalise_event_types,
    origin_of,
    parse_retry_after,
    public_address,
    retry_delay,
    secret_key,
    should_disable,
    type_patterns,
    wants,
)
from integrations.webhooks import sign

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SCHEDULE = (5.0, 30.0, 120.0, 600.0, 3600.0)


def test_the_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The test vector the Standard Webhooks reference libraries check against.
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret[6:], validate=True)) == 32
        assert secret_key(secret) == base64.b64decode(secret[6:])


def test_message_ids_are_stable_per_subscription_and_event() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert message_id(a, 7) == message_id(a, 7)
    assert len({message_id(a, 7), message_id(a, 8), message_id(b, 7)}) == 3
    assert message_id(a, 7).startswith("msg_")
    assert len(message_id(a, 7)) <= 64


@pytest.mark.parametrize(
    ("patterns", "event_type", "wanted"),
    [
        (["*"], "lot.registered", True),
        (["lot.registered"], "lot.registered", True),
        (["lot.registered"], "lot.registered_again", False),
        (["lot.*"], "lot.registered", True),
        (["lot.*"], "lots.registered", False),
        (["lot.*"], "lot", False),
        (["shipment.*", "lot.split"], "lot.split", True),
        (["shipment.*", "lot.split"], "certificate.issued", False),
    ],
)
def test_event_type_patterns(patterns: list[str], event_type: str, wanted: bool) -> None:
    assert wants(patterns, event_type) is wanted
    everything, exact, prefixes = type_patterns(patterns)
    assert (everything or event_type in exact or event_type.startswith(tuple(prefixes))) is wanted


def test_event_types_are_normalised_or_refused() -> None:
    assert normalise_event_types([" lot.* ", "lot.*", "a.b"]) == ["a.b", "lot.*"]
    assert normalise_event_types(["lot.*", "*"]) == ["*"]
    for bad in ([], ["Lot"], ["lot..x"], ["lot.*.x"], ["*.lot"], ["x" * 65]):
        with pytest.raises(ValueError, match=r"."):
            normalise_event_types(bad)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("100.64.1.1", False),
        ("169.254.169.254", False),
        ("192.0.2.1", False),
        ("224.0.0.251", False),
        ("255.255.255.255", False),
        ("0.0.0.0", False),  # noqa: S104 - an address to refuse, not to bind
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert public_address(address) is public


def test_destinations_are_checked_on_the_literal_host() -> None:
    assert check_destination("https://erp.example.com/hook", allow_private=False)
    assert check_destination("https://8.8.8.8/hook", allow_private=False)
    assert check_destination("http://127.0.0.1:9/hook", allow_private=True)
    for url in ("http://127.0.0.1/x", "http://LOCALHOST./x", "http://db/x", "http://a.internal/"):
        with pytest.raises(DestinationRefused):
            check_destination(url, allow_private=False)
    for url in ("file:///etc/passwd", "https://u:p@example.com/", "https://example.com/#x"):
        with pytest.raises(DestinationRefused):
            check_destination(url, allow_private=True)
    assert origin_of("https://erp.example.com:8443/hook?token=x") == "https://erp.example.com:8443"


def test_retry_delays_follow_the_schedule_and_honour_longer_retry_after() -> None:
    assert [retry_delay(n, SCHEDULE).total_seconds() for n in range(1, 8)] == [
        5,
        30,
        120,
        600,
        3600,
        3600,
        3600,
    ]
    assert retry_delay(1, SCHEDULE, timedelta(seconds=90)) == timedelta(seconds=90)
    assert retry_delay(3, SCHEDULE, timedelta(seconds=90)) == timedelta(seconds=120)
    assert retry_delay(1, SCHEDULE, timedelta(days=30)) == RETRY_AFTER_CAP


@given(
    failures=st.integers(min_value=1, max_value=1000),
    retry_after=st.none()
    | st.integers(min_value=0, max_value=10**7).map(lambda s: timedelta(seconds=s)),
)
def test_retry_delays_are_bounded(failures: int, retry_after: timedelta | None) -> None:
    delay = retry_delay(failures, SCHEDULE, retry_after)
    assert timedelta(seconds=5) <= delay <= max(RETRY_AFTER_CAP, timedelta(hours=1))
    assert delay >= retry_delay(failures, SCHEDULE)
    assert retry_delay(failures + 1, SCHEDULE) >= retry_delay(failures, SCHEDULE)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120", NOW) == timedelta(seconds=120)
    assert parse_retry_after(" 0 ", NOW) == timedelta(0)
    assert parse_retry_after("Tue, 24 Nov 2026 12:05:00 GMT", NOW) == timedelta(minutes=5)
    assert parse_retry_after("Tue, 24 Nov 2026 11:00:00 GMT", NOW) == timedelta(0)
    assert parse_retry_after("99999999999", NOW) == RETRY_AFTER_CAP
    for junk in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(junk, NOW) is None


def test_disabling_needs_both_many_failures_and_a_long_time() -> None:
    rule = {"after_failures": 10, "after": timedelta(hours=24)}
    long_ago = NOW - timedelta(hours=25)
    assert should_disable(10, long_ago, NOW, **rule)
    assert not should_disable(9, long_ago, NOW, **rule)
    assert not should_disable(50, NOW - timedelta(hours=1), NOW, **rule)
    assert not should_disable(50, None, NOW, **rule)
