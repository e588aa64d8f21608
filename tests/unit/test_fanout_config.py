"""The subscriptions file: the shipped one loads; bad files are refused with every problem named by
subscription and field; secrets come from the environment, never the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.fanout import config
from hub.fanout.config import Cohort, SubscriptionConfigError
from hub.settings import DEV_RECEIVER_SECRET, REPO_ROOT, Settings

GOOD = """
[[subscription]]
name = "sotay-suckhoe"
description = "Sổ sức khỏe điện tử"
format = "health-book"
coalesce_s = 2
[subscription.delivery]
kind = "webhook"
url = "https://vneid.example.gov.vn/hssk/push"
secret_env = "VNEID_SECRET"
[subscription.filter]
cohorts = [{ min_age = 6, max_age = 18 }]
facilities = ["79048"]
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SubscriptionConfigError) as info:
        config.loads(text, env=env or {})
    return info.value.problems


def sub(body: str, name: str = "thu") -> str:
    return f'[[subscription]]\nname = "{name}"\n{body}'


KAFKA = '[subscription.delivery]\nkind = "kafka"\n'


class TestGoodFiles:
    def test_the_shipped_file_loads(self) -> None:
        subs = config.load(REPO_ROOT / "deploy" / "local" / "subscriptions.toml",
                           config.settings_env(Settings()))
        assert [s.name for s in subs] == ["healthbook", "elderly", "warehouse"]
        book = subs[0]
        assert book.delivery.url == "http://127.0.0.1:8099/deliveries" and book.group == "hssk-sub-healthbook"
        assert subs[2].group == "hssk-warehouse" and not subs[2].runs_in_fanout

    def test_a_full_subscription_is_read_as_written(self) -> None:
        (s,) = config.loads(GOOD, env={"VNEID_SECRET": "bí-mật"})
        assert (s.name, s.format, s.coalesce_s, s.start) == ("sotay-suckhoe", "health-book", 2.0, "earliest")
        assert s.filter.cohorts == (Cohort(6, 18),) and s.filter.facilities == frozenset({"79048"})
        assert s.filter.event_types is None and s.entitled == frozenset()
        assert s.delivery.secret == "bí-mật".encode() and not s.delivery.dev_secret

    def test_an_unset_secret_variable_falls_back_to_the_dev_secret_and_says_so(self) -> None:
        (s,) = config.loads(GOOD, env={})
        assert s.delivery.secret == DEV_RECEIVER_SECRET.encode() and s.delivery.dev_secret

    def test_the_summary_never_holds_the_secret(self) -> None:
        (s,) = config.loads(GOOD, env={"VNEID_SECRET": "bí-mật"})
        assert "bí-mật" not in repr(s.summary()) and "bí-mật" not in repr(s)

    def test_environment_references_in_the_url_are_expanded(self) -> None:
        text = sub('format = "event"\n[subscription.delivery]\nkind = "webhook"\n'
                   'url = "http://127.0.0.1:${PORT:-8099}/in"\nsecret_env = "S"\n')
        assert config.loads(text, env={})[0].delivery.url == "http://127.0.0.1:8099/in"
        assert config.loads(text, env={"PORT": "18499"})[0].delivery.url == "http://127.0.0.1:18499/in"

    def test_an_empty_file_has_no_subscriptions(self) -> None:
        assert config.loads("", env={}) == ()


class TestBadFiles:
    """Each case: the file, then a piece of text the finding must contain."""

    @pytest.mark.parametrize("text, expected", [
        ("[[subscription]\n", "not valid TOML"),
        (sub('format = "event"\n'), "subscription \"thu\": 'delivery' is a required property"),
        (sub('format = "pdf"\n' + KAFKA), 'subscription "thu": format: \'pdf\' is not one of'),
        ('[[subscription]]\nname = "Sổ Tay"\nformat = "event"\n' + KAFKA, "name: 'Sổ Tay' does not match"),
        (sub('format = "event"\n[subscription.delivery]\nkind = "webhook"\n'), "'url' is a required property"),
        (sub('format = "event"\n[subscription.delivery]\nkind = "webhook"\nurl = "https://x.vn/h"\n'
             'secret_env = "S"\nsecret = "abc"\n'), "'secret' must not be written in the file"),
        (sub('format = "event"\n[subscription.delivery]\nkind = "kafka"\nurl = "https://x.vn/h"\n'),
         "url, secret_env and timeout_s are for webhook deliveries only"),
        (sub('format = "event"\n[subscription.delivery]\nkind = "webhook"\nurl = "http://example.vn/h"\n'
             'secret_env = "S"\n'), "delivery.url: plain http is only allowed to this machine"),
        (sub('format = "event"\n[subscription.delivery]\nkind = "webhook"\nurl = "http://127.0.0.1:${NO_SUCH}/h"\n'
             'secret_env = "S"\n'), "environment variable NO_SUCH is not set"),
        (sub('format = "event"\n' + KAFKA + '[subscription.filter]\nevent_types = ["lab.result"]\n'),
         "filter.event_types: unknown event type(s) lab.result"),
        (sub('format = "event"\n' + KAFKA + '[subscription.filter]\ncohorts = [{ min_age = 19, max_age = 6 }]\n'),
         "filter.cohorts.0: min_age 19 is above max_age 6"),
        (sub('format = "event"\n' + KAFKA + '[subscription.filter]\ncohorts = [{}]\n'), "filter.cohorts.0"),
        (sub('format = "event"\ncoalesce_s = 5\n' + KAFKA), "coalesce_s: coalescing is for the health-book format"),
        (sub('format = "event"\nentitled = ["hiv", "lao"]\n' + KAFKA), "entitled.1: 'lao' is not one of"),
        (sub('format = "event"\n' + KAFKA + '[subscription.retry]\nfirst_s = 60\nmax_s = 5\n'),
         "retry.first_s: 60.0 is above retry.max_s 5.0"),
        (sub('format = "event"\n' + KAFKA, "all"), "'all' is reserved"),
        (sub('format = "health-book"\n[subscription.delivery]\nkind = "warehouse"\n'),
         "a warehouse subscription names the warehouse role"),
        (sub('format = "event"\n' + KAFKA) + sub('format = "event"\n' + KAFKA), 'subscription "thu": name: defined twice'),
        (sub('format = "event"\nfiltre = {}\n' + KAFKA), "unknown field(s) 'filtre'"),
    ])
    def test_the_finding_names_the_subscription_and_field(self, text: str, expected: str) -> None:
        found = problems(text)
        assert any(expected in p for p in found), found

    def test_every_problem_is_reported_at_once(self) -> None:
        text = sub('format = "pdf"\n[subscription.delivery]\nkind = "ftp"\n', "mot") + \
            '[[subscription]]\nformat = "event"\n' + KAFKA
        found = problems(text)
        assert any(p.startswith('subscription "mot": delivery.kind') for p in found)
        assert any(p.startswith('subscription "mot": format') for p in found)
        assert any(p.startswith("subscription #2: 'name' is a required property") for p in found)

    def test_a_missing_file_is_an_error_not_an_empty_list(self, tmp_path: Path) -> None:
        with pytest.raises(SubscriptionConfigError) as info:
            config.load(tmp_path / "khong-co.toml", env={})
        assert "cannot be read" in info.value.problems[0] and "khong-co.toml" in str(info.value)
