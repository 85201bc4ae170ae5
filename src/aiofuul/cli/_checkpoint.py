"""The checkpoint of ``aiofuul import --checkpoint FILE``: how far the server has
acknowledged, so that a rerun continues there.

It records the number of leading records (``next_record``) whose events the server
acknowledged (stored, skipped as known, or refused for good), never what was merely
sent, plus a fingerprint of the input so that a checkpoint is never applied to
another file. It is rewritten atomically (temporary file, fsync, ``os.replace``) after
each acknowledged batch, so a crash at any moment leaves the old or the new one. The
file is readable and writable by its owner only (mode 0600, never more whatever the
umask).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TypeVar

import msgspec

from ._common import CLIError

__all__ = ["Checkpoint", "Fingerprint", "read_checkpoint", "write_atomically"]

_VERSION = 1
_S = TypeVar("_S", bound=msgspec.Struct)


def read_checkpoint(path: Path, kind: type[_S]) -> _S | None:
    """The checkpoint at ``path`` decoded as ``kind`` (None if there is none), or
    :class:`CLIError` when it cannot be read or decoded: every command's checkpoint is
    read alike."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CLIError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CLIError(
            f"checkpoint {path} is unreadable ({exc}); delete it to start over"
        ) from None


class Fingerprint(msgspec.Struct, frozen=True):
    """Which input a checkpoint belongs to: its format, size and sha256.

    Example::

        Fingerprint("jsonl", scan.size, scan.sha256)
    """

    format: str
    size: int
    sha256: str


class Checkpoint(msgspec.Struct, kw_only=True):
    """Progress of one import (totals over every run that used this checkpoint).

    Example::

        checkpoint = Checkpoint.read(path) or Checkpoint(input=fingerprint)
        checkpoint.check(path, fingerprint)   # refuses another input's checkpoint
        checkpoint.next_record = 200
        checkpoint.save(path)
    """

    version: int = _VERSION
    input: Fingerprint
    next_record: int = 0
    """Records 0 .. next_record-1 are done; a rerun starts at this one."""
    next_line: int = 1
    """The line ``next_record`` starts on, for messages."""
    ingested: int = 0
    skipped: int = 0
    rejected: int = 0
    complete: bool = False

    @classmethod
    def read(cls, path: Path) -> Checkpoint | None:
        """The checkpoint at ``path`` (None if there is none), or :class:`CLIError`
        when it is unreadable."""
        checkpoint = read_checkpoint(path, cls)
        if checkpoint is None:
            return None
        if checkpoint.version != _VERSION:
            raise CLIError(f"checkpoint {path} has unknown version {checkpoint.version}")
        return checkpoint

    def check(self, path: Path, fingerprint: Fingerprint) -> None:
        """:class:`CLIError` unless this checkpoint belongs to the input ``fingerprint``."""
        if self.input != fingerprint:
            raise CLIError(
                f"checkpoint {path} was written for another input (or the file changed "
                "since); use another --checkpoint, or delete it to start over"
            )

    def save(self, path: Path) -> None:
        """Write atomically: the file is always a complete checkpoint."""
        write_atomically(path, msgspec.json.format(msgspec.json.encode(self)) + b"\n")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it is always the old or the new content, readable
    by its owner only (the checkpoints of ``import`` and ``export``)."""
    # mkstemp creates the file with mode 0600 whatever the umask, and os.replace
    # keeps that mode: the checkpoint is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
