"""The fast table reader (connectors.xml130.flat) gives exactly what the hardened lxml reader gives.

For every document it either reads the same fields, record by record, or declines (None) and lets lxml read it;
a document lxml refuses is never read by the fast path. Checked over the generator's valid and broken exports,
a table of tricky inputs, and randomly mutated tables.
"""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path

import pytest
from lxml import etree

from connectors.xml130 import flat
from connectors.xml130 import generate as gen
from connectors.xml130.context import fields
from connectors.xml130.errors import TableError
from connectors.xml130.flat import FAST_MAX_BYTES, Table, fast_records, read_table
from connectors.xml130.layout import TABLES
from connectors.xml130.safe import parse_document

MAX = 32 * 1024 * 1024
MAPPED = ("XML1", "XML2", "XML3", "XML4", "XML5", "XML7", "XML8")
NOIDUNGFILE = re.compile(rb"<LOAIHOSO>([^<]+)</LOAIHOSO><NOIDUNGFILE>([^<]*)</NOIDUNGFILE>")


def lxml_records(kind: str, data: bytes) -> list[dict[str, str]]:
    """The reader before the fast path: hardened lxml, the root checked, every record's fields."""
    root = parse_document(data, MAX)
    tag = root.tag.rpartition("}")[2] if isinstance(root.tag, str) else "?"
    if tag != TABLES[kind][0]:
        raise TableError("table", f"{kind} root element is {tag}, expected {TABLES[kind][0]}")
    record = TABLES[kind][1]
    return [fields(e) for e in ([root] if record is None else root.iter("{*}" + record))]


def same_as_lxml(kind: str, data: bytes) -> bool:
    """Assert the fast reader agrees with lxml on ``data``; return whether it read it itself."""
    fast = fast_records(kind, data)
    try:
        expected = lxml_records(kind, data)
    except TableError:
        assert fast is None, "the fast path read a document lxml refuses"
        return False
    assert fast is None or fast == expected
    if fast is not None:  # the same values, and the same keys in the same order
        assert [list(r.items()) for r in fast] == [list(r.items()) for r in expected]
    return fast is not None


def export_tables(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    for kind, text in NOIDUNGFILE.findall(data):
        try:
            out.append((kind.decode(), base64.b64decode(text, validate=True)))
        except ValueError:
            continue  # the truncated-base64 variant: never reaches a table reader
    return [(k, d) for k, d in out if k in MAPPED]


def doc(root: str, body: str, decl: str = '<?xml version="1.0" encoding="utf-8"?>\n') -> bytes:
    return f"{decl}<{root}>{body}</{root}>".encode()


def drugs(*rows: str) -> bytes:
    inner = "".join(f"<CHI_TIET_THUOC>{r}</CHI_TIET_THUOC>" for r in rows)
    return doc("CHITIEU_CHITIET_THUOC", f"<DSACH_CHI_TIET_THUOC>{inner}</DSACH_CHI_TIET_THUOC>")


def xml1(body: str, decl: str = '<?xml version="1.0" encoding="utf-8"?>\n') -> bytes:
    return doc("TONG_HOP", body, decl)


ROW = "<MA_LK>79048.1</MA_LK><STT>1</STT><TEN_THUOC>Natri clorid 0,9%</TEN_THUOC>"

# (name, kind, document, whether the fast path reads it itself)
TRICKY: list[tuple[str, str, bytes, bool]] = [
    ("plain", "XML2", drugs(ROW, ROW.replace(">1<", ">2<")), True),
    ("vietnamese", "XML1", xml1("<HO_TEN>Nguyễn Thị Bích Ngọc</HO_TEN><DIA_CHI>Phường Bến Nghé, Quận 1</DIA_CHI>"), True),
    ("decomposed vietnamese kept as sent", "XML1", xml1("<HO_TEN>Nguye\u0302\u0303n</HO_TEN>"), True),
    ("predefined entities", "XML2", drugs("<TEN_THUOC>A &amp; B &lt;5&gt; &quot;x&quot; &apos;y&apos;</TEN_THUOC>"), True),
    ("character references", "XML2", drugs("<TEN_THUOC>&#7879;&#x1EC7;&#65;&#x9;x&#xA;</TEN_THUOC>"), True),
    ("reference to white space is stripped", "XML2", drugs("<TEN_THUOC>&#32;x&#160;</TEN_THUOC>"), True),
    ("cdata", "XML5", doc("CHITIEU_CHITIET_DIENBIENLAMSANG", "<DSACH_CHI_TIET_DIEN_BIEN_BENH><CHI_TIET_DIEN_BIEN_BENH>"
                                "<DIEN_BIEN_LS><![CDATA[Sốt 38,5°C & ho <khạc> đờm]]></DIEN_BIEN_LS>"
                                "</CHI_TIET_DIEN_BIEN_BENH></DSACH_CHI_TIET_DIEN_BIEN_BENH>"), True),
    ("cdata hiding record tags", "XML2", drugs("<TEN_THUOC><![CDATA[</CHI_TIET_THUOC><CHI_TIET_THUOC>]]></TEN_THUOC>",
                                              "<STT>2</STT>"), True),
    ("cdata mixed with text", "XML2", drugs("<TEN_THUOC>a <![CDATA[b]]]]><![CDATA[>]]> &amp; c</TEN_THUOC>"), True),
    ("empty cdata", "XML2", drugs("<TEN_THUOC><![CDATA[]]></TEN_THUOC><STT>1</STT>"), True),
    ("cdata as whole values", "XML2", drugs("<STT><![CDATA[1]]></STT><TEN_THUOC><![CDATA[Sốt > 38,5°C]]]></TEN_THUOC>",
                                           "<STT>2</STT><TEN_THUOC><![CDATA[Ho khạc đờm]]></TEN_THUOC>"), True),
    ("cdata value with white space at its ends", "XML2", drugs("<TEN_THUOC><![CDATA[ Ho\n]]></TEN_THUOC>"), True),
    ("cdata holding a reference", "XML2", drugs("<TEN_THUOC><![CDATA[a &amp; b]]></TEN_THUOC>"), True),
    ("cdata end followed by more text", "XML2", drugs("<TEN_THUOC><![CDATA[a]]>b]]></TEN_THUOC>"), False),
    ("cdata inside a name", "XML1", xml1("<MA_L<![CDATA[K]]>>x</MA_LK>"), False),
    ("cdata before the root", "XML1", b'<?xml version="1.0"?><![CDATA[ ]]><TONG_HOP><MA_LK>x</MA_LK></TONG_HOP>',
     False),
    ("cdata between records", "XML2", drugs(ROW).replace(b"</CHI_TIET_THUOC>", b"</CHI_TIET_THUOC><![CDATA[ ]]>"),
     False),
    ("brackets in text", "XML2", drugs("<TEN_THUOC>Glucose [Máu] ]] ]</TEN_THUOC>"), True),
    ("empty elements", "XML2", drugs("<MA_LK/><STT></STT><TEN_THUOC>x</TEN_THUOC><DU_PHONG/>"), True),
    ("empty record", "XML2", drugs("", ROW), True),
    ("no records", "XML2", drugs(), True),
    ("records without a list element", "XML2", doc("CHITIEU_CHITIET_THUOC", f"<CHI_TIET_THUOC>{ROW}</CHI_TIET_THUOC>"), True),
    ("leading and trailing white space", "XML2", drugs("<TEN_THUOC>  x y \t</TEN_THUOC><STT>\n1\n</STT>"), True),
    ("white-space-only field", "XML2", drugs("<TEN_THUOC>   </TEN_THUOC><STT> \u00a0</STT>"), True),
    ("unicode white space", "XML2", drugs("<TEN_THUOC>\u3000x\u2003</TEN_THUOC>"), True),
    ("repeated field: last value, first position", "XML2", drugs("<STT>1</STT><TEN_THUOC>a</TEN_THUOC><STT>2</STT>"), True),
    ("repeated field, second empty", "XML2", drugs("<STT>1</STT><STT></STT><STT> </STT>"), True),
    ("pretty printed", "XML2", b'<?xml version="1.0" encoding="UTF-8"?>\n<CHITIEU_CHITIET_THUOC>\n  <DSACH_CHI_TIET_THUOC>\n'
                               b"    <CHI_TIET_THUOC>\n      <STT>1</STT>\n      <MA_LK>x</MA_LK>\n    </CHI_TIET_THUOC>\n"
                               b"  </DSACH_CHI_TIET_THUOC>\n</CHITIEU_CHITIET_THUOC>\n", True),
    ("crlf line ends", "XML2", drugs("<TEN_THUOC>a\r\nb\rc</TEN_THUOC>").replace(b"\n<CHITIEU", b"\r\n<CHITIEU"), True),
    ("reference to cr survives", "XML2", drugs("<TEN_THUOC>a&#13;b</TEN_THUOC>"), True),
    ("no declaration", "XML1", b"<TONG_HOP><MA_LK>x</MA_LK></TONG_HOP>", True),
    ("single-quoted declaration, standalone", "XML1",
     xml1("<MA_LK>x</MA_LK>", "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>"), True),
    ("dots and dashes in names", "XML1", xml1("<A.B-C_1>x</A.B-C_1>"), True),
    ("gt in text", "XML1", xml1("<GHI_CHU>a > b</GHI_CHU>"), True),
    ("second record needs stripping", "XML2", drugs(ROW, "<STT> 2</STT><TEN_THUOC>x</TEN_THUOC>"), True),
    ("second record has an entity", "XML2", drugs(ROW, "<STT>2</STT><TEN_THUOC>a &amp; b</TEN_THUOC>"), True),
    ("second record is empty where the first is not", "XML2", drugs(ROW, "<MA_LK/><STT>2</STT><TEN_THUOC/>"), True),
    ("records of many skeletons", "XML2", drugs(*(f"<STT>{i}</STT>" + "".join(
        f"<F{j}>{'v' if (i >> j) & 1 else ''}</F{j}>" for j in range(6)) for i in range(64))), True),
    ("root end tag missing after the last record", "XML2", drugs(ROW)[:-len("</CHITIEU_CHITIET_THUOC>")], False),
    ("list end tag differs", "XML2", drugs(ROW).replace(b"</DSACH_CHI_TIET_THUOC>", b"</DSACH>"), False),
    ("stray text after a record", "XML2", drugs(ROW).replace(b"</CHI_TIET_THUOC>", b"</CHI_TIET_THUOC>x"), False),
    # declined: lxml reads them
    ("comment", "XML2", drugs("<STT>1</STT><!-- ghi chú --><MA_LK>x</MA_LK>"), False),
    ("processing instruction", "XML2", drugs("<STT>1</STT><?pi x?>"), False),
    ("attribute", "XML2", drugs('<STT kind="x">1</STT>'), False),
    ("default namespace", "XML1", b'<TONG_HOP xmlns="urn:x"><MA_LK>x</MA_LK></TONG_HOP>', False),
    ("prefixed names", "XML1", b'<b:TONG_HOP xmlns:b="urn:x"><b:MA_LK>x</b:MA_LK></b:TONG_HOP>', False),
    ("nested field", "XML2", drugs("<TEN_THUOC>a<B>b</B>c</TEN_THUOC><STT>1</STT>"), False),
    ("field named like the record", "XML2", drugs("<STT>1</STT><CHI_TIET_THUOC>x</CHI_TIET_THUOC>"), False),
    ("text between fields", "XML2", drugs("<STT>1</STT>stray<MA_LK>x</MA_LK>"), False),
    ("other element in the list", "XML2", doc("CHITIEU_CHITIET_THUOC", "<L><X>1</X><CHI_TIET_THUOC>"
                                                                      f"{ROW}</CHI_TIET_THUOC></L>"), False),
    ("utf-8 bom", "XML1", b"\xef\xbb\xbf" + xml1("<MA_LK>x</MA_LK>"), False),
    ("space inside a tag", "XML1", xml1("<MA_LK >x</MA_LK >"), False),
    ("non-ascii element name", "XML1", xml1("<TÊN>x</TÊN>"), False),
    ("version 1.1", "XML1", xml1("<MA_LK>x</MA_LK>", '<?xml version="1.1"?>'), False),
    ("declared latin-1", "XML1", xml1("<MA_LK>x</MA_LK>", '<?xml version="1.0" encoding="ISO-8859-1"?>'), False),
    # declined: lxml refuses them, with the reason it always gave
    ("doctype with entities", "XML1", b'<?xml version="1.0"?><!DOCTYPE TONG_HOP [<!ENTITY a "x">]>'
                                      b"<TONG_HOP><MA_LK>&a;</MA_LK></TONG_HOP>", False),
    ("undeclared entity", "XML1", xml1("<MA_LK>&nbsp;</MA_LK>"), False),
    ("reference to NUL", "XML1", xml1("<MA_LK>&#0;</MA_LK>"), False),
    ("reference past unicode", "XML1", xml1("<MA_LK>&#x110000;</MA_LK>"), False),
    ("control character", "XML1", xml1("<MA_LK>a\x01b</MA_LK>"), False),
    ("control character in a later record", "XML2", drugs(ROW, "<STT>2</STT><TEN_THUOC>a\x1fb</TEN_THUOC>"), False),
    ("noncharacter U+FFFF in a later record", "XML2", drugs(ROW, "<STT>2</STT><TEN_THUOC>a\uffffb</TEN_THUOC>"), False),
    ("cdata end in text", "XML1", xml1("<MA_LK>a]]>b</MA_LK>"), False),
    ("bare ampersand", "XML1", xml1("<MA_LK>a & b</MA_LK>"), False),
    ("mismatched end tag", "XML1", xml1("<MA_LK>x</MA_BN>"), False),
    ("truncated", "XML2", drugs(ROW)[:-40], False),
    ("wrong root", "XML2", doc("CHITIEU_CHITIET_DVKT_VTYT", "<X/>"), False),
    ("not utf-8", "XML1", "<TONG_HOP><HO_TEN>Lê Văn Đông</HO_TEN></TONG_HOP>".encode("cp1258"), False),
    ("two roots", "XML1", xml1("<MA_LK>x</MA_LK>") + b"<TONG_HOP/>", False),
    ("declaration not first", "XML1", b"\n" + xml1("<MA_LK>x</MA_LK>"), False),
    ("empty", "XML1", b"", False),
]


class TestSameAsLxml:
    @pytest.mark.parametrize("name, kind, data, fast", TRICKY, ids=[t[0] for t in TRICKY])
    def test_tricky(self, name: str, kind: str, data: bytes, fast: bool) -> None:
        """Each tricky table is read as lxml reads it, by the fast path when it is in the flat shape."""
        assert same_as_lxml(kind, data) is fast

    @pytest.mark.parametrize("options", [{}, {"layout": "4210"}, {"hiv": True, "unmapped": True}],
                             ids=["qd130", "qd4210", "hiv-unmapped"])
    def test_generated_exports_take_the_fast_path(self, options: dict[str, object]) -> None:
        """Every table of a generated export is read by the fast path, with lxml's values."""
        tables = export_tables(gen.export(25, seed=7, **options))
        assert len(tables) >= 25 * 4
        assert all(same_as_lxml(kind, data) for kind, data in tables)

    def test_golden_tables_take_the_fast_path(self) -> None:
        """The hand-written tables of the golden test (and the QD 4210 XML1) are read fast, as lxml reads them."""
        data = Path(__file__).resolve().parents[1] / "data" / "xml130"
        for path in [*sorted((data / "inpatient").glob("XML*.xml")), data / "legacy-4210-xml1.xml"]:
            kind = path.stem if path.stem in MAPPED else "XML1"
            if path.stem == "XML9":
                continue
            assert same_as_lxml(kind, path.read_bytes()), path.name

    def test_broken_exports(self) -> None:
        """The generator's broken tables are declined (lxml refuses them) or, when only a value is wrong, read
        the same."""
        data = gen.export(2, seed=11, broken=True)
        outcomes = {kind: [] for kind in MAPPED}  # type: dict[str, list[bool]]
        for kind, table in export_tables(data):
            outcomes[kind].append(same_as_lxml(kind, table))
        assert not all(outcomes["XML3"]) and not all(outcomes["XML4"]) and not all(outcomes["XML8"])

    def test_mutated_tables(self) -> None:
        """Random edits of XML-significant characters never make the fast path read a table differently."""
        rng = random.Random(130)
        alphabet = ["<", ">", "/", "&", ";", "]", "]]>", "<![CDATA[", "<!--", "-->", "?", "!", " ", "\r", "\n",
                    "\x01", "&amp;", "&#0;", "&#65;", "=", '"', "x", "ệ", "\u00a0", ":", "<A>", "</A>", "<A/>"]
        tables = export_tables(gen.export(3, seed=5))
        read = 0
        for _ in range(1500):
            kind, original = rng.choice(tables)
            text = original.decode()
            for _edit in range(rng.randint(1, 3)):
                at = rng.randrange(len(text))
                piece = rng.choice(alphabet)
                text = text[:at] + piece + text[at + rng.choice((0, 0, 1)):]
            read += same_as_lxml(kind, text.encode())
        assert read > 100  # some edits stay well-formed (e.g. in a text value) and are read fast


def test_whole_value_cdata_is_read_by_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """A course note whose free text is each a field's whole CDATA content is read as if written as plain text,
    by template, not by the general grammar and a regex per field."""
    def general(*_args: object) -> dict[str, str]:
        raise AssertionError("read by the general grammar")

    table = gen.xml5(gen.visit(random.Random(2), 1, facility="79048"), random.Random(3))
    assert b"<![CDATA[" in table
    expected = lxml_records("XML5", table)
    monkeypatch.setattr(flat, "_careful", general)
    assert fast_records("XML5", table) == expected


class TestTable:
    def test_original_of_a_fast_row_is_lxmls_serialisation(self) -> None:
        """A failed row's bytes are the same whether the fast path or lxml read the table."""
        data = drugs("<STT>1</STT><TEN_THUOC>A &amp; B</TEN_THUOC><X/>", "<STT>2</STT><Y></Y>")
        fast = read_table("XML2", data, MAX)
        assert fast.elements is None
        root = etree.fromstring(data)
        for i, element in enumerate(root.iter("CHI_TIET_THUOC")):
            assert fast.original(i) == etree.tostring(element, encoding="utf-8")

    def test_refused_documents_raise_lxmls_table_error(self) -> None:
        """What lxml refuses raises the same TableError through read_table."""
        for kind, data, code in [("XML1", xml1("<MA_LK>&nbsp;</MA_LK>"), "entity"),
                                 ("XML2", doc("CHITIEU_CHITIET_DVKT_VTYT", "<X/>"), "table"),
                                 ("XML1", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><TONG_HOP/>", "entity")]:
            with pytest.raises(TableError) as caught:
                read_table(kind, data, MAX)
            assert caught.value.kind == code

    def test_size_limit_is_checked_first(self) -> None:
        with pytest.raises(TableError) as caught:
            read_table("XML1", xml1("<MA_LK>x</MA_LK>"), 10)
        assert caught.value.kind == "size"

    def test_very_large_documents_go_to_lxml(self) -> None:
        """libxml2 limits text nodes; the fast path leaves documents near that size to it."""
        big = xml1("<GHI_CHU>" + "x" * FAST_MAX_BYTES + "</GHI_CHU>")
        assert fast_records("XML1", big) is None
        assert isinstance(read_table("XML1", big, MAX), Table)

    def test_value_characters_are_text_characters_but_lt(self) -> None:
        """The templates' value class, written as the ranges it allows, holds what [^<] less XML's forbidden
        characters holds."""
        allowed, text = re.compile(f"[{flat._VALUE_CHARS}]"), re.compile(f"[^<{flat._BAD}]")
        assert all((allowed.match(c) is None) == (text.match(c) is None) for c in map(chr, range(0x110000)))

    def test_white_space_classes_agree(self) -> None:
        """The fast path detects white space with re's \\s and lxml's reader strips with str.strip: one set."""
        spaces = {c for c in map(chr, range(0x110000)) if re.fullmatch(r"\s", c)}
        assert spaces == {c for c in map(chr, range(0x110000)) if not c.strip()}
