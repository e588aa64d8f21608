"""Test session wiring. Integration tests get a real stack of their own (Kafka, Redis, every hub role),
started with ``hub up`` on test ports and a test state folder, so a running demo hub is left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from hub.settings import REPO_ROOT, Settings

# HSSK_TEST_PORT_OFFSET lets two checkouts run their suites side by side on one machine.
_OFFSET = int(os.environ.get("HSSK_TEST_PORT_OFFSET", "0"))
_STATE = REPO_ROOT / (f".hub-test-{_OFFSET}" if _OFFSET else ".hub-test")  # one state folder per port range
TEST_ENV = {
    "HSSK_STATE_DIR": str(_STATE),
    "HSSK_KAFKA_PORT": str(19092 + _OFFSET),
    "HSSK_KAFKA_CONTROLLER_PORT": str(19093 + _OFFSET),
    "HSSK_REDIS_PORT": str(16379 + _OFFSET),
    "HSSK_MLLP_PORT": str(12575 + _OFFSET),
    "HSSK_MLLP_METRICS_PORT": str(19464 + _OFFSET),
    "HSSK_API_PORT": str(18080 + _OFFSET),
    "HSSK_PG_PORT": str(15432 + _OFFSET),
    "HSSK_RECEIVER_PORT": str(18099 + _OFFSET),
    "HSSK_ACK_TIMEOUT_S": "3",
    # A copy of the demo sources file, so tests can edit it and signal a reload.
    "HSSK_SOURCES_FILE": str(_STATE / "sources.toml"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop services run last, so a failure there cannot cascade into the others."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


def hub_cli(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TEST_ENV}
    proc = subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"hub {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def hub_stack() -> Settings:
    """A fresh, real local hub for the whole session; stopped (only what it started) at the end."""
    hub_cli("down", check=False)
    shutil.rmtree(TEST_ENV["HSSK_STATE_DIR"], ignore_errors=True)
    os.makedirs(TEST_ENV["HSSK_STATE_DIR"])
    shutil.copyfile(REPO_ROOT / "deploy" / "local" / "sources.toml", TEST_ENV["HSSK_SOURCES_FILE"])
    try:
        hub_cli("up", "--timeout", "180")
        yield Settings.from_env(TEST_ENV)
    finally:
        hub_cli("down", check=False)
