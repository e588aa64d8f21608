"""The operators' dashboard, served by the api role: ``GET /dashboard`` (the page) and ``GET /v1/ops/dashboard``
(its JSON, scope ``ops:read``).

A sampler in the API process (``hub.api.dashboard.sampler``) records consumer lag, topic end offsets and the
DLQ tally every ``interval_s`` into a bounded in-memory history (``history``); ``view`` turns it into panels.
Each API replica keeps its own history. No personal data: only group, topic, stage and reason-code names.
"""

from __future__ import annotations

from aiohttp import web

from hub.api.dashboard.history import History
from hub.api.dashboard.routes import HISTORY, data, page
from hub.api.dashboard.sampler import KafkaProbe, Sampler
from hub.settings import Settings

INTERVAL_S = 2.0  # one sample every 2 s: the page refreshes at the same pace
WINDOW_S = 600.0  # 10 minutes of history per replica (300 samples)

__all__ = ["HISTORY", "INTERVAL_S", "WINDOW_S", "History", "Sampler", "data", "mount", "page"]


def mount(app: web.Application, settings: Settings, *, interval_s: float = INTERVAL_S,
          window_s: float = WINDOW_S) -> History:
    """Give ``app`` a history and a sampler that fills it while the app runs (before the app starts)."""
    history = History(window_s, interval_s)
    app[HISTORY] = history
    app.cleanup_ctx.append(Sampler(history, lambda: KafkaProbe(settings)).context())
    return history
