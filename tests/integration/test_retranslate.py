"""Re-translating a range of hl7v2.raw on the real stack republishes byte-identical events, which the
record absorbs; a range can be chosen by time or by partition and offsets."""

from __future__ import annotations

import time

import orjson
import pytest

from connectors.mllp.sender import send_messages
from hub.ops.retranslate import RawRange, retranslate
from hub.settings import Settings
from hub.synthetic import Person, adt
from tests.conftest import hub_cli
from tests.integration.kafka_tools import read_until, wait_until_idle
from tests.integration.test_thin_path import citizen_of, load_record

pytestmark = pytest.mark.integration

THAO = Person(cccd="079195007788", family="Đinh", middle="Ngọc", given="Thảo", birth_date="19950817", sex="F",
              mrn="BN-RT-01", facility="79001", phone="0938555111")


def _events_of(records: list, control_ids: set[str]) -> list[bytes]:
    return [r.value for r in records if orjson.loads(r.value)["source"]["message_id"] in control_ids]


async def test_retranslating_a_time_window_republishes_identical_events_and_changes_no_record(
        hub_stack: Settings) -> None:
    since_ms = int(time.time() * 1000)  # record times come from this machine's clock
    messages = [adt(THAO, "A01", "RT-1", visit="V-RT"), adt(THAO, "A08", "RT-2", visit="V-RT", phone="0938555222")]
    assert [r.code for r in await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, messages)] == ["AA", "AA"]
    await wait_until_idle(hub_stack)
    ids = {"RT-1", "RT-2"}
    live = _events_of(await read_until(hub_stack, "events.canonical", lambda recs: len(_events_of(recs, ids)) >= 4), ids)
    assert len(live) == 4  # Patient + Encounter per message
    citizen = await citizen_of(hub_stack, THAO.cccd)
    before = await load_record(hub_stack, citizen)

    summary = await retranslate(hub_stack, RawRange(since_ms=since_ms))
    assert summary.read >= 2 and summary.events >= 4  # (messages of other tests may share the window)

    again = await read_until(hub_stack, "events.canonical", lambda recs: len(_events_of(recs, ids)) >= 8)
    replayed = _events_of(again, ids)
    assert sorted(replayed) == sorted(live * 2)  # the same bytes, so the same event ids
    await wait_until_idle(hub_stack)
    assert await load_record(hub_stack, citizen) == before


async def test_dry_run_by_partition_and_offset_counts_without_publishing(hub_stack: Settings) -> None:
    message = adt(THAO, "A08", "RT-3", visit="V-RT", phone="0938555333")
    assert (await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message]))[0].code == "AA"
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: any(r.value == message for r in recs))
    stored = next(r for r in raw if r.value == message)
    summary = await retranslate(hub_stack, RawRange(partition=stored.partition, from_offset=stored.offset,
                                                    to_offset=stored.offset), dry_run=True)
    assert (summary.read, summary.events, summary.failed) == (1, 2, 0)


def test_offsets_need_a_partition() -> None:
    with pytest.raises(ValueError, match="--partition"):
        RawRange(from_offset=3)
    with pytest.raises(ValueError, match="before --since"):
        RawRange(since_ms=2000, until_ms=1000)


def test_retranslate_command_prints_a_summary_and_refuses_offsets_without_partition(hub_stack: Settings) -> None:
    done = hub_cli("retranslate", "--since", "1h", "--dry-run")
    assert done.stdout.startswith("raw messages read: ") and "events would publish: " in done.stdout
    refused = hub_cli("retranslate", "--from-offset", "3", check=False)
    assert refused.returncode == 2 and "--partition" in refused.stderr
