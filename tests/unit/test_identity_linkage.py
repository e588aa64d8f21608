"""Batch linkage, the synthetic population, the evaluation maths, the registry reader and the commands."""

from __future__ import annotations

import argparse
import csv
import io

import pytest

from hub.envelope import SYSTEM_CCCD
from hub.identity.commands import add_identity_commands
from hub.identity.evaluate import pairwise
from hub.identity.linkage import citizen_ids, link, link_prepared
from hub.identity.population import COLUMNS, PopulationGenerator, write
from hub.identity.records import SourceRecord, prepare
from hub.identity.registry import BadRow, RegistryFormatError, read_records
from hub.pseudonym import citizen_id_for
from hub.settings import Settings

ADDRESS = "12 Lê Lợi, P. Bến Thành, TP.HCM"


def r(rid: str, name: str, dob: str, sex: str, cccd: str = "", phone: str = "0912345678", event: str = "") -> SourceRecord:
    return SourceRecord(rid, name=name, birth_date=dob, sex=sex, personal_id=cccd, phone=phone, address=ADDRESS,
                        ward="26734", event_date=event)


def clusters_by_id(records: list[SourceRecord]) -> dict[str, int]:
    result = link(records)
    return {result.record_ids[i]: c for c, members in enumerate(result.clusters) for i in members}


class TestEvaluation:
    def test_pairwise_scores_on_a_hand_made_example(self) -> None:
        """Predicted pairs ab, ac, bc; true pairs ab, cd; one correct: precision 1/3, recall 1/2, F1 0.4."""
        clusters = {"a": "1", "b": "1", "c": "1", "d": "2", "e": "3"}
        truth = {"a": "X", "b": "X", "c": "Y", "d": "Y", "e": "Z"}
        s = pairwise(clusters, truth)
        assert (s.true_positive, s.predicted_pairs, s.true_pairs) == (1, 3, 2)
        assert (s.precision, s.recall, s.f1) == (pytest.approx(1 / 3), 0.5, pytest.approx(0.4))
        assert (s.records, s.clusters, s.persons) == (5, 3, 3)

    def test_all_singletons_have_perfect_precision_and_no_recall(self) -> None:
        s = pairwise({"a": "1", "b": "2"}, {"a": "X", "b": "X"})
        assert (s.precision, s.recall, s.f1) == (1.0, 0.0, 0.0)


class TestLinkage:
    def test_the_traps_stay_apart_and_one_person_comes_together(self) -> None:
        records = [
            r("mother-1", "Trần Thị Lan", "12/03/1992", "Nữ", "079192004321"),
            r("mother-2", "TRAN THI LAN", "1992-03-12", "2"),
            r("mother-3", "Trần Thị Lan", "12/03/1992", "Nữ", "079192777888"),  # re-issued CCCD
            r("newborn-1", "Trần Thị Lan", "05/11/2025", "Nam", event="05/11/2025"),
            r("newborn-2", "Con của Trần Thị Lan", "05/11/2025", "Nam", event="05/11/2025"),
            r("twin-a", "Nguyễn Minh Anh", "14/06/2015", "Nam", "079215000111"),
            r("twin-b", "Nguyễn Minh Khôi", "14/06/2015", "Nam", "079215000222"),
        ]
        c = clusters_by_id(records)
        assert c["mother-1"] == c["mother-2"] == c["mother-3"]
        assert c["newborn-1"] != c["mother-1"] and c["newborn-2"] != c["mother-1"]
        assert c["twin-a"] != c["twin-b"]

    def test_a_chain_of_links_never_joins_a_vetoed_pair(self) -> None:
        """b has no name, so it links to both a and c by the shared CCCD; a and c have different given names
        and birth dates, so they must not end up in one cluster through b."""
        records = [
            r("a", "Nguyễn Văn An", "01/02/1990", "Nam", "079090001234"),
            SourceRecord("b", personal_id="079090001234"),
            r("c", "Nguyễn Văn Bình", "07/09/1990", "Nam", "079090001234", phone=""),
        ]
        result = link(records)
        c = {result.record_ids[i]: k for k, members in enumerate(result.clusters) for i in members}
        assert c["a"] != c["c"]
        assert any({p.record_a, p.record_b} == {"a", "c"} for p in result.review)

    def test_citizen_ids_are_minted_from_the_cccd_like_the_streaming_resolver(self) -> None:
        records = [r("x1", "Lê Văn Tâm", "01/05/1970", "Nam", "079070123456"), r("x2", "Le Van Tam", "01/05/1970", "1"),
                   r("y1", "Phạm Thị Hoa", "02/02/1980", "Nữ", phone="0987000111")]
        prepared = [prepare(rec, i) for i, rec in enumerate(records)]
        ids = citizen_ids(link_prepared(prepared), prepared, b"secret")
        assert ids[0] == ids[1] == citizen_id_for(b"secret", SYSTEM_CCCD, "079070123456")
        assert ids[2] != ids[0] and ids[2].startswith("cz-")

    def test_clusters_are_one_label_per_record_numbered_by_first_record(self) -> None:
        """Hoàng/Huỳnh in one ward are one person; Vũ and Võ with different birth dates are not."""
        records = [
            r("a", "Hoàng Thị Lan", "12/03/1992", "Nữ", phone=""),
            r("b", "Vũ Văn Nam", "01/01/1960", "Nam", phone="0909000111"),
            r("c", "Huỳnh Thị Lan", "12/03/1992", "Nữ", phone=""),
            r("d", "Võ Văn Nam", "07/08/1961", "Nam", phone="0909000222"),
        ]
        result = link(records)
        assert result.labels.tolist() == result.cluster_of() == [0, 1, 0, 2] and result.cluster_count == 3
        offsets, members = result.members()
        assert offsets.tolist() == [0, 2, 3, 4] and members.tolist() == [0, 2, 1, 3]
        assert result.clusters == [[0, 2], [1], [3]]

    def test_an_empty_input_gives_no_clusters(self) -> None:
        result = link([])
        assert (result.cluster_count, result.clusters, result.record_ids) == (0, [], [])

    def test_a_generated_population_links_with_high_precision_and_recall(self) -> None:
        out, truth = io.StringIO(), io.StringIO()
        write(4000, out, truth, seed=3)
        out.seek(0)
        result = link(read_records(out))
        clusters = {result.record_ids[i]: str(c) for c, members in enumerate(result.clusters) for i in members}
        truth_map = dict(line.split(",") for line in truth.getvalue().splitlines()[1:])
        s = pairwise(clusters, truth_map)
        assert s.records == 4000
        assert s.precision >= 0.99 and s.recall >= 0.95


class TestPopulation:
    def test_seeded_and_shaped_like_the_registry(self) -> None:
        a, ta, b, tb = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
        write(3000, a, ta, seed=11)
        write(3000, b, tb, seed=11)
        assert a.getvalue() == b.getvalue() and ta.getvalue() == tb.getvalue()
        rows = list(csv.DictReader(io.StringIO(a.getvalue())))
        assert tuple(rows[0]) == COLUMNS and len(rows) == 3000
        persons = {line.split(",")[1] for line in ta.getvalue().splitlines()[1:]}
        assert 1.3 <= len(rows) / len(persons) <= 1.5  # the city's 1.39 rows per person
        with_cccd = sum(1 for row in rows if len(row["so_cccd"]) == 12)
        assert 0.6 <= with_cccd / len(rows) <= 0.85  # about a quarter without a usable CCCD

    def test_cccd_agrees_with_sex_and_birth_year(self) -> None:
        gen = PopulationGenerator(seed=5)
        for _ in range(200):
            for p in gen.household():
                century = 1900 if p.cccd[3] in "01" else 2000
                assert century + int(p.cccd[4:6]) == p.year
                assert (int(p.cccd[3]) % 2 == 1) == (p.sex == "F")

    def test_households_share_an_address_and_twins_a_birth_date(self) -> None:
        gen = PopulationGenerator(seed=2)
        twins = 0
        for _ in range(3000):
            members = gen.household()
            assert len({(p.ward, p.street, p.house) for p in members}) == 1
            births = [(p.year, p.month, p.day) for p in members if p.mother is not None]
            twins += len(births) - len(set(births))
        assert twins > 0


class TestRegistryReader:
    def test_bad_rows_are_reported_by_line_and_the_rest_continue(self) -> None:
        header = ",".join(COLUMNS)
        good = "R1,Nguyễn Văn An,01/02/1990,Nam,,,,,,AZ,AstraZeneca,A1,1,01/06/2021,79048"
        text = "\ufeff" + "\n".join([header, good, "R2,too,few", good, good.replace("R1", "R3")]) + "\n"
        bad: list[BadRow] = []
        records = list(read_records(io.StringIO(text), bad))
        assert [x.record_id for x in records] == ["R1", "R3"]
        assert [(b.line, b.reason) for b in bad] == [(3, "expected 15 columns, found 3"), (4, "record_id repeats an earlier row")]

    def test_a_file_with_another_header_is_refused(self) -> None:
        with pytest.raises(RegistryFormatError):
            list(read_records(io.StringIO("id,name\n1,x\n")))


class TestCommands:
    def run(self, *argv: str) -> int:
        parser = argparse.ArgumentParser()
        add_identity_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        return args.func(Settings(), args)

    def test_population_link_evaluate(self, tmp_path, capsys) -> None:
        reg, truth, out, review = (tmp_path / n for n in ("reg.csv", "truth.csv", "clusters.csv", "review.csv"))
        assert self.run("population", "--records", "1500", "--output", str(reg), "--truth", str(truth), "--seed", "4") == 0
        assert self.run("link", "--input", str(reg), "--output", str(out), "--review", str(review)) == 0
        rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
        assert rows[0] == ["record_id", "citizen_id"] and len(rows) == 1501
        assert self.run("evaluate", "--clusters", str(out), "--truth", str(truth)) == 0
        captured = capsys.readouterr()
        assert "precision" in captured.out and "recall" in captured.out
        assert "Nguy" not in captured.err and "rows 1,500" in captured.err  # counts, never names
