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
    async def link_many(self, links: list[tuple[str, str]]) -> list[str]:
        """For each (identity_key, citizen_id): link unless already linked; return the linked citizen ids."""
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


async def resolve_many(envelopes: list[Envelope], store: LinkStore, secret: bytes) -> list[Envelope | IdentityError]:
    """Each event with its citizen_id set, or the IdentityError saying why it cannot be resolved.

    One store round trip for the whole batch; within it, links are made in event order.
    """
    results: list[Envelope | IdentityError] = []
    wanted: list[tuple[int, str, str]] = []  # (position, identity key, citizen id to mint)
    for pos, envelope in enumerate(envelopes):
        try:
            ident = strong_identifier(envelope)
        except IdentityError as exc:
            results.append(exc)
            continue
        results.append(envelope)
        wanted.append((pos, identity_key(secret, ident), citizen_id_for(secret, ident.system, ident.value)))
    linked = await store.link_many([(key, minted) for _, key, minted in wanted]) if wanted else []
    for (pos, _, _), citizen_id in zip(wanted, linked, strict=True):
        results[pos] = envelopes[pos].with_citizen(citizen_id)
    return results


class RedisLinkStore:
    PREFIX = "mpi:link:"

    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self._redis = redis

    async def link_many(self, links: list[tuple[str, str]]) -> list[str]:
        async with self._redis.pipeline(transaction=True) as pipe:
            for identity_key, citizen_id in links:
                pipe.set(self.PREFIX + identity_key, citizen_id, nx=True)
                pipe.get(self.PREFIX + identity_key)
            replies = await pipe.execute()
        return [r.decode() if isinstance(r, bytes) else r for r in replies[1::2]]

    async def lookup(self, identity_key: str) -> str | None:
        value = await self._redis.get(self.PREFIX + identity_key)
        return value.decode() if isinstance(value, bytes) else value
