"""Kafka's key -> partition rule: every hub producer must agree with the Java client (and librdkafka's
murmur2_random), or one citizen's events would land on two partitions and lose their order."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from hub.partition import KeyPartitioner, murmur2

# org.apache.kafka.common.utils.UtilsTest.testMurmur2 (signed Java ints).
JAVA_VECTORS = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
                "a-little-bit-longer-string": -1486304829,
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107}


@pytest.mark.parametrize(("text", "expected"), JAVA_VECTORS.items())
def test_the_java_clients_vectors(text: str, expected: int) -> None:
    assert murmur2(text.encode()) == expected & 0xFFFFFFFF


def test_equal_to_aiokafka_for_every_length_and_tail() -> None:
    rng = random.Random(130)
    for length in range(0, 140):
        for _ in range(8):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data), length
    key = "Nguyễn Thị Hồng Nhung|79001|BN-0042".encode()
    assert murmur2(key) == aiokafka_murmur2(key)


def test_the_partitioner_chooses_as_aiokafkas_default_and_remembers_keys() -> None:
    rng = random.Random(7)
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    for partitions in ([0, 1, 2, 3], list(range(12)), [0]):
        for _ in range(300):
            key = rng.randbytes(rng.randint(1, 80))
            assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)
            assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)  # from memory


def test_a_key_is_placed_again_when_the_partition_count_changes() -> None:
    ours, key = KeyPartitioner(), b"c-0123456789abcdef"
    assert ours(key, [0, 1, 2, 3], [0, 1, 2, 3]) == DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3])
    twelve = list(range(12))
    assert ours(key, twelve, twelve) == DefaultPartitioner()(key, twelve, twelve)


def test_records_without_a_key_go_to_an_available_partition() -> None:
    chosen = {KeyPartitioner()(None, [0, 1, 2, 3], [2]) for _ in range(20)}
    assert chosen == {2}
