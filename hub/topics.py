"""The topic catalogue: the only place topic names, keys, partitions and retention are written down."""

from __future__ import annotations

from dataclasses import dataclass

from hub.settings import Settings

FOREVER = -1
WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    key: str  # what the Kafka key is; never personal data
    retention_ms: int
    description: str
    compacted: bool = False

    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": "compact" if self.compacted else "delete",
        }


HL7V2_RAW = Topic(
    "hl7v2.raw", "keyed hash of facility + source patient id (fallback: control id)", FOREVER,
    "Exact bytes of every HL7 v2 message the MLLP listener acknowledged, with ingestion headers.",
)
EMR_RAW = Topic("emr.raw", "keyed hash of facility + source record id", FOREVER, "Raw EMR export records.")
EVENTS_CANONICAL = Topic(
    "events.canonical", "keyed hash of facility + source patient id", FOREVER,
    "Canonical events (FHIR R4 payloads in the hub envelope), before identity resolution.",
)
EVENTS_CITIZEN = Topic(
    "events.citizen", "citizen_id", FOREVER, "Canonical events with the resolved citizen_id.",
)
RECORD_CHANGES = Topic(
    "record.changes", "citizen_id", FOREVER, "Each applied change to a citizen's record, in per-citizen order.",
)
OUT_ALL = Topic(
    "out.all", "citizen_id", WEEK_MS,
    "Fan-out for plain Kafka subscribers: record changes without sensitive categories.",
)
DLQ = Topic("hub.dlq", "the failed message's own key", FOREVER, "Anything a stage could not handle, with reason.")
AUDIT_ACCESS = Topic("audit.access", "citizen_id", FOREVER, "Every read of a record: who, whom, when, why.")

CATALOGUE: tuple[Topic, ...] = (
    HL7V2_RAW, EMR_RAW, EVENTS_CANONICAL, EVENTS_CITIZEN, RECORD_CHANGES, OUT_ALL, DLQ, AUDIT_ACCESS,
)


def subscription_out(name: str) -> Topic:
    """``out.<name>``: a Kafka subscription's deliveries (schemas/out-topic.v1.json), from hub/fanout."""
    return Topic(f"out.{name}", "citizen_id", WEEK_MS,
                 f"Deliveries of subscription {name} (hssk.out.v1 documents), in per-citizen order.")


def subscription_dlq(name: str) -> Topic:
    """``dlq.<name>``: deliveries of one subscription that were refused or ran out of retries."""
    return Topic(f"dlq.{name}", "citizen_id", FOREVER,
                 f"Dead letters of subscription {name}: the record.changes bytes, the reason, the coordinates.")


async def ensure_topics(settings: Settings, timeout_s: float = 60.0, extra: tuple[Topic, ...] = ()) -> list[str]:
    """Create every catalogue topic (and ``extra``, e.g. per-subscription topics) that is missing; return the
    names created. Safe to run twice."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in (*CATALOGUE, *extra) if t.name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(t.name, settings.topic_partitions, settings.topic_replication, topic_configs=t.config())
                for t in missing
            ])
        return [t.name for t in missing]
    finally:
        await admin.close()
