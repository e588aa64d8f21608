"""Moved to ``hub.fanout.healthbook`` (the fan-out's health-book sync uses it too); this name is kept for old imports."""

from hub.fanout.healthbook import health_book

__all__ = ["health_book"]
