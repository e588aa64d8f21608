"""The benchmarks' own stack: ports and state folder apart from the demo (.hub) and the tests (.hub-test),
so a benchmark never disturbs either. One place for every bench module."""

from __future__ import annotations

from hub.settings import REPO_ROOT

BENCH_ENV = {
    "HSSK_STATE_DIR": str(REPO_ROOT / ".hub-bench"),
    "HSSK_KAFKA_PORT": "39092",
    "HSSK_KAFKA_CONTROLLER_PORT": "39093",
    "HSSK_REDIS_PORT": "36379",
    "HSSK_MLLP_PORT": "32575",
    "HSSK_MLLP_METRICS_PORT": "39464",
    "HSSK_API_PORT": "38080",
    "HSSK_PG_PORT": "35432",
    "HSSK_LOG_LEVEL": "warning",
    "HSSK_SOURCES_FILE": str(REPO_ROOT / "deploy" / "local" / "sources.toml"),
}

_PORT_KEYS = ("HSSK_KAFKA_PORT", "HSSK_KAFKA_CONTROLLER_PORT", "HSSK_REDIS_PORT", "HSSK_MLLP_PORT",
              "HSSK_MLLP_METRICS_PORT", "HSSK_API_PORT", "HSSK_PG_PORT")


def bench_env(name: str, port_offset: int) -> dict[str, str]:
    """BENCH_ENV moved by ``port_offset`` with a state folder of its own (``.hub-bench-<name>``): a bench that
    stops and wipes its stack (registry, backfill) then never touches another bench's running one."""
    env = dict(BENCH_ENV, HSSK_STATE_DIR=str(REPO_ROOT / f".hub-bench-{name}"))
    for key in _PORT_KEYS:
        env[key] = str(int(BENCH_ENV[key]) + port_offset)
    return env
