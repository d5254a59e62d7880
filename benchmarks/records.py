"""The results store: one JSON line per finished cell, appended atomically, plus side files.

Layout under ``OUT/<dataset>/``:

- ``records.jsonl``: one record per line, appended with a single write and an fsync as each cell
  finishes, so an interrupted run keeps every finished cell and never leaves a half record that
  readers would trust (a torn last line is reported and ignored).
- ``episodes/<config_hash>.npy``: float64 per-episode accuracies of that cell, for paired
  statistics; written (atomically) before its record.
- ``checkpoints/<training_hash>.pt``: trained weights, so that other cells trained the same way
  are evaluated without training again. Not meant to be committed.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.paths import atomic_write


class RecordStore:
    """Records of one dataset under ``root`` (``OUT/<dataset>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.records_file = self.root / "records.jsonl"
        self.episodes_dir = self.root / "episodes"
        self.checkpoints_dir = self.root / "checkpoints"

    def records(self) -> list[dict[str, Any]]:
        """All readable records in file order."""
        if not self.records_file.exists():
            return []
        out = []
        for number, line in enumerate(self.records_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                warnings.warn(
                    f"{self.records_file}:{number} is not a complete record (an interrupted "
                    "write?); it is ignored and its cell will be run again",
                    stacklevel=2,
                )
        return out

    def append(self, record: dict[str, Any], accuracies: np.ndarray) -> None:
        """Store the per-episode accuracies, then append ``record`` as one line."""
        self.episodes_dir.mkdir(parents=True, exist_ok=True)
        episodes_file = self.episodes_dir / f"{record['config_hash']}.npy"
        atomic_write(episodes_file, lambda stream: np.save(stream, accuracies))
        record = {**record, "episodes_file": episodes_file.relative_to(self.root).as_posix()}
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        descriptor = os.open(self.records_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(descriptor).st_size and not self._ends_with_newline():
                line = b"\n" + line  # never glue a record onto a torn line
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def accuracies(self, record: dict[str, Any]) -> np.ndarray:
        """The per-episode accuracies behind ``record``."""
        return np.load(self.root / record["episodes_file"])

    def checkpoint_path(self, training_hash: str) -> Path:
        return self.checkpoints_dir / f"{training_hash}.pt"

    def save_checkpoint(self, training_hash: str, payload: dict[str, Any]) -> None:
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.checkpoint_path(training_hash), lambda stream: torch.save(payload, stream))

    def load_checkpoint(self, training_hash: str) -> dict[str, Any] | None:
        path = self.checkpoint_path(training_hash)
        if not path.exists():
            return None
        return torch.load(path, weights_only=True, map_location="cpu")

    def _ends_with_newline(self) -> bool:
        with open(self.records_file, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"


def check_writable(directory: Path) -> None:
    """Raise a clear error before any training when ``directory`` cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as error:
        raise PermissionError(
            f"cannot write results to {directory}: {error.strerror or error}; choose another "
            "folder with --out"
        ) from error
