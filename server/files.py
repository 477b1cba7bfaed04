"""Reading and writing the server's key and certificate files.

Shared by :mod:`session_proxy_server.auth` and :mod:`session_proxy_server.tls`:
a secret is written with its permissions set before any byte lands, an existing file is never
replaced by accident, and a file that cannot be read is named in the error.
"""

from __future__ import annotations

import os
from pathlib import Path


class PathExists(FileExistsError):
    """A file the caller would overwrite exists; ``path`` names it."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def _exists_error(path: Path, replaces: str) -> FileExistsError:
    return PathExists(
        f"{path} already exists; refusing to overwrite it "
        f"(pass overwrite=True to replace {replaces})",
        path,
    )


def refuse_existing(paths: tuple[Path, ...], replaces: str) -> None:
    """Raise :class:`FileExistsError` (with ``path``) if any of ``paths`` exists.

    Checked before a set of files is written, so none of them is.
    """
    for path in paths:
        if path.exists():
            raise _exists_error(path, replaces)


def write_file(path: Path, data: bytes, mode: int, overwrite: bool, replaces: str) -> None:
    """Write ``data`` to ``path`` with ``mode``, set before any byte is written.

    Without ``overwrite`` an existing file raises :class:`FileExistsError`
    naming it and suggesting ``overwrite=True`` to replace ``replaces``.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise _exists_error(path, replaces) from None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask or an old file may have left another mode
        handle.write(data)


def read_file(path: Path, what: str, error: type[Exception]) -> bytes:
    """The bytes of ``path``; ``error`` names the file (``what``) when it can't be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} file {path} is a directory") from None
    except OSError as exc:
        raise error(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
