"""The API's answers over a real loopback socket, with stand-ins for Redis and Kafka: 401/403/404/429/400/
501/503 as documented, a record sent only after its audit event was confirmed, no identifier in any log."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from hub.api import tokens
from hub.api.app import Deps, build_app
from hub.api.audit import AuditLog
from hub.api.ratelimit import RateLimiter
from hub.api.tokens import TokenFile
from hub.envelope import SYSTEM_CCCD, Identifier
from hub.errors import DeliveryError
from hub.identity.resolve import identity_key
from hub.record.apply import empty_record
from hub.settings import Settings

SETTINGS = Settings()
CITIZEN = "cz-0123456789abcdef0123456789abcdef"
RETIRED = "cz-fedcba9876543210fedcba9876543210"  # merged into CITIZEN: loading it answers CITIZEN's record
CCCD = "079190004567"
PURPOSE = {"X-Purpose-Of-Use": "TREAT"}


def vo_thi_mai() -> dict[str, Any]:
    record = empty_record(CITIZEN)
    record["version"] = 1
    record["identifiers"] = [{"system": SYSTEM_CCCD, "value": CCCD}]
    record["demographics"] = {"name": {"text": "Võ Thị Mai", "family": "Võ", "given": ["Thị", "Mai"]},
                              "gender": "female", "birth_date": "1990-03-04", "address": None, "telecom": [],
                              "provenance": {}}
    return record


class Records:
    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records

    async def load(self, citizen_id: str) -> dict[str, Any] | None:
        return self.records.get(citizen_id)


class Links:
    def __init__(self, links: dict[str, str]) -> None:
        self.links = links

    async def lookup(self, key: str) -> str | None:
        return self.links.get(key)


class AuditProducer:
    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.fail = False

    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers=()) -> tuple[int, int]:
        if self.fail:
            raise DeliveryError("writing to audit.access: Kafka did not confirm the write")
        self.events.append(value)
        return 0, len(self.events)


class Api:
    def __init__(self, url: str, token_file: Path, audit: AuditProducer, session: aiohttp.ClientSession) -> None:
        self.url, self.token_file, self.audit, self.session = url, token_file, audit, session

    def token(self, client: str, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(self.token_file, client, list(scopes))}"}

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body


@pytest.fixture()
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    audit = AuditProducer()
    token_file = tmp_path / "api-tokens.json"
    deps = Deps(settings=SETTINGS, tokens=TokenFile(token_file), limiter=RateLimiter(1.0, 3),
                records=Records({CITIZEN: vo_thi_mai(), RETIRED: vo_thi_mai()}),
                links=Links({identity_key(SETTINGS.pseudonym_key, Identifier(SYSTEM_CCCD, CCCD)): CITIZEN}),
                audit=AuditLog(audit))
    runner = web.AppRunner(build_app(deps), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{port}", token_file, audit, session)
    await runner.cleanup()


RECORD = f"/v1/citizens/{CITIZEN}/record"


class TestAuthentication:
    async def test_no_token_is_401_with_a_bearer_challenge(self, api: Api) -> None:
        status, headers, body = await api.call("GET", RECORD, PURPOSE)
        assert status == 401 and headers["www-authenticate"] == 'Bearer realm="hssk"'
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["details"]["text"] == "token-required"
        assert body["issue"][0]["code"] == "login"

    @pytest.mark.parametrize("header", ["Bearer hssk_not-a-real-token", "Basic Ym9iOnB3"])
    async def test_an_unknown_token_or_scheme_is_401(self, api: Api, header: str) -> None:
        status, headers, _ = await api.call("GET", RECORD, {**PURPOSE, "Authorization": header})
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")

    async def test_a_revoked_token_is_401_invalid_token(self, api: Api) -> None:
        auth = api.token("bv-an-binh", "record:read")
        assert (await api.call("GET", RECORD, {**auth, **PURPOSE}))[0] == 200
        tokens.revoke(api.token_file, "bv-an-binh")
        status, headers, body = await api.call("GET", RECORD, {**auth, **PURPOSE})
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
        assert body["issue"][0]["details"]["text"] == "invalid-token"

    async def test_a_token_without_the_scope_is_403(self, api: Api) -> None:
        status, headers, body = await api.call("GET", RECORD, {**api.token("dashboard", "ops:read"), **PURPOSE})
        assert status == 403 and 'scope="record:read"' in headers["www-authenticate"]
        assert body["issue"][0]["code"] == "forbidden"
        assert api.audit.events == []

    async def test_public_endpoints_need_no_token(self, api: Api) -> None:
        assert (await api.call("GET", "/health"))[0] == 200
        status, _, spec = await api.call("GET", "/openapi.json")
        assert status == 200 and spec["openapi"].startswith("3.")


class TestMetrics:
    async def test_metrics_need_ops_read_and_carry_no_identifier(self, api: Api) -> None:
        auth = api.token("prometheus", "ops:read")
        await api.call("POST", "/v1/record/search", {**api.token("bv", "record:read"), **PURPOSE}, json={"cccd": CCCD})
        assert (await api.call("GET", "/metrics", api.token("bv-doc", "record:read")))[0] == 403
        async with api.session.get(api.url + "/metrics", headers=auth) as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            text = await resp.text()
        assert 'hssk_api_requests_total{route="POST /v1/record/search",status="200"}' in text
        assert 'hssk_api_record_reads_total{client="bv",route="POST /v1/record/search"}' in text
        assert CCCD not in text and CITIZEN not in text


class TestRateLimit:
    async def test_429_with_retry_after_and_other_clients_unaffected(self, api: Api) -> None:
        busy, calm = api.token("bv-busy", "record:read"), api.token("bv-calm", "record:read")
        statuses = [(await api.call("GET", RECORD, {**busy, **PURPOSE}))[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        status, headers, body = await api.call("GET", RECORD, {**busy, **PURPOSE})
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert body["issue"][0]["code"] == "throttled"
        assert (await api.call("GET", RECORD, {**calm, **PURPOSE}))[0] == 200


class TestRecordRead:
    async def test_a_read_returns_the_bundle_after_one_audit_event(self, api: Api) -> None:
        status, headers, body = await api.call("GET", RECORD, {**api.token("bv-cho-ray", "record:read"),
                                                               "X-Purpose-Of-Use": "TREAT"})
        assert status == 200 and headers["content-type"].startswith("application/fhir+json")
        assert body["resourceType"] == "Bundle" and body["entry"][0]["resource"]["name"][0]["text"] == "Võ Thị Mai"
        [event] = api.audit.events
        assert b'"actor":"bv-cho-ray"' in event and CITIZEN.encode() in event and b'"purpose":"TREAT"' in event
        assert b'"endpoint":"GET /v1/citizens/{citizen_id}/record"' in event
        assert headers["x-request-id"].encode() in event

    async def test_a_merged_citizen_is_read_and_audited_as_its_survivor(self, api: Api) -> None:
        """The store follows a merge redirect; the audit names the citizen whose data was shown."""
        retired = RETIRED
        status, _, body = await api.call("GET", f"/v1/citizens/{retired}/record",
                                         {**api.token("bv-cho-ray", "record:read"), **PURPOSE})
        assert status == 200 and body["entry"][0]["resource"]["name"][0]["text"] == "Võ Thị Mai"
        [event] = api.audit.events
        assert CITIZEN.encode() in event and retired.encode() not in event

    async def test_the_purpose_may_come_as_a_query_parameter(self, api: Api) -> None:
        auth = api.token("vneid", "record:read")
        status, _, book = await api.call("GET", f"/v1/citizens/{CITIZEN}/health-book?purpose=citizen-request", auth)
        assert status == 200 and book["administrative"]["name"] == "Võ Thị Mai"
        assert b'"purpose":"citizen-request"' in api.audit.events[0]

    async def test_no_audit_no_record(self, api: Api) -> None:
        """If Kafka does not confirm the audit event, the answer is 503 and carries no record data."""
        api.audit.fail = True
        status, headers, body = await api.call("GET", RECORD, {**api.token("bv-cho-ray", "record:read"), **PURPOSE})
        assert status == 503 and headers["retry-after"] == "5"
        assert body["issue"][0]["details"]["text"] == "audit-unavailable"
        assert "Võ" not in str(body) and api.audit.events == []

    @pytest.mark.parametrize("purpose", [None, "", "x" * 65, "TREAT 1", "cccd-079190004567", "điều-trị"])
    async def test_a_missing_or_malformed_purpose_is_400(self, api: Api, purpose: str | None) -> None:
        headers = api.token("bv-cho-ray", "record:read")
        if purpose is not None:
            headers["X-Purpose-Of-Use"] = purpose
        status, _, body = await api.call("GET", RECORD, headers)
        assert status == 400 and body["issue"][0]["details"]["text"] in ("purpose-required", "invalid-purpose")
        assert api.audit.events == []

    async def test_an_unknown_citizen_is_404_and_not_audited(self, api: Api) -> None:
        status, _, body = await api.call("GET", "/v1/citizens/cz-ffffffffffffffffffffffffffffffff/record",
                                         {**api.token("bv-cho-ray", "record:read"), **PURPOSE})
        assert status == 404 and body["issue"][0]["code"] == "not-found"
        assert api.audit.events == []

    async def test_a_malformed_citizen_id_is_400(self, api: Api) -> None:
        status, _, body = await api.call("GET", "/v1/citizens/079190004567/record",
                                         {**api.token("bv-cho-ray", "record:read"), **PURPOSE})
        assert status == 400 and body["issue"][0]["details"]["text"] == "invalid-citizen-id"


class TestSearch:
    async def test_search_by_cccd(self, api: Api) -> None:
        status, _, body = await api.call("POST", "/v1/record/search", {**api.token("bv", "record:read"), **PURPOSE},
                                         json={"cccd": CCCD})
        assert status == 200 and body["entry"][0]["resource"]["id"] == CITIZEN
        assert len(api.audit.events) == 1

    @pytest.mark.parametrize("payload, status, code", [
        ({"cccd": "07919000456"}, 400, "invalid-cccd"),
        ({"bhyt": "XX"}, 400, "invalid-bhyt"),
        ({"ten": "Võ Thị Mai"}, 400, "invalid-query"),
        ({"cccd": "079190009999"}, 404, "no-such-citizen"),
        ({"bhyt": "HC4797901234567"}, 404, "no-such-citizen"),
    ])
    async def test_search_answers(self, api: Api, payload: dict, status: int, code: str) -> None:
        got, _, body = await api.call("POST", "/v1/health-book/search", {**api.token("bv", "record:read"), **PURPOSE},
                                      json=payload)
        assert (got, body["issue"][0]["details"]["text"]) == (status, code)
        assert api.audit.events == []

    async def test_a_body_that_is_not_json_is_400(self, api: Api) -> None:
        status, _, body = await api.call("POST", "/v1/record/search", {**api.token("bv", "record:read"), **PURPOSE},
                                         data=b"cccd=079190004567")
        assert status == 400 and body["issue"][0]["details"]["text"] == "invalid-json"

    async def test_a_huge_body_is_413(self, api: Api) -> None:
        status, _, body = await api.call("POST", "/v1/record/search", {**api.token("bv", "record:read"), **PURPOSE},
                                         data=b"{" + b" " * 20000 + b"}")
        assert status == 413 and body["resourceType"] == "OperationOutcome"


class TestOtherAnswers:
    async def test_unknown_routes_and_methods(self, api: Api) -> None:
        status, _, body = await api.call("GET", "/v1/nothing-here")
        assert status == 404 and body["issue"][0]["details"]["text"] == "no-such-route"
        status, headers, body = await api.call("DELETE", RECORD)
        assert status == 405 and "GET" in headers["allow"]


async def test_no_identifier_or_name_reaches_the_logs(api: Api) -> None:
    auth = {**api.token("bv-cho-ray", "record:read"), **PURPOSE}
    with capture_logs() as logs:
        await api.call("POST", "/v1/record/search", auth, json={"cccd": CCCD})
        await api.call("POST", "/v1/record/search", auth, json={"cccd": "079190009999"})
        await api.call("GET", RECORD, auth)
    assert any(e.get("route") == "POST /v1/record/search" for e in logs)
    text = str(logs)
    assert CCCD not in text and "079190009999" not in text and "Võ" not in text
