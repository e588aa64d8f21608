"""The edge: protocol servers, file readers, and translation of each source format into canonical events."""
