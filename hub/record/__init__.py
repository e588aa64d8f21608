"""The citizen's lifelong record, built only from events and served from Redis."""
