"""The dashboard's two routes: the page (public, holds no data) and its data (``ops:read``).

The page is one HTML file with its script and style inline. It is served with a Content-Security-Policy that
allows exactly those inline blocks (by their SHA-256) and requests to this origin only, so a group or topic
name can never run as script, and the token the operator types goes nowhere but this API.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from importlib import resources

import orjson
from aiohttp import web

from hub.api.dashboard import view
from hub.api.dashboard.history import History
from hub.api.problems import ApiError

HISTORY = web.AppKey("dashboard_history", History)
PAGE = "dashboard.html"
_INLINE = {"script": re.compile(r"<script>(.*?)</script>", re.S), "style": re.compile(r"<style>(.*?)</style>", re.S)}


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(html: str) -> str:
    """Only this page's own inline script and style run; data comes from this origin only."""
    scripts = " ".join(_sha256(m) for m in _INLINE["script"].findall(html))
    styles = " ".join(_sha256(m) for m in _INLINE["style"].findall(html))
    return (f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; img-src data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@lru_cache(maxsize=1)
def page_and_policy() -> tuple[bytes, str]:
    html = resources.files(__package__).joinpath(PAGE).read_text(encoding="utf-8")
    return html.encode(), content_security_policy(html)


async def page(request: web.Request) -> web.Response:
    body, policy = page_and_policy()
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers={
        "Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache"})


async def data(request: web.Request) -> web.Response:
    history = request.app.get(HISTORY)
    if history is None:
        raise ApiError(503, "dashboard-off", "this API process runs no dashboard sampler")
    return web.Response(body=orjson.dumps(view.render(history)), content_type="application/json", charset="utf-8",
                        headers={"Cache-Control": "no-store"})
