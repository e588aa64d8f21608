"""Undo faust's start-up spinner hook on the root logger, which costs every faust role CPU per Kafka record.

At a log level of WARNING or above, ``faust.Worker`` shows a terminal spinner during start-up and, to drive it,
sets the root logger to DEBUG with a handler of its own (faust/worker.py ``_setup_spinner_handler``), and never
sets it back. From then on every ``log.debug`` of aiokafka (one per record sent, one per fetch and commit) builds a
LogRecord and runs the handlers: py-spy of the translator at HSSK_LOG_LEVEL=warning (bench.fanout's level) put
11 % of its samples there, 5 % of the fanout's. At INFO and below (the default, the cluster manifests) faust
installs no spinner and the level is untouched.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

import faust

from hub.settings import Settings


def restore_root_level(app: faust.App, settings: Settings) -> None:
    """Reset the root logger to the role's level once the worker has started (a task runs after faust's
    logging set-up), so debug calls are dropped at the level check again."""
    app.task(_restore(settings))


def _restore(settings: Settings) -> Callable[[], Awaitable[None]]:
    async def restore() -> None:
        level = logging.getLevelName(settings.log_level.upper())
        logging.getLogger().setLevel(level if isinstance(level, int) else logging.INFO)

    return restore
