"""The bulk import's checkpoint file: private to its owner, rewritten by replacing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aiofuul.cli._checkpoint import Checkpoint, Fingerprint


def test_the_checkpoint_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "import.checkpoint"
    checkpoint = Checkpoint(input=Fingerprint("jsonl", 10, "ab" * 32))
    previous = os.umask(0o022)
    try:
        checkpoint.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        checkpoint.next_record = 5
        checkpoint.save(path)  # rewritten by replacing: the new file is private too
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(previous)
    assert [p.name for p in tmp_path.iterdir()] == ["import.checkpoint"]
    assert Checkpoint.read(path) == checkpoint
