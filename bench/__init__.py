"""Benchmarks: each measures throughput and latency on the real local stack and prints a table."""
