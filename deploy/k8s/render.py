"""Writes the generated manifests of deploy/k8s from the hub's own sources of truth:

- ``base/kafka/topics.yaml``: one Strimzi KafkaTopic per topic of the catalogue (hub/topics.py);
- ``base/hub/roles.yaml``: the hub's ConfigMap, and a Deployment per production role of hub/ops/local.py ROLES
  (ports from hub/settings.py), with Services for MLLP and the API.

    .venv/bin/python deploy/k8s/render.py            # rewrite both files
    .venv/bin/python deploy/k8s/render.py --check    # exit 1 if a file is not what the sources give

The catalogue stays the one place names, retention and compaction are written down; this adds only what a
cluster decides: partitions (per-citizen order allows one consumer per partition, so this is the most
replicas any stage can use, and it cannot be lowered later), replication 3 and min.insync.replicas 2 (an
acks=all write survives one broker down), and zstd on the broker for topics kept forever. Per-subscription
topics (out.<name>, dlq.<name>) are created by the fanout role from its subscriptions file, with
HSSK_TOPIC_PARTITIONS and HSSK_TOPIC_REPLICATION from the ConfigMap below.
tests/unit/test_k8s_manifests.py fails when a file and its sources disagree.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub.ops.local import ROLES  # noqa: E402
from hub.settings import Settings  # noqa: E402
from hub.topics import CATALOGUE, FOREVER, Topic  # noqa: E402

HERE = Path(__file__).resolve().parent
CLUSTER = "hssk"
PART_OF = {"app.kubernetes.io/part-of": "hssk-hub"}
PARTITIONS = 24  # capacity plan (README): room for 24 consumers per stage, 3-8x the replicas planned
REPLICAS = 3
MIN_INSYNC = 2
IMAGE = "hssk-hub:0.1.0"  # kustomization.yaml `images:` points it at the city's registry
DEMO_ROLES = frozenset({"receiver"})  # the health book's stand-in: deploy/k8s/demo only, never production
STATE = "/var/lib/hssk"
DEFAULTS = Settings()
WAREHOUSE_METRICS_PORT = 9470

# Not secret: everything here may be read by anyone who can read the namespace. Secrets come from Secrets.
CONFIG = {
    "HSSK_KAFKA_BOOTSTRAP": f"{CLUSTER}-kafka-bootstrap:9092",
    "HSSK_TOPIC_PARTITIONS": str(PARTITIONS),
    "HSSK_TOPIC_REPLICATION": str(REPLICAS),
    "HSSK_STATE_DIR": STATE,
    "HSSK_LOG_LEVEL": "info",
    "HSSK_ACK_TIMEOUT_S": str(DEFAULTS.ack_timeout_s),
    "HSSK_MLLP_HOST": "0.0.0.0",
    "HSSK_MLLP_PORT": str(DEFAULTS.mllp_port),
    "HSSK_MLLP_TLS_PORT": "2576",
    "HSSK_MLLP_TLS_CERT": "/etc/hssk/mllp-tls/tls.crt",
    "HSSK_MLLP_TLS_KEY": "/etc/hssk/mllp-tls/tls.key",
    "HSSK_MLLP_TLS_CLIENT_CA": "/etc/hssk/mllp-tls/ca.crt",
    "HSSK_MLLP_METRICS_PORT": str(DEFAULTS.mllp_metrics_port),
    "HSSK_METRICS_HOST": "0.0.0.0",
    "HSSK_WAREHOUSE_METRICS_PORT": str(WAREHOUSE_METRICS_PORT),
    "HSSK_LAG_EXPORTER_PORT": str(DEFAULTS.lag_exporter_port),
    "HSSK_SOURCES_FILE": "/etc/hssk/sources/sources.toml",
    "HSSK_SUBSCRIPTIONS_FILE": "/etc/hssk/subscriptions/subscriptions.toml",
    "HSSK_API_HOST": "0.0.0.0",
    "HSSK_API_PORT": str(DEFAULTS.api_port),
    "HSSK_API_TOKEN_FILE": "/etc/hssk/api/api-tokens.json",
}


@dataclass(frozen=True)
class Role:
    replicas: int
    cpu: str  # request; no CPU limit (throttling a stream stage only grows its lag)
    memory: str  # request = limit
    ports: tuple[tuple[str, int], ...]
    live: dict  # liveness probe action
    ready: dict  # readiness probe action
    mounts: tuple[tuple[str, str, dict], ...] = ()  # (volume name, mount path, volume source)
    postgres: bool = False
    subscription_secrets: bool = False


def _metrics(role: str) -> int:
    return WAREHOUSE_METRICS_PORT if role == "warehouse" else DEFAULTS.metrics_port(role)


def _stream(replicas: int, role: str, memory: str = "1Gi", **extra) -> Role:
    http = {"httpGet": {"path": "/metrics", "port": "metrics"}}
    return Role(replicas, "1", memory, (("metrics", _metrics(role)),), http, http, **extra)


SOURCES = ("sources", "/etc/hssk/sources", {"configMap": {"name": "hssk-sources"}})
MLLP_TLS = ("mllp-tls", "/etc/hssk/mllp-tls", {"secret": {"secretName": "hssk-mllp-tls"}})
SUBSCRIPTIONS = ("subscriptions", "/etc/hssk/subscriptions", {"configMap": {"name": "hssk-subscriptions"}})
API_TOKENS = ("api-tokens", "/etc/hssk/api", {"secret": {"secretName": "hssk-api-tokens"}})

# Replicas: README "Capacity plan" (peak ~1,000 msg/s and ~4,400 events/s, 3x headroom for a catch-up).
SPECS: dict[str, Role] = {
    "mllp": Role(3, "1", "1Gi", (("mllp", DEFAULTS.mllp_port), ("mllp-tls", 2576),
                                 ("metrics", DEFAULTS.mllp_metrics_port)),
                 {"tcpSocket": {"port": "mllp"}}, {"tcpSocket": {"port": "mllp"}}, (SOURCES, MLLP_TLS)),
    "translator": _stream(3, "translator"),
    "identity": _stream(4, "identity"),  # ~0.7 ms CPU per event (bench.identity_stream): 3 at the design point + 1
    "record": _stream(3, "record"),
    "fanout": _stream(3, "fanout", mounts=(SUBSCRIPTIONS,), subscription_secrets=True),
    "warehouse": _stream(2, "warehouse", postgres=True, mounts=(SUBSCRIPTIONS,)),  # its entitlement, read at start
    "api": Role(3, "1", "1Gi", (("http", DEFAULTS.api_port),), {"tcpSocket": {"port": "http"}},
                {"httpGet": {"path": "/health", "port": "http"}}, (API_TOKENS, SUBSCRIPTIONS)),  # /v1/subscriptions
}
# HSSK_SUBSCRIPTIONS_FILE is read by the fanout and the warehouse at start (a change rolls them: the ConfigMap's
# name carries a hash) and by the API for /v1/subscriptions and the dashboard.


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def deployment(role: str, spec: Role) -> dict:
    labels = {"app.kubernetes.io/name": "hssk-hub", "app.kubernetes.io/component": role, **PART_OF}
    env = [
        _secret_env("HSSK_PSEUDONYM_KEY", "hssk-pseudonym", "key"),
        _secret_env("HSSK_REDIS_PASSWORD", "hssk-redis-auth", "password"),
        {"name": "HSSK_REDIS_URL", "value": "redis://:$(HSSK_REDIS_PASSWORD)@hssk-redis:6379/0"},
    ]
    if spec.postgres:
        env += [_secret_env("HSSK_PG_PASSWORD", "hssk-postgres-auth", "password"),
                {"name": "HSSK_PG_DSN", "value": "postgresql://hssk:$(HSSK_PG_PASSWORD)@hssk-postgres:5432/hssk"}]
    env_from = [{"configMapRef": {"name": "hssk-config"}}]
    if spec.subscription_secrets:  # one variable per webhook secret the subscriptions file names
        env_from.append({"secretRef": {"name": "hssk-subscription-secrets"}})
    volumes = [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "state", "mountPath": STATE}, {"name": "tmp", "mountPath": "/tmp"}]
    for name, path, source in spec.mounts:
        volumes.append({"name": name, **source})
        mounts.append({"name": name, "mountPath": path, "readOnly": True})
    metrics_port = dict(spec.ports).get("metrics")
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port)} if metrics_port else {}
    container = {
        "name": role,
        "image": IMAGE,
        "command": ["hub", "run", role],
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in spec.ports],
        "envFrom": env_from,
        "env": env,
        "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}},
        "startupProbe": {**spec.ready, "periodSeconds": 2, "failureThreshold": 60},
        "readinessProbe": {**spec.ready, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**spec.live, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"hssk-{role}", "labels": labels},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/component": role, **PART_OF}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, **({"annotations": annotations} if annotations else {})},
                "spec": {
                    # mllp answers what is in flight within HSSK_ACK_TIMEOUT_S + 1 after SIGTERM; stream roles
                    # finish their batch. 30 s covers both.
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": role, **PART_OF}}}],
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def disruption_budget(role: str) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": f"hssk-{role}"},
            "spec": {"maxUnavailable": 1,
                     "selector": {"matchLabels": {"app.kubernetes.io/component": role, **PART_OF}}}}


def services() -> list[dict]:
    mllp = {"app.kubernetes.io/component": "mllp", **PART_OF}
    api = {"app.kubernetes.io/component": "api", **PART_OF}
    return [
        # Hospitals connect over the city's network: a TCP load balancer; Local keeps the client address,
        # which the listener logs and the per-peer connection limit counts.
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hssk-mllp", "labels": mllp},
         "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": mllp,
                  "ports": [{"name": "mllp", "port": DEFAULTS.mllp_port, "targetPort": "mllp", "protocol": "TCP"},
                            {"name": "mllp-tls", "port": 2576, "targetPort": "mllp-tls", "protocol": "TCP"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hssk-api", "labels": api},
         "spec": {"type": "ClusterIP", "selector": api,
                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}},
    ]


def lag_exporter() -> dict:
    """`hub lag --serve`: consumer lag for Prometheus (kafka-lag-exporter's names), one replica."""
    d = deployment("lag-exporter", Role(1, "100m", "256Mi", (("metrics", DEFAULTS.lag_exporter_port),),
                                        {"tcpSocket": {"port": "metrics"}}, {"tcpSocket": {"port": "metrics"}}))
    d["spec"]["template"]["spec"]["containers"][0]["command"] = ["hub", "lag", "--serve"]
    return d


def topic_resource(topic: Topic) -> dict:
    config: dict[str, object] = {**topic.config(), "min.insync.replicas": MIN_INSYNC}
    if topic.retention_ms == FOREVER:
        config["retention.bytes"] = -1
        config["compression.type"] = "zstd"
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": topic.name, "labels": {"strimzi.io/cluster": CLUSTER, **PART_OF},
                     "annotations": {"hssk.vn/key": topic.key, "hssk.vn/description": topic.description}},
        "spec": {"topicName": topic.name, "partitions": PARTITIONS, "replicas": REPLICAS, "config": config},
    }


def production_roles() -> list[str]:
    return [r for r in ROLES if r not in DEMO_ROLES]


def _dump(docs: list[dict], source: str) -> str:
    header = (f"# Generated by deploy/k8s/render.py from {source}. Do not edit: change the source and run\n"
              "# `.venv/bin/python deploy/k8s/render.py`.\n")
    return header + yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, width=120, explicit_start=True)


def outputs() -> dict[Path, str]:
    missing = [r for r in production_roles() if r not in SPECS]
    if missing:
        raise SystemExit(f"render.py: no cluster spec for role(s) {', '.join(missing)}: add them to SPECS")
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hssk-config", "labels": PART_OF},
              "data": CONFIG}
    roles = [deployment(r, SPECS[r]) for r in production_roles()]
    budgets = [disruption_budget(r) for r in production_roles() if SPECS[r].replicas > 1]
    return {
        HERE / "base" / "kafka" / "topics.yaml": _dump([topic_resource(t) for t in CATALOGUE], "the topic catalogue (hub/topics.py)"),
        HERE / "base" / "hub" / "roles.yaml": _dump([config, *roles, lag_exporter(), *services(), *budgets],
                                           "hub/ops/local.py ROLES and hub/settings.py"),
    }


def main(argv: list[str]) -> int:
    stale = []
    for path, text in outputs().items():
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run deploy/k8s/render.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
