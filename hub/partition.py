"""Which partition a keyed record goes to: the Java client's murmur2 partitioning, at a fraction of the cost.

Every producer of the hub must put a key on the same partition (per-citizen order across the listener, the
stages and ``hub import``'s librdkafka, which uses ``murmur2_random``), so this is exactly Kafka's
``Utils.murmur2`` rule, tested against aiokafka's own. aiokafka computes it byte by byte in Python, ~50 µs for
a 64-character key on this machine, once per record a stage sends; here the key's words are unpacked in one
``struct`` call (a few µs), and the partitions of recent keys are remembered, since a citizen's events and
changes reuse one key.
"""

from __future__ import annotations

import random
import struct
from typing import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_CACHE_MAX = 200_000  # keys remembered (~100 bytes each); the whole cache is dropped when full


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (org.apache.kafka.common.utils.Utils.murmur2), as an unsigned 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        tail = words << 2
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


class KeyPartitioner:
    """An aiokafka ``partitioner``: the default partitioner's choice for every key, remembered per key."""

    def __init__(self) -> None:
        self._known: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        count = len(all_partitions)
        index = self._known.get((key, count))
        if index is None:
            if len(self._known) >= _CACHE_MAX:
                self._known.clear()
            index = self._known[(key, count)] = (murmur2(key) & 0x7FFFFFFF) % count
        return all_partitions[index]
