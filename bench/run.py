"""Benchmark runner: starts its own hub (bench ports, .hub-bench state), runs the benchmarks, prints tables.

    .venv/bin/python -m bench.run [--messages 3000] [--connections 4] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys

from bench import e2e_adt
from bench.stack import BENCH_ENV
from bench.table import render
from hub.settings import REPO_ROOT, Settings



def hub(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "hub.cli", *args], env={**os.environ, **BENCH_ENV}, cwd=REPO_ROOT,
                   check=True)


async def run_all(settings: Settings, n: int, connections: int) -> str:
    rows = [await e2e_adt.kafka_round_trip(settings, n), await e2e_adt.hub_e2e(settings, n, connections)]
    return render(f"End-to-end ADT ({n} messages, ADT A01/A08, ~3 per citizen)", rows,
                  baseline="baseline: aiokafka produce+consume")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running afterwards")
    args = parser.parse_args()
    hub("down")
    shutil.rmtree(BENCH_ENV["HSSK_STATE_DIR"], ignore_errors=True)
    hub("up")
    try:
        print(asyncio.run(run_all(Settings.from_env({**os.environ, **BENCH_ENV}), args.messages, args.connections)))
    finally:
        if not args.keep:
            hub("down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
