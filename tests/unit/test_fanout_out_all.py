"""The fanout role's built-in ``out.all`` step: every record change copied byte for byte, except flagged ones
(out.all has no entitlement), and a change that is not a canonical event refused as the stage loop expects."""

from __future__ import annotations

import orjson
import pytest

from hub.stream.app import Incoming
from hub.stream.fanout import fanout_step
from hub.topics import OUT_ALL
from tests.unit.test_record_event import HIV_VISIT, LAN_RESULT, with_raw


def change(value: bytes) -> Incoming:
    return Incoming(b"cz-lan", value, {}, "record.changes", 0, 7, 0.0)


async def test_a_change_is_copied_to_out_all_unchanged() -> None:
    value = orjson.dumps(with_raw(LAN_RESULT))  # with source coordinates, as HL7 v2 events carry them
    [out] = await fanout_step(change(value))
    assert (out.topic, out.key, out.value) == (OUT_ALL, b"cz-lan", value)


async def test_a_flagged_change_never_reaches_out_all() -> None:
    assert await fanout_step(change(HIV_VISIT.to_json())) == []


async def test_a_change_that_is_not_a_canonical_event_is_refused() -> None:
    with pytest.raises(KeyError):
        await fanout_step(change(orjson.dumps({"type": "encounter.recorded", "payload": {}})))
