"""Printing benchmark results as a plain table with the conditions they were measured under."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field


@dataclass
class Row:
    name: str
    messages: int
    seconds: float
    latency_ms: dict[str, float] = field(default_factory=dict)  # e.g. {"ack p50": 1.2}
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def conditions() -> str:
    return (f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
            f"{platform.machine()}, single-node Kafka (KRaft) and Redis on loopback")


def render(title: str, rows: list[Row], baseline: str | None = None) -> str:
    cols = sorted({k for r in rows for k in r.latency_ms})
    base = next((r.rate for r in rows if r.name == baseline), None)
    head = ["benchmark", "messages", "seconds", "msg/s"] + cols + (["ratio"] if base else []) + ["note"]
    lines = [[r.name, str(r.messages), f"{r.seconds:.2f}", f"{r.rate:,.0f}"]
             + [f"{r.latency_ms[c]:.1f}" if c in r.latency_ms else "-" for c in cols]
             + ([f"{r.rate / base:.2f}x" if base else "-"] if base else []) + [r.note] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [title, f"conditions: {conditions()}", fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    if base:
        out.append(f"ratio: msg/s relative to '{baseline}' in the same run")
    return "\n".join(out)
