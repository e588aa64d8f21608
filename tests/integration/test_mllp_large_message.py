"""A message under the MLLP frame limit (10 MiB) but over Kafka's default record size (~1 MiB) is stored whole.

Before the local broker allowed records of that size, such a message was NAKed on every resend: the hospital's
engine would retry it forever and its queue would stall behind it.
"""

from __future__ import annotations

import pytest

from connectors.mllp.sender import send_messages
from hub.settings import Settings
from hub.synthetic import Person, adt
from tests.integration.kafka_tools import read_until

pytestmark = pytest.mark.integration

LAN = Person(cccd="079191012345", family="Trần", middle="Thị", given="Lan", birth_date="19911230", sex="F",
             mrn="BN-LARGE-1", facility="79048", phone="0907123456")


async def test_a_three_megabyte_message_is_acknowledged_and_stored_byte_for_byte(hub_stack: Settings) -> None:
    note = ("Bệnh nhân Trần Thị Lan, tiền sử tăng huyết áp, theo dõi sau mổ ruột thừa. " * 40_000)[:3_000_000]
    raw = adt(LAN, "A08", "LARGE-1") + f"\rNTE|1||{note}".encode()
    assert 10 * 1024 * 1024 > len(raw) > 3_000_000  # under the frame limit, ~3x the broker default
    [ack] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [raw], timeout_s=60)
    assert (ack.code, ack.acked_control_id) == ("AA", "LARGE-1")
    records = await read_until(hub_stack, "hl7v2.raw", lambda rs: any(b"|LARGE-1|" in r.value for r in rs))
    [stored] = [r.value for r in records if b"|LARGE-1|" in r.value]
    assert stored == raw
