"""The review queue over HTTP with a stand-in for the MPI's Redis side: list without personal data, show only
after an audit event per citizen, accept emits citizen.merged, reject, 403/404/409/400/503 as documented."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from hub.api.app import Deps, build_app
from hub.api.audit import AuditLog
from hub.api.ratelimit import RateLimiter
from hub.api.tokens import TokenFile
from hub.identity.review import MergeResult, ReviewError
from hub.settings import Settings
from tests.unit.test_api_app import PURPOSE, Api, AuditProducer, Links, Records

EXISTING, OTHER = "cz-" + "a" * 32, "cz-" + "b" * 32
CASE = {"id": "c0ffee00c0ffee00", "status": "open", "created": "2026-12-01T02:00:00Z",
        "reason": "one CCCD, two people?", "weight": 4.2, "flags": ["strong_id_conflict"],
        "citizens": {"existing": EXISTING, "other": OTHER},
        "records": {"existing": {"name": "Trần Văn Hùng", "birth_date": "1980-05-01"},
                    "other": {"name": "Trần Thị Hương", "birth_date": "1992-11-20"}}}


class Desk:
    """Stands in for hub.identity.review.Mpi (Redis): the case store and the merge it makes."""

    def __init__(self) -> None:
        self.cases_by_id = {CASE["id"]: copy.deepcopy(CASE)}
        self.merges: list[tuple[str, str]] = []
        self.down = False

    async def cases(self, status: str = "open", limit: int = 100) -> list[dict]:
        if self.down:
            raise ConnectionError("Redis is down")
        return [c for c in self.cases_by_id.values() if status in ("all", c["status"])][:limit]

    async def queue_size(self) -> int:
        return sum(c["status"] == "open" for c in self.cases_by_id.values())

    async def case(self, cid: str) -> dict:
        if cid not in self.cases_by_id:
            raise ReviewError(f"no review case {cid}")
        return copy.deepcopy(self.cases_by_id[cid])

    async def decide(self, doc: dict, status: str, actor: str) -> dict:
        self.cases_by_id[doc["id"]] = {**doc, "status": status, "decided": {"by": actor}}
        return self.cases_by_id[doc["id"]]

    async def merge(self, survivor: str, retired: str, cause: str) -> MergeResult:
        self.merges.append((survivor, retired))
        return MergeResult(survivor, retired, cause)


@pytest.fixture()
async def desk_api(tmp_path: Path) -> AsyncIterator[tuple[Api, Desk, AuditProducer]]:
    audit, events, desk = AuditProducer(), AuditProducer(), Desk()
    deps = Deps(settings=Settings(), tokens=TokenFile(tmp_path / "t.json"), limiter=RateLimiter(100.0, 100),
                records=Records({}), links=Links({}), audit=AuditLog(audit), review=desk, events=events)
    runner = web.AppRunner(build_app(deps), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{runner.addresses[0][1]}", tmp_path / "t.json", audit, session), desk, events
    await runner.cleanup()


async def test_the_list_has_no_personal_data_and_needs_review_scope(desk_api) -> None:
    api, _, _ = desk_api
    assert (await api.call("GET", "/v1/review-queue", api.token("bv", "record:read")))[0] == 403
    status, _, body = await api.call("GET", "/v1/review-queue", api.token("steward", "review:write"))
    assert status == 200 and body["open"] == 1 and [c["id"] for c in body["cases"]] == [CASE["id"]]
    assert "Trần" not in orjson.dumps(body).decode() and api.audit.events == []


@pytest.mark.parametrize("query", ["?status=maybe", "?limit=0", "?limit=many", "?limit=5000"])
async def test_bad_list_parameters_are_400(desk_api, query: str) -> None:
    api, _, _ = desk_api
    status, _, body = await api.call("GET", "/v1/review-queue" + query, api.token("steward", "review:write"))
    assert status == 400 and body["issue"][0]["details"]["text"] in ("invalid-status", "invalid-limit")


async def test_show_audits_both_citizens_before_answering(desk_api) -> None:
    api, _, _ = desk_api
    auth = {**api.token("steward", "review:write"), "X-Purpose-Of-Use": "identity-review"}
    status, _, body = await api.call("GET", f"/v1/review-queue/{CASE['id']}", auth)
    assert status == 200 and body["records"]["other"]["name"] == "Trần Thị Hương"
    audited = sorted(orjson.loads(e)["citizen_id"] for e in api.audit.events)
    assert audited == [EXISTING, OTHER] and all(b'"actor":"steward"' in e for e in api.audit.events)


async def test_show_without_audit_shows_nothing(desk_api) -> None:
    api, _, _ = desk_api
    api.audit.fail = True
    status, _, body = await api.call("GET", f"/v1/review-queue/{CASE['id']}",
                                     {**api.token("steward", "review:write"), **PURPOSE})
    assert status == 503 and "Trần" not in orjson.dumps(body).decode()


async def test_accept_merges_and_emits_citizen_merged_then_a_second_decision_is_409(desk_api) -> None:
    api, desk, events = desk_api
    auth = api.token("steward", "review:write")
    status, _, body = await api.call("POST", f"/v1/review-queue/{CASE['id']}/accept", auth)
    assert status == 200 and (body["survivor"], body["retired"]) == (EXISTING, OTHER)
    assert desk.merges == [(EXISTING, OTHER)] and desk.cases_by_id[CASE["id"]]["decided"] == {"by": "steward"}
    [event] = [orjson.loads(e) for e in events.events]
    assert event["type"] == "citizen.merged" and event["citizen_id"] == EXISTING
    assert event["payload"]["link"] == [{"other": {"reference": f"Patient/{OTHER}"}, "type": "replaces"}]
    status, _, body = await api.call("POST", f"/v1/review-queue/{CASE['id']}/reject", auth)
    assert status == 409 and "already accepted" in body["issue"][0]["diagnostics"]


async def test_reject_records_the_decision_and_merges_nothing(desk_api) -> None:
    api, desk, events = desk_api
    status, _, _ = await api.call("POST", f"/v1/review-queue/{CASE['id']}/reject", api.token("s", "review:write"))
    assert status == 200 and desk.cases_by_id[CASE["id"]]["status"] == "rejected"
    assert desk.merges == [] and events.events == []


async def test_unknown_case_is_404_and_a_down_store_is_503(desk_api) -> None:
    api, desk, _ = desk_api
    auth = api.token("steward", "review:write")
    assert (await api.call("POST", "/v1/review-queue/ffff/accept", auth))[0] == 404
    desk.down = True
    status, headers, _ = await api.call("GET", "/v1/review-queue", auth)
    assert status == 503 and headers["retry-after"] == "5"
