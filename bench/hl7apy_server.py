"""The baseline of bench.mllp: hl7apy's own MLLP server doing the hub's ingestion job.

    python -m bench.hl7apy_server PORT

Each message is parsed by hl7apy, written to ``hl7v2.raw`` with the same Kafka client and settings the hub
uses (aiokafka, acks=all, idempotent; running on one event loop in a background thread, since hl7apy's
server is a thread-per-connection socketserver), and answered with an ACK built by hl7apy once the write is
confirmed. Nothing else (no dedup, no source checks), so the comparison favours the baseline.
"""

from __future__ import annotations

import asyncio
import sys
import threading

from aiokafka import AIOKafkaProducer
from hl7apy.core import Message
from hl7apy.mllp import AbstractErrorHandler, AbstractHandler, MLLPServer
from hl7apy.parser import parse_message

from hub.settings import Settings
from hub.topics import HL7V2_RAW

_loop = asyncio.new_event_loop()
_producer: AIOKafkaProducer


async def _start(settings: Settings) -> None:
    global _producer
    _producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await _producer.start()


def _store(raw: bytes, key: bytes) -> None:
    asyncio.run_coroutine_threadsafe(_producer.send_and_wait(HL7V2_RAW.name, raw, key=key), _loop).result(10)


def _ack(incoming: Message, code: str) -> str:
    ack = Message("ACK", version=incoming.version)
    ack.msh.msh_3 = incoming.msh.msh_5.value or "HSSK"
    ack.msh.msh_4 = incoming.msh.msh_6.value or "HSSK"
    ack.msh.msh_5 = incoming.msh.msh_3.value
    ack.msh.msh_6 = incoming.msh.msh_4.value
    ack.msh.msh_9 = "ACK"
    ack.msh.msh_10 = "ACK" + incoming.msh.msh_10.value
    ack.add_segment("MSA")
    ack.msa.msa_1 = code
    ack.msa.msa_2 = incoming.msh.msh_10.value
    return "\x0b" + ack.to_mllp().strip("\x0b\x1c\r") + "\r\x1c\r"


class StoreHandler(AbstractHandler):
    def reply(self) -> str:
        message = parse_message(self.incoming_message, find_groups=False)
        key = (message.msh.msh_4.value + "|" + message.pid.pid_3.value).encode()
        _store(self.incoming_message.encode("utf-8"), key)
        return _ack(message, "AA")


class ErrorHandler(AbstractErrorHandler):
    def reply(self) -> str:
        return "\x0bMSH|^~\\&|HSSK|HSSK|||||ACK|ERR|P|2.5\rMSA|AE|\r\x1c\r"


class Server(MLLPServer):
    request_queue_size = 1024  # the listen backlog; socketserver's default of 5 refuses 100 senders
    daemon_threads = True


def main() -> int:
    port = int(sys.argv[1])
    settings = Settings.from_env()
    threading.Thread(target=_loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(_start(settings), _loop).result(60)
    handlers = {"ADT^A08^ADT_A01": (StoreHandler,), "ADT^A08": (StoreHandler,), "ERR": (ErrorHandler,)}
    server = Server("127.0.0.1", port, handlers)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
