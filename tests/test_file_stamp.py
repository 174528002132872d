"""The one "did this config file change?" check that the policy and people watches share."""

from __future__ import annotations

import os
from pathlib import Path

from treasury.files import file_stamp


def test_a_stamp_changes_with_every_kind_of_edit(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    assert file_stamp(path) is None  # missing
    path.write_text("a: 1\n")
    first = file_stamp(path)
    assert first is not None and file_stamp(str(path)) == first  # nothing changed: equal
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    touched = file_stamp(path)
    assert touched != first  # same bytes, new mtime
    path.write_text("a: 2\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert file_stamp(path) == touched  # same size and mtime, edited in place: equal (by design)
    new = tmp_path / "policy.yaml.new"
    new.write_text("a: 2\n")
    os.utime(new, ns=(1_000_000_000, 1_000_000_000))
    new.replace(path)  # an editor's save: same size and mtime, another inode
    assert file_stamp(path) != touched
