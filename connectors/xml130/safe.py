"""Reading untrusted XML and base64 safely: no entity expansion, no DTD, no network, bounded sizes.

libxml2 (via lxml) is configured so that nothing in a document can make it fetch, expand or allocate beyond
what the bytes themselves hold: entities are never substituted (``resolve_entities=False``), no DTD is loaded
or validated, the network is off, and the huge-document mode stays off (libxml2's depth and text limits
apply). A document that declares a DTD at all is refused: BHYT tables never have one, and the internal subset
is where entity-expansion (billion laughs) and external-entity (XXE) attacks live. Do not add options
casually: with lxml 6.1 / libxml2 2.14, ``collect_ids=False`` makes libxml2 load an external DTD subset
(``<!DOCTYPE x SYSTEM "file:///...">``) despite ``load_dtd=False``; a test guards against that. Refusal happens after a
parse that expanded nothing, so the attack costs only the bytes it sent.
"""

from __future__ import annotations

import binascii

from lxml import etree

from connectors.xml130.errors import TableError

# One configuration for every parser the reader makes (see the module docstring).
HARDENED = {
    "resolve_entities": False,
    "load_dtd": False,
    "dtd_validation": False,
    "attribute_defaults": False,
    "no_network": True,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}

_PARSER = etree.XMLParser(**HARDENED)
_TRUNCATED = ("Premature end of data", "EndTag: '</' not found", "Extra content", "expected '>'")


def _refuse_dtd(tree: etree._ElementTree) -> None:
    dtd = tree.docinfo.internalDTD
    if dtd is None:
        if tree.docinfo.doctype:
            raise TableError("dtd", "document declares a DOCTYPE (forbidden)")
        return
    external = [e.name for e in dtd.iterentities() if e.system_url]
    if external:
        raise TableError("external-entity", f"document declares {len(external)} external entit"
                         f"{'y' if len(external) == 1 else 'ies'} (forbidden, not resolved)")
    if any(True for _ in dtd.iterentities()):
        raise TableError("entity", "document declares entities (forbidden: entity expansion, not expanded)")
    raise TableError("dtd", "document declares a DOCTYPE with a DTD (forbidden)")


def parse_document(data: bytes, max_bytes: int) -> etree._Element:
    """Parse one table document; raise TableError with the kind of problem (never an lxml error)."""
    if len(data) > max_bytes:
        raise TableError("size", f"table is {len(data):,} bytes, over the {max_bytes:,}-byte limit")
    if not data.strip():
        raise TableError("not-xml", "table is empty")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise _syntax(exc) from None
    except ValueError as exc:  # e.g. an unknown declared encoding
        raise TableError("encoding", f"table cannot be decoded: {exc}") from None
    if root is None:
        raise TableError("not-xml", "table has no root element")
    _refuse_dtd(root.getroottree())
    return root


def _syntax(exc: etree.XMLSyntaxError) -> TableError:
    message = str(exc.msg or exc).split(", line ")[0]
    line = getattr(exc, "lineno", None)
    at = f" (line {line})" if line else ""
    lowered = message.lower()
    if "amplification" in lowered or "entity loop" in lowered or "detected an entity" in lowered:
        return TableError("entity", f"entity expansion refused (billion laughs?): {message}{at}")
    if "encoding" in lowered or "utf-8" in lowered:
        return TableError("encoding", f"table is not valid in its declared encoding: {message}{at}")
    if any(marker in message for marker in _TRUNCATED):
        return TableError("truncated", f"table XML ends early (truncated?): {message}{at}")
    if "Start tag expected" in message or "Document is empty" in message:
        return TableError("not-xml", f"table is not XML: {message}{at}")
    if "Entity" in message or "entity" in message:
        return TableError("entity", f"table uses an undeclared entity: {message}{at}")
    return TableError("not-xml", f"table is not well-formed XML: {message}{at}")


def decode_base64(text: str, max_bytes: int) -> bytes:
    """NOIDUNGFILE -> the table's bytes. Whitespace (line-wrapped exports) is allowed, nothing else is."""
    if len(text) > (max_bytes // 3 + 1) * 4 + len(text) // 60 + 16:
        raise TableError("size", f"NOIDUNGFILE decodes to more than the {max_bytes:,}-byte limit")
    if not text or text.isspace():
        raise TableError("base64", "NOIDUNGFILE is empty")
    try:
        data = binascii.a2b_base64(text, strict_mode=True)  # the common case: one unbroken line
    except (binascii.Error, ValueError):
        data = _lenient(text)
    if len(data) > max_bytes:
        raise TableError("size", f"table is {len(data):,} bytes, over the {max_bytes:,}-byte limit")
    return data


def _lenient(text: str) -> bytes:
    """Line-wrapped base64: drop the whitespace, then decode strictly (any other stray byte is an error)."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise TableError("base64", "NOIDUNGFILE holds non-ASCII characters (not base64)") from None
    compact = raw.translate(None, b" \t\r\n")
    if not compact:
        raise TableError("base64", "NOIDUNGFILE is empty")
    try:
        return binascii.a2b_base64(compact, strict_mode=True)
    except binascii.Error as exc:
        hint = " (truncated?)" if len(compact) % 4 else ""
        raise TableError("base64", f"NOIDUNGFILE is not valid base64{hint}: {exc}") from None
