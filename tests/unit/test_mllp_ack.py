"""ACK building: swapped sender/receiver, MSA-2 echoing MSH-10, ERR with the reason, enhanced-mode rules."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors.hl7v2.parse import decode, parse, read_header
from connectors.mllp.ack import ERR_INTERNAL, AckDecision, ack_code, build_ack, should_send

ORIGINAL = "MSH|^~\\&|HIS_CHORAY|79048|HSSK|SYT_HCM|20261122083000||ADT^A01^ADT_A01|MSG-7|P|2.5\rPID|1\r"
ENHANCED = "MSH|^~\\&|HIS|79033|HSSK|SYT|20261122||ADT^A04|E-1|P|2.5|||{accept}|NE\r"


def header(text: str):
    return read_header(parse(decode(text.encode())))


def test_ack_swaps_parties_and_echoes_control_id() -> None:
    """MSH-3/4 of the ACK are the original MSH-5/6 and vice versa; MSA-2 is the original MSH-10."""
    ack = parse(decode(build_ack(header(ORIGINAL), AckDecision("AA"), now=datetime(2026, 1, 1, tzinfo=timezone.utc))))
    msh = ack.msh
    assert (msh[3], msh[4], msh[5], msh[6]) == ("HSSK", "SYT_HCM", "HIS_CHORAY", "79048")
    assert msh[9] == "ACK^A01^ACK"
    assert (ack.first("MSA")[1], ack.first("MSA")[2]) == ("AA", "MSG-7")
    assert ack.first("ERR") is None


def test_nak_carries_err_with_escaped_reason() -> None:
    """The ERR segment gives a table-0357 code and the reason, with HL7 delimiters escaped."""
    decision = AckDecision("AR", "storage down | retry", ERR_INTERNAL)
    ack = parse(decode(build_ack(header(ORIGINAL), decision)))
    err = ack.first("ERR")
    assert err.component(3, 1) == "207"
    assert err.component(8, 1) == "storage down | retry"
    assert ack.first("MSA").component(3, 1) == "storage down | retry"


def test_ack_without_a_readable_header_still_answers() -> None:
    ack = parse(decode(build_ack(None, AckDecision("AE", "no MSH", ERR_INTERNAL))))
    assert ack.first("MSA")[1] == "AE"


@pytest.mark.parametrize("accept, success, expected", [
    ("AL", True, True), ("AL", False, True), ("NE", True, False), ("NE", False, False),
    ("ER", True, False), ("ER", False, True), ("SU", True, True), ("SU", False, False),
])
def test_enhanced_mode_rules(accept: str, success: bool, expected: bool) -> None:
    h = header(ENHANCED.format(accept=accept))
    code = ack_code(h, "accept" if success else "reject")
    assert code == ("CA" if success else "CR")
    assert should_send(h, AckDecision(code)) is expected


def test_original_mode_codes() -> None:
    h = header(ORIGINAL)
    assert [ack_code(h, o) for o in ("accept", "error", "reject")] == ["AA", "AE", "AR"]
    assert should_send(h, AckDecision("AE"))
