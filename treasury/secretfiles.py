"""Files that hold secrets must be private to their owner, as ssh insists for private keys.

A key profile's ``secret_file`` and a person's identity key file are checked with
:func:`check_private_file` before they are read: a file that the group or others may read
(or write) gets a warning, and with ``TREASURY_ENV=production`` a refusal, so a secret that
anyone on the machine could copy is never used to move real money.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from treasury.errors import ConfigError

log = logging.getLogger(__name__)

# Group and other permission bits: any of them set means someone besides the owner has access.
_SHARED = stat.S_IRWXG | stat.S_IRWXO


def check_private_file(path: Path, env: str, *, what: str = "secret file") -> str | None:
    """Check that only the owner of ``path`` may read or write it.

    ``env`` is ``TREASURY_ENV`` (``simulator``, ``sandbox`` or ``production``, or the
    ``Environment`` enum); ``what`` names the file in the message (e.g. ``secret file of key
    profile 'ops'``). Returns None when the file is private; otherwise logs and returns a
    warning (outside production). Never reads the file's content.

    Raises:
        ConfigError: the group or others may access the file and ``env`` is ``production``,
            or the file cannot be inspected (missing, no permission); naming the file.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {exc.strerror}", source=str(path)) from exc
    if os.name != "posix" or not mode & _SHARED:
        return None
    who = " and ".join(w for w, bits in (("its group", stat.S_IRWXG), ("others", stat.S_IRWXO)) if mode & bits)
    problem = (f"{what} is accessible to {who} (mode {mode:04o}); a secret must be readable by its owner "
               f"only: chmod 600 {path}")
    if str(getattr(env, "value", env)) == "production":
        raise ConfigError(f"{problem}. Refused with TREASURY_ENV=production", source=str(path))
    warning = f"{path}: {problem}"
    log.warning("warning: %s", warning)
    return warning


__all__ = ["check_private_file"]
