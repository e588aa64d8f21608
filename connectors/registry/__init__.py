"""Vaccination registry CSV exports (shared/reference/vaccination-registry-export.md) -> canonical events:
one Patient and one Immunization per row (dose)."""

from connectors.registry.read import COLUMNS, BadRow, RegistryFormatError, Row, iter_values, read_rows, row_of
from connectors.registry.translate import translate_row

__all__ = ["COLUMNS", "BadRow", "RegistryFormatError", "Row", "iter_values", "read_rows", "row_of", "translate_row"]
