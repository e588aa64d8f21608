"""The `hub lag` and `hub dlq` commands: registration, argument checks and clear failures (no stack needed)."""

from __future__ import annotations

import argparse
import socket

import pytest

from hub.errors import TranslateError
from hub.ops import dlq
from hub.ops.commands import add_ops_commands, render_entries
from hub.settings import Settings
from tests.unit.test_ops_dlq import HL7, RAW_HEADERS, letter, record


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hub")
    add_ops_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def kafka_down() -> Settings:
    return Settings.from_env({"HSSK_KAFKA_PORT": str(closed_port()), "HSSK_REDIS_PORT": str(closed_port())})


class TestParser:
    def test_every_command_has_a_function(self) -> None:
        for argv in (["lag"], ["lag", "--watch"], ["dlq", "list"], ["dlq", "show", "0/1"], ["dlq", "replay", "0/1"]):
            assert callable(parse(*argv).func)

    def test_watch_defaults_to_two_seconds(self) -> None:
        assert 2.0 == parse("lag", "--watch").watch and 5.0 == parse("lag", "--watch", "5").watch
        assert parse("lag").watch is None

    def test_json_and_prometheus_exclude_each_other(self) -> None:
        with pytest.raises(SystemExit):
            parse("lag", "--json", "--prometheus")

    def test_serve_takes_an_optional_port(self) -> None:
        assert (0, 9999, None) == (parse("lag", "--serve").serve, parse("lag", "--serve", "9999").serve,
                                   parse("lag").serve)

    def test_dlq_needs_an_action(self) -> None:
        with pytest.raises(SystemExit):
            parse("dlq")


@pytest.mark.parametrize(("argv", "message"), [
    (["dlq", "list", "--stage", "translator"], "unknown stage 'translator'"),
    (["dlq", "list", "--code", "bogus"], "unknown reason code"),
    (["dlq", "list", "--since", "yesterday"], "is not a time"),
    (["dlq", "list", "--since", "1h", "--until", "2h"], "--until is before --since"),
    (["dlq", "show", "seven"], "not a DLQ entry id"),
    (["dlq", "replay"], "name entries"),
    (["dlq", "replay", "0/1", "--stage", "translate"], "not both"),
    (["dlq", "list", "--subscription", "khong-co"], "no subscription 'khong-co'"),
    (["dlq", "show", "0/1", "--subscription", "khong-co"], "no subscription 'khong-co'"),
])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], message: str, kafka_down: Settings,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(*argv)
    assert 2 == args.func(kafka_down, args)
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("hub dlq")


def test_a_taken_exporter_port_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = parse("lag", "--serve", str(taken.getsockname()[1]))
        assert 2 == args.func(Settings(), args)
    assert "hub lag: cannot serve on 127.0.0.1:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["lag"], ["lag", "--json"], ["dlq", "list"], ["dlq", "show", "0/1"],
                                  ["dlq", "replay", "0/1"], ["dlq", "replay", "--stage", "translate"]])
def test_kafka_down_is_a_clear_error(argv: list[str], kafka_down: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(*argv)
    assert 2 == args.func(kafka_down, args)
    err = capsys.readouterr().err
    assert f"Kafka at {kafka_down.kafka_bootstrap} is not reachable" in err
    assert "Traceback" not in err


def test_entry_table_marks_replayed_entries() -> None:
    first = dlq.parse_entry(record(letter("translate", HL7, TranslateError("unsupported message type DFT^P03"),
                                          RAW_HEADERS), offset=7))
    second = dlq.parse_entry(record(letter("translate", HL7, TranslateError("x" * 100)), offset=8))
    lines = render_entries([first, second], {"1/7": "hl7v2.raw/0/12 2026-11-22T01:00:00+00:00"}).splitlines()
    assert lines[0].split() == ["ID", "FAILED-AT", "STAGE", "CODE", "FACILITY", "SOURCE", "REPLAYED", "REASON"]
    assert lines[1].split()[2:] == ["translate", "translate", "79033", "hl7v2.raw/3/42", "yes", "unsupported",
                                    "message", "type", "DFT^P03"]
    assert lines[2].split()[6] == "no" and lines[2].endswith("x...") and len(lines[2].split()[-1]) == 80
    assert lines[-1] == "2 entries"
    assert render_entries([first], None).splitlines()[1].split()[6] == "?"
