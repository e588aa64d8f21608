"""The one settings object, read from the environment at the entry point and passed inward frozen.

Every port and address can be overridden by an ``HSSK_*`` variable (listed in the README), so a test stack
and a demo stack can run side by side on one machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_PSEUDONYM_KEY = "hssk-dev-only-pseudonym-key"
DEV_RECEIVER_SECRET = "hssk-dev-only-receiver-secret"
STREAM_ROLES = ("translator", "identity", "record", "fanout")
DEFAULT_STREAM_METRICS_PORTS = tuple((role, 9465 + i) for i, role in enumerate(STREAM_ROLES))


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    kafka_controller_port: int = 9093  # the local stack's KRaft controller listener (deploy/local/stack.sh)
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575  # plain TCP; 0: no plain listener (TLS only)
    mllp_max_frame_bytes: int = 10 * 1024 * 1024
    # How long the listener waits for Kafka to confirm a write before answering AR: below the 5-15 s
    # that senders wait for an ACK, so a sender always hears from us first.
    ack_timeout_s: float = 4.0
    mllp_tls_port: int = 0  # 0: no TLS listener
    mllp_tls_cert: str = ""
    mllp_tls_key: str = ""
    mllp_tls_client_ca: str = ""  # set: mutual TLS, clients must present a certificate from this CA
    mllp_idle_timeout_s: float = 600.0
    mllp_max_connections: int = 2000
    mllp_max_connections_per_peer: int = 500
    mllp_metrics_port: int = 9464  # Prometheus /metrics of the mllp role; 0: off
    # Prometheus /metrics of the stream roles, by role; 0: off. Unset, each follows the mllp port
    # (translator +1, identity +2, record +3, fanout +4), so a stack that moves one port moves them all.
    stream_metrics_ports: tuple[tuple[str, int], ...] = DEFAULT_STREAM_METRICS_PORTS
    metrics_host: str = "127.0.0.1"  # where the stream roles' /metrics listen
    lag_exporter_port: int = 9469  # `hub lag --serve`: consumer lag for Prometheus; unset, the mllp port + 5
    # Who may send: the sources file (format in connectors/mllp/sources.py). Open mode accepts any
    # facility, for local demos only.
    sources_file: Path = REPO_ROOT / "deploy" / "local" / "sources.toml"
    mllp_open_mode: bool = False
    dedup_ttl_s: int = 7 * 24 * 3600
    # Producer linger for durable writes: bench.mllp measured it (closing note of the MLLP issue).
    kafka_linger_ms: int = 0
    # How a stage's consumer fetches (hub/stream/app.py StageLoop): a fetch returns once it has this many bytes
    # or has waited this long. 1 byte returns at once with whatever is there: at a steady rate below capacity
    # every stage then fetches a few events per request, and the broker's CPU per message grows
    # (bench.stage_overhead --rate measures the trade: latency per hop against CPU).
    stage_fetch_min_bytes: int = 1
    stage_fetch_max_wait_ms: int = 500
    # How often a busy stage or subscription commits its consumer offsets (hub/stream/app.py StageLoop,
    # hub/fanout/engine.py): at most once this often while changes keep coming, at once when the input pauses;
    # 0 commits after every batch. Each commit is a request and a write to __consumer_offsets, paid every event
    # or two at a steady low rate (-12% broker CPU at 100 msg/s in bench.fanout); a crash replays at most this
    # much, which is absorbed downstream (deterministic event ids, idempotent record, upserts, idempotency keys).
    stage_commit_interval_ms: int = 500
    topic_partitions: int = 4
    topic_replication: int = 1
    # Secret for keyed hashes (Kafka keys, citizen ids). Change it in production: with the dev key
    # anybody can recompute which CCCD a citizen id belongs to.
    pseudonym_key: bytes = field(default=DEV_PSEUDONYM_KEY.encode(), repr=False)
    state_dir: Path = REPO_ROOT / ".hub"
    log_level: str = "info"
    # The record API (hub/api). Tokens are stored as SHA-256 hashes in the token file, never in clear.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_token_file: Path = REPO_ROOT / ".hub" / "api-tokens.json"
    api_rate_per_s: float = 20.0  # token bucket per client id: sustained requests per second ...
    api_rate_burst: int = 40  # ... and the burst a client may spend at once
    # The city data warehouse (hub/warehouse): PostgreSQL from deploy/local/postgres.sh. Unset, the DSN
    # follows the port, so a stack that moves HSSK_PG_PORT moves the warehouse with it.
    pg_port: int = 5432
    pg_dsn: str = "postgresql://hssk@127.0.0.1:5432/hssk"
    # EMR files (hub import / hub watch): a FHIR Bundle is parsed whole, so its size is what bounds memory;
    # the drop folder is polled, and a file is taken only once its size and mtime held still this long.
    fhir_max_bundle_bytes: int = 64 * 1024 * 1024
    # `hub import`: processes mapping a file's chunks once it is over 4 MiB; -1, the default: one per core
    # (none on one core); 0: in the importer's own process. On this 2-core machine, quiet (load 1.6), two
    # workers made the registry import 1.5x (16,219 against 10,706 rows/s) and the BHYT XML path 1.41x; on a
    # loaded machine they gained nothing (registry 1.0x, BHYT 1.04x), the cores being taken anyway.
    import_workers: int = -1
    watch_poll_s: float = 2.0
    watch_settle_s: float = 2.0
    # The reference receiver (deploy/local/receiver): the stand-in for the national e-ID health book. Its
    # secret is the one the local health-book subscription signs with; change both outside demos. Unset, the
    # port follows the API's (+ 19), so a test or bench stack that moves HSSK_API_PORT moves the receiver too.
    receiver_host: str = "127.0.0.1"
    receiver_port: int = 8099
    receiver_secret: bytes = field(default=DEV_RECEIVER_SECRET.encode(), repr=False)
    # Set while rotating: the receiver accepts this secret too, so pushes already signed (retries, the DLQ)
    # with the old one still land; unset it once the senders sign with the new one.
    receiver_previous_secret: bytes = field(default=b"", repr=False)
    # Who gets which record changes (hub/fanout, format in schemas/subscriptions.schema.json).
    subscriptions_file: Path = REPO_ROOT / "deploy" / "local" / "subscriptions.toml"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        kafka_port = env.get("HSSK_KAFKA_PORT", "9092")
        redis_port = env.get("HSSK_REDIS_PORT", "6379")
        return cls(
            kafka_bootstrap=env.get("HSSK_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}"),
            redis_url=env.get("HSSK_REDIS_URL", f"redis://127.0.0.1:{redis_port}/0"),
            kafka_controller_port=int(env.get("HSSK_KAFKA_CONTROLLER_PORT", cls.kafka_controller_port)),
            mllp_host=env.get("HSSK_MLLP_HOST", cls.mllp_host),
            mllp_port=int(env.get("HSSK_MLLP_PORT", cls.mllp_port)),
            mllp_max_frame_bytes=int(env.get("HSSK_MLLP_MAX_FRAME_BYTES", cls.mllp_max_frame_bytes)),
            ack_timeout_s=float(env.get("HSSK_ACK_TIMEOUT_S", cls.ack_timeout_s)),
            mllp_tls_port=int(env.get("HSSK_MLLP_TLS_PORT", cls.mllp_tls_port)),
            mllp_tls_cert=env.get("HSSK_MLLP_TLS_CERT", cls.mllp_tls_cert),
            mllp_tls_key=env.get("HSSK_MLLP_TLS_KEY", cls.mllp_tls_key),
            mllp_tls_client_ca=env.get("HSSK_MLLP_TLS_CLIENT_CA", cls.mllp_tls_client_ca),
            mllp_idle_timeout_s=float(env.get("HSSK_MLLP_IDLE_TIMEOUT_S", cls.mllp_idle_timeout_s)),
            mllp_max_connections=int(env.get("HSSK_MLLP_MAX_CONNECTIONS", cls.mllp_max_connections)),
            mllp_max_connections_per_peer=int(env.get("HSSK_MLLP_MAX_CONNECTIONS_PER_PEER",
                                                      cls.mllp_max_connections_per_peer)),
            mllp_metrics_port=int(env.get("HSSK_MLLP_METRICS_PORT", cls.mllp_metrics_port)),
            stream_metrics_ports=_stream_metrics_ports(env, _mllp_metrics_port(env)),
            metrics_host=env.get("HSSK_METRICS_HOST", cls.metrics_host),
            lag_exporter_port=int(env.get("HSSK_LAG_EXPORTER_PORT", (_mllp_metrics_port(env) or 9464) + 5)),
            sources_file=Path(env.get("HSSK_SOURCES_FILE", str(cls.sources_file))),
            mllp_open_mode=env.get("HSSK_MLLP_OPEN_MODE", "false").lower() in ("1", "true", "yes"),
            dedup_ttl_s=int(env.get("HSSK_DEDUP_TTL_S", cls.dedup_ttl_s)),
            kafka_linger_ms=int(env.get("HSSK_KAFKA_LINGER_MS", cls.kafka_linger_ms)),
            stage_fetch_min_bytes=int(env.get("HSSK_STAGE_FETCH_MIN_BYTES", cls.stage_fetch_min_bytes)),
            stage_fetch_max_wait_ms=int(env.get("HSSK_STAGE_FETCH_MAX_WAIT_MS", cls.stage_fetch_max_wait_ms)),
            stage_commit_interval_ms=int(env.get("HSSK_STAGE_COMMIT_INTERVAL_MS", cls.stage_commit_interval_ms)),
            topic_partitions=int(env.get("HSSK_TOPIC_PARTITIONS", cls.topic_partitions)),
            topic_replication=int(env.get("HSSK_TOPIC_REPLICATION", cls.topic_replication)),
            pseudonym_key=env.get("HSSK_PSEUDONYM_KEY", DEV_PSEUDONYM_KEY).encode(),
            state_dir=Path(env.get("HSSK_STATE_DIR", str(REPO_ROOT / ".hub"))),
            log_level=env.get("HSSK_LOG_LEVEL", cls.log_level),
            api_host=env.get("HSSK_API_HOST", cls.api_host),
            api_port=int(env.get("HSSK_API_PORT", cls.api_port)),
            api_token_file=Path(env.get("HSSK_API_TOKEN_FILE", str(Path(env.get(
                "HSSK_STATE_DIR", str(REPO_ROOT / ".hub"))) / "api-tokens.json"))),
            api_rate_per_s=float(env.get("HSSK_API_RATE_PER_S", cls.api_rate_per_s)),
            api_rate_burst=int(env.get("HSSK_API_RATE_BURST", cls.api_rate_burst)),
            pg_port=int(env.get("HSSK_PG_PORT", cls.pg_port)),
            pg_dsn=env.get("HSSK_PG_DSN", f"postgresql://hssk@127.0.0.1:{env.get('HSSK_PG_PORT', cls.pg_port)}/hssk"),
            fhir_max_bundle_bytes=int(env.get("HSSK_FHIR_MAX_BUNDLE_BYTES", cls.fhir_max_bundle_bytes)),
            import_workers=int(env.get("HSSK_IMPORT_WORKERS", cls.import_workers)),
            watch_poll_s=float(env.get("HSSK_WATCH_POLL_S", cls.watch_poll_s)),
            watch_settle_s=float(env.get("HSSK_WATCH_SETTLE_S", cls.watch_settle_s)),
            receiver_host=env.get("HSSK_RECEIVER_HOST", cls.receiver_host),
            receiver_port=int(env.get("HSSK_RECEIVER_PORT", int(env.get("HSSK_API_PORT", cls.api_port)) + 19)),
            receiver_secret=env.get("HSSK_RECEIVER_SECRET", DEV_RECEIVER_SECRET).encode(),
            receiver_previous_secret=env.get("HSSK_RECEIVER_PREVIOUS_SECRET", "").encode(),
            subscriptions_file=Path(env.get("HSSK_SUBSCRIPTIONS_FILE", str(cls.subscriptions_file))),
        )

    def metrics_port(self, role: str) -> int:
        """The /metrics port of a stream role (0: off)."""
        return dict(self.stream_metrics_ports).get(role, 0)

    @property
    def redis_port(self) -> int:
        return int(self.redis_url.rsplit(":", 1)[1].split("/", 1)[0])


def _mllp_metrics_port(env: Mapping[str, str]) -> int:
    return int(env.get("HSSK_MLLP_METRICS_PORT", Settings.mllp_metrics_port))


def _stream_metrics_ports(env: Mapping[str, str], mllp_metrics_port: int) -> tuple[tuple[str, int], ...]:
    """HSSK_<ROLE>_METRICS_PORT per role; unset, the mllp metrics port + 1 + the role's index (0 stays off)."""
    ports = []
    for i, role in enumerate(STREAM_ROLES):
        default = mllp_metrics_port + 1 + i if mllp_metrics_port else 0
        ports.append((role, int(env.get(f"HSSK_{role.upper()}_METRICS_PORT", default))))
    # The warehouse role's /metrics: off unless set (a cluster sets it for its probes and scrapes; the local
    # stack keeps the ports it has).
    ports.append(("warehouse", int(env.get("HSSK_WAREHOUSE_METRICS_PORT", 0))))
    return tuple(ports)
