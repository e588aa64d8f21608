"""Code maps: mapping tables are data with a default entry, and every miss is counted (STYLE habit 1).

One class for every connector's tables (HL7 v2, BHYT XML, ...). Each connector keeps its own miss counter,
keyed by (table, code) — codes are not personal data, so a counter may become a metric label — and passes it
in, so operators can see per source format which codes to add.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

_MISSING = object()


class CodeMap:
    """One table: ``table(code)`` gives the mapped value, or the default and counts the miss."""

    __slots__ = ("name", "system", "_codes", "_default", "_misses")

    def __init__(self, name: str, codes: dict[str, Any], default: Any, misses: Counter[tuple[str, str]],
                 system: str | None = None) -> None:
        self.name = name
        self.system = system  # the code system of the table's Codings, when it has one
        self._codes = codes
        self._default = default
        self._misses = misses

    def __call__(self, code: str) -> Any:
        value = self._codes.get(code, _MISSING)
        if value is _MISSING:
            self._misses[(self.name, code)] += 1
            return self._default
        return value

    def __contains__(self, code: str) -> bool:
        return code in self._codes


class TemplateMap(CodeMap):
    """A table whose default is a template: an unlisted code becomes ``default.format(code=<url-quoted>)``."""

    __slots__ = ()

    def __call__(self, code: str) -> Any:
        value = self._codes.get(code, _MISSING)
        if value is _MISSING:
            self._misses[(self.name, code)] += 1
            return self._default.format(code=quote(code, safe=""))
        return value
