"""Reading files with the size limit applied while reading: the one loader for every file.

Workflow files (``run``, ``validate``, beat), ``keys.yaml``, ``policy.yaml``,
``simulator.yaml``, approvers and people files all come through here. A file is read as
bytes, at most ``limit + 1`` of them, so ``/dev/zero`` or a 10 GB file is refused after
reading a little more than the limit, never loaded whole. Every refusal is one error type,
``FileRefused`` (a ``ConfigError``, exit 2), whose message starts with the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from treasury.errors import FileRefused

Stamp = tuple[int, int, int]


def file_stamp(path: Path | str) -> Stamp | None:
    """``(inode, size, mtime_ns)`` of ``path``, or None when it does not exist.

    What a long-running process compares to see that a config file changed (replaced by a
    rename, edited in place, or touched); equal stamps mean there is no need to read it again.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def describe_limit(limit: int) -> str:
    """``256 KiB``, ``1 MB``: how a limit reads in a message."""
    if limit % 1024 == 0 and limit < 1_000_000:
        return f"{limit // 1024} KiB"
    if limit % 1_000_000 == 0:
        return f"{limit // 1_000_000} MB"
    return f"{limit} bytes"


def read_bounded(path: Path | str, limit: int) -> bytes:
    """The bytes of ``path``, refused once more than ``limit`` bytes have been read.

    Raises:
        FileRefused: missing (``missing`` set), a folder, a pipe or socket, unreadable, or
            larger than ``limit`` (``size`` set when the file's size is known).
    """
    name = str(path)
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer; it is refused below
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileRefused(name, "file not found", missing=True) from None
    except IsADirectoryError:
        raise FileRefused(name, "cannot read the file: it is a folder") from None
    except OSError as exc:
        raise FileRefused(name, f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "a pipe or socket"
        raise FileRefused(name, f"cannot read the file: it is {what}")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise FileRefused(name, f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
        told = f"the file is {size} bytes" if size is not None else f"the file is larger than {limit} bytes"
        raise FileRefused(name, f"{told}; such files are limited to {describe_limit(limit)}",
                          too_large=True, size=size)
    return data


def decode_text(data: bytes, path: Path | str) -> str:
    """``data`` as UTF-8 text.

    Raises:
        FileRefused: not UTF-8, located at the first bad byte (``line``, ``col``).
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FileRefused(str(path), "the file is not valid UTF-8 text", line=line, col=col) from None


def load_text(path: Path | str, limit: int) -> str:
    """``read_bounded`` then ``decode_text``: the text of a file of at most ``limit`` bytes.

    Raises:
        FileRefused: as ``read_bounded`` and ``decode_text``.
    """
    return decode_text(read_bounded(path, limit), path)


__all__ = ["decode_text", "describe_limit", "load_text", "read_bounded"]
