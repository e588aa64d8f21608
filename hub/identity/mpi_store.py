"""The streaming MPI's state in Redis: deterministic links, blocking keys, indexed records, citizens.

Key layout (every name below the prefix is a keyed hash, so no key holds an ID number or a name)::

    mpi:{sNN}:l:<bbb>   HASH  identity key (keyed hash of system + value)  -> citizen id      links
    mpi:{sNN}:b:<bbb>   HASH  block hash (keyed hash of rule + blocking key) -> record refs   candidates
    mpi:{sNN}:r:<bbb>   HASH  record ref (16 hex)                          -> packed record  (hub.identity.indexed)
    mpi:{sNN}:c:<bbb>   HASH  citizen id                                   -> record refs    the citizen's records
    mpi:{review}:...    review cases, the open queue, merge markers and aliases (hub.identity.review)

``NN`` is the shard (a Redis Cluster hash tag, 16 of them) and ``bbb`` a bucket of the hash: small hashes
stay in Redis' compact listpack encoding (~30 bytes per entry instead of ~90 for a string key), which is
what keeps a city-sized index in memory. Refs are fixed-width (16 hex), concatenated without separators.

Every batch is served by one Lua call per shard and trip (redis-py spends ~15-40 µs per pipelined command
on this machine; a script does the same work in Redis for ~1 µs). Links are first-writer-wins inside the
script (HSETNX semantics), so workers racing on one identifier agree. Nothing here assumes one process:
all state is in Redis.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Protocol

from hub.envelope import Identifier
from hub.pseudonym import keyed_hash

SHARDS = 16  # part of the key layout: changing it means rebuilding the index from Kafka
REF_LEN = 16
REVIEW_TAG = "mpi:{review}"
_HEX = "0123456789abcdef"

# (shard, redis key, hash field): where one value lives.
Slot = tuple[int, str, str]
# A write: (slot, op, value). Ops: "L" link if absent (returns the value found, None if it was set),
# "A" append a fixed-width item unless present, "S" set, "C" compare-and-set (value "old|new"), "Q" open a
# review case unless it exists (value "score|json"; also queues it in the ZSET ``<key>:open``).
Op = tuple[Slot, str, str]

_READ = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], ARGV[i]) end
return out
"""

_WRITE = """
local out = {}
for i = 1, #KEYS do
  local op, f, v = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local cur = redis.call('HGET', KEYS[i], f)
  if op == 'L' then
    if cur then out[i] = cur else redis.call('HSET', KEYS[i], f, v); out[i] = false end
  elseif op == 'A' then
    local found = false
    if cur then
      local w = #v
      for j = 1, #cur, w do if string.sub(cur, j, j + w - 1) == v then found = true; break end end
    end
    if not found then redis.call('HSET', KEYS[i], f, (cur or '') .. v) end
    out[i] = false
  elseif op == 'S' then
    redis.call('HSET', KEYS[i], f, v); out[i] = false
  elseif op == 'Q' then
    if cur then out[i] = cur else
      local sep = string.find(v, '|', 1, true)
      redis.call('HSET', KEYS[i], f, string.sub(v, sep + 1))
      redis.call('ZADD', KEYS[i] .. ':open', tonumber(string.sub(v, 1, sep - 1)), f)
      out[i] = false
    end
  elseif op == 'C' then
    local sep = string.find(v, '|', 1, true)
    if cur == string.sub(v, 1, sep - 1) then redis.call('HSET', KEYS[i], f, string.sub(v, sep + 1)) end
    out[i] = cur
  end
end
return out
"""


def identity_key(secret: bytes, identifier: Identifier) -> str:
    """The key of a source identifier: a keyed hash, so Redis holds no id numbers in key names."""
    return keyed_hash(secret, "id", identifier.system, identifier.value)


def _slot(kind: str, h: str, field: str | None = None) -> Slot:
    shard = int(h[:2], 16) % SHARDS
    return shard, f"mpi:{{s{shard:02d}}}:{kind}:{h[2:5]}", field or h


def link_slot(ikey: str) -> Slot:
    return _slot("l", ikey)


def block_slot(secret: bytes, rule: str, key: str) -> Slot:
    return _slot("b", keyed_hash(secret, "blk", rule, key)[:REF_LEN])


def record_slot(ref: str) -> Slot:
    return _slot("r", ref)


def citizen_slot(citizen_id: str) -> Slot:
    h = citizen_id[3:8]
    if len(h) < 5 or h.strip(_HEX):  # not a minted id (an operator's or a test's): spread it by its CRC
        h = f"{zlib.crc32(citizen_id.encode()):08x}"
    return _slot("c", h, citizen_id)


def split_refs(value: bytes | None) -> list[str]:
    if not value:
        return []
    text = value.decode()
    return [text[i:i + REF_LEN] for i in range(0, len(text), REF_LEN)]


class MpiStore(Protocol):
    """Batched reads and writes of hash fields; one round trip per call whatever the batch size."""

    async def get(self, slots: list[Slot]) -> list[bytes | None]: ...

    async def write(self, ops: list[Op]) -> list[bytes | None]: ...


def _by_shard(n: int, shard_of) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[shard_of(i)].append(i)
    return groups


class RedisMpiStore:
    """``MpiStore`` on Redis (or a Redis Cluster: every script call touches one shard's hash tag)."""

    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self.redis = redis
        self._read = redis.register_script(_READ)
        self._write = redis.register_script(_WRITE)

    async def get(self, slots: list[Slot]) -> list[bytes | None]:
        if not slots:
            return []
        groups = _by_shard(len(slots), lambda i: slots[i][0])
        async with self.redis.pipeline(transaction=False) as pipe:
            for idx in groups.values():
                await self._read(keys=[slots[i][1] for i in idx], args=[slots[i][2] for i in idx], client=pipe)
            replies = await pipe.execute()
        out: list[bytes | None] = [None] * len(slots)
        for idx, reply in zip(groups.values(), replies, strict=True):
            for i, value in zip(idx, reply, strict=True):
                out[i] = value or None
        return out

    async def write(self, ops: list[Op]) -> list[bytes | None]:
        if not ops:
            return []
        groups = _by_shard(len(ops), lambda i: ops[i][0][0])
        async with self.redis.pipeline(transaction=False) as pipe:
            for idx in groups.values():
                args: list[str] = []
                for i in idx:
                    (_, _, field), op, value = ops[i]
                    args += (op, field, value)
                await self._write(keys=[ops[i][0][1] for i in idx], args=args, client=pipe)
            replies = await pipe.execute()
        out: list[bytes | None] = [None] * len(ops)
        for idx, reply in zip(groups.values(), replies, strict=True):
            for i, value in zip(idx, reply, strict=True):
                out[i] = value or None
        return out


class MemoryMpiStore:
    """The same semantics in a dict: for unit tests of the pure resolution logic."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.queues: dict[str, dict[str, float]] = {}

    async def get(self, slots: list[Slot]) -> list[bytes | None]:
        return [self.data.get((key, field)) for _, key, field in slots]

    async def write(self, ops: list[Op]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for (_, key, field), op, value in ops:
            cur = self.data.get((key, field))
            raw = value.encode()
            if op == "L":
                if cur is None:
                    self.data[(key, field)] = raw
                out.append(cur)
                continue
            if op == "A":
                old = cur or b""
                if not any(old[j:j + len(raw)] == raw for j in range(0, len(old), len(raw))):
                    self.data[(key, field)] = old + raw
            elif op == "S":
                self.data[(key, field)] = raw
            elif op == "Q":
                if cur is None:
                    score, doc = raw.split(b"|", 1)
                    self.data[(key, field)] = doc
                    self.queues.setdefault(key + ":open", {})[field] = float(score)
                out.append(cur)
                continue
            elif op == "C":
                expect, new = raw.split(b"|", 1)
                if cur == expect:
                    self.data[(key, field)] = new
                out.append(cur)
                continue
            out.append(None)
        return out


class RedisLinkStore:
    """Exact identifier -> citizen lookups (the API, record reads) over the MPI's link hashes."""

    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self._store = RedisMpiStore(redis)

    async def lookup(self, ikey: str) -> str | None:
        [value] = await self._store.get([link_slot(ikey)])
        return value.decode() if value else None

    async def link_many(self, links: list[tuple[str, str]]) -> list[str]:
        """For each (identity key, citizen id): link unless already linked; return the linked citizen ids."""
        found = await self._store.write([(link_slot(k), "L", cid) for k, cid in links])
        return [f.decode() if f else cid for (_, cid), f in zip(links, found, strict=True)]
