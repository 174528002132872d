"""Where each field of a workflow file is: field paths, their dotted names, and their positions.

A field path is a tuple of mapping keys and list indexes (``("steps", 1, "params", "coin")``);
``PositionMap`` maps each path to the ``(line, col)`` it was written at, so every problem can
be reported as ``FILE:LINE:COL`` with the field's name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from treasury.yamlfile import field_path as field_path  # re-exported: one renderer of field paths

Path_ = tuple[str | int, ...]
Position = tuple[int, int]


@dataclass
class PositionMap(Mapping[Path_, Position]):
    """Field path → (line, col), 1-based.

    For a mapping entry the position is its key's; for a list item, the item's start.
    ``value_at`` gives where an entry's value starts (used to point at a template).
    """

    fields: dict[Path_, Position] = field(default_factory=dict)
    starts: dict[Path_, Position] = field(default_factory=dict)  # where each value starts

    def __getitem__(self, path: Path_) -> Position:
        return self.fields[tuple(path)]

    def __iter__(self) -> Iterator[Path_]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def locate(self, path: Path_) -> Position:
        """The position of ``path``, or of its nearest parent that has one (else 1:1)."""
        p = tuple(path)
        while p:
            if p in self.fields:
                return self.fields[p]
            p = p[:-1]
        return self.fields.get((), (1, 1))

    def value_at(self, path: Path_) -> Position:
        """Where the value at ``path`` starts (falls back to ``locate``)."""
        return self.starts.get(tuple(path)) or self.locate(path)
