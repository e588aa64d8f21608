"""Normalisation of what sources write: Vietnamese names, phones, birth dates, addresses and identifiers."""

from __future__ import annotations

import unicodedata

import pytest

from hub.identity import identifiers as ids
from hub.identity import normalize as norm


class TestNames:
    @pytest.mark.parametrize(("text", "family", "middle", "given"), [
        ("Nguyễn Thị Bích Ngọc", "nguyễn", "thị bích", "ngọc"),
        ("NGUYỄN VĂN AN", "nguyễn", "văn", "an"),
        ("  Trần   Hữu  Phúc ", "trần", "hữu", "phúc"),
        (unicodedata.normalize("NFD", "Đặng Thị Thu Hà"), "đặng", "thị thu", "hà"),
        ("Lê Hòa", "lê", "", "hoà"),  # old tone placement becomes new: hòa = hoà
        ("Khuê", "", "", "khuê"),
        ("", "", "", ""),
    ])
    def test_split_family_middle_given(self, text: str, family: str, middle: str, given: str) -> None:
        """Family first, given last, everything between is the middle name; NFC, lower case."""
        name = norm.parse_name(text)
        assert (family, middle, given) == (name.family, name.middle, name.given)

    @pytest.mark.parametrize(("a", "b"), [
        ("Nguyễn Thị Hòa", "Nguyễn Thị Hoà"),
        ("Huỳnh Văn Thủy", "Huỳnh Văn Thuỷ"),
        ("Võ Thị Khỏe", "Võ Thị Khoẻ"),
        ("Phạm Ngọc Ánh", unicodedata.normalize("NFD", "PHẠM NGỌC ÁNH")),
    ])
    def test_the_same_name_written_two_ways_is_equal_with_diacritics(self, a: str, b: str) -> None:
        assert norm.parse_name(a) == norm.parse_name(b)

    def test_closed_syllables_keep_their_tone(self) -> None:
        """Only open oa/oe/uy syllables differ between old and new placement; "hoàng" and "của" do not move."""
        assert norm.nfc("Hoàng của mùa") == "hoàng của mùa"

    @pytest.mark.parametrize(("text", "ascii_full"), [
        ("Đỗ Đức Định", "do duc dinh"),
        ("NGUYEN THI BICH NGOC", "nguyen thi bich ngoc"),
        ("Huỳnh Thị Lan", "hoang thi lan"),  # regional variant key: Huỳnh = Hoàng
        ("Võ Văn Kiệt", "vu van kiet"),  # Võ = Vũ
        (unicodedata.normalize("NFD", "Bùi Ưng Ơn"), "bui ung on"),
    ])
    def test_ascii_keys(self, text: str, ascii_full: str) -> None:
        assert norm.parse_name(text).full_ascii == ascii_full

    @pytest.mark.parametrize("text", ["Con của Trần Thị Lan", "CB Trần Thị Lan", "con ba TRAN THI LAN"])
    def test_newborn_rows_under_the_mothers_name_are_recognised(self, text: str) -> None:
        name = norm.parse_name(text)
        assert name.newborn_alias and name.given_ascii == "lan" and name.family_ascii == "tran"


class TestPhones:
    @pytest.mark.parametrize(("text", "expected"), [
        ("0912345678", "0912345678"),
        ("+84 912 345 678", "0912345678"),
        ("84912345678", "0912345678"),
        ("0084912345678", "0912345678"),
        ("0912.345.678", "0912345678"),
        ("912345678", "0912345678"),
        ("01623456789", "0323456789"),  # Viettel 0162 became 032 in 2018
        ("01203456789", "0703456789"),  # MobiFone 0120 became 070
        ("12345", ""),
        ("", ""),
    ])
    def test_normalised_to_ten_national_digits(self, text: str, expected: str) -> None:
        assert norm.phone(text) == expected


class TestBirthDates:
    @pytest.mark.parametrize(("text", "expected"), [
        ("20/02/1985", (1985, 2, 20)),
        ("1985-02-20", (1985, 2, 20)),
        ("19850220", (1985, 2, 20)),
        ("00/00/1985", (1985, 0, 0)),
        ("00/05/1985", (1985, 5, 0)),  # day unknown, month known
        ("29/02/2024", (2024, 2, 29)),
        ("", (0, 0, 0)),
    ])
    def test_layouts(self, text: str, expected: tuple[int, int, int]) -> None:
        assert norm.birth_date(text) == expected

    @pytest.mark.parametrize("text", ["31/02/1985", "29/02/2023", "1985/02/20", "20-13-1985", "12/00/1985", "x"])
    def test_impossible_or_unknown_layouts_raise(self, text: str) -> None:
        with pytest.raises(norm.BadDate):
            norm.birth_date(text)


class TestAddresses:
    def test_abbreviations_and_the_city_do_not_matter(self) -> None:
        a = norm.address_tokens("12 Ng. Trãi, P. Bến Thành, TP.HCM")
        b = norm.address_tokens("12 Nguyễn Trãi, Phường Bến Thành, Thành phố Hồ Chí Minh")
        assert a == b == {"12", "nguyen", "trai", "phuong", "ben", "thanh"}


class TestSex:
    @pytest.mark.parametrize(("text", "expected"), [("Nam", "M"), ("1", "M"), ("Nữ", "F"), ("NU", "F"), ("2", "F"),
                                                    ("Khác", ""), ("3", ""), ("", "")])
    def test_codes(self, text: str, expected: str) -> None:
        assert norm.sex(text) == expected


class TestIdentifiers:
    @pytest.mark.parametrize(("text", "expected"), [
        ("079185004321", ids.PersonalIds(cccd="079185004321")),
        ("079 185 004 321", ids.PersonalIds(cccd="079185004321")),
        ("025123456", ids.PersonalIds(cmnd="025123456")),
        ("b1234567", ids.PersonalIds(passport="B1234567")),
        ("07918500432", ids.PersonalIds()),  # 11 digits: a mistyped CCCD is no identifier
        ("", ids.PersonalIds()),
    ])
    def test_untyped_personal_id_field(self, text: str, expected: ids.PersonalIds) -> None:
        assert ids.classify_personal_id(text) == expected

    @pytest.mark.parametrize(("text", "expected"), [
        ("DN4797912345678", "7912345678"),  # 15-character card: the last 10 digits
        ("HS4797912345678", "7912345678"),  # pupil card, same person: same number
        ("7912345678", "7912345678"),  # bare BHXH number (cards since 2021)
        ("xx;GD4797912345678", "7912345678"),  # several cards joined by ;
        ("DN47979123", ""),
    ])
    def test_bhxh_number(self, text: str, expected: str) -> None:
        assert ids.bhxh_number(text) == expected

    @pytest.mark.parametrize(("cccd", "sex", "year", "conflicts"), [
        ("079185004321", "F", 1985, ()),  # 1 = female, 1900s; 85
        ("079085004321", "M", 1985, ()),
        ("079225004321", "M", 2025, ()),  # 2 = male, 2000s
        ("079325004321", "F", 2025, ()),
        ("079185004321", "M", 1985, ("cccd_sex",)),
        ("079185004321", "F", 2025, ("cccd_birth_year",)),  # the mother's number on her newborn's row
        ("079185004321", "", 0, ()),  # nothing to check against
        ("079685004321", "F", 1985, ("cccd_century",)),
    ])
    def test_cccd_consistency_with_the_demographics(self, cccd: str, sex: str, year: int,
                                                    conflicts: tuple[str, ...]) -> None:
        assert ids.cccd_conflicts(cccd, sex, year) == conflicts
