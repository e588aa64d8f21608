"""Every stream role serves Prometheus metrics on its own port: events processed, dead letters by stage and
reason code, outputs by topic and batch latency, counted exactly for known traffic, with no personal data."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.mllp.sender import send_messages
from hub.settings import Settings
from hub.synthetic import Person, adt
from tests.integration.kafka_tools import wait_until_idle

pytestmark = pytest.mark.integration

TUAN = Person(cccd="079092004455", family="Võ", middle="Quốc", given="Tuấn", birth_date="19920214", sex="M",
              mrn="BN-MET-01", facility="79048", phone="0903111222")
DFT = ("MSH|^~\\&|HIS|79048|HSSK|SYT|20261122||DFT^P03^DFT_P03|MET-DFT-1|P|2.5\r"
       "EVN|P03|20261122\rPID|1||BN-MET-01^^^79048^MR||Võ^Tuấn^Quốc\rFT1|1|||20261122||CG|KB01^Khám bệnh\r").encode()
ROLES = ("translator", "identity", "record", "fanout")


def scrape(settings: Settings, role: str) -> tuple[str, dict[tuple[str, tuple], float]]:
    port = settings.metrics_port(role)
    with urllib.request.urlopen(f"http://{settings.metrics_host}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_each_role_counts_known_traffic_exactly(hub_stack: Settings) -> None:
    """One ADT^A01 (Patient + Encounter) and one unsupported DFT^P03: the translator finishes 2 events, writes
    2 events and 1 dead letter (code translate); identity and record each finish 2; fanout 2 changes."""
    await wait_until_idle(hub_stack)
    before = {role: scrape(hub_stack, role)[1] for role in ROLES}
    results = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [adt(TUAN, "A01", "MET-1"), DFT])
    assert [r.code for r in results] == ["AA", "AA"]
    await wait_until_idle(hub_stack)
    after = {role: scrape(hub_stack, role) for role in ROLES}

    def delta(role: str, name: str, **labels: str) -> float:
        return value(after[role][1], name, **labels) - value(before[role], name, **labels)

    assert delta("translator", "hssk_stage_events_total", stage="translate") == 2
    assert delta("translator", "hssk_stage_failures_total", stage="translate", code="translate") == 1
    assert delta("translator", "hssk_stage_outputs_total", stage="translate", topic="events.canonical") == 2
    assert delta("translator", "hssk_stage_outputs_total", stage="translate", topic="hub.dlq") == 1
    assert delta("translator", "hssk_stage_batch_seconds_count", stage="translate") >= 1
    assert delta("identity", "hssk_stage_events_total", stage="identity") == 2
    assert delta("identity", "hssk_stage_outputs_total", stage="identity", topic="events.citizen") == 2
    assert delta("record", "hssk_stage_events_total", stage="record") == 2
    assert delta("record", "hssk_stage_outputs_total", stage="record", topic="record.changes") == 2
    assert delta("fanout", "hssk_stage_events_total", stage="fanout") == 2
    assert delta("fanout", "hssk_stage_outputs_total", stage="fanout", topic="out.all") == 2
    for role in ROLES:
        assert delta(role, "hssk_stage_failures_total", stage=role, code="internal") == 0
        text = after[role][0]
        # The exact exposition lines exist, and nothing the messages said about the patient is in them.
        assert "# TYPE hssk_stage_batch_seconds histogram" in text and "# TYPE hssk_stage_events_total counter" in text
        for personal in (TUAN.cccd, TUAN.mrn, TUAN.family, TUAN.given, TUAN.phone, "MET-1"):
            assert personal not in text


def test_the_translator_exposes_its_failure_line_exactly(hub_stack: Settings) -> None:
    text, samples = scrape(hub_stack, "translator")
    count = value(samples, "hssk_stage_failures_total", stage="translate", code="translate")
    assert count >= 1
    assert f'hssk_stage_failures_total{{code="translate",stage="translate"}} {count}' in text.splitlines()
