"""The zoo's catalogue: one metafile per results folder of a dataset
(``results/<dataset>/models/metafile.json``), one entry per shipped model, and the weights
beside it (``<training hash>.pt``, shared by the cells of one training)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The results folder the zoo ships in (the committed one).
RESULTS = Path(__file__).resolve().parents[2] / "results"
METAFILE = "metafile.json"


class ZooError(ValueError):
    """A model that is not in the zoo, or whose weights are missing or altered."""


@dataclass(frozen=True)
class ZooEntry:
    """One shipped model, as its metafile entry describes it.

    Attributes:
        name: ``<method>-<dataset>-<split>-<preset>-<N>w<K>s-seed<S>`` (plus ``-<protocol>``
            for a test protocol other than random episodes).
        method, method_options, backbone, dataset, dataset_fingerprint, split, preset, seed,
        precision, device: what the record says of them.
        n_way, k_shot, n_query, episodes: the test setting and protocol.
        image_shape: ``[C, H, W]`` of the images the model takes.
        data: the data key of the record's cell (``None``: the official release).
        test_episodes: how many test episodes the record averages.
        config_hash, training_hash: the record's identity and its model's.
        accuracy, ci95: the record's numbers (fractions).
        num_threads: the torch threads of the record's test.
        weights: the weights' file name, beside the metafile.
        sha256, size: the weights file's SHA-256 and size in bytes.
    """

    name: str
    method: str
    method_options: dict[str, Any]
    backbone: str
    dataset: str
    dataset_fingerprint: str
    split: str
    preset: str
    seed: int
    precision: str
    device: str
    n_way: int
    k_shot: int
    n_query: int
    episodes: str
    image_shape: list[int]
    data: str | None
    test_episodes: int
    config_hash: str
    training_hash: str
    accuracy: float
    ci95: float
    num_threads: int
    weights: str
    sha256: str
    size: int

    @property
    def setting(self) -> str:
        return f"{self.n_way}-way {self.k_shot}-shot"


def metafile(results: Path, dataset: str) -> Path:
    """The metafile of ``dataset``'s shipped models under ``results``."""
    return results / dataset / "models" / METAFILE


def entries(results: Path = RESULTS) -> list[ZooEntry]:
    """Every shipped model under ``results``, by dataset, in metafile order."""
    found = []
    for path in sorted(results.glob(f"*/models/{METAFILE}")):
        found += [ZooEntry(**item) for item in json.loads(path.read_text())]
    return found


def entry(name: str, results: Path = RESULTS) -> ZooEntry:
    """The shipped model ``name``.

    Raises:
        ZooError: no model has that name (the message lists a few that exist).
    """
    known = {e.name: e for e in entries(results)}
    if name not in known:
        close = sorted(n for n in known if n.split("-")[0] == name.split("-")[0])[:5]
        raise ZooError(
            f"no model named {name!r} in the zoo under {results}; see `python -m benchmarks.zoo "
            f"list`{' (e.g. ' + ', '.join(close) + ')' if close else ''}"
        )
    return known[name]


def unshipped_file(results: Path, dataset: str) -> Path:
    """The list of ``dataset``'s shown records that have no shipped model, with the reason."""
    return results / dataset / "models" / "unshipped.json"


def weights_path(results: Path, model: ZooEntry) -> Path:
    return results / model.dataset / "models" / model.weights


def write_metafile(path: Path, models: list[ZooEntry]) -> None:
    """Write ``models`` as ``path`` (sorted by name, one readable JSON list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [dataclasses.asdict(m) for m in sorted(models, key=lambda m: m.name)]
    path.write_text(json.dumps(items, indent=1, sort_keys=True) + "\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
