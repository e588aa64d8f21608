"""Vaccination registry CSV: reading rows (bad ones reported by line, the rest kept) and mapping each dose to
a Patient and an Immunization that validate with the FHIR R4B models."""

from __future__ import annotations

import csv
import io
import unicodedata

import pytest
from fhir.resources.R4B.immunization import Immunization
from fhir.resources.R4B.patient import Patient

from connectors.registry import COLUMNS, BadRow, RegistryFormatError, Row, iter_values, read_rows, translate_row
from hub.envelope import SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID
from hub.errors import TranslateError

HEADER = ",".join(COLUMNS)
RECEIVED = "2026-12-01T08:00:00.000+07:00"


def row(**overrides: str) -> dict[str, str]:
    fields = {
        "record_id": "R-0001", "ho_ten": "Nguyễn Thị Bích Ngọc", "ngay_sinh": "20/02/1985", "gioi_tinh": "Nữ",
        "so_cccd": "079185004321", "so_bhyt": "DN4797914581234", "so_dien_thoai": "0918765432",
        "dia_chi": "12 Lê Lợi, P. Bến Thành", "ma_xa": "26734", "ma_vaccine": "AZ", "ten_vaccine": "AstraZeneca",
        "so_lo": "A1234", "mui_thu": "2", "ngay_tiem": "15/08/2021 09:30", "ma_co_so": "79033",
    }
    return {**fields, **overrides}


def rows(text: str) -> list[Row | BadRow]:
    return list(read_rows(io.StringIO(text, newline="")))


class TestReading:
    def test_good_rows_with_bom_and_quoted_commas(self) -> None:
        text = ("\ufeff" + HEADER + "\n"
                'R1,Trần Văn Đức,01/01/1960,Nam,079060001111,,,"5 Nguyễn Huệ, P. Sài Gòn",26740,PF,Pfizer,L1,1,'
                "02/07/2021,79001\n")
        [only] = rows(text)
        assert isinstance(only, Row) and only.line == 2
        assert only.fields["dia_chi"] == "5 Nguyễn Huệ, P. Sài Gòn" and only.fields["ma_co_so"] == "79001"

    def test_bad_rows_are_reported_by_line_and_the_rest_continues(self) -> None:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(row().values())
        good = out.getvalue()
        text = "\n".join([HEADER, good, "R2,too,few", good, good.replace("R-0001", ""), ""])
        out = rows(text)
        assert [type(r).__name__ for r in out] == ["Row", "BadRow", "BadRow", "BadRow"]
        assert [(r.line, r.reason) for r in out if isinstance(r, BadRow)] == [
            (3, "expected 15 columns, found 3"), (4, "record_id repeats an earlier row"), (5, "record_id is empty")]
        assert out[1].original == b"R2,too,few\n"

    def test_repeats_are_looked_for_in_a_bounded_window_of_recent_ids(self) -> None:
        """A record id repeating one of the last ``repeat_window`` rows is a bad row; one further back (at
        least twice the window) is read again (its events have the same ids, so it changes nothing)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        ids = [f"R{i}" for i in range(10)] + ["R9", "R5"] + [f"S{i}" for i in range(20)] + ["R0"]
        for rid in ids:
            writer.writerow(row(record_id=rid).values())
        items = list(iter_values(io.StringIO(out.getvalue(), newline=""), repeat_window=5))
        assert [(r.line, r.reason) for r in items if isinstance(r, BadRow)] == [
            (12, "record_id repeats an earlier row"), (13, "record_id repeats an earlier row")]
        assert items[-1][1][0] == "R0"  # type: ignore[index]

    def test_a_file_with_another_header_is_refused_whole(self) -> None:
        with pytest.raises(RegistryFormatError):
            rows("id,name\n1,Lê Văn Tám\n")


class TestMapping:
    def test_one_dose_becomes_a_valid_patient_and_immunization(self) -> None:
        nfd = unicodedata.normalize("NFD", "Nguyễn Thị Bích Ngọc")
        result = translate_row(row(ho_ten=nfd), received_at=RECEIVED)
        patient, shot = (e.payload for e in result.events)
        Patient.model_validate(patient)
        Immunization.model_validate(shot)
        assert [e.type for e in result.events] == ["patient.updated", "immunization.recorded"]
        assert patient["name"][0] == {"use": "official", "text": "Nguyễn Thị Bích Ngọc", "family": "Nguyễn",
                                      "given": ["Thị", "Bích", "Ngọc"]}
        assert patient["gender"] == "female" and patient["birthDate"] == "1985-02-20"
        assert patient["identifier"] == [{"system": SYSTEM_CCCD, "value": "079185004321"},
                                         {"system": SYSTEM_BHYT, "value": "DN4797914581234"},
                                         {"system": SYSTEM_BHXH, "value": "7914581234"}]
        assert shot["occurrenceDateTime"] == "2021-08-15T09:30:00+07:00"
        assert shot["lotNumber"] == "A1234" and shot["protocolApplied"] == [{"doseNumberPositiveInt": 2}]
        assert shot["vaccineCode"]["coding"][0]["code"] == "AZ"
        assert shot["patient"]["reference"] == f"Patient/{patient['id']}"
        assert result.events[0].subject.family == "Nguyễn" and result.events[0].occurred_at == "2021-08-15T09:30:00+07:00"

    def test_translation_is_deterministic(self) -> None:
        first = translate_row(row(), received_at=RECEIVED)
        again = translate_row(row(), received_at=RECEIVED)
        assert [e.to_json() for e in first.events] == [e.to_json() for e in again.events]

    @pytest.mark.parametrize("text, expected", [
        ("00/00/1950", "1950"), ("00/07/1950", "1950-07"), ("1950-07-03", "1950-07-03"), ("", None)])
    def test_birth_dates_keep_the_precision_that_is_known(self, text: str, expected: str | None) -> None:
        patient = translate_row(row(ngay_sinh=text), received_at=RECEIVED).events[0].payload
        assert patient.get("birthDate") == expected
        Patient.model_validate(patient)

    @pytest.mark.parametrize("overrides, reason", [
        ({"ngay_tiem": "31/02/2021"}, "ngay_tiem: impossible date"),
        ({"ngay_tiem": "2021-08-15"}, "ngay_tiem: not dd/mm/yyyy"),
        ({"ngay_tiem": "15/08/2021 25:00"}, "ngay_tiem: impossible time"),
        ({"ngay_sinh": "30/02/1990"}, "ngay_sinh: impossible date"),
        ({"ngay_sinh": "12/00/1990"}, "ngay_sinh: a day without a month"),
        ({"mui_thu": "hai"}, "mui_thu: dose number"),
        ({"ma_vaccine": ""}, "ma_vaccine: vaccine code missing"),
        ({"ma_co_so": ""}, "ma_co_so: vaccination site missing"),
    ])
    def test_rows_that_cannot_be_mapped_name_the_column(self, overrides: dict[str, str], reason: str) -> None:
        with pytest.raises(TranslateError) as caught:
            translate_row(row(**overrides), received_at=RECEIVED)
        assert caught.value.reason.startswith(reason)

    def test_identifier_shapes(self) -> None:
        old = translate_row(row(so_cccd="025123456", so_bhyt="7914581234"), received_at=RECEIVED)
        assert old.events[0].payload["identifier"] == [{"system": SYSTEM_OLD_ID, "value": "025123456"},
                                                       {"system": SYSTEM_BHXH, "value": "7914581234"}]
        typo = translate_row(row(so_cccd="07918500432", so_bhyt="DN47979"), received_at=RECEIVED)
        assert "identifier" not in typo.events[0].payload and typo.dropped == ("so_cccd", "so_bhyt")

    def test_sex_codes(self) -> None:
        for code, gender in (("1", "male"), ("Nam", "male"), ("2", "female"), ("3", "other"), ("?", "unknown")):
            assert translate_row(row(gioi_tinh=code), received_at=RECEIVED).events[0].payload["gender"] == gender
