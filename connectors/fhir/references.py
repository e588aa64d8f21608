"""References between the entries of one bundle, and their rewriting to the hub's resource ids.

An entry is found by its ``fullUrl`` (``urn:uuid:...`` in transactions, an absolute URL otherwise) and by
``Type/id``; a transaction may also name one by a conditional reference (``Patient?identifier=sys|value``).
Every ``reference`` inside a resource that points at an entry of the bundle becomes ``Type/<hub id>``; one
that points outside the bundle is left as it is and counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import unquote


class Index:
    """Reference text -> entry index, built once per bundle."""

    def __init__(self) -> None:
        self._by_ref: dict[str, int] = {}
        self._identifiers: dict[tuple[str, str, str], int] = {}  # (type, system, value) -> entry

    def add(self, index: int, full_url: str | None, resource: dict[str, Any]) -> None:
        kind, rid = resource.get("resourceType"), resource.get("id")
        if full_url:
            self._by_ref.setdefault(full_url, index)
        if isinstance(kind, str) and isinstance(rid, str) and rid:
            self._by_ref.setdefault(f"{kind}/{rid}", index)
            if full_url and not full_url.startswith("urn:") and full_url.endswith(f"/{kind}/{rid}"):
                self._by_ref.setdefault(full_url, index)
        for ident in resource.get("identifier") or () if isinstance(resource.get("identifier"), list) else ():
            if isinstance(ident, dict) and ident.get("value"):
                self._identifiers.setdefault((str(kind), str(ident.get("system") or ""), str(ident["value"])), index)

    def find(self, reference: object) -> int | None:
        """The entry a reference names, or None (outside the bundle, or not a reference)."""
        if not isinstance(reference, str) or not reference:
            return None
        if (hit := self._by_ref.get(reference)) is not None:
            return hit
        if "?" in reference:  # conditional reference: Type?identifier=system|value
            kind, _, query = reference.partition("?")
            for part in query.split("&"):
                name, _, value = part.partition("=")
                if name == "identifier" and value:
                    system, bar, code = unquote(value).rpartition("|")
                    key = (kind, system if bar else "", code)
                    if (hit := self._identifiers.get(key)) is not None:
                        return hit
            return None
        tail = "/".join(reference.rstrip("/").split("/")[-2:])  # an absolute URL of a Type/id in the bundle
        return self._by_ref.get(tail) if tail != reference else None


def rewrite(value: Any, index: Index, hub_refs: dict[int, str], counts: Counter[str]) -> Any:
    """A copy of ``value`` with every in-bundle ``reference`` replaced by ``Type/<hub id>``."""
    if isinstance(value, dict):
        out = {key: rewrite(item, index, hub_refs, counts) for key, item in value.items()}
        ref = value.get("reference")
        if isinstance(ref, str) and not ref.startswith("#"):
            hit = index.find(ref)
            if hit is not None and hit in hub_refs:
                out["reference"] = hub_refs[hit]
                counts["reference.resolved"] += 1
            else:
                counts["reference.external" if hit is None else "reference.to-invalid-entry"] += 1
        return out
    if isinstance(value, list):
        return [rewrite(item, index, hub_refs, counts) for item in value]
    return value
