"""The table layouts of QD 130 (and QD 4210, which shares them): root element and record element per LOAIHOSO.

Data, not code: the reader finds records by these names and nothing else (reference/vietnam-health-data.md).
"""

from __future__ import annotations

ENVELOPE_ROOT = "GIAMDINHHS"

# LOAIHOSO -> (root element, record element; None when the root is the one record)
TABLES: dict[str, tuple[str, str | None]] = {
    "XML1": ("TONG_HOP", None),
    "XML2": ("CHITIEU_CHITIET_THUOC", "CHI_TIET_THUOC"),
    "XML3": ("CHITIEU_CHITIET_DVKT_VTYT", "CHI_TIET_DVKT"),
    "XML4": ("CHITIEU_CHITIET_DICHVUCANLAMSANG", "CHI_TIET_CLS"),
    "XML5": ("CHITIEU_CHITIET_DIENBIENLAMSANG", "CHI_TIET_DIEN_BIEN_BENH"),
    "XML7": ("CHI_TIEU_DU_LIEU_GIAY_RA_VIEN", None),
    "XML8": ("CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN", None),
}

# A bare table document is recognised by its root element.
ROOT_TO_TABLE: dict[str, str] = {root: name for name, (root, _record) in TABLES.items()}
