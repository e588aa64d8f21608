"""Never a crash: damaged messages either translate or fail with the hub's own error (so the DLQ gets a
stage code and a reason), never an IndexError or KeyError. Mutations are seeded, so failures reproduce."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from connectors.hl7v2.translate import translate
from hub.errors import HubError

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hl7" / "corpus"
MESSAGES = sorted(CORPUS.glob("*.hl7"))
NOISE = ["|", "^", "~", "\\", "&", "\\X\\", "\\H\\", '""', "\r", "ZZZ|1", "\\XZZ\\", "99999999999999", "-", ".", "é"]


def mutations(raw: str, rng: random.Random, count: int) -> list[str]:
    """Truncations, deleted and duplicated segments, emptied fields, injected separators and escapes."""
    segments = raw.split("\r")
    out = []
    for _ in range(count):
        kind = rng.randrange(5)
        if kind == 0:
            out.append(raw[:rng.randrange(8, max(9, len(raw)))])
        elif kind == 1 and len(segments) > 1:
            drop = rng.randrange(1, len(segments))
            out.append("\r".join(s for i, s in enumerate(segments) if i != drop))
        elif kind == 2 and len(segments) > 1:
            dup = rng.randrange(1, len(segments))
            out.append("\r".join(segments[:dup + 1] + [segments[dup]] + segments[dup + 1:]))
        elif kind == 3:
            i = rng.randrange(1, len(segments)) if len(segments) > 1 else 0
            fields = segments[i].split("|")
            if len(fields) > 2:
                fields[rng.randrange(1, len(fields))] = rng.choice(["", '""', "^^^", "~~", "\\"])
            out.append("\r".join(segments[:i] + ["|".join(fields)] + segments[i + 1:]))
        else:
            pos = rng.randrange(10, max(11, len(raw)))
            out.append(raw[:pos] + rng.choice(NOISE) + raw[pos:])
    return out


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.stem)
def test_damaged_messages_fail_cleanly(path: Path) -> None:
    """100 damaged variants of each corpus message: each gives events or a HubError, nothing else."""
    rng = random.Random(path.stem)
    raw = path.read_bytes().decode("utf-8").lstrip("\ufeff").replace("\r\n", "\r").replace("\n", "\r")
    for variant in mutations(raw, rng, 100):
        try:
            translate(variant.encode("utf-8"), received_at="2026-03-05T10:00:00.000+07:00")
        except HubError:
            pass


def test_random_bytes_fail_cleanly() -> None:
    """Arbitrary bytes after an MSH prefix (or none) are a ParseError or TranslateError, never a crash."""
    rng = random.Random(7)
    for _ in range(500):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
        for raw in (body, b"MSH|^~\\&|" + body, b"MSH" + body):
            try:
                translate(raw, received_at="2026-03-05T10:00:00.000+07:00")
            except HubError:
                pass


@pytest.mark.parametrize("name", ["adt_a04_emergency", "oul_r22_v27", "siu_s12_tq1_v26", "vxu_v04_deleted"])
def test_validator_reports_damage_instead_of_raising(name: str) -> None:
    """The conformance check turns damaged input into problems; it never raises (the listener relies on it)."""
    from connectors.hl7v2.validate import validate_message

    rng = random.Random(name)
    raw = (CORPUS / f"{name}.hl7").read_text(encoding="utf-8")
    for variant in mutations(raw, rng, 8):
        assert isinstance(validate_message(variant), list)
