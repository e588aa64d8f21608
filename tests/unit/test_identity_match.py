"""Comparison levels and pair decisions of the matching model, traps from the reference file included."""

from __future__ import annotations

import json
import math

import pytest

from hub.identity.comparisons import BirthDate, FamilyName, GivenName, MiddleName, ModelError, within_one_edit
from hub.identity.model import DEFAULT_LEVELS, LINK, NEW, REVIEW, MatchModel, MatchSettings
from hub.identity.records import Prepared, SourceRecord, prepare

MODEL = MatchModel()


def rec(name: str = "", dob: str = "", sex: str = "", cccd: str = "", bhyt: str = "", phone: str = "",
        address: str = "", ward: str = "", event: str = "") -> Prepared:
    return prepare(SourceRecord("r", name=name, birth_date=dob, sex=sex, personal_id=cccd, insurance=bhyt,
                                phone=phone, address=address, ward=ward, event_date=event))


def level(comparison: object, a: Prepared, b: Prepared) -> str:
    return comparison.levels[comparison.level(a, b)].name  # type: ignore[attr-defined]


class TestNameLevels:
    @pytest.mark.parametrize(("a", "b", "expected"), [
        ("Nguyễn", "Nguyễn", "exact"),
        ("Nguyễn", "NGUYEN", "ascii"),
        ("Hoàng", "Huỳnh", "variant"),
        ("Vũ", "Võ", "variant"),
        ("Nguyễn", "Nguyn", "typo"),
        ("Lê", "Phạm", "else"),
        ("", "Trần", "null"),
    ])
    def test_family(self, a: str, b: str, expected: str) -> None:
        comp = FamilyName(DEFAULT_LEVELS["family_name"])
        name_a = f"{a} Văn An" if a else "An"  # a one-word name is a given name only
        assert level(comp, rec(name_a), rec(f"{b} Văn An")) == expected

    @pytest.mark.parametrize(("a", "b", "expected"), [
        ("Thị Bích", "Thị Bích", "exact"),
        ("Thị Bích", "Thi Bich", "ascii"),
        ("Thị Bích", "Bích", "part"),
        ("Thị", "Thị Ngọc", "part"),
        ("Ngọc", "Ngoc", "ascii"),
        ("Thùy", "Thủy", "ascii"),
        ("Phương", "Phưng", "typo"),
        ("Thị", "Ngọc", "else"),
        ("", "Thị", "null"),
    ])
    def test_middle(self, a: str, b: str, expected: str) -> None:
        comp = MiddleName(DEFAULT_LEVELS["middle_name"])
        assert level(comp, rec(f"Trần {a} Lan".replace("  ", " ")), rec(f"Trần {b} Lan".replace("  ", " "))) == expected

    @pytest.mark.parametrize(("a", "b", "expected"), [
        ("Ngọc", "Ngọc", "exact"),
        ("Hòa", "Hoà", "exact"),
        ("Ngọc", "NGOC", "ascii"),
        ("Hương", "Huong", "ascii"),
        ("Ánh", "Anh", "ascii"),
        ("Hùng", "Hnug", "typo"),
        ("Huy", "Hy", "typo"),
        ("Phương", "Phượng", "ascii"),
        ("Lan", "Linh", "else"),
        ("Anh", "Khôi", "else"),
    ])
    def test_given(self, a: str, b: str, expected: str) -> None:
        comp = GivenName(DEFAULT_LEVELS["given_name"])
        assert level(comp, rec(f"Lê Thị {a}"), rec(f"Lê Thị {b}")) == expected

    def test_frequent_given_names_weigh_less_with_term_frequencies(self) -> None:
        """An exact "Anh" (frequent) is weaker evidence than an exact "Khuê" (rare)."""
        comp = GivenName(DEFAULT_LEVELS["given_name"], tf={"anh": 0.05, "khue": 0.001})
        anh, khue = rec("Lê Thị Anh"), rec("Lê Thị Khuê")
        assert comp.weight(anh, anh, 1) < comp.weight(khue, khue, 1)
        assert comp.weight(khue, khue, 1) == pytest.approx(math.log2(0.74 / 0.001))

    @pytest.mark.parametrize(("a", "b", "expected"), [("hung", "hung", True), ("hung", "hng", True),
                                                      ("hung", "hunh", True), ("hung", "hungg", True),
                                                      ("hung", "hu", False), ("lan", "linh", False)])
    def test_within_one_edit(self, a: str, b: str, expected: bool) -> None:
        assert within_one_edit(a, b) is expected


class TestBirthDateLevels:
    @pytest.mark.parametrize(("a", "b", "expected"), [
        ("20/02/1985", "1985-02-20", "exact"),
        ("05/03/1985", "03/05/1985", "swapped"),
        ("20/02/1985", "20/02/1986", "one_digit"),
        ("20/02/1985", "21/02/1985", "one_digit"),
        ("00/00/1985", "20/02/1985", "year_only"),
        ("01/01/1985", "20/02/1985", "year_only"),  # 01/01 is the old default for an unknown day and month
        ("14/07/1990", "20/02/1985", "else"),
        ("", "20/02/1985", "null"),
    ])
    def test_levels(self, a: str, b: str, expected: str) -> None:
        assert level(BirthDate(DEFAULT_LEVELS["birth_date"]), rec(dob=a), rec(dob=b)) == expected


ADDRESS = "12 Lê Lợi, P. Bến Thành, TP.HCM"
MOTHER = dict(name="Trần Thị Lan", dob="12/03/1992", sex="Nữ", cccd="079192004321", phone="0912345678",
              address=ADDRESS, ward="26734")


class TestDecisions:
    def test_same_person_without_id_numbers_links_on_demographics(self) -> None:
        a = rec("Nguyễn Thị Bích Ngọc", "20/02/1985", "Nữ", phone="0912345678", address=ADDRESS, ward="26734")
        b = rec("NGUYEN THI BICH NGOC", "1985-02-20", "2", phone="+84 912 345 678",
                address="12 Le Loi, Phuong Ben Thanh, Ho Chi Minh", ward="26734")
        d = MODEL.score(a, b)
        assert (d.outcome, d.rule) == (LINK, "probabilistic")

    def test_the_decision_is_explained_by_its_contributions(self) -> None:
        a, b = rec(**MOTHER), rec(**{**MOTHER, "cccd": ""})
        d = MODEL.score(a, b)
        assert d.weight == pytest.approx(MatchSettings().prior_weight + sum(c.weight for c in d.contributions))
        assert {c.comparison: c.level for c in d.contributions}["birth_date"] == "exact"

    @pytest.mark.parametrize("newborn_name", ["Trần Thị Lan", "Con của Trần Thị Lan", "CB TRAN THI LAN"])
    def test_a_newborn_under_the_mothers_name_is_never_linked_to_the_mother(self, newborn_name: str) -> None:
        mother = rec(**MOTHER)
        newborn = rec(newborn_name, "05/11/2025", "Nam", phone="0912345678", address=ADDRESS, ward="26734",
                      event="05/11/2025")
        assert MODEL.score(mother, newborn).outcome == NEW

    def test_a_newborn_row_carrying_the_mothers_cccd_is_not_a_deterministic_link(self) -> None:
        """The CCCD contradicts the newborn row's birth year, so it is not trusted: review, never link."""
        mother = rec(**MOTHER)
        newborn = rec("Trần Thị Lan", "05/11/2025", "Nam", cccd="079192004321", phone="0912345678",
                      address=ADDRESS, ward="26734", event="05/11/2025")
        d = MODEL.score(mother, newborn)
        assert d.outcome != LINK and "cccd_birth_year" in d.flags and "birth_date_differs" in d.flags

    def test_twins_stay_apart(self) -> None:
        """Same surname, middle name, birth date, address and phone; different given names."""
        common = dict(dob="14/06/2015", phone="0912345678", address=ADDRESS, ward="26734")
        anh = rec("Nguyễn Minh Anh", sex="Nam", cccd="079215000111", **common)
        khoi = rec("Nguyễn Minh Khôi", sex="Nam", cccd="079215000222", **common)
        assert MODEL.score(anh, khoi).outcome == NEW  # two valid CCCDs and two given names: two people
        no_ids = MODEL.score(rec("Nguyễn Minh Anh", sex="Nam", **common), rec("Nguyễn Minh Khôi", sex="Nam", **common))
        assert no_ids.outcome != LINK and "given_name_differs" in no_ids.flags  # at most a steward looks

    def test_a_reissued_cccd_still_links_on_everything_else(self) -> None:
        old = rec(**MOTHER)
        new = rec(**{**MOTHER, "cccd": "079192777888"})
        d = MODEL.score(old, new)
        assert (d.outcome, d.rule) == (LINK, "probabilistic")
        assert {c.comparison: c.level for c in d.contributions}["cccd"] == "else"

    def test_one_cccd_claimed_by_two_clearly_different_people_goes_to_review(self) -> None:
        a = rec(**MOTHER)
        b = rec("Phạm Văn Hùng", "02/09/1992", "Nữ", cccd="079192004321", phone="0987654321", ward="27001")
        d = MODEL.score(a, b)
        assert (d.outcome, d.rule) == (REVIEW, "cccd") and "strong_id_conflict" in d.flags

    def test_the_same_cccd_links_whatever_the_spelling(self) -> None:
        a = rec(**MOTHER)
        b = rec("TRAN THI LAN", "03/12/1992", "", cccd="079192004321")  # day/month swapped, no diacritics
        assert (MODEL.score(a, b).outcome, MODEL.score(a, b).rule) == (LINK, "cccd")

    def test_the_bhxh_number_links_a_15_character_card_and_a_bare_number(self) -> None:
        a = rec("Lê Văn Tâm", "01/05/1970", "Nam", bhyt="DN4797912345678")
        b = rec("Le Van Tam", "00/00/1970", "1", bhyt="7912345678")
        assert MODEL.score(a, b).rule == "bhxh" and MODEL.score(a, b).outcome == LINK

    def test_a_cccd_contradicting_its_record_lowers_the_score_and_is_flagged(self) -> None:
        good = MODEL.score(rec(**MOTHER), rec(**MOTHER))
        wrong_sex = {**MOTHER, "cccd": "079092004321"}  # 0 = male, on a woman's rows
        bad = MODEL.score(rec(**wrong_sex), rec(**wrong_sex))
        assert "cccd_sex" in bad.flags and bad.rule == "probabilistic" and bad.weight < good.weight

    def test_review_between_the_thresholds(self) -> None:
        """Full name and birth year only, in a different ward: not enough to merge, too much to ignore."""
        a = rec("Đỗ Thị Hạnh", "00/00/1960", "Nữ", ward="26734")
        b = rec("Đỗ Thị Hạnh", "00/00/1960", "Nữ", ward="27001")
        d = MODEL.score(a, b)
        assert d.outcome in (REVIEW, NEW) and d.outcome != LINK


class TestSettings:
    def test_json_round_trip(self) -> None:
        s = MatchSettings(link_weight=5.0)
        assert MatchSettings.from_json(s.to_json()) == s

    def test_levels_in_json_override_the_defaults(self, tmp_path) -> None:
        path = tmp_path / "model.json"
        path.write_text(json.dumps({"link_weight": 8, "levels": {"sex": {"else": [0.01, 0.5]}}}))
        s = MatchSettings.from_json(path)
        assert s.link_weight == 8 and s.levels["sex"]["else"] == (0.01, 0.5)
        assert s.levels["sex"]["exact"] == DEFAULT_LEVELS["sex"]["exact"]

    @pytest.mark.parametrize("bad", [{"levels": {"sex": {"else": [0, 0.5]}}}, {"levels": {"sex": {"maybe": [0.1, 0.1]}}}])
    def test_invalid_levels_fail_when_the_model_is_built(self, bad: dict) -> None:
        with pytest.raises(ModelError):
            MatchModel(MatchSettings.from_json(bad))

    def test_unknown_settings_and_crossed_thresholds_are_rejected(self) -> None:
        with pytest.raises(ValueError):
            MatchSettings.from_json({"link_threshold": 3})
        with pytest.raises(ValueError):
            MatchSettings(link_weight=1, review_weight=2)

    def test_every_level_has_an_explainable_weight(self) -> None:
        table = MODEL.weights_table()
        assert all(w == pytest.approx(math.log2(m / u)) for _, _, m, u, w in table)
        exact = {c: w for c, lvl, _, _, w in table if lvl == "exact"}
        assert exact["family_name"] < exact["given_name"] < exact["birth_date"]  # the surname says little
