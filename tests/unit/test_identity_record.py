"""Identity by CCCD and the pure record step: deterministic, idempotent, order-safe."""

from __future__ import annotations

import pytest

from hub.envelope import SYSTEM_CCCD, Envelope, Identifier, Source, Subject, mrn_system
from hub.errors import IdentityError
from hub.identity.mpi_store import MemoryMpiStore, link_slot
from hub.identity.resolve import Resolver, identity_key
from hub.record.apply import apply

SECRET = b"test-secret"


def patient_event(cccd: str, *, event_id: str, occurred_at: str, phone: str, family: str = "Trần",
                  given: tuple[str, ...] = ("Thị Bích", "Ngọc"), mrn: str = "TD55012") -> Envelope:
    idents = (Identifier(SYSTEM_CCCD, cccd), Identifier(mrn_system("79033"), mrn))
    payload = {
        "resourceType": "Patient", "id": "p1",
        "identifier": [{"system": i.system, "value": i.value} for i in idents],
        "name": [{"use": "official", "family": family, "given": list(given), "text": f"{family} {' '.join(given)}"}],
        "gender": "female", "birthDate": "1985-02-20", "telecom": [{"system": "phone", "value": phone}],
    }
    return Envelope(event_id=event_id, type="patient.updated", occurred_at=occurred_at,
                    recorded_at=occurred_at, source=Source("hl7v2", "79033", event_id),
                    subject=Subject(idents, family, given, "1985-02-20", "female"), payload=payload)


def nobody(event_id: str) -> Envelope:
    """An event that names no identifier and no demographics."""
    return Envelope(event_id=event_id, type="observation.recorded", occurred_at="2026-01-01",
                    recorded_at="2026-01-01", source=Source("hl7v2", "79033", event_id), subject=Subject(),
                    payload={"resourceType": "Observation"})


async def resolve(event: Envelope, store: MemoryMpiStore, secret: bytes) -> Envelope:
    [result] = (await Resolver(store, secret).resolve([event])).results
    if isinstance(result, Exception):
        raise result
    return result


async def test_same_cccd_resolves_to_the_same_citizen_and_the_id_hides_the_cccd() -> None:
    store = MemoryMpiStore()
    a, bad, b, c = (await Resolver(store, SECRET).resolve([
        patient_event("079185004321", event_id="e1", occurred_at="2026-01-01", phone="1"),
        nobody("e0"),
        patient_event("079185004321", event_id="e2", occurred_at="2026-01-02", phone="2", mrn="TD9"),
        patient_event("079090001234", event_id="e3", occurred_at="2026-01-02", phone="3", family="Lê",
                      given=("Văn", "Minh"), mrn="TD10"),
    ])).results
    assert isinstance(bad, IdentityError)  # one unresolvable event does not disturb the rest of the batch
    assert a.citizen_id == b.citizen_id != c.citizen_id
    assert [a.event_id, b.event_id, c.event_id] == ["e1", "e2", "e3"]
    assert "079185004321" not in a.citizen_id


async def test_first_link_wins() -> None:
    """An existing link is kept: the store's answer, not the freshly minted id, is used."""
    store = MemoryMpiStore()
    key = identity_key(SECRET, Identifier(SYSTEM_CCCD, "079185004321"))
    await store.write([(link_slot(key), "L", "cz-existing")])
    again = await resolve(patient_event("079185004321", event_id="e2", occurred_at="y", phone="1"), store, SECRET)
    assert again.citizen_id == "cz-existing"


@pytest.mark.parametrize("cccd", ["12345", "07918500432X", ""])
async def test_an_invalid_cccd_is_never_linked(cccd: str) -> None:
    """The event still resolves (by its MRN and demographics); the malformed number links nothing."""
    store = MemoryMpiStore()
    event = await resolve(patient_event(cccd, event_id="e", occurred_at="x", phone="1"), store, SECRET)
    assert event.citizen_id and event.citizen_id.startswith("cz-")
    assert await store.get([link_slot(identity_key(SECRET, Identifier(SYSTEM_CCCD, cccd)))]) == [None]


async def test_no_identifiers_and_no_demographics_is_an_identity_error() -> None:
    with pytest.raises(IdentityError, match="no identifiers and no demographics"):
        await resolve(nobody("e"), MemoryMpiStore(), SECRET)


def resolved(event: Envelope) -> Envelope:
    return event.with_citizen("cz-test")


def test_applying_the_same_event_twice_changes_nothing_the_second_time() -> None:
    event = resolved(patient_event("079185004321", event_id="e1", occurred_at="2026-01-01T08:00:00+07:00", phone="1"))
    once, changed = apply(None, event)
    twice, changed_again = apply(once, event)
    assert changed and not changed_again
    assert once == twice and once["version"] == 1


def test_events_out_of_order_give_the_same_demographics() -> None:
    """The newer phone number wins whichever event arrives first."""
    old = resolved(patient_event("079185004321", event_id="e1", occurred_at="2026-01-01T08:00:00+07:00", phone="old"))
    new = resolved(patient_event("079185004321", event_id="e2", occurred_at="2026-03-01T08:00:00+07:00", phone="new"))
    in_order, _ = apply(apply(None, old)[0], new)
    reversed_, _ = apply(apply(None, new)[0], old)
    assert in_order["demographics"] == reversed_["demographics"]
    assert in_order["demographics"]["telecom"] == [{"system": "phone", "value": "new"}]
    assert in_order["identifiers"] == reversed_["identifiers"]


def test_record_keeps_the_vietnamese_name_exactly() -> None:
    event = resolved(patient_event("079185004321", event_id="e1", occurred_at="2026-01-01", phone="1"))
    record, _ = apply(None, event)
    assert record["demographics"]["name"]["text"] == "Trần Thị Bích Ngọc"


# The record stage's batch tests (once, redelivered, dead letters) are in test_record_stage.py.
