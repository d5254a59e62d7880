"""The 20 official one-shot runs of Lake, Salakhutdinov and Tenenbaum (Science 2015).

Lake et al. published their evaluation as a folder ``all_runs/`` with ``run01`` to ``run20``.
Each run is one 20-way one-shot episode within an alphabet::

    all_runs/runNN/training/class01.png ... class20.png   one drawing per class (the support set)
    all_runs/runNN/test/item01.png ... item20.png         the queries
    all_runs/runNN/class_labels.txt                       "runNN/test/itemYY.png runNN/training/classZZ.png"

Each line of ``class_labels.txt`` names a test item and the training image of its class, paths
relative to ``all_runs/``. Images are 105x105 PNG drawings like the rest of Omniglot and are
preprocessed exactly as the training images are (:func:`datasets.omniglot.decode_drawing`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .omniglot import decode_drawing
from .paths import DatasetFormatError, DatasetNotFoundError

RUNS = 20
WAYS = 20
LABELS_FILE = "class_labels.txt"


@dataclass(frozen=True)
class OfficialRun:
    """One run as an episode.

    Attributes:
        name: ``"run01"`` ...
        support: uint8 ``[20, 1, S, S]``, the training drawings class01 ... class20.
        query: uint8 ``[20, 1, S, S]``, the test items item01 ... item20.
        query_labels: int64 ``[20]``, the class (0-19) of each test item.
    """

    name: str
    support: Tensor
    query: Tensor
    query_labels: Tensor


@dataclass(frozen=True)
class OfficialRuns:
    """The 20 runs and a SHA-256 of every file read (names and bytes)."""

    runs: tuple[OfficialRun, ...]
    fingerprint: str
    folder: Path


def locate_runs(folder: str | os.PathLike[str]) -> Path:
    """``folder/all_runs`` when it exists, else ``folder`` itself."""
    base = Path(folder).expanduser()
    if not base.is_dir():
        raise DatasetNotFoundError(
            f"--test-runs {base} is not a folder. Fix: point it at Lake et al.'s all_runs/ "
            "folder (run01 ... run20 inside)."
        )
    return base / "all_runs" if (base / "all_runs").is_dir() else base


def load_official_runs(folder: str | os.PathLike[str], image_size: int = 28) -> OfficialRuns:
    """Read and check the 20 runs under ``folder`` (see the module docstring).

    Raises:
        DatasetNotFoundError: a run folder, ``class_labels.txt`` or an image it names is missing.
        DatasetFormatError: a run holds another number of images than 20, a label line is
            malformed or names an image of another run, or an image cannot be decoded.
    """
    base = locate_runs(folder)
    digest = hashlib.sha256()
    runs = []
    for number in range(1, RUNS + 1):
        runs.append(_load_run(base, f"run{number:02d}", image_size, digest))
    return OfficialRuns(tuple(runs), digest.hexdigest(), base)


def _load_run(base: Path, name: str, image_size: int, digest) -> OfficialRun:
    run = base / name
    if not run.is_dir():
        found = sorted(p.name for p in base.iterdir() if p.is_dir())[:5]
        raise DatasetNotFoundError(
            f"official runs: {run} is missing (found {', '.join(found) or 'no folders'} in "
            f"{base}). Fix: point --test-runs at Lake et al.'s all_runs/ folder with run01 ... "
            "run20."
        )
    for part, stem in (("training", "class"), ("test", "item")):
        files = sorted(p.name for p in (run / part).glob("*.png")) if (run / part).is_dir() else []
        expected = [f"{stem}{i:02d}.png" for i in range(1, WAYS + 1)]
        if files != expected:
            raise DatasetFormatError(
                f"official runs: {run / part} holds {len(files)} PNG files"
                + ("" if len(files) != WAYS else " with other names")
                + f"; expected {expected[0]} ... {expected[-1]} ({WAYS} files)"
            )
    labels_file = run / LABELS_FILE
    if not labels_file.is_file():
        raise DatasetNotFoundError(
            f"official runs: {labels_file} is missing; it says which class each test item "
            "belongs to (lines 'runNN/test/itemYY.png runNN/training/classZZ.png')"
        )
    labels = torch.full((WAYS,), -1, dtype=torch.int64)
    for number, line in enumerate(labels_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        item, cls = (parts + ["", ""])[:2]
        ok = (
            len(parts) == 2
            and item.startswith(f"{name}/test/item")
            and cls.startswith(f"{name}/training/class")
        )
        if not ok:
            raise DatasetFormatError(
                f"{labels_file}, line {number}: expected '{name}/test/itemYY.png "
                f"{name}/training/classZZ.png', found {line.strip()!r}"
            )
        for path in (item, cls):
            if not (base / path).is_file():
                raise DatasetNotFoundError(
                    f"{labels_file}, line {number} names {base / path}, which is missing"
                )
        item_index = int(Path(item).stem.removeprefix("item")) - 1
        labels[item_index] = int(Path(cls).stem.removeprefix("class")) - 1
    if bool((labels < 0).any()):
        missing = [f"item{i + 1:02d}.png" for i in torch.nonzero(labels < 0).flatten().tolist()]
        raise DatasetFormatError(f"{labels_file} gives no class for {', '.join(missing[:3])}")
    support = _images(run / "training", "class", image_size, digest)
    query = _images(run / "test", "item", image_size, digest)
    digest.update(labels_file.read_bytes())
    return OfficialRun(name, support, query, labels)


def _images(folder: Path, stem: str, image_size: int, digest) -> Tensor:
    images = []
    for i in range(1, WAYS + 1):
        path = folder / f"{stem}{i:02d}.png"
        blob = path.read_bytes()
        digest.update(f"{path.parent.parent.name}/{folder.name}/{path.name}".encode() + blob)
        try:
            _, pixels = decode_drawing(blob, image_size)
        except (OSError, SyntaxError) as error:
            raise DatasetFormatError(f"official runs: cannot decode {path} ({error})") from error
        images.append(torch.from_numpy(pixels))
    return torch.stack(images).unsqueeze(1)
