"""Keeping a long-running process's policy equal to ``config/policy.yaml``.

A worker or beat loads the policy when it starts and may run for weeks. When the desk
tightens a limit, every process must enforce the new file from its next decision on, not
from its next restart. :class:`PolicyWatch` looks at the file's (inode, size, mtime) before
each decision and reloads it when they changed.

A file changed into something invalid, or removed after a policy was loaded, fails closed:
:meth:`PolicyWatch.current` raises until the file is mended, and the callers send nothing
meanwhile. Enforcing the last good version instead would keep a limit the desk meant to
change, and no policy at all would allow everything.
"""

from __future__ import annotations

import os
from pathlib import Path

from treasury.errors import ConfigError
from treasury.policy.model import Policy, load_policy

Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class PolicyWatch:
    """The policy in ``path`` now; ``loaded`` is what the process started with (None: no file)."""

    def __init__(self, path: Path, loaded: Policy | None) -> None:
        self.path = Path(path)
        self.policy = loaded
        self._stamp = _stamp(self.path)

    def current(self) -> Policy | None:
        """The policy to enforce now, reloaded if the file changed since the last look.

        Returns None only when there never was a policy file and there still is none.

        Raises:
            ConfigError: the file is now invalid, unreadable, or gone after a policy was
                loaded (naming the file and the problem); nothing may be sent until it is mended.
        """
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return self.policy
        if stamp is None:
            if self.policy is None:
                self._stamp = None
                return None
            raise ConfigError("the policy file was removed while this process enforces it; restore it "
                              "(or restart the process to run without a policy)", source=str(self.path))
        fresh = load_policy(self.path)  # raises ConfigError, naming file:line:col
        self._stamp = stamp
        if self.policy is None or fresh.digest != self.policy.digest:
            self.policy = fresh
        return self.policy
