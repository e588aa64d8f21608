"""HL7 v2 (ER7) messages: decoding, a lean parser, and translation into canonical events."""
