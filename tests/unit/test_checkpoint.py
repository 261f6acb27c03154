"""Panda mode: checkpoints every N epochs, and resuming with nudged hyperparameters.

Here: the pieces on their own;
integration/test_checkpoint.py and e2e/test_checkpoint.py hold the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyperlab.checkpoint import CheckpointError, load


def test_corrupted_foreign_and_code_carrying_files_are_refused(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    torch.save({"format": "x", "w": torch.ones(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:50])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, foreign)
    code = tmp_path / "code.pt"
    torch.save({"format": "hyperlab-checkpoint/1", "hook": Path("/etc")}, code)  # a class
    for path, message in (
        (truncated, "cannot be read as a checkpoint"),
        (foreign, "not a hyperlab checkpoint"),
        (code, "cannot be read as a checkpoint"),  # weights_only refuses to build objects
        (tmp_path / "missing.pt", "no checkpoint at"),
    ):
        with pytest.raises(CheckpointError, match=message) as e:
            load(path)
        assert e.value.fix


@pytest.mark.parametrize("content", [b"hello\nthis is text\n", b"", b"\x80\x02]q\x00."])
def test_a_file_that_is_no_pickle_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot be read as a checkpoint") as e:
        load(path)
    assert str(path) in e.value.problem and e.value.fix
