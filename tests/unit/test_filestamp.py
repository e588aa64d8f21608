"""file_stamp: a missing file is None; a file replaced by a rename is a change even with the same size and time."""

from __future__ import annotations

import os
from pathlib import Path

from hub.filestamp import file_stamp


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert file_stamp(tmp_path / "khong-co.toml") is None


def test_a_file_renamed_into_place_is_a_change_with_the_same_size_and_time(tmp_path: Path) -> None:
    path, new = tmp_path / "subscriptions.toml", tmp_path / "subscriptions.toml.new"
    path.write_text('name = "người-cao-tuổi"\n', encoding="utf-8")
    new.write_text('name = "học-sinh-lớp-10"\n', encoding="utf-8")  # same length in bytes
    st = path.stat()
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = file_stamp(path)
    os.replace(new, path)
    after = file_stamp(path)
    assert before is not None and after is not None
    assert before[1:] == after[1:] and before != after  # only the inode tells them apart
