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
