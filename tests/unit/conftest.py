"""Checks the unit tests share: FHIR payloads validate with the fhir.resources R4B models, and events validate
against the published JSON Schema of the canonical envelope."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.envelope import Envelope

ROOT = Path(__file__).resolve().parents[2]
EVENT_SCHEMA = ROOT / "schemas" / "canonical-event.v1.json"


# fhir.resources 8 checks structure, types and formats but not the required value sets (it accepts
# gender "x" or status "bogus"), so the codes the translators emit from required bindings are checked here.
REQUIRED_CODES: dict[str, frozenset[str]] = {
    "gender": frozenset({"male", "female", "other", "unknown"}),
    "encounter.status": frozenset({"planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                                   "cancelled", "entered-in-error", "unknown"}),
    "name.use": frozenset({"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"}),
    "address.use": frozenset({"home", "work", "temp", "old", "billing"}),
    "telecom.system": frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"}),
    "telecom.use": frozenset({"home", "work", "temp", "old", "mobile"}),
}


def _fhir_model(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def _check_required_codes(resource: dict[str, Any]) -> None:
    found: list[tuple[str, Any]] = [("gender", resource["gender"])] if "gender" in resource else []
    if resource["resourceType"] == "Encounter":
        found.append(("encounter.status", resource.get("status")))
    for key in ("name", "address", "telecom"):
        for item in resource.get(key, ()):
            found += [(f"{key}.{field}", item[field]) for field in ("use", "system") if field in item]
    for binding, code in found:
        assert code in REQUIRED_CODES[binding], f"{binding}: {code!r} is not in the required value set"
    for ident in resource.get("identifier", ()):
        assert ident["system"] and not any(ch.isspace() for ch in ident["system"]), ident["system"]


@pytest.fixture(scope="session")
def validate_fhir() -> Callable[[dict[str, Any]], None]:
    """Validate a FHIR resource dict with the R4B model named by its resourceType, plus the required codes."""

    def check(resource: dict[str, Any]) -> None:
        _fhir_model(resource["resourceType"]).model_validate(resource)
        _check_required_codes(resource)

    return check


@pytest.fixture(scope="session")
def validate_event() -> Callable[[Envelope], None]:
    """Validate an envelope, as it goes on the wire, against schemas/canonical-event.v1.json."""
    import jsonschema

    schema = json.loads(EVENT_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())

    def check(event: Envelope) -> None:
        validator.validate(orjson.loads(event.to_json()))

    return check
