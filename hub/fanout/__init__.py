"""Fan-out: subscriptions and their deliveries (Kafka out.<name>, webhooks, the health-book sync).

    module      what it owns
    config      the subscriptions file (TOML) -> frozen Subscription objects; schemas/subscriptions.schema.json
    filters     which changes a subscription gets: event types, facilities, age cohorts, sensitivity policy
    healthbook  the health-book summary (four groups) of a record; the record API serves the same one
    formats     the delivery document (hssk.out.v1, schemas/out-topic.v1.json) and its idempotency key
    plan        a batch of record.changes -> the deliveries of one subscription, in lanes per citizen
    sinks       Kafka out.<name> and the signed webhook (wire contract below); Retryable / Rejected
    retry       exponential backoff with jitter, a maximum of attempts, then dlq.<name>
    state       Redis: paused, replay requests, health-book freshness per citizen
    engine      one consumer group per subscription (hssk-sub-<name>), one worker per partition
    metrics     Prometheus metrics per subscription (on the fanout role's /metrics)
    admin       list/show/pause/resume/replay, shared by ``hub subscriptions`` and the API
    commands    ``hub subscriptions list|show|pause|resume|replay``
    signing     HMAC-SHA256 signatures of webhook bodies, shared with the reference receiver

The role ``fanout`` (``hub run fanout``, hub/stream/fanout.py) runs the engine over ``HSSK_SUBSCRIPTIONS_FILE``
(default deploy/local/subscriptions.toml) next to the built-in ``out.all`` stage.

A webhook health-book subscription (the VNeID-style sync), in the subscriptions file::

    [[subscription]]
    name = "healthbook"                 # topics dlq.healthbook, group hssk-sub-healthbook, metric label
    format = "health-book"              # the four groups, read from the record after each change
    coalesce_s = 0.5                    # changes to one citizen within 0.5 s -> one push (0: off)
    entitled = []                       # HIV / mental-health entries and changes withheld
    [subscription.delivery]
    kind = "webhook"
    url = "http://${HSSK_RECEIVER_HOST:-127.0.0.1}:${HSSK_RECEIVER_PORT:-8099}/deliveries"
    secret_env = "HSSK_RECEIVER_SECRET" # the variable holding the HMAC secret (unset: the dev-only one)
    timeout_s = 5
    [subscription.retry]                # optional; defaults 10 attempts, 0.5 s doubling to 30 s
    max_attempts = 30
    [subscription.filter]               # optional: event_types, facilities, cohorts = [{ min_age = 60 }]

``${HSSK_RECEIVER_HOST}`` / ``${HSSK_RECEIVER_PORT}`` / ``${HSSK_API_PORT}`` resolve to the hub's settings
when the environment does not set them (config.settings_env), so a test stack's receiver is found.

What the receiver gets, per push: ``POST <url>``, ``Content-Type: application/json``, headers
``X-HSSK-Subscription``, ``Idempotency-Key`` (stable across retries and replays), ``X-HSSK-Timestamp`` and
``X-HSSK-Signature: sha256=<hex HMAC(secret, b"<timestamp>." + body)>``; the body is one hssk.out.v1 document:

- ``{"format": "health-book", "citizen_id", "record_version", "health_book": {administrative, history,
  encounters, summary}, ...}``: the key is (subscription, citizen, record version), so the same version
  pushed again (retry, replay, a later change that did not change the book's version) is the same key;
- ``{"format": "merged", "citizen_id": <retired>, "merged": {"retired_citizen_id", "merged_into"}, ...}``:
  sent before the survivor's book after a ``citizen.merged``; the receiver retires that book;
- formats ``event`` / ``fhir-bundle`` for other subscriptions (``event`` / ``bundle`` members).

Answer 2xx when stored (a repeated key: 200 again), 4xx when refused (not retried: to dlq.<name> at once;
408, 425 and 429 are retried), 5xx / timeouts / connection errors are retried with backoff until ``max_attempts``, then dlq.<name>.
Per citizen, pushes arrive in order; a retrying push holds back later changes of its Kafka partition only.
"""
