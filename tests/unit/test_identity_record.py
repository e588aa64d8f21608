"""Identity by CCCD and the pure record step: deterministic, idempotent, order-safe."""

from __future__ import annotations

import pytest

from hub.envelope import SYSTEM_CCCD, Envelope, Identifier, Source, Subject, mrn_system
from hub.errors import IdentityError
from hub.identity.resolve import resolve_many
from hub.record.apply import apply

SECRET = b"test-secret"


class DictLinkStore:
    def __init__(self) -> None:
        self.links: dict[str, str] = {}

    async def link_many(self, links: list[tuple[str, str]]) -> list[str]:
        return [self.links.setdefault(key, cid) for key, cid in links]

    async def lookup(self, identity_key: str) -> str | None:
        return self.links.get(identity_key)


def patient_event(cccd: str, *, event_id: str, occurred_at: str, phone: str, family: str = "Trần",
                  given: tuple[str, ...] = ("Thị Bích", "Ngọc")) -> Envelope:
    idents = (Identifier(SYSTEM_CCCD, cccd), Identifier(mrn_system("79033"), "TD55012"))
    payload = {
        "resourceType": "Patient", "id": "p1",
        "identifier": [{"system": i.system, "value": i.value} for i in idents],
        "name": [{"use": "official", "family": family, "given": list(given), "text": f"{family} {' '.join(given)}"}],
        "gender": "female", "birthDate": "1985-02-20", "telecom": [{"system": "phone", "value": phone}],
    }
    return Envelope(event_id=event_id, type="patient.updated", occurred_at=occurred_at,
                    recorded_at=occurred_at, source=Source("hl7v2", "79033", event_id),
                    subject=Subject(idents, family, given, "1985-02-20", "female"), payload=payload)


async def resolve(event: Envelope, store: DictLinkStore, secret: bytes) -> Envelope:
    [result] = await resolve_many([event], store, secret)
    if isinstance(result, Exception):
        raise result
    return result


async def test_same_cccd_resolves_to_the_same_citizen_and_the_id_hides_the_cccd() -> None:
    store = DictLinkStore()
    a, bad, b, c = await resolve_many([
        patient_event("079185004321", event_id="e1", occurred_at="2026-01-01", phone="1"),
        patient_event("", event_id="e0", occurred_at="2026-01-01", phone="1"),
        patient_event("079185004321", event_id="e2", occurred_at="2026-01-02", phone="2"),
        patient_event("079090001234", event_id="e3", occurred_at="2026-01-02", phone="3"),
    ], store, SECRET)
    assert isinstance(bad, IdentityError)  # one unresolvable event does not disturb the rest of the batch
    assert a.citizen_id == b.citizen_id != c.citizen_id
    assert [a.event_id, b.event_id, c.event_id] == ["e1", "e2", "e3"]
    assert "079185004321" not in a.citizen_id


async def test_first_link_wins() -> None:
    """An existing link is kept: the store's answer, not the freshly minted id, is used."""
    store = DictLinkStore()
    first = await resolve(patient_event("079185004321", event_id="e1", occurred_at="x", phone="1"), store, SECRET)
    store.links = {k: "cz-existing" for k in store.links}
    again = await resolve(patient_event("079185004321", event_id="e2", occurred_at="y", phone="1"), store, SECRET)
    assert first.citizen_id != "cz-existing" and again.citizen_id == "cz-existing"


@pytest.mark.parametrize("cccd", ["12345", "07918500432X", ""])
async def test_no_valid_cccd_is_an_identity_error(cccd: str) -> None:
    with pytest.raises(IdentityError, match="CCCD"):
        await resolve(patient_event(cccd, event_id="e", occurred_at="x", phone="1"), DictLinkStore(), SECRET)


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
