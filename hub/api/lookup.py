"""Finding a citizen for a read: exact identifier lookups through the MPI's links, never a fuzzy match.

A CCCD is exactly 12 digits. A BHYT card is 15 characters (2 group letters, benefit digit, province, then
the 10-digit lifelong BHXH number); cards since 2021 show only those 10 digits. A card is looked up as
written and then by its BHXH number, because the group letters change over a life while the number does
not: still an exact match on the identifier that names the person. Malformed input is a 400, not a miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from hub.api.problems import ApiError
from hub.envelope import SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, Identifier
from hub.identity.resolve import identity_key

# fullmatch and [0-9]: ``\d`` would take other scripts' digits and ``$`` a trailing newline.
_CCCD = re.compile(r"[0-9]{12}")
_BHYT_CARD = re.compile(r"[A-Z]{2}[0-9]{13}")
_BHXH = re.compile(r"[0-9]{10}")
_CITIZEN_ID = re.compile(r"cz-[0-9a-f]{32}")


class Links(Protocol):
    async def lookup(self, identity_key: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Query:
    """Which identifiers to try, in order; the first linked one names the citizen."""

    kind: str  # "cccd" or "bhyt"
    candidates: tuple[Identifier, ...]


def parse_query(body: Any) -> Query:
    """``{"cccd": "..."}`` or ``{"bhyt": "..."}``, exactly one of them; 400 otherwise."""
    if not isinstance(body, dict) or len(body) != 1 or not ({"cccd", "bhyt"} & body.keys()):
        raise ApiError(400, "invalid-query", 'the body is a JSON object with exactly one of "cccd" or "bhyt"')
    [(kind, value)] = body.items()
    if not isinstance(value, str):
        raise ApiError(400, f"invalid-{kind}", f"{kind} is a string")
    if kind == "cccd":
        if not _CCCD.fullmatch(value):
            raise ApiError(400, "invalid-cccd", "a CCCD is exactly 12 digits")
        return Query("cccd", (Identifier(SYSTEM_CCCD, value),))
    if _BHYT_CARD.fullmatch(value):
        return Query("bhyt", (Identifier(SYSTEM_BHYT, value), Identifier(SYSTEM_BHXH, value[5:])))
    if _BHXH.fullmatch(value):
        return Query("bhyt", (Identifier(SYSTEM_BHXH, value), Identifier(SYSTEM_BHYT, value)))
    raise ApiError(400, "invalid-bhyt", "a BHYT number is a 15-character card (2 letters, 13 digits) "
                                        "or the 10-digit BHXH number")


def check_citizen_id(value: str) -> str:
    if not _CITIZEN_ID.fullmatch(value):
        raise ApiError(400, "invalid-citizen-id", "a citizen id is 'cz-' and 32 hex digits")
    return value


async def find_citizen(links: Links, secret: bytes, query: Query) -> str | None:
    for identifier in query.candidates:
        citizen_id = await links.lookup(identity_key(secret, identifier))
        if citizen_id:
            return citizen_id
    return None
