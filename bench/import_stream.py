"""Streaming a large registry CSV through the import's reading path in bounded memory: ``hub import``'s line
decoder (hub.ops.formats.utf8_lines: one bad-encoding row costs one row), the registry reader and the import's
mapper (hub.ops.publish.map_rows: raw records and serialised events, in the importer's chunks),
over a generated file of N GB that is never written to disk (the test suite measures the same with ~2 MB;
this is the 2 GB case of issue 6). No Kafka: the publishing side is bench.registry's.

    python -m bench.import_stream --gigabytes 2      # ~15 M rows; minutes on this 2-core machine

Each run happens in a child process, so its peak resident memory (VmHWM) is its own. Baseline in the same
run: the stdlib's csv.DictReader over a text stream of the same bytes (reading only, no mapping).
The machine is shared and noisy: compare the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import time
from collections.abc import Iterator

from bench.table import Row, render
from connectors.registry import COLUMNS, BadRow, iter_values
from hub.ops.formats import utf8_lines

RECEIVED_AT = "2026-12-01T08:00:00.000+07:00"
_TEMPLATE = ("{i},Nguyễn Thị Hồng Nhung,{d:02d}/0{m}/19{y:02d},Nữ,0791{y:02d}{i:06d},DN47979{i:08d},0903{i:06d},"
             "\"{i} Lê Lợi, Phường Bến Thành\",26734,AZ,AstraZeneca,A{i},{dose},{d:02d}/0{m}/2021 08:15,790{site:02d}\n")


def lines(total_bytes: int) -> Iterator[bytes]:
    """A registry export of about ``total_bytes``, one line at a time."""
    yield (",".join(COLUMNS) + "\n").encode()
    produced, i = 0, 0
    while produced < total_bytes:
        i += 1
        line = _TEMPLATE.format(i=i, d=i % 28 + 1, m=i % 9 + 1, y=50 + i % 50, dose=i % 3 + 1, site=i % 40).encode()
        produced += len(line)
        yield line


class _Stream(io.RawIOBase):
    """The same lines as a binary file object, for the baseline's TextIOWrapper."""

    def __init__(self, total_bytes: int) -> None:
        self._lines = lines(total_bytes)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._rest) < len(buffer):
            nxt = next(self._lines, None)
            if nxt is None:
                break
            self._rest += nxt
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _events(chunk: list[tuple[int, list[str]]]) -> int:
    from hub.ops.publish import map_rows, pack_rows

    return len(map_rows(*pack_rows(chunk), RECEIVED_AT, b"k" * 32).events)


def child(kind: str, total_bytes: int) -> str:
    started = time.perf_counter()
    rows = events = 0
    if kind == "import":  # the importer's modules only here: the baseline's peak RSS stays the reader's own
        from hub.ops.file_import import _ROW_CHUNK
        from hub.ops.publish import bulk_gc

        undecodable: dict[int, bytes] = {}
        chunk: list[tuple[int, list[str]]] = []
        with bulk_gc():
            for item in iter_values(utf8_lines(lines(total_bytes), undecodable)):  # type: ignore[arg-type]
                if isinstance(item, BadRow):  # none in the generated lines; an import dead-letters them
                    continue
                chunk.append(item)
                if len(chunk) == _ROW_CHUNK:
                    rows, events, chunk = rows + len(chunk), events + _events(chunk), []
            rows, events = rows + len(chunk), events + _events(chunk)
    else:
        for _row in csv.DictReader(io.TextIOWrapper(io.BufferedReader(_Stream(total_bytes)), encoding="utf-8")):
            rows += 1
    return f"{rows} {events} {time.perf_counter() - started:.3f} {_peak_rss_mb():.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=0.2)
    parser.add_argument("--child", choices=["import", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    total = int(args.gigabytes * 1e9)
    if args.child:
        print(child(args.child, total))
        return 0
    results = {}
    for kind in ("baseline", "import"):
        out = subprocess.run([sys.executable, "-m", "bench.import_stream", "--child", kind, "--gigabytes",
                              str(args.gigabytes)], capture_output=True, text=True, check=True).stdout.split()
        results[kind] = (int(out[0]), int(out[1]), float(out[2]), float(out[3]))
    rows, events, seconds, peak = results["import"]
    b_rows, _, b_seconds, b_peak = results["baseline"]
    print(render(f"Registry CSV streamed through the import's reading path ({args.gigabytes:g} GB generated, "
                 "never on disk); messages = rows", [
                     Row("utf8_lines + iter_values + map_rows (the import's path)", rows, seconds,
                         note=f"{events:,} events; peak RSS {peak:,.0f} MB"),
                     Row("baseline: csv.DictReader (read only)", b_rows, b_seconds,
                         note=f"peak RSS {b_peak:,.0f} MB")],
                 baseline="baseline: csv.DictReader (read only)").replace(
        ", single-node Kafka (KRaft) and Redis on loopback", "; no Kafka (reading and mapping only); shared, noisy machine"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
