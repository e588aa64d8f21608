"""Is one entry's resource valid FHIR R4? The fhir.resources R4B models decide (as every test of the hub's
payloads does), and each problem is given as a field path and a message, never the offending value.

fhir.resources checks structure, types and formats; it does not check required value sets, so the few codes
the rest of the hub relies on (gender, Encounter.status) are checked here too.
"""

from __future__ import annotations

import functools
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

_REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("Encounter", "status"): frozenset({"planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                                       "cancelled", "entered-in-error", "unknown"}),
}
_MAX_PROBLEMS = 5  # per entry: the first few say what to fix; the rest are counted


class UnknownResourceType(ValueError):
    pass


@functools.lru_cache(maxsize=256)
def _model(resource_type: str) -> Any:
    try:
        return get_fhir_model_class(resource_type)
    except (ValueError, AttributeError, ImportError):
        raise UnknownResourceType(resource_type) from None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(resource)"


def problems(resource: dict[str, Any]) -> list[str]:
    """``["status: Value for the field 'status' is required.", ...]``; [] when the resource is valid.
    Raises UnknownResourceType when R4 has no such resource."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise UnknownResourceType(repr(kind))
    model = _model(kind)
    found: list[str] = []
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        for error in errors[:_MAX_PROBLEMS]:
            found.append(f"{_path(tuple(error['loc']))}: {error['msg']}")
        if len(errors) > _MAX_PROBLEMS:
            found.append(f"and {len(errors) - _MAX_PROBLEMS} more")
        return found
    for (of, field), allowed in _REQUIRED_CODES.items():
        if kind == of and field in resource and resource[field] not in allowed:
            found.append(f"{field}: not in the required value set ({', '.join(sorted(allowed))})")
    return found
