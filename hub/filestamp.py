"""How the hub's files that are re-read while a process runs (API tokens, subscriptions) notice a change."""

from __future__ import annotations

from pathlib import Path

Stamp = tuple[int, int, int]


def file_stamp(path: Path) -> Stamp | None:
    """(inode, modification time in ns, size) of the file, or None while there is none. The inode catches a file
    replaced by a rename (an editor's save, a Kubernetes ConfigMap update) within the clock's resolution."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
