"""The ``hub`` command against the running stack, and what happens to input the hub cannot use."""

from __future__ import annotations

import base64
import json
import subprocess

import orjson
import pytest

from connectors.mllp.sender import send_messages
from hub.settings import REPO_ROOT, Settings
from hub.synthetic import Person, adt
from hub.topics import AUDIT_ACCESS, DLQ
from tests.conftest import hub_cli
from tests.integration.kafka_tools import read_until, wait_until_idle

pytestmark = pytest.mark.integration

HA = Person(cccd="079187112233", family="Phạm", middle="Thị Thu", given="Hà", birth_date="19870709", sex="F",
            mrn="BN990001", facility="79015", phone="0977000111")


def test_status_reports_every_role_up(hub_stack: Settings) -> None:
    status = json.loads(hub_cli("status", "--json").stdout)
    assert all(s["up"] for s in status["services"].values())
    assert {name for name, role in status["roles"].items() if role["up"]} == {
        "mllp", "translator", "identity", "record", "fanout", "warehouse", "api", "receiver"}
    assert {"hl7v2.raw", "events.canonical", "events.citizen", "record.changes", "hub.dlq"} <= set(status["topics"])
    assert {lag["group"] for lag in status["lag"]} == {"hssk-translator", "hssk-identity", "hssk-record", "hssk-fanout",
                                                        "hssk-warehouse"}


def test_hub_up_twice_is_a_no_op(hub_stack: Settings) -> None:
    before = json.loads(hub_cli("status", "--json").stdout)["roles"]
    hub_cli("up")
    after = json.loads(hub_cli("status", "--json").stdout)["roles"]
    assert {r: v["pid"] for r, v in before.items()} == {r: v["pid"] for r, v in after.items()}


async def test_send_and_record_commands(hub_stack: Settings, tmp_path) -> None:
    """`hub send` prints each ACK; `hub record --cccd` prints the record (NFC name) and audits the read."""
    feed = tmp_path / "feed.hl7"
    # LF separators and a BOM, as files from real systems have them.
    feed.write_bytes(b"\xef\xbb\xbf" + adt(HA, "A01", "CLI-1", visit="V-CLI").replace(b"\r", b"\n")
                     + adt(HA, "A08", "CLI-2", visit="V-CLI", phone="0977000222", when="20261122093000").replace(b"\r", b"\n"))
    sent = hub_cli("send", str(feed), "--port", str(hub_stack.mllp_port))
    assert [line.split()[:2] for line in sent.stdout.splitlines()] == [["AA", "CLI-1"], ["AA", "CLI-2"]]
    await wait_until_idle(hub_stack)

    shown = hub_cli("record", "--cccd", HA.cccd, "--purpose", "integration-test")
    record = json.loads(shown.stdout)
    assert record["demographics"]["name"]["text"] == "Phạm Thị Thu Hà"
    assert record["demographics"]["telecom"][0]["value"] == "0977000222"
    audits = await read_until(hub_stack, AUDIT_ACCESS.name, lambda recs: any(
        orjson.loads(r.value)["citizen_id"] == record["citizen_id"] for r in recs), timeout_s=20)
    entry = next(orjson.loads(r.value) for r in audits if orjson.loads(r.value)["citizen_id"] == record["citizen_id"])
    assert entry["purpose"] == "integration-test" and entry["actor"].startswith("os-user:")

    missing = hub_cli("record", "--cccd", "079000000000", check=False)
    assert missing.returncode == 1 and "no record" in missing.stderr


def test_send_exits_non_zero_when_a_message_is_not_accepted(hub_stack: Settings, tmp_path) -> None:
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(b"MSH|^~\\&|HIS|79048|HSSK|SYT|20261122||ADT^A01|||P|2.5\rPID|1\r")  # no MSH-10
    proc = hub_cli("send", str(bad), "--port", str(hub_stack.mllp_port), check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("AE")


async def test_send_a_batch_file_accounts_for_every_message(hub_stack: Settings, tmp_path) -> None:
    """An FHS/BHS batch file: every message inside is sent, answered and stored; the batch envelope is not."""
    messages = [adt(HA, "A08", f"CLI-BATCH-{i}", phone=f"097700033{i}") for i in range(3)]
    batch = tmp_path / "batch.hl7"
    batch.write_bytes(b"FHS|^~\\&|HIS|79015|HSSK|SYT|20261122\rBHS|^~\\&|HIS|79015|HSSK|SYT|20261122\r"
                      + b"".join(messages) + b"BTS|3\rFTS|1\r")
    sent = hub_cli("send", str(batch), "--port", str(hub_stack.mllp_port))
    assert [line.split()[:2] for line in sent.stdout.splitlines()] == [["AA", f"CLI-BATCH-{i}"] for i in range(3)]
    ids = [f"CLI-BATCH-{i}".encode() for i in range(3)]
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: sum(dict(r.headers)["hl7.control_id"] in ids
                                                                      for r in recs) == 3)
    stored = [r for r in raw if dict(r.headers)["hl7.control_id"] in ids]
    assert [dict(r.headers)["hl7.control_id"] for r in stored] == ids
    assert all(not r.value.startswith((b"FHS", b"BHS")) and b"BTS|" not in r.value for r in stored)


async def test_unsupported_message_type_goes_to_the_dlq_with_its_bytes(hub_stack: Settings) -> None:
    """The listener stores it (AA: it is durable); the translator cannot map it and dead-letters it."""
    # DFT^P03 (detailed financial transaction): billing, which the hub does not map.
    dft = ("MSH|^~\\&|HIS|79048|HSSK|SYT|20261122||DFT^P03^DFT_P03|DFT-DLQ-1|P|2.5\r"
           "EVN|P03|20261122\rPID|1||BN1^^^79048^MR||Võ^Tuấn^Quốc\rFT1|1|||20261122||CG|KB01^Khám bệnh\r").encode()
    [result] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [dft])
    assert result.code == "AA"
    dlq = await read_until(hub_stack, DLQ.name, lambda recs: any(
        base64.b64decode(orjson.loads(r.value)["original"]) == dft for r in recs), timeout_s=60)
    entry = next(orjson.loads(r.value) for r in dlq if base64.b64decode(orjson.loads(r.value)["original"]) == dft)
    assert entry["stage"] == "translate" and entry["code"] == "translate"
    assert "unsupported message type" in entry["reason"] and "DFT^P03" in entry["reason"]
    assert entry["source_topic"] == "hl7v2.raw" and entry["source_offset"] >= 0


async def test_event_naming_nobody_goes_to_the_dlq_from_identity(hub_stack: Settings) -> None:
    """A PID with only a malformed CCCD and no name or birth date: nothing the MPI can resolve a citizen by
    (an event without a CCCD but with an MRN or demographics is resolved: tests/integration/test_identity_mpi_live)."""
    no_cccd = Person(cccd="", family="Đặng", middle="Minh", given="Khánh", birth_date="19990101", sex="M",
                     mrn="BN-NOCCCD", facility="79048", phone="0900000000")
    message = adt(no_cccd, "A04", "NOCCCD-1")
    pid = next(s for s in message.split(b"\r") if s.startswith(b"PID|"))
    message = message.replace(pid, b"PID|1||123456^^^BCA^NNVNM")
    [result] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message])
    assert result.code == "AA"
    dlq = await read_until(hub_stack, DLQ.name, lambda recs: any(
        orjson.loads(r.value)["stage"] == "identity" and b"NOCCCD-1" in base64.b64decode(orjson.loads(r.value)["original"])
        for r in recs), timeout_s=60)
    entry = next(orjson.loads(r.value) for r in dlq if orjson.loads(r.value)["stage"] == "identity")
    assert entry["code"] == "identity" and "no identifiers and no demographics" in entry["reason"]


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) when present, else Debian's `docker-compose`; both validate without an engine."""
    import shutil

    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_file_is_valid() -> None:
    command = compose_command()
    assert command, "no compose client: deploy/local/test.sh installs Debian's docker-compose"
    proc = subprocess.run([*command, "-f", str(REPO_ROOT / "docker-compose.yml"), "config", "-q"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_compose_runs_every_role_with_the_catalogue_topics() -> None:
    """The Docker stack runs the same roles as `hub up` and creates topics from the same catalogue."""
    from hub.ops.local import ROLES

    text = (REPO_ROOT / "docker-compose.yml").read_text()
    for role in ROLES:
        assert f"hub run {role}" in text or f'"run", "{role}"' in text
    assert "topics create" in text or '"topics", "create"' in text
