"""The subscriptions file: TOML, validated against schemas/subscriptions.schema.json, read once into frozen objects.

Errors name the subscription and the field (``subscription "healthbook": delivery.url: ...``), all of them at
once, so a bad file is fixed in one pass. Checks the schema cannot express (unique names, known event types,
no plaintext secret, https off this machine, coalescing only for the health book) are made here.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import orjson
from jsonschema import Draft202012Validator

from hub.envelope import EVENT_TYPES
from hub.settings import DEV_RECEIVER_SECRET, REPO_ROOT, Settings

SCHEMA_FILE = REPO_ROOT / "schemas" / "subscriptions.schema.json"
FORMATS = ("event", "fhir-bundle", "health-book")
KINDS = ("kafka", "webhook", "warehouse")
RESERVED_NAMES = frozenset({"all"})  # out.all is the built-in catch-all topic of the fanout role
DEFAULT_TIMEOUT_S = 5.0
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_ENV_REF = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}")


class SubscriptionConfigError(ValueError):
    """The file is not a valid subscriptions file; ``problems`` lists every finding, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Cohort:
    min_age: int | None = None
    max_age: int | None = None


@dataclass(frozen=True, slots=True)
class Filter:
    event_types: frozenset[str] | None = None  # None: every type
    facilities: frozenset[str] | None = None
    cohorts: tuple[Cohort, ...] = ()  # empty: every citizen

    @property
    def needs_record(self) -> bool:
        return bool(self.cohorts)


@dataclass(frozen=True, slots=True)
class Retry:
    max_attempts: int = 10
    first_s: float = 0.5
    max_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Delivery:
    kind: str
    url: str | None = None  # webhook, environment references already expanded
    secret_env: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    # Read from ``secret_env`` when the file is loaded; unset there: the dev-only local secret.
    secret: bytes = field(default=b"", repr=False, compare=False)
    dev_secret: bool = False


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    delivery: Delivery
    format: str
    filter: Filter = field(default_factory=Filter)
    entitled: frozenset[str] = frozenset()
    coalesce_s: float = 0.0
    retry: Retry = field(default_factory=Retry)
    start: str = "earliest"
    description: str = ""

    @property
    def group(self) -> str:
        """Its own consumer group on record.changes (its lag and offsets are its own); warehouse: the role's."""
        return "hssk-warehouse" if self.delivery.kind == "warehouse" else f"hssk-sub-{self.name}"

    @property
    def runs_in_fanout(self) -> bool:
        """False for a warehouse subscription: the warehouse role delivers it."""
        return self.delivery.kind != "warehouse"

    def summary(self) -> dict[str, Any]:
        """What list/show and the API print: the configuration, never the secret."""
        delivery: dict[str, Any] = {"kind": self.delivery.kind}
        if self.delivery.kind == "webhook":
            delivery |= {"url": self.delivery.url, "secret_env": self.delivery.secret_env,
                         "timeout_s": self.delivery.timeout_s}
        return {
            "name": self.name, "description": self.description, "delivery": delivery, "format": self.format,
            "filter": {"event_types": sorted(self.filter.event_types or ()) or None,
                       "facilities": sorted(self.filter.facilities or ()) or None,
                       "cohorts": [{k: v for k, v in (("min_age", c.min_age), ("max_age", c.max_age)) if v is not None}
                                   for c in self.filter.cohorts] or None},
            "entitled": sorted(self.entitled), "coalesce_s": self.coalesce_s,
            "retry": {"max_attempts": self.retry.max_attempts, "first_s": self.retry.first_s,
                      "max_s": self.retry.max_s},
            "start": self.start, "consumer_group": self.group,
        }


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(SCHEMA_FILE.read_bytes()))


def _where(data: Mapping[str, Any], path: list[Any]) -> str:
    """``subscription "name"`` (or ``subscription #3``) and the dotted field of a schema error path."""
    if len(path) >= 2 and path[0] == "subscription" and isinstance(path[1], int):
        items = data.get("subscription") or []
        item = items[path[1]] if path[1] < len(items) else {}
        name = item.get("name") if isinstance(item, dict) else None
        who = f'subscription "{name}"' if isinstance(name, str) and name else f"subscription #{path[1] + 1}"
        rest = ".".join(str(p) for p in path[2:])
        return f"{who}: {rest}" if rest else who
    return ".".join(str(p) for p in path) or "(top level)"


def _message(error: Any) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if "secret" in extra:
            return "'secret' must not be written in the file: put it in an environment variable and name it in secret_env"
        return f"unknown field(s) {', '.join(map(repr, extra))}"
    if error.validator == "not" and error.schema_path and "allOf" in error.schema_path:
        return "url, secret_env and timeout_s are for webhook deliveries only"
    return error.message


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}``; an unset variable without a default is an error."""
    def one(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if value is None:
            if match.group(2) is None:
                raise KeyError(match.group(1))
            return match.group(2)
        return value

    return _ENV_REF.sub(one, text)


def _build(item: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> Subscription | None:
    name = item["name"]
    who = f'subscription "{name}"'
    if name in RESERVED_NAMES:
        problems.append(f"{who}: name: {name!r} is reserved (out.{name} is the fanout role's built-in topic)")
    d = item["delivery"]
    url = d.get("url")
    if url is not None:
        try:
            url = expand_env(url, env)
        except KeyError as exc:
            problems.append(f"{who}: delivery.url: environment variable {exc.args[0]} is not set and has no default")
            return None
        parts = urlsplit(url)
        if not parts.hostname:
            problems.append(f"{who}: delivery.url: {url!r} names no host")
        elif parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            problems.append(f"{who}: delivery.url: plain http is only allowed to this machine; use https")
    f = item.get("filter") or {}
    unknown = sorted(set(f.get("event_types", ())) - EVENT_TYPES)
    if unknown:
        problems.append(f"{who}: filter.event_types: unknown event type(s) {', '.join(unknown)}")
    cohorts = tuple(Cohort(c.get("min_age"), c.get("max_age")) for c in f.get("cohorts", ()))
    for i, c in enumerate(cohorts):
        if c.min_age is not None and c.max_age is not None and c.min_age > c.max_age:
            problems.append(f"{who}: filter.cohorts.{i}: min_age {c.min_age} is above max_age {c.max_age}")
    coalesce = float(item.get("coalesce_s", 0))
    if coalesce and item["format"] != "health-book":
        problems.append(f"{who}: coalesce_s: coalescing is for the health-book format only")
    if d["kind"] == "warehouse" and (item["format"] != "event" or f):
        problems.append(f"{who}: delivery.kind: a warehouse subscription names the warehouse role, which reads "
                        "events.citizen itself: use format \"event\" and no filter")
    r = item.get("retry") or {}
    default = Retry()
    retry = Retry(r.get("max_attempts", default.max_attempts), float(r.get("first_s", default.first_s)),
                  float(r.get("max_s", default.max_s)))
    if retry.first_s > retry.max_s:
        problems.append(f"{who}: retry.first_s: {retry.first_s} is above retry.max_s {retry.max_s}")
    secret_env = d.get("secret_env")
    secret = env.get(secret_env, "").encode() if secret_env else b""
    return Subscription(
        name=name,
        delivery=Delivery(d["kind"], url, secret_env, float(d.get("timeout_s", DEFAULT_TIMEOUT_S)),
                          secret or DEV_RECEIVER_SECRET.encode(), dev_secret=bool(secret_env) and not secret),
        format=item["format"],
        filter=Filter(frozenset(f["event_types"]) if "event_types" in f else None,
                      frozenset(f["facilities"]) if "facilities" in f else None, cohorts),
        entitled=frozenset(item.get("entitled", ())), coalesce_s=coalesce, retry=retry,
        start=item.get("start", "earliest"), description=item.get("description", ""),
    )


def parse(data: Mapping[str, Any], source: str = "subscriptions", env: Mapping[str, str] | None = None
          ) -> tuple[Subscription, ...]:
    """Validate a loaded document and build its subscriptions; SubscriptionConfigError lists every problem."""
    env = os.environ if env is None else env
    errors = sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [f"{_where(data, list(e.absolute_path))}: {_message(e)}" for e in errors]
    if problems:
        raise SubscriptionConfigError(source, problems)
    subs: list[Subscription] = []
    seen: set[str] = set()
    for item in data.get("subscription", []):
        if item["name"] in seen:
            problems.append(f'subscription "{item["name"]}": name: defined twice')
        seen.add(item["name"])
        built = _build(item, env, problems)
        if built is not None:
            subs.append(built)
    if problems:
        raise SubscriptionConfigError(source, problems)
    return tuple(subs)


def loads(text: str, source: str = "subscriptions", env: Mapping[str, str] | None = None) -> tuple[Subscription, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SubscriptionConfigError(source, [f"not valid TOML: {exc}"]) from exc
    return parse(data, source, env)


def load(path: Path, env: Mapping[str, str] | None = None) -> tuple[Subscription, ...]:
    """The subscriptions of a file; a missing file is an error (say so rather than deliver nothing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SubscriptionConfigError(str(path), [f"cannot be read: {exc.strerror or exc}"]) from exc
    return loads(text, str(path), env)


def settings_env(settings: Settings) -> dict[str, str]:
    """What ``${...}`` in the file may name: the environment, else the hub's own addresses (the local receiver)."""
    return {"HSSK_RECEIVER_HOST": settings.receiver_host, "HSSK_RECEIVER_PORT": str(settings.receiver_port),
            "HSSK_API_PORT": str(settings.api_port), **os.environ}


def find(subs: tuple[Subscription, ...], name: str) -> Subscription:
    for sub in subs:
        if sub.name == name:
            return sub
    raise KeyError(name)

