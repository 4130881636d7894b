"""Pure rules of the event log."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python


def event_payload(data: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready payload: UUIDs, datetimes and enums as strings, so the stored row is canonical."""
    result = to_jsonable_python(data)
    assert isinstance(result, dict)
    return result
