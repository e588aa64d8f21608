"""Strict hl7apy conformance checks (connectors.hl7v2.validate), as ``hub validate`` and the listener use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.hl7v2.validate import Problem, validate_message

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hl7" / "corpus"

MSH = "MSH|^~\\&|HIS|79048|HUB|SYT|20260115083000||ADT^A01^ADT_A01|M1|P|2.5"
EVN = "EVN|A01|20260115082512"
PID = "PID|1||CR1^^^79048^MR||Nguyễn^An^Văn||19900512|M"
PV1 = "PV1|1|I|NOI1^P.201"


def msg(*segments: str) -> str:
    return "\r".join(segments)


class TestValidateMessage:
    def test_conformant_message_has_no_problems(self) -> None:
        """A well-formed ADT^A01 gives []: the listener accepts it with validation on."""
        assert validate_message(msg(MSH, EVN, PID, PV1)) == []

    @pytest.mark.parametrize(("segments", "expected"), [
        ((MSH, EVN, "PID|1||CR1^^^79048^MR", PV1),
         Problem("error", "PID", 3, "Missing required child PID.PID_5")),
        ((MSH, EVN, "PID|1||CR1^^^79048^MR||Nguyễn^An||19901341|M", PV1),
         Problem("error", "PID", 3, "ValueError: 19901341 is not an HL7 valid date value")),
        ((MSH, EVN, PID), Problem("error", "message", 0, "Missing required child ADT_A01.PV1")),
        ((MSH.replace("|2.5", "|9.9"), EVN, PID, PV1),
         Problem("error", "MSH", 1, "version 9.9 is not supported by hl7apy (The version 9.9 is not supported)")),
        ((MSH.replace("|2.5", "|"), EVN, PID, PV1), Problem("error", "MSH", 1, "MSH-12 (version id) is empty")),
    ])
    def test_problems_name_segment_and_line(self, segments: tuple[str, ...], expected: Problem) -> None:
        """Each problem names the segment and its 1-based line, or the message for structure problems."""
        assert expected in validate_message(msg(*segments))

    def test_not_hl7(self) -> None:
        """Text without an MSH is one MSH problem, not an exception."""
        problems = validate_message("hello")
        assert [(p.severity, p.segment, p.line) for p in problems] == [("error", "MSH", 1)]

    def test_str_is_what_the_listener_sends_back(self) -> None:
        """str(problem) says where: the listener joins the first three into the AE reason."""
        assert str(Problem("error", "PID", 3, "Missing required child PID.PID_5")) == \
            "PID (segment 3): Missing required child PID.PID_5"
        assert str(Problem("error", "message", 0, "Missing required child ADT_A01.PV1")) == \
            "message: Missing required child ADT_A01.PV1"

    def test_local_codes_are_warnings_only(self) -> None:
        """A Vietnamese identifier type (CX.5 CCCD, not in table 0203) is a warning, so the message conforms."""
        text = msg(MSH, EVN, "PID|1||079090001234^^^BCA^CCCD||Nguyễn^An^Văn||19900512|M", PV1)
        assert validate_message(text) == []
        warnings = validate_message(text, warnings=True)
        assert Problem("warning", "PID", 3, "Value CCCD not in table HL70203 in element PID_3.CX_5") in warnings

    def test_z_segments_are_skipped(self) -> None:
        """Site-defined Z-segments are not checked against the standard."""
        assert validate_message(msg(MSH, EVN, PID, "ZPI|1|Hộ nghèo", PV1)) == []

    def test_lf_separators_and_bom(self) -> None:
        """Segments split on LF or CRLF too, and a BOM is ignored."""
        assert validate_message("\ufeff" + "\n".join((MSH, EVN, PID, PV1))) == []
        assert validate_message("\r\n".join((MSH, EVN, PID, PV1))) == []

    def test_every_problem_is_reported_not_only_the_first(self) -> None:
        """Two broken segments give two problems (hl7apy alone stops at the first)."""
        text = msg(MSH, EVN, "PID|1||CR1^^^79048^MR", "PV1|1|I|||||||||||||||||||||||||||||||||||||||||||2026133")
        problems = validate_message(text)
        assert {(p.segment, p.line) for p in problems} >= {("PID", 3), ("PV1", 4)}

    @pytest.mark.parametrize("name", ["adt_a01_full_dg1_al1_pr1_obx_nk1", "oru_r01_cbc_10_obx", "vxu_v04_covid_dose2",
                                      "oml_o21_lab", "rds_o13_dispense", "ppr_pc1_diabetes", "adt_a40_merge"])
    def test_corpus_messages_that_conform(self, name: str) -> None:
        """Careful messages of several types conform to their version's structure."""
        assert validate_message((CORPUS / f"{name}.hl7").read_text(encoding="utf-8")) == []

    def test_corpus_defect_found(self) -> None:
        """A v2.3 OBR without OBR-27 (required in 2.3) is reported on its line."""
        problems = validate_message((CORPUS / "oru_r01_v23_lf.hl7").read_text(encoding="utf-8"))
        assert problems == [Problem("error", "OBR", 3, "Missing required child OBR.OBR_27")]
