"""A circuit breaker per subscription endpoint: a dead subscriber stops costing the process work.

Without it every lane of every partition of a dead subscription keeps connecting on its own schedule (each a
refused connection or a timeout, an exception chain, a resolver call), and its partitions keep fetching and
decoding changes it cannot deliver, in the process and on the event loop the healthy subscriptions share
(bench.fanout's isolation rounds measured that). With it:

    unproven   at start, and after the circuit was open, until the endpoint first answers: one attempt at a
               time (a dead endpoint at start costs ``threshold`` connection attempts, not one per lane)
    closed     attempts go to the endpoint side by side; ``threshold`` retryable failures in a row (no success
               between) open the circuit
    open       until ``open_until`` an attempt fails at once with the endpoint's last failure, no network call;
               the engine parks the subscription's partitions (no fetching) and takes no new batch
    half-open  after ``open_until`` one attempt at a time is let through (the probe): a success, or a refusal
               (the endpoint answered), closes the circuit; a retryable failure opens it again for twice as
               long, up to ``max_s``

Delivery semantics do not change: an attempt refused by the open circuit is a failed attempt of that delivery
(its backoff and its ``max_attempts`` count it), so a delivery still goes to ``dlq.<name>`` after its retries,
and nothing is skipped. The clock is a parameter, so the state machine is unit-tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from hub.fanout.sinks import Rejected, Retryable

THRESHOLD = 5  # retryable failures in a row that open the circuit


class Breaker:
    def __init__(self, first_s: float, max_s: float, threshold: int = THRESHOLD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first_s = first_s
        self.max_s = max(max_s, first_s)
        self.threshold = threshold
        self._clock = clock
        self.failures = 0  # retryable failures in a row
        self.opened = 0  # openings in a row without a success: the wait doubles with each
        self.open_until: float | None = None  # None: closed
        self.reason = ""
        self.proven = False  # the endpoint answered since the start or since the circuit last opened
        self._probing = False
        self._turn = asyncio.Event()  # set when no probe is on its way
        self._turn.set()
        self._closed = asyncio.Event()
        self._closed.set()

    @property
    def is_open(self) -> bool:
        """Open or half-open: the endpoint has not answered since it failed ``threshold`` times in a row."""
        return self.open_until is not None

    @property
    def trusted(self) -> bool:
        """Closed and proven: the engine takes full batches (otherwise a small one, enough to find out)."""
        return self.proven and self.open_until is None

    def parked(self) -> bool:
        """Open and not yet due for a probe: the subscription fetches nothing and takes no new batch."""
        return self.open_until is not None and self._clock() < self.open_until

    def _wait_s(self) -> float:
        return min(self.max_s, self.first_s * 2 ** (self.opened - 1))

    async def call(self, send: Callable[[], Awaitable[None]]) -> None:
        """One attempt of a delivery through the breaker (raises what ``send`` raises, or Retryable when open)."""
        probe = half_open = False
        while not self.proven or self.open_until is not None:
            if self.open_until is not None:
                if self._probing or self._clock() < self.open_until:
                    raise Retryable(f"circuit open: {self.reason}")
            elif self._probing:  # unproven: wait for the attempt on its way to tell whether the endpoint is up
                await self._turn.wait()
                continue
            probe = self._probing = True
            half_open = self.open_until is not None
            self._turn.clear()
            break
        try:
            await send()
        except Retryable as exc:
            self._failed(exc.reason, half_open)
            raise
        except Rejected:
            self._succeeded()  # the endpoint is up; it refused this body
            raise
        else:
            self._succeeded()
        finally:
            if probe:
                self._probing = False
                self._turn.set()

    def _failed(self, reason: str, half_open: bool) -> None:
        self.failures += 1
        self.reason = reason
        # Attempts that were already on their way when the circuit opened do not reopen it: only the probe does.
        if half_open or (self.open_until is None and self.failures >= self.threshold):
            self.opened += 1
            self.open_until = self._clock() + self._wait_s()
            self.proven = False
            self._closed.clear()

    def _succeeded(self) -> None:
        self.failures = self.opened = 0
        self.open_until = None
        self.proven = True
        self._closed.set()

    async def ready(self) -> None:
        """Wait while the circuit is open, until the next probe may go (or the circuit closed meanwhile)."""
        while self.open_until is not None and not self._closed.is_set():
            delay = self.open_until - self._clock()
            if delay <= 0:
                return
            try:
                async with asyncio.timeout(delay):
                    await self._closed.wait()
            except TimeoutError:
                return
