"""``hub api token issue|revoke|list`` and ``hub api serve`` as registered by add_api_commands: the token is
printed once and only its hash is stored; revoke and list report what they did."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from hub.api import tokens
from hub.api.commands import add_api_commands
from hub.settings import Settings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hub")
    add_api_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return replace(Settings(), api_token_file=tmp_path / "api-tokens.json")


class TestTokenCommands:
    def test_issue_prints_the_token_once_and_stores_its_hash(self, settings: Settings,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
        args = parse("api", "token", "issue", "--client", "bv-cho-ray", "--scope", "record:read",
                     "--scope", "ops:read")
        assert args.func(settings, args) == 0
        out, err = capsys.readouterr()
        token = out.strip()
        assert token.startswith("hssk_") and token not in err
        stored = settings.api_token_file.read_text()
        assert token not in stored and tokens.hash_token(token) in stored
        assert tokens.TokenFile(settings.api_token_file).authenticate(token).scopes == {"record:read", "ops:read"}

    def test_an_unknown_scope_is_refused_by_the_parser(self) -> None:
        with pytest.raises(SystemExit):
            parse("api", "token", "issue", "--client", "x", "--scope", "record:write")

    def test_revoke_then_revoke_again(self, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
        tokens.issue(settings.api_token_file, "bv-115", ["record:read"])
        args = parse("api", "token", "revoke", "--client", "bv-115")
        assert args.func(settings, args) == 0
        assert args.func(settings, args) == 1  # nothing left to revoke
        assert "no active token" in capsys.readouterr().err

    def test_list_shows_no_secret(self, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
        token = tokens.issue(settings.api_token_file, "kho-du-lieu", ["ops:read"])
        args = parse("api", "token", "list")
        assert args.func(settings, args) == 0
        out = capsys.readouterr().out
        assert token not in out and tokens.hash_token(token) not in out
        assert orjson.loads(out)[0]["client_id"] == "kho-du-lieu"

    def test_a_corrupt_token_file_is_exit_2(self, settings: Settings) -> None:
        settings.api_token_file.write_text("[]")
        args = parse("api", "token", "issue", "--client", "x", "--scope", "record:read")
        assert args.func(settings, args) == 2


def test_serve_is_registered_with_an_optional_port() -> None:
    args = parse("api", "serve", "--port", "18080")
    assert args.port == 18080 and callable(args.func)
    assert parse("api", "serve").port is None
