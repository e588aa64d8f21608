"""Sensitivity flags (ARCHITECTURE invariant 6): which sensitive categories a payload's codes belong to.

The code lists are data (``sensitivity.json``), compiled once here. A flag is raised by an
ICD-10 code (prefix, dot removed), a LOINC code, an ATC code (prefix) or, for local codes, a pattern in the
concept's text or display. Fan-out filters on the flags, so a miss here leaks: the lists err on the side of
flagging (e.g. all of ICD-10 chapter F for mental health).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any


SENSITIVITY_PATH = Path(__file__).with_name("sensitivity.json")
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
ATC = "http://www.whocc.no/atc"


class _Category:
    __slots__ = ("name", "icd10", "loinc", "atc", "text")

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.icd10 = tuple(p.replace(".", "").upper() for p in spec.get("icd10_prefixes", ()))
        self.loinc = frozenset(spec.get("loinc", ()))
        self.atc = tuple(p.upper() for p in spec.get("atc_prefixes", ()))
        patterns = spec.get("text_patterns", ())
        self.text = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None

    def matches(self, concept: dict[str, Any]) -> bool:
        for coding in concept.get("coding", ()):
            system, code = coding.get("system"), coding.get("code", "")
            if system == ICD10 and code.replace(".", "").upper().startswith(self.icd10):
                return True
            if system == LOINC and code in self.loinc:
                return True
            if system == ATC and code.upper().startswith(self.atc):
                return True
            if self.text is not None and (display := coding.get("display")) and self.text.search(display):
                return True
        text = concept.get("text")
        return bool(self.text is not None and text and self.text.search(text))


def load(path: Path = SENSITIVITY_PATH) -> tuple[_Category, ...]:
    """Read and compile the categories; a malformed file fails at start-up, never per message."""
    categories = json.loads(path.read_text(encoding="utf-8")).get("categories")
    if not isinstance(categories, dict) or not categories:
        raise ValueError(f"{path.name}: needs 'categories'")
    return tuple(_Category(name, spec) for name, spec in categories.items())


_CATEGORIES = load()
CATEGORIES = tuple(c.name for c in _CATEGORIES)

# The fields of a payload that carry its clinical meaning.
_CONCEPT_FIELDS = ("code", "valueCodeableConcept", "medicationCodeableConcept", "vaccineCode", "type",
                   "reasonCode", "category")


def _concepts(resource: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for key in _CONCEPT_FIELDS:
        value = resource.get(key)
        if isinstance(value, dict):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, dict))


ConceptKey = tuple[str | None, tuple[tuple[str | None, str | None, str | None], ...]]


def _key(concept: dict[str, Any]) -> ConceptKey:
    return concept.get("text"), tuple((c.get("system"), c.get("code"), c.get("display"))
                                      for c in concept.get("coding", ()))


@functools.lru_cache(maxsize=20_000)
def _concept_flags(key: ConceptKey) -> frozenset[str]:
    """Flags of one concept, memoised: the same codes come back message after message."""
    text, codings = key
    concept: dict[str, Any] = {"coding": [{"system": s, "code": c or "", "display": d} for s, c, d in codings]}
    if text:
        concept["text"] = text
    return frozenset(c.name for c in _CATEGORIES if c.matches(concept))


def flags(resource: dict[str, Any]) -> tuple[str, ...]:
    """The sensitive categories the resource's codes fall in, in catalogue order; () for none."""
    found: set[str] = set()
    for concept in _concepts(resource):
        found |= _concept_flags(_key(concept))
    return tuple(name for name in CATEGORIES if name in found) if found else ()


def union(*groups: Iterable[str]) -> tuple[str, ...]:
    """Flags of several resources together, in catalogue order (an Encounter carries its diagnoses' flags)."""
    found = {flag for group in groups for flag in group}
    return tuple(name for name in CATEGORIES if name in found)
