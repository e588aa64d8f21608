"""The reference receiver: a small real HTTP service standing in for the national e-ID app's health book.

It takes the hub's webhook pushes (wire contract in hub/fanout/signing.py and the README), verifies each
signature with the hub's own ``verify``, stores what it accepts in SQLite (``<state>/receiver/deliveries.sqlite3``)
and serves it back for demos and tests. Run it as a hub role: ``hub run receiver`` (``hub up`` starts it).

    store.py    the SQLite store: one row per idempotency key, in order of arrival
    app.py      the aiohttp application: POST /deliveries, GET /deliveries, /health-books/{citizen}, /healthz
    service.py  the role: settings in, serve until SIGTERM
"""
