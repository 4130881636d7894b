"""Reading a receiver's Retry-After (RFC 9110), shared by every sender that retries: webhooks and
the industrial-cloud report; and the backoff of the background loops (sealer, webhook relay)."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: datetime, cap: timedelta) -> timedelta | None:
    """Delay-seconds or an HTTP date, at most `cap`; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        # Compared as integers first: a long digit string would overflow timedelta.
        return timedelta(seconds=min(int(value), int(cap.total_seconds())))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when - now, timedelta(0)), cap)


# A failed attempt of a background loop costs one refused connection, while the wait after it is
# how long sealing and deliveries lag once the database is back: so the wait stays short.
BACKOFF_CAP_SECONDS = 5.0


def next_backoff(seconds: float) -> float:
    """The wait after another failure of a background loop: doubled, at most the cap."""
    return min(seconds * 2, BACKOFF_CAP_SECONDS)
