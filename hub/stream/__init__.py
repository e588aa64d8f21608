"""The stream stages as faust-streaming agents: thin I/O shells around the pure steps.

Each role is its own faust app (its own consumer group): translator, identity, record, fanout.
"""
