"""Loading a FHIR R4 Bundle (JSON) safely: a size limit before anything is parsed, strict UTF-8 JSON, and the
Bundle's own shape checked (resourceType, type, entries) before any entry is looked at.

A JSON document is parsed whole (orjson), so the size limit is what bounds memory; it is a setting
(``HSSK_FHIR_MAX_BUNDLE_BYTES``). A bigger export should be split into several bundles.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any

import orjson

from hub.errors import ParseError

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
BUNDLE_TYPES = ("collection", "transaction", "batch", "document")
_BOM = b"\xef\xbb\xbf"


class BundleError(ParseError):
    """The file is not a Bundle the hub can read; ``kind``: io, size, encoding, json, not-bundle, bundle-type."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def read_bytes(source: str | Path | bytes | IO[bytes], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes, refused past ``max_bytes`` without reading more than one byte beyond it."""
    if isinstance(source, bytes):
        data = source
    else:
        try:
            if isinstance(source, (str, Path)):
                with open(source, "rb") as f:
                    data = f.read(max_bytes + 1)
            else:
                data = source.read(max_bytes + 1)
        except OSError as exc:
            raise BundleError("io", f"cannot read the bundle: {exc.strerror or type(exc).__name__}") from None
    if len(data) > max_bytes:
        raise BundleError("size", f"bundle is over the {max_bytes:,}-byte limit (HSSK_FHIR_MAX_BUNDLE_BYTES); "
                          "split the export into several bundles")
    return data


def parse(data: bytes) -> dict[str, Any]:
    """JSON -> the Bundle dict, its envelope checked; entries are checked one by one later."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if not data.strip():
        raise BundleError("json", "file is empty")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "utf-8" in text.lower() or "surrogate" in text.lower():
            raise BundleError("encoding", "not UTF-8 (FHIR JSON is always UTF-8)") from None
        raise BundleError("json", f"not valid JSON: {text}") from None
    if not isinstance(doc, dict):
        raise BundleError("not-bundle", f"JSON {type(doc).__name__} at the top, not a FHIR resource")
    kind = doc.get("resourceType")
    if kind != "Bundle":
        what = f"a {kind}" if isinstance(kind, str) and kind else "no resourceType"
        raise BundleError("not-bundle", f"resource is {what}, not a Bundle (send resources inside a collection "
                          "or transaction Bundle)")
    if doc.get("type") not in BUNDLE_TYPES:
        raise BundleError("bundle-type", f"Bundle.type is {doc.get('type')!r}; the hub reads "
                          f"{', '.join(BUNDLE_TYPES)}")
    entries = doc.get("entry", [])
    if not isinstance(entries, list):
        raise BundleError("not-bundle", "Bundle.entry is not a list")
    return doc


def bundle_key(doc: dict[str, Any], data: bytes) -> str:
    """The events' message id: Bundle.id, else Bundle.identifier, else a hash of the bytes (the same file
    always gives the same key, whatever its name)."""
    if isinstance(doc.get("id"), str) and doc["id"]:
        return f"Bundle/{doc['id']}"
    ident = doc.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
        return f"{ident.get('system') or ''}|{ident['value']}"
    return f"sha256:{hashlib.sha256(data).hexdigest()[:32]}"
