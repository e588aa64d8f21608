"""A batch of events -> one write plan: latest row per key, every citizen and facility, outcomes in order."""

from __future__ import annotations

from hub.warehouse.errors import MappingError
from hub.warehouse.mapping import Rows
from hub.warehouse.plan import plan_events
from tests.unit.test_warehouse_mapping import CID, event


def encounter(event_id: str, occurred_at: str, status: str, citizen_id: str = CID) -> bytes:
    return event("encounter.recorded", {"resourceType": "Encounter", "id": "enc-1", "status": status,
                                        "class": {"code": "IMP"}},
                 event_id=event_id, occurred_at=occurred_at, citizen_id=citizen_id).to_json()


class TestPlan:
    def test_outcomes_answer_each_event_in_order(self) -> None:
        """Rows, None (skipped type) or the MappingError, one per input, in input order."""
        values = [encounter("ev-1", "2026-11-22T08:25:00+07:00", "in-progress"), b"{not json",
                  event("appointment.recorded", {"resourceType": "Appointment", "id": "a"}).to_json(),
                  event("encounter.recorded", {"resourceType": "Encounter"}).to_json()]
        outcomes, plan = plan_events(values)
        assert [type(o) for o in outcomes] == [Rows, MappingError, type(None), MappingError]
        assert plan.fact_count == 1 and plan.citizen_ids == {CID} and plan.facilities == {"79048"}

    def test_the_latest_version_of_a_resource_wins_whatever_the_order(self) -> None:
        """A01 then A08 of one encounter, in either order: the plan keeps the later event, as the database does."""
        admit = encounter("ev-a01", "2026-11-22T08:25:00+07:00", "in-progress")
        discharge = encounter("ev-a08", "2026-11-22T16:55:00+07:00", "finished")
        for values in ([admit, discharge], [discharge, admit], [admit, discharge, admit]):
            _, plan = plan_events(values)
            [(rid, row)] = plan.facts["fact_encounter"].items()
            assert (rid, row[1], row[6]) == ("enc-1", "ev-a08", "finished")

    def test_same_time_ties_break_on_event_id(self) -> None:
        a = encounter("ev-a", "2026-11-22T08:25:00+07:00", "planned")
        b = encounter("ev-b", "2026-11-22T08:25:00+07:00", "arrived")
        assert plan_events([a, b])[1].facts == plan_events([b, a])[1].facts

    def test_merges_are_kept_and_their_citizens_seen(self) -> None:
        merged = event("citizen.merged", {"resourceType": "Patient", "id": CID, "link": [
            {"type": "replaces", "other": {"reference": "Patient/c-old"}}]}).to_json()
        _, plan = plan_events([merged])
        assert [(kind, m[:2]) for kind, m in plan.links] == [("merge", ("c-old", CID))]
        assert plan.citizen_ids == {CID, "c-old"} and plan.fact_count == 0 and bool(plan)

    def test_merges_and_unmerges_keep_their_event_order(self) -> None:
        from hub.identity.events import merged_event, unmerged_event

        at = "2026-11-23T10:00:00+07:00"
        values = [merged_event(CID, "c-old", "decision-1", at, at).to_json(),
                  unmerged_event(CID, "c-old", "decision-2", at, at).to_json(),
                  merged_event(CID, "c-old", "decision-3", at, at).to_json()]
        outcomes, plan = plan_events(values)
        assert all(isinstance(o, Rows) for o in outcomes)
        assert [(kind, link[:2]) for kind, link in plan.links] == [
            ("merge", ("c-old", CID)), ("unmerge", ("c-old", CID)), ("merge", ("c-old", CID))]
        assert plan.facilities == set(), "a steward's decision names no facility, and none is invented"

    def test_sensitive_events_are_withheld_unless_entitled(self) -> None:
        """An HIV-flagged diagnosis is not warehouse material by default; an entitled warehouse keeps it, flag
        and all. An event with two flags needs both."""
        hiv = event("condition.recorded", {"resourceType": "Condition", "id": "c-hiv",
                                           "code": {"coding": [{"code": "B24"}]}}, sensitivity=("hiv",)).to_json()
        both = event("condition.recorded", {"resourceType": "Condition", "id": "c-2"},
                     sensitivity=("hiv", "mental-health")).to_json()
        outcomes, plan = plan_events([hiv, both])
        assert outcomes == [None, None] and not plan
        outcomes, plan = plan_events([hiv, both], entitled=frozenset({"hiv"}))
        assert isinstance(outcomes[0], Rows) and outcomes[1] is None
        assert plan.facts["fact_diagnosis"]["c-hiv"][7] == ["hiv"]

    def test_an_empty_plan_is_false(self) -> None:
        assert not plan_events([b"[]"])[1]
