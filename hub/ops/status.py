"""Status of the hub: are the services and roles up, which topics exist, how far behind is each stage."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import asdict, dataclass, field

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from hub.ops import lag as lag_
from hub.ops import local
from hub.ops.lag import ROLE_GROUPS, ROLE_SOURCES, group_of  # noqa: F401 - re-exported for older callers
from hub.settings import Settings


@dataclass
class GroupLag:
    group: str
    topic: str
    partitions: dict[int, int]  # partition -> lag (log end offset - committed offset)

    @property
    def total(self) -> int:
        return sum(self.partitions.values())


@dataclass
class Status:
    services: dict[str, dict] = field(default_factory=dict)
    roles: dict[str, dict] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)
    lag: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    await admin.start()
    return admin


async def consumer_lag(settings: Settings, admin: AIOKafkaAdminClient) -> list[GroupLag]:
    """Lag in messages of each hub role on its source topic, per partition (hub.ops.lag measures it)."""
    rows = await lag_.measure(settings, ROLE_GROUPS, seconds=False, admin=admin)
    result = []
    for group, topic in ROLE_GROUPS.items():
        parts = {r.partition: r.lag for r in rows if r.group == group and r.topic == topic}
        if parts:
            result.append(GroupLag(group, topic, parts))
    return result


async def group_is_stable(admin: AIOKafkaAdminClient, group: str) -> bool:
    """True when the group has members and has finished rebalancing (the role is consuming)."""
    try:
        responses = await admin.describe_consumer_groups([group])
    except KafkaError:  # e.g. the group coordinator is still being elected on a fresh broker
        return False
    for response in responses:
        for described in response.groups:
            state, members = described[2], described[5]
            if state == "Stable" and members:
                return True
    return False


async def wait_ready(settings: Settings, roles: tuple[str, ...], timeout_s: float = 90.0) -> list[str]:
    """Poll until each role serves (MLLP port open, stream groups stable); return those that are not.

    A role whose process has exited is reported at once rather than waited for.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    waiting = set(roles)
    dead: set[str] = set()
    admin = await _admin(settings)
    try:
        while waiting and asyncio.get_running_loop().time() < deadline:
            for role in list(waiting):
                if local.role_pid(settings, role) is None:
                    dead.add(role)
                    waiting.discard(role)
                    continue
                if role == "mllp":
                    ready = port_open(settings.mllp_host, settings.mllp_port)
                elif role == "api":
                    ready = port_open(settings.api_host, settings.api_port)
                elif role == "receiver":
                    ready = port_open(settings.receiver_host, settings.receiver_port)
                else:
                    ready = await group_is_stable(admin, group_of(role))
                if ready:
                    waiting.discard(role)
            if waiting:
                await asyncio.sleep(0.2)
        return sorted(waiting | dead)
    finally:
        await admin.close()


async def collect(settings: Settings) -> Status:
    status = Status()
    kafka_host, kafka_port = settings.kafka_bootstrap.rsplit(":", 1)
    status.services["kafka"] = {"up": port_open(kafka_host, int(kafka_port)), "address": settings.kafka_bootstrap}
    redis_addr = settings.redis_url.split("//", 1)[1].split("/", 1)[0]
    redis_host, redis_port = redis_addr.rsplit(":", 1)
    status.services["redis"] = {"up": port_open(redis_host, int(redis_port)), "address": redis_addr}
    for role in local.ROLES:
        pid = local.role_pid(settings, role)
        address = (f"{settings.mllp_host}:{settings.mllp_port}" if role == "mllp" else
                   f"http://{settings.api_host}:{settings.api_port}" if role == "api" else
                   f"http://{settings.receiver_host}:{settings.receiver_port}" if role == "receiver" else
                   f"group {group_of(role)}")
        status.roles[role] = {"up": pid is not None, "pid": pid, "address": address}
    if status.services["kafka"]["up"]:
        try:
            admin = await _admin(settings)
            try:
                status.topics = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
                status.lag = [{"group": g.group, "topic": g.topic, "lag": g.total, "partitions": g.partitions}
                              for g in await consumer_lag(settings, admin)]
            finally:
                await admin.close()
        except (KafkaError, lag_.KafkaUnavailable) as exc:
            status.services["kafka"]["error"] = type(exc).__name__
    return status
