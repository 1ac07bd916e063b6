"""Files that may be something else: a directory, a FIFO or a device where a file should be is refused,
never opened (reading a FIFO waits for a writer forever; SQLite on one retries through every signal).

Each caller turns `NotAFileError` into its own error (a config error for inputs, a state error for
madengine's own files); OSError (a missing file...) stays the caller's to report.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Literal

from madengine.errors import ConfigError, FileSystemError


class NotAFileError(Exception):
    """Something other than a regular file is at that path; `what` says it: "a directory",
    "not a regular file"."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file"


def refuse_non_file(path: str | os.PathLike[str]) -> None:
    """NotAFileError if something other than a regular file is at `path`; nothing if nothing is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    what = _kind(mode)
    if what is not None:
        raise NotAFileError(what)


def open_file(path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """`os.open` of a regular file only: anything else is refused before it is opened, and opened without
    blocking so that one put there in the meantime cannot hang us either (then refused by its fd)."""
    refuse_non_file(path)
    fd = os.open(path, flags | os.O_NONBLOCK, mode)
    what = _kind(os.fstat(fd).st_mode)
    if what is not None:
        os.close(fd)
        raise NotAFileError(what)
    return fd


def decode_utf8(raw: bytes, shown: str, *, what: str = "not UTF-8 text", hint: str) -> str:
    """The text of an input file's bytes (a BOM that some editors write is not an error), or a ConfigError
    at the line and column of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        raise ConfigError(f"{what}: byte 0x{raw[start]:02x} cannot be decoded", file=shown, line=line,
                          column=column, hint=hint) from None


def write_atomic(path: Path, data: bytes, *, shown: str | os.PathLike[str] | None = None,
                 doing: Literal["write"] | None = None) -> bool:
    """Write a file others read (the lock, a baseline, a report, an export) atomically: a reader sees the
    old bytes or the new, never half; return False when the file already held exactly these bytes (it is
    not touched then). The bytes go to a temporary file of a unique name in the same directory (two
    writers at once never share one), synced, then renamed over `path`; a write that fails leaves no
    temporary file. The file is 0644, as a web server or a colleague needs it (mkstemp makes 0600).

    A full or read-only file system (or a permission) is a FileSystemError naming `shown` (default
    `path`); any other OSError (a directory at `path`, a missing parent) is the caller's to word."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        # only a regular file of the same size is read: a FIFO there would block the read forever
        if stat.S_ISREG(st.st_mode) and st.st_size == len(data) and path.read_bytes() == data:
            return False
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):  # on a read-only file system there is none to remove
                os.unlink(tmp)
        if isinstance(exc, OSError) and (error := FileSystemError.of(exc, shown or path, doing=doing)):
            raise error from exc
        raise
    return True
