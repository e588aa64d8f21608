"""The record API: a citizen's record as FHIR, for authorised systems, every read audited.

    module        what it owns
    tokens        bearer tokens: issue (shown once), SHA-256 at rest in the token file, revoke, scopes
    ratelimit     a token bucket per client id
    problems      ApiError and the OperationOutcome body every error answer carries
    lookup        exact CCCD / BHYT lookup through the MPI's links; citizen-id checks
    bundle        record dict -> FHIR R4 Bundle (what Patient/$everything returns)
    (healthbook)  the four groups of the electronic health book: hub.fanout.healthbook (the fan-out pushes it too)
    audit         the audit.access event, written before any data leaves
    metrics       Prometheus counters at /metrics (ops:read): route templates, statuses, client ids
    app           the aiohttp application: routes, the auth / rate-limit middleware, handlers
    service       the ``api`` role: ``run(settings)``; ``start`` for tests
    commands      ``hub api serve | token issue | token revoke | token list``

Identifiers (CCCD, BHYT) travel only in request bodies (``POST /v1/record/search``), never in URLs, so no
proxy or access log holds one. Every read states a purpose (``X-Purpose-Of-Use`` or ``?purpose=``).

Answers: 400 malformed identifier, citizen id or purpose; 401 no, unknown or revoked token (with
``WWW-Authenticate``); 403 token lacks the route's scope; 404 no such citizen; 429 the client's bucket is
empty (with ``Retry-After``); 409 a review case already decided; 503 Redis or the audit log (Kafka) unavailable: no record
is ever sent without a confirmed audit event.
"""
