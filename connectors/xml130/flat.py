"""Reading a BHYT table's records without building a tree: a strict grammar, then the fields by regex.

A BHYT table is a root element, an optional list element and records whose children are plain text fields.
For a document in exactly that shape - UTF-8, an optional XML declaration (version 1.0, UTF-8), no DOCTYPE,
comment, processing instruction, attribute or namespace, ASCII element names, text made only of characters,
the five predefined entity references, character references and CDATA sections - a full match of a grammar
below is itself the proof that the document is well-formed XML, and its fields are read by regex: no Python
object per element, the hot spot of the lxml reader (~0.75 us per element, ~700 elements an encounter).
The common case (no reference, CDATA or value that needs stripping) is read record by record with a template
per record skeleton, which is that record's grammar; the rest with the general grammar and a regex per field.

Anything else (a DOCTYPE, a comment, an attribute, a namespace, a nested field, a BOM, another encoding, a
character XML forbids, a wrong root, ...) goes to the hardened lxml parser (``safe.parse_document``), which
reads it or refuses it exactly as before: the grammar only decides which of two readers gives the same answer.
XML's line-end normalisation (CR LF and CR -> LF) is applied first, as a parser does; values are unescaped and
stripped as ``context.fields`` strips lxml's text. A test checks that both readers give the same fields over
generated, broken and tricky tables, and a randomised one that a mutated table is never read differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from connectors.xml130.context import fields
from connectors.xml130.errors import TableError
from connectors.xml130.layout import TABLES
from connectors.xml130.safe import parse_document

# Documents at least this long go to lxml: libxml2 (huge_tree off) refuses a text node of 10,000,000 bytes, a
# limit the grammar does not count. Real tables are kilobytes.
FAST_MAX_BYTES = 8_000_000

_WS = r"[ \t\n]*+"  # XML white space once CR is normalised
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]{0,999}+"  # ASCII names only (no ':': no namespaces); others go to lxml
_REF = r"&(?:amp|lt|gt|quot|apos|#[0-9]{1,8}|#x[0-9A-Fa-f]{1,8});"
# Characters XML 1.0 forbids are left out of every text class (surrogates cannot survive a strict UTF-8 decode).
_BAD = r"\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"
_CDATA = rf"<!\[CDATA\[(?:[^\]{_BAD}]++|\](?!\]>))*+\]\]>"
_TEXT_FULL = rf"(?:[^<&\]{_BAD}]++|{_REF}|\](?!\]>)|{_CDATA})*+"
_TEXT_PLAIN = rf"[^<&{_BAD}]*+"  # when the document has no '&', no CDATA and no ']]>'
# Plain text that does not begin or end with white space (str.strip's set, which is re's \s: a test checks it):
# when every value is such, the values need no strip and none is white space only.
_TEXT_CLEAN = rf"(?:[^<&\s{_BAD}](?:[^<&{_BAD}]*+(?<!\s))?)?"
_PROLOG = (r"""(?:<\?xml[ \t\n]+version[ \t\n]*+=[ \t\n]*+(?:"1\.0"|'1\.0')"""
           r"""(?:[ \t\n]+encoding[ \t\n]*+=[ \t\n]*+(?:"[Uu][Tt][Ff]-8"|'[Uu][Tt][Ff]-8'))?"""
           r"""(?:[ \t\n]+standalone[ \t\n]*+=[ \t\n]*+(?:"(?:yes|no)"|'(?:yes|no)'))?[ \t\n]*+\?>)?""" + _WS)
# Fields of a validated record: a name and its non-empty text (an empty <X/> or <X></X> is left out anyway).
_FIELD = re.compile(r"<([A-Za-z_][A-Za-z0-9_.\-]*)>([^<]+)")
_FIELD_CDATA = re.compile(r"<([A-Za-z_][A-Za-z0-9_.\-]*)>((?:[^<]++|<!\[CDATA\[.*?\]\]>)++)</", re.S)
_PIECE = re.compile(r"<!\[CDATA\[(.*?)\]\]>|([^<]+)", re.S)
_ENTITY = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]+)|#x([0-9A-Fa-f]+));")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _fields_of(record: str | None, text: str) -> str:
    """The content of one record: its fields, with white space between them, no record element named inside."""
    exclude = f"(?!{re.escape(record)}/?>)" if record else ""
    return rf"(?:{_WS}<{exclude}(?:(?P<f>{_NAME})>{text}</(?P=f)>|{_NAME}/>))*+{_WS}"


def _grammar(root: str, record: str | None, text: str) -> re.Pattern[str]:
    if record is None:  # the root is the one record
        return re.compile(rf"{_PROLOG}(?P<e><{root}>(?P<body>{_fields_of(None, text)})</{root}>){_WS}")
    records = rf"(?:<{record}>{_fields_of(record, text)}</{record}>{_WS})*+"
    return re.compile(rf"{_PROLOG}(?P<e><{root}>{_WS}(?:<(?!{record}>)(?P<l>{_NAME})>{_WS})?{records}"
                      rf"(?(l)</(?P=l)>{_WS})</{root}>){_WS}")


@dataclass(frozen=True, slots=True)
class _Layout:
    clean: re.Pattern[str]
    plain: re.Pattern[str]
    full: re.Pattern[str]
    open_tag: str | None  # "<CHI_TIET_THUOC>"
    record_cdata: re.Pattern[str] | None  # a record's content when CDATA may hide markup


_LAYOUTS = {
    kind: _Layout(_grammar(root, record, _TEXT_CLEAN), _grammar(root, record, _TEXT_PLAIN),
                  _grammar(root, record, _TEXT_FULL),
                  f"<{record}>" if record else None,
                  re.compile(rf"<{record}>((?:[^<]++|<!\[CDATA\[.*?\]\]>|<(?!/{record}>))*+)</{record}>", re.S)
                  if record else None)
    for kind, (root, record) in TABLES.items()
}


class _Fallback(Exception):
    """The fast reader cannot give lxml's answer exactly: let lxml read the document."""


def _char(code: int) -> str:
    if code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF:
        return chr(code)
    raise _Fallback  # lxml refuses a reference to a character XML forbids


def _entity(match: re.Match[str]) -> str:
    name, decimal, hexadecimal = match.groups()
    if name:
        return _NAMED[name]
    return _char(int(decimal) if decimal else int(hexadecimal, 16))


def _value(raw: str) -> str:
    """Raw field content -> the text lxml gives (CDATA taken literally, references expanded), stripped."""
    if "<" in raw:
        value = "".join(cdata or (_ENTITY.sub(_entity, plain) if "&" in plain else plain)
                        for cdata, plain in _PIECE.findall(raw))
    elif "&" in raw:
        value = _ENTITY.sub(_entity, raw)
    else:
        value = raw
    return value.strip()


def _careful(content: str, cdata: bool) -> dict[str, str]:
    out = {}
    for name, raw in (_FIELD_CDATA if cdata else _FIELD).findall(content):
        if value := _value(raw):
            out[name] = value
    return out


# --- records by template: one compiled pattern per record skeleton (its field names, which are empty) ---------
# A table's records nearly always share a skeleton, so after the first record each one is read by one match of
# its template, which is also its grammar (literal names, white space between fields, values that neither begin
# nor end with white space): the values are the match's groups, C strings, with no per-field regex search.
_SKELETON = re.compile(r"<([A-Za-z_][A-Za-z0-9_.\-]*)(?:/>|>([^<]*)</\1>)")
# A value's characters after its first: [^<{_BAD}] written as the ranges it allows, so that sre stops at the first
# range holding the character instead of testing every forbidden one (a record's template match -12%; a test
# checks both classes hold the same characters).
_VALUE_CHARS = r"\t\n\r\x20-\x3b\x3d-\ufffd\U00010000-\U0010ffff"
_VALUE = rf"([^\s<{_BAD}][{_VALUE_CHARS}]*+(?<!\s))"  # no forbidden character either
_TEMPLATES_PER_TABLE = 32
_TEMPLATES: dict[str, list[tuple[re.Pattern[str], tuple[str, ...]]]] = {}
_NAME_RE = re.compile(_NAME)


def _template(content: str, record: str, prefix: str, suffix: str) -> tuple[re.Pattern[str], tuple[str, ...]] | None:
    """The template of ``content``'s skeleton (None if a name is not plain or is the record's own)."""
    names, parts = [], []
    for name, value in _SKELETON.findall(content):
        if name == record or not _NAME_RE.fullmatch(name):
            return None
        if value:
            names.append(name)
            parts.append(f"<{name}>{_VALUE}</{name}>")
        else:
            parts.append(f"<{name}(?:/>|></{name}>)")
    return re.compile(prefix + _WS + _WS.join(parts) + _WS + suffix), tuple(names)


def _match(kind: str, text: str, pos: int, record: str, prefix: str, suffix: str,
           whole: bool) -> tuple[re.Match[str], tuple[str, ...]] | None:
    """``text`` matched from ``pos`` by a template of ``kind`` (to its end if ``whole``), with its field names; when
    none matches, a new template is made from the content there (up to the next ``record`` start tag unless
    ``whole``). The template that matched moves to the front: a table's next record most likely has the same
    skeleton."""
    templates = _TEMPLATES.setdefault(kind, [])
    for i, (pattern, names) in enumerate(templates):
        match = pattern.fullmatch(text, pos) if whole else pattern.match(text, pos)
        if match is not None:
            if i:
                templates.insert(0, templates.pop(i))
            return match, names
    end = -1 if whole else text.find(f"<{record}>", pos)
    made = _template(text[pos:] if end < 0 else text[pos:end], record, prefix, suffix)
    if made is None:
        return None
    match = made[0].fullmatch(text, pos) if whole else made[0].match(text, pos)
    if match is None:
        return None
    if len(templates) >= _TEMPLATES_PER_TABLE:
        templates.pop()
    templates.insert(0, made)
    return match, made[1]


def _templated(kind: str, text: str) -> list[dict[str, str]] | None:
    """The records read in place, one template match after another (no split of the text into pieces): a record
    is its start tag and a template's match, which ends at the next start tag or at the list's and root's end
    tags. A value holds no '<' and no template names the record, so no match runs into the next record."""
    root, record = TABLES[kind]
    if record is None:
        found = _match(kind, text, 0, root, f"{_PROLOG}<{root}>", f"</{root}>{_WS}", True)
        return None if found is None else [dict(zip(found[1], found[0].groups()))]
    open_tag = f"<{record}>"
    pos = text.find(open_tag)
    if pos < 0 or (head := _LIST_HEAD[kind].fullmatch(text, 0, pos)) is None:
        return None
    out = []
    suffix = f"</{record}>{_WS}"
    while text.startswith(open_tag, pos):
        if (found := _match(kind, text, pos + len(open_tag), record, "", suffix, False)) is None:
            return None
        match, names = found
        out.append(dict(zip(names, match.groups())))
        pos = match.end()
    tail = _LIST_TAIL[kind].fullmatch(text, pos)  # also the proof that no record was cut short
    return out if tail is not None and tail.group("l") == head.group("l") else None


_LIST_HEAD = {kind: re.compile(rf"{_PROLOG}<{root}>{_WS}(?:<(?!{record}>)(?P<l>{_NAME})>{_WS})?")
              for kind, (root, record) in TABLES.items() if record is not None}
_LIST_TAIL = {kind: re.compile(rf"(?:</(?P<l>{_NAME})>{_WS})?</{root}>{_WS}")
              for kind, (root, record) in TABLES.items() if record is not None}


# A field whose whole content is one CDATA section holding no '<' and no '&' (free text: XML5's course notes):
# written as plain text it is the same element with the same text, so a table whose every CDATA section is such
# can be read by template. Anchored on the whole element, the section cannot be part of a name or sit outside a
# field; whatever else the rewritten text holds, the template grammar still has to accept it.
_CDATA_START, _CDATA_END = "<![CDATA[", "]]>"


def _without_cdata(text: str) -> str | None:
    """``text`` with each CDATA section that is a field's whole content (``<F><![CDATA[...]]></F>``) written as
    plain text; None if another section is left. (Split on the sections, not a regex search: that tried a match
    at every tag, 17 us for a 1 kB table.)"""
    pieces = text.split(_CDATA_START)
    out = [pieces[0]]
    for piece in pieces[1:]:
        end = piece.find(_CDATA_END)
        content, after = piece[:end], piece[end + len(_CDATA_END):]
        if end < 0 or "<" in content or "&" in content or not _encloses(out[-1], after):
            return None
        out += (content, after)
    return "".join(out)


def _encloses(before: str, after: str) -> bool:
    """Whether ``before`` ends with a start tag ``<F>`` and ``after`` begins with its end tag ``</F>``."""
    lt = before.rfind("<")
    return (lt >= 0 and before.endswith(">") and _NAME_RE.fullmatch(before, lt + 1, len(before) - 1) is not None
            and after.startswith(f"</{before[lt + 1:-1]}>"))


def fast_records(kind: str, data: bytes) -> list[dict[str, str]] | None:
    """The records' fields of a table in the flat shape (see the module docstring), or None: ask lxml."""
    if len(data) >= FAST_MAX_BYTES:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    cdata = "<![CDATA[" in text
    plain = _without_cdata(text) if cdata else text
    if plain is not None and "&" not in plain and "]]>" not in plain:  # a template's values may hold neither
        if (records := _templated(kind, plain)) is not None:
            return records
    layout = _LAYOUTS[kind]
    careful = True
    if cdata or "&" in text or "]]>" in text:
        match = layout.full.fullmatch(text)
    elif (match := layout.clean.fullmatch(text)) is not None:
        careful = False  # no value to unescape or strip: the fields are the regex's strings as they are
    else:
        match = layout.plain.fullmatch(text)
    if match is None:
        return None
    try:
        if layout.open_tag is None:
            body = match.group("body")
            return [_careful(body, cdata) if careful else dict(_FIELD.findall(body))]
        if cdata:
            contents = layout.record_cdata.findall(text, *match.span("e"))  # type: ignore[union-attr]
        else:
            contents = text.split(layout.open_tag)[1:]  # [0] is the prolog and the root's start
        if careful:
            return [_careful(content, cdata) for content in contents]
        return [dict(_FIELD.findall(content)) for content in contents]
    except _Fallback:
        return None


@dataclass(slots=True)
class Table:
    """One decoded table: its records' fields (a root table has one record, its root), and each record's
    original bytes on demand (a failed row's DLQ entry), as lxml serialises the record element."""

    kind: str
    data: bytes
    records: list[dict[str, str]]
    elements: list[etree._Element] | None = None  # set when lxml read it (or once an original was asked for)

    def original(self, index: int) -> bytes:
        """Record ``index`` (0-based) serialised by lxml: only failures need it, so the fast path parses then."""
        if self.elements is None:
            self.elements = _elements(self.kind, parse_document(self.data, len(self.data)))
        return etree.tostring(self.elements[index], encoding="utf-8")


def _elements(kind: str, root: etree._Element) -> list[etree._Element]:
    record = TABLES[kind][1]
    return [root] if record is None else list(root.iter("{*}" + record))  # {*}: any or no namespace


def from_root(kind: str, data: bytes, root: etree._Element) -> Table:
    """A table lxml has parsed (its root element already checked)."""
    elements = _elements(kind, root)
    return Table(kind, data, [fields(e) for e in elements], elements)


def read_table(kind: str, data: bytes, max_bytes: int) -> Table:
    """A decoded table document -> its records; TableError (from lxml's reading) when it is not readable."""
    if len(data) <= max_bytes and (records := fast_records(kind, data)) is not None:
        return Table(kind, data, records)
    root = parse_document(data, max_bytes)
    expected = TABLES[kind][0]
    tag = root.tag.rpartition("}")[2] if isinstance(root.tag, str) else "?"
    if tag != expected:
        raise TableError("table", f"{kind} root element is {tag}, expected {expected}")
    return from_root(kind, data, root)
