"""HL7 v2 helpers added for the clinical messages: CWE/CE, XCN, NM and quantities, simple fields, the memo,
and the new code maps (tables of data with defaults; unmapped codes pass through)."""

from __future__ import annotations

import json

import pytest

from connectors.hl7v2 import maps
from connectors.hl7v2.datatypes import (
    UCUM, coded, cwe, memo, number, quantity, simple, units, xcn,
)
from connectors.hl7v2.maps import MAPS, UNMAPPED
from connectors.hl7v2.parse import Segment, Separators, parse

SEPS = Separators()
LOINC = "http://loinc.org"


class TestCwe:
    @pytest.mark.parametrize(("rep", "expected"), [
        ("", None),
        ("^^", None),
        ("2345-7^Glucose^LN", {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}], "text": "Glucose"}),
        ("K35.8", {"coding": [{"code": "K35.8"}]}),
        ("^Sữa bò", {"text": "Sữa bò"}),
        ("GLU^Đường huyết^99BD", {"coding": [{"system": "urn:hssk:hl7v2:code-system:99BD", "code": "GLU",
                                             "display": "Đường huyết"}], "text": "Đường huyết"}),
        ("A^Alpha^LN^B^Beta^SCT", {"coding": [{"system": LOINC, "code": "A", "display": "Alpha"},
                                              {"system": "http://snomed.info/sct", "code": "B", "display": "Beta"}],
                                   "text": "Alpha"}),
        ("X^Y^LN^^^^^^Văn bản gốc", {"coding": [{"system": LOINC, "code": "X", "display": "Y"}],
                                     "text": "Văn bản gốc"}),
        ("A\\T\\B^Cả \\F\\ hai^LN", {"coding": [{"system": LOINC, "code": "A&B", "display": "Cả | hai"}],
                                     "text": "Cả | hai"}),
    ])
    def test_cwe(self, rep: str, expected: dict | None) -> None:
        """Identifier and alternate triplets become codings (CWE.3/.6 mapped to URIs), text from CWE.9 or a display."""
        assert cwe(rep, SEPS) == expected

    def test_unknown_coding_system_passes_through_and_is_counted(self) -> None:
        before = UNMAPPED[("coding_system", "99ZZTEST")]
        assert cwe("C1^D^99ZZTEST", SEPS)["coding"][0]["system"] == "urn:hssk:hl7v2:code-system:99ZZTEST"
        assert UNMAPPED[("coding_system", "99ZZTEST")] == before + 1

    def test_coded_falls_back_to_the_v2_table(self) -> None:
        """A flag the interpretation map lacks keeps its code in HL7 table 0078."""
        assert coded(MAPS.interpretation("H"), "H", "0078")["code"] == "H"
        assert coded(MAPS.interpretation("QQ"), "QQ", "0078") == {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0078", "code": "QQ"}


class TestXcn:
    @pytest.mark.parametrize(("rep", "expected"), [
        ("", None),
        ("BS0456^Phạm^Khánh^Minh^^BS.", {"identifier": {"system": "http://fhir.ehealth.gov.vn/core/sid/practitioner/79048",
                                                      "value": "BS0456"}, "display": "BS. Phạm Minh Khánh"}),
        ("^Trần^Hải", {"display": "Trần Hải"}),
        ("D1^^^^^^^^FV HOSP", {"identifier": {"system": "http://fhir.ehealth.gov.vn/core/sid/practitioner/FV%20HOSP",
                                              "value": "D1"}}),
    ])
    def test_xcn(self, rep: str, expected: dict | None) -> None:
        """A clinician is a Reference by identifier (scoped by XCN.9, else the facility) and display."""
        assert xcn(rep, SEPS, "79048") == expected


class TestNumbers:
    @pytest.mark.parametrize(("text", "value"), [
        ("12", 12), ("12.50", 12.5), ("-0.3", -0.3), ("+4", 4), (".5", 0.5), (" 7 ", 7),
        ("", None), ("vết", None), ("1,5", None), ("1e3", None), ("12.4.1", None),
    ])
    def test_number(self, text: str, value: float | None) -> None:
        """NM values become JSON numbers (int without a decimal point); anything else is not a number."""
        assert number(text) == value
        assert type(number(text)) is type(value)

    @pytest.mark.parametrize(("value", "unit_rep", "expected"), [
        ("5.4", "mmol/L^^UCUM", {"value": 5.4, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}),
        ("5.4", "mmol/l", {"value": 5.4, "unit": "mmol/l"}),
        ("<20", "", {"value": 20, "comparator": "<"}),
        (">=11.3", "", {"value": 11.3, "comparator": ">="}),
        ("trace", "mg", None),
    ])
    def test_quantity(self, value: str, unit_rep: str, expected: dict | None) -> None:
        """A unit is coded UCUM only when the sender says UCUM; comparators are kept."""
        assert quantity(value, unit_rep, SEPS) == expected

    def test_units_text_when_no_code(self) -> None:
        assert units("^viên", SEPS) == {"unit": "viên"}


class TestSimple:
    @pytest.mark.parametrize(("field", "expected"), [("F", "F"), ("", ""), ('""', ""), ("A^B", "A"), ("X\\T\\Y", "X&Y"),
                                                    ("R1~R2", "R1"), (" P ", "P")])
    def test_simple(self, field: str, expected: str) -> None:
        """A simple field reads as its first component, unescaped; the HL7 null is empty."""
        assert simple(Segment(f"OBX|{field}", SEPS), 1) == expected


class TestMemo:
    def test_results_are_copies(self) -> None:
        """Callers may change what a memoised helper returns without changing the next answer."""
        calls = []

        @memo
        def build(text: str) -> dict:
            calls.append(text)
            return {"a": [text], "b": {"c": 1}}

        first = build("x")
        first["a"].append("y")
        first["b"]["c"] = 2
        assert build("x") == {"a": ["x"], "b": {"c": 1}}
        assert calls == ["x"]

    def test_separators_are_interned(self) -> None:
        """Messages with the same MSH-2 share one Separators object (the memo keys on it by identity)."""
        a = parse("MSH|^~\\&|A|1")
        b = parse("MSH|^~\\&|B|2")
        c = parse("MSH|^~\\#|C|3")
        assert a.seps is b.seps
        assert c.seps is not a.seps and c.seps.subcomponent == "#"


class TestNewMaps:
    def test_coding_tables_need_a_system(self, tmp_path) -> None:
        """A Coding table without its code system is rejected at load time."""
        data = json.loads(maps.MAPS_PATH.read_text(encoding="utf-8"))
        data["interpretation"].pop("system")
        path = tmp_path / "maps.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ValueError, match="'interpretation' needs a 'system'"):
            maps.load(path)

    @pytest.mark.parametrize(("table", "code", "expected"), [
        ("observation_status", "F", "final"), ("observation_status", "ZZ", "unknown"),
        ("report_status", "C", "corrected"), ("report_status", "", "unknown"),
        ("immunization_status", "RE", "not-done"), ("immunization_status", "XX", "completed"),
        ("allergy_category", "DA", "medication"), ("allergy_category", "MA", None),
        ("allergy_criticality", "SV", "high"), ("document_availability", "OB", "superseded"),
        ("document_status", "LA", "final"), ("appointment_status", "Noshow", "noshow"),
        ("appointment_status", "", "booked"), ("condition_clinical", "R", "resolved"),
        ("section_category", "RAD", "imaging"), ("section_category", "HM", "laboratory"),
        ("coding_system", "I10", "http://hl7.org/fhir/sid/icd-10"), ("coding_system", "CVX", "http://hl7.org/fhir/sid/cvx"),
    ])
    def test_values(self, table: str, code: str, expected: object) -> None:
        """Each table maps its codes and has a default for the rest."""
        assert getattr(MAPS, table)(code) == expected

    def test_order_status_by_status_then_control(self) -> None:
        assert MAPS.order_status("CM") == {"service": "completed", "medication": "completed"}
        assert MAPS.order_status("control:DC") == {"service": "revoked", "medication": "stopped"}
        assert MAPS.order_status("control:??") == {"service": "unknown", "medication": "unknown"}


class TestReadHeader:
    @pytest.mark.parametrize("text", [
        "MSH|^~\\&|A\\S\\B^x|F\\T\\1|R|RF|20260101||AD\\F\\T^A\\E\\01^ST|C1^x|P|2.5|||AL|NE||UNICODE UTF-8",
        "MSH|^~\\&",
        "MSH|^~\\&|||||||ADT|",
        "MSH|^~\\&|||||||^^^^|M1",
    ])
    def test_same_as_reading_each_component(self, text: str) -> None:
        """The one-pass MSH reader gives what Segment.component gives field by field (escapes resolved)."""
        from connectors.hl7v2.parse import read_header

        msh = parse(text).msh
        header = read_header(parse(text))
        for field, n, c in (("sending_application", 3, 1), ("sending_facility", 4, 1), ("message_code", 9, 1),
                            ("trigger", 9, 2), ("structure", 9, 3), ("control_id", 10, 1), ("version", 12, 1),
                            ("accept_ack_type", 15, 1), ("app_ack_type", 16, 1), ("charset", 18, 1)):
            assert getattr(header, field) == msh.component(n, c), field
