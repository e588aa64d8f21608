"""Merging and unmerging records (hub.record.merge): pure functions, no services.

Equality after an unmerge is ``content`` equality: the record without version, updated_at and the merge
bookkeeping (versions keep growing so readers see a newer record)."""

from __future__ import annotations

import itertools

import orjson

from hub.envelope import SYSTEM_CCCD, Envelope, Identifier, Source, Subject, mrn_system
from hub.identity.events import merged_event, unmerged_event
from hub.record.apply import apply, apply_content, empty_record
from hub.record.event import read_event
from hub.record.merge import MERGE_KEY, apply_to_group, attribute, combine, content, merge, unmerge

HUNG, LAN, MAI = "cz-hung", "cz-lan", "cz-mai"
CCCD_SHARED = "079090001234"


def patient(cid: str, eid: str, at: str, family: str, given: str, *, phone: str, mrn: tuple[str, str],
            cccd: str = CCCD_SHARED) -> Envelope:
    idents = (Identifier(SYSTEM_CCCD, cccd), Identifier(mrn_system(mrn[0]), mrn[1]))
    payload = {"resourceType": "Patient", "id": eid,
               "identifier": [{"system": i.system, "value": i.value} for i in idents],
               "name": [{"family": family, "given": given.split(), "text": f"{family} {given}"}],
               "gender": "male", "birthDate": "1990-05-17", "telecom": [{"system": "phone", "value": phone}]}
    return Envelope(eid, "patient.updated", at, at, Source("hl7v2", mrn[0], eid),
                    Subject(idents, family, tuple(given.split()), "1990-05-17", "male"), payload, citizen_id=cid)


def encounter(cid: str, eid: str, at: str, *, mrn: tuple[str, str], sensitivity: tuple[str, ...] = ()) -> Envelope:
    idents = (Identifier(mrn_system(mrn[0]), mrn[1]),)
    payload = {"resourceType": "Encounter", "id": f"enc-{eid}", "status": "in-progress",
               "class": {"code": "IMP"}, "period": {"start": at}}
    return Envelope(eid, "encounter.recorded", at, at, Source("hl7v2", mrn[0], eid), Subject(idents), payload,
                    sensitivity=sensitivity, citizen_id=cid)


def observation(cid: str, eid: str, at: str, *, mrn: tuple[str, str], value: float) -> Envelope:
    payload = {"resourceType": "Observation", "id": f"obs-{eid}", "status": "final",
               "code": {"text": "Glucose"}, "valueQuantity": {"value": value, "unit": "mmol/L"}}
    return Envelope(eid, "observation.recorded", at, at, Source("hl7v2", mrn[0], eid),
                    Subject((Identifier(mrn_system(mrn[0]), mrn[1]),)), payload, citizen_id=cid)


def build(events: list[Envelope], record: dict | None = None) -> dict:
    for event in events:
        record, _ = apply(record, event)
    return record


CHO_RAY, TU_DU = ("79001", "CR-1001"), ("79033", "TD-2002")
HUNG_EVENTS = [patient(HUNG, "h1", "2026-01-05T08:00:00+07:00", "Nguyễn", "Văn Hùng", phone="0903111222", mrn=CHO_RAY),
               encounter(HUNG, "h2", "2026-01-05T09:00:00+07:00", mrn=CHO_RAY)]
LAN_EVENTS = [patient(LAN, "l1", "2026-02-10T08:00:00+07:00", "Nguyễn", "Văn Hùng", phone="0988777666", mrn=TU_DU),
              observation(LAN, "l2", "2026-02-10T10:00:00+07:00", mrn=TU_DU, value=6.1),
              encounter(LAN, "l3", "2026-02-11T09:00:00+07:00", mrn=TU_DU, sensitivity=("hiv",))]
MERGE = merged_event(HUNG, LAN, "review-1", "2026-03-01T08:00:00+07:00", "2026-03-01T08:00:01+07:00")
UNMERGE = unmerged_event(HUNG, LAN, "review-2", "2026-03-02T08:00:00+07:00", "2026-03-02T08:00:01+07:00")


def merged_pair() -> tuple[dict, dict, dict, dict]:
    hung, lan = build(HUNG_EVENTS), build(LAN_EVENTS)
    survivor, redirect = merge(hung, HUNG, lan, LAN, HUNG, MERGE)
    return hung, lan, survivor, redirect


class TestCombine:
    def test_combining_two_records_equals_applying_all_their_events_in_any_order(self) -> None:
        """The join is the same rule as apply, so merge results do not depend on arrival order."""
        everything = [e.with_citizen(HUNG) for e in HUNG_EVENTS + LAN_EVENTS]
        joined = build(HUNG_EVENTS)
        combine(joined, build(LAN_EVENTS))
        for order in itertools.permutations(everything):
            assert content(build(list(order))) == content(joined)

    def test_newest_demographics_win_and_identifiers_are_a_sorted_union(self) -> None:
        joined = build(HUNG_EVENTS)
        combine(joined, build(LAN_EVENTS))
        assert joined["demographics"]["telecom"] == [{"system": "phone", "value": "0988777666"}]
        assert [i["value"] for i in joined["identifiers"]] == sorted(
            [i["value"] for i in joined["identifiers"]], key=lambda v: next(
                i["system"] for i in joined["identifiers"] if i["value"] == v))
        assert {i["value"] for i in joined["identifiers"]} == {CCCD_SHARED, "CR-1001", "TD-2002"}


class TestMerge:
    def test_merge_combines_every_section_and_leaves_a_redirect(self) -> None:
        hung, lan, survivor, redirect = merged_pair()
        assert survivor["citizen_id"] == HUNG and survivor["version"] == hung["version"] + 1
        assert set(survivor["encounters"]) == set(hung["encounters"]) | set(lan["encounters"])
        assert survivor["observations"] == lan["observations"]
        assert redirect == {"citizen_id": LAN, "merged_into": HUNG, "merged_by": MERGE.event_id,
                            "version": lan["version"] + 1, "updated_at": MERGE.recorded_at}

    def test_a_retired_citizen_already_in_the_group_or_retired_elsewhere_changes_nothing(self) -> None:
        _, _, survivor, redirect = merged_pair()
        assert merge(survivor, HUNG, redirect, LAN, HUNG, MERGE) is None  # the same merge again
        back = merged_event(LAN, HUNG, "review-9", "2026-03-05T08:00:00+07:00", "2026-03-05T08:00:00+07:00")
        assert merge(survivor, HUNG, redirect, LAN, LAN, back) is None  # a merge back
        mai = build([patient(MAI, "m1", "2026-01-01T08:00:00+07:00", "Lê", "Thị Mai", phone="1", mrn=CHO_RAY)])
        assert merge(mai, MAI, redirect, LAN, MAI, MERGE) is None  # Lan already belongs to Hùng's group

    def test_a_citizen_with_no_record_yet_can_be_merged_and_unmerged(self) -> None:
        hung = build(HUNG_EVENTS)
        survivor, redirect = merge(hung, HUNG, None, MAI, HUNG, MERGE)
        assert content(survivor) == content(hung)
        kept, back = unmerge(survivor, MAI, redirect, UNMERGE)
        assert content(kept) == content(hung) and content(back) == content(empty_record(MAI))


class TestUnmerge:
    def test_merge_then_unmerge_restores_both_records(self) -> None:
        hung, lan, survivor, redirect = merged_pair()
        kept, back = unmerge(survivor, LAN, redirect, UNMERGE)
        assert content(kept) == content(hung) and content(back) == content(lan)
        assert MERGE_KEY not in kept and MERGE_KEY not in back
        assert kept["version"] == survivor["version"] + 1 and back["version"] == redirect["version"] + 1

    def test_events_after_the_merge_go_back_to_the_citizen_they_came_from(self) -> None:
        """By the retired id the MPI gave, or by the facility MRN only the restored citizen's part holds."""
        hung, lan, survivor, redirect = merged_pair()
        late_for_lan = observation(LAN, "l9", "2026-03-01T11:00:00+07:00", mrn=TU_DU, value=7.4)
        from_lans_hospital = encounter(HUNG, "l10", "2026-03-01T12:00:00+07:00", mrn=TU_DU)
        hungs_own = encounter(HUNG, "h9", "2026-03-01T13:00:00+07:00", mrn=CHO_RAY)
        only_cccd = Envelope("x1", "encounter.recorded", "2026-03-01T14:00:00+07:00", "2026-03-01T14:00:00+07:00",
                             Source("xml130", "79999", "x1"), Subject((Identifier(SYSTEM_CCCD, CCCD_SHARED),)),
                             {"resourceType": "Encounter", "id": "enc-x1", "status": "finished"}, citizen_id=HUNG)
        for event in (late_for_lan, from_lans_hospital, hungs_own, only_cccd):
            assert apply_to_group(survivor, event)
        assert [attribute(survivor, e) for e in (late_for_lan, from_lans_hospital, hungs_own, only_cccd)] == [
            LAN, LAN, HUNG, HUNG]
        kept, back = unmerge(survivor, LAN, redirect, UNMERGE)
        assert content(back) == content(build([late_for_lan.with_citizen(LAN), from_lans_hospital.with_citizen(LAN)],
                                              lan))
        assert content(kept) == content(build([hungs_own, only_cccd], hung))

    def test_an_event_the_mpi_names_a_member_for_goes_back_to_them_whatever_order_events_arrived_in(self) -> None:
        """A record role catching up a backlog reads partitions at its own pace: the merge, then a survivor's
        event from Lan's hospital, and only then Lan's own events. member_id still gives the event back to Lan;
        her identifiers alone could not, as her part held none of them yet."""
        hung = build(HUNG_EVENTS)
        from_lans_hospital = encounter(HUNG, "l10", "2026-03-01T12:00:00+07:00", mrn=TU_DU)
        with_member = read_event(orjson.loads(from_lans_hospital.with_citizen(HUNG, LAN).to_json()))  # as read live
        for event, expected_with_lan in ((with_member, True), (from_lans_hospital, False)):
            survivor, redirect = merge(hung, HUNG, None, LAN, HUNG, MERGE)  # Lan's events not applied yet
            assert apply_to_group(survivor, event)
            for own in LAN_EVENTS:
                apply_to_group(survivor, own)
            kept, back = unmerge(survivor, LAN, redirect, UNMERGE)
            lans = build(LAN_EVENTS + [from_lans_hospital.with_citizen(LAN)]) if expected_with_lan else build(
                LAN_EVENTS)
            assert content(back) == content(lans)
            assert content(kept) == content(hung if expected_with_lan else build([from_lans_hospital], hung))

    def test_the_survivors_combined_view_stays_the_join_of_its_parts(self) -> None:
        _, _, survivor, _ = merged_pair()
        apply_to_group(survivor, patient(HUNG, "h5", "2026-04-01T08:00:00+07:00", "Nguyễn", "Văn Hùng",
                                         phone="0909000111", mrn=CHO_RAY))
        parts = survivor[MERGE_KEY]["parts"]
        joined = dict(parts[HUNG], identifiers=list(parts[HUNG]["identifiers"]))
        combine(joined, parts[LAN])
        assert content(survivor) == content(joined)

    def test_a_chain_splits_at_the_named_link_and_keeps_what_was_merged_through_it(self) -> None:
        """Mai -> Lan, then Lan -> Hùng; unmerging Lan from Hùng gives Lan back with Mai still inside."""
        mai_events = [patient(MAI, "m1", "2026-01-20T08:00:00+07:00", "Lê", "Thị Mai", phone="0912345678",
                              mrn=("79555", "BD-3003"), cccd="079185004321")]
        hung, lan, mai = build(HUNG_EVENTS), build(LAN_EVENTS), build(mai_events)
        first = merged_event(LAN, MAI, "a40-1", "2026-02-20T08:00:00+07:00", "2026-02-20T08:00:00+07:00")
        lan_group, mai_redirect = merge(lan, LAN, mai, MAI, LAN, first)
        survivor, lan_redirect = merge(hung, HUNG, lan_group, LAN, HUNG, MERGE)
        assert set(survivor[MERGE_KEY]["parts"]) == {HUNG, LAN, MAI}
        kept, back = unmerge(survivor, LAN, lan_redirect, UNMERGE)
        assert content(kept) == content(hung) and content(back) == content(lan_group)
        assert back[MERGE_KEY]["via"] == {MAI: LAN}
        undo_first = unmerged_event(LAN, MAI, "review-3", "2026-03-03T08:00:00+07:00", "2026-03-03T08:00:00+07:00")
        lan_alone, mai_back = unmerge(back, MAI, mai_redirect, undo_first)
        assert content(lan_alone) == content(lan) and content(mai_back) == content(mai)

    def test_unmerging_someone_not_in_the_group_changes_nothing(self) -> None:
        hung = build(HUNG_EVENTS)
        assert unmerge(hung, LAN, None, UNMERGE) is None
        _, _, survivor, _ = merged_pair()
        assert unmerge(survivor, HUNG, None, UNMERGE) is None  # the survivor cannot be split from itself


def test_apply_content_ignores_event_types_it_does_not_keep() -> None:
    record = empty_record(HUNG)
    assert not apply_content(record, MERGE) and record == empty_record(HUNG)
