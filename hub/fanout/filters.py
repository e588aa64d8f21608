"""Which changes a subscription gets: its filter (types, facilities, cohorts) and its sensitivity policy.

Pure functions over the change and (for cohorts) the record, so they are unit-tested without services.
A cohort is an age band in completed years on today's date in Asia/Ho_Chi_Minh, from the record's birth date
(the hub's best knowledge, not what one source said). FHIR birth dates may be partial (``1950``, ``1950-03``):
a partial date counts from the first day it allows (1 January, the 1st of the month).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from hub.envelope import Envelope
from hub.fanout.config import Cohort, Filter, Subscription

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class Verdict(Enum):
    DELIVER = "deliver"
    FILTERED = "filtered"  # not what the subscription asked for
    WITHHELD = "withheld"  # flagged sensitive and the subscription is not entitled


def today_vn() -> date:
    return datetime.now(VN_TZ).date()


def parse_birth_date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 4 or not value[:4].isdigit():
        return None
    parts = value[:10].split("-")
    try:
        return date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2]) if len(parts) > 2 else 1)
    except (ValueError, IndexError):
        return None


def age_on(birth: date, day: date) -> int:
    """Completed years on ``day`` (a 29 February birthday counts on 1 March in other years)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def in_cohort(cohort: Cohort, age: int) -> bool:
    return (cohort.min_age is None or age >= cohort.min_age) and (cohort.max_age is None or age <= cohort.max_age)


def record_birth_date(record: dict[str, Any] | None) -> date | None:
    return parse_birth_date(((record or {}).get("demographics") or {}).get("birth_date"))


def allowed(flags: Any, entitled: frozenset[str]) -> bool:
    """True when every sensitivity flag is one the subscription is entitled to (no flags: always)."""
    return not flags or set(flags) <= entitled


def verdict(sub: Subscription, event: Envelope, record: dict[str, Any] | None, day: date | None = None) -> Verdict:
    """Deliver, filter out, or withhold one change for one subscription.

    Withholding is decided first: a flagged change the subscription may not see is never formatted, so
    not even a health-book push (which would reveal that something happened) follows from it.
    """
    if not allowed(event.sensitivity, sub.entitled):
        return Verdict.WITHHELD
    return Verdict.DELIVER if matches(sub.filter, event, record, day) else Verdict.FILTERED


def matches(f: Filter, event: Envelope, record: dict[str, Any] | None, day: date | None = None) -> bool:
    if f.event_types is not None and event.type not in f.event_types:
        return False
    if f.facilities is not None and event.source.facility not in f.facilities:
        return False
    if f.cohorts:
        birth = record_birth_date(record)
        if birth is None:
            return False
        age = age_on(birth, day or today_vn())
        return any(in_cohort(c, age) for c in f.cohorts)
    return True
