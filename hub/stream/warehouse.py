"""Role ``warehouse``: events.citizen -> the city data warehouse in PostgreSQL (hub/warehouse).

The write happens inside the batch step, so a batch is in PostgreSQL (one transaction) before the stage loop
commits its offsets; a crash in between replays the batch, which the idempotent upserts absorb.

Two kinds of failure, two answers:
- PostgreSQL unreachable (down, restarting, network): not the events' fault. The step reconnects and
  retries with capped backoff until the write succeeds; the stage stalls (its lag grows and is visible),
  nothing goes to the DLQ, nothing is committed past.
- PostgreSQL refuses the data (a value out of range...): the batch is written again one event per
  transaction, and only the events that still fail go to hub.dlq (stage ``warehouse``).
Events the warehouse cannot map go to the DLQ too; event types it does not model are skipped, and so are
events flagged with a sensitive category (HIV, mental health) the warehouse is not entitled to.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import faust

from hub.logging import get_logger
from hub.settings import Settings
from hub.stream.app import Incoming, Result, add_stage, make_app
from hub.topics import EVENTS_CITIZEN
from hub.warehouse.errors import WarehouseError
from hub.warehouse.mapping import Rows
from hub.warehouse.plan import Plan, plan_events, plan_of
from hub.warehouse.writer import CONNECTION_ERRORS, Warehouse

log = get_logger("warehouse")
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0


class WarehouseStage:
    def __init__(self, dsn: str, entitled: frozenset[str] = frozenset()) -> None:
        self.dsn = dsn
        # Sensitive categories this warehouse may hold. None by default: flagged events are withheld until a
        # subscription policy (issue 7, subscriptions) entitles the warehouse to a category.
        self.entitled = entitled
        self._warehouse: Warehouse | None = None
        self._connecting = asyncio.Lock()  # the startup task and the first batch may both connect

    async def start(self) -> None:
        """At worker start: connect and migrate, so the tables exist before the first event (and a wrong DSN
        shows in the log at once)."""
        await self._write(Plan())

    async def _connected(self) -> Warehouse:
        async with self._connecting:
            if self._warehouse is None or self._warehouse.conn.is_closed():
                warehouse = await Warehouse.connect(self.dsn)
                try:
                    applied = await warehouse.migrate()
                except BaseException:
                    warehouse.conn.terminate()
                    raise
                if applied:
                    log.info("warehouse migrations applied", versions=applied)
                self._warehouse = warehouse
            return self._warehouse

    async def _drop_connection(self) -> None:
        if self._warehouse is not None:
            try:
                self._warehouse.conn.terminate()
            finally:
                self._warehouse = None

    async def _write(self, plan: Plan) -> None:
        """Write ``plan``, waiting out a PostgreSQL outage (reconnect, capped exponential backoff with jitter)."""
        delay, attempt = RETRY_FIRST_S, 0
        while True:
            try:
                warehouse = await self._connected()
                await warehouse.write(plan)
                if attempt:
                    log.info("warehouse reachable again", attempts=attempt + 1)
            except CONNECTION_ERRORS as exc:
                attempt += 1
                log.warning("warehouse unreachable; retrying", attempt=attempt, error=type(exc).__name__,
                            retry_in_s=round(delay, 2))
                await self._drop_connection()
            except WarehouseError as exc:  # e.g. an applied migration was edited: a deployment problem
                attempt += 1
                log.error("warehouse schema cannot be migrated; retrying", attempt=attempt, reason=exc.reason)
                await self._drop_connection()
            else:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RETRY_MAX_S)

    async def step(self, batch: list[Incoming]) -> list[Result]:
        outcomes, plan = plan_events([incoming.value for incoming in batch], self.entitled)
        results: list[Result] = [o if isinstance(o, Exception) else [] for o in outcomes]
        if not plan:
            return results
        try:
            await self._write(plan)
        except asyncpg.PostgresError as exc:
            log.warning("warehouse refused a batch; writing its events one by one", error=type(exc).__name__,
                        events=len(batch))
            await self._write_each(outcomes, results)
        return results

    async def _write_each(self, outcomes: list[Rows | None | Exception], results: list[Result]) -> None:
        for i, outcome in enumerate(outcomes):
            if not isinstance(outcome, Rows):
                continue
            try:
                await self._write(plan_of([outcome]))
            except asyncpg.PostgresError as exc:
                results[i] = WarehouseError(f"PostgreSQL refused the rows ({type(exc).__name__})")

    async def close(self) -> None:
        if self._warehouse is not None:
            await self._warehouse.close()
            self._warehouse = None


def warehouse_entitlement(settings: Settings) -> frozenset[str]:
    """The sensitive categories the subscriptions file entitles the warehouse to (its ``warehouse`` deliveries).

    A file that does not load stops the role at start with every problem listed, as it stops fan-out.
    """
    from hub.fanout import config

    subscriptions = config.load(settings.subscriptions_file, config.settings_env(settings))
    return frozenset().union(*(s.entitled for s in subscriptions if s.delivery.kind == "warehouse"))


def build(settings: Settings) -> faust.App:
    app = make_app("warehouse", settings)
    stage = WarehouseStage(settings.pg_dsn, warehouse_entitlement(settings))
    app.task(stage.start)
    add_stage(app, settings, "warehouse", EVENTS_CITIZEN, stage.step)
    return app


def main() -> None:
    """``python -m hub.stream.warehouse``: the role on its own, as ``hub run`` runs the others (faust worker)."""
    from hub import logging as hub_logging

    settings = Settings.from_env()
    hub_logging.configure(settings.log_level)
    faust.Worker(build(settings), loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
