"""Subscriptions admin routes over a real loopback socket: scope, unknown names, bad replay bodies, a warehouse
subscription refused, a bad subscriptions file named — all answered before any Kafka or Redis call."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from hub.api import tokens
from hub.api.app import Deps, build_app
from hub.api.ratelimit import RateLimiter
from hub.api.tokens import TokenFile
from hub.settings import Settings

FILE = """
[[subscription]]
name = "sotaytiemchung"
format = "event"
[subscription.delivery]
kind = "kafka"

[[subscription]]
name = "warehouse"
format = "event"
[subscription.delivery]
kind = "warehouse"
"""


class Api:
    def __init__(self, url: str, token_file: Path, session: aiohttp.ClientSession) -> None:
        self.url, self.token_file, self.session = url, token_file, session

    def token(self, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(self.token_file, 'so-y-te', list(scopes))}"}

    async def call(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


@asynccontextmanager
async def serve(settings: Settings, tmp_path: Path) -> AsyncIterator[Api]:
    token_file = tmp_path / "api-tokens.json"
    deps = Deps(settings=settings, tokens=TokenFile(token_file), limiter=RateLimiter(100.0, 100),
                records=None, links=None, audit=None)  # type: ignore[arg-type]
    runner = web.AppRunner(build_app(deps), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{runner.addresses[0][1]}", token_file, session)
    await runner.cleanup()


@pytest.fixture()
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    (tmp_path / "subscriptions.toml").write_text(FILE, encoding="utf-8")
    settings = replace(Settings(), subscriptions_file=tmp_path / "subscriptions.toml")
    async with serve(settings, tmp_path) as a:
        yield a


def diagnostics(body: dict[str, Any]) -> str:
    return body["issue"][0]["diagnostics"]


class TestSubscriptionRoutes:
    async def test_the_admin_scope_is_required(self, api: Api) -> None:
        status, _ = await api.call("POST", "/v1/subscriptions/sotaytiemchung/pause", api.token("record:read"))
        assert status == 403

    async def test_an_unknown_subscription_is_404(self, api: Api) -> None:
        status, body = await api.call("GET", "/v1/subscriptions/khong-co", api.token("subscriptions:admin"))
        assert status == 404 and "khong-co" in diagnostics(body)

    @pytest.mark.parametrize("body, code", [(b"not json", "invalid-json"), (b"{}", "since-required"),
                                            (b'{"since": "h\\u00f4m qua"}', "invalid-since")])
    async def test_a_replay_needs_a_readable_since(self, api: Api, body: bytes, code: str) -> None:
        status, answer = await api.call("POST", "/v1/subscriptions/sotaytiemchung/replay",
                                        api.token("subscriptions:admin"), data=body)
        assert status == 400 and answer["issue"][0]["details"]["text"] == code

    async def test_a_warehouse_subscription_is_not_paused_here(self, api: Api) -> None:
        status, body = await api.call("POST", "/v1/subscriptions/warehouse/pause", api.token("subscriptions:admin"))
        assert status == 409 and "warehouse role" in diagnostics(body)


async def test_a_bad_subscriptions_file_is_503_with_its_problems(tmp_path: Path) -> None:
    (tmp_path / "subscriptions.toml").write_text('[[subscription]]\nname = "Bad Name"\n', encoding="utf-8")
    settings = replace(Settings(), subscriptions_file=tmp_path / "subscriptions.toml")
    async with serve(settings, tmp_path) as api:
        status, body = await api.call("GET", "/v1/subscriptions/x", api.token("subscriptions:admin"))
    assert status == 503
    assert "subscription \"Bad Name\": 'delivery' is a required property" in diagnostics(body)
