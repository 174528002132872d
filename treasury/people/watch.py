"""Keeping a long-running process's people registry equal to ``config/people.yaml``.

A worker verifies signatures before every send. When the desk registers or revokes a key, the
worker must judge the next send by the file as it is now, or a fresh approval signed with a
new key would be parked and a revoked key would still count. :class:`PeopleWatch` looks at
the file's (inode, size, mtime) and reloads it when they changed. A file changed into
something invalid, or removed, fails closed: :meth:`PeopleWatch.current` raises and nothing is
sent until it is mended.
"""

from __future__ import annotations

from pathlib import Path

from treasury.errors import ConfigError
from treasury.files import file_stamp
from treasury.people.registry import People, load_people


class PeopleWatch:
    """The registry in ``path`` now; ``loaded`` is what the process started with."""

    def __init__(self, path: Path, loaded: People) -> None:
        self.path = Path(path)
        self.people = loaded
        self._stamp = file_stamp(self.path)

    def current(self) -> People:
        """The registry as the file is now (reloaded when it changed).

        Raises:
            ConfigError: the file became invalid or was removed (naming the file).
        """
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return self.people
        if stamp is None:
            raise ConfigError("the people registry was removed while this process uses it; restore it",
                              source=str(self.path))
        self.people = load_people(self.path)  # raises ConfigError, naming file:line:col
        self._stamp = stamp
        return self.people
