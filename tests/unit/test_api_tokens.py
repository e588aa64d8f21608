"""Bearer tokens: random, shown once, stored only as SHA-256, revocable, scoped; the token file fails closed."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import orjson
import pytest

from hub.api import tokens
from hub.api.tokens import Client, TokenFile, TokenFileError, hash_token, parse_bearer


class TestHashing:
    def test_the_hash_is_sha256_hex_of_the_token(self) -> None:
        """The stored hash is plain SHA-256: tokens carry 256 random bits, so it cannot be enumerated."""
        assert hash_token("hssk_abc") == hashlib.sha256(b"hssk_abc").hexdigest()

    def test_new_tokens_are_prefixed_random_and_distinct(self) -> None:
        minted = {tokens.new_token() for _ in range(100)}
        assert len(minted) == 100
        assert all(t.startswith("hssk_") and len(t) >= 40 for t in minted)


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("", None),
    ("Basic dXNlcjpwdw==", None),
    ("Bearer", None),
    ("Bearer ", None),
    ("Bearer a b", None),
    ("Bearer hssk_x", "hssk_x"),
    ("bearer hssk_x", "hssk_x"),
    ("  Bearer   hssk_x  ", "hssk_x"),
])
def test_parse_bearer(header: str | None, expected: str | None) -> None:
    """Only the Bearer scheme with exactly one token is accepted."""
    assert parse_bearer(header) == expected


class TestScopes:
    def test_a_client_allows_only_its_scopes(self) -> None:
        client = Client("bv-cho-ray", frozenset({tokens.SCOPE_RECORD_READ}))
        assert client.allows("record:read")
        assert not client.allows("subscriptions:admin")
        assert not client.allows("review:write")

    def test_the_four_scopes(self) -> None:
        assert tokens.SCOPES == {"record:read", "subscriptions:admin", "review:write", "ops:read"}


class TestTokenFile:
    def test_issue_stores_only_the_hash_with_mode_0600(self, tmp_path: Path) -> None:
        path = tmp_path / "api-tokens.json"
        token = tokens.issue(path, "so-y-te", ["record:read", "ops:read"])
        text = path.read_text()
        assert token not in text
        assert hash_token(token) in text
        entry = orjson.loads(text)["tokens"][hash_token(token)]
        assert entry["client_id"] == "so-y-te" and entry["scopes"] == ["ops:read", "record:read"]
        assert entry["revoked"] is False
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    def test_authenticate_finds_the_client_of_a_valid_token(self, tmp_path: Path) -> None:
        path = tmp_path / "t.json"
        token = tokens.issue(path, "bv-nhi-dong", ["record:read"])
        assert TokenFile(path).authenticate(token) == Client("bv-nhi-dong", frozenset({"record:read"}))
        assert TokenFile(path).authenticate(token + "x") is None
        assert TokenFile(path).authenticate("hssk_unknown") is None

    def test_revoke_takes_effect_without_a_restart(self, tmp_path: Path) -> None:
        """The server's TokenFile re-reads the file when it changes."""
        path = tmp_path / "t.json"
        token = tokens.issue(path, "bv-115", ["record:read"])
        other = tokens.issue(path, "bv-tu-du", ["record:read"])
        live = TokenFile(path)
        assert live.authenticate(token) is not None
        assert tokens.revoke(path, "bv-115") == 1
        assert live.authenticate(token) is None
        assert live.authenticate(other) is not None  # other clients are untouched
        assert tokens.revoke(path, "bv-115") == 0  # nothing left to revoke

    def test_revoke_covers_every_token_of_the_client(self, tmp_path: Path) -> None:
        path = tmp_path / "t.json"
        first, second = (tokens.issue(path, "bv-gia-dinh", ["record:read"]) for _ in range(2))
        assert tokens.revoke(path, "bv-gia-dinh") == 2
        live = TokenFile(path)
        assert live.authenticate(first) is None and live.authenticate(second) is None
        assert [r["revoked"] for r in tokens.listing(path)] == [True, True]

    def test_a_token_issued_after_the_server_started_is_accepted(self, tmp_path: Path) -> None:
        path = tmp_path / "t.json"
        live = TokenFile(path)  # no file yet: nothing is accepted
        token = tokens.issue(path, "vneid-sync", ["record:read"])
        assert live.authenticate(token) is not None

    def test_a_corrupt_file_refuses_every_token(self, tmp_path: Path) -> None:
        """Fail closed: keeping the old set could keep a just-revoked token alive."""
        path = tmp_path / "t.json"
        token = tokens.issue(path, "bv-cho-ray", ["record:read"])
        live = TokenFile(path)
        assert live.authenticate(token) is not None
        path.write_text("{not json")
        assert live.authenticate(token) is None

    @pytest.mark.parametrize("client, scopes", [
        ("bv-cho-ray", []),
        ("bv-cho-ray", ["record:write"]),
        ("", ["record:read"]),
        ("Bệnh viện", ["record:read"]),
        ("a b", ["record:read"]),
    ])
    def test_issue_rejects_bad_requests(self, tmp_path: Path, client: str, scopes: list[str]) -> None:
        with pytest.raises(TokenFileError):
            tokens.issue(tmp_path / "t.json", client, scopes)
        assert not (tmp_path / "t.json").exists()

    def test_listing_shows_no_token_and_only_a_hash_prefix(self, tmp_path: Path) -> None:
        path = tmp_path / "t.json"
        token = tokens.issue(path, "kho-du-lieu", ["ops:read"])
        [row] = tokens.listing(path)
        assert row["client_id"] == "kho-du-lieu" and row["hash_prefix"] == hash_token(token)[:8]
        assert token not in orjson.dumps(row).decode() and hash_token(token) not in orjson.dumps(row).decode()


def test_concurrent_issues_keep_every_token(tmp_path: Path) -> None:
    """Admin changes take a file lock, so parallel `hub api token issue` runs lose nothing."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "t.json"
    with ThreadPoolExecutor(8) as pool:
        issued = list(pool.map(lambda i: tokens.issue(path, f"client-{i}", ["record:read"]), range(32)))
    live = TokenFile(path)
    assert all(live.authenticate(t) is not None for t in issued)
