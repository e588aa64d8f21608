"""Translation benchmark: HL7 v2 bytes -> canonical events (parse + map + serialise) on one core.

    .venv/bin/python -m bench.translate [--seconds 3] [--messages 200]

Two workloads from the test corpus: ADT^A01 (tests/data/hl7/adt_a01_nguyen_van_an.hl7, Patient + Encounter)
and ORU^R01 with 10 OBX (tests/data/hl7/corpus/oru_r01_cbc_10_obx.hl7, DiagnosticReport + 10 Observations),
each as ``--messages`` distinct messages (MSH-10 and the patient number vary). Three implementations run on
the same messages in the same process, pinned to one CPU:

- ``hub``: ``connectors.hl7v2.translate`` then ``Envelope.to_json`` for every event (what the translator
  stage does per message);
- ``hl7apy + fhir.resources``: hl7apy ``parse_message`` (tolerant, groups), the same fields read from its
  tree, the same resources built as fhir.resources R4B models and dumped with ``model_dump_json``;
- ``python-hl7 + fhir.resources``: ``hl7.parse``, the same fields via ``extract_field``, the same models.

The baselines map a subset of what the hub maps (no envelope, no sensitivity, no ids by uuid5), so the
ratios understate the difference. Targets (issue 4): ADT^A01 >= 5,000 msg/s, ORU^R01 (10 OBX) >= 3,000 msg/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hl7
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from connectors.hl7v2.datatypes import to_iso
from connectors.hl7v2.translate import translate

ROOT = Path(__file__).resolve().parents[1]
ADT_FILE = ROOT / "tests" / "data" / "hl7" / "adt_a01_nguyen_van_an.hl7"
ORU_FILE = ROOT / "tests" / "data" / "hl7" / "corpus" / "oru_r01_cbc_10_obx.hl7"
RECEIVED_AT = "2026-03-05T10:00:00.000+07:00"
TARGETS = {"ADT^A01": 5000, "ORU^R01 (10 OBX)": 3000}
SEX = {"M": "male", "F": "female", "O": "other", "U": "unknown"}


def _vary_results(raw: bytes, i: int) -> bytes:
    """Give every numeric OBX-5 of message ``i`` its own value, so no memoised helper sees a result twice
    in a row (codes, units and ranges stay the same, as in a real feed)."""
    segments = raw.split(b"\r")
    for n, segment in enumerate(segments):
        fields = segment.split(b"|")
        if fields[0] == b"OBX" and len(fields) > 5 and fields[2] == b"NM":
            fields[5] = fields[5] + f"{i % 97:02d}".encode() if b"." in fields[5] else fields[5] + f".{i % 97}".encode()
            segments[n] = b"|".join(fields)
    return b"\r".join(segments)


def variants(path: Path, count: int, control_id: str, patient_number: str) -> list[bytes]:
    """``count`` distinct messages: the control id and one patient number get a running suffix, and numeric
    results differ from message to message."""
    raw = path.read_bytes()
    return [_vary_results(raw.replace(control_id.encode(), f"{control_id}-{i}".encode())
                          .replace(patient_number.encode(), f"{patient_number[:-4]}{i:04d}".encode()), i)
            for i in range(count)]


# --- the FHIR side of both baselines: the same resources, as fhir.resources models --------------------------

def fhir_adt(v: dict[str, Any]) -> list[str]:
    patient = Patient.model_validate({
        "resourceType": "Patient", "id": "p1",
        "identifier": [{"system": f"urn:id:{t or 'MR'}", "value": value} for value, t in v["ids"]],
        "name": [{"family": v["family"], "given": [g for g in (v["middle"], v["given"]) if g]}],
        "gender": SEX.get(v["sex"], "unknown"), "birthDate": to_iso(v["dob"], "PID-7"),
        "address": [{"line": [v["street"]], "city": v["city"], "country": v["country"]}],
        "telecom": [{"system": "phone", "value": v["phone"]}],
    })
    encounter = Encounter.model_validate({
        "resourceType": "Encounter", "id": "e1", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                  "code": "IMP" if v["class"] == "I" else "AMB"},
        "subject": {"reference": "Patient/p1"},
        "identifier": [{"system": "urn:visit", "value": v["visit"]}],
        "period": {"start": to_iso(v["admit"], "PV1-44")},
        "location": [{"location": {"display": v["location"]}}],
    })
    return [patient.model_dump_json(), encounter.model_dump_json()]


def fhir_oru(v: dict[str, Any]) -> list[str]:
    out = []
    refs = []
    for i, obx in enumerate(v["obx"]):
        low, _, high = obx["range"].partition("-")
        observation = Observation.model_validate({
            "resourceType": "Observation", "id": f"o{i}", "status": "final" if obx["status"] == "F" else "unknown",
            "code": {"coding": [{"system": "http://loinc.org", "code": obx["code"], "display": obx["display"]}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": to_iso(obx["time"], "OBX-14"),
            "valueQuantity": {"value": float(obx["value"]), "unit": obx["unit"]},
            "referenceRange": [{"low": {"value": float(low)}, "high": {"value": float(high)}}] if high else [],
            "interpretation": [{"coding": [{"code": obx["flag"]}]}] if obx["flag"] else [],
        })
        out.append(observation.model_dump_json())
        refs.append({"reference": f"Observation/o{i}"})
    report = DiagnosticReport.model_validate({
        "resourceType": "DiagnosticReport", "id": "r1", "status": "final" if v["status"] == "F" else "unknown",
        "code": {"coding": [{"system": "http://loinc.org", "code": v["code"], "display": v["display"]}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": to_iso(v["time"], "OBR-7"), "result": refs,
    })
    return [report.model_dump_json(), *out]


# --- hl7apy ---------------------------------------------------------------------------------------------------

def _segments(element: Any) -> list[Any]:
    found = []
    for child in element.children:
        found += [child] if child.classname == "Segment" else _segments(child)
    return found


def _hv(segment: Any, field: int, component: int = 1, repetition: int = 0) -> str:
    """The value of a component of a field repetition from hl7apy's tree ("" when absent)."""
    reps = segment.children.get(f"{segment.name}_{field}")
    if len(reps) <= repetition:
        return ""
    rep = reps[repetition]
    suffix = f"_{component}"
    for child in rep.children:
        if child.name and child.name.endswith(suffix):
            return child.to_er7()
    simple = not any(child.name and "_" in child.name for child in rep.children)
    return rep.to_er7() if component == 1 and simple else ""


def hl7apy_adt(raw: bytes) -> list[str]:
    message = parse_message(raw.decode("utf-8").replace("\n", "\r"), validation_level=VALIDATION_LEVEL.TOLERANT)
    segs = {s.name: s for s in _segments(message)}
    pid, pv1 = segs["PID"], segs["PV1"]
    ids = [(_hv(pid, 3, 1, i), _hv(pid, 3, 5, i)) for i in range(len(pid.children.get("PID_3")))]
    return fhir_adt({"ids": ids, "family": _hv(pid, 5, 1), "given": _hv(pid, 5, 2), "middle": _hv(pid, 5, 3),
                     "sex": _hv(pid, 8), "dob": _hv(pid, 7), "street": _hv(pid, 11, 1), "city": _hv(pid, 11, 3),
                     "country": _hv(pid, 11, 6), "phone": _hv(pid, 13, 1), "class": _hv(pv1, 2),
                     "location": _hv(pv1, 3, 1), "visit": _hv(pv1, 19, 1), "admit": _hv(pv1, 44, 1)})


def hl7apy_oru(raw: bytes) -> list[str]:
    message = parse_message(raw.decode("utf-8").replace("\n", "\r"), validation_level=VALIDATION_LEVEL.TOLERANT)
    segments = _segments(message)
    obr = next(s for s in segments if s.name == "OBR")
    obx = [{"code": _hv(s, 3, 1), "display": _hv(s, 3, 2), "value": _hv(s, 5), "unit": _hv(s, 6, 1),
            "range": _hv(s, 7), "flag": _hv(s, 8), "status": _hv(s, 11), "time": _hv(s, 14, 1)}
           for s in segments if s.name == "OBX"]
    return fhir_oru({"code": _hv(obr, 4, 1), "display": _hv(obr, 4, 2), "status": _hv(obr, 25),
                     "time": _hv(obr, 7, 1), "obx": obx})


# --- python-hl7 -----------------------------------------------------------------------------------------------

def _pv(segment: Any, field: int, component: int = 1, repetition: int = 1) -> str:
    try:
        return segment.extract_field(field_num=field, repeat_num=repetition, component_num=component)
    except IndexError:
        return ""


def python_hl7_adt(raw: bytes) -> list[str]:
    message = hl7.parse(raw.decode("utf-8"))
    pid, pv1 = message.segment("PID"), message.segment("PV1")
    ids = [(_pv(pid, 3, 1, r), _pv(pid, 3, 5, r)) for r in range(1, len(pid(3)) + 1)]
    return fhir_adt({"ids": ids, "family": _pv(pid, 5, 1), "given": _pv(pid, 5, 2), "middle": _pv(pid, 5, 3),
                     "sex": _pv(pid, 8), "dob": _pv(pid, 7), "street": _pv(pid, 11, 1), "city": _pv(pid, 11, 3),
                     "country": _pv(pid, 11, 6), "phone": _pv(pid, 13, 1), "class": _pv(pv1, 2),
                     "location": _pv(pv1, 3, 1), "visit": _pv(pv1, 19, 1), "admit": _pv(pv1, 44, 1)})


def python_hl7_oru(raw: bytes) -> list[str]:
    message = hl7.parse(raw.decode("utf-8"))
    obr = message.segment("OBR")
    obx = [{"code": _pv(s, 3, 1), "display": _pv(s, 3, 2), "value": _pv(s, 5), "unit": _pv(s, 6, 1),
            "range": _pv(s, 7), "flag": _pv(s, 8), "status": _pv(s, 11), "time": _pv(s, 14, 1)}
           for s in message.segments("OBX")]
    return fhir_oru({"code": _pv(obr, 4, 1), "display": _pv(obr, 4, 2), "status": _pv(obr, 25),
                     "time": _pv(obr, 7, 1), "obx": obx})


# --- the hub ----------------------------------------------------------------------------------------------------

def hub(raw: bytes) -> list[bytes]:
    return [event.to_json() for event in translate(raw, received_at=RECEIVED_AT)]


# --- measuring --------------------------------------------------------------------------------------------------

def measure(fn: Callable[[bytes], list[Any]], messages: list[bytes], seconds: float) -> tuple[int, float, float]:
    """Run ``fn`` over the messages, round after round, for at least ``seconds`` (and one full round).
    Returns (messages, wall seconds, CPU seconds of this process)."""
    for raw in messages[:10]:
        fn(raw)  # warm caches and imports outside the clock
    done = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        for raw in messages:
            fn(raw)
        done += len(messages)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done, elapsed, time.process_time() - cpu_start


def _idle_times() -> dict[int, int]:
    """Idle jiffies per CPU from /proc/stat (Linux); {} elsewhere."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            out[int(name[3:])] = int(values[3]) + int(values[4])  # idle + iowait
    return out


def pin_one_core() -> str:
    """Pin this process to the CPU that was idlest over the last half second (the machine may be shared)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        return "not pinned (no sched_setaffinity)"
    before = _idle_times()
    time.sleep(0.5)
    after = _idle_times()
    idle = {cpu: after[cpu] - before.get(cpu, 0) for cpu in after if cpu in allowed}
    cpu = max(idle, key=idle.__getitem__) if idle else min(allowed)
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu} (the idlest of {len(allowed)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per implementation and workload")
    parser.add_argument("--messages", type=int, default=200, help="distinct messages per workload")
    args = parser.parse_args()
    pinned = pin_one_core()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    workloads = {
        "ADT^A01": (variants(ADT_FILE, args.messages, "CR-20260115-000123", "CR0012345"),
                    (("hub", hub), ("hl7apy + fhir.resources", hl7apy_adt),
                     ("python-hl7 + fhir.resources", python_hl7_adt))),
        "ORU^R01 (10 OBX)": (variants(ORU_FILE, args.messages, "LIS-R01-0001", "CR0099001"),
                             (("hub", hub), ("hl7apy + fhir.resources", hl7apy_oru),
                              ("python-hl7 + fhir.resources", python_hl7_oru))),
    }
    rows: list[list[str]] = []
    for workload, (messages, implementations) in workloads.items():
        rates: dict[str, float] = {}
        results = []
        for name, fn in implementations:
            done, elapsed, cpu = measure(fn, messages, args.seconds)
            rates[name] = done / elapsed
            results.append((name, done, elapsed, cpu))
        for name, done, elapsed, cpu in results:
            ratio = "-" if name == "hub" else f"{rates['hub'] / rates[name]:,.1f}x"
            target = f">= {TARGETS[workload]:,}" if name == "hub" else ""
            verdict = ("met" if rates[name] >= TARGETS[workload] else "MISSED") if name == "hub" else ""
            rows.append([workload, name, f"{done:,}", f"{elapsed:.2f}", f"{rates[name]:,.0f}",
                         f"{done / cpu:,.0f}" if cpu else "-", ratio, f"{target} {verdict}".strip()])
    head = ["workload", "implementation", "messages", "seconds", "msg/s", "msg/CPU-s", "hub is", "target"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print("HL7 v2 -> canonical events: parse + map + serialise, one core")
    print(f"conditions: {platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {pinned}, {args.messages} distinct messages per workload, "
          f"{args.seconds:g} s per row, load average {load:.2f} at start")
    print(fmt.format(*head))
    print(fmt.format(*("-" * w for w in widths)))
    for row in rows:
        print(fmt.format(*row))
    print("'hub is': the hub's msg/s divided by that baseline's, measured in the same run on the same messages")
    print("msg/CPU-s: messages per second of CPU time this process got (lower than msg/s means it shared the core);"
          " the target verdict uses wall-clock msg/s")


if __name__ == "__main__":
    main()
