"""Where deliveries go: a Kafka topic ``out.<name>`` or a signed webhook. One ``send`` each, two failure kinds.

    DeliveryError (hub.errors, code ``deliver``)
    ├── Retryable   try again later: Kafka did not confirm, connection refused, timeout, HTTP 5xx/408/425/429
    └── Rejected    the subscriber refused this body (other HTTP 4xx, 401 included): retrying cannot help

The webhook follows the wire contract (README "Subscriptions"): ``POST`` the body with ``Idempotency-Key``,
``X-HSSK-Subscription`` and the timestamp/signature headers of ``hub.fanout.signing``, signed per attempt
(the timestamp is fresh on every retry; the body and key are not).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp

from hub.errors import DeliveryError
from hub.fanout import signing
from hub.fanout.formats import Outbound
from hub.kafka import DurableProducer
from hub.topics import Topic

RETRY_STATUSES = frozenset({408, 425, 429})
MAX_CONNECTIONS = 512  # per webhook subscription: its partitions x the engine's LANES, with room


class Retryable(DeliveryError):
    """The delivery may succeed later."""


class Rejected(DeliveryError):
    """The subscriber refused the delivery; it goes to the dead-letter topic at once."""


class Sink(Protocol):
    async def send(self, item: Outbound) -> None: ...

    async def close(self) -> None: ...


class KafkaSink:
    """``out.<name>``, keyed by citizen id (per-citizen order for Kafka subscribers), idempotency key in a header."""

    def __init__(self, producer: DurableProducer, topic: Topic) -> None:
        self._producer = producer
        self.topic = topic

    async def send(self, item: Outbound) -> None:
        try:
            await self._producer.write(self.topic.name, item.body, key=item.citizen_id.encode(),
                                       headers=[("idempotency-key", item.key.encode()),
                                                ("format", item.format.encode())])
        except DeliveryError as exc:
            raise Retryable(exc.reason) from exc

    async def close(self) -> None:
        """The producer is shared by every Kafka subscription; the engine stops it."""


class WebhookSink:
    def __init__(self, subscription: str, url: str, secret: bytes, timeout_s: float) -> None:
        self.subscription = subscription
        self.url = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Keep-alive connections, as many as the engine has deliveries on their way (aiohttp's default 100
            # would queue the lanes of several partitions behind each other).
            self._session = aiohttp.ClientSession(timeout=self._timeout,
                                                  connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS))
        return self._session

    async def send(self, item: Outbound) -> None:
        headers = {"Content-Type": "application/json", signing.SUBSCRIPTION_HEADER: self.subscription,
                   signing.IDEMPOTENCY_HEADER: item.key, **signing.sign(self._secret, item.body)}
        try:
            async with self._client().post(self.url, data=item.body, headers=headers) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise Retryable(f"webhook not reached ({type(exc).__name__})") from exc
        if 200 <= status < 300:
            return
        if status >= 500 or status in RETRY_STATUSES:
            raise Retryable(f"webhook answered {status}")
        raise Rejected(f"webhook answered {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
