"""The dashboard's routes over a real loopback socket: the page is public, holds no data and allows only its
own inline code; the data needs an ops:read token (401/403 otherwise) and answers 503 where no sampler runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from hub.api import dashboard, tokens
from hub.api.app import Deps, build_app
from hub.api.dashboard.history import GroupLag, Sample
from hub.api.dashboard.routes import content_security_policy, page_and_policy
from hub.api.ratelimit import RateLimiter
from hub.api.tokens import TokenFile
from hub.settings import Settings


class Served:
    def __init__(self, url: str, token_file: Path, session: aiohttp.ClientSession, app: web.Application) -> None:
        self.url, self.token_file, self.session, self.app = url, token_file, session, app

    def auth(self, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(self.token_file, 'ops-desk', list(scopes))}"}


async def serve(tmp_path: Path, with_history: bool) -> tuple[web.AppRunner, web.Application, Path]:
    token_file = tmp_path / "api-tokens.json"
    deps = Deps(Settings(), TokenFile(token_file), RateLimiter(100, 100), None, None, None)  # type: ignore[arg-type]
    app = build_app(deps)
    if with_history:  # a history without its sampler: the test fills it
        app[dashboard.HISTORY] = dashboard.History(600, 2)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, app, token_file


@pytest.fixture()
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    runner, app, token_file = await serve(tmp_path, with_history=True)
    async with aiohttp.ClientSession() as session:
        yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}", token_file, session, app)
    await runner.cleanup()


class TestPage:
    async def test_the_page_is_public_html_with_a_strict_policy(self, served: Served) -> None:
        async with served.session.get(served.url + "/dashboard") as resp:
            body = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
            policy = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert "/v1/ops/dashboard" in body and "sessionStorage" in body

    def test_the_policy_allows_exactly_the_inline_script_and_style(self) -> None:
        html = "<style>a{}</style><script>x()</script><script>y()</script>"
        policy = content_security_policy(html)
        assert re.search(r"script-src 'sha256-[^']+' 'sha256-[^']+';", policy)
        assert re.search(r"style-src 'sha256-[^']+';", policy)
        assert content_security_policy(html.replace("y()", "z()")) != policy

    def test_the_page_has_one_script_and_no_inline_handlers_or_remote_resources(self) -> None:
        html = page_and_policy()[0].decode()
        assert html.count("<script>") == 1 and "<script src" not in html
        assert not re.search(r"\son[a-z]+=", html) and not re.search(r"(src|href)=\"(https?:)?//", html)
        assert "innerHTML" not in html  # every value is set as text


class TestData:
    async def test_no_token_is_401_and_another_scope_is_403(self, served: Served) -> None:
        async with served.session.get(served.url + "/v1/ops/dashboard") as resp:
            assert resp.status == 401
        async with served.session.get(served.url + "/v1/ops/dashboard", headers=served.auth("record:read")) as resp:
            assert resp.status == 403

    async def test_an_ops_token_gets_the_panels(self, served: Served) -> None:
        served.app[dashboard.HISTORY].add(Sample(1_800_000_000.0, {"hssk-record": GroupLag(2, 0.5)}, {"hl7v2.raw": 9}))
        async with served.session.get(served.url + "/v1/ops/dashboard", headers=served.auth("ops:read")) as resp:
            assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
            data = await resp.json()
        assert data["lag"]["current"] == [{"group": "hssk-record", "lag": 2, "lag_seconds": 0.5}]
        assert data["subscriptions"]["status"] == data["review_queue"]["status"] == "waiting"  # no reading yet

    async def test_without_a_sampler_the_data_is_503(self, tmp_path: Path) -> None:
        runner, _, token_file = await serve(tmp_path, with_history=False)
        try:
            async with aiohttp.ClientSession() as session:
                auth = {"Authorization": f"Bearer {tokens.issue(token_file, 'ops', ['ops:read'])}"}
                async with session.get(f"http://127.0.0.1:{runner.addresses[0][1]}/v1/ops/dashboard",
                                       headers=auth) as resp:
                    assert resp.status == 503
                    assert (await resp.json(content_type=None))["issue"][0]["details"]["text"] == "dashboard-off"
        finally:
            await runner.cleanup()
