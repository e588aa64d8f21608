"""HL7 v2 data type helpers (TS, CX, XPN, XAD, XTN, PL) and the code maps they use."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from connectors.hl7v2 import maps
from connectors.hl7v2.datatypes import CX, birth_date, cx, pl_text, to_iso, ts_field, xad, xpn, xtn
from connectors.hl7v2.maps import MAPS, UNMAPPED
from connectors.hl7v2.parse import Segment, Separators
from hub.envelope import SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, mrn_system
from hub.errors import TranslateError

SEPS = Separators()


class TestTimestamp:
    @pytest.mark.parametrize(("value", "expected"), [
        ("", None),
        ('""', None),
        ("2026", "2026"),
        ("202601", "2026-01"),
        ("20260115", "2026-01-15"),
        ("20260115+0000", "2026-01-15"),
        ("2026011508", "2026-01-15T08:00:00+07:00"),
        ("202601150830", "2026-01-15T08:30:00+07:00"),
        ("20260115083015", "2026-01-15T08:30:15+07:00"),
        ("20260115083015.1", "2026-01-15T08:30:15.1+07:00"),
        ("20260115083015.1234", "2026-01-15T08:30:15.1234+07:00"),
        ("20260115083015+0700", "2026-01-15T08:30:15+07:00"),
        ("20260115013015+0000", "2026-01-15T01:30:15+00:00"),
        ("202601150830-0530", "2026-01-15T08:30:00-05:30"),
        ("20260115083015.25+1400", "2026-01-15T08:30:15.25+14:00"),
        ("20240229235959", "2024-02-29T23:59:59+07:00"),
    ])
    def test_valid(self, value: str, expected: str | None) -> None:
        """Any precision converts to ISO 8601; dates stay dates, a time always carries an offset (+07:00 if none)."""
        assert to_iso(value, "MSH-7") == expected

    @pytest.mark.parametrize(("value", "why"), [
        ("2026133", "expected YYYY"),
        ("26", "expected YYYY"),
        ("2026-01-15", "expected YYYY"),
        ("2026-01-15T08:30:00", "expected YYYY"),
        ("20260115 0830", "expected YYYY"),
        ("20260115083015.12345", "expected YYYY"),
        ("20260115083015.", "expected YYYY"),
        ("20260115Z", "expected YYYY"),
        ("2026011508301", "expected YYYY"),
        ("0000", "year 0000"),
        ("202613", "month 13"),
        ("20260001", "month 00"),
        ("20260230", "day 30 is not in 2026-02"),
        ("20250229", "day 29 is not in 2025-02"),
        ("20260100", "day 00 is not in 2026-01"),
        ("2026011524", "time out of range"),
        ("202601150860", "time out of range"),
        ("20260115083060", "time out of range"),
        ("20260115083015+1500", "offset +1500"),
        ("20260115083015+0760", "offset +0760"),
        ("20260115083015+1430", "offset +1430"),
        ("٢٠٢٦", "expected YYYY"),
    ])
    def test_invalid(self, value: str, why: str) -> None:
        """An invalid timestamp is a TranslateError naming the field, the value and what is wrong with it."""
        with pytest.raises(TranslateError) as info:
            to_iso(value, "PID-7")
        assert info.value.reason.startswith(f"PID-7: {value!r} is not a valid HL7 timestamp (")
        assert why in info.value.reason

    def test_reason_matches_the_documented_example(self) -> None:
        """The reason reads "PID-7: '2026133' is not a valid HL7 timestamp", then the detail."""
        with pytest.raises(TranslateError, match=r"^PID-7: '2026133' is not a valid HL7 timestamp \("):
            to_iso("2026133", "PID-7")

    @pytest.mark.parametrize(("field", "expected"), [
        ("PV1|1|I||||||||||||||||||||||||||||||||||||||||||20260115082000^S", "2026-01-15T08:20:00+07:00"),
        ("PV1|1|I||||||||||||||||||||||||||||||||||||||||||202601150820~202601160820", "2026-01-15T08:20:00+07:00"),
        ("PV1|1|I", None),
    ])
    def test_field(self, field: str, expected: str | None) -> None:
        """ts_field reads component 1 of the first repetition (v2.3 TS carries a precision component)."""
        assert ts_field(Segment(field, SEPS), 44) == expected

    def test_field_error_names_segment_and_field(self) -> None:
        """Errors from ts_field name the segment and field number."""
        seg = Segment("PV1|1|I||||||||||||||||||||||||||||||||||||||||||20261301", SEPS)
        with pytest.raises(TranslateError, match=r"^PV1-44: '20261301'"):
            ts_field(seg, 44)


class TestBirthDate:
    @pytest.mark.parametrize(("value", "expected"), [
        ("", None),
        ("19900512", "1990-05-12"),
        ("199005120830", "1990-05-12"),
        ("19900512233000-0500", "1990-05-12"),
        ("199005", "1990-05"),
        ("1990", "1990"),
        ("19900000", "1990"),
        ("19900500", "1990-05"),
        ("199000000000", "1990"),
    ])
    def test_valid(self, value: str, expected: str | None) -> None:
        """The date part only, as sent (no offset conversion); Vietnamese 00 day/month reduce the precision."""
        assert birth_date(value, "PID-7") == expected

    @pytest.mark.parametrize(("value", "why"), [
        ("19901312", "month 13"),
        ("19900230", "day 30 is not in 1990-02"),
        ("1990-05-12", "expected YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]"),
        ("0000", "year 0000"),
        ("00000000", "year 0000"),
        ("19901300", "month 13"),
    ])
    def test_invalid(self, value: str, why: str) -> None:
        """An impossible birth date is a TranslateError naming PID-7 and the value as sent."""
        with pytest.raises(TranslateError) as info:
            birth_date(value, "PID-7")
        assert info.value.reason == f"PID-7: {value!r} is not a valid HL7 timestamp ({why})"


class TestCX:
    @pytest.mark.parametrize(("rep", "expected"), [
        ("079090001234^^^BCA^CCCD", CX("079090001234", "BCA", "CCCD")),
        ("CR0012345^^^79048^MR", CX("CR0012345", "79048", "MR")),
        ("CR0012345^^^BV Chợ Rẫy&1.2.3.4&ISO^MR", CX("CR0012345", "BV Chợ Rẫy", "MR")),
        ("BN0456789", CX("BN0456789", "", "")),
        ("A\\T\\B^^^^MR", CX("A&B", "", "MR")),
        (' 123 ^^^""^MR', CX("123", "", "MR")),
        ("", CX("", "", "")),
    ])
    def test_cx(self, rep: str, expected: CX) -> None:
        """CX.1 value, CX.4 assigner (HD namespace id) and CX.5 type; values unescaped and stripped."""
        assert cx(rep, SEPS) == expected


class TestXPN:
    @pytest.mark.parametrize(("rep", "expected"), [
        ("Nguyễn^An^Văn", {"use": "official", "text": "Nguyễn Văn An", "family": "Nguyễn", "given": ["Văn", "An"]}),
        ("Trần&&Trần^Bích Ngọc^Thị^^^^L", {"use": "official", "text": "Trần Thị Bích Ngọc", "family": "Trần",
                                             "given": ["Thị", "Bích Ngọc"]}),
        ("Lê^Phúc^Hoàng", {"use": "official", "text": "Lê Hoàng Phúc", "family": "Lê", "given": ["Hoàng", "Phúc"]}),
        ("Phạm^Hà^Thị Thu^^^^M", {"use": "maiden", "text": "Phạm Thị Thu Hà", "family": "Phạm",
                                  "given": ["Thị Thu", "Hà"]}),
        ("Lê", {"use": "official", "text": "Lê", "family": "Lê"}),
        ("^An", {"use": "official", "text": "An", "given": ["An"]}),
        ("Nguyễn^An^Văn^Jr^BS.", {"use": "official", "text": "Nguyễn Văn An", "family": "Nguyễn",
                                  "given": ["Văn", "An"], "prefix": ["BS."], "suffix": ["Jr"]}),
        ("Đặng^\\X41CC81\\nh^Thị Ngọc", {"use": "official", "text": "Đặng Thị Ngọc Ánh", "family": "Đặng",
                                          "given": ["Thị Ngọc", "Ánh"]}),
        ("", None),
        ("^^^^BS.", None),
    ])
    def test_xpn(self, rep: str, expected: dict | None) -> None:
        """Family^given^middle becomes HumanName with given = [middle, given] and text in spoken order."""
        assert xpn(rep, SEPS) == expected

    def test_text_is_nfc(self) -> None:
        """Names built from decomposed escapes come out NFC (the form decode gives the rest of the message)."""
        name = xpn("Đặng^\\X41CC81\\nh", SEPS)
        assert name is not None
        assert unicodedata.is_normalized("NFC", name["text"])
        assert name["given"] == ["Ánh"]


class TestXAD:
    @pytest.mark.parametrize(("rep", "expected"), [
        ("123 Nguyễn Trãi^Phường Bến Thành^Thành phố Hồ Chí Minh^^700000^VNM^H", {
            "use": "home", "text": "123 Nguyễn Trãi, Phường Bến Thành, Thành phố Hồ Chí Minh",
            "line": ["123 Nguyễn Trãi", "Phường Bến Thành"], "city": "Thành phố Hồ Chí Minh",
            "postalCode": "700000", "country": "VNM"}),
        ("45/2 Lê Văn Sỹ^Phường Nhiêu Lộc^Hồ Chí Minh^Hồ Chí Minh", {
            "text": "45/2 Lê Văn Sỹ, Phường Nhiêu Lộc, Hồ Chí Minh",
            "line": ["45/2 Lê Văn Sỹ", "Phường Nhiêu Lộc"], "city": "Hồ Chí Minh", "state": "Hồ Chí Minh"}),
        ("78 Trần Hưng Đạo^Phường Cầu Ông Lãnh^Hồ Chí Minh^^^VNM^C^^Quận 1", {
            "use": "temp", "text": "78 Trần Hưng Đạo, Phường Cầu Ông Lãnh, Quận 1, Hồ Chí Minh",
            "line": ["78 Trần Hưng Đạo", "Phường Cầu Ông Lãnh"], "city": "Hồ Chí Minh", "district": "Quận 1",
            "country": "VNM"}),
        ("&Lê Lợi&12^^Hồ Chí Minh", {"text": "12 Lê Lợi, Hồ Chí Minh", "line": ["12 Lê Lợi"],
                                      "city": "Hồ Chí Minh"}),
        ("Lô A\\T\\B Chung cư Phú Mỹ", {"text": "Lô A&B Chung cư Phú Mỹ", "line": ["Lô A&B Chung cư Phú Mỹ"]}),
        ("^^^Tỉnh Bình Dương", {"text": "Tỉnh Bình Dương", "state": "Tỉnh Bình Dương"}),
        ("^^^^^^H", None),
        ("", None),
    ])
    def test_xad(self, rep: str, expected: dict | None) -> None:
        """street^ward^city^province^postal^country^type, district from XAD.9; empty addresses give None."""
        assert xad(rep, SEPS) == expected


class TestXTN:
    @pytest.mark.parametrize(("rep", "default_use", "expected"), [
        ("0903123456", "home", {"system": "phone", "value": "0903123456", "use": "home"}),
        ("0903123456^PRN^PH", None, {"system": "phone", "value": "0903123456", "use": "home"}),
        ("0903123456^PRN^CP", None, {"system": "phone", "value": "0903123456", "use": "mobile"}),
        ("^WPN^PH^^84^28^38554137^102", "home",
         {"system": "phone", "value": "+84 28 38554137 ext. 102", "use": "work"}),
        ("^PRN^CP^^84^^912345678", None, {"system": "phone", "value": "+84 912345678", "use": "mobile"}),
        ("^PRN^PH^^^^^^^^^02838554137", None, {"system": "phone", "value": "02838554137", "use": "home"}),
        ("^NET^Internet^ngoc.tran@example.vn", "home", {"system": "email", "value": "ngoc.tran@example.vn",
                                                        "use": "home"}),
        ("^NET^^an@example.vn", None, {"system": "email", "value": "an@example.vn"}),
        ("02838554137^WPN^FX", None, {"system": "fax", "value": "02838554137", "use": "work"}),
        ("^PRN^PH", "home", None),
        ("", None, None),
    ])
    def test_xtn(self, rep: str, default_use: str | None, expected: dict | None) -> None:
        """Numbers are kept as sent (or composed from their parts); cell phones are mobile, NET is e-mail."""
        assert xtn(rep, SEPS, default_use) == expected


class TestPL:
    @pytest.mark.parametrize(("rep", "expected"), [
        ("NOI1^P.201^G.05^79048", "NOI1 / P.201 / G.05"),
        ("CCUU^^^79030", "CCUU"),
        ("SAN\\T\\PK^P.3", "SAN&PK / P.3"),
        ("", ""),
    ])
    def test_pl_text(self, rep: str, expected: str) -> None:
        """Point of care, then room and bed when sent; the facility (PL.4) is not repeated."""
        assert pl_text(rep.split("^"), SEPS) == expected


class TestMaps:
    @pytest.mark.parametrize(("code", "expected"), [
        ("M", "male"), ("F", "female"), ("O", "other"), ("U", "unknown"), ("A", "unknown"), ("N", "unknown"),
        ("X", "unknown"),
    ])
    def test_administrative_sex(self, code: str, expected: str) -> None:
        """PID-8 maps to FHIR gender; codes outside table 0001 get the default, unknown."""
        assert MAPS.administrative_sex(code) == expected

    @pytest.mark.parametrize(("code", "expected"), [
        ("I", "IMP"), ("O", "AMB"), ("E", "EMER"), ("P", "PRENC"), ("R", "AMB"), ("B", "AMB"), ("Z", "AMB"),
    ])
    def test_encounter_class(self, code: str, expected: str) -> None:
        """PV1-2 maps to a v3 ActCode Coding with a display; unknown classes default to AMB."""
        coding = MAPS.encounter_class(code)
        assert coding["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
        assert coding["code"] == expected
        assert coding["display"]

    @pytest.mark.parametrize(("code", "scope", "expected"), [
        ("NNVNM", "79048", SYSTEM_CCCD),
        ("CCCD", "79048", SYSTEM_CCCD),
        ("HC", "79048", SYSTEM_BHYT),
        ("BHYT", "79048", SYSTEM_BHYT),
        ("MR", "79048", mrn_system("79048")),
        ("", "79021", mrn_system("79021")),
        ("MR", "BV Chợ Rẫy", mrn_system("BV%20Ch%E1%BB%A3%20R%E1%BA%ABy")),
        ("PPN", "79048", SYSTEM_PASSPORT),
        ("CMND", "79048", SYSTEM_OLD_ID),
        ("DL", "79048", "urn:hssk:hl7v2:id-type:DL"),
        ("A B", "79048", "urn:hssk:hl7v2:id-type:A%20B"),
    ])
    def test_identifier_system(self, code: str, scope: str, expected: str) -> None:
        """CX.5 picks the naming system; MRNs are scoped; unknown types pass through as a URN (URI-safe)."""
        assert MAPS.identifier_system(code, scope) == expected

    def test_unmapped_codes_are_counted(self) -> None:
        """A code missing from a table is counted by (table, code); mapped codes are not."""
        before_x = UNMAPPED[("administrative_sex", "X")]
        before_m = UNMAPPED[("administrative_sex", "M")]
        before_dl = UNMAPPED[("identifier_type", "DL")]
        MAPS.administrative_sex("X")
        MAPS.administrative_sex("X")
        MAPS.administrative_sex("M")
        MAPS.identifier_system("DL", "79048")
        assert UNMAPPED[("administrative_sex", "X")] == before_x + 2
        assert UNMAPPED[("administrative_sex", "M")] == before_m
        assert UNMAPPED[("identifier_type", "DL")] == before_dl + 1

    def test_every_table_has_a_default(self) -> None:
        """maps.json is data: each table has codes and a default entry."""
        data = json.loads(maps.MAPS_PATH.read_text(encoding="utf-8"))
        for name, table in data.items():
            assert "default" in table, name
            assert isinstance(table["codes"], dict), name

    @pytest.mark.parametrize(("mutate", "message"), [
        (lambda d: d.pop("telecom_use"), "table 'telecom_use' needs 'codes' and a 'default' entry"),
        (lambda d: d["name_use"].pop("default"), "table 'name_use' needs 'codes' and a 'default' entry"),
        (lambda d: d["identifier_type"]["codes"].update(X="SYSTEM_NOPE"), "'SYSTEM_NOPE' is neither"),
        (lambda d: d["identifier_type"].update(default="urn:fixed"), "template containing {code}"),
        (lambda d: d["encounter_class"]["codes"].update(X={"code": "AMB"}), "needs a code and a display"),
        (lambda d: d["encounter_class"].pop("system"), "needs a 'system'"),
    ])
    def test_load_rejects_malformed_maps(self, tmp_path: Path, mutate, message: str) -> None:
        """A malformed maps file fails at load (start-up) with a reason, not on some later message."""
        data = json.loads(maps.MAPS_PATH.read_text(encoding="utf-8"))
        mutate(data)
        path = tmp_path / "maps.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
            maps.load(path)
