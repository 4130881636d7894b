"""Pure webhook rules: secrets and message ids, which events a subscription wants, where it may
send them, how long to wait before the next attempt, and when to give up on an endpoint."""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import SplitResult, urlsplit

from domain import retry

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 random bytes
ALL_EVENTS = "*"
MAX_EVENT_TYPES = 50
MAX_URL_LENGTH = 2048
# Subscription-level namespace for the deterministic message ids (uuid5).
_MESSAGE_NAMESPACE = uuid.UUID("5c1f8d2e-7a43-4e0b-9b61-3f2d8c7e9a10")
# A receiver may ask for a longer pause; beyond a day it is taken as a day.
RETRY_AFTER_CAP = timedelta(days=1)
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$")
# Host names that only ever mean "this machine" or "the local network".
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".intranet", ".lan", ".home.arpa")


class SubscriptionStatus(StrEnum):
    active = "active"
    disabled = "disabled"


class DeliveryStatus(StrEnum):
    pending = "pending"  # queued or being retried
    delivered = "delivered"  # a 2xx answer was recorded
    failed = "failed"  # given up with the subscription (sustained failure, 410 Gone)


# --- secrets and ids ---------------------------------------------------------------------------


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes, as Standard Webhooks spells signing secrets."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: the bytes after the prefix, base64-decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def message_id(subscription_id: uuid.UUID, event_id: int) -> str:
    """The `webhook-id` of one event to one subscription: the same on every attempt (and after a
    crash), so receivers can drop duplicates; different per subscription."""
    return "msg_" + uuid.uuid5(_MESSAGE_NAMESPACE, f"{subscription_id}:{event_id}").hex


# --- which events ------------------------------------------------------------------------------


def normalise_event_types(types: Sequence[str]) -> list[str]:
    """Distinct, sorted patterns; `*` alone means every event. Raises ValueError on a bad one."""
    cleaned = sorted({t.strip() for t in types})
    if not cleaned:
        raise ValueError("name at least one event type, or * for all")
    if len(cleaned) > MAX_EVENT_TYPES:
        raise ValueError(f"at most {MAX_EVENT_TYPES} event types")
    if ALL_EVENTS in cleaned:
        return [ALL_EVENTS]
    bad = [t for t in cleaned if not EVENT_TYPE.match(t) or len(t) > 64]
    if bad:
        raise ValueError(
            f"{bad[0]!r} is not an event type: use names like lot.registered, a prefix like lot.*,"
            " or * for all"
        )
    return cleaned


def wants(event_types: Sequence[str], event_type: str) -> bool:
    """Whether a subscription to `event_types` receives an event of `event_type`."""
    for pattern in event_types:
        if pattern in (ALL_EVENTS, event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def type_patterns(event_types: Sequence[str]) -> tuple[bool, list[str], list[str]]:
    """(everything, exact names, prefixes ending in a dot): the same test as `wants`, for SQL."""
    if ALL_EVENTS in event_types:
        return True, [], []
    exact = [t for t in event_types if not t.endswith(".*")]
    prefixes = [t[:-1] for t in event_types if t.endswith(".*")]
    return False, exact, prefixes


# --- where to ----------------------------------------------------------------------------------


class DestinationRefused(ValueError):
    """The URL is malformed, or points at an address the relay must not reach."""


def public_address(address: str) -> bool:
    """Whether an IP address is on the public internet: not private, loopback, link-local
    (cloud metadata), multicast, shared (CGNAT), reserved or unspecified; IPv4-mapped and NAT64
    IPv6 addresses are judged by the IPv4 address inside."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in ipaddress.IPv6Network("64:ff9b::/96"):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return public_address(str(inner))
    return ip.is_global and not ip.is_multicast


def _parts(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH:
        raise DestinationRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise DestinationRefused(f"the URL is malformed: {error}") from error
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused("the URL must be http:// or https://")
    if not parts.hostname:
        raise DestinationRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused(
            "credentials in the URL are not kept: verify the webhook-signature header instead"
        )
    if parts.fragment:
        raise DestinationRefused("the URL must not have a #fragment")
    return parts


def host_of(url: str) -> str:
    return _parts(url).hostname or ""


def origin_of(url: str) -> str:
    """scheme://host[:port]: what the event log records of a URL (its path and query may carry
    the receiver's own tokens)."""
    parts = _parts(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_destination(url: str, *, allow_private: bool) -> str:
    """The URL, checked on its literal host. Refused: IP literals outside public ranges, names
    that only mean a local machine or network, and single-label names (resolved through local
    search domains). Names are resolved, and their addresses checked, when the relay sends."""
    parts = _parts(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if allow_private:
        return url
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES) or "." not in host:
            raise DestinationRefused(
                f"{host} names a local machine or network; use a public host name"
            ) from None
        return url
    if not public_address(host):
        raise DestinationRefused(
            f"{host} is a private, loopback, link-local, multicast or reserved address"
        )
    return url


# --- when to try again -------------------------------------------------------------------------

DEFAULT_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 3600.0)


def retry_delay(
    failures: int, schedule: Sequence[float], retry_after: timedelta | None = None
) -> timedelta:
    """The pause after the `failures`-th consecutive failed attempt of a delivery: the schedule's
    step (its last step repeats), or the receiver's Retry-After when that is longer (capped)."""
    steps = schedule or DEFAULT_SCHEDULE
    step = timedelta(seconds=steps[min(max(failures, 1), len(steps)) - 1])
    if retry_after is not None and retry_after > step:
        return min(retry_after, RETRY_AFTER_CAP)
    return step


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A receiver's Retry-After, capped at a day."""
    return retry.parse_retry_after(value, now, RETRY_AFTER_CAP)


def should_disable(
    consecutive_failures: int,
    failing_since: datetime | None,
    now: datetime,
    *,
    after_failures: int,
    after: timedelta,
) -> bool:
    """Sustained failure: at least `after_failures` failed attempts in a row, the first of them
    longer ago than `after`. Either alone is not enough: a burst of quick retries during a short
    outage does not disable an endpoint, and nor does one slow failure a day."""
    return (
        consecutive_failures >= after_failures
        and failing_since is not None
        and now - failing_since >= after
    )


def accepted(status_code: int) -> bool:
    return 200 <= status_code < 300


GONE = 410  # Standard Webhooks: the receiver asks to be unsubscribed
