"""Reading a receiver's Retry-After (RFC 9110), shared by every sender that retries: webhooks and
the industrial-cloud report."""

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
