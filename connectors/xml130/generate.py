"""Synthetic BHYT XML exports for tests, benchmarks and demos (never real people).

Every mapped table (XML1-XML5, XML7, XML8, optionally XML6 and an unmapped XML9), Vietnamese content,
QD 130 or the older QD 4210 layout, and the broken variants the reader must survive (``BROKEN``).

    .venv/bin/python -m connectors.xml130.generate --encounters 100 --out export.xml [--broken]

``stream`` yields an envelope of any size chunk by chunk (and ``GeneratedFile`` wraps it as a file object),
so a multi-gigabyte export can be read without ever being written to disk.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from hub.synthetic import WARDS, Person, person

DRUGS = [  # (MA_THUOC, TEN_THUOC, HAM_LUONG, DON_VI_TINH, DUONG_DUNG, LIEU_DUNG)
    ("40.17", "Paracetamol", "500mg", "Viên", "1.01", "Uống 1 viên/lần, 3 lần/ngày"),
    ("40.951", "Amoxicilin", "500mg", "Viên", "1.01", "Uống 2 viên/lần, 2 lần/ngày"),
    ("40.677", "Metformin", "850mg", "Viên", "1.01", "Uống 1 viên sau ăn sáng"),
    ("40.526", "Amlodipin", "5mg", "Viên", "1.01", "Uống 1 viên buổi sáng"),
    ("40.1026", "Natri clorid 0,9%", "500ml", "Chai", "2.15", "Truyền tĩnh mạch 60 giọt/phút"),
    ("40.220", "Ceftriaxon", "1g", "Lọ", "2.10", "Tiêm tĩnh mạch chậm 1 lọ/ngày"),
    ("40.689", "Omeprazol", "20mg", "Viên", "1.01", "Uống 1 viên trước ăn"),
    ("40.41", "Vitamin B1", "100mg", "Ống", "2.01", "Tiêm bắp 1 ống/ngày"),
    ("40.803", "Salbutamol", "2,5mg/2,5ml", "Ống", "3.05", "Khí dung 1 ống/lần"),
    ("40.119", "Diclofenac", "75mg", "Ống", "2.01", "Tiêm bắp khi đau"),
]
SERVICES = [  # (MA_DICH_VU, TEN_DICH_VU, MA_NHOM)
    ("23.0020.1494", "Định lượng Glucose [Máu]", "1"),
    ("22.0120.1370", "Tổng phân tích tế bào máu ngoại vi (bằng máy đếm laser)", "1"),
    ("18.0119.0028", "Chụp Xquang ngực thẳng", "2"),
    ("21.0014.1778", "Điện tim thường", "3"),
    ("10.0900.0543", "Khâu vết thương phần mềm dài dưới 10 cm", "8"),
    ("02.0327.0236", "Nội soi dạ dày tá tràng", "3"),
]
RESULTS = {  # MA_DICH_VU -> [(MA_CHI_SO, TEN_CHI_SO, GIA_TRI, DON_VI_DO)]
    "23.0020.1494": [("GLU", "Glucose", "6.8", "mmol/L")],
    "22.0120.1370": [("WBC", "Số lượng bạch cầu", "11.2", "G/L"), ("RBC", "Số lượng hồng cầu", "4.5", "T/L"),
                     ("HGB", "Huyết sắc tố", "132", "g/L"), ("PLT", "Số lượng tiểu cầu", "250", "G/L")],
}
DIAGNOSES = [  # (MA_BENH, text)
    ("J18.9", "Viêm phổi, không đặc hiệu"), ("I10", "Tăng huyết áp vô căn (nguyên phát)"),
    ("E11.9", "Đái tháo đường týp 2 không có biến chứng"), ("K29.7", "Viêm dạ dày, không đặc hiệu"),
    ("J20.9", "Viêm phế quản cấp, không đặc hiệu"), ("S61.0", "Vết thương ngón tay"),
]
REASONS = ["Sốt cao, ho kéo dài 5 ngày", "Đau thượng vị, buồn nôn", "Khó thở, tức ngực", "Đau đầu, chóng mặt"]
DEPARTMENTS = ["K01", "K03", "K19", "K26"]
DOCTORS = ["000123/HCM-CCHN", "004567/HCM-CCHN", "012345/BYT-CCHN"]


def _xml(fields: Iterable[tuple[str, str]], cdata: frozenset[str] = frozenset()) -> str:
    parts = []
    for name, value in fields:
        if value == "":
            parts.append(f"<{name}/>")
        elif name in cdata:
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
        else:
            parts.append(f"<{name}>{escape(value)}</{name}>")
    return "".join(parts)


def document(root: str, body: str) -> bytes:
    return f'<?xml version="1.0" encoding="utf-8"?>\n<{root}>{body}</{root}>'.encode()


def _list(root: str, listing: str, record: str, rows: list[list[tuple[str, str]]],
          cdata: frozenset[str] = frozenset()) -> bytes:
    inner = "".join(f"<{record}>{_xml(r, cdata)}</{record}>" for r in rows)
    return document(root, f"<{listing}>{inner}</{listing}>")


@dataclass
class Visit:
    """One generated encounter: who, where, when, and the table documents (LOAIHOSO -> bytes)."""

    person: Person
    facility: str
    ma_lk: str
    card: str
    admitted: str  # yyyyMMddHHmm
    discharged: str
    diagnoses: list[tuple[str, str]]
    tables: dict[str, bytes] = field(default_factory=dict)


def _stamp(rng: random.Random, day: int, hour: int | None = None) -> str:
    return f"202611{day:02d}{rng.randint(7, 20) if hour is None else hour:02d}{rng.randint(0, 59):02d}"


def xml1(v: Visit, *, layout: str = "130", kind: str = "03", outcome: str = "1") -> bytes:
    p = v.person
    common = [("MA_LK", v.ma_lk), ("STT", "1"), ("MA_BN", p.mrn), ("HO_TEN", p.full_name)]
    reason = random.Random(v.ma_lk).choice(REASONS)
    address = f"12 Lê Lợi, {random.Random(p.cccd).choice(WARDS)}, Thành phố Hồ Chí Minh"
    days = str(max(1, int(v.discharged[6:8]) - int(v.admitted[6:8])))
    principal, others = v.diagnoses[0], v.diagnoses[1:]
    text = "; ".join(t for _c, t in v.diagnoses)
    if layout == "4210":
        rows = common + [
            ("NGAY_SINH", p.birth_date), ("GIOI_TINH", "1" if p.sex == "M" else "2"), ("DIA_CHI", address),
            ("MA_THE", v.card), ("MA_DKBD", v.facility), ("GT_THE_TU", "20260101"), ("GT_THE_DEN", "20261231"),
            ("TEN_BENH", text), ("MA_BENH", principal[0]), ("MA_BENHKHAC", ";".join(c for c, _t in others)),
            ("MA_LYDO_VVIEN", "1"), ("NGAY_VAO", v.admitted), ("NGAY_RA", v.discharged), ("SO_NGAY_DTRI", days),
            ("KET_QUA_DTRI", outcome), ("TINH_TRANG_RV", "1"), ("NGAY_TTOAN", v.discharged),
            ("MA_LOAI_KCB", kind.lstrip("0")), ("MA_KHOA", DEPARTMENTS[1]), ("MA_CSKCB", v.facility),
            ("MA_KHUVUC", ""), ("CAN_NANG", "58"),
        ]
    else:
        rows = common + [
            ("SO_CCCD", p.cccd), ("NGAY_SINH", p.birth_date + "0000"), ("GIOI_TINH", "1" if p.sex == "M" else "2"),
            ("NHOM_MAU", ""), ("MA_QUOCTICH", "000"), ("MA_DANTOC", "01"), ("MA_NGHE_NGHIEP", "00000"),
            ("DIA_CHI", address), ("MATINH_CU_TRU", "79"), ("MAHUYEN_CU_TRU", "760"), ("MAXA_CU_TRU", "26734"),
            ("DIEN_THOAI", p.phone), ("MA_THE_BHYT", v.card), ("MA_DKBD", v.facility), ("GT_THE_TU", "20260101"),
            ("GT_THE_DEN", "20261231"), ("NGAY_MIEN_CCT", ""), ("LY_DO_VV", reason), ("LY_DO_VNT", reason),
            ("MA_LY_DO_VNT", ""), ("CHAN_DOAN_VAO", principal[1]), ("CHAN_DOAN_RV", text),
            ("MA_BENH_CHINH", principal[0]), ("MA_BENH_KT", ";".join(c for c, _t in others)), ("MA_BENH_YHCT", ""),
            ("MA_PTTT_QT", ""), ("MA_DOITUONG_KCB", "1"), ("MA_NOI_DI", ""), ("MA_NOI_DEN", ""), ("MA_TAI_NAN", ""),
            ("NGAY_VAO", v.admitted), ("NGAY_VAO_NOI_TRU", v.admitted), ("NGAY_RA", v.discharged),
            ("GIAY_CHUYEN_TUYEN", ""), ("SO_NGAY_DTRI", days), ("PP_DIEU_TRI", "Điều trị nội khoa"),
            ("KET_QUA_DTRI", outcome), ("MA_LOAI_RV", "1"), ("GHI_CHU", ""), ("NGAY_TTOAN", v.discharged),
            ("T_THUOC", "1250000.00"), ("T_VTYT", "85000"), ("T_TONGCHI_BV", "3420000"), ("T_TONGCHI_BH", "3420000"),
            ("T_BNTT", "0"), ("T_BNCCT", "684000"), ("T_BHTT", "2736000"), ("T_NGUONKHAC", "0"), ("T_BHTT_GDV", "0"),
            ("NAM_QT", "2026"), ("THANG_QT", "11"), ("MA_LOAI_KCB", kind), ("MA_KHOA", DEPARTMENTS[1]),
            ("MA_CSKCB", v.facility), ("MA_KHUVUC", ""), ("CAN_NANG", "58.5"), ("CAN_NANG_CON", ""),
            ("NAM_NAM_LIEN_TUC", ""), ("NGAY_TAI_KHAM", ""), ("MA_HSBA", f"HSBA{v.ma_lk[-6:]}"),
            ("MA_TTDV", DOCTORS[0]), ("DU_PHONG", ""),
        ]
    return document("TONG_HOP", _xml(rows))


def xml2(v: Visit, rng: random.Random, n: int) -> bytes:
    rows = []
    for i in range(n):
        code, name, strength, unit, route, dose = DRUGS[i % len(DRUGS)]
        ordered = _stamp(rng, int(v.admitted[6:8]))
        rows.append([
            ("MA_LK", v.ma_lk), ("STT", str(i + 1)), ("MA_THUOC", code), ("MA_PP_CHEBIEN", ""), ("MA_CSKCB_THUOC", ""),
            ("MA_NHOM", "4"), ("TEN_THUOC", name), ("DON_VI_TINH", unit), ("HAM_LUONG", strength),
            ("DUONG_DUNG", route), ("DANG_BAO_CHE", ""), ("LIEU_DUNG", dose), ("CACH_DUNG", "Sau ăn"),
            ("SO_DANG_KY", "VD-12345-20"), ("TT_THAU", "G1;N1;2026"), ("PHAM_VI", "1"), ("TYLE_TT_BH", "100"),
            ("SO_LUONG", str(rng.choice([2, 6, 10, 14]))), ("DON_GIA", "1250.5"), ("THANH_TIEN_BV", "12505"),
            ("THANH_TIEN_BH", "12505"), ("MA_KHOA", DEPARTMENTS[1]), ("MA_BAC_SI", rng.choice(DOCTORS)),
            ("MA_DICH_VU", ""), ("NGAY_YL", ordered), ("NGAY_TH_YL", ordered[:8] + "2130"), ("MA_PTTT", "1"),
            ("NGUON_CTRA", "1"), ("VET_THUONG_TP", ""), ("DU_PHONG", ""),
        ])
    return _list("CHITIEU_CHITIET_THUOC", "DSACH_CHI_TIET_THUOC", "CHI_TIET_THUOC", rows)


def _service_row(v: Visit, stt: int, code: str, name: str, group: str, when: str,
                 **extra: str) -> list[tuple[str, str]]:
    return [
        ("MA_LK", v.ma_lk), ("STT", str(stt)), ("MA_DICH_VU", code), ("MA_PTTT_QT", ""),
        ("MA_VAT_TU", extra.get("MA_VAT_TU", "")), ("MA_NHOM", group), ("GOI_VTYT", ""),
        ("TEN_VAT_TU", extra.get("TEN_VAT_TU", "")), ("TEN_DICH_VU", name), ("DON_VI_TINH", extra.get("DVT", "Lần")),
        ("PHAM_VI", "1"), ("SO_LUONG", "1"), ("DON_GIA_BV", "46200"), ("DON_GIA_BH", "46200"), ("TYLE_TT_DV", "100"),
        ("TYLE_TT_BH", "100"), ("THANH_TIEN_BV", "46200"), ("THANH_TIEN_BH", "46200"), ("MA_KHOA", DEPARTMENTS[1]),
        ("MA_GIUONG", extra.get("MA_GIUONG", "")), ("MA_BAC_SI", DOCTORS[1]),
        ("NGUOI_THUC_HIEN", extra.get("NGUOI_THUC_HIEN", DOCTORS[2])), ("MA_BENH", v.diagnoses[0][0]),
        ("NGAY_YL", when), ("NGAY_TH_YL", when[:10] + "30"), ("NGAY_KQ", when[:8] + "2359"), ("MA_PTTT", "1"),
        ("DU_PHONG", ""),
    ]


def xml3(v: Visit, rng: random.Random, n: int) -> bytes:
    day = int(v.admitted[6:8])
    rows = [_service_row(v, i + 1, *SERVICES[i % len(SERVICES)], _stamp(rng, day)) for i in range(n)]
    rows.append(_service_row(v, n + 1, "", "", "10", _stamp(rng, day), MA_VAT_TU="N03.03.010",
                             TEN_VAT_TU="Bơm tiêm nhựa 5ml", DVT="Cái"))
    rows.append(_service_row(v, n + 2, "K03.1950", "Giường Nội khoa loại 1 Hạng I", "15", _stamp(rng, day),
                             MA_GIUONG="H001", DVT="Ngày"))
    return _list("CHITIEU_CHITIET_DVKT_VTYT", "DSACH_CHI_TIET_DVKT", "CHI_TIET_DVKT", rows)


def xml4(v: Visit, rng: random.Random, n: int) -> bytes:
    rows: list[list[tuple[str, str]]] = []
    indicators = [(code, *ind) for code, inds in RESULTS.items() for ind in inds]
    when = _stamp(rng, int(v.admitted[6:8]), 10)
    for i in range(n):
        service, ind, name, value, unit = indicators[i % len(indicators)]
        rows.append([("MA_LK", v.ma_lk), ("STT", str(i + 1)), ("MA_DICH_VU", service), ("MA_CHI_SO", ind),
                     ("TEN_CHI_SO", name), ("GIA_TRI", value), ("DON_VI_DO", unit), ("MO_TA", ""),
                     ("KET_LUAN", "Tăng nhẹ" if ind in ("GLU", "WBC") else "Bình thường"), ("NGAY_KQ", when),
                     ("MA_BS_DOC_KQ", DOCTORS[2]), ("DU_PHONG", "")])
    rows.append([("MA_LK", v.ma_lk), ("STT", str(n + 1)), ("MA_DICH_VU", "18.0119.0028"), ("MA_CHI_SO", ""),
                 ("TEN_CHI_SO", ""), ("GIA_TRI", ""), ("DON_VI_DO", ""),
                 ("MO_TA", "Hình ảnh mờ không đều thùy dưới phổi phải"), ("KET_LUAN", "Viêm phổi thùy dưới phải"),
                 ("NGAY_KQ", when), ("MA_BS_DOC_KQ", DOCTORS[1]), ("DU_PHONG", "")])
    return _list("CHITIEU_CHITIET_DICHVUCANLAMSANG", "DSACH_CHI_TIET_CLS", "CHI_TIET_CLS", rows)


def xml5(v: Visit, rng: random.Random, n: int = 2) -> bytes:
    notes = ["Bệnh nhân tỉnh, tiếp xúc tốt. Sốt 38,5°C, ho khạc đờm.", "Hết sốt, ăn uống được, phổi giảm ran."]
    rows = [[("MA_LK", v.ma_lk), ("STT", str(i + 1)), ("DIEN_BIEN_LS", notes[i % 2]),
             ("GIAI_DOAN_BENH", "Giai đoạn cấp" if i == 0 else "Ổn định"), ("HOI_CHAN", ""), ("PHAU_THUAT", ""),
             ("THOI_DIEM_DBLS", _stamp(rng, int(v.admitted[6:8]) + min(i, 1), 8)),
             ("NGUOI_THUC_HIEN", DOCTORS[0]), ("DU_PHONG", "")] for i in range(n)]
    return _list("CHITIEU_CHITIET_DIENBIENLAMSANG", "DSACH_CHI_TIET_DIEN_BIEN_BENH", "CHI_TIET_DIEN_BIEN_BENH", rows,
                 frozenset({"DIEN_BIEN_LS"}))


def xml7(v: Visit) -> bytes:
    return document("CHI_TIEU_DU_LIEU_GIAY_RA_VIEN", _xml([
        ("MA_LK", v.ma_lk), ("SO_LUU_TRU", f"LT{v.ma_lk[-6:]}"), ("MA_YTE", v.person.mrn),
        ("MA_KHOA_RV", DEPARTMENTS[1]), ("NGAY_VAO", v.admitted), ("NGAY_RA", v.discharged),
        ("CHAN_DOAN_RV", "; ".join(t for _c, t in v.diagnoses)), ("PP_DIEUTRI", "Kháng sinh, hạ sốt, bù dịch"),
        ("GHI_CHU", "Tái khám sau 7 ngày"), ("MA_TTDV", DOCTORS[0]), ("MA_BS", DOCTORS[0]), ("TEN_BS", "Trần Văn Minh"),
        ("NGAY_CT", v.discharged), ("DU_PHONG", "")]))


def xml8(v: Visit) -> bytes:
    return document("CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN", _xml([
        ("MA_LK", v.ma_lk), ("MA_LOAI_KCB", "03"), ("NGAY_VAO", v.admitted), ("NGAY_RA", v.discharged),
        ("CHAN_DOAN_VAO", v.diagnoses[0][1]), ("CHAN_DOAN_RV", "; ".join(t for _c, t in v.diagnoses)),
        ("QT_BENHLY", "Sốt, ho 5 ngày, điều trị tại nhà không đỡ."), ("TOMTAT_KQ", "Bạch cầu tăng, X-quang viêm phổi"),
        ("PP_DIEUTRI", "Kháng sinh đường tĩnh mạch 5 ngày"), ("KET_QUA_DTRI", "1"), ("GHI_CHU", ""),
        ("MA_TTDV", DOCTORS[0]), ("NGAY_CT", v.discharged), ("DU_PHONG", "")]))


def xml6(v: Visit) -> bytes:
    """HIV care (sensitive): a minimal stand-in. The reference page does not give XML6's layout, so these
    element names are illustrative; the reader never parses XML6, its presence alone flags the encounter."""
    return document("CHI_TIEU_HO_SO_BENH_AN_CHAM_SOC_VA_DIEU_TRI_HIV_AIDS", _xml([
        ("MA_LK", v.ma_lk), ("MA_THE_BHYT", v.card), ("SO_CCCD", v.person.cccd), ("NGAYKHANGDINH_HIV", "20250312"),
        ("BDDT_ARV", "20250320"), ("DU_PHONG", "")]))


def visit(rng: random.Random, index: int, *, facility: str | None = None, drugs: int = 10, services: int = 5,
          results: int = 5, layout: str = "130", hiv: bool = False, unmapped: bool = False,
          documents: bool = True) -> Visit:
    """One encounter with every mapped table; ``hiv`` adds XML6, ``unmapped`` an XML9 birth certificate,
    ``documents=False`` leaves out XML5, XML7 and XML8 (the benchmark's lean shape: XML1-XML4 only)."""
    p = person(rng, serial=index % 1_000_000)
    fac = facility or p.facility
    day = rng.randint(1, 20)
    admitted, discharged = _stamp(rng, day), _stamp(rng, day + rng.randint(1, 7))
    group = rng.choice(["DN", "HT", "GD", "TE"])
    card = f"{group}4{fac[:2]}{rng.randint(0, 9_999_999_999):010d}"
    v = Visit(p, fac, f"{fac}.2611.{index:08d}", card, admitted, discharged, rng.sample(DIAGNOSES, 3))
    v.tables["XML1"] = xml1(v, layout=layout)
    v.tables["XML2"] = xml2(v, rng, drugs)
    v.tables["XML3"] = xml3(v, rng, services)
    v.tables["XML4"] = xml4(v, rng, results)
    if documents:
        v.tables["XML5"] = xml5(v, rng)
    if hiv:
        v.tables["XML6"] = xml6(v)
    if documents:
        v.tables["XML7"] = xml7(v)
        v.tables["XML8"] = xml8(v)
    if unmapped:
        v.tables["XML9"] = document("CHI_TIEU_DU_LIEU_GIAY_CHUNG_SINH", _xml([("MA_LK", v.ma_lk), ("SO_CON", "1")]))
    return v


def hoso(tables: dict[str, bytes] | list[tuple[str, str]]) -> str:
    """One HOSO element; ``tables`` are documents (base64-encoded here) or (LOAIHOSO, NOIDUNGFILE) as sent."""
    items = tables.items() if isinstance(tables, dict) else tables
    files = "".join(
        f"<FILEHOSO><LOAIHOSO>{kind}</LOAIHOSO><NOIDUNGFILE>"
        f"{base64.b64encode(doc).decode() if isinstance(doc, bytes) else doc}</NOIDUNGFILE></FILEHOSO>"
        for kind, doc in items)
    return f"<HOSO>{files}</HOSO>"


def _head(facility: str, count: int) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<GIAMDINHHS><THONGTINDONVI><MACSKCB>{facility}</MACSKCB>'
            f"</THONGTINDONVI><THONGTINHOSO><NGAYLAP>20261201</NGAYLAP><SOLUONGHOSO>{count}</SOLUONGHOSO>"
            "<DANHSACHHOSO>")


_TAIL = "</DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI>" + "A" * 344 + "</CHUKYDONVI></GIAMDINHHS>"


def envelope(hosos: list[str], facility: str = "79048") -> bytes:
    return (_head(facility, len(hosos)) + "".join(hosos) + _TAIL).encode()


def export(n: int, *, seed: int = 130, facility: str = "79048", broken: bool = False, **kwargs: object) -> bytes:
    """An envelope of ``n`` encounters; with ``broken`` every BROKEN variant is appended once, in order."""
    rng = random.Random(seed)
    hosos = [hoso(visit(rng, i, facility=facility, **kwargs).tables) for i in range(n)]  # type: ignore[arg-type]
    if broken:
        hosos += [make(visit(rng, n + i, facility=facility)) for i, make in enumerate(BROKEN.values())]
    return envelope(hosos, facility)


def stream(total_bytes: int, *, seed: int = 130, facility: str = "79048", pool: int = 200,
           chunk: int = 1 << 20) -> Iterator[bytes]:
    """An envelope of about ``total_bytes``, in chunks of about ``chunk`` bytes, from a pool of encounters
    (repeated: the point is the size, not variety). Memory: the pool, never the file."""
    rng = random.Random(seed)
    hosos = [hoso(visit(rng, i, facility=facility).tables).encode() for i in range(pool)]
    buf = bytearray(_head(facility, 0).encode())
    sent = 0
    for item in itertools.cycle(hosos):
        buf += item
        if len(buf) >= chunk:
            sent += len(buf)
            yield bytes(buf)
            buf.clear()
            if sent >= total_bytes:
                break
    yield bytes(buf) + _TAIL.encode()


class GeneratedFile:
    """A read-only binary file object over ``stream``: the reader sees a file, nothing touches the disk."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self.bytes_read = 0
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buf) < size) and (piece := next(self._chunks, None)) is not None:
            self._buf += piece
        out, self._buf = (self._buf, b"") if size < 0 else (self._buf[:size], self._buf[size:])
        self.bytes_read += len(out)
        self.largest_read = max(self.largest_read, len(out))
        return out

    def close(self) -> None:
        pass


# --- broken variants: each takes a valid visit and returns a HOSO element string --------------------------

def truncated_base64(v: Visit) -> str:
    """XML2's base64 cut off mid-quantum (as when a transfer stops)."""
    tables: list[tuple[str, str]] = [(k, base64.b64encode(d).decode()) for k, d in v.tables.items()]
    return hoso([(k, t[: len(t) // 2 - 1] if k == "XML2" else t) for k, t in tables])


def not_xml(v: Visit) -> str:
    """XML3 is not XML at all (a PDF someone attached)."""
    return hoso({**v.tables, "XML3": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3 not a table"})


def wrong_encoding(v: Visit) -> str:
    """XML5 written in Windows-1258 but declared UTF-8 (legacy HIS)."""
    body = v.tables["XML5"].decode("utf-8").replace("Bệnh nhân", "Bênh nhân")
    return hoso({**v.tables, "XML5": body.encode("cp1258", "replace")})


def billion_laughs(v: Visit) -> str:
    """XML4 carries an entity-expansion bomb."""
    bomb = ('<?xml version="1.0"?><!DOCTYPE CHITIEU_CHITIET_DICHVUCANLAMSANG [<!ENTITY a "ha">'
            + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
            + ']><CHITIEU_CHITIET_DICHVUCANLAMSANG><DSACH_CHI_TIET_CLS><CHI_TIET_CLS><MA_LK>x</MA_LK>'
            "<MO_TA>&j;</MO_TA></CHI_TIET_CLS></DSACH_CHI_TIET_CLS></CHITIEU_CHITIET_DICHVUCANLAMSANG>")
    return hoso({**v.tables, "XML4": bomb.encode()})


def external_entity(v: Visit) -> str:
    """XML8 tries to read a local file through an external entity (XXE)."""
    xxe = ('<?xml version="1.0"?><!DOCTYPE CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN [<!ENTITY x SYSTEM '
           '"file:///etc/passwd">]><CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN><MA_LK>x</MA_LK><GHI_CHU>&x;</GHI_CHU>'
           "</CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN>")
    return hoso({**v.tables, "XML8": xxe.encode()})


def impossible_date(v: Visit) -> str:
    """Drug row 3 was ordered on 31 November (XML2 NGAY_YL)."""
    rows = v.tables["XML2"].decode().split("<CHI_TIET_THUOC>")
    rows[3] = re.sub(r"<NGAY_YL>[0-9]{12}</NGAY_YL>", "<NGAY_YL>202611310900</NGAY_YL>", rows[3], count=1)
    return hoso({**v.tables, "XML2": "<CHI_TIET_THUOC>".join(rows).encode()})


BROKEN: dict[str, Callable[[Visit], str]] = {
    "truncated_base64": truncated_base64,
    "not_xml": not_xml,
    "wrong_encoding": wrong_encoding,
    "billion_laughs": billion_laughs,
    "external_entity": external_entity,
    "impossible_date": impossible_date,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encounters", type=int, default=10)
    parser.add_argument("--seed", type=int, default=130)
    parser.add_argument("--facility", default="79048")
    parser.add_argument("--layout", choices=["130", "4210"], default="130")
    parser.add_argument("--broken", action="store_true", help="append one HOSO of every broken variant")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = export(args.encounters, seed=args.seed, facility=args.facility, broken=args.broken, layout=args.layout)
    with open(args.out, "wb") as fh:
        fh.write(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
