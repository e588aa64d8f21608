"""Exact lookups: malformed CCCD/BHYT is a 400, a card is tried as written and then by its BHXH number."""

from __future__ import annotations

from typing import Any

import pytest

from hub.api.lookup import SYSTEM_BHXH, check_citizen_id, find_citizen, parse_query
from hub.api.problems import ApiError
from hub.envelope import SYSTEM_BHYT, SYSTEM_CCCD, Identifier
from hub.identity.resolve import identity_key

SECRET = b"test-secret"


@pytest.mark.parametrize("body, code", [
    (None, "invalid-query"),
    ([], "invalid-query"),
    ({}, "invalid-query"),
    ({"cccd": "079090001234", "bhyt": "HC4791234567890"}, "invalid-query"),
    ({"name": "Nguyễn Văn An"}, "invalid-query"),
    ({"cccd": 79090001234}, "invalid-cccd"),
    ({"cccd": "07909000123"}, "invalid-cccd"),
    ({"cccd": "0790900012345"}, "invalid-cccd"),
    ({"cccd": "07909000123a"}, "invalid-cccd"),
    ({"cccd": " 079090001234"}, "invalid-cccd"),
    ({"cccd": "079 090 001 234"}, "invalid-cccd"),
    ({"cccd": "０７９０９０００１２３４"}, "invalid-cccd"),  # full-width digits
    ({"cccd": "079090001234\n"}, "invalid-cccd"),
    ({"bhyt": "HC4791234567890\n"}, "invalid-bhyt"),
    ({"bhyt": "hc4791234567890"}, "invalid-bhyt"),
    ({"bhyt": "HC479123456789"}, "invalid-bhyt"),
    ({"bhyt": "123456789"}, "invalid-bhyt"),
    ({"bhyt": ""}, "invalid-bhyt"),
])
def test_malformed_queries_are_400(body: Any, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_query(body)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert "0790" not in caught.value.message  # no identifier echoed back


@pytest.mark.parametrize("body, kind, candidates", [
    ({"cccd": "079090001234"}, "cccd", [(SYSTEM_CCCD, "079090001234")]),
    ({"bhyt": "HC4791234567890"}, "bhyt", [(SYSTEM_BHYT, "HC4791234567890"), (SYSTEM_BHXH, "1234567890")]),
    ({"bhyt": "1234567890"}, "bhyt", [(SYSTEM_BHXH, "1234567890"), (SYSTEM_BHYT, "1234567890")]),
])
def test_well_formed_queries(body: dict[str, str], kind: str, candidates: list[tuple[str, str]]) -> None:
    query = parse_query(body)
    assert query.kind == kind
    assert [(c.system, c.value) for c in query.candidates] == candidates


class DictLinks:
    def __init__(self, links: dict[str, str]) -> None:
        self.links = links
        self.asked: list[str] = []

    async def lookup(self, identity_key: str) -> str | None:
        self.asked.append(identity_key)
        return self.links.get(identity_key)


class TestFindCitizen:
    async def test_a_cccd_is_found_through_its_keyed_link(self) -> None:
        links = DictLinks({identity_key(SECRET, Identifier(SYSTEM_CCCD, "079090001234")): "cz-an"})
        assert await find_citizen(links, SECRET, parse_query({"cccd": "079090001234"})) == "cz-an"
        assert await find_citizen(links, SECRET, parse_query({"cccd": "079090001235"})) is None
        assert all("079090001234" not in k for k in links.asked)  # the store is asked by keyed hash only

    async def test_a_card_with_new_group_letters_is_found_by_its_bhxh_number(self) -> None:
        links = DictLinks({identity_key(SECRET, Identifier(SYSTEM_BHXH, "1234567890")): "cz-ha"})
        assert await find_citizen(links, SECRET, parse_query({"bhyt": "SV4791234567890"})) == "cz-ha"
        assert await find_citizen(links, SECRET, parse_query({"bhyt": "1234567890"})) == "cz-ha"

    async def test_the_card_as_written_wins(self) -> None:
        links = DictLinks({identity_key(SECRET, Identifier(SYSTEM_BHYT, "HC4791234567890")): "cz-card",
                           identity_key(SECRET, Identifier(SYSTEM_BHXH, "1234567890")): "cz-number"})
        assert await find_citizen(links, SECRET, parse_query({"bhyt": "HC4791234567890"})) == "cz-card"


@pytest.mark.parametrize("value", ["", "cz-", "cz-XYZ", "cz-0123456789abcdef0123456789abcdeF", "record:cz-x",
                                   "079090001234", "cz-0123456789abcdef0123456789abcdef0",
                                   "cz-0123456789abcdef0123456789abcdef\n"])
def test_malformed_citizen_ids_are_400(value: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_citizen_id(value)
    assert caught.value.status == 400


def test_a_citizen_id_passes() -> None:
    assert check_citizen_id("cz-0123456789abcdef0123456789abcdef") == "cz-0123456789abcdef0123456789abcdef"
