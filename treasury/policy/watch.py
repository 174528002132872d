"""Keeping a long-running process's policy equal to ``config/policy.yaml``.

A worker or beat loads the policy when it starts and may run for weeks. When the desk
tightens a limit, every process must enforce the new file from its next decision on, not
from its next restart. :class:`PolicyWatch` looks at the file's (inode, size, mtime) before
each decision and reloads it when they changed.

A missing file, or one changed into something invalid, fails closed: :meth:`PolicyWatch.current`
raises until the file is there and valid, and the callers send nothing meanwhile. Enforcing
the last good version instead would keep a limit the desk meant to change, and no policy at
all would allow everything. Only a file that says ``policy: none`` runs without rules, and
only in the simulator environment.
"""

from __future__ import annotations

from pathlib import Path

from treasury.errors import ConfigError
from treasury.files import file_stamp
from treasury.policy.model import MISSING_POLICY, Policy, check_environment, load_policy


class PolicyWatch:
    """The policy in ``path`` now; ``loaded`` is what the process started with (None: no file).

    ``env`` is ``TREASURY_ENV``: a file that says ``policy: none`` is enforced (as no rules)
    only in ``simulator``.
    """

    def __init__(self, path: Path, loaded: Policy | None, *, env: str = "simulator") -> None:
        self.path = Path(path)
        self.policy = loaded
        self.env = env
        self._stamp = file_stamp(self.path) if loaded is not None else None

    def current(self) -> Policy:
        """The policy to enforce now, reloaded if the file changed since the last look.

        Raises:
            ConfigError: the file is missing (never there, or removed), invalid, unreadable,
                or ``policy: none`` outside the simulator (naming the file and the problem);
                nothing may be sent until it is mended.
        """
        stamp = file_stamp(self.path)
        if stamp is None:
            if self.policy is None:
                raise ConfigError(MISSING_POLICY, source=str(self.path))
            raise ConfigError("the policy file was removed while this process enforces it: no money-moving "
                              "operation runs until it is restored", source=str(self.path))
        if stamp == self._stamp and self.policy is not None:
            return self.policy
        fresh = check_environment(load_policy(self.path), self.env)  # raises ConfigError, naming file:line:col
        self._stamp = stamp
        if self.policy is None or fresh.digest != self.policy.digest:
            self.policy = fresh
        return self.policy
