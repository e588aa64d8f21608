"""The cluster manifests (deploy/k8s) agree with the hub's code: every production role has a Deployment
with replicas, resources and probes; MLLP and the API have Services; the KafkaTopics are the topic
catalogue; Kafka is KRaft with replication 3 and min.insync.replicas 2; no secret sits in a ConfigMap; the
core resources validate against Kubernetes' schemas (kubernetes-validate, offline)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from hub.ops.local import ROLES
from hub.settings import REPO_ROOT, Settings
from hub.topics import CATALOGUE, FOREVER

K8S = REPO_ROOT / "deploy" / "k8s"
BASE = K8S / "base"
DEMO_ROLES = {"receiver"}
SECRET_WORDS = re.compile(r"(SECRET|PASSWORD|TOKEN(?!_FILE)|PSEUDONYM_KEY|_KEY$|DSN|REDIS_URL)", re.I)


def _resources(*paths: Path) -> list[dict]:
    """Every document of the kustomization's files (plain YAML; no kustomize binary needed)."""
    docs = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def _base_files() -> list[Path]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    return [BASE / name for name in kustomization["resources"]]


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return _resources(*_base_files())


def _of(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container(deployment: dict) -> dict:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


class TestGenerated:
    def test_generated_files_are_what_render_py_writes(self) -> None:
        """Edit the catalogue, ROLES or a port and forget to re-render: this fails and says what to run."""
        proc = subprocess.run([sys.executable, str(K8S / "render.py"), "--check"], capture_output=True, text=True,
                              cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stderr

    def test_every_file_of_the_kustomization_exists_and_parses(self) -> None:
        for path in _base_files():
            assert path.exists(), path
        assert _resources(K8S / "demo" / "receiver.yaml", K8S / "secrets.example.yaml")


class TestRoles:
    def test_every_production_role_has_a_deployment_and_the_demo_receiver_none(self, base: list[dict]) -> None:
        deployments = _of(base, "Deployment")
        production = [r for r in ROLES if r not in DEMO_ROLES]
        assert {f"hssk-{r}" for r in production} <= set(deployments)
        assert not {f"hssk-{r}" for r in DEMO_ROLES} & set(deployments)
        for role in production:
            container = _container(deployments[f"hssk-{role}"])
            assert container["command"] == ["hub", "run", role]

    def test_each_deployment_has_replicas_resources_and_probes(self, base: list[dict]) -> None:
        for name, deployment in _of(base, "Deployment").items():
            container = _container(deployment)
            replicas = deployment["spec"]["replicas"]
            assert replicas >= (1 if name == "hssk-lag-exporter" else 2), name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert container["resources"]["limits"]["memory"] == container["resources"]["requests"]["memory"], name
            assert {"readinessProbe", "livenessProbe"} <= set(container), name
            port_names = {p["name"] for p in container["ports"]}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                action = container.get(probe, {})
                port = (action.get("httpGet") or action.get("tcpSocket") or {}).get("port")
                assert port is None or port in port_names, (name, probe, port)

    def test_ports_are_the_settings_the_roles_read(self, base: list[dict]) -> None:
        """A probe or Service on a port the role does not listen on would fail only in the cluster."""
        config = _of(base, "ConfigMap")["hssk-config"]["data"]
        settings = Settings.from_env(config)
        deployments = _of(base, "Deployment")
        ports = {r: {p["name"]: p["containerPort"] for p in _container(deployments[f"hssk-{r}"])["ports"]}
                 for r in ROLES if r not in DEMO_ROLES}
        assert ports["mllp"] == {"mllp": settings.mllp_port, "mllp-tls": settings.mllp_tls_port,
                                 "metrics": settings.mllp_metrics_port}
        assert ports["api"] == {"http": settings.api_port}
        for role in ("translator", "identity", "record", "fanout", "warehouse"):
            assert ports[role] == {"metrics": settings.metrics_port(role)} and settings.metrics_port(role)
        assert settings.metrics_host == settings.mllp_host == settings.api_host == "0.0.0.0"
        assert settings.topic_replication == 3

    def test_the_files_a_role_reads_are_mounted_where_the_config_map_says(self, base: list[dict]) -> None:
        """The warehouse stops at start without the subscriptions file, the listener without its sources."""
        config = _of(base, "ConfigMap")["hssk-config"]["data"]
        readers = {"HSSK_SOURCES_FILE": {"mllp"}, "HSSK_SUBSCRIPTIONS_FILE": {"fanout", "warehouse", "api"},
                   "HSSK_API_TOKEN_FILE": {"api"}, "HSSK_MLLP_TLS_CERT": {"mllp"}}
        deployments = _of(base, "Deployment")
        for setting, roles in readers.items():
            folder = str(Path(config[setting]).parent)
            for role in roles:
                mounts = {m["mountPath"] for m in _container(deployments[f"hssk-{role}"])["volumeMounts"]}
                assert folder in mounts, (role, setting)

    def test_mllp_and_the_api_have_services(self, base: list[dict]) -> None:
        services = _of(base, "Service")
        mllp = services["hssk-mllp"]["spec"]
        assert mllp["selector"]["app.kubernetes.io/component"] == "mllp"
        assert {(p["targetPort"], p["protocol"]) for p in mllp["ports"]} == {("mllp", "TCP"), ("mllp-tls", "TCP")}
        assert services["hssk-api"]["spec"]["selector"]["app.kubernetes.io/component"] == "api"

    def test_the_receiver_is_in_the_demo_overlay_only_and_marked(self) -> None:
        demo = _resources(K8S / "demo" / "receiver.yaml")
        [deployment] = [d for d in demo if d["kind"] == "Deployment"]
        assert deployment["metadata"]["labels"]["hssk.vn/demo"] == "true"
        assert _container(deployment)["command"] == ["hub", "run", "receiver"]
        overlay = yaml.safe_load((K8S / "demo" / "kustomization.yaml").read_text(encoding="utf-8"))
        assert overlay["resources"] == ["../base", "receiver.yaml"]


class TestSecrets:
    def test_no_secret_in_a_config_map(self, base: list[dict]) -> None:
        """A setting that names a secret may only point at a file mounted from a Secret (the TLS key)."""
        secret_mounts = set()
        for deployment in _of(base, "Deployment").values():
            from_secret = {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v}
            secret_mounts |= {m["mountPath"] + "/" for m in _container(deployment)["volumeMounts"]
                              if m["name"] in from_secret}
        for name, config_map in _of(base, "ConfigMap").items():
            for key, value in (config_map.get("data") or {}).items():
                if SECRET_WORDS.search(key):
                    assert any(value.startswith(mount) for mount in secret_mounts), (name, key, value)
                assert "://" not in value or "@" not in value, (name, key)  # no credentials in a URL
        assert secret_mounts
        for path in (BASE / "hub" / "sources.toml", BASE / "hub" / "subscriptions.toml"):
            for subscription in tomllib.loads(path.read_text(encoding="utf-8")).get("subscription", []):
                assert "secret" not in subscription["delivery"], path  # only secret_env, a variable's name

    def test_secrets_come_from_secrets_the_example_lists(self, base: list[dict]) -> None:
        example = {d["metadata"]["name"]: d for d in _resources(K8S / "secrets.example.yaml")}
        assert all(v == "REPLACE_ME" or v == "{}" for d in example.values() for v in d["stringData"].values())
        used = set()
        for doc in (*base, *_resources(K8S / "demo" / "receiver.yaml")):
            text = yaml.safe_dump(doc)
            used |= set(re.findall(r"secretName: (\S+)", text))
            used |= {m for m in re.findall(r"secretKeyRef:\n\s+key: \S+\n\s+name: (\S+)", text)}
            used |= {m for m in re.findall(r"secretRef:\n\s+name: (\S+)", text)}
        assert used and used <= set(example), used - set(example)
        assert not _of(base, "Secret"), "real Secrets are created per cluster, never committed"

    def test_the_pseudonym_key_reaches_every_role_from_a_secret(self, base: list[dict]) -> None:
        for name, deployment in _of(base, "Deployment").items():
            env = {e["name"]: e for e in _container(deployment).get("env", [])}
            assert env["HSSK_PSEUDONYM_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "hssk-pseudonym", name


class TestConfigFiles:
    def test_the_sources_file_is_one_the_listener_reads(self) -> None:
        from connectors.mllp.sources import SourcesFile

        sources = SourcesFile(BASE / "hub" / "sources.toml", open_mode=False).current
        assert not sources.open_mode and "79048" in sources.facilities

    def test_the_subscriptions_file_loads_and_names_its_secrets_in_the_secret(self) -> None:
        from hub.fanout import config

        subs = config.load(BASE / "hub" / "subscriptions.toml", config.settings_env(Settings.from_env({})))
        webhooks = [s for s in subs if s.delivery.kind == "webhook"]
        assert webhooks and all(s.delivery.url.startswith("https://") for s in webhooks)
        example = {d["metadata"]["name"]: d for d in _resources(K8S / "secrets.example.yaml")}
        assert {s.delivery.secret_env for s in webhooks} <= set(example["hssk-subscription-secrets"]["stringData"])


class TestKafka:
    def test_kraft_with_node_pools_replication_3_and_min_isr_2(self, base: list[dict]) -> None:
        [kafka] = _of(base, "Kafka").values()
        assert kafka["metadata"]["annotations"] == {"strimzi.io/kraft": "enabled", "strimzi.io/node-pools": "enabled"}
        assert "zookeeper" not in kafka["spec"]
        config = kafka["spec"]["kafka"]["config"]
        assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
        assert config["offsets.topic.replication.factor"] == 3 and config["auto.create.topics.enable"] is False
        assert config["unclean.leader.election.enable"] is False
        pools = _of(base, "KafkaNodePool")
        roles = {tuple(p["spec"]["roles"]): p["spec"]["replicas"] for p in pools.values()}
        assert roles == {("controller",): 3, ("broker",): 3}
        assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] for p in pools.values())
        bootstrap = _of(base, "ConfigMap")["hssk-config"]["data"]["HSSK_KAFKA_BOOTSTRAP"]
        assert bootstrap == f"{kafka['metadata']['name']}-kafka-bootstrap:9092"

    def test_one_topic_resource_per_catalogue_topic_with_its_retention(self, base: list[dict]) -> None:
        topics = {d["spec"]["topicName"]: d for d in base if d["kind"] == "KafkaTopic"}
        assert list(topics) == [t.name for t in CATALOGUE]
        for topic in CATALOGUE:
            spec = topics[topic.name]["spec"]
            assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2
            assert {k: str(v) for k, v in spec["config"].items() if k in topic.config()} == topic.config()
            assert (spec["config"].get("retention.bytes") == -1) == (topic.retention_ms == FOREVER)
            assert spec["partitions"] >= max(d["spec"]["replicas"] for d in _of(base, "Deployment").values())


class TestSchemas:
    def test_core_resources_validate_against_the_kubernetes_schemas(self, base: list[dict]) -> None:
        kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extras")
        version = "1.32.0"
        checked = 0
        for doc in (*base, *_resources(K8S / "demo" / "receiver.yaml", K8S / "secrets.example.yaml")):
            if "strimzi.io" in doc["apiVersion"]:
                continue  # custom resources: their schemas ship with the operator, not with Kubernetes
            kv.validate(doc, version, strict=True)
            checked += 1
        assert checked >= 20
