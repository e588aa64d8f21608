"""Prometheus metrics of the record API, served at ``/metrics`` behind the ``ops:read`` scope.

Labels are route templates, status codes and client ids (names of systems given at token issue): bounded
sets that name no person. A record read that failed only because the audit log did not confirm is counted
apart, since it is the one failure that means "Kafka is unhealthy" rather than "the caller is wrong".
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("hssk_api_requests", "Answers of the record API, by route template and status",
                   ["route", "status"])
READS = Counter("hssk_api_record_reads", "Record reads sent after a confirmed audit event, by client and route",
                ["client", "route"])
AUDIT_FAILURES = Counter("hssk_api_audit_failures", "Reads refused (503) because audit.access did not confirm")
SECONDS = Histogram("hssk_api_request_seconds", "Time to answer, audit write included, by route template",
                    ["route"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
