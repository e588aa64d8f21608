"""The record's serving view in Redis: one JSON document per citizen, the ids of applied events, an outbox.

Keys (``prefix`` is empty for the live view, ``rebuild:`` for ``hub rebuild``):
``record:<cid>`` the record (or a redirect ``{"merged_into": ...}`` after a merge), ``record:<cid>:events`` the
set of applied event ids, ``record-outbox:<partition>`` changes committed but maybe not yet on record.changes:
one field per commit, named by its offset range ``<first>-<last>`` on that partition of events.citizen, whose
value has one JSON line per change, ``[event id, citizen id, record version]`` (one field rather than one per
event: packing a Redis argument per event was a large share of the step). A change is the event as it came plus
the citizen and version (hub.stream.record.change_body), and the event comes again with its bytes when a
redelivery needs the change, so the outbox keeps only what the event does not say: ~60 bytes, not the whole
event (a lab report's changes were half a megabyte per batch, written and deleted again). A line that is a
JSON object is a whole change, as outboxes written before this held them. The hash is empty between batches
unless a worker died mid-batch.

Why optimistic transactions: events.citizen is keyed by citizen, so one worker owns each citizen's partition,
but a merge writes two records (the survivor's worker also rewrites the retired record, which may live on
another partition) and an event for a retired id is applied to the survivor by the retired id's worker. So a
record is read under WATCH and written in one MULTI/EXEC with its applied set and the batch's changes; if
another worker wrote any record we read in between, EXEC fails and the batch is computed again from the new
state (hub.stream.record). Every write to an applied set also writes its record, so watching record keys is
enough. On a Redis Cluster the keys of one transaction would need one hash slot: not done yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from redis.exceptions import WatchError

from hub.record.apply import Record
from hub.record.errors import RecordError
from hub.record.merge import MERGE_KEY, is_redirect

MAX_CHAIN = 32  # longest redirect chain followed (A -> B -> C ...); a longer one is a bug, not data

# The applied sets of a whole batch in one command each way. Keys are declared (KEYS[i] is the i-th citizen's
# set); the members travel as one JSON argument, a flat array holding per key its member count and then its
# members: redis-py packs each argument in Python, and one argument per event id cost the worker more than the
# lookup itself (a flat array costs Redis one table, where an array per key cost one per citizen). The
# membership answer is one string of 0/1, in the order of the members.
_IS_MEMBER = """
local ids, out, a = cjson.decode(ARGV[1]), {}, 1
for _, key in ipairs(KEYS) do
  local n = ids[a]
  if n == 1 then
    out[#out + 1] = redis.call('SISMEMBER', key, ids[a + 1])
  else
    for j = a + 1, a + n, 1000 do  -- unpack takes a few thousand values at most
      for _, found in ipairs(redis.call('SMISMEMBER', key, unpack(ids, j, math.min(j + 999, a + n)))) do
        out[#out + 1] = found
      end
    end
  end
  a = a + n + 1
end
return table.concat(out)
"""
_ADD_MEMBERS = """
local ids, a = cjson.decode(ARGV[1]), 1
for _, key in ipairs(KEYS) do
  local n = ids[a]
  for j = a + 1, a + n, 1000 do redis.call('SADD', key, unpack(ids, j, math.min(j + 999, a + n))) end
  a = a + n + 1
end
return #KEYS
"""


def _key_members(groups: dict[str, list[str]], prefix: str) -> tuple[list[str], bytes]:
    """(KEYS, ARGV[1]) for the scripts above: the applied set of each citizen, and its count and members."""
    flat: list[str | int] = []
    for members in groups.values():
        flat.append(len(members))
        flat.extend(members)
    return [applied_key(c, prefix) for c in groups], orjson.dumps(flat)


def record_key(citizen_id: str, prefix: str = "") -> str:
    return f"{prefix}record:{citizen_id}"


def applied_key(citizen_id: str, prefix: str = "") -> str:
    return f"{prefix}record:{citizen_id}:events"


def outbox_key(partition: int, prefix: str = "") -> str:
    return f"{prefix}record-outbox:{partition}"


def outbox_field(entries: list[tuple[int, bytes]]) -> str:
    """The outbox field of one commit's changes: the offset range they came from."""
    offsets = [offset for offset, _ in entries]
    return f"{min(offsets)}-{max(offsets)}"


def outbox_last(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


Committed = tuple[str, int] | bytes  # an outbox line: (citizen id, record version), or a whole change


def outbox_line(event_id: str, citizen_id: str, version: int) -> bytes:
    return orjson.dumps([event_id, citizen_id, version])


def outbox_changes(blob: bytes) -> dict[str, Committed]:
    """The lines of one outbox field by event id (read only when a redelivered event needs one)."""
    found: dict[str, Committed] = {}
    for line in blob.split(b"\n"):
        if line:
            entry = orjson.loads(line)
            if isinstance(entry, list):
                found[entry[0]] = (entry[1], entry[2])
            else:
                found[entry["event_id"]] = line
    return found


def visible(record: Record) -> Record:
    """The record as readers get it: without the merge bookkeeping."""
    return {k: v for k, v in record.items() if k != MERGE_KEY}


@dataclass
class Writes:
    """What one transaction writes: records, applied event ids, applied sets to union, outbox entries."""

    records: dict[str, Record] = field(default_factory=dict)
    applied: dict[str, list[str]] = field(default_factory=dict)
    unions: list[tuple[str, str]] = field(default_factory=list)  # (into citizen, from citizen)
    outbox: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)  # partition -> [(offset, line)]


class Transaction:
    """One optimistic read-modify-write over several records: WATCH, read, compute, MULTI/EXEC."""

    def __init__(self, store: "RedisRecordStore") -> None:
        self._store = store
        self._pipe = store.redis.pipeline(transaction=True)

    async def __aenter__(self) -> "Transaction":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._pipe.reset()

    async def load(self, citizen_ids: list[str]) -> dict[str, Record | None]:
        """Watch and read these records."""
        if not citizen_ids:
            return {}
        keys = [record_key(c, self._store.prefix) for c in citizen_ids]
        await self._pipe.watch(*keys)
        raws = await self._store.redis.mget(keys)
        return {c: orjson.loads(raw) if raw else None for c, raw in zip(citizen_ids, raws, strict=True)}

    async def lookups(self, applied: list[tuple[str, str]],
                      partitions: set[int]) -> tuple[list[bool], dict[int, dict[str, bytes]]]:
        """Which (citizen, event id) are applied, and the outbox fields of these partitions; one round trip."""
        prefix = self._store.prefix
        by_citizen: dict[str, list[str]] = {}
        for citizen_id, event_id in applied:
            by_citizen.setdefault(citizen_id, []).append(event_id)
        if not by_citizen and not partitions:
            return [], {}
        async with self._store.redis.pipeline(transaction=False) as pipe:
            if by_citizen:
                keys, members = _key_members(by_citizen, prefix)
                pipe.eval(_IS_MEMBER, len(keys), *keys, members)
            for partition in sorted(partitions):
                pipe.hgetall(outbox_key(partition, prefix))
            answers = iter(await pipe.execute())
        flags = iter(next(answers) if by_citizen else b"")  # b"0110...": one byte per member, in order
        member = {(c, e): next(flags) == 49 for c, ids in by_citizen.items() for e in ids}  # 49: b"1"
        outbox = {p: {k.decode(): v for k, v in next(answers).items()} for p in sorted(partitions)}
        return [member[pair] for pair in applied], outbox

    async def commit(self, writes: Writes) -> bool:
        """Write everything at once; False (nothing written) if a watched record changed meanwhile."""
        prefix = self._store.prefix
        pipe = self._pipe
        pipe.multi()
        if writes.records:
            pipe.mset({record_key(c, prefix): orjson.dumps(r) for c, r in writes.records.items()})
        applied = {c: ids for c, ids in writes.applied.items() if ids}
        if applied:
            keys, members = _key_members(applied, prefix)
            pipe.eval(_ADD_MEMBERS, len(keys), *keys, members)
        for into, source in writes.unions:
            pipe.sunionstore(applied_key(into, prefix), [applied_key(into, prefix), applied_key(source, prefix)])
        for partition, entries in writes.outbox.items():
            if entries:
                pipe.hset(outbox_key(partition, prefix), outbox_field(entries), b"\n".join(c for _, c in entries))
        try:
            await pipe.execute()
        except WatchError:
            return False
        return True


class RedisRecordStore:
    def __init__(self, redis, prefix: str = "") -> None:  # redis.asyncio.Redis
        self.redis = redis
        self.prefix = prefix

    def transaction(self) -> Transaction:
        return Transaction(self)

    async def load(self, citizen_id: str) -> Record | None:
        """A citizen's record for readers: a retired citizen's redirect is followed to the survivor."""
        for _ in range(MAX_CHAIN):
            raw = await self.redis.get(record_key(citizen_id, self.prefix))
            if raw is None:
                return None
            record = orjson.loads(raw)
            if not is_redirect(record):
                return visible(record)
            citizen_id = record["merged_into"]
        raise RecordError(f"redirect chain longer than {MAX_CHAIN} records")

    async def clear_outbox(self, fields: dict[int, set[str]]) -> None:
        """Forget outbox fields whose changes are now durable on record.changes."""
        fields = {p: names for p, names in fields.items() if names}
        if not fields:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition, names in fields.items():
                pipe.hdel(outbox_key(partition, self.prefix), *names)
            await pipe.execute()
