"""Stream-role metrics: what one finished batch counts, where each role serves, and that no label names a person."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import REGISTRY

from hub.errors import IdentityError, TranslateError, UnsupportedMessage
from hub.ops import metrics
from hub.settings import Settings


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestStageMetrics:
    def test_a_batch_counts_events_failures_by_code_outputs_by_topic_and_its_time(self) -> None:
        stage = "unit-stage-a"
        counted = metrics.StageMetrics(stage)
        counted.batch_done(5, ["translate", "translate", "internal"], ["events.canonical"] * 4 + ["hub.dlq"] * 3, 0.03)
        counted.batch_done(2, [], ["events.canonical"], 0.002)
        assert 7 == sample("hssk_stage_events_total", stage=stage)
        assert 2 == sample("hssk_stage_failures_total", stage=stage, code="translate")
        assert 1 == sample("hssk_stage_failures_total", stage=stage, code="internal")
        assert 5 == sample("hssk_stage_outputs_total", stage=stage, topic="events.canonical")
        assert 3 == sample("hssk_stage_outputs_total", stage=stage, topic="hub.dlq")
        assert 2 == sample("hssk_stage_batch_seconds_count", stage=stage)
        assert 1 == sample("hssk_stage_batch_seconds_bucket", stage=stage, le="0.0025")
        assert 2 == sample("hssk_stage_batch_seconds_bucket", stage=stage, le="0.05")
        assert pytest.approx(0.032) == sample("hssk_stage_batch_seconds_sum", stage=stage)
        assert 0 == sample("hssk_stage_batch_events_bucket", stage=stage, le="1.0")
        assert 2 == sample("hssk_stage_batch_events_bucket", stage=stage, le="5.0")

    def test_labels_are_only_stage_code_and_topic(self) -> None:
        """No label can carry personal data: the label names are fixed and their values are bounded sets."""
        for family in (metrics.EVENTS, metrics.FAILURES, metrics.OUTPUTS, metrics.BATCH_SECONDS, metrics.BATCH_EVENTS):
            assert set(family._labelnames) <= {"stage", "code", "topic"}  # noqa: SLF001 - what is exported


@pytest.mark.parametrize(("exc", "code"), [
    (TranslateError("x"), "translate"), (UnsupportedMessage("x"), "translate"), (IdentityError("x"), "identity"),
    (KeyError("PID"), "internal"), (RuntimeError("boom"), "internal"),
])
def test_failure_codes_are_the_stable_dlq_codes(exc: Exception, code: str) -> None:
    assert code == metrics.failure_code(exc)


class TestPorts:
    def test_unset_the_stream_roles_follow_the_mllp_port(self) -> None:
        settings = Settings.from_env({"HSSK_MLLP_METRICS_PORT": "19664"})
        assert [19665, 19666, 19667, 19668] == [settings.metrics_port(r) for r in
                                                ("translator", "identity", "record", "fanout")]

    def test_defaults(self) -> None:
        assert (9464, 9465, 9468) == (Settings().mllp_metrics_port, Settings().metrics_port("translator"),
                                      Settings.from_env({}).metrics_port("fanout"))

    def test_a_role_port_can_be_set_or_switched_off(self) -> None:
        settings = Settings.from_env({"HSSK_RECORD_METRICS_PORT": "7001", "HSSK_FANOUT_METRICS_PORT": "0"})
        assert (9465, 7001, 0) == (settings.metrics_port("translator"), settings.metrics_port("record"),
                                   settings.metrics_port("fanout"))

    def test_mllp_off_switches_the_defaults_off(self) -> None:
        assert 0 == Settings.from_env({"HSSK_MLLP_METRICS_PORT": "0"}).metrics_port("identity")

    def test_mllp_is_not_a_stream_role(self) -> None:
        assert 0 == Settings().metrics_port("mllp")


class TestServe:
    def test_off(self) -> None:
        assert 0 == metrics.serve("fanout", Settings.from_env({"HSSK_FANOUT_METRICS_PORT": "0"}))

    def test_a_taken_port_is_reported_and_does_not_stop_the_role(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            settings = Settings.from_env({"HSSK_IDENTITY_METRICS_PORT": str(port)})
            assert 0 == metrics.serve("identity", settings)
