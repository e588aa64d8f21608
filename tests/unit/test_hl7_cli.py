"""``hub translate`` and ``hub validate``: offline, files in, JSON lines / a report out, exit codes."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import orjson
import pytest

from connectors.hl7v2.offline import translate_files, validate_files
from hub.cli import build_parser
from hub.settings import Settings

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hl7" / "corpus"
RECEIVED_AT = "2026-03-05T10:00:00.000+07:00"


def run_translate(*paths: Path | str, charset: str = "utf-8") -> tuple[int, list[dict], list[str]]:
    out, err = io.StringIO(), io.StringIO()
    status = translate_files([str(p) for p in paths], charset=charset, received_at=RECEIVED_AT, out=out, err=err)
    return status, [orjson.loads(line) for line in out.getvalue().splitlines()], err.getvalue().splitlines()


def hub(*argv: str) -> int:
    """Run a `hub` subcommand as main() does, minus logging setup (it would bind the test's captured stdout)."""
    args = build_parser().parse_args(list(argv))
    return args.func(Settings.from_env(), args)


def to_windows_1258(text: str) -> bytes:
    """Windows-1258 as legacy systems write it: base letters precomposed, tone marks combining."""
    tones = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}
    out = []
    for ch in unicodedata.normalize("NFC", text):
        decomposed = unicodedata.normalize("NFD", ch)
        out.append(unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in tones))
                   + "".join(c for c in decomposed if c in tones))
    return "".join(out).encode("cp1258")


@pytest.fixture()
def batch(tmp_path: Path) -> Path:
    """A file with three messages (LF separated, BOM first, in an FHS/BHS batch), the second unsupported."""
    parts = [(CORPUS / "adt_a01_lf_separators.hl7").read_bytes().decode(),
             (CORPUS / "rejected" / "adt_a09_unsupported.hl7").read_bytes().decode().replace("\r", "\n"),
             (CORPUS / "oru_r01_hiv_test.hl7").read_bytes().decode().replace("\r", "\n")]
    path = tmp_path / "batch.hl7"
    path.write_bytes(("\ufeffFHS|^~\\&|HIS\nBHS|^~\\&|HIS\n" + "".join(parts) + "BTS|3\nFTS|1\n").encode())
    return path


class TestTranslate:
    def test_events_on_stdout_failures_on_stderr(self, batch: Path) -> None:
        """Every event of every message is one JSON line; a failed message is reported and the rest go on."""
        status, events, errors = run_translate(batch)
        assert status == 0
        assert [e["type"] for e in events] == ["patient.updated", "encounter.recorded", "report.recorded",
                                               "observation.recorded", "observation.recorded"]
        assert {e["recorded_at"] for e in events} == {RECEIVED_AT}
        assert errors == [f"{batch}: message 2 (CR-REJ-1): translate: unsupported message type ADT^A09"]

    def test_unreadable_file_is_the_only_failure_status(self, batch: Path, tmp_path: Path) -> None:
        """A missing file or one that is not text in the charset gives exit 2; the other files still print."""
        bad = tmp_path / "bad.hl7"
        bad.write_bytes(b"MSH|^~\\&|X|79048\xff\xfe\r")
        status, events, errors = run_translate(tmp_path / "missing.hl7", bad, batch)
        assert status == 2
        assert len(events) == 5
        assert errors[0].startswith(f"{tmp_path / 'missing.hl7'}: cannot read: ")
        assert errors[1] == f"{bad}: cannot read: bytes 16-17 are not valid utf-8"

    def test_mllp_capture(self, tmp_path: Path) -> None:
        """A file captured from an MLLP stream (0x0B ... 0x1C 0x0D per message) translates message by message."""
        one = (CORPUS / "adt_a04_emergency.hl7").read_bytes()
        two = (CORPUS / "vxu_v04_covid_dose2.hl7").read_bytes()
        path = tmp_path / "capture.bin"
        path.write_bytes(b"\x0b" + one + b"\x1c\r\x0b" + two + b"\x1c\r")
        status, events, errors = run_translate(path)
        assert (status, errors) == (0, [])
        assert [e["type"] for e in events] == ["patient.updated", "encounter.recorded", "immunization.recorded"]

    def test_charset(self, tmp_path: Path) -> None:
        """--charset decodes legacy files (Windows-1258) before translating."""
        path = tmp_path / "cp1258.hl7"
        text = (CORPUS / "adt_a04_crlf_separators.hl7").read_text(encoding="utf-8")
        path.write_bytes(to_windows_1258(text))
        assert run_translate(path)[0] == 2  # not UTF-8
        status, events, _ = run_translate(path, charset="windows-1258")
        assert status == 0
        assert events[0]["payload"]["name"][0]["text"] == "Lâm Thị Diệu"

    def test_hub_command(self, batch: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`hub translate FILE --received-at T` is wired to the same function."""
        assert hub("translate", str(batch), "--received-at", RECEIVED_AT) == 0
        captured = capsys.readouterr()
        assert len(captured.out.splitlines()) == 5
        assert "unsupported message type ADT^A09" in captured.err


class TestValidate:
    def test_report(self, batch: Path) -> None:
        """One verdict line per message, then its problems; exit 1 when a message has errors."""
        out, err = io.StringIO(), io.StringIO()
        status = validate_files([str(batch)], charset="utf-8", warnings=False, out=out, err=err)
        lines = out.getvalue().splitlines()
        assert lines[0] == f"{batch}: message 1 (ND1-7781): OK"
        assert lines[1].startswith(f"{batch}: message 2 (CR-REJ-1): ")
        assert f"{batch}: message 3 (NDTP-LAB-09): OK" in lines
        assert status == 1
        assert err.getvalue() == ""

    def test_all_conformant_is_zero(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        assert validate_files([str(CORPUS / "vxu_v04_covid_dose2.hl7")], charset="utf-8", warnings=False,
                              out=out, err=err) == 0

    def test_unreadable(self, tmp_path: Path) -> None:
        out, err = io.StringIO(), io.StringIO()
        assert validate_files([str(tmp_path / "nope.hl7")], charset="utf-8", warnings=False, out=out, err=err) == 2
        assert "cannot read" in err.getvalue()

    def test_hub_command_with_warnings(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`hub validate --warnings` lists warnings (e.g. local code values) under a conformant verdict."""
        assert hub("validate", "--warnings", str(CORPUS / "adt_a01_lf_separators.hl7")) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].endswith("(ND1-7781): OK")
        assert "  warning PID (segment 3): Value CCCD not in table HL70203 in element PID_3.CX_5" in out
