"""Filters, cohorts and the sensitivity policy, and how a batch of changes becomes deliveries (plan)."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest

from hub.envelope import Envelope, Source, Subject
from hub.fanout import config, formats
from hub.fanout.filters import Verdict, age_on, parse_birth_date, verdict
from hub.fanout.plan import plan
from hub.identity.events import merged_event
from hub.record.apply import empty_record

TODAY = date(2026, 12, 1)


def subscription(body: str, fmt: str = "event") -> config.Subscription:
    return config.loads(f'[[subscription]]\nname = "thu"\nformat = "{fmt}"\n{body}'
                        '[subscription.delivery]\nkind = "kafka"\n', env={})[0]


def event(citizen: str = "cz-a", kind: str = "encounter.recorded", facility: str = "79048",
          sensitivity: tuple[str, ...] = (), n: int = 0) -> Envelope:
    return Envelope(event_id=f"00000000-0000-5000-8000-{n:012d}", type=kind, occurred_at="2026-11-30T08:00:00+07:00",
                    recorded_at="2026-11-30T08:00:01+07:00", source=Source("hl7v2", facility, f"M{n}"),
                    subject=Subject(), payload={"resourceType": "Encounter", "id": f"E{n}", "status": "finished"},
                    sensitivity=sensitivity, citizen_id=citizen, record_version=n + 1)


def person(citizen: str, birth_date: str | None, version: int = 3) -> dict[str, Any]:
    r = empty_record(citizen)
    r["version"] = version
    r["demographics"] = {"name": {"text": "Hoàng Thị Lan"}, "birth_date": birth_date, "provenance": {}}
    return r


class TestAges:
    @pytest.mark.parametrize("birth, age", [("1966-12-01", 60), ("1966-12-02", 59), ("2008-02-29", 18),
                                            ("2020-06-15", 6), ("1966", 60), ("1966-12", 60), ("1967-01", 59)])
    def test_completed_years_today(self, birth: str, age: int) -> None:
        assert age_on(parse_birth_date(birth), TODAY) == age  # type: ignore[arg-type]

    @pytest.mark.parametrize("text", [None, "", "ngày 5", "19661301", "1966-13-01", 1966])
    def test_unreadable_birth_dates_are_none(self, text: Any) -> None:
        assert parse_birth_date(text) is None


class TestVerdicts:
    def test_event_types_and_facilities_must_both_match(self) -> None:
        sub = subscription('[subscription.filter]\nevent_types = ["encounter.recorded"]\nfacilities = ["79048"]\n')
        assert verdict(sub, event(), None, TODAY) is Verdict.DELIVER
        assert verdict(sub, event(kind="patient.updated"), None, TODAY) is Verdict.FILTERED
        assert verdict(sub, event(facility="79033"), None, TODAY) is Verdict.FILTERED

    @pytest.mark.parametrize("birth, expected", [("2014-09-05", Verdict.DELIVER), ("2008-12-01", Verdict.DELIVER),
                                                 ("2007-11-30", Verdict.FILTERED), ("2021-01-01", Verdict.FILTERED),
                                                 (None, Verdict.FILTERED)])
    def test_school_age_is_6_to_18_from_the_record(self, birth: str | None, expected: Verdict) -> None:
        sub = subscription("[subscription.filter]\ncohorts = [{ min_age = 6, max_age = 18 }]\n")
        assert verdict(sub, event(), person("cz-a", birth), TODAY) is expected

    def test_any_cohort_matches(self) -> None:
        sub = subscription("[subscription.filter]\ncohorts = [{ max_age = 5 }, { min_age = 60 }]\n")
        assert verdict(sub, event(), person("cz-a", "1950-01-01"), TODAY) is Verdict.DELIVER
        assert verdict(sub, event(), person("cz-a", "2024-01-01"), TODAY) is Verdict.DELIVER
        assert verdict(sub, event(), person("cz-a", "1990-01-01"), TODAY) is Verdict.FILTERED

    @pytest.mark.parametrize("entitled, flags, expected", [
        ("", ("hiv",), Verdict.WITHHELD), ("", ("mental-health",), Verdict.WITHHELD),
        ('entitled = ["hiv"]\n', ("hiv",), Verdict.DELIVER),
        ('entitled = ["hiv"]\n', ("hiv", "mental-health"), Verdict.WITHHELD),
        ("", (), Verdict.DELIVER)])
    def test_flagged_changes_need_every_category_entitled(self, entitled: str, flags: tuple[str, ...],
                                                          expected: Verdict) -> None:
        assert verdict(subscription(entitled), event(sensitivity=flags), None, TODAY) is expected

    def test_withholding_comes_before_the_filter(self) -> None:
        sub = subscription('[subscription.filter]\nfacilities = ["79033"]\n')
        assert verdict(sub, event(sensitivity=("hiv",)), None, TODAY) is Verdict.WITHHELD


class Change:
    def __init__(self, e: Envelope, offset: int) -> None:
        self.key, self.value, self.offset, self.timestamp = (e.citizen_id or "").encode(), e.to_json(), offset, 1000 + offset


def loader(records: dict[str, dict[str, Any]]):
    asked: list[list[str]] = []

    async def load(ids: list[str]) -> dict[str, dict[str, Any] | None]:
        asked.append(ids)
        return {i: records.get(i) for i in ids}

    load.asked = asked  # type: ignore[attr-defined]
    return load


class TestPlan:
    async def test_events_stay_in_order_per_citizen_and_counts_are_kept(self) -> None:
        sub = subscription('[subscription.filter]\nfacilities = ["79048"]\n')
        changes = [Change(event("cz-a", n=0), 0), Change(event("cz-b", n=1), 1), Change(event("cz-a", n=2), 2),
                   Change(event("cz-a", facility="79033", n=3), 3), Change(event("cz-b", sensitivity=("hiv",), n=4), 4)]
        planned = await plan(sub, changes, loader({}))
        assert {k: [orjson.loads(i.body)["event_id"][-1] for i in v] for k, v in planned.lanes.items()} == {
            "cz-a": ["0", "2"], "cz-b": ["1"]}
        assert (planned.filtered, planned.withheld, planned.failed) == (1, 1, [])

    async def test_the_health_book_is_pushed_once_per_citizen_and_batch(self) -> None:
        sub = subscription("", "health-book")
        load = loader({"cz-a": person("cz-a", "1950-02-03", version=9)})
        planned = await plan(sub, [Change(event("cz-a", n=i), i) for i in range(4)], load)
        (only,) = planned.lanes["cz-a"]
        assert only.format == "health-book" and orjson.loads(only.body)["record_version"] == 9
        assert load.asked == [["cz-a"]] and planned.changed == {"cz-a": 1000}

    async def test_a_merge_sends_the_notice_then_the_survivor_book(self) -> None:
        sub = subscription("", "health-book")
        merge = merged_event("cz-a", "cz-old", cause="A40-1", occurred_at="2026-12-01T09:00:00+07:00",
                             recorded_at="2026-12-01T09:00:01+07:00")
        planned = await plan(sub, [Change(event("cz-a", n=0), 0), Change(merge, 1)],
                             loader({"cz-a": person("cz-a", "1950-02-03")}))
        assert [i.format for i in planned.lanes["cz-a"]] == ["merged", "health-book"]

    async def test_unreadable_changes_and_missing_records_go_to_the_dlq(self) -> None:
        sub = subscription("", "health-book")

        class Bad:
            key, value, offset, timestamp = b"cz-x", b"{not json", 0, 0

        planned = await plan(sub, [Bad(), Change(event("cz-gone", n=1), 1)], loader({}))
        assert [reason for _, reason in planned.failed] == [
            "not a canonical event (JSONDecodeError)", "the record of the changed citizen is not in the record store"]
        assert planned.lanes == {} and planned.changed == {}

    async def test_no_record_is_read_when_nothing_needs_one(self) -> None:
        load = loader({})
        await plan(subscription(""), [Change(event(), 0)], load)
        assert load.asked == []

    def test_formats_used_by_plan_are_the_published_ones(self) -> None:
        assert set(config.FORMATS) == {formats.EVENT, formats.BUNDLE, formats.HEALTH_BOOK}
