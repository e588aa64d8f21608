"""FHIR R4 Bundles (JSON: collection, transaction, batch, document) -> canonical events.

    from connectors.fhir import read_bundle
    result = read_bundle("export.json", received_at="2026-12-01T08:00:00+07:00")
    result.events     # canonical envelopes (hub.envelope), one per clinical entry
    result.failures   # one EntryFailure per entry that is invalid or cannot be linked (index, type, field)
    result.error      # set when nothing could be used (bad JSON, not a Bundle, over the size limit ...)

Each entry is validated with the fhir.resources R4B models; invalid entries are reported and the valid ones
still map. See ``translate`` for ids, references, subjects and sensitivity.
"""

from connectors.fhir.bundle import BUNDLE_TYPES, DEFAULT_MAX_BYTES, BundleError
from connectors.fhir.results import SOURCE_SYSTEM, BundleResult, EntryEvents, EntryFailure
from connectors.fhir.translate import EVENT_TYPE, read_bundle, translate_bundle

__all__ = [
    "BUNDLE_TYPES", "DEFAULT_MAX_BYTES", "EVENT_TYPE", "SOURCE_SYSTEM", "BundleError", "BundleResult",
    "EntryEvents", "EntryFailure", "read_bundle", "translate_bundle",
]
