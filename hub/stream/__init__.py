"""The stream stages: thin I/O shells around the pure steps, each a batch loop (``app.StageLoop``) in its role's
faust worker.

Each role is its own consumer group (``hssk-<role>``): translator, identity, record, fanout, warehouse.
"""
