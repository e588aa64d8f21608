"""Support for ``hub demo``: wait until the demo citizens' records exist (without reading their content)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from hub.record.read import find_citizen_by_cccd
from hub.settings import Settings


async def wait_for_records(settings: Settings, cccds: tuple[str, ...], timeout_s: float) -> bool:
    client = aioredis.from_url(settings.redis_url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline:
            ready = 0
            for cccd in cccds:
                cid = await find_citizen_by_cccd(settings, client, cccd)
                ready += bool(cid and await client.exists(f"record:{cid}"))
            if ready == len(cccds):
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await client.aclose()
