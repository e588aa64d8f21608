"""MLLP: framing, the listener hospitals connect to, ACK building, and the sender used by ``hub send``."""
