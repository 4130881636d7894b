"""The schema check is not vacuous: GS1's own examples pass, and documents with the mistakes an
export could make fail (formats included, which jsonschema skips without optional packages)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from tests.conftest import Json
from tests.epcis.conftest import DATA, SCHEMA_PATH, is_date_time, is_uri, problems


def test_the_schema_is_gs1s() -> None:
    root = Path(__file__).resolve().parents[2]
    reference = root.parent / "shared" / "reference" / "epcis" / "EPCIS-JSON-Schema.json"
    copied = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert copied["$id"] == "https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json"
    if reference.exists():  # the shared copy, where this checkout has it
        assert json.loads(reference.read_text(encoding="utf-8")) == copied


@pytest.mark.parametrize(
    "name", ["Example_9.6.1-ObjectEvent.jsonld", "Example_9.6.4-TransformationEvent.jsonld"]
)
def test_gs1_examples_are_valid(validator: Draft7Validator, name: str) -> None:
    document = json.loads((DATA / name).read_text(encoding="utf-8"))
    assert problems(validator, document) == []


def _document() -> Json:
    """A small query document of the shape the service returns."""
    return {
        "@context": [
            "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
            {"scrapflow": "urn:scrapflow:voc:"},
        ],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-20T08:00:00.000+08:00",
        "epcisBody": {
            "queryResults": {
                "queryName": "SimpleEventQuery",
                "resultsBody": {
                    "eventList": [
                        {
                            "type": "ObjectEvent",
                            "eventID": "urn:scrapflow:event:7",
                            "eventTime": "2026-11-20T08:00:00.000+08:00",
                            "eventTimeZoneOffset": "+08:00",
                            "action": "ADD",
                            "bizStep": "commissioning",
                            "quantityList": [
                                {
                                    "epcClass": "urn:scrapflow:lot:A26-000034T",
                                    "quantity": 603.0,
                                    "uom": "KGM",
                                }
                            ],
                            "readPoint": {"id": "urn:scrapflow:loc:0190-ab"},
                            "ilmd": {"scrapflow:metal": "aluminium"},
                            "scrapflow:auditSeq": 7,
                        },
                        {
                            "type": "TransformationEvent",
                            "eventID": "urn:scrapflow:event:8",
                            "eventTime": "2026-11-20T08:00:00.000+08:00",
                            "eventTimeZoneOffset": "+08:00",
                            "inputQuantityList": [
                                {"epcClass": "urn:scrapflow:lot:A", "quantity": 1, "uom": "KGM"}
                            ],
                            "outputQuantityList": [
                                {"epcClass": "urn:scrapflow:lot:B", "quantity": 1, "uom": "KGM"}
                            ],
                        },
                    ]
                },
            }
        },
    }


def _event(document: Json, index: int = 0) -> Json:
    event: Json = document["epcisBody"]["queryResults"]["resultsBody"]["eventList"][index]
    return event


def _set(index: int, key: str, value: object) -> Callable[[Json], None]:
    return lambda d: _event(d, index).__setitem__(key, value)


def _drop(index: int, key: str) -> Callable[[Json], None]:
    return lambda d: _event(d, index).pop(key)


def _rename(index: int, old: str, new: str) -> Callable[[Json], None]:
    return lambda d: _event(d, index).__setitem__(new, _event(d, index).pop(old))


BROKEN: dict[str, Callable[[Json], None]] = {
    "unit not a UN/ECE code": lambda d: _event(d)["quantityList"][0].__setitem__("uom", "kg"),
    "quantity as text": lambda d: _event(d)["quantityList"][0].__setitem__("quantity", "603"),
    "epcClass not a URI": lambda d: _event(d)["quantityList"][0].__setitem__(
        "epcClass", "A26-000034T"
    ),
    "a bizStep CBV does not have": _set(0, "bizStep", "transforming"),
    "a CBV URN as a private bizStep": _set(0, "bizStep", "urn:epcglobal:cbv:bizstep:melting"),
    "an unknown action": _set(0, "action", "CREATE"),
    "no action": _drop(0, "action"),
    "no eventTimeZoneOffset": _drop(0, "eventTimeZoneOffset"),
    "an offset out of range": _set(0, "eventTimeZoneOffset", "+15:00"),
    "eventTime without offset": _set(0, "eventTime", "2026-11-20T08:00:00"),
    "eventTime not a time": _set(0, "eventTime", "2026-13-45T08:00:00Z"),
    "eventID with a space": _set(0, "eventID", "urn:scrapflow:event: 7"),
    "an extension field that is not a URI": _rename(0, "scrapflow:auditSeq", "auditSeq"),
    "ilmd on an OBSERVE": _set(0, "action", "OBSERVE"),
    "neither epcList nor quantityList": _drop(0, "quantityList"),
    "a readPoint without id": _set(0, "readPoint", {}),
    "a transformation without outputs": _drop(1, "outputQuantityList"),
    "a document without @context": lambda d: d.pop("@context"),
    "a query document without queryName": lambda d: d["epcisBody"]["queryResults"].pop("queryName"),
}


def test_the_sample_is_valid(validator: Draft7Validator) -> None:
    assert problems(validator, _document()) == []


@pytest.mark.parametrize("mistake", list(BROKEN))
def test_a_mistake_is_caught(validator: Draft7Validator, mistake: str) -> None:
    document = copy.deepcopy(_document())
    BROKEN[mistake](document)
    assert problems(validator, document), mistake


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("urn:scrapflow:lot:A26-00003B~", True),
        ("urn:scrapflow:lot:A26-00003C$", True),
        ("urn:scrapflow:lot:A26-00003D=", True),
        ("urn:scrapflow:lot:A26-00003E*", True),
        ("https://ref.gs1.org/cbv/BizStep-shipping", True),
        ("ni:///sha-256;df7bb3c3?ver=CBV2.0", True),
        ("scrapflow:auditSeq", True),
        ("http://127.0.0.1:8000/api/v1/public/certificates/SFC-2026-0000001", True),
        ("auditSeq", False),
        ("urn:scrapflow:lot:A 26", False),
        ("1urn:x", False),
        ("urn:x:%zz", False),
        ("urn:scrapflow:lot:批次", False),
    ],
)
def test_uri_format(value: str, valid: bool) -> None:
    assert is_uri(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2026-11-20T08:00:00.000+08:00", True),
        ("2026-11-20T00:00:00Z", True),
        ("2026-11-20T08:00:00", False),
        ("2026-11-20 08:00:00+08:00", False),
        ("2026-02-30T08:00:00+08:00", None),  # shaped right, not a day: raises
    ],
)
def test_date_time_format(value: str, valid: bool | None) -> None:
    if valid is None:
        with pytest.raises(ValueError, match="day"):
            is_date_time(value)
    else:
        assert is_date_time(value) is valid
