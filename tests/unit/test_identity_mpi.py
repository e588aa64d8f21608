"""The streaming MPI's pure parts: resolution decisions over an in-memory store, the packed record, the
store's operations and the identifier forms links are made on."""

from __future__ import annotations

import orjson
import pytest

from hub.envelope import (SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, Envelope, Identifier,
                          Source, Subject, mrn_system)
from hub.errors import IdentityError
from hub.identity.indexed import unpack, with_citizen
from hub.identity.model import LINK, NEW, REVIEW, MatchSettings
from hub.identity.mpi_store import (MemoryMpiStore, block_slot, block_slots, citizen_slot, link_slot, record_slot,
                                   split_refs)
from hub.identity.resolve import DLQ, Resolver, canonical_identifier, identity_key
from hub.identity.review import repoint_ops

SECRET = b"unit-secret"
HOME = "12 Lê Lợi, Phường Bến Thành, TP.HCM"


def ev(family: str, given: tuple[str, ...], dob: str, sex: str, facility: str = "", mrn: str = "", *,
       cccd: str = "", phone: str = "", address: str = "", old: tuple[tuple[str, str], ...] = (),
       kind: str = "patient.updated", occurred: str = "2026-11-20T09:00:00+07:00", eid: str = "") -> Envelope:
    idents = ([Identifier(mrn_system(facility), mrn)] if mrn else []) + \
        ([Identifier(SYSTEM_CCCD, cccd)] if cccd else [])
    payload = {"resourceType": "Patient",
               "identifier": [{"system": i.system, "value": i.value} for i in idents]
               + [{"use": "old", "system": s, "value": v} for s, v in old],
               "telecom": [{"system": "phone", "value": phone}] if phone else [],
               "address": [{"text": address}] if address else []}
    eid = eid or f"e-{facility}-{mrn}-{family}-{dob}-{kind}"
    return Envelope(eid, kind, occurred, occurred, Source("hl7v2", facility or "79000", eid),
                    Subject(tuple(idents), family, given, dob, sex), payload)


async def one(r: Resolver, e: Envelope) -> tuple[str, str]:
    res = await r.resolve([e])
    [out], [outcome] = res.results, res.outcomes
    if isinstance(out, Exception):
        raise out
    return out.citizen_id, outcome


class TestResolution:
    async def test_one_person_at_two_hospitals_links_on_demographics(self) -> None:
        """Different MRNs, no CCCD, diacritics dropped by one source: one citizen."""
        r = Resolver(MemoryMpiStore(), SECRET)
        a = await one(r, ev("Trần", ("Thị", "Lan"), "1992-03-12", "female", "79048", "A1", phone="0912345678",
                            address=HOME))
        b = await one(r, ev("TRAN", ("THI", "LAN"), "1992-03-12", "female", "79100", "B7", phone="0912345678",
                            address="12 Le Loi, P. Ben Thanh"))
        assert a[1] == NEW and b == (a[0], LINK)

    async def test_a_newborn_under_the_mothers_name_and_cccd_is_never_the_mother(self) -> None:
        r = Resolver(MemoryMpiStore(), SECRET)
        mom = await one(r, ev("Nguyễn", ("Thị", "Hoa"), "1995-06-02", "female", "79048", "M1", cccd="079195001234",
                              phone="0987654321", address=HOME))
        kid = await one(r, ev("Con của Nguyễn", ("Thị", "Hoa"), "2026-11-19", "male", "79048", "K1",
                              cccd="079195001234", phone="0987654321", address=HOME,
                              occurred="2026-11-19T10:00:00+07:00"))
        assert kid[0] != mom[0] and kid[1] == NEW

    async def test_one_cccd_claimed_by_two_different_people_goes_to_review(self) -> None:
        r = Resolver(MemoryMpiStore(), SECRET)
        tam = await one(r, ev("Lê", ("Văn", "Tâm"), "1970-05-01", "male", "79001", "X1", cccd="079070123456"))
        res = await r.resolve([ev("Phạm", ("Văn", "Hùng"), "1970-11-20", "male", "79002", "Y1", cccd="079070123456")])
        assert res.outcomes == [REVIEW] and res.results[0].citizen_id != tam[0]
        [p] = res.proposals
        assert (p.existing, p.other) == (tam[0], res.results[0].citizen_id)
        assert p.reason == "identifier claimed by two people" and "given_name_differs" in p.decision.flags
        # the same second person again, elsewhere: linked to the provisional citizen, not the first claimant
        again = await one(r, ev("Phạm", ("Văn", "Hùng"), "1970-11-20", "male", "79003", "Z1", cccd="079070123456"))
        assert again == (res.results[0].citizen_id, LINK)

    async def test_a_shared_cccd_meets_the_vetoes_even_when_every_block_is_too_big_to_read(self) -> None:
        """Blocks over max_block_size are skipped: the citizen a strong link names is scored all the same, so
        the second claimant is a review case, never silently the first person (a live run after a backfill's
        population found it)."""
        r = Resolver(MemoryMpiStore(), SECRET, MatchSettings().with_(max_block_size=0))
        tam = await one(r, ev("Lê", ("Văn", "Tâm"), "1970-05-01", "male", "79001", "X1", cccd="079070123456"))
        res = await r.resolve([ev("Phạm", ("Văn", "Hùng"), "1970-11-20", "male", "79002", "Y1", cccd="079070123456")])
        assert res.outcomes == [REVIEW] and res.results[0].citizen_id != tam[0]
        assert [p.reason for p in res.proposals] == ["identifier claimed by two people"]
        # the same person again at another hospital still links on the CCCD
        assert await one(r, ev("Lê", ("Văn", "Tâm"), "1970-05-01", "male", "79003", "Z1",
                               cccd="079070123456")) == (tam[0], LINK)

    async def test_a_record_holding_two_citizens_identifiers_is_proposed_for_review_not_merged(self) -> None:
        """Two citizens who may be one person are never merged silently by a third record."""
        r = Resolver(MemoryMpiStore(), SECRET)
        a = await one(r, ev("Lê", ("Văn", "Tâm"), "1970-05-01", "male", "79001", "A1", cccd="079070123456"))
        bhxh = Identifier(SYSTEM_BHXH, "7912345678")
        b_event = ev("Lê", ("Văn", "Tâm"), "1970-05-01", "male", "79002", "B1")
        b_event = Envelope(b_event.event_id, b_event.type, b_event.occurred_at, b_event.recorded_at, b_event.source,
                           Subject((*b_event.subject.identifiers, bhxh), "Lê", ("Văn", "Tâm"), "1970-05-01", "male"),
                           b_event.payload)
        b = await one(r, b_event)
        assert a[0] != b[0]  # nothing in common but name and birth date, at two places
        both = ev("Le", ("Van", "Tam"), "1970-05-01", "male", "79003", "C1", cccd="079070123456")
        both = Envelope(both.event_id, both.type, both.occurred_at, both.recorded_at, both.source,
                        Subject((*both.subject.identifiers, bhxh), "Le", ("Van", "Tam"), "1970-05-01", "male"),
                        both.payload)
        res = await r.resolve([both])
        assert res.results[0].citizen_id in (a[0], b[0])
        assert {(p.existing, p.other) for p in res.proposals} == {(a[0], b[0])}

    async def test_a_cccd_contradicting_its_record_is_no_link_and_is_flagged(self) -> None:
        """079070… says a man born in 1970: on a woman born in 1988 it neither links nor mints."""
        r = Resolver(MemoryMpiStore(), SECRET)
        tam = await one(r, ev("Lê", ("Văn", "Tâm"), "1970-05-01", "male", "79001", "X1", cccd="079070123456"))
        res = await r.resolve([ev("Phạm", ("Thị", "Mai"), "1988-11-20", "female", "79002", "Y1",
                                  cccd="079070123456")])
        assert res.outcomes == [NEW] and res.results[0].citizen_id != tam[0]
        [raw] = await r.store.get([record_slot(next(iter(_refs(r.store, res.results[0].citizen_id))))])
        assert {"cccd_sex", "cccd_birth_year"} <= set(unpack(raw).p.flags)

    async def test_a_reissued_cccd_keeps_the_old_number_linking(self) -> None:
        r = Resolver(MemoryMpiStore(), SECRET)
        first = await one(r, ev("Hoàng", ("Minh", "Đức"), "1980-01-15", "male", "79048", "H1", cccd="079080111111"))
        renewed = await one(r, ev("Hoàng", ("Minh", "Đức"), "1980-01-15", "male", "79048", "H1",
                                  cccd="079080222222", old=((SYSTEM_CCCD, "079080111111"),)))
        assert renewed == (first[0], LINK)
        for number in ("079080111111", "079080222222"):  # both numbers name the citizen; only an id, no name
            by_id = await one(r, Envelope(f"x{number}", "observation.recorded", "2026-11-20", "2026-11-20",
                                          Source("hl7v2", "79100", "x"), Subject((Identifier(SYSTEM_CCCD, number),)),
                                          {"resourceType": "Observation"}))
            assert by_id == (first[0], LINK)

    async def test_an_mrn_alone_resolves_by_its_link_or_mints_a_citizen_for_it(self) -> None:
        r = Resolver(MemoryMpiStore(), SECRET)
        known = await one(r, ev("Đặng", ("Thu", "Hà"), "1999-09-09", "female", "79048", "BN9"))
        lab = Envelope("lab1", "observation.recorded", "2026-11-20", "2026-11-20", Source("hl7v2", "79048", "l"),
                       Subject((Identifier(mrn_system("79048"), "BN9"),)), {"resourceType": "Observation"})
        assert await one(r, lab) == (known[0], LINK)
        unknown = Envelope("lab2", "observation.recorded", "2026-11-20", "2026-11-20", Source("hl7v2", "79048", "l"),
                           Subject((Identifier(mrn_system("79048"), "BN10"),)), {"resourceType": "Observation"})
        minted = await one(r, unknown)
        assert minted[1] == NEW and await one(r, unknown) == (minted[0], LINK)

    async def test_nothing_to_resolve_by_is_an_identity_error_and_the_batch_goes_on(self) -> None:
        r = Resolver(MemoryMpiStore(), SECRET)
        nobody = Envelope("n", "observation.recorded", "x", "x", Source("hl7v2", "79048", "n"), Subject(), {})
        res = await r.resolve([nobody, ev("Võ", ("Thị", "Sáu"), "1990-01-01", "female", "79048", "V1")])
        assert isinstance(res.results[0], IdentityError) and "no identifiers and no demographics" in str(res.results[0])
        assert res.outcomes == [DLQ, NEW]

    async def test_two_events_of_a_new_person_in_one_batch_get_one_citizen(self) -> None:
        """The batch's own writes are visible to its later events (an overlay), before Redis has them."""
        r = Resolver(MemoryMpiStore(), SECRET)
        res = await r.resolve([
            ev("Bùi", ("Quang", "Vinh"), "1975-07-07", "male", "79048", "Q1", phone="0903111222", address=HOME),
            ev("BUI", ("QUANG", "VINH"), "1975-07-07", "male", "79100", "Q2", phone="0903111222", address=HOME),
        ])
        assert res.outcomes == [NEW, LINK] and res.results[0].citizen_id == res.results[1].citizen_id

    async def test_a_replayed_batch_resolves_the_same_and_writes_nothing_new(self) -> None:
        store = MemoryMpiStore()
        batch = [ev("Lý", ("Thị", "Kim"), "1966-06-06", "female", "79048", "L1", cccd="079166000111"),
                 ev("Phan", ("Văn", "Trị"), "1958-08-08", "male", "79100", "T1")]
        first = await Resolver(store, SECRET).resolve(batch)
        before = dict(store.data)
        again = await Resolver(store, SECRET).resolve(batch)
        assert [e.citizen_id for e in again.results] == [e.citizen_id for e in first.results]
        assert store.data == before

    async def test_an_a40_names_the_retired_citizen_to_merge(self) -> None:
        r = Resolver(MemoryMpiStore(), SECRET)
        old = await one(r, ev("Võ", ("Thị", "Thu"), "1960-01-01", "female", "79048", "OLD1"))
        new = await one(r, ev("Võ", ("Thị", "Thu"), "1961-07-15", "female", "79048", "NEW1"))
        assert old[0] != new[0]
        a40 = ev("Võ", ("Thị", "Thu"), "1961-07-15", "female", "79048", "NEW1", kind="patient.merged",
                 old=((mrn_system("79048"), "OLD1"),), eid="a40-1")
        res = await r.resolve([a40])
        assert res.results[0].citizen_id == new[0]
        assert [(m.survivor, m.retired, m.cause) for m in res.merges] == [(new[0], old[0], "a40-1")]

    async def test_an_a40_whose_survivor_is_new_files_it_under_the_retired_citizen(self) -> None:
        r = Resolver(MemoryMpiStore(), SECRET)
        old = await one(r, ev("Mai", ("Văn", "Lộc"), "1950-03-03", "male", "79048", "OLD2"))
        a40 = ev("Mai", ("Văn", "Lộc"), "1950-03-03", "male", "79048", "NEW2", kind="patient.merged",
                 old=((mrn_system("79048"), "OLD2"),), eid="a40-2")
        res = await r.resolve([a40])
        assert res.results[0].citizen_id == old[0] and res.merges == []


    async def test_a_registry_rows_immunization_takes_its_patients_citizen_without_a_record_of_its_own(self) -> None:
        """Same source row and subject as the batch's Patient event: that citizen, outcome link, one record."""
        r = Resolver(MemoryMpiStore(), SECRET)
        subject = Subject((Identifier(SYSTEM_CCCD, "079190000123"),), "Đặng", ("Thị", "Ngọc"), "1990-02-03", "female")
        row = Source("registry", "79048", "R-1")
        patient = Envelope("p-1", "patient.updated", "2026-03-01", "2026-03-01", row, subject,
                           {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "0912000111"}],
                            "address": [{"text": HOME}]})
        shot = Envelope("i-1", "immunization.recorded", "2026-03-01", "2026-03-01", row, subject,
                        {"resourceType": "Immunization"})
        res = await r.resolve([patient, shot])
        assert res.outcomes == [NEW, LINK]
        assert res.results[0].citizen_id == res.results[1].citizen_id
        assert len(_refs(r.store, res.results[0].citizen_id)) == 1

    async def test_an_event_from_another_source_row_is_matched_on_its_own(self) -> None:
        """Only the Patient's own row is followed: another row's immunization is a record of its own."""
        r = Resolver(MemoryMpiStore(), SECRET)
        subject = Subject((Identifier(SYSTEM_CCCD, "079190000124"),), "Đặng", ("Thị", "Ngọc"), "1990-02-03", "female")
        patient = Envelope("p-2", "patient.updated", "2026-03-01", "2026-03-01", Source("registry", "79048", "R-2"),
                           subject, {"resourceType": "Patient", "address": [{"text": HOME}]})
        shot = Envelope("i-3", "immunization.recorded", "2026-03-01", "2026-03-01", Source("registry", "79048", "R-3"),
                        subject, {"resourceType": "Immunization"})
        res = await r.resolve([patient, shot])
        assert res.results[0].citizen_id == res.results[1].citizen_id
        assert len(_refs(r.store, res.results[0].citizen_id)) == 2

    async def test_a_batch_ending_between_a_rows_two_events_still_gives_the_second_its_patients_citizen(
            self) -> None:
        """The import's Patient ends one batch, its Immunization starts the next: followed, not matched or filed;
        the batch run again answers the same."""
        r = Resolver(MemoryMpiStore(), SECRET)
        subject = Subject((Identifier(SYSTEM_CCCD, "079190000125"),), "Phan", ("Thị", "Yến"), "1990-07-08", "female")
        source = Source("registry", "79048", "R-9")
        patient = Envelope("p-9", "patient.updated", "2026-03-01", "2026-03-01", source, subject,
                           {"resourceType": "Patient", "address": [{"text": HOME}]})
        shot = Envelope("i-9", "immunization.recorded", "2026-03-01", "2026-03-01", source, subject,
                        {"resourceType": "Immunization"})
        first = await r.resolve([patient])
        before = dict(r.store.data)
        for _ in range(2):
            second = await r.resolve([shot])
            assert second.outcomes == [LINK]
            assert second.results[0].citizen_id == first.results[0].citizen_id
            assert r.store.data == before  # nothing filed for it
        # A restarted worker remembers no Patient: the Immunization is matched (here by its CCCD) and filed.
        again = await Resolver(r.store, SECRET).resolve([shot])
        assert again.results[0].citizen_id == first.results[0].citizen_id and r.store.data != before

    async def test_a_known_patients_encounter_resolves_by_its_mrn_without_reading_blocks(self) -> None:
        store = _CountingStore()
        r = Resolver(store, SECRET)
        first = await one(r, ev("Võ", ("Thị", "Sáu"), "1988-04-09", "female", "79048", "VS1", phone="0903111222",
                                address=HOME))
        store.read.clear()
        visit = ev("Võ", ("Thị", "Sáu"), "1988-04-09", "female", "79048", "VS1", phone="0903111222", address=HOME,
                   kind="encounter.recorded", eid="enc-1")
        visit = Envelope(visit.event_id, visit.type, visit.occurred_at, visit.recorded_at, visit.source,
                         visit.subject, {"resourceType": "Encounter", "id": "enc-1", "status": "finished"})
        assert await one(r, visit) == (first[0], LINK)
        assert store.read and not any(key.startswith("b:") for _, key, _ in store.read)

    async def test_a_patient_sent_again_unchanged_reads_no_blocks_and_writes_nothing(self) -> None:
        store = _CountingStore()
        r = Resolver(store, SECRET)
        event = ev("Đinh", ("Công", "Tráng"), "1975-08-19", "male", "79048", "DT1", phone="0913222333",
                   address=HOME, cccd="079075001122")
        first = await one(r, event)
        before = dict(store.data)
        store.read.clear()
        assert await one(r, event) == (first[0], LINK)
        assert store.read and not any(key.startswith("b:") for _, key, _ in store.read)
        assert store.data == before

    async def test_an_encounter_whose_mrn_is_not_linked_yet_is_still_matched(self) -> None:
        """Its blocks are read in a round trip of their own: the candidate is found by name, birth date and sex
        (all an encounter's subject says), too little to link, so a review case against the known citizen."""
        store = _CountingStore()
        r = Resolver(store, SECRET)
        known = await one(r, ev("Huỳnh", ("Minh", "Trí"), "1979-12-30", "male", "79048", "H1", phone="0938777666",
                                address=HOME))
        visit = ev("Huỳnh", ("Minh", "Trí"), "1979-12-30", "male", "79100", "NEW-7", phone="0938777666",
                   address=HOME, kind="encounter.recorded", eid="enc-2")
        visit = Envelope(visit.event_id, visit.type, visit.occurred_at, visit.recorded_at, visit.source,
                         visit.subject, {"resourceType": "Encounter", "id": "enc-2", "status": "finished"})
        store.read.clear()
        res = await r.resolve([visit])
        assert res.outcomes == [REVIEW] and res.results[0].citizen_id != known[0]
        assert [(p.existing, p.other) for p in res.proposals] == [(known[0], res.results[0].citizen_id)]
        assert any(key.startswith("b:") for _, key, _ in store.read)


class _CountingStore(MemoryMpiStore):
    """The in-memory store, remembering every slot read."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list = []

    async def get(self, slots):
        self.read += slots
        return await super().get(slots)

def _refs(store: MemoryMpiStore, cid: str) -> list[str]:
    _, key, field = citizen_slot(cid)
    raw = next(v for (k, f), v in store.data.items() if k.endswith(key) and f == field)
    return [raw.decode()[i:i + 16] for i in range(0, len(raw), 16)]


class TestStore:
    def test_block_slots_are_block_slot_of_each_key(self) -> None:
        """The batched form names the same Redis fields as the one-key form (the index layout is unchanged)."""
        keys = [("name_dob", "n|nguyen thi hoa|1995|2|6"), ("phone_year", "p|0912345678|1995"), ("cccd", "079195001234")]
        assert block_slots(SECRET, keys) == [block_slot(SECRET, rule, key) for rule, key in keys]

    async def test_a_link_is_first_writer_wins(self) -> None:
        store = MemoryMpiStore()
        slot = link_slot(identity_key(SECRET, Identifier(SYSTEM_CCCD, "079090001234")))
        assert await store.write([(slot, "L", "cz-a"), (slot, "L", "cz-b")]) == [None, b"cz-a"]
        assert await store.get([slot]) == [b"cz-a"]

    async def test_append_keeps_each_ref_once_and_compare_and_set_only_on_a_match(self) -> None:
        store = MemoryMpiStore()
        slot = block_slot(SECRET, "phone", "0912345678")
        await store.write([(slot, "A", "a" * 16), (slot, "A", "b" * 16), (slot, "A", "a" * 16)])
        assert await store.get([slot]) == [b"a" * 16 + b"b" * 16]
        link = link_slot("ab" * 16)
        await store.write([(link, "S", "cz-old"), (link, "C", "cz-other|cz-new")])
        assert await store.get([link]) == [b"cz-old"]
        await store.write([(link, "C", "cz-old|cz-new")])
        assert await store.get([link]) == [b"cz-new"]

    def test_key_names_hold_no_identifier_or_name(self) -> None:
        cccd = "079090001234"
        for shard, key, field in (link_slot(identity_key(SECRET, Identifier(SYSTEM_CCCD, cccd))),
                                  block_slot(SECRET, "name_year", "nguyen van an|1990")):
            assert cccd not in key + field and "nguyen" not in key + field and 0 <= shard < 16

    def test_a_packed_record_unpacks_to_the_same_and_changes_citizen(self) -> None:
        from hub.identity.indexed import Indexed
        from hub.identity.records import SourceRecord, prepare

        rec = Indexed("cz-a", prepare(SourceRecord("r1", name="Nguyễn Văn An", birth_date="1990-05-12", sex="M",
                                                    personal_id="079090001234", phone="0903123456")),
                      ("k1",), "Nguyễn Văn An", "1990-05-12")
        back = unpack(rec.pack())
        assert back.body() == rec.body() and back.citizen_id == "cz-a" and back.origin == ""
        assert unpack(with_citizen(rec.pack(), "cz-b")).citizen_id == "cz-b"

    def test_a_moved_record_remembers_where_it_was_filed_until_it_is_filed_there_again(self) -> None:
        """A merged into B, B into C, then both unmerges: the record of A names A as its origin while away."""
        from hub.identity.indexed import Indexed
        from hub.identity.records import SourceRecord, prepare

        rec = Indexed("cz-a", prepare(SourceRecord("r1", name="Huỳnh Thị Mỹ", birth_date="1988-02-29", sex="F")),
                      ("k1",), "Huỳnh Thị Mỹ", "1988-02-29")
        plain = rec.pack()
        assert len(orjson.loads(plain)) == 29  # a record never moved keeps the layout written before origins
        steps = [("cz-b", "cz-a"), ("cz-c", "cz-a"), ("cz-b", "cz-a"), ("cz-a", "")]
        raw = plain
        for citizen, origin in steps:
            raw = with_citizen(raw, citizen)
            moved = unpack(raw)
            assert (moved.citizen_id, moved.origin) == (citizen, origin)
            assert moved.body() == rec.body()
        assert raw == plain
        assert unpack(Indexed("cz-c", rec.p, rec.links, origin="cz-a").pack()).origin == "cz-a"

    async def test_an_event_of_a_record_a_merge_moved_names_the_citizen_it_came_from(self) -> None:
        """The survivor's citizen_id, and member_id for the record: an unmerge can give the event back."""
        store = MemoryMpiStore()
        r = Resolver(store, SECRET)
        lan = ev("Trương", ("Thị", "Lan"), "1991-09-09", "female", "79033", "TD-7")
        hung = ev("Phan", ("Văn", "Hùng"), "1980-01-01", "male", "79001", "CR-7")
        lan_id, hung_id = (await one(r, lan))[0], (await one(r, hung))[0]
        [refs] = await store.get([citizen_slot(lan_id)])
        lans = split_refs(refs)
        # what the MPI's merge does to the retired citizen's records and links (Mpi.merge, without its Redis)
        await store.write(repoint_ops(lans, await store.get([record_slot(ref) for ref in lans]), lan_id, hung_id))
        again = ev("Trương", ("Thị", "Lan"), "1991-09-09", "female", "79033", "TD-7", phone="0912000333",
                   eid="lan-again")
        [out] = (await r.resolve([again])).results
        assert (out.citizen_id, out.member_id) == (hung_id, lan_id)
        [out] = (await r.resolve([again])).results  # its record was filed again (a new phone): still Lan's
        assert (out.citizen_id, out.member_id) == (hung_id, lan_id)
        assert orjson.loads(out.to_json())["member_id"] == lan_id
        [own] = (await r.resolve([ev("Phan", ("Văn", "Hùng"), "1980-01-01", "male", "79001", "CR-7")])).results
        assert (own.citizen_id, own.member_id) == (hung_id, None) and "member_id" not in orjson.loads(own.to_json())


@pytest.mark.parametrize(("given", "expected"), [
    (Identifier(SYSTEM_BHYT, "HC4791234567890"), Identifier(SYSTEM_BHXH, "1234567890")),
    (Identifier(SYSTEM_BHXH, "1234567890"), Identifier(SYSTEM_BHXH, "1234567890")),
    (Identifier(SYSTEM_CCCD, "079 090 001 234"), Identifier(SYSTEM_CCCD, "079090001234")),
    (Identifier(SYSTEM_CCCD, "025123456"), Identifier(SYSTEM_OLD_ID, "025123456")),
    (Identifier(SYSTEM_PASSPORT, "c1234567"), Identifier(SYSTEM_PASSPORT, "C1234567")),
    (Identifier(mrn_system("79048"), "BN1"), Identifier(mrn_system("79048"), "BN1")),
    (Identifier(SYSTEM_CCCD, "12345"), None),
    (Identifier(SYSTEM_BHYT, "not a card"), None),
    (Identifier("urn:other", "1"), None),
])
def test_identifiers_are_linked_in_one_canonical_form(given: Identifier, expected: Identifier | None) -> None:
    assert canonical_identifier(given) == expected


async def test_streaming_a_generated_population_meets_the_batch_targets() -> None:
    """3,000 generated registry rows, each its own source patient, streamed in batches of 500: pairwise
    precision and recall against the hidden truth (the batch model's prior, set for the input size)."""
    import io

    from hub.envelope import SYSTEM_BHYT
    from hub.identity.evaluate import pairwise
    from hub.identity.model import MatchSettings
    from hub.identity.population import write
    from hub.identity.registry import read_records

    out, truth = io.StringIO(), io.StringIO()
    write(3000, out, truth, seed=8)
    out.seek(0)
    settings = MatchSettings()
    resolver = Resolver(MemoryMpiStore(), SECRET, settings.with_(prior_weight=settings.batch_prior(3000)))
    rows = list(read_records(out))
    events = []
    for r in rows:
        words = r.name.split()
        idents = [Identifier(mrn_system(r.facility), r.record_id)]
        if r.personal_id:
            idents.append(Identifier(SYSTEM_CCCD, r.personal_id))
        if r.insurance:
            idents.append(Identifier(SYSTEM_BHYT, r.insurance))
        payload = {"resourceType": "Patient", "telecom": [{"system": "phone", "value": r.phone}],
                   "address": [{"text": r.address, "extension": [
                       {"url": "http://fhir.ehealth.gov.vn/core/StructureDefinition/ward-code", "valueCode": r.ward}]}]}
        d, m, y = (r.event_date.split(" ")[0].split("/") + ["", "", ""])[:3]
        seen = f"{y}-{m}-{d}T09:00:00+07:00" if y else "2026-01-01T09:00:00+07:00"  # the dose date
        events.append(Envelope(r.record_id, "patient.updated", seen, seen, Source("registry", r.facility, r.record_id),
                               Subject(tuple(idents), words[0] if len(words) > 1 else None, tuple(words[1:] or words),
                                       r.birth_date, r.sex), payload))
    filed = {}
    for start in range(0, len(events), 500):
        res = await resolver.resolve(events[start:start + 500])
        filed.update({e.event_id: e.citizen_id for e in res.results})
    s = pairwise(filed, dict(line.split(",") for line in truth.getvalue().splitlines()[1:]))
    assert s.precision >= 0.99 and s.recall >= 0.97, s.summary()
