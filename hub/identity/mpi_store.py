"""The streaming MPI's state in Redis: deterministic links, blocking keys, indexed records, citizens.

Key layout (every name below the prefix is a keyed hash, so no key holds an ID number or a name)::

    mpi:{sNN}:l:<bbb>   HASH  identity key (keyed hash of system + value)  -> citizen id      links
    mpi:{sNN}:b:<bbbb>  HASH  block hash (keyed hash of rule + blocking key) -> record refs   candidates
    mpi:{sNN}:r:<bbb>   HASH  record ref (16 hex)                          -> packed record  (hub.identity.indexed)
    mpi:{sNN}:c:<bbb>   HASH  citizen id                                   -> record refs    the citizen's records
    mpi:{review}:...    review cases, the open queue, merge markers and aliases (hub.identity.review)

``NN`` is the shard (a Redis Cluster hash tag, 16 of them) and ``bbb`` a bucket of the hash: small hashes
stay in Redis' compact listpack encoding (~30 bytes per entry instead of ~90 for a string key), which is
what keeps a city-sized index in memory (blocks, ~11 per record, get 16x more buckets). Refs are fixed-width (16 hex), concatenated without separators.

Every batch is served by one Lua call per shard and trip, its work in one argument (redis-py spends
~15-40 µs per pipelined command and ~1 µs per argument on this machine; the script does the work in Redis
for ~1 µs per entry). Links are first-writer-wins inside the
script (HSETNX semantics), so workers racing on one identifier agree. Nothing here assumes one process:
all state is in Redis.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Protocol

from hub.envelope import Identifier

SHARDS = 16  # part of the key layout: changing it means rebuilding the index from Kafka
REF_LEN = 16
REVIEW_TAG = "mpi:{review}"
_HEX = "0123456789abcdef"

# (shard, key within the shard, hash field): where one value lives. The shard's prefix makes the key:
# ``mpi:{s07}:`` + ``b:f99``. Shard -1 is the review tag (``mpi:{review}:`` + ``cases``).
Slot = tuple[int, str, str]
# A write: (slot, op, value). Ops: "L" link if absent (returns the value found, None if it was set),
# "A" append a fixed-width item unless present, "S" set, "C" compare-and-set (value "old|new"), "Q" open a
# review case unless it exists (value "score|json"; also queues it in the ZSET ``<key>:open``).
Op = tuple[Slot, str, str]

# One script call per shard and trip, its work in one argument: ``key\tfield\n`` per read,
# ``op\tkey\tfield\tvalue\n`` per write. (redis-py packs every argument in Python, ~1 µs each: one blob
# instead of ~70 arguments per event.) Fields are hex or citizen ids and values orjson or hex, so neither
# ever holds a raw tab or newline. KEYS[1] is the shard's prefix: it routes the call to the shard's node.
_READ = r"""
local prefix, out, i = KEYS[1], {}, 0
for k, f in string.gmatch(ARGV[1], '([^\t]+)\t([^\n]+)\n') do
  i = i + 1
  out[i] = redis.call('HGET', prefix .. k, f)
end
return out
"""

_WRITE = r"""
local prefix, out, i = KEYS[1], {}, 0
for op, k, f, v in string.gmatch(ARGV[1], '([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\n]*)\n') do
  i = i + 1
  local key = prefix .. k
  local cur = false
  if op ~= 'S' then cur = redis.call('HGET', key, f) end  -- a set needs no read
  out[i] = false
  if op == 'L' then
    if cur then out[i] = cur else redis.call('HSET', key, f, v) end
  elseif op == 'A' then
    local found = false
    if cur then
      local w = #v
      for j = 1, #cur, w do if string.sub(cur, j, j + w - 1) == v then found = true; break end end
    end
    if not found then redis.call('HSET', key, f, (cur or '') .. v) end
  elseif op == 'S' then
    redis.call('HSET', key, f, v)
  elseif op == 'Q' then
    if cur then out[i] = cur else
      local sep = string.find(v, '|', 1, true)
      redis.call('HSET', key, f, string.sub(v, sep + 1))
      redis.call('ZADD', key .. ':open', tonumber(string.sub(v, 1, sep - 1)), f)
    end
  elseif op == 'C' then
    local sep = string.find(v, '|', 1, true)
    if cur == string.sub(v, 1, sep - 1) then redis.call('HSET', key, f, string.sub(v, sep + 1)) end
    out[i] = cur
  end
end
return out
"""
_PREFIXES = [f"mpi:{{s{n:02d}}}:" for n in range(SHARDS)]
_SHARD_OF = {f"{b:02x}": b % SHARDS for b in range(256)}


def prefix(shard: int) -> str:
    return REVIEW_TAG + ":" if shard < 0 else _PREFIXES[shard]


_HASHERS: dict[bytes, "hashlib._Hash"] = {}


def mpi_hash(secret: bytes, *parts: str) -> str:
    """The one keyed hash of the MPI's Redis names (identity keys, block hashes, record refs, merge markers).

    Keyed BLAKE2b (a keyed hash by design, as secure as HMAC for this), 16 bytes: ~1 µs against ~6.5 µs for
    HMAC-SHA256 (``hub.pseudonym.keyed_hash``), and an event derives ~12 of these. The keyed state is built
    once per secret and copied per call. Changing this function renames every MPI key: the index is then
    rebuilt from Kafka (``hub rebuild``); citizen ids (``citizen_id_for``) do not depend on it.
    """
    h = _keyed(secret).copy()
    h.update("\x1f".join(parts).encode())
    return h.hexdigest()


def _keyed(secret: bytes) -> "hashlib._Hash":
    """The keyed BLAKE2b state of ``mpi_hash``, built once per secret (each hash copies it)."""
    base = _HASHERS.get(secret)
    if base is None:
        key = secret if len(secret) <= 64 else hashlib.sha256(secret).digest()
        base = _HASHERS[secret] = hashlib.blake2b(key=key, digest_size=16, person=b"hssk-mpi")
    return base


def identity_key(secret: bytes, identifier: Identifier) -> str:
    """The key of a source identifier: a keyed hash, so Redis holds no id numbers in key names."""
    return mpi_hash(secret, "id", identifier.system, identifier.value)


def link_slot(ikey: str) -> Slot:
    return _SHARD_OF[ikey[:2]], "l:" + ikey[2:5], ikey


def block_slot(secret: bytes, rule: str, key: str) -> Slot:
    h = mpi_hash(secret, "blk", rule, key)[:REF_LEN]
    return _SHARD_OF[h[:2]], "b:" + h[2:6], h  # ~10 entries per bucket at 1M citizens, ~70 at 6.6M


def block_slots(secret: bytes, keys: list[tuple[str, str]]) -> list[Slot]:
    """``block_slot`` of each (rule, key): the same slots, the keyed state looked up once (an event has ~8)."""
    copy = _keyed(secret).copy
    out: list[Slot] = []
    for rule, key in keys:
        h = copy()
        h.update(f"blk\x1f{rule}\x1f{key}".encode())
        x = h.hexdigest()[:REF_LEN]
        out.append((_SHARD_OF[x[:2]], "b:" + x[2:6], x))
    return out


def record_slot(ref: str) -> Slot:
    return _SHARD_OF[ref[:2]], "r:" + ref[2:5], ref


def citizen_slot(citizen_id: str) -> Slot:
    h = citizen_id[3:8]
    if len(h) < 5 or h.strip(_HEX):  # not a minted id (an operator's or a test's): spread it by its CRC
        h = f"{zlib.crc32(citizen_id.encode()):08x}"
    return _SHARD_OF[h[:2]], "c:" + h[2:5], citizen_id


def split_refs(value: bytes | None) -> list[str]:
    if not value:
        return []
    text = value.decode()
    return [text[i:i + REF_LEN] for i in range(0, len(text), REF_LEN)]


class MpiStore(Protocol):
    """Batched reads and writes of hash fields; one round trip per call whatever the batch size."""

    async def get(self, slots: list[Slot]) -> list[bytes | None]: ...

    async def write(self, ops: list[Op]) -> list[bytes | None]: ...


class RedisMpiStore:
    """``MpiStore`` on Redis (or a Redis Cluster: every script call stays inside one shard's hash tag)."""

    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self.redis = redis
        self._read = redis.register_script(_READ)
        self._write = redis.register_script(_WRITE)

    async def get(self, slots: list[Slot]) -> list[bytes | None]:
        groups: dict[int, tuple[list[int], list[str]]] = {}
        for i, (shard, key, fld) in enumerate(slots):
            group = groups.get(shard)
            if group is None:
                group = groups[shard] = ([], [])
            group[0].append(i)
            group[1].append(f"{key}\t{fld}\n")
        return await self._run(self._read, groups, len(slots))

    async def write(self, ops: list[Op]) -> list[bytes | None]:
        groups: dict[int, tuple[list[int], list[str]]] = {}
        for i, ((shard, key, fld), op, value) in enumerate(ops):
            group = groups.get(shard)
            if group is None:
                group = groups[shard] = ([], [])
            group[0].append(i)
            group[1].append(f"{op}\t{key}\t{fld}\t{value}\n")
        return await self._run(self._write, groups, len(ops))

    async def _run(self, script, groups: dict[int, tuple[list[int], list[str]]], n: int) -> list[bytes | None]:
        """One script call per shard, its lines (grouped by the caller as it formats them: one pass) joined
        into one argument; the replies back in input order."""
        if not n:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, (_, shard_lines) in groups.items():
                await script(keys=[prefix(shard)], args=["".join(shard_lines)], client=pipe)
            replies = await pipe.execute()
        out: list[bytes | None] = [None] * n
        for (idx, _), reply in zip(groups.values(), replies, strict=True):
            for i, value in zip(idx, reply, strict=True):
                if value:
                    out[i] = value
        return out


class MemoryMpiStore:
    """The same semantics in a dict: for unit tests of the pure resolution logic."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.queues: dict[str, dict[str, float]] = {}

    async def get(self, slots: list[Slot]) -> list[bytes | None]:
        return [self.data.get((prefix(shard) + key, field)) for shard, key, field in slots]

    async def write(self, ops: list[Op]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for (shard, key, field), op, value in ops:
            key = prefix(shard) + key
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
