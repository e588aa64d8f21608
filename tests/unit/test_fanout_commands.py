"""``hub subscriptions``: answers that need no service — a bad file (exit 2, every problem on stderr), an unknown
name (exit 1), a warehouse subscription (exit 2), an unreadable --since (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import build_parser
from hub.settings import Settings

FILE = """
[[subscription]]
name = "tiemchung"
format = "event"
[subscription.delivery]
kind = "kafka"

[[subscription]]
name = "warehouse"
format = "event"
[subscription.delivery]
kind = "warehouse"
"""


def main(argv: list[str]) -> int:
    """Run a `hub` subcommand as main() does, minus logging setup (it would bind the test's captured stdout)."""
    args = build_parser().parse_args(argv)
    return args.func(Settings.from_env(), args)


@pytest.fixture()
def subscriptions_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "subscriptions.toml"
    path.write_text(FILE, encoding="utf-8")
    monkeypatch.setenv("HSSK_SUBSCRIPTIONS_FILE", str(path))
    monkeypatch.setenv("HSSK_STATE_DIR", str(tmp_path))
    return path


@pytest.mark.parametrize("argv", [["pause", "khong-co"], ["resume", "khong-co"], ["show", "khong-co"],
                                  ["replay", "khong-co", "--since", "2h"]])
def test_an_unknown_subscription_is_exit_1(subscriptions_file: Path, argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscriptions", *argv]) == 1
    assert "no subscription named 'khong-co'" in capsys.readouterr().err


def test_a_bad_file_is_exit_2_with_every_problem(subscriptions_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subscriptions_file.write_text('[[subscription]]\nname = "x"\nformat = "pdf"\n', encoding="utf-8")
    assert main(["subscriptions", "list"]) == 2
    err = capsys.readouterr().err
    assert "is not valid" in err and "subscription \"x\": 'delivery' is a required property" in err
    assert 'subscription "x": format' in err


def test_a_warehouse_subscription_is_not_paused_by_the_fan_out(subscriptions_file: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscriptions", "pause", "warehouse"]) == 2
    assert "delivered by the warehouse role" in capsys.readouterr().err


def test_an_unreadable_since_is_exit_2(subscriptions_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscriptions", "replay", "tiemchung", "--since", "hôm qua"]) == 2
    assert "is not a time" in capsys.readouterr().err


def test_each_subscription_reports_the_lag_of_the_topic_its_group_reads(subscriptions_file: Path) -> None:
    """The warehouse role's group reads events.citizen; a fan-out subscription's reads record.changes."""
    from hub.fanout import admin, config

    subs = {s.name: s for s in config.load(subscriptions_file, {})}
    assert admin.source_topic(subs["tiemchung"]) == "record.changes"
    assert admin.source_topic(subs["warehouse"]) == "events.citizen"
