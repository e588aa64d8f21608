"""HSSK Hub: the city's health-data interoperability hub (see ARCHITECTURE in the README)."""

__version__ = "0.1.0"
