"""The sources file: what it accepts, what it refuses (and says why), and reloading without downtime."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectors.mllp.sources import ClientCertificate, SourcesError, SourcesFile, load_sources, parse_sources

CHORAY = """
[[facility]]
code = "79048"
name = "Bệnh viện Chợ Rẫy"
applications = ["HIS"]
"""


@pytest.mark.parametrize("data, expected", [
    ({"facility": [{"name": "Bệnh viện Từ Dũ"}]}, "needs a non-empty code"),
    ({"facility": [{"code": "79033"}, {"code": "79033"}]}, "listed twice"),
    ({"facility": [{"code": "79033", "charset": "vni-windows"}]}, "unknown charset 'vni-windows'"),
    ({"facility": [{"code": "79033", "aplications": ["HIS"]}]}, "unknown keys ['aplications']"),
    ({"facility": [{"code": "79033", "applications": "HIS"}]}, "applications must be a list"),
    ({"facilities": []}, "unknown top-level keys ['facilities']"),
    ({"defaults": {"charset": "nope"}}, "unknown charset 'nope'"),
    ({"open_mode": "false"}, "open_mode must be true or false, not 'false'"),
    ({"facility": [{"code": "79033", "honour_msh18": 1}]}, "honour_msh18 must be true or false"),
])
def test_invalid_configuration_is_refused_with_the_place_and_reason(data: dict, expected: str) -> None:
    with pytest.raises(SourcesError) as caught:
        parse_sources(data, "sources.toml")
    assert expected in str(caught.value)
    assert "sources.toml" in str(caught.value)


def test_unreadable_or_broken_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match="cannot read the sources file"):
        load_sources(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[facility]\ncode = 1", encoding="utf-8")
    with pytest.raises(SourcesError, match="not valid TOML"):
        load_sources(broken)


def test_admission_rules() -> None:
    sources = parse_sources({"facility": [
        {"code": "79048", "applications": ["HIS"]},
        {"code": "79033", "tls_client_sha256": "AB:CD:EF", "tls_client_cn": "his.tudu.example"},
    ]})
    assert sources.admit("79048", "HIS", None).facility.code == "79048"
    assert "MSH-3" in sources.admit("79048", "LIS", None).reason
    assert "not a configured source" in sources.admit("79999", "HIS", None).reason
    assert "over TLS" in sources.admit("79033", "HIS", None).reason
    good = ClientCertificate("abcdef", "his.tudu.example")
    assert sources.admit("79033", "HIS", good).facility.code == "79033"
    assert "does not identify" in sources.admit("79033", "HIS", ClientCertificate("abcdef", "other")).reason
    assert "does not identify" in sources.admit("79033", "HIS", ClientCertificate("000000", "his.tudu.example")).reason


def test_open_mode_is_off_by_default_and_admits_anyone_when_on() -> None:
    assert parse_sources({}).open_mode is False
    assert parse_sources({}).admit("79999", "ANY", None).facility is None
    admitted = parse_sources({"open_mode": True, "defaults": {"charset": "latin-1"}}).admit("79999", "ANY", None)
    assert admitted.facility.code == "79999" and admitted.facility.charset == "latin-1"


def test_msh18_is_used_only_when_the_source_trusts_it() -> None:
    sources = parse_sources({"facility": [{"code": "A", "charset": "windows-1258"},
                                          {"code": "B", "charset": "utf-8", "honour_msh18": True}]})
    assert sources.facilities["A"].charset_for("8859/1") == "windows-1258"
    assert sources.facilities["B"].charset_for("8859/1") == "latin-1"
    assert sources.facilities["B"].charset_for("") == "utf-8"
    assert sources.facilities["B"].charset_for("NOT-A-CHARSET") == "utf-8"


def test_a_changed_file_is_picked_up_and_a_bad_edit_keeps_the_previous_configuration(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(CHORAY, encoding="utf-8")
    sources = SourcesFile(path)
    assert set(sources.current.facilities) == {"79048"}
    assert sources.reload_if_changed() is False  # unchanged: nothing to do

    path.write_text(CHORAY + '\n[[facility]]\ncode = "79033"\nname = "Bệnh viện Từ Dũ"\n', encoding="utf-8")
    os.utime(path, (1, 1))  # a distinct mtime even on coarse file systems
    assert sources.reload_if_changed() is True
    assert set(sources.current.facilities) == {"79048", "79033"}

    path.write_text("[[facility]]\nname = 'no code'\n", encoding="utf-8")
    os.utime(path, (2, 2))
    assert sources.reload_if_changed() is False
    assert set(sources.current.facilities) == {"79048", "79033"}  # the typo took no feed down
    assert sources.reload_if_changed() is False  # and is reported once, not on every poll


def test_a_bad_file_at_start_is_fatal(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text("open_mode = 'yes please'\n", encoding="utf-8")
    with pytest.raises(SourcesError):
        SourcesFile(path)
