"""The real-time pure step files records one at a time with the batch model, and agrees with batch linkage."""

from __future__ import annotations

import io

from hub.envelope import SYSTEM_CCCD
from hub.identity.evaluate import pairwise
from hub.identity.model import LINK, NEW, REVIEW
from hub.identity.population import write
from hub.identity.realtime import Matcher
from hub.identity.records import SourceRecord
from hub.identity.registry import read_records
from hub.pseudonym import citizen_id_for

ADDRESS = "12 Lê Lợi, P. Bến Thành, TP.HCM"


def rec(rid: str, name: str, dob: str, sex: str, cccd: str = "", **kw: str) -> SourceRecord:
    return SourceRecord(rid, name=name, birth_date=dob, sex=sex, personal_id=cccd, phone="0912345678",
                        address=ADDRESS, ward="26734", **kw)


def test_a_known_person_links_and_a_stranger_is_new() -> None:
    m = Matcher(b"secret")
    first = m.resolve(rec("1", "Trần Thị Lan", "12/03/1992", "Nữ", "079192004321"))
    assert first.outcome == NEW and first.citizen_id == citizen_id_for(b"secret", SYSTEM_CCCD, "079192004321")
    again = m.resolve(rec("2", "TRAN THI LAN", "1992-03-12", "2"))
    assert (again.outcome, again.citizen_id) == (LINK, first.citizen_id)
    newborn = m.resolve(rec("3", "Con của Trần Thị Lan", "05/11/2025", "Nam", event_date="05/11/2025"))
    assert newborn.outcome != LINK and newborn.citizen_id != first.citizen_id


def test_a_record_that_links_two_citizens_goes_to_review() -> None:
    """Two citizens who may be one person are never merged silently by a third record."""
    m = Matcher(b"secret")
    a = m.resolve(rec("1", "Lê Văn Tâm", "01/05/1970", "Nam", "079070123456"))
    b = m.resolve(SourceRecord("2", name="Lê Văn Tâm", birth_date="01/05/1970", sex="Nam", insurance="7912345678"))
    assert a.citizen_id != b.citizen_id  # nothing in common but name and birth date, in unknown places
    both = m.resolve(SourceRecord("3", name="Le Van Tam", birth_date="01/05/1970", personal_id="079070123456",
                                  insurance="7912345678"))
    assert both.outcome == REVIEW


def test_streaming_a_generated_population_agrees_with_the_batch_targets() -> None:
    out, truth = io.StringIO(), io.StringIO()
    write(3000, out, truth, seed=8)
    out.seek(0)
    m = Matcher(b"secret", expected_records=3000)
    filed = {r.record_id: m.resolve(r).citizen_id for r in read_records(out)}
    s = pairwise(filed, dict(line.split(",") for line in truth.getvalue().splitlines()[1:]))
    assert s.precision >= 0.99 and s.recall >= 0.93
