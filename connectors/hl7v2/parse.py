"""A lean HL7 v2 (ER7) reader for the hot path.

hl7apy parses about 60 messages/s and python-hl7 about 1,450/s on this hardware (see
shared/reference/kafka-local.md); the listener and translator need thousands per second, and only split
fields by the separators MSH declares. So this module splits, and hl7apy stays where it earns its cost
(strict conformance checks). Unescaping follows HL7 v2 section 2.7.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from hub.errors import ParseError

BOM = "\ufeff"
_SEGMENT_BREAK = re.compile(r"\r\n|\n|\r")
BATCH_SEGMENTS = frozenset({"FHS", "FTS", "BHS", "BTS"})


def decode(raw: bytes, charset: str = "utf-8") -> str:
    """Bytes to NFC text with CR segment separators; undecodable bytes are a ParseError, never guessed."""
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError as exc:
        raise ParseError(f"bytes {exc.start}-{exc.end} are not valid {charset}") from exc
    except LookupError as exc:
        raise ParseError(f"unknown charset {charset!r}") from exc
    if text.startswith(BOM):
        text = text[1:]
    if "\n" in text:  # CR is the standard separator; only rewrite when LF or CRLF is used
        text = _SEGMENT_BREAK.sub("\r", text)
    text = text.strip("\r\x00 \t")
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def split_messages(text: str) -> list[str]:
    """Split decoded text holding one or many messages (or an FHS/BHS batch) into single messages."""
    messages: list[list[str]] = []
    for segment in text.split("\r"):
        if not segment.strip():
            continue
        name = segment[:3]
        if name in BATCH_SEGMENTS:
            continue
        if name == "MSH" or not messages:
            messages.append([])
        messages[-1].append(segment)
    return ["\r".join(segs) for segs in messages]


@dataclass(frozen=True, slots=True, eq=False)
class Separators:
    """The delimiters MSH declares. ``parse`` interns them (one object per distinct set), and they compare
    and hash by identity, so the translator's memoised helpers key on them cheaply."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


class Segment:
    """One segment; ``seg[n]`` is field n in HL7 numbering (MSH-1 is the field separator itself)."""

    __slots__ = ("name", "_fields", "seps")

    def __init__(self, line: str, seps: Separators) -> None:
        fields = line.split(seps.field)
        self.name = fields[0]
        if self.name == "MSH":
            fields.insert(1, seps.field)
        self._fields = fields
        self.seps = seps

    def __getitem__(self, n: int) -> str:
        return self._fields[n] if n < len(self._fields) else ""

    def span(self, first: int, last: int) -> tuple[str, ...]:
        """Fields ``first`` to ``last`` (inclusive) as sent, e.g. as a cache key; absent fields are ""."""
        values = self._fields[first:last + 1]
        missing = last + 1 - first - len(values)
        return tuple(values + [""] * missing) if missing > 0 else tuple(values)

    def repetitions(self, n: int) -> list[str]:
        value = self[n]
        return value.split(self.seps.repetition) if value else []

    def component(self, n: int, c: int, rep: str | None = None) -> str:
        """Component c (1-based) of field n, unescaped; ``rep`` picks a repetition's text instead."""
        value = self[n] if rep is None else rep
        parts = value.split(self.seps.component)
        return unescape(parts[c - 1], self.seps) if c <= len(parts) else ""


class Message:
    __slots__ = ("segments", "seps")

    def __init__(self, segments: list[Segment], seps: Separators) -> None:
        self.segments = segments
        self.seps = seps

    def first(self, name: str) -> Segment | None:
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def all(self, name: str) -> list[Segment]:
        return [seg for seg in self.segments if seg.name == name]

    @property
    def msh(self) -> Segment:
        return self.segments[0]


_INTERNED: dict[tuple[str, str, str, str, str], Separators] = {}


def parse(text: str) -> Message:
    """Parse one decoded message. Only MSH is checked here; each translator checks what it needs."""
    if not text.startswith("MSH") or len(text) < 8:
        raise ParseError("message does not start with an MSH segment")
    field_sep = text[3]
    enc = text[4:8].split(field_sep, 1)[0]
    if field_sep.isalnum() or len(enc) < 2:
        raise ParseError("MSH-1/MSH-2 do not declare usable separators")
    key = (field_sep, enc[0], enc[1], enc[2] if len(enc) > 2 else "\\", enc[3] if len(enc) > 3 else "&")
    seps = _INTERNED.get(key)
    if seps is None:
        seps = Separators(*key)
        if len(_INTERNED) < 64:  # senders use a handful of sets; never let odd input grow this
            seps = _INTERNED.setdefault(key, seps)
    segments = [Segment(line, seps) for line in text.split("\r") if line]
    return Message(segments, seps)


_ESCAPES = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition", "E": "escape"}


def unescape(value: str, seps: Separators) -> str:
    """Resolve \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ and \\Xhh..\\; formatting escapes (\\.br\\ etc.) become text."""
    esc = seps.escape
    if esc not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        end = value.find(esc, i + 1) if ch == esc else -1
        if end == -1:
            out.append(ch)
            i += 1
            continue
        token = value[i + 1:end]
        if token in _ESCAPES:
            out.append(getattr(seps, _ESCAPES[token]))
        elif token.startswith("X") and len(token) > 1:
            try:
                out.append(bytes.fromhex(token[1:]).decode("utf-8", errors="replace"))
            except ValueError:
                out.append(value[i:end + 1])
        elif token == ".br":
            out.append("\n")
        else:
            out.append(value[i:end + 1])
        i = end + 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Header:
    """The MSH fields the listener needs to route, acknowledge and key a message."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    timestamp: str
    message_code: str
    trigger: str
    structure: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str  # MSH-15: empty in original mode
    app_ack_type: str  # MSH-16
    charset: str  # MSH-18, informative only unless the source trusts it


def read_header(message: Message) -> Header:
    """MSH read once: each field's first component, unescaped (as ``Segment.component``), with MSH-9 split
    into code, trigger and structure. On the per-message path of both the listener and the translator."""
    msh = message.msh
    seps = msh.seps
    comp, esc = seps.component, seps.escape

    def first(n: int) -> str:
        value = msh[n]
        if comp in value:
            value = value.split(comp, 1)[0]
        return unescape(value, seps) if esc in value else value

    msh9 = msh[9].split(comp)
    code, trigger, structure = ([unescape(p, seps) if esc in p else p for p in msh9] + ["", ""])[:3]
    return Header(
        sending_application=first(3),
        sending_facility=first(4),
        receiving_application=first(5),
        receiving_facility=first(6),
        timestamp=first(7),
        message_code=code,
        trigger=trigger,
        structure=structure,
        control_id=first(10),
        processing_id=first(11),
        version=first(12),
        accept_ack_type=first(15),
        app_ack_type=first(16),
        charset=first(18),
    )


def source_patient_id(message: Message) -> str | None:
    """The first PID-3 identifier (CX.1), which keeps one patient's messages in one partition."""
    pid = message.first("PID")
    if pid is None:
        return None
    reps = pid.repetitions(3)
    return pid.component(3, 1, reps[0]) or None if reps else None
