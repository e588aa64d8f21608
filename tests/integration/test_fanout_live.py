"""The delivery engine on the real stack: changes produced straight onto record.changes, records in Redis,
real Kafka subscribers on out.<name>, and a real HTTP webhook (an aiohttp server inside the test).

Each test runs its own Engine in this process with subscriptions of its own (fresh names, so fresh consumer
groups) and a facility code of its own in the filter, so the changes of other tests and of the deployed
subscriptions do not reach it.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer

from hub.envelope import Envelope, Source, Subject
from hub.fanout import config, signing
from hub.fanout.engine import Engine
from hub.fanout.state import SubscriptionState
from hub.identity.events import merged_event
from hub.ops.lag import measure
from hub.record.apply import empty_record
from hub.record.store import record_key
from hub.settings import Settings
from hub.topics import RECORD_CHANGES, subscription_dlq, subscription_out
from tests.integration.kafka_tools import read_until

pytestmark = pytest.mark.integration
SECRET = b"test-webhook-secret"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def facility() -> str:
    return f"T{uuid.uuid4().int % 10**7:07d}"


def record(citizen_id: str, birth_date: str, version: int = 1, **sections: Any) -> dict[str, Any]:
    r = empty_record(citizen_id)
    r["version"] = version
    r["updated_at"] = "2026-12-01T09:00:00+07:00"
    r["demographics"] = {"name": {"family": "Lê", "given": ["Thị", "Hồng"], "text": "Lê Thị Hồng"}, "gender": "female",
                         "birth_date": birth_date, "address": None, "telecom": [], "provenance": {}}
    r.update(sections)
    return r


def change(citizen_id: str, fac: str, kind: str = "encounter.recorded", version: int = 1,
           sensitivity: tuple[str, ...] = (), n: int = 0) -> Envelope:
    payload = {"resourceType": "Encounter", "id": f"enc-{citizen_id[:6]}-{n}", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
    if kind == "patient.updated":
        payload = {"resourceType": "Patient", "id": citizen_id}
    return Envelope(event_id=str(uuid.uuid4()), type=kind, occurred_at="2026-12-01T08:00:00+07:00",
                    recorded_at="2026-12-01T08:00:01+07:00", source=Source("hl7v2", fac, f"MSG{n}"),
                    subject=Subject(), payload=payload, sensitivity=sensitivity, citizen_id=citizen_id,
                    record_version=version)


async def save(settings: Settings, *records: dict[str, Any]) -> None:
    client = aioredis.from_url(settings.redis_url)
    try:
        await client.mset({record_key(r["citizen_id"]): orjson.dumps(r) for r in records})
    finally:
        await client.aclose()


async def produce(settings: Settings, *events: Envelope) -> list[Any]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return [await producer.send_and_wait(RECORD_CHANGES.name, e.to_json(), key=(e.citizen_id or "").encode())
                for e in events]
    finally:
        await producer.stop()


def subs(text: str) -> tuple[config.Subscription, ...]:
    return config.loads(text, env={"HOOK_SECRET": SECRET.decode()})


@dataclass
class Hook:
    """A webhook receiver: answers from ``script`` (then 200), records every request it gets."""

    script: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def stored(self) -> list[dict[str, Any]]:
        """Bodies answered 2xx, first time per idempotency key, in order of arrival."""
        seen, out = set(), []
        for r in self.requests:
            if r["status"] == 200 and r["key"] not in seen:
                seen.add(r["key"])
                out.append(r["body"])
        return out


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    state = Hook()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        signing.verify(SECRET, body, request.headers.get(signing.TIMESTAMP_HEADER),
                       request.headers.get(signing.SIGNATURE_HEADER))
        status = state.script.pop(0) if state.script else 200
        state.requests.append({"key": request.headers[signing.IDEMPOTENCY_HEADER], "status": status,
                               "subscription": request.headers[signing.SUBSCRIPTION_HEADER],
                               "body": orjson.loads(body)})
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/push", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the port the OS chose
    state.url = f"http://127.0.0.1:{port}/push"
    yield state
    await runner.cleanup()


async def running(settings: Settings, subscriptions: tuple[config.Subscription, ...]) -> asyncio.Task[None]:
    task = asyncio.create_task(Engine(settings, subscriptions).run())
    await asyncio.sleep(0.1)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def eventually(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def kafka_sub(name: str, fac: str, more_filter: str = "") -> str:
    return f"""
[[subscription]]
name = "{name}"
format = "event"
[subscription.delivery]
kind = "kafka"
[subscription.filter]
facilities = ["{fac}"]
{more_filter}
"""


def webhook_sub(name: str, url: str, fac: str, fmt: str = "event", extra: str = "", attempts: int = 20) -> str:
    return f"""
[[subscription]]
name = "{name}"
format = "{fmt}"
{extra}
[subscription.delivery]
kind = "webhook"
url = "{url}"
secret_env = "HOOK_SECRET"
timeout_s = 2
[subscription.filter]
facilities = ["{fac}"]
[subscription.retry]
max_attempts = {attempts}
first_s = 0.05
max_s = 0.2
"""


async def test_kafka_delivery_follows_the_filter_and_the_cohort(hub_stack: Settings) -> None:
    """Only encounters of the facility, for citizens aged 60 or more, reach out.<name>, as hssk.out.v1 documents."""
    name, fac = unique("elderly"), facility()
    old, young = f"cit-{uuid.uuid4().hex}", f"cit-{uuid.uuid4().hex}"
    await save(hub_stack, record(old, "1950-03-02"), record(young, "2001-07-15"))
    wanted = change(old, fac, n=1)
    await produce(hub_stack, change(old, fac, "patient.updated"), wanted, change(young, fac, n=2),
                  change(old, facility(), n=3))
    task = await running(hub_stack, subs(kafka_sub(name, fac, 'event_types = ["encounter.recorded"]\n'
                                                           "cohorts = [{ min_age = 60 }]")))
    try:
        topic = subscription_out(name).name
        got = await read_until(hub_stack, topic, lambda recs: len(recs) >= 1, timeout_s=30)
        await asyncio.sleep(1.0)  # anything wrongly selected would be behind it by now
        got = await read_until(hub_stack, topic, lambda recs: False, timeout_s=1)
    finally:
        await stop(task)
    assert len(got) == 1
    doc = orjson.loads(got[0].value)
    assert (doc["schema"], doc["format"], doc["citizen_id"], doc["event_id"]) == ("hssk.out.v1", "event", old,
                                                                                    wanted.event_id)
    assert doc["event"]["type"] == "encounter.recorded" and got[0].key == old.encode()
    assert dict(got[0].headers)["idempotency-key"].decode() == doc["idempotency_key"]


async def test_webhook_retries_with_the_same_key_and_keeps_order(hub_stack: Settings, hook: Hook) -> None:
    """500 three times, then accepted: every attempt carries the same Idempotency-Key and a valid signature
    (checked by the receiver), and the citizen's later changes arrive after, in order."""
    name, fac, cid = unique("hook"), facility(), f"cit-{uuid.uuid4().hex}"
    hook.script = [500, 500, 500]
    events = [change(cid, fac, n=i, version=i + 1) for i in range(3)]
    await produce(hub_stack, *events)
    task = await running(hub_stack, subs(webhook_sub(name, hook.url, fac)))
    try:
        await eventually(lambda: len(hook.stored()) == 3)
    finally:
        await stop(task)
    first_key = hook.requests[0]["key"]
    assert [r["status"] for r in hook.requests[:4]] == [500, 500, 500, 200]
    assert {r["key"] for r in hook.requests[:4]} == {first_key}
    assert [b["event_id"] for b in hook.stored()] == [e.event_id for e in events]
    assert all(r["subscription"] == name for r in hook.requests)


async def test_a_dead_webhook_does_not_hold_up_another_subscription(hub_stack: Settings) -> None:
    """One subscription's webhook refuses connections; the other delivers at once; the dead one's lag shows."""
    dead, alive, fac, cid = unique("dead"), unique("alive"), facility(), f"cit-{uuid.uuid4().hex}"
    written = await produce(hub_stack, *(change(cid, fac, n=i) for i in range(3)))
    text = webhook_sub(dead, "http://127.0.0.1:9/nothing-listens", fac, attempts=1000) + kafka_sub(alive, fac)
    task = await running(hub_stack, subs(text))
    try:
        got = await read_until(hub_stack, subscription_out(alive).name, lambda recs: len(recs) >= 3, timeout_s=30)
        assert len(got) == 3
        ours: list[Any] = []
        deadline = time.monotonic() + 15
        while not ours and time.monotonic() < deadline:  # the dead one commits its start position once assigned
            rows = await measure(hub_stack, [f"hssk-sub-{dead}"], seconds=False)
            ours = [r for r in rows if r.topic == RECORD_CHANGES.name and r.partition == written[0].partition]
            await asyncio.sleep(0.3)
    finally:
        await stop(task)
    assert ours and ours[0].committed_offset is not None and ours[0].committed_offset <= written[0].offset
    assert ours[0].lag >= 3


async def test_pause_holds_deliveries_and_resume_sends_them(hub_stack: Settings, hook: Hook) -> None:
    name, fac, cid = unique("pause"), facility(), f"cit-{uuid.uuid4().hex}"
    client = aioredis.from_url(hub_stack.redis_url)
    state = SubscriptionState(client)
    task = await running(hub_stack, subs(webhook_sub(name, hook.url, fac)))
    try:
        await produce(hub_stack, change(cid, fac, n=0))
        await eventually(lambda: len(hook.stored()) == 1)
        await state.set_paused(name, True)
        await asyncio.sleep(1.0)  # the engine reads the flag every 0.5 s
        await produce(hub_stack, change(cid, fac, n=1))
        await asyncio.sleep(2.0)
        assert len(hook.stored()) == 1  # paused: nothing sent
        await state.set_paused(name, False)
        await eventually(lambda: len(hook.stored()) == 2)
    finally:
        await stop(task)
        await state.set_paused(name, False)
        await client.aclose()


async def test_replay_since_sends_again_under_the_same_keys(hub_stack: Settings, hook: Hook) -> None:
    name, fac, cid = unique("replay"), facility(), f"cit-{uuid.uuid4().hex}"
    client = aioredis.from_url(hub_stack.redis_url)
    task = await running(hub_stack, subs(webhook_sub(name, hook.url, fac)))
    try:
        since_ms = int(time.time() * 1000) - 1000
        await produce(hub_stack, change(cid, fac, n=0), change(cid, fac, n=1))
        await eventually(lambda: len(hook.requests) == 2)
        first = [r["key"] for r in hook.requests]
        await SubscriptionState(client).ask_replay(name, since_ms)
        await eventually(lambda: len(hook.requests) == 4)
    finally:
        await stop(task)
        await client.aclose()
    assert [r["key"] for r in hook.requests[2:]] == first


async def test_sensitive_changes_reach_only_an_entitled_subscription(hub_stack: Settings, hook: Hook) -> None:
    """An HIV-flagged change never reaches a subscription not entitled to it, nor shows in a health book."""
    plain, entitled, book = unique("plain"), unique("hiv"), unique("book")
    fac, cid = facility(), f"cit-{uuid.uuid4().hex}"
    hiv_entry = {"status": "finished", "class": "AMB", "period": {"start": "2026-11-30T08:00:00+07:00"},
                 "facility": fac, "sensitivity": ["hiv"], "provenance": {}}
    plain_entry = {"status": "finished", "class": "AMB", "period": {"start": "2026-11-29T08:00:00+07:00"},
                   "facility": fac, "provenance": {}}
    await save(hub_stack, record(cid, "1990-05-12", version=3, encounters={"e-hiv": hiv_entry, "e-ok": plain_entry}))
    flagged, normal = change(cid, fac, sensitivity=("hiv",), n=0), change(cid, fac, n=1)
    await produce(hub_stack, flagged, normal)
    text = (webhook_sub(plain, hook.url, fac) + webhook_sub(book, hook.url, fac, "health-book")
            + webhook_sub(entitled, hook.url, fac, extra='entitled = ["hiv"]'))
    task = await running(hub_stack, subs(text))
    try:
        await eventually(lambda: {r["subscription"] for r in hook.requests} == {plain, entitled, book}
                         and len(hook.stored()) == 4)
        await asyncio.sleep(0.5)
    finally:
        await stop(task)
    by_sub: dict[str, list[dict[str, Any]]] = {}
    for body in hook.stored():
        by_sub.setdefault(body["subscription"], []).append(body)
    assert [b["event_id"] for b in by_sub[plain]] == [normal.event_id]
    assert [b["event_id"] for b in by_sub[entitled]] == [flagged.event_id, normal.event_id]
    (pushed,) = by_sub[book]
    assert [e["id"] for e in pushed["health_book"]["encounters"]] == ["e-ok"]
    assert b"hiv" not in orjson.dumps(pushed) and "withheld_sensitive" not in pushed["health_book"]["summary"]


async def test_health_book_coalesces_a_burst_and_follows_a_merge(hub_stack: Settings, hook: Hook) -> None:
    """Five changes to one citizen within the window -> one push; a merge -> a merge notice, then the survivor."""
    name, fac = unique("hb"), facility()
    survivor, retired = f"cit-{uuid.uuid4().hex}", f"cit-{uuid.uuid4().hex}"
    await save(hub_stack, record(survivor, "1948-01-20", version=5))
    task = await running(hub_stack, subs(webhook_sub(name, hook.url, fac, "health-book", "coalesce_s = 1.5")))
    try:
        await produce(hub_stack, *(change(survivor, fac, n=i, version=i + 1) for i in range(5)))
        await eventually(lambda: len(hook.stored()) == 1)
        await asyncio.sleep(2.0)
        assert len(hook.stored()) == 1
        book = hook.stored()[0]
        assert (book["format"], book["citizen_id"], book["record_version"]) == ("health-book", survivor, 5)
        assert book["health_book"]["administrative"]["name"] == "Lê Thị Hồng"
        await save(hub_stack, record(survivor, "1948-01-20", version=6))
        merge = merged_event(survivor, retired, cause="A40-1", occurred_at="2026-12-01T09:00:00+07:00",
                             recorded_at="2026-12-01T09:00:01+07:00", facility=fac)
        await produce(hub_stack, merge)
        await eventually(lambda: len(hook.stored()) == 3)
    finally:
        await stop(task)
    notice, after = hook.stored()[1:]
    assert notice["format"] == "merged" and notice["merged"] == {"retired_citizen_id": retired,
                                                                  "merged_into": survivor}
    assert (after["format"], after["citizen_id"], after["record_version"]) == ("health-book", survivor, 6)


async def test_a_refused_delivery_goes_to_the_subscription_dlq(hub_stack: Settings, hook: Hook) -> None:
    """A 4xx answer is not retried: the change goes to dlq.<name> with the reason, the next one is delivered."""
    name, fac, cid = unique("refuse"), facility(), f"cit-{uuid.uuid4().hex}"
    hook.script = [422]
    bad, good = change(cid, fac, n=0), change(cid, fac, n=1)
    await produce(hub_stack, bad, good)
    task = await running(hub_stack, subs(webhook_sub(name, hook.url, fac)))
    try:
        await eventually(lambda: len(hook.stored()) == 1)
        letters = await read_until(hub_stack, subscription_dlq(name).name, lambda recs: len(recs) >= 1, timeout_s=15)
    finally:
        await stop(task)
    assert len(hook.requests) == 2 and hook.stored()[0]["event_id"] == good.event_id
    letter = orjson.loads(letters[0].value)
    assert letter["stage"] == "fanout" and "422" in letter["reason"] and letter["headers"]["subscription"] == name
    assert Envelope.from_json(base64.b64decode(letter["original"])).event_id == bad.event_id
    from hub.ops import dlq  # what `hub dlq list --subscription NAME` reads

    [entry] = await dlq.entries(hub_stack, topic=subscription_dlq(name).name)
    assert entry.stage == "fanout" and "422" in entry.reason and entry.source_topic == RECORD_CHANGES.name


async def test_the_fanout_role_delivers_the_file_and_obeys_the_cli(hub_stack: Settings) -> None:
    """The role started by ``hub up`` runs deploy/local/subscriptions.toml: an encounter of a 70-year-old reaches
    out.elderly; ``hub subscriptions pause`` holds the next one until resumed; list and metrics show it."""
    from tests.conftest import hub_cli
    from tests.integration.test_ops_live_metrics import scrape, value

    cid, fac = f"cit-{uuid.uuid4().hex}", facility()
    await save(hub_stack, record(cid, "1956-08-19"))
    ours = lambda recs: [r for r in recs if r.key == cid.encode()]  # noqa: E731
    topic = subscription_out("elderly").name
    await produce(hub_stack, change(cid, fac, n=0))
    await read_until(hub_stack, topic, lambda recs: len(ours(recs)) >= 1, timeout_s=60)
    hub_cli("subscriptions", "pause", "elderly")
    try:
        await asyncio.sleep(1.5)
        await produce(hub_stack, change(cid, fac, n=1))
        held = await read_until(hub_stack, topic, lambda recs: False, timeout_s=3)
        assert len(ours(held)) == 1
        listed = orjson.loads(hub_cli("subscriptions", "list", "--json").stdout)
        elderly = next(s for s in listed if s["name"] == "elderly")
        assert elderly["paused"] is True and elderly["lag"] >= 1 and elderly["consumer_group"] == "hssk-sub-elderly"
        warehouse = next(s for s in listed if s["name"] == "warehouse")  # its group reads events.citizen
        assert warehouse["consumer_group"] == "hssk-warehouse" and warehouse["lag"] is not None
    finally:  # resumed in-process: each CLI call is a new Python process, seconds on a busy machine
        client = aioredis.from_url(hub_stack.redis_url)
        await SubscriptionState(client).set_paused("elderly", False)
        await client.aclose()
    got = await read_until(hub_stack, topic, lambda recs: len(ours(recs)) >= 2, timeout_s=30)
    assert len(ours(got)) == 2
    _, samples = scrape(hub_stack, "fanout")
    assert value(samples, "hssk_subscription_deliveries_total", subscription="elderly", result="delivered") >= 2
    assert value(samples, "hssk_subscription_paused", subscription="elderly") == 0


async def test_a_changed_subscriptions_file_is_applied_while_the_engine_runs(
        hub_stack: Settings, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is watched: a subscription put in its place starts (from the earliest change), the one taken out
    stops delivering, and a file that no longer validates leaves the running subscription as it was."""
    from hub.fanout import engine as engine_module

    monkeypatch.setattr(engine_module, "RELOAD_S", 0.2)
    first, second, fac = unique("phuong-ben-thanh"), unique("quan-go-vap"), facility()
    cid = f"cit-{uuid.uuid4().hex}"
    await save(hub_stack, record(cid, "1948-11-02"))
    path = tmp_path / "subscriptions.toml"
    path.write_text(kafka_sub(first, fac), encoding="utf-8")
    engine = Engine(hub_stack, config.load(path), watch=path)
    task = asyncio.create_task(engine.run())
    ids = lambda recs: [orjson.loads(r.value)["event_id"] for r in recs]  # noqa: E731
    try:
        one = change(cid, fac, n=1)
        await produce(hub_stack, one)
        await read_until(hub_stack, subscription_out(first).name, lambda recs: one.event_id in ids(recs), 30)

        path.write_text(kafka_sub(second, fac), encoding="utf-8")
        await eventually(lambda: set(engine.runners) == {second})
        two = change(cid, fac, n=2)
        await produce(hub_stack, two)
        got = await read_until(hub_stack, subscription_out(second).name, lambda recs: two.event_id in ids(recs), 30)
        assert ids(got) == [one.event_id, two.event_id]  # a new subscription starts at the earliest change
        stopped = await read_until(hub_stack, subscription_out(first).name, lambda recs: False, timeout_s=1)
        assert ids(stopped) == [one.event_id]

        path.write_text('[[subscription]]\nname = "thieu-cau-hinh"\n', encoding="utf-8")  # no delivery, no format
        await asyncio.sleep(1.0)
        assert set(engine.runners) == {second} and not task.done()
        three = change(cid, fac, n=3)
        await produce(hub_stack, three)
        got = await read_until(hub_stack, subscription_out(second).name, lambda recs: three.event_id in ids(recs), 30)
        assert ids(got) == [one.event_id, two.event_id, three.event_id]
    finally:
        await stop(task)
