"""Who may send HL7 v2 to the hub: the sources file, loaded at start and reloaded when it changes.

The file is TOML (stdlib ``tomllib``; format documented in ``deploy/local/sources.toml``)::

    open_mode = false            # true accepts any facility: local demos only, never in production

    [[facility]]
    code = "79010"               # MA_CSKCB, compared with MSH-4 (HD.1)
    name = "Bệnh viện Chợ Rẫy"
    applications = ["HIS"]       # allowed MSH-3 (HD.1) values; empty or absent = any
    charset = "utf-8"            # utf-8 (default), windows-1258, latin-1 ...
    honour_msh18 = false         # trust MSH-18 over ``charset`` (real feeds often declare it wrongly)
    validate = false             # strict hl7apy conformance check on ingestion (slow; AE when it fails)
    tls_client_sha256 = "ab:cd…" # optional: the SHA-256 fingerprint of the client certificate that
    tls_client_cn = "his.cr.vn"  #   identifies it, and/or its subject CN; a message over TLS from another
                                 #   certificate, or over plain TCP, gets AR

A bad file at start stops the listener with the reason; a bad file on reload is logged and the previous
configuration stays in force, so a typo never takes every feed down.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.logging import get_logger
from hub.settings import Settings

log = get_logger("mllp.sources")

# HL7 table 0211 (MSH-18) names -> Python codecs, for sources that trust MSH-18.
HL7_CHARSETS = {
    "ASCII": "ascii", "8859/1": "latin-1", "8859/2": "iso8859-2", "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UNICODE": "utf-8", "WINDOWS-1258": "cp1258", "CP1258": "cp1258",
}


class SourcesError(ValueError):
    """The sources file is missing, unreadable or invalid; the message says where."""


@dataclass(frozen=True, slots=True)
class Facility:
    code: str
    name: str = ""
    applications: frozenset[str] = frozenset()
    charset: str = "utf-8"
    honour_msh18: bool = False
    validate: bool = False
    tls_client_sha256: str = ""  # lower-case hex without separators
    tls_client_cn: str = ""

    @property
    def requires_certificate(self) -> bool:
        return bool(self.tls_client_sha256 or self.tls_client_cn)

    def charset_for(self, msh18: str) -> str:
        """The charset to decode with: MSH-18 only when this source says it can be trusted."""
        if self.honour_msh18 and msh18:
            return HL7_CHARSETS.get(msh18.strip().upper(), self.charset)
        return self.charset


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    sha256: str  # lower-case hex of the DER bytes
    cn: str

    @classmethod
    def from_der(cls, der: bytes, peercert: dict[str, Any] | None) -> "ClientCertificate":
        cn = ""
        for rdn in (peercert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    cn = value
        return cls(hashlib.sha256(der).hexdigest(), cn)


@dataclass(frozen=True, slots=True)
class Admission:
    """The verdict on one message's sender: a facility to use, or the reason for AR."""

    facility: Facility | None
    reason: str = ""


@dataclass(frozen=True)
class Sources:
    facilities: dict[str, Facility] = field(default_factory=dict)
    open_mode: bool = False
    default_charset: str = "utf-8"

    def admit(self, facility_code: str, application: str, cert: ClientCertificate | None) -> Admission:
        """Check MSH-4/MSH-3 (and the TLS client certificate) against the configuration."""
        facility = self.facilities.get(facility_code)
        if facility is None:
            if self.open_mode:
                return Admission(Facility(facility_code, charset=self.default_charset))
            return Admission(None, f"sending facility (MSH-4) {facility_code or '(empty)'} is not a configured source")
        if facility.applications and application not in facility.applications:
            return Admission(None, f"sending application (MSH-3) {application or '(empty)'} is not allowed "
                                   f"for facility {facility_code}")
        if facility.requires_certificate:
            if cert is None:
                return Admission(None, f"facility {facility_code} must send over TLS with its client certificate")
            if (facility.tls_client_sha256 and cert.sha256 != facility.tls_client_sha256) or \
                    (facility.tls_client_cn and cert.cn != facility.tls_client_cn):
                return Admission(None, f"the client certificate does not identify facility {facility_code} (MSH-4)")
        return Admission(facility)


def _check_charset(name: str, where: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise SourcesError(f"{where}: unknown charset {name!r}") from None
    return name


def _flag(entry: dict[str, Any], key: str, where: str) -> bool:
    """A true/false setting; a string such as "false" would be truthy, so anything but a TOML boolean is refused."""
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise SourcesError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def parse_sources(data: dict[str, Any], where: str = "sources") -> Sources:
    unknown = set(data) - {"open_mode", "facility", "defaults"}
    if unknown:
        raise SourcesError(f"{where}: unknown top-level keys {sorted(unknown)}")
    defaults = data.get("defaults", {})
    default_charset = _check_charset(str(defaults.get("charset", "utf-8")), f"{where} [defaults]")
    facilities: dict[str, Facility] = {}
    allowed = {"code", "name", "applications", "charset", "honour_msh18", "validate", "tls_client_sha256",
               "tls_client_cn"}
    for i, entry in enumerate(data.get("facility", [])):
        at = f"{where} [[facility]] #{i + 1}"
        if not isinstance(entry, dict) or not str(entry.get("code", "")).strip():
            raise SourcesError(f"{at}: every facility needs a non-empty code (MA_CSKCB)")
        bad = set(entry) - allowed
        if bad:
            raise SourcesError(f"{at}: unknown keys {sorted(bad)}")
        code = str(entry["code"]).strip()
        if code in facilities:
            raise SourcesError(f"{at}: facility {code} is listed twice")
        apps = entry.get("applications", [])
        if not isinstance(apps, list) or not all(isinstance(a, str) for a in apps):
            raise SourcesError(f"{at}: applications must be a list of strings")
        facilities[code] = Facility(
            code=code, name=str(entry.get("name", "")), applications=frozenset(apps),
            charset=_check_charset(str(entry.get("charset", default_charset)), at),
            honour_msh18=_flag(entry, "honour_msh18", at), validate=_flag(entry, "validate", at),
            tls_client_sha256=str(entry.get("tls_client_sha256", "")).replace(":", "").lower(),
            tls_client_cn=str(entry.get("tls_client_cn", "")),
        )
    return Sources(facilities, _flag(data, "open_mode", where), default_charset)


def load_sources(path: Path) -> Sources:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise SourcesError(f"cannot read the sources file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(f"{path}: not valid TOML: {exc}") from exc
    return parse_sources(data, str(path))


class SourcesFile:
    """The current configuration, re-read when the file's modification time changes (or on ``reload``)."""

    def __init__(self, path: Path | None, open_mode: bool = False) -> None:
        self.path = path
        self._mtime: float | None = None
        if path is None:
            self.current = Sources(open_mode=open_mode)
            return
        self.current = load_sources(path)  # at start a bad file is fatal: say why and stop
        self._mtime = os.stat(path).st_mtime
        if open_mode and not self.current.open_mode:
            self.current = Sources(self.current.facilities, True, self.current.default_charset)
        self._force_open = open_mode

    def reload(self) -> bool:
        """Re-read the file; keep the previous configuration when the new one is bad. True if it changed."""
        if self.path is None:
            return False
        try:
            self._mtime = os.stat(self.path).st_mtime  # a bad version is reported once, not on every poll
            sources = load_sources(self.path)
        except (OSError, SourcesError) as exc:
            log.error("sources file not reloaded; the previous configuration stays", error=str(exc))
            return False
        if self._force_open:
            sources = Sources(sources.facilities, True, sources.default_charset)
        self.current = sources
        log.info("sources reloaded", facilities=len(sources.facilities), open_mode=sources.open_mode)
        return True

    def reload_if_changed(self) -> bool:
        if self.path is None:
            return False
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            return False
        return mtime != self._mtime and self.reload()


def sources_from_settings(settings: Settings) -> SourcesFile:
    """The configured sources file; in open mode (demos) a missing file is allowed."""
    missing_ok = settings.mllp_open_mode and not settings.sources_file.exists()
    return SourcesFile(None if missing_ok else settings.sources_file, open_mode=settings.mllp_open_mode)
