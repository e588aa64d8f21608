"""XML5 (clinical course notes) and XML7 / XML8 (discharge paper, record summary) -> DocumentReference.

XML5: each row is one progress note at THOI_DIEM_DBLS; its text sections (course, stage, consultation,
surgery) become a UTF-8 text attachment. XML7 and XML8 are legal documents with many fields: the table's own
XML document is the attachment, unchanged (so nothing in it is lost or re-interpreted), and the fields a
reader needs first (diagnosis, dates, author) are mapped alongside.
"""

from __future__ import annotations

import base64
from typing import Any

from connectors.xml130 import ids
from connectors.xml130.context import Context
from connectors.xml130.errors import MappingError
from connectors.xml130.output import Output
from connectors.xml130.rows import Row, each, practitioners, when
from connectors.xml130.values import instant, text

LOINC = "http://loinc.org"
PROGRESS_NOTE = {"system": LOINC, "code": "11506-3", "display": "Progress note"}
DOCUMENT_TYPES = {
    "XML7": ({"system": LOINC, "code": "18842-5", "display": "Discharge summary"}, "Giấy ra viện"),
    "XML8": ({"system": LOINC, "code": "34133-9", "display": "Summary of episode note"},
             "Tóm tắt hồ sơ bệnh án"),
}
SECTIONS = (("DIEN_BIEN_LS", "Diễn biến lâm sàng"), ("GIAI_DOAN_BENH", "Giai đoạn bệnh"),
            ("HOI_CHAN", "Hội chẩn"), ("PHAU_THUAT", "Phẫu thuật"))


def _document(ctx: Context, doc_id: str, coding: dict[str, str], title: str, attachment: dict[str, Any],
              written: str | None, authors: list[dict[str, Any]]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": doc_id,
        "status": "current",
        "type": {"coding": [dict(coding)], "text": title},
        "subject": {"reference": ctx.patient_ref},
        "content": [{"attachment": {**attachment, "title": title}}],
        "context": {"encounter": [{"reference": ctx.encounter_ref}]},
    }
    if stamp := instant(written):
        resource["date"] = stamp
    if written:
        resource["context"]["period"] = {"start": written}
    if authors:
        resource["author"] = authors
    return resource


def notes(records: list[Row], ctx: Context, out: Output) -> None:
    """XML5: each clinical-course row -> a progress-note DocumentReference with a text/plain attachment."""

    def one(f: dict[str, str], key: str) -> None:
        body = "\n\n".join(f"{label}: {text(f[name])}" for name, label in SECTIONS if name in f)
        if not body:
            raise MappingError("missing", "DIEN_BIEN_LS, GIAI_DOAN_BENH, HOI_CHAN and PHAU_THUAT all missing")
        written = when(f, "THOI_DIEM_DBLS", "NGAY_YL")
        attachment = {"contentType": "text/plain; charset=utf-8", "language": "vi",
                      "data": base64.b64encode(body.encode("utf-8")).decode("ascii")}
        resource = _document(ctx, ids.document_reference_id(ctx.facility, ctx.ma_lk, "XML5", key),
                             PROGRESS_NOTE, "Diễn biến lâm sàng", attachment, written,
                             practitioners(f, "NGUOI_THUC_HIEN"))
        out.events.append(ctx.event(resource, f"XML5/{key}/DocumentReference", written))

    each("XML5", records, ctx, out, one)


def paper(table: str, f: dict[str, str], document: bytes, ctx: Context, out: Output) -> None:
    """XML7 / XML8: the whole table document as an application/xml attachment, plus diagnosis and dates."""
    coding, title = DOCUMENT_TYPES[table]
    written = when(f, "NGAY_CT", "NGAY_RA")
    attachment = {"contentType": "application/xml", "language": "vi",
                  "data": base64.b64encode(document).decode("ascii")}
    authors = practitioners(f, "MA_BS") or practitioners(f, "MA_TTDV")
    resource = _document(ctx, ids.document_reference_id(ctx.facility, ctx.ma_lk, table, "1"), coding, title,
                         attachment, written, authors)
    if "CHAN_DOAN_RV" in f:
        resource["description"] = text(f["CHAN_DOAN_RV"])
    out.events.append(ctx.event(resource, f"{table}/1/DocumentReference", written))
    out.counts[f"{table}.rows"] += 1
