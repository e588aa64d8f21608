"""The dashboard's history and panels, without Kafka: a bounded ring buffer, lag lines per group, rates from the
growth of output topics, DLQ counts by stage and code, subscription health and the review queue, and JSON
that matches the spec."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest

from hub.api.dashboard import view
from hub.api.dashboard.history import GroupLag, History, Sample, rate
from hub.api.app import spec_path

T0 = 1_800_000_000.0
SUBSCRIPTIONS = [  # what hub.fanout.admin.status answers, URL and description included
    {"name": "healthbook", "description": "Health book", "delivery": {"kind": "webhook", "url": "https://x.example/d"},
     "format": "health-book", "lag": 0, "paused": False, "dlq_records": 0},
    {"name": "elderly", "delivery": {"kind": "kafka"}, "format": "event", "lag": 1500, "paused": False, "dlq_records": 0},
    {"name": "paused-one", "delivery": {"kind": "kafka"}, "format": "event", "lag": 3, "paused": True, "dlq_records": 0},
    {"name": "failing", "delivery": {"kind": "webhook", "url": "https://y.example/d"}, "format": "event", "lag": 0,
     "paused": False, "dlq_records": 2},
    {"name": "new-one", "delivery": {"kind": "kafka"}, "format": "event", "lag": None, "paused": False, "dlq_records": 0},
    {"name": "warehouse", "delivery": {"kind": "warehouse"}, "format": "event", "lag": None},
]


def sample(at: float, ends: dict[str, int] | None = None, **groups: tuple[int, float | None]) -> Sample:
    return Sample(at, {g.replace("_", "-"): GroupLag(*v) for g, v in groups.items()}, ends or {})


class TestHistory:
    def test_the_buffer_keeps_only_the_window(self) -> None:
        """10 s of history at 2 s a sample: the sixth sample (plus one for the span) pushes the first out."""
        history = History(window_s=10, interval_s=2)
        for i in range(20):
            history.add(sample(T0 + 2 * i))
        assert len(history.samples) == 6
        assert history.samples[0].at == T0 + 2 * 14 and history.latest.at == T0 + 38

    @pytest.mark.parametrize("window, interval", [(10, 0), (1, 2), (10, -1)])
    def test_a_window_shorter_than_an_interval_is_refused(self, window: float, interval: float) -> None:
        with pytest.raises(ValueError):
            History(window, interval)

    def test_an_error_is_kept_until_the_next_good_sample(self) -> None:
        history = History()
        history.failed("Kafka down", T0)
        history.failed("Kafka still down", T0 + 2)
        assert (history.error, history.error_since) == ("Kafka still down", T0)
        history.add(sample(T0 + 4))
        assert (history.error, history.error_since) == (None, None)

    def test_rate_is_growth_over_time_and_unknown_without_both_ends(self) -> None:
        a, b = sample(T0, {"hl7v2.raw": 100}), sample(T0 + 4, {"hl7v2.raw": 120})
        assert rate(a, b, "hl7v2.raw") == 5.0
        assert rate(a, b, "out.all") is None
        assert rate(b, a, "hl7v2.raw") is None  # time must move forward


class TestPanels:
    def test_a_line_per_group_and_its_latest_value(self) -> None:
        samples = [sample(T0, hssk_record=(5, 1.5)), sample(T0 + 2, hssk_record=(0, 0.0), hssk_fanout=(3, None))]
        panel = view.lag_panel(samples)
        assert panel["groups"] == ["hssk-fanout", "hssk-record"]
        assert panel["series"] == [{"group": "hssk-fanout", "points": [[T0 + 2, 3, None]]},
                                   {"group": "hssk-record", "points": [[T0, 5, 1.5], [T0 + 2, 0, 0.0]]}]
        assert panel["current"] == [{"group": "hssk-fanout", "lag": 3, "lag_seconds": None},
                                    {"group": "hssk-record", "lag": 0, "lag_seconds": 0.0}]

    def test_throughput_per_stage_is_averaged_over_the_span(self) -> None:
        samples = [sample(T0 + 2 * i, {"hl7v2.raw": 10 * i, "events.canonical": 20 * i}) for i in range(10)]
        rows = {r["stage"]: r for r in view.throughput_panel(samples, span_s=10)}
        assert [r["stage"] for r in view.throughput_panel(samples)] == [s for s, _ in view.STAGE_OUTPUTS]
        assert (rows["ingest"]["per_s"], rows["ingest"]["total"], rows["ingest"]["topic"]) == (5.0, 90, "hl7v2.raw")
        assert rows["translate"]["per_s"] == 10.0 and rows["translate"]["series"][0] == [T0 + 2, 10.0]
        assert (rows["fanout"]["per_s"], rows["fanout"]["total"], rows["fanout"]["series"]) == (None, None, [])

    def test_one_sample_gives_totals_but_no_rate_yet(self) -> None:
        [ingest] = [r for r in view.throughput_panel([sample(T0, {"hl7v2.raw": 7})]) if r["stage"] == "ingest"]
        assert (ingest["per_s"], ingest["total"]) == (None, 7)

    def test_dead_letters_by_stage_and_code_most_first(self) -> None:
        history = History()
        history.count_dlq("identity", "identity")
        history.count_dlq("translate", "translate", 3)
        history.count_dlq("ingest", "frame")
        assert view.dlq_panel(history) == {"total": 5, "complete": False, "by_reason": [
            {"stage": "translate", "code": "translate", "entries": 3},
            {"stage": "identity", "code": "identity", "entries": 1},
            {"stage": "ingest", "code": "frame", "entries": 1}]}

    def test_subscriptions_and_review_queue_before_their_first_reading(self) -> None:
        page = view.render(History(), now=T0)
        assert page["subscriptions"] == {"status": "waiting", "message": "not read yet", "items": []}
        assert page["review_queue"] == {"status": "waiting", "message": "not read yet", "size": None}

    def test_each_subscription_shows_delivery_lag_dead_letters_and_one_health_word(self) -> None:
        history = History()
        history.read_subscriptions(SUBSCRIPTIONS, T0)
        panel = view.render(history, now=T0 + 1)["subscriptions"]
        assert panel["status"] == "ok" and panel["message"] == "" and panel["read_at"] == "2027-01-15T08:00:00+00:00"
        assert [(i["name"], i["delivery"], i["lag"], i["dlq_records"], i["health"]) for i in panel["items"]] == [
            ("healthbook", "webhook", 0, 0, "ok"), ("elderly", "kafka", 1500, 0, "behind"),
            ("paused-one", "kafka", 3, 0, "paused"), ("failing", "webhook", 0, 2, "dead letters"),
            ("new-one", "kafka", None, 0, "not started"), ("warehouse", "warehouse", None, None, "warehouse role")]
        assert "url" not in str(panel) and "description" not in str(panel)

    def test_no_subscriptions_and_a_failed_reading(self) -> None:
        history = History()
        history.read_subscriptions([], T0)
        assert view.render(history)["subscriptions"]["status"] == "not-configured"
        assert view.render(history)["subscriptions"]["message"] == view.SUBSCRIPTIONS_NOTE
        history.subscriptions_failed("subscription status not read: TimeoutError")
        assert view.render(history)["subscriptions"]["status"] == "stale"
        never = History()
        never.subscriptions_failed("deploy/local/subscriptions.toml: no such file")
        assert view.render(never)["subscriptions"] == {
            "status": "unavailable", "message": "deploy/local/subscriptions.toml: no such file", "items": []}

    def test_the_review_queue_size_and_its_failure(self) -> None:
        history = History()
        history.read_review_queue(7, T0)
        assert view.render(history)["review_queue"] == {"status": "ok", "message": "", "size": 7,
                                                        "read_at": "2027-01-15T08:00:00+00:00"}
        history.review_queue_failed("Redis: ConnectionError")
        assert view.render(history)["review_queue"]["status"] == "stale"
        assert view.render(history)["review_queue"]["size"] == 7

    def test_the_sampler_state_is_shown(self) -> None:
        history = History(window_s=600, interval_s=2)
        history.add(sample(T0))
        history.failed("reading consumer lag: Kafka at 127.0.0.1:9092 is not reachable", T0 + 2)
        assert view.render(history, now=T0 + 3)["sampler"] == {
            "interval_s": 2, "window_s": 600, "samples": 1, "last_sample_at": "2027-01-15T08:00:00+00:00",
            "error": "reading consumer lag: Kafka at 127.0.0.1:9092 is not reachable",
            "error_since": "2027-01-15T08:00:02+00:00"}


def _schema() -> dict:
    spec = json.loads(spec_path().read_text(encoding="utf-8"))
    return spec["components"]["schemas"]["Dashboard"]


class TestContract:
    def full_history(self) -> History:
        history = History(window_s=60, interval_s=2)
        for i in range(40):
            history.add(sample(T0 + 2 * i, {t: 3 * i for t in view.OUTPUT_TOPICS}, hssk_translator=(i % 3, 0.5 * i),
                               hssk_identity=(0, None)))
        history.count_dlq("translate", "translate", 2)
        history.dlq_complete = True
        history.read_subscriptions(SUBSCRIPTIONS, T0 + 70)
        history.read_review_queue(3, T0 + 78)
        return history

    @pytest.mark.parametrize("build", ["empty", "full"])
    def test_the_json_matches_the_documented_schema(self, build: str) -> None:
        history = History() if build == "empty" else self.full_history()
        document = orjson.loads(orjson.dumps(view.render(history, now=T0 + 100)))
        jsonschema.Draft202012Validator(_schema(), format_checker=jsonschema.FormatChecker()).validate(document)

    def test_only_hub_names_and_numbers_leave(self) -> None:
        """Every string in the answer is a group, topic, stage, code, note or time: nothing from a message."""
        history = self.full_history()
        strings: list[str] = []

        def walk(node: object) -> None:
            if isinstance(node, str):
                strings.append(node)
            elif isinstance(node, dict):
                [walk(v) for v in node.values()]
            elif isinstance(node, list):
                [walk(v) for v in node]

        walk(view.render(history, now=T0 + 100))
        allowed = ({"hssk-translator", "hssk-identity", "translate", "ok", ""}
                   | {s["name"] for s in SUBSCRIPTIONS} | {s["delivery"]["kind"] for s in SUBSCRIPTIONS}
                   | {s["format"] for s in SUBSCRIPTIONS} | {"behind", "paused", "dead letters", "not started", "warehouse role"}
                   | {s for s, _ in view.STAGE_OUTPUTS} | set(view.OUTPUT_TOPICS))
        assert {s for s in strings if not s.startswith("20")} <= allowed
