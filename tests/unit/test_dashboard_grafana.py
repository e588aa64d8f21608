"""The Grafana dashboard and the Prometheus scrape configuration for Docker users agree with the code: every
metric a panel queries is one the hub exports, and every scrape target is the port the settings give its role."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import connectors.mllp.metrics  # noqa: F401 - registers the MLLP listener's metrics
import hub.api.metrics  # noqa: F401 - registers the record API's metrics
import hub.ops.metrics  # noqa: F401 - registers the stream stages' metrics
from hub.ops.lag import PartitionLag, render_prometheus
from hub.settings import REPO_ROOT, STREAM_ROLES, Settings

GRAFANA = REPO_ROOT / "deploy" / "grafana" / "hssk-dashboard.json"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
MONITORING = REPO_ROOT / "deploy" / "prometheus" / "compose.monitoring.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "summary": ("_sum", "_count")}
METRIC = re.compile(r"\b((?:hssk|kafka)_[a-zA-Z0-9_]+)")


def exported_names() -> set[str]:
    """Series names the hub's processes export: the prometheus_client definitions and the lag exporter."""
    names = {m.name + suffix for m in REGISTRY.collect() if m.name.startswith("hssk_")
             for suffix in SUFFIXES.get(m.type, ("",))}
    text = render_prometheus([PartitionLag("hssk-record", "events.citizen", 0, 10, 7, 3, 1.5)], dlq_records=2)
    return names | {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def dashboard() -> dict:
    return json.loads(GRAFANA.read_text(encoding="utf-8"))


def expressions() -> list[str]:
    found = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", ())]
    found += [v["definition"] for v in dashboard()["templating"]["list"] if "definition" in v]
    return found


class TestGrafana:
    def test_it_is_a_dashboard_with_panels_that_query_prometheus(self) -> None:
        board = dashboard()
        assert board["uid"] == "hssk-hub" and board["title"] == "HSSK Hub"
        queried = [p for p in board["panels"] if p.get("targets")]
        assert len(queried) >= 10
        assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in queried)
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])

    def test_every_metric_queried_is_exported_by_the_hub(self) -> None:
        used = {name for expr in expressions() for name in METRIC.findall(expr)}
        assert used and used <= exported_names(), sorted(used - exported_names())

    def test_the_operators_metrics_all_have_a_panel(self) -> None:
        used = {name for expr in expressions() for name in METRIC.findall(expr)}
        assert {"kafka_consumergroup_group_lag", "kafka_consumergroup_group_lag_seconds", "hssk_mllp_messages_total",
                "hssk_mllp_ack_latency_seconds_bucket", "hssk_stage_events_total", "hssk_stage_failures_total",
                "hssk_dlq_records"} <= used

    def test_the_names_checked_against_are_real(self) -> None:
        """The check above is only as good as this list: a name that is not exported is not in it."""
        names = exported_names()
        assert {"hssk_mllp_messages_total", "kafka_consumergroup_group_lag_seconds", "hssk_dlq_records"} <= names
        assert "hssk_mllp_messages" not in names and "hssk_stage_events" not in names


class TestPrometheus:
    def targets(self) -> dict[str, int]:
        return {host: int(port) for host, port in re.findall(r'"([a-z][a-z-]*):(\d+)"', PROMETHEUS.read_text())}

    def test_every_role_is_scraped_on_its_settings_port(self) -> None:
        settings = Settings.from_env({})
        expected = {"mllp": settings.mllp_metrics_port, "lag-exporter": settings.lag_exporter_port,
                    "api": settings.api_port, **{role: settings.metrics_port(role) for role in STREAM_ROLES}}
        assert self.targets() == expected

    def test_the_api_is_scraped_with_a_token_never_committed(self) -> None:
        text = PROMETHEUS.read_text()
        assert "credentials_file: /etc/prometheus/ops-token" in text
        assert "ops-token" in (PROMETHEUS.parent / ".gitignore").read_text().split()

    def test_the_lag_exporter_serves_the_scraped_port(self) -> None:
        assert f'"--serve", "{Settings().lag_exporter_port}"' in MONITORING.read_text()

    @pytest.mark.skipif(shutil.which("docker-compose") is None, reason="needs a compose client to validate")
    def test_the_monitoring_compose_file_is_valid_over_the_main_one(self) -> None:
        proc = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "-f", str(MONITORING), "config", "-q"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
