"""The reference receiver (deploy/local/receiver): it verifies every push with hub.fanout.signing, answers per the
webhook wire contract, stores each idempotency key once in order of arrival, and serves back what it got."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from deploy.local.receiver.app import Receiver, build_app, citizen_of
from deploy.local.receiver.commit import GroupCommit
from deploy.local.receiver.store import DeliveryStore, Push
from hub.fanout.signing import IDEMPOTENCY_HEADER, SUBSCRIPTION_HEADER, sign

SECRET = b"bi-mat-cua-so-suc-khoe"
NOW = 1_795_000_000.0  # 2026-11-18, the receiver's clock in these tests
CITIZEN = "c-7f3a9e21"


def health_book(citizen_id: str = CITIZEN, version: int = 1, name: str = "Nguyễn Thị Hồng Nhung") -> dict[str, Any]:
    """A delivery document as the fan-out sends it (hub/fanout/formats.py, format health-book)."""
    book = {"citizen_id": citizen_id, "record_version": version,
            "administrative": {"name": name, "gender": "female", "birth_date": "1988-03-14",
                               "address": "12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh"},
            "history": {"allergies": [], "illnesses": [], "immunizations": [{"vaccine": "Viêm gan B"}]},
            "encounters": [{"id": "enc-1", "facility": "79001", "class": "AMB"}],
            "summary": {"encounter_count": 1}}
    return {"schema": "hssk.out.v1", "subscription": "health-book", "format": "health-book",
            "idempotency_key": f"{citizen_id}-{version}", "citizen_id": citizen_id, "record_version": version,
            "health_book": book}


def merge_notice(retired: str, survivor: str) -> dict[str, Any]:
    return {"schema": "hssk.out.v1", "subscription": "health-book", "format": "merged",
            "idempotency_key": f"merge-{retired}", "citizen_id": retired, "event_id": "e-merge",
            "merged": {"retired_citizen_id": retired, "merged_into": survivor}}


@dataclass
class Client:
    url: str
    session: aiohttp.ClientSession
    store: DeliveryStore

    async def push(self, body: bytes | dict[str, Any], *, key: str = "k-1", subscription: str = "health-book",
                   secret: bytes = SECRET, signed_at: float = NOW, content_type: str = "application/json",
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = {"Content-Type": content_type, IDEMPOTENCY_HEADER: key, SUBSCRIPTION_HEADER: subscription,
                **sign(secret, raw, now=signed_at), **(headers or {})}
        async with self.session.post(self.url + "/deliveries", data=raw, headers=sent) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url + path) as resp:
            return resp.status, await resp.json(content_type=None)


@asynccontextmanager
async def serving(tmp_path: Path, previous_secret: bytes = b"") -> AsyncIterator[Client]:
    """A real receiver on a free port, over a store in ``tmp_path``, with a client for it."""
    store = DeliveryStore(tmp_path / "receiver" / "deliveries.sqlite3")
    commit = GroupCommit(store)
    app = build_app(Receiver(commit, SECRET, clock=lambda: NOW, previous_secret=previous_secret))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as session:
        yield Client(f"http://127.0.0.1:{runner.addresses[0][1]}", session, store)
    await runner.cleanup()
    await commit.close()


@pytest.fixture()
async def receiver(tmp_path: Path) -> AsyncIterator[Client]:
    async with serving(tmp_path) as client:
        yield client


class TestSignature:
    async def test_a_correctly_signed_push_is_stored_with_201(self, receiver: Client) -> None:
        status, answer = await receiver.push(health_book())
        assert (status, answer) == (201, {"status": "stored", "seq": 1})

    @pytest.mark.parametrize(("change", "reason"), [
        ({"secret": b"khong-phai-bi-mat"}, "does not match"),
        ({"signed_at": NOW - 301}, "outside the 300 s window"),
        ({"signed_at": NOW + 301}, "outside the 300 s window"),
        ({"headers": {"X-HSSK-Signature": ""}}, "missing"),
        ({"headers": {"X-HSSK-Timestamp": "hôm nay"}}, "not unix seconds"),
    ])
    async def test_a_bad_or_stale_signature_is_401_with_the_reason_and_nothing_is_stored(
            self, receiver: Client, change: dict[str, Any], reason: str) -> None:
        status, answer = await receiver.push(health_book(), **change)
        assert status == 401 and reason in answer["error"]
        assert receiver.store.count() == 0

    async def test_a_body_changed_after_signing_is_401(self, receiver: Client) -> None:
        raw = orjson.dumps(health_book())
        headers = sign(SECRET, raw, now=NOW)
        tampered = raw.replace("Nhung".encode(), "Nhân".encode())
        status, answer = await receiver.push(tampered, headers=headers)
        assert status == 401 and "does not match" in answer["error"]

    async def test_the_signature_is_checked_before_the_body_rules(self, receiver: Client) -> None:
        """An unsigned caller gets 401 even for a body that is not JSON: it learns nothing about the rules."""
        status, _ = await receiver.push(b"not json", secret=b"sai")
        assert status == 401


class TestSecretRotation:
    """While the sender's secret changes, pushes signed with the old one (retries, replays) still land."""

    OLD = b"bi-mat-cu-cua-so-suc-khoe"

    @pytest.fixture()
    async def rotating(self, tmp_path: Path) -> AsyncIterator[Client]:
        async with serving(tmp_path, previous_secret=self.OLD) as client:
            yield client

    async def test_the_new_and_the_previous_secret_are_both_accepted(self, rotating: Client) -> None:
        assert (await rotating.push(health_book(), key="k-new"))[0] == 201
        assert (await rotating.push(health_book(), key="k-old", secret=self.OLD))[0] == 201
        assert rotating.store.count() == 2

    async def test_any_other_secret_or_a_stale_old_signature_is_still_401(self, rotating: Client) -> None:
        status, answer = await rotating.push(health_book(), key="k-x", secret=b"khong-phai-bi-mat")
        assert status == 401 and "does not match" in answer["error"]
        status, answer = await rotating.push(health_book(), key="k-y", secret=self.OLD, signed_at=NOW - 301)
        assert status == 401 and "outside the 300 s window" in answer["error"]
        assert rotating.store.count() == 0

    async def test_without_a_rotation_the_old_secret_is_refused(self, receiver: Client) -> None:
        status, _ = await receiver.push(health_book(), secret=self.OLD)
        assert status == 401


class TestBadRequests:
    @pytest.mark.parametrize(("body", "kwargs", "status", "reason"), [
        (b"{\"citizen_id\": ", {}, 400, "not JSON"),
        (b"[1, 2]", {}, 400, "JSON object"),
        (b"{}", {"content_type": "text/plain"}, 415, "application/json"),
        (b"{}", {"key": ""}, 400, "Idempotency-Key"),
        (b"{}", {"subscription": ""}, 400, "X-HSSK-Subscription"),
    ])
    async def test_a_signed_but_bad_request_is_4xx_with_a_message(self, receiver: Client, body: bytes,
                                                                  kwargs: dict[str, Any], status: int,
                                                                  reason: str) -> None:
        got, answer = await receiver.push(body, **kwargs)
        assert got == status and reason in answer["error"]
        assert receiver.store.count() == 0


class TestIdempotency:
    async def test_a_repeated_key_is_200_and_stored_once(self, receiver: Client) -> None:
        assert (await receiver.push(health_book(), key="hb-1"))[0] == 201
        status, answer = await receiver.push(health_book(), key="hb-1")
        assert (status, answer) == (200, {"status": "duplicate", "seq": 1, "same_body": True})
        assert receiver.store.count() == 1

    async def test_a_repeated_key_with_other_bytes_keeps_the_first_body_and_says_so(self, receiver: Client) -> None:
        await receiver.push(health_book(name="Trần Văn Bình"), key="hb-1")
        status, answer = await receiver.push(health_book(name="Trần Văn Bính"), key="hb-1")
        assert status == 200 and answer["same_body"] is False
        [only] = receiver.store.deliveries()
        assert orjson.loads(only.body)["health_book"]["administrative"]["name"] == "Trần Văn Bình"


class TestGroupCommit:
    async def test_concurrent_pushes_are_all_stored_once_each_with_their_own_sequence_number(
            self, receiver: Client) -> None:
        answers = await asyncio.gather(*(receiver.push(health_book(f"c-{i % 7}", i), key=f"k-{i}")
                                         for i in range(60)))
        assert [status for status, _ in answers] == [201] * 60
        assert sorted(a["seq"] for _, a in answers) == list(range(1, 61))
        assert receiver.store.count() == 60

    async def test_the_same_key_sent_concurrently_is_stored_once(self, receiver: Client) -> None:
        answers = await asyncio.gather(*(receiver.push(health_book(), key="same") for _ in range(10)))
        assert sorted(status for status, _ in answers) == [200] * 9 + [201]
        assert {a["seq"] for _, a in answers} == {1} and receiver.store.count() == 1

    async def test_a_push_the_store_cannot_write_is_503_so_the_sender_retries(self, receiver: Client) -> None:
        receiver.store.close()  # every write now fails inside SQLite
        status, answer = await receiver.push(health_book())
        assert status == 503 and "send it again" in answer["error"]


class TestReads:
    async def test_deliveries_of_one_citizen_in_order_of_arrival_with_their_bodies(self, receiver: Client) -> None:
        for version, citizen in [(1, CITIZEN), (1, "c-other"), (2, CITIZEN), (3, CITIZEN)]:
            await receiver.push(health_book(citizen, version), key=f"{citizen}-{version}")
        status, answer = await receiver.get(f"/deliveries?citizen={CITIZEN}")
        assert status == 200
        rows = answer["deliveries"]
        assert [r["body"]["record_version"] for r in rows] == [1, 2, 3]
        assert [r["seq"] for r in rows] == [1, 3, 4]
        assert rows[0]["subscription"] == "health-book" and rows[0]["idempotency_key"] == f"{CITIZEN}-1"
        assert rows[0]["format"] == "health-book" and rows[0]["citizen_id"] == CITIZEN
        assert rows[0]["signed_at"] == int(NOW) and rows[0]["received_at"].endswith("+00:00")
        assert rows[0]["body"]["health_book"]["administrative"]["name"] == "Nguyễn Thị Hồng Nhung"
        assert [r["seq"] for r in (await receiver.get("/deliveries?after=3"))[1]["deliveries"]] == [4]

    async def test_the_latest_health_book_of_a_citizen(self, receiver: Client) -> None:
        await receiver.push(health_book(version=1), key="a")
        await receiver.push(health_book(version=2, name="Nguyễn Thị Hồng Nhung (đã cập nhật)"), key="b")
        await receiver.push({"format": "event", "citizen_id": CITIZEN, "event": {}}, key="c")  # not a health book
        status, answer = await receiver.get(f"/health-books/{CITIZEN}")
        assert status == 200 and answer["record_version"] == 2 and answer["seq"] == 2
        assert answer["health_book"]["administrative"]["name"] == "Nguyễn Thị Hồng Nhung (đã cập nhật)"

    async def test_a_merge_notice_after_the_last_book_points_to_the_survivor(self, receiver: Client) -> None:
        await receiver.push(health_book(version=1), key="a")
        await receiver.push(merge_notice(CITIZEN, "c-survivor"), key="m")
        status, answer = await receiver.get(f"/health-books/{CITIZEN}")
        assert status == 200 and answer["merged_into"] == "c-survivor" and "health_book" not in answer

    async def test_an_unknown_citizen_is_404(self, receiver: Client) -> None:
        status, answer = await receiver.get("/health-books/c-khong-co")
        assert status == 404 and "no health book" in answer["error"]

    async def test_bad_paging_parameters_are_400(self, receiver: Client) -> None:
        async with receiver.session.get(receiver.url + "/deliveries?after=-1") as resp:
            assert resp.status == 400

    async def test_healthz_counts_what_is_stored(self, receiver: Client) -> None:
        await receiver.push(health_book(), key="a")
        assert await receiver.get("/healthz") == (200, {"status": "ok", "deliveries": 1})


class TestStore:
    def test_what_was_acknowledged_survives_a_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "deliveries.sqlite3"
        store = DeliveryStore(path)
        store.add(Push("k", "health-book", CITIZEN, "health-book", int(NOW), "2026-11-18T00:00:00+00:00",
                       b'{"citizen_id": "x"}'))
        store.close()
        again = DeliveryStore(path)
        assert [(d.seq, d.idempotency_key, d.body) for d in again.deliveries()] == [(1, "k", b'{"citizen_id": "x"}')]
        assert again.add(Push("k", "health-book", CITIZEN, "health-book", int(NOW), "later", b"{}")).duplicate
        again.close()
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


class TestCitizenOf:
    @pytest.mark.parametrize(("body", "expected"), [
        ({"citizen_id": "c-1"}, "c-1"),
        (merge_notice("c-retired", "c-survivor"), "c-retired"),
        ({"health_book": {"citizen_id": "c-2"}}, "c-2"),
        ({"event": {"citizen_id": "c-3", "type": "encounter.recorded"}}, "c-3"),
        ({"resourceType": "Bundle"}, None),
        ({"citizen_id": ""}, None),
        ({"citizen_id": 7}, None),
    ])
    def test_the_citizen_a_push_is_about(self, body: dict[str, Any], expected: str | None) -> None:
        assert citizen_of(body) == expected
