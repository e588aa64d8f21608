"""The hub's Kafka producers, both ``acks=all`` and idempotent, each write confirmed within a deadline or a
DeliveryError:

- ``DurableProducer`` (aiokafka): the listener's and the API's one-at-a-time writes, each awaited on its own.
- ``BulkProducer`` (confluent-kafka, i.e. librdkafka): bulk loads (``hub import``), where aiokafka's per-record
  Python cost (partitioning, batch building, one future per record) was most of an import's CPU.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any, Sequence

import confluent_kafka
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from hub.errors import DeliveryError
from hub.logging import get_logger
from hub.partition import KeyPartitioner
from hub.settings import Settings

Headers = Sequence[tuple[str, bytes]]
log = get_logger("kafka")


class DurableProducer:
    """Writes that either are confirmed by every in-sync replica within a deadline or raise DeliveryError.

    ``connect`` keeps trying in the background, so a listener started while Kafka is down serves at once
    (answering AR) and begins storing as soon as the broker is reachable.
    """

    def __init__(self, settings: Settings, client_id: str, max_batch_bytes: int = 16384) -> None:
        self._settings = settings
        self._client_id = client_id
        # Per partition aiokafka holds one open batch and makes the next send wait while it drains, so bulk
        # writers of kilobyte events need large batches; the listener's one-message writes do not.
        self._max_batch_bytes = max_batch_bytes
        self._timeout = settings.ack_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = KeyPartitioner()
        self._stopped = False

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=max(1000, int(self._timeout * 1000)),
            max_request_size=self._settings.mllp_max_frame_bytes + 64 * 1024,
            # A short linger turns many concurrent ACK-waiting writes into one produce request: the broker's
            # cost is per request, and with acks=all + idempotence only one request is in flight at a time.
            linger_ms=self._settings.kafka_linger_ms,
            max_batch_size=self._max_batch_bytes,
            partitioner=self._partitioner,  # the Java client's rule, cheaper than aiokafka's (hub/partition.py)
        )

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def connect(self, retry_every_s: float = 1.0) -> None:
        """Try until connected, or until ``stop`` is called. A cancel alone is not relied on to end a connect in
        the background: one swallowed below (Python 3.11's ``asyncio.wait_for`` does that when the cancel lands
        as its inner call finishes; it hung the API's shutdown once) would leave the loop retrying for ever;
        ``stop`` ends it at its next try."""
        while self._producer is None and not self._stopped:
            producer = self._new_producer()
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                log.warning("kafka not reachable, retrying", error=type(exc).__name__)
                await asyncio.sleep(retry_every_s)
                continue
            if self._stopped:  # stopped while this start was under way
                await producer.stop()
                return
            self._producer = producer

    async def stop(self) -> None:
        self._stopped = True
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = ()) -> tuple[int, int]:
        """Write one record; return (partition, offset) once it is durable.

        The deadline is a plain timer that cancels the delivery future (aiokafka documents that this does not
        stop the record being sent). ``asyncio.timeout`` did the same job at ~5 us more per write, which
        bench.mllp showed as 6% of the listener's CPU at 5,000 msg/s.
        """
        producer = self._producer
        if producer is None:
            raise DeliveryError(f"writing to {topic}: not connected to Kafka yet")
        expired: list[bool] = []
        try:
            # send() itself is bounded: its accumulator gives up after request_timeout_ms (= the ACK timeout).
            fut = await producer.send(topic, value, key=key, headers=list(headers))
            timer = asyncio.get_running_loop().call_later(self._timeout, _expire, fut, expired)
            try:
                meta = await fut
            finally:
                timer.cancel()
        except KafkaError as exc:
            raise DeliveryError(f"writing to {topic}: {type(exc).__name__}: Kafka did not confirm the write") from exc
        except asyncio.CancelledError:
            if not expired:
                raise  # our caller is being cancelled (shutdown), not a Kafka deadline
            raise DeliveryError(f"writing to {topic}: Kafka did not confirm the write within {self._timeout:g} s") from None
        return meta.partition, meta.offset

    async def write_many(self, records: Sequence[tuple[str, bytes, bytes | None, Headers]]) -> list[tuple[int, int]]:
        """Write records in order and wait for all of them: (partition, offset) each, or DeliveryError.

        For bulk loads: one coroutine for the whole batch instead of one per record, and one deadline counted
        once every record is queued, which is what lets an import keep up with Kafka.
        """
        producer = self._producer
        if producer is None:
            raise DeliveryError("writing: not connected to Kafka yet")
        try:
            futures = [await producer.send(topic, value, key=key, headers=list(headers))
                       for topic, value, key, headers in records]
            async with asyncio.timeout(self._timeout):
                done = await asyncio.gather(*futures)
        except KafkaError as exc:
            raise DeliveryError(f"writing {len(records)} records: {type(exc).__name__}: Kafka did not confirm") from exc
        except asyncio.TimeoutError:
            raise DeliveryError(f"writing {len(records)} records: Kafka did not confirm within {self._timeout:g} s"
                                ) from None
        return [(meta.partition, meta.offset) for meta in done]


def _expire(fut: asyncio.Future[object], expired: list[bool]) -> None:
    expired.append(True)
    fut.cancel()



Record = tuple[str, bytes, bytes | None, Headers]  # topic, value, key, headers


class Pending:
    """The confirmations of one ``BulkProducer.send_many``: await ``result()`` for (partition, offset) each.

    librdkafka reports each record from the producer's poll thread; the last report wakes the event loop once
    (one ``call_soon_threadsafe`` per batch, not per record).
    """

    __slots__ = ("_left", "_where", "_error", "_future", "_loop", "size")

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.size = size
        self._left = size
        self._where: list[tuple[int, int]] = [(-1, -1)] * size
        self._error: str | None = None
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()
        if not size:
            self._future.set_result(None)

    def _report(self, index: int, err: Any, msg: Any) -> None:  # librdkafka's delivery callback (poll thread)
        if err is not None:
            if self._error is None:
                self._error = err.str()
        else:
            self._where[index] = (msg.partition(), msg.offset())
        self._left -= 1
        if self._left == 0:
            self._loop.call_soon_threadsafe(self._settle)

    @property
    def done(self) -> bool:
        """Every record is confirmed (or failed): ``result()`` answers at once."""
        return self._future.done()

    def _settle(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def result(self, timeout_s: float) -> list[tuple[int, int]]:
        """(partition, offset) of every record in order once all are durable; DeliveryError otherwise."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._future)
        except asyncio.TimeoutError:
            raise DeliveryError(f"writing {self.size} records: Kafka did not confirm within {timeout_s:g} s") from None
        if self._error is not None:
            raise DeliveryError(f"writing {self.size} records: Kafka did not confirm: {self._error}")
        return self._where


class BulkProducer:
    """Bulk writes with acks=all and idempotence through librdkafka: large lingering batches, compressed,
    records queued from Python at ~1 us each and confirmed from librdkafka's own threads.

    The same ``connect`` / ``write`` / ``write_many`` / ``stop`` contract as DurableProducer (so the MLLP
    listener's path can use it inside an import), plus ``send_many``: queue a batch now and await its
    confirmations later, so an import maps the next chunk while Kafka confirms this one. Keys are partitioned
    with murmur2 like aiokafka and the Java client, so a patient's events land on the partition every other
    writer of the topic picks. Memory is bounded by ``max_buffer_mb``: sending waits for room.

    ``report_successes=False`` is for records whose offsets nobody needs (an import's events): librdkafka
    then reports only failures (``delivery.report.only.error``), so a confirmed record costs Python nothing;
    ``queue_many`` sends them and ``confirm_queued`` waits until every one is acknowledged or raises the first
    failure. A per-record confirmation from librdkafka's thread was a third of an import's CPU (py-spy).
    """

    def __init__(self, settings: Settings, client_id: str, *, timeout_s: float | None = None, linger_ms: int = 5,
                 compression: str = "none", max_buffer_mb: int = 256, report_successes: bool = True) -> None:
        self._timeout = timeout_s if timeout_s is not None else settings.ack_timeout_s
        self._settings, self._client_id = settings, client_id
        self._options = {"linger_ms": linger_ms, "compression": compression, "max_buffer_mb": max_buffer_mb}
        self.report_successes = report_successes
        self._failure: str | None = None  # the first failure of a record sent by queue_many
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",  # aiokafka's and Java's DefaultPartitioner for keyed records
            "linger.ms": linger_ms,
            "batch.size": 1 << 20,
            "compression.type": compression,
            "message.max.bytes": settings.mllp_max_frame_bytes + 64 * 1024,
            "message.timeout.ms": max(1000, int(self._timeout * 1000)),  # librdkafka fails the record itself
            "queue.buffering.max.kbytes": max_buffer_mb * 1024,
            "queue.buffering.max.messages": 1_000_000,
            "error_cb": _log_error,
            "on_delivery": self._queued_report,  # records sent without a callback of their own (queue_many)
            "delivery.report.only.error": not report_successes,
        }
        self._producer: confluent_kafka.Producer | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def connect(self, retry_every_s: float = 1.0) -> None:
        while self._producer is None:
            producer = confluent_kafka.Producer(self._config)
            try:  # librdkafka connects lazily: a metadata request proves the broker answers
                await asyncio.to_thread(producer.list_topics, timeout=max(1.0, retry_every_s))
            except confluent_kafka.KafkaException as exc:
                log.warning("kafka not reachable, retrying", error=exc.args[0].name() if exc.args else "?")
                await asyncio.sleep(retry_every_s)
                continue
            self._producer = producer
            self._stopping.clear()
            self._poller = threading.Thread(target=self._poll, name="hssk-bulk-poll", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        producer = self._producer
        while producer is not None and not self._stopping.is_set():
            producer.poll(0.05)

    async def stop(self) -> None:
        """Wait (up to the deadline) for what is queued, then stop the poll thread."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        self._stopping.set()  # one thread runs the delivery callbacks at a time: the poller ends, flush takes over
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
            self._poller = None
        await asyncio.to_thread(producer.flush, self._timeout)

    def sibling(self, **changes: Any) -> "BulkProducer":
        """A second producer with this one's settings and some changed (e.g. ``report_successes=False``)."""
        options = {"timeout_s": self._timeout, **self._options, "report_successes": self.report_successes,
                   **changes}
        return BulkProducer(self._settings, self._client_id, **options)

    def _queued_report(self, err: Any, _msg: Any) -> None:  # poll thread
        if err is not None and self._failure is None:
            self._failure = err.str()

    def queue_many(self, records: Sequence[Record]) -> None:
        """Send records in order without a confirmation each; ``confirm_queued`` confirms them all."""
        producer = self._producer
        if producer is None:
            raise DeliveryError("writing: not connected to Kafka yet")
        produce = producer.produce
        for topic, value, key, headers in records:
            while True:
                try:
                    if headers:
                        produce(topic, value, key, headers=list(headers))
                    else:
                        produce(topic, value, key)
                    break
                except BufferError:  # the bounded local queue is full: let librdkafka send some
                    time.sleep(0.005)
                except confluent_kafka.KafkaException as exc:  # e.g. a fatal idempotence error
                    raise DeliveryError(f"writing to {topic}: {exc.args[0].str() if exc.args else exc}") from None
        if self._failure is not None:
            raise DeliveryError(f"writing to {records[0][0] if records else 'kafka'}: Kafka did not confirm an "
                                f"earlier record: {self._failure}")

    async def confirm_queued(self) -> None:
        """Wait until every record this producer sent is acknowledged; DeliveryError at the first failure or
        when they are not all acknowledged within the deadline (librdkafka fails a record after it, too)."""
        producer = self._producer
        if producer is None:
            raise DeliveryError("writing: not connected to Kafka yet")
        deadline = time.monotonic() + self._timeout + 5.0
        while len(producer) and self._failure is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._failure is not None:
            raise DeliveryError(f"writing: Kafka did not confirm a record: {self._failure}")
        if len(producer):
            raise DeliveryError(f"writing: {len(producer)} records not confirmed within {self._timeout:g} s")

    def send_many(self, records: Sequence[Record]) -> Pending:
        """Queue records in order; the returned Pending confirms them. Blocks (briefly) while the buffer is full."""
        producer = self._producer
        if producer is None:
            raise DeliveryError("writing: not connected to Kafka yet")
        if not self.report_successes:
            raise DeliveryError("writing: this producer reports failures only (use queue_many)")
        pending = Pending(len(records), asyncio.get_running_loop())
        produce, report = producer.produce, pending._report
        for i, (topic, value, key, headers) in enumerate(records):
            callback = functools.partial(report, i)
            while True:
                try:
                    produce(topic, value, key, on_delivery=callback, headers=list(headers) if headers else None)
                    break
                except BufferError:  # the bounded local queue is full: let librdkafka send some
                    time.sleep(0.005)
                except confluent_kafka.KafkaException as exc:  # e.g. a fatal idempotence error
                    raise DeliveryError(f"writing to {topic}: {exc.args[0].str() if exc.args else exc}") from None
        return pending

    async def write_many(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Write records in order and wait for all of them: (partition, offset) each, or DeliveryError."""
        return await self.send_many(records).result(self._timeout + 5.0)

    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = ()) -> tuple[int, int]:
        return (await self.write_many([(topic, value, key, headers)]))[0]

    @property
    def timeout_s(self) -> float:
        return self._timeout


def _log_error(err: Any) -> None:
    log.warning("kafka client error", error=err.name(), fatal=err.fatal())
