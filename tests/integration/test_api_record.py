"""The record API on the real stack: a record made by an HL7 message over MLLP comes back as a FHIR Bundle;
401/403/404/400/429 answers; N reads give exactly N audit events on audit.access, each with an actor, all
confirmed before the answers arrived; with the audit log unreachable, reads are 503, never unaudited."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from fhir.resources.R4B.bundle import Bundle as FhirBundle

from connectors.mllp.sender import send_messages
from hub.api import service, tokens
from hub.api.lookup import SYSTEM_BHXH
from hub.envelope import SYSTEM_CCCD, Identifier
from hub.identity.resolve import RedisLinkStore, identity_key
from hub.settings import Settings
from hub.synthetic import Person, adt
from hub.topics import AUDIT_ACCESS
from tests.integration.kafka_tools import read_until, wait_until_idle

pytestmark = pytest.mark.integration

NHUNG = Person(cccd="079192006688", family="Đặng", middle="Thị Hồng", given="Nhung", birth_date="19920815",
               sex="F", mrn="BN260815", facility="79048", phone="0909111222")
KHOA = Person(cccd="079088007711", family="Bùi", middle="Đức", given="Khoa", birth_date="19880101",
              sex="M", mrn="BN880101", facility="79033", phone="0912333444")
BURST = 20


class Client:
    """An HTTP client of the API under test."""

    def __init__(self, url: str, token_file: Path, session: aiohttp.ClientSession) -> None:
        self.url, self.token_file, self.session = url, token_file, session

    def token(self, client: str, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(self.token_file, client, list(scopes))}"}

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as resp:
            body = await resp.json(content_type=None)
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body


async def _wait_healthy(session: aiohttp.ClientSession, url: str, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with session.get(url + "/health") as resp:
            if resp.status == 200:
                return
        if loop.time() > deadline:
            raise AssertionError("the API's audit producer did not connect to Kafka")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def api_settings(hub_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return replace(hub_stack, api_token_file=tmp_path_factory.mktemp("api") / "api-tokens.json",
                   api_rate_per_s=0.2, api_rate_burst=BURST)


@pytest_asyncio.fixture(scope="module")
async def api(api_settings: Settings) -> AsyncIterator[Client]:
    """The API started in this process on a free port, against the stack's Redis and Kafka."""
    running = await service.start(api_settings, port=0)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{running.port}"
            await _wait_healthy(session, url)
            yield Client(url, api_settings.api_token_file, session)
    finally:
        await running.stop()


@pytest_asyncio.fixture(scope="module")
async def nhung(hub_stack: Settings) -> str:
    """Đặng Thị Hồng Nhung's record, created by an A01 sent over MLLP; her citizen id."""
    results = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [
        adt(NHUNG, "A01", "API-0001", visit="VV260001", when="20261130091500"),
        adt(KHOA, "A04", "API-0002", visit="TD260002", when="20261130093000", patient_class="O"),
    ])
    assert [r.code for r in results] == ["AA", "AA"]
    await wait_until_idle(hub_stack, timeout_s=90)
    client = aioredis.from_url(hub_stack.redis_url)
    try:
        citizen_id = await RedisLinkStore(client).lookup(
            identity_key(hub_stack.pseudonym_key, Identifier(SYSTEM_CCCD, NHUNG.cccd)))
    finally:
        await client.aclose()
    assert citizen_id
    return citizen_id


def purpose(value: str = "TREAT") -> dict[str, str]:
    return {"X-Purpose-Of-Use": value}


async def audit_events(settings: Settings) -> list[dict[str, Any]]:
    """Everything on audit.access now (the answers already arrived, so their events are all there)."""
    records = await read_until(settings, AUDIT_ACCESS.name, lambda recs: False, timeout_s=4)
    return [orjson.loads(r.value) for r in records]


async def test_an_hl7_record_comes_back_as_a_bundle_with_the_vietnamese_name(api: Client, nhung: str) -> None:
    auth = {**api.token("bv-cho-ray", "record:read"), **purpose()}
    status, headers, bundle = await api.call("POST", "/v1/record/search", auth, json={"cccd": NHUNG.cccd})
    assert status == 200 and headers["content-type"].startswith("application/fhir+json")
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    FhirBundle.model_validate(bundle)  # fhir.resources, as the translators' output is checked
    patient = bundle["entry"][0]["resource"]
    assert patient["resourceType"] == "Patient" and patient["id"] == nhung
    assert patient["name"][0]["text"] == "Đặng Thị Hồng Nhung" and patient["name"][0]["family"] == "Đặng"
    assert patient["birthDate"] == "1992-08-15" and patient["gender"] == "female"
    assert {"system": SYSTEM_CCCD, "value": NHUNG.cccd} in patient["identifier"]
    [encounter] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"]
    assert encounter["class"]["code"] == "IMP" and encounter["subject"] == {"reference": f"Patient/{nhung}"}

    status, _, by_id = await api.call("GET", f"/v1/citizens/{nhung}/record", auth)
    assert status == 200 and by_id["entry"][0]["resource"] == patient


async def test_the_health_book_of_an_hl7_record(api: Client, nhung: str) -> None:
    auth = {**api.token("vneid-sync", "record:read"), **purpose("citizen-request")}
    status, _, book = await api.call("GET", f"/v1/citizens/{nhung}/health-book", auth)
    assert status == 200
    assert book["administrative"]["name"] == "Đặng Thị Hồng Nhung"
    assert book["administrative"]["birth_date"] == "1992-08-15"
    assert [e["facility"] for e in book["encounters"]] == ["79048"]
    assert book["summary"]["encounter_count"] == 1 and book["summary"]["facilities"] == ["79048"]
    status, _, again = await api.call("POST", "/v1/health-book/search", auth, json={"cccd": NHUNG.cccd})
    assert status == 200 and again["citizen_id"] == nhung


async def test_lookup_by_bhyt_card_through_the_mpi_link(api: Client, hub_stack: Settings, nhung: str) -> None:
    """A BHYT/BHXH link (made here as the MPI makes links) finds the citizen; a card with other group
    letters but the same BHXH number too, since the number is the lifelong part."""
    client = aioredis.from_url(hub_stack.redis_url)
    try:
        await RedisLinkStore(client).link_many(
            [(identity_key(hub_stack.pseudonym_key, Identifier(SYSTEM_BHXH, "7912345678")), nhung)])
    finally:
        await client.aclose()
    auth = {**api.token("bhxh-portal", "record:read"), **purpose("HPAYMT")}
    for card in ("HC4797912345678", "SV4797912345678", "7912345678"):
        status, _, bundle = await api.call("POST", "/v1/record/search", auth, json={"bhyt": card})
        assert status == 200 and bundle["entry"][0]["resource"]["id"] == nhung, card
    status, _, body = await api.call("POST", "/v1/record/search", auth, json={"bhyt": "HC4797900000000"})
    assert status == 404 and body["issue"][0]["details"]["text"] == "no-such-citizen"


class TestAuth:
    async def test_no_token_is_401(self, api: Client, nhung: str) -> None:
        status, headers, body = await api.call("GET", f"/v1/citizens/{nhung}/record", purpose())
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        assert body["resourceType"] == "OperationOutcome"

    async def test_wrong_scope_is_403(self, api: Client, nhung: str) -> None:
        status, headers, _ = await api.call("GET", f"/v1/citizens/{nhung}/record",
                                            {**api.token("dashboard", "ops:read"), **purpose()})
        assert status == 403 and 'error="insufficient_scope"' in headers["www-authenticate"]

    async def test_a_revoked_token_is_401(self, api: Client, nhung: str) -> None:
        auth = {**api.token("bv-da-khoa-cu", "record:read"), **purpose()}
        assert (await api.call("GET", f"/v1/citizens/{nhung}/record", auth))[0] == 200
        assert tokens.revoke(api.token_file, "bv-da-khoa-cu") == 1
        status, headers, _ = await api.call("GET", f"/v1/citizens/{nhung}/record", auth)
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]

    async def test_429_with_retry_after_and_another_clients_limit_does_not_matter(self, api: Client) -> None:
        busy = {**api.token("bv-qua-tai", "record:read"), **purpose()}
        calm = {**api.token("bv-binh-thuong", "record:read"), **purpose()}
        missing = "/v1/citizens/cz-00000000000000000000000000000000/record"
        statuses = [(await api.call("GET", missing, busy))[0] for _ in range(BURST)]
        assert statuses == [404] * BURST
        status, headers, body = await api.call("GET", missing, busy)
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert body["issue"][0]["details"]["text"] == "rate-limited"
        assert (await api.call("GET", missing, calm))[0] == 404  # served: its own bucket is full


class TestLookupAnswers:
    @pytest.mark.parametrize("payload, status, code", [
        ({"cccd": "079199999999"}, 404, "no-such-citizen"),
        ({"cccd": "0791999999"}, 400, "invalid-cccd"),
        ({"cccd": "07919999999x"}, 400, "invalid-cccd"),
        ({"bhyt": "HC47979"}, 400, "invalid-bhyt"),
    ])
    async def test_unknown_is_404_and_malformed_is_400(self, api: Client, payload: dict, status: int,
                                                       code: str) -> None:
        got, _, body = await api.call("POST", "/v1/record/search",
                                      {**api.token("bv-tra-cuu", "record:read"), **purpose()}, json=payload)
        assert (got, body["issue"][0]["details"]["text"]) == (status, code)


async def test_n_reads_give_exactly_n_audit_events_each_with_an_actor(api: Client, hub_stack: Settings,
                                                                      nhung: str) -> None:
    n = 7
    auth = {**api.token("kiem-toan-7", "record:read"), **purpose("audit-test")}
    request_ids = []
    for i in range(n):
        if i % 3 == 0:
            status, headers, _ = await api.call("GET", f"/v1/citizens/{nhung}/record", auth)
        elif i % 3 == 1:
            status, headers, _ = await api.call("POST", "/v1/record/search", auth, json={"cccd": NHUNG.cccd})
        else:
            status, headers, _ = await api.call("GET", f"/v1/citizens/{nhung}/health-book", auth)
        assert status == 200
        request_ids.append(headers["x-request-id"])
    # Answers that are not reads leave no audit event.
    assert (await api.call("POST", "/v1/record/search", auth, json={"cccd": "079199999998"}))[0] == 404
    assert (await api.call("POST", "/v1/record/search", auth, json={"cccd": "12"}))[0] == 400
    assert (await api.call("GET", f"/v1/citizens/{nhung}/record", {**purpose()}))[0] == 401

    events = await audit_events(hub_stack)
    ours = [e for e in events if e["actor"] == "kiem-toan-7"]
    assert len(ours) == n
    assert sorted(e["request_id"] for e in ours) == sorted(request_ids)
    assert all(e["citizen_id"] == nhung and e["purpose"] == "audit-test" and e["channel"] == "api" for e in ours)
    assert {e["endpoint"] for e in ours} == {"GET /v1/citizens/{citizen_id}/record", "POST /v1/record/search",
                                             "GET /v1/citizens/{citizen_id}/health-book"}
    assert all(e.get("actor") for e in events)  # none without an actor, on the whole topic
    assert all(NHUNG.cccd not in orjson.dumps(e).decode() for e in events)  # pseudonymous citizen ids only


async def test_reads_fail_with_503_when_the_audit_log_is_unreachable(api_settings: Settings, nhung: str) -> None:
    """An API whose Kafka is unreachable (nothing listens on that port) serves no record at all."""
    broken = replace(api_settings, kafka_bootstrap="127.0.0.1:1", ack_timeout_s=1.0)
    running = await service.start(broken, port=0)
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(f"http://127.0.0.1:{running.port}", broken.api_token_file, session)
            status, _, health = await client.call("GET", "/health")
            assert status == 503 and health["status"] == "degraded"
            status, headers, body = await client.call(
                "GET", f"/v1/citizens/{nhung}/record", {**client.token("bv-khong-audit", "record:read"), **purpose()})
            assert status == 503 and headers["retry-after"] == "5"
            assert body["issue"][0]["details"]["text"] == "audit-unavailable"
            assert "Nhung" not in orjson.dumps(body).decode()
    finally:
        await running.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_api_role_serves_until_sigterm_and_logs_no_identifier(hub_stack: Settings, nhung: str,
                                                                        tmp_path: Path) -> None:
    """``service.run(settings)`` as the ``hub`` command will start it: a process of its own, settings from
    HSSK_* variables, JSON logs with route templates only, a clean exit on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from hub.settings import REPO_ROOT
    from tests.conftest import TEST_ENV

    port, token_file = _free_port(), tmp_path / "api-tokens.json"
    token = tokens.issue(token_file, "bv-nhan-dan-115", ["record:read"])
    env = {**os.environ, **TEST_ENV, "HSSK_API_PORT": str(port), "HSSK_API_TOKEN_FILE": str(token_file)}
    code = ("from hub import logging as hub_logging; from hub.api import service; from hub.settings import Settings; "
            "s = Settings.from_env(); hub_logging.configure(s.log_level); service.run(s)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                try:
                    await _wait_healthy(session, url)
                    break
                except aiohttp.ClientConnectionError:
                    assert proc.poll() is None and loop.time() < deadline, "the api role did not start"
                    await asyncio.sleep(0.2)
            client = Client(url, token_file, session)
            auth = {"Authorization": f"Bearer {token}", **purpose()}
            status, _, bundle = await client.call("POST", "/v1/record/search", auth, json={"cccd": NHUNG.cccd})
            assert status == 200 and bundle["entry"][0]["resource"]["name"][0]["text"] == "Đặng Thị Hồng Nhung"
            assert (await client.call("POST", "/v1/record/search", auth, json={"cccd": "079199999997"}))[0] == 404
        proc.send_signal(signal.SIGTERM)
        _, logs = await asyncio.to_thread(proc.communicate, timeout=20)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [orjson.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "request" and e.get("route") == "POST /v1/record/search" for e in lines)
    assert any(e.get("event") == "api stopped" for e in lines)
    assert NHUNG.cccd not in logs and "079199999997" not in logs and "Nhung" not in logs and "Đặng" not in logs
