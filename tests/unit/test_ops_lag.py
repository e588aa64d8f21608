"""Consumer lag arithmetic and its two renderings: the kafka-lag-exporter text and the `hub lag` table."""

from __future__ import annotations

import pytest

from hub.ops.lag import PartitionLag, lag_messages, lag_seconds, max_lag_by_group, render_prometheus, render_table


@pytest.mark.parametrize(("end", "committed", "start", "expected"), [
    (10, 4, 0, 6),  # produced 10, read 4
    (10, 10, 0, 0),  # caught up
    (10, None, 0, 10),  # nothing committed yet: everything retained is unread
    (10, -1, 0, 10),  # aiokafka's "no offset" marker
    (10, None, 3, 7),  # nothing committed, the first 3 deleted by retention
    (10, 2, 5, 5),  # committed below the log start: only what is still there can be read
    (5, 7, 0, 0),  # never negative
    (0, None, 0, 0),  # empty partition
])
def test_lag_in_messages(end: int, committed: int | None, start: int, expected: int) -> None:
    """Lag is the log end offset minus the committed offset, counted from the log start when none is usable."""
    assert expected == lag_messages(end, committed, start)


@pytest.mark.parametrize(("oldest_ms", "now_ms", "lag", "expected"), [
    (7_500, 10_000, 3, 2.5),
    (None, 10_000, 0, 0.0),  # caught up: 0, whatever the clock says
    (7_500, 10_000, 0, 0.0),
    (None, 10_000, 4, None),  # behind, but the oldest unread record could not be read: unknown, not 0
    (12_000, 10_000, 1, 0.0),  # producer clock ahead of ours: never negative
])
def test_lag_in_seconds(oldest_ms: int | None, now_ms: int, lag: int, expected: float | None) -> None:
    """Lag in seconds is the age of the oldest unconsumed message."""
    assert expected == lag_seconds(oldest_ms, now_ms, lag)


ROWS = [
    PartitionLag("hssk-translator", "hl7v2.raw", 0, 10, 4, 6, 2.5),
    PartitionLag("hssk-translator", "hl7v2.raw", 1, 3, 3, 0, 0.0),
    PartitionLag("hssk-record", "events.citizen", 0, 7, None, 7, None),
]


def test_max_lag_is_per_group() -> None:
    assert {"hssk-translator": (6, 2.5), "hssk-record": (7, None)} == max_lag_by_group(ROWS)


class TestPrometheusText:
    """The exposition uses kafka-lag-exporter's names, labels group/topic/partition (prometheus_client sorts
    them), one line per partition; max lag is per group."""

    def test_exact_lines(self) -> None:
        lines = render_prometheus(ROWS, dlq_records=5).splitlines()
        for expected in [
            "# TYPE kafka_consumergroup_group_lag gauge",
            'kafka_consumergroup_group_lag{group="hssk-translator",partition="0",topic="hl7v2.raw"} 6.0',
            'kafka_consumergroup_group_lag{group="hssk-translator",partition="1",topic="hl7v2.raw"} 0.0',
            'kafka_consumergroup_group_lag{group="hssk-record",partition="0",topic="events.citizen"} 7.0',
            "# TYPE kafka_consumergroup_group_lag_seconds gauge",
            'kafka_consumergroup_group_lag_seconds{group="hssk-translator",partition="0",topic="hl7v2.raw"} 2.5',
            'kafka_consumergroup_group_lag_seconds{group="hssk-translator",partition="1",topic="hl7v2.raw"} 0.0',
            'kafka_consumergroup_group_max_lag{group="hssk-record"} 7.0',
            'kafka_consumergroup_group_max_lag{group="hssk-translator"} 6.0',
            'kafka_consumergroup_group_max_lag_seconds{group="hssk-translator"} 2.5',
            'kafka_consumergroup_group_offset{group="hssk-translator",partition="0",topic="hl7v2.raw"} 4.0',
            'kafka_partition_latest_offset{partition="0",topic="hl7v2.raw"} 10.0',
            "hssk_dlq_records 5.0",
        ]:
            assert expected in lines

    def test_unknown_seconds_and_offsets_are_left_out_not_zeroed(self) -> None:
        text = render_prometheus(ROWS)
        assert 'kafka_consumergroup_group_lag_seconds{group="hssk-record"' not in text
        assert 'kafka_consumergroup_group_offset{group="hssk-record"' not in text
        assert 'kafka_consumergroup_group_max_lag_seconds{group="hssk-record"}' not in text
        assert "hssk_dlq_records" not in text

    def test_no_groups_is_still_valid_text(self) -> None:
        assert "# TYPE kafka_consumergroup_group_lag gauge" in render_prometheus([])


def test_table_has_a_row_per_partition_with_dashes_for_unknowns() -> None:
    lines = render_table(ROWS).splitlines()
    assert lines[0].split() == ["GROUP", "TOPIC", "PARTITION", "LOG-END", "COMMITTED", "LAG", "LAG-SECONDS"]
    assert [line.split() for line in lines[1:]] == [
        ["hssk-translator", "hl7v2.raw", "0", "10", "4", "6", "2.500"],
        ["hssk-translator", "hl7v2.raw", "1", "3", "3", "0", "0.000"],
        ["hssk-record", "events.citizen", "0", "7", "-", "7", "-"],
    ]
