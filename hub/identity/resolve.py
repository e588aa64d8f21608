"""Identity resolution, deterministic on CCCD (the national personal id, 12 digits).

The pure step is ``resolve``; the link store is a narrow interface so unit tests use a dict and the
worker uses Redis. Links are first-writer-wins (SET NX), so two workers racing on one new CCCD agree.
"""

from __future__ import annotations

import re
from typing import Protocol

from hub.envelope import SYSTEM_CCCD, Envelope, Identifier
from hub.errors import IdentityError
from hub.pseudonym import citizen_id_for, keyed_hash

CCCD_PATTERN = re.compile(r"^\d{12}$")


class LinkStore(Protocol):
    async def link(self, identity_key: str, citizen_id: str) -> str:
        """Link identity_key to citizen_id unless it is already linked; return the citizen it is linked to."""
        ...

    async def lookup(self, identity_key: str) -> str | None: ...


def identity_key(secret: bytes, identifier: Identifier) -> str:
    """The store's key for a source identifier: a keyed hash, so Redis keys hold no id numbers."""
    return keyed_hash(secret, "id", identifier.system, identifier.value)


def strong_identifier(envelope: Envelope) -> Identifier:
    for ident in envelope.subject.identifiers:
        if ident.system == SYSTEM_CCCD and CCCD_PATTERN.match(ident.value):
            return ident
    raise IdentityError("no valid CCCD (12 digits) among the subject's identifiers")


async def resolve(envelope: Envelope, store: LinkStore, secret: bytes) -> Envelope:
    """Return the event with its citizen_id set; IdentityError when the subject cannot be resolved."""
    ident = strong_identifier(envelope)
    minted = citizen_id_for(secret, ident.system, ident.value)
    citizen_id = await store.link(identity_key(secret, ident), minted)
    return envelope.with_citizen(citizen_id)


class RedisLinkStore:
    PREFIX = "mpi:link:"

    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self._redis = redis

    async def link(self, identity_key: str, citizen_id: str) -> str:
        key = self.PREFIX + identity_key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, citizen_id, nx=True)
            pipe.get(key)
            _, current = await pipe.execute()
        return current.decode() if isinstance(current, bytes) else current

    async def lookup(self, identity_key: str) -> str | None:
        value = await self._redis.get(self.PREFIX + identity_key)
        return value.decode() if isinstance(value, bytes) else value
