"""Invariant 1 under failure: with Kafka stopped a sender gets AR (never AA, never silence) within its
timeout, and ingestion resumes by itself when Kafka is back."""

from __future__ import annotations

import time

import pytest

from connectors.mllp.sender import send_messages
from hub.ops import local
from hub.settings import Settings
from hub.synthetic import Person, adt
from tests.integration.kafka_tools import read_until, wait_until_idle
from tests.integration.test_thin_path import citizen_of

pytestmark = [pytest.mark.integration, pytest.mark.disruptive]

BAO = Person(cccd="079201445566", family="Bùi", middle="Quốc", given="Bảo", birth_date="20010615", sex="M",
             mrn="BN445566", facility="79001", phone="0966111222")


async def test_message_sent_while_kafka_is_down_is_not_acknowledged(hub_stack: Settings) -> None:
    assert local.stack("stop-kafka", hub_stack) == 0
    try:
        started = time.monotonic()
        [during] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [adt(BAO, "A01", "OUTAGE-1")])
        elapsed = time.monotonic() - started
        assert during.code in ("AR", "AE") and during.acked_control_id == "OUTAGE-1"
        assert elapsed < 10, "the NAK must arrive before a sender's usual 10-15 s timeout"
    finally:
        assert local.stack("start-kafka", hub_stack) == 0
    after = None
    for _ in range(30):  # the listener reconnects by itself; the broker may need a moment for leadership
        [after] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [adt(BAO, "A01", "OUTAGE-2")])
        if after.code == "AA":
            break
    assert after.code == "AA"
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: any(b"OUTAGE-2" in r.value for r in recs))
    assert any(b"OUTAGE-2" in r.value for r in raw)
    # The stream roles lived through the outage: the message reaches the citizen's record.
    await wait_until_idle(hub_stack, timeout_s=120)
    assert await citizen_of(hub_stack, BAO.cccd) is not None
