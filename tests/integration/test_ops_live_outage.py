"""With Kafka stopped, `hub lag` and `hub dlq` fail at once with one clear line (exit 2), the lag exporter
answers 503; with Kafka back, lag is measured again and returns to zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.ops import lag
from hub.ops.exporter import build_app
from hub.ops.local import STACK_SCRIPT
from hub.settings import REPO_ROOT, Settings
from tests.conftest import TEST_ENV, hub_cli
from tests.integration.kafka_tools import wait_until_idle

pytestmark = [pytest.mark.integration, pytest.mark.disruptive]


def _stack(command: str) -> int:
    """stack.sh on this session's own stack (its state folder and ports), nothing else."""
    return subprocess.call(["bash", str(STACK_SCRIPT), command], env={**os.environ, **TEST_ENV})


async def test_ops_commands_say_kafka_is_down_and_lag_recovers(hub_stack: Settings) -> None:
    await wait_until_idle(hub_stack)
    assert _stack("stop-kafka") == 0
    try:
        for args in (["lag"], ["lag", "--prometheus"], ["dlq", "list", "--stage", "translate"], ["dlq", "show", "0/0"],
                     ["dlq", "replay", "0/0"], ["dlq", "rebuild-ledger"]):
            proc = hub_cli(*args, check=False, timeout=60)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert f"Kafka at {hub_stack.kafka_bootstrap} is not reachable" in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr and proc.stdout == ""
        watch = subprocess.Popen([sys.executable, "-m", "hub.cli", "lag", "--watch", "0.3"], cwd=REPO_ROOT,
                                 env={**os.environ, **TEST_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Interrupt only once it has reported twice: on a loaded machine the interpreter's start alone can take
        # seconds, and a SIGINT before the handler is installed is not what this test is about.
        seen = []
        deadline = time.monotonic() + 120
        while len(seen) < 2 and time.monotonic() < deadline:
            line = watch.stderr.readline()
            if not line:
                break
            if "is not reachable" in line:
                seen.append(line)
        assert len(seen) == 2, "hub lag --watch did not keep reporting the outage"  # --watch keeps trying
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=20)
        assert watch.returncode == 0 and "Traceback" not in err
        async with TestClient(TestServer(build_app(hub_stack))) as client:
            response = await client.get("/metrics")
            assert response.status == 503 and "is not reachable" in await response.text()
    finally:
        assert _stack("start-kafka") == 0
    await wait_until_idle(hub_stack, timeout_s=120)
    rows = await lag.measure(hub_stack, lag.ROLE_GROUPS)
    assert {r.group for r in rows} == set(lag.ROLE_GROUPS) and all(r.lag == 0 for r in rows)
