"""A query parameter that takes one value, given several times (`?type=a&type=b`), is refused:
FastAPI would quietly keep the last, filtering on one when the caller may have meant both."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant

from domain.errors import InvalidInput

_SEQUENCES = (list, tuple, set, frozenset)


def single_valued(dependant: Dependant) -> frozenset[str]:
    """The names of a route's query parameters (its dependencies' too) that take one value."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        pending.extend(current.dependencies)
        names.update(
            p.alias for p in current.query_params if not _repeatable(p.field_info.annotation)
        )
    return frozenset(names)


def _repeatable(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, Annotated):
        return any(_repeatable(argument) for argument in get_args(annotation))
    return origin in _SEQUENCES or annotation in _SEQUENCES


def refuse_repeated(request: Request, names: frozenset[str]) -> None:
    query = request.query_params
    if len(query) == len(query.multi_items()):  # no name given twice: the usual request
        return
    for name in sorted(names):
        if len(query.getlist(name)) > 1:
            raise InvalidInput(
                f"query parameter {name} takes one value; it was given more than once",
                errors=[
                    {"pointer": f"/{name}", "detail": "given more than once", "location": "query"}
                ],
            )
