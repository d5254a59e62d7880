"""The results store: one JSON line per finished cell, appended atomically, plus side files.

Layout under ``OUT/<dataset>/``:

- ``records.jsonl``: one record (:class:`~benchmarks.records.record.Record`, as its
  :meth:`~benchmarks.records.record.Record.as_dict`) per line, appended with a single write and
  an fsync as each cell finishes, so an interrupted run keeps every finished cell and never
  leaves a half record that readers would trust (a torn line is reported and ignored;
  :meth:`RecordStore.repair` moves it to ``records.jsonl.torn``). Every line is strict JSON:
  non-finite numbers are written as ``null``.
- ``episodes/<config_hash>.npy``: float64 per-episode accuracies of that cell, for paired
  statistics; written (atomically) before its record.
- ``checkpoints/<training_hash>.pt``: trained weights, so that other cells trained the same way
  are evaluated without training again. Not meant to be committed. A checkpoint that cannot be
  used is renamed to ``<training_hash>.pt.damaged`` and its model is trained again.
- ``checkpoints/<training_hash>.snapshot.pt``: the state of a training still under way (see
  :class:`~benchmarks.engine.training.Snapshots`), replaced as training goes on and removed when
  it ends; a run of the same cells continues from it. One that cannot be used is renamed to
  ``<file>.damaged`` and training starts again.
- ``.lock``: held (``fcntl.flock``) by the run writing to the folder; it names that run.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import shlex
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.records.record import Record
from datasets.paths import atomic_write

LOCK_FILE = ".lock"
TORN_SUFFIX = ".torn"
DAMAGED_SUFFIX = ".damaged"


class OutputLockedError(RuntimeError):
    """Another process writes to the same output folder; the message names it and the fix."""


class RecordError(ValueError):
    """A record points at data that cannot be used; the message names the record and the fix."""


@dataclass(frozen=True)
class SnapshotFile:
    """Keeps a running training's snapshots in one file (atomically replaced), from whichever
    process trains: on Ray, the worker writes it into the results folder, which therefore has to
    be on a file system the workers share with the driver for a resume to find it."""

    path: Path

    def __call__(self, payload: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda stream: torch.save(payload, stream))


class RecordStore:
    """Records of one dataset under ``root`` (``OUT/<dataset>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.records_file = self.root / "records.jsonl"
        self.torn_file = self.root / ("records.jsonl" + TORN_SUFFIX)
        self.lock_file = self.root / LOCK_FILE
        self.episodes_dir = self.root / "episodes"
        self.checkpoints_dir = self.root / "checkpoints"
        self.pretrained_dir = self.root / "pretrained"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process: an exclusive, non-blocking ``flock`` on ``.lock``.

        The lock file is left in place on exit; the kernel drops the ``flock`` when the process
        ends, however it ends, so a killed run never leaves a stale lock. The file's content (one
        JSON line: pid, hostname, start time, command line) only describes the holder.

        Raises:
            OutputLockedError: another process (or another ``lock()`` in this one) holds it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputLockedError(self._locked_message()) from None
            try:
                _write_holder(descriptor)
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)

    def records(self) -> list[Record]:
        """All readable records in file order; every unreadable line is warned about.

        Raises:
            RecordError: a line is a JSON object but not a complete record (it lacks a field
                that every record has); the message names the line and the fix.
        """
        out = []
        for number, line in self._lines():
            parsed = _parse_record(line)
            if parsed is not None:
                out.append(self._record_at(number, parsed))
            elif line.strip():
                warnings.warn(
                    f"{self.records_file}:{number} is not a complete record (an interrupted "
                    "write?) or holds a result that is not a finite number; it is ignored and "
                    "its cell will be run again",
                    stacklevel=2,
                )
        return out

    def repair(self) -> int:
        """Move unreadable lines of ``records.jsonl`` to ``records.jsonl.torn``.

        The lines are appended to the ``.torn`` file (nothing is lost), then ``records.jsonl`` is
        rewritten atomically with the good lines only, so readers stop warning about them. Call
        it while holding :meth:`lock`.

        Returns:
            The number of lines moved; 0 (and nothing written) when every line is readable.
        """
        good: list[bytes] = []
        torn: list[bytes] = []
        for _, line in self._lines():
            if _parse_record(line) is not None:
                good.append(line)
            elif line.strip():
                torn.append(line)
        if not torn:
            return 0
        with open(self.torn_file, "ab") as handle:
            handle.write(b"".join(line + b"\n" for line in torn))
            handle.flush()
            os.fsync(handle.fileno())
        content = b"".join(line + b"\n" for line in good)
        atomic_write(self.records_file, lambda stream: stream.write(content))
        warnings.warn(
            f"moved {len(torn)} unreadable or damaged line(s) (interrupted writes, results that "
            f"are not finite numbers) from {self.records_file} to {self.torn_file}; their cells "
            "will be run again",
            stacklevel=2,
        )
        return len(torn)

    def append(self, record: Record | Mapping[str, Any], accuracies: np.ndarray) -> Record:
        """Store the per-episode accuracies, then append ``record`` as one line.

        Non-finite floats anywhere in ``record`` are written as ``null``, so the line is JSON.

        Args:
            record: the cell's record (a mapping is read with :meth:`Record.from_dict`); its
                ``episodes_file`` is set here.
            accuracies: float64 ``[episodes]``, per-episode test accuracies (fractions).

        Returns:
            ``record`` as stored: with its ``episodes_file``.
        """
        record = _as_record(record)
        if not _finite_number(record.accuracy):
            raise ValueError(
                f"{record.config_hash}: the test accuracy is {record.accuracy!r}, not a finite "
                "number; a damaged result is not recorded (its cell will be run again)"
            )
        self.episodes_dir.mkdir(parents=True, exist_ok=True)
        episodes_file = self.episodes_dir / f"{record.config_hash}.npy"
        atomic_write(episodes_file, lambda stream: np.save(stream, accuracies))
        record = replace(record, episodes_file=episodes_file.relative_to(self.root).as_posix())
        text = json.dumps(_finite_or_null(record.as_dict()), sort_keys=True, allow_nan=False)
        line = (text + "\n").encode()
        descriptor = os.open(self.records_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(descriptor).st_size and not self._ends_with_newline():
                line = b"\n" + line  # never glue a record onto a torn line
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return record

    def accuracies(self, record: Record | Mapping[str, Any]) -> np.ndarray:
        """The per-episode accuracies behind ``record`` (a mapping is read with
        :meth:`Record.from_dict`): float64 ``[episodes]``, fractions.

        Raises:
            RecordError: ``episodes_file`` is missing, absolute, leads out of the store (``..``
                or a symbolic link), or names a file that is absent or unreadable.
        """
        record = _as_record(record)
        path = self.episodes_path(record)
        try:
            return np.load(path)
        except (OSError, ValueError) as error:
            problem = "names a missing file" if not path.exists() else "names an unreadable file"
            raise self._record_error(record, record.episodes_file, problem) from error

    def episodes_path(self, record: Record | Mapping[str, Any]) -> Path:
        """The file named by ``record.episodes_file`` (a mapping is read with
        :meth:`Record.from_dict`), checked to lie inside the store.

        Raises:
            RecordError: the path is missing, absolute or resolves outside the store.
        """
        record = _as_record(record)
        relative = record.episodes_file
        if not isinstance(relative, str) or not relative:
            raise self._record_error(record, relative, "has no episodes_file")
        root = self.root.resolve()
        if Path(relative).is_absolute() or not (root / relative).resolve().is_relative_to(root):
            raise self._record_error(record, relative, f"points outside {self.root}")
        return self.root / relative

    def checkpoint_path(self, training_hash: str) -> Path:
        """Where the weights trained under ``training_hash`` are kept."""
        return self.checkpoints_dir / f"{training_hash}.pt"

    def save_checkpoint(self, training_hash: str, payload: dict[str, Any]) -> None:
        """Write ``payload`` (``state_dict`` and ``train_result``) atomically."""
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(
            self.checkpoint_path(training_hash), lambda stream: torch.save(payload, stream)
        )

    def pretrained_path(self, key: str) -> Path:
        """Where the pre-trained backbone ``key`` is kept (``pretrained/<key>.pt``, small, meant
        to be committed with the records that start from it)."""
        return self.pretrained_dir / f"{key}.pt"

    def save_pretrained(self, key: str, payload: dict[str, Any], summary: dict[str, Any]) -> None:
        """Keep a pre-trained backbone: its weights (``payload``, as
        ``benchmarks.engine.pretraining.as_payload`` makes it) and, beside them, ``summary``
        as ``pretrained/<key>.json`` (its configuration and training history, readable)."""
        atomic_write(self.pretrained_path(key), lambda stream: torch.save(payload, stream))
        text = json.dumps(_finite_or_null(summary), indent=1, sort_keys=True) + "\n"
        atomic_write(
            self.pretrained_dir / f"{key}.json", lambda stream: stream.write(text.encode())
        )

    def load_pretrained(self, key: str) -> dict[str, Any] | None:
        """The pre-trained backbone ``key`` as saved, or None when there is none (one that does
        not load is moved aside with a warning, and pre-training runs again)."""
        return self._load(
            self.pretrained_path(key),
            {"key", "state_dict", "train_result", "config"},
            "pre-trained again",
        )

    def snapshot_path(self, training_hash: str) -> Path:
        """Where the state of an unfinished training under ``training_hash`` is kept."""
        return self.checkpoints_dir / f"{training_hash}.snapshot.pt"

    def snapshot_file(self, training_hash: str) -> SnapshotFile:
        """What keeps the snapshots of a running training under ``training_hash``."""
        return SnapshotFile(self.snapshot_path(training_hash))

    def load_snapshot(self, training_hash: str) -> dict[str, Any] | None:
        """The saved training snapshot, or None when there is none or it cannot be loaded (then it
        is moved aside with a warning and training starts again)."""
        return self._load(self.snapshot_path(training_hash), {"format"}, "trained from the start")

    def snapshot_episode(self, training_hash: str) -> int | None:
        """Episodes trained when the saved snapshot was taken; None when there is none or it does
        not load (leaves the file as it is: for reports such as ``--dry-run``)."""
        try:
            payload = _read_weights(self.snapshot_path(training_hash))
        except Exception:  # noqa: BLE001 - missing or damaged: either way no episode to report
            return None
        episode = payload.get("episode") if isinstance(payload, dict) else None
        return episode if isinstance(episode, int) else None

    def discard_snapshot(self, training_hash: str, reason: str) -> None:
        """Move an unusable snapshot aside to ``<file>.damaged`` and warn; ``reason`` is a clause
        (``"it was taken under another configuration"``)."""
        self._move_aside(self.snapshot_path(training_hash), reason, "trained from the start")

    def remove_snapshot(self, training_hash: str) -> None:
        """Delete the snapshot of a training that has ended (nothing when there is none)."""
        self.snapshot_path(training_hash).unlink(missing_ok=True)

    def load_checkpoint(self, training_hash: str) -> dict[str, Any] | None:
        """The saved payload, or None when there is none or it cannot be used.

        A file that does not load (truncated, garbage, not weights only) or holds no
        ``state_dict`` and ``train_result`` is moved aside with a warning
        (:meth:`discard_checkpoint`), so the model is trained again.
        """
        return self._load(
            self.checkpoint_path(training_hash), {"state_dict", "train_result"}, "trained again"
        )

    def _load(self, path: Path, keys: set[str], then: str) -> dict[str, Any] | None:
        """The dict saved at ``path`` if it has ``keys``; None when there is no file, or when it
        cannot be used: then it is moved aside and the warning says the model will be ``then``."""
        if not path.exists():
            return None
        try:
            payload = _read_weights(path)
        except Exception as error:  # noqa: BLE001 - whatever the damage, the remedy is the same
            self._move_aside(path, f"it cannot be loaded ({type(error).__name__})", then)
            return None
        if not isinstance(payload, dict) or not keys <= payload.keys():
            named = " and ".join(repr(key) for key in sorted(keys))
            self._move_aside(path, f"it holds no {named} (not a file of this suite)", then)
            return None
        return payload

    def discard_checkpoint(self, training_hash: str, reason: str) -> None:
        """Rename the checkpoint to ``<file>.damaged`` (replacing an older one) and warn.

        For callers that find a loaded checkpoint unusable, e.g. when ``load_state_dict`` fails.

        Args:
            training_hash: the checkpoint's training hash.
            reason: why it cannot be used, as a clause (``"it does not fit the model"``).
        """
        self._move_aside(self.checkpoint_path(training_hash), reason, "trained again")

    def _move_aside(self, path: Path, reason: str, then: str) -> None:
        """Rename ``path`` to ``<path>.damaged`` and warn that the model will be ``then``; the
        warning points at its caller's caller."""
        damaged = path.with_name(path.name + DAMAGED_SUFFIX)
        try:
            os.replace(path, damaged)
            moved = f"it was moved aside to {damaged}"
        except OSError as error:
            moved = f"it could not be moved aside ({error.strerror or error})"
        warnings.warn(
            f"checkpoint {path} is not usable: {reason}; {moved} and the model will be {then}",
            stacklevel=3,
        )

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line number, raw line)`` of ``records.jsonl``; nothing when it does not exist."""
        if not self.records_file.exists():
            return
        yield from enumerate(self.records_file.read_bytes().splitlines(), 1)

    def _ends_with_newline(self) -> bool:
        with open(self.records_file, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def _locked_message(self) -> str:
        holder = _read_holder(self.lock_file)
        if holder is None:
            who = "another process (it has not written its details yet)"
        else:
            command = holder.get("argv")
            if isinstance(command, list):
                command = shlex.join(str(part) for part in command)
            who = (
                f"process {holder.get('pid', '?')} on {holder.get('hostname', '?')}, started "
                f"{holder.get('started', '?')}, running: {command or '?'}"
            )
        return (
            f"output folder {self.root} is in use by {who}; wait for it to finish, or write to "
            "another folder with --out"
        )

    def _record_at(self, number: int, parsed: dict[str, Any]) -> Record:
        """The record parsed from line ``number``.

        Raises:
            RecordError: it is not a complete record.
        """
        try:
            return Record.from_dict(parsed)
        except ValueError as error:
            raise RecordError(
                f"{self.records_file}:{number} is {error}; remove that line from records.jsonl "
                "(its cell will be run again)"
            ) from None

    def _record_error(self, record: Record, path: object, problem: str) -> RecordError:
        return RecordError(
            f"{self.records_file}: the record with config_hash {record.config_hash!r} {problem} "
            f"(episodes_file={path!r}); remove that line from records.jsonl or restore the file"
        )


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


def _as_record(record: Record | Mapping[str, Any]) -> Record:
    """``record`` itself, or the record stored as a mapping (see :meth:`Record.from_dict`)."""
    return record if isinstance(record, Record) else Record.from_dict(record)


def _parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on ``line``, or None when it is not one complete JSON object or is damaged: a
    bare ``NaN`` or ``Infinity`` token (never written by this store), or an ``accuracy`` that is
    not a finite number. A damaged result is run again, never reused or shown."""
    try:
        record = json.loads(line, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        return None
    if not isinstance(record, dict):
        return None
    if "accuracy" in record and not _finite_number(record["accuracy"]):
        return None
    return record


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a record may hold")


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float, however deeply nested, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def _write_holder(descriptor: int) -> None:
    """Replace the lock file's content with one JSON line describing this process."""
    holder = {
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)


def _read_holder(lock_file: Path) -> dict[str, Any] | None:
    """The holder described in ``lock_file``, or None when it is empty or unreadable."""
    try:
        return _parse_record(lock_file.read_bytes().strip())
    except OSError:
        return None


def _read_weights(path: Path) -> Any:
    """What ``torch.save`` wrote to ``path``, loaded on the CPU with weights only (no code runs)."""
    return torch.load(path, weights_only=True, map_location="cpu")
