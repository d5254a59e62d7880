"""Registry of datasets the runner can use: name -> how to load its splits."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .store import FewShotSplit

if TYPE_CHECKING:
    from .omniglot_runs import OfficialRuns


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset in memory: its splits under each scheme, and what identifies its content.

    Attributes:
        name: registry name, e.g. ``"omniglot"``.
        split: ``split(scheme, split_name) -> FewShotSplit``.
        fingerprint: content hash of the files read (see each dataset's loader).
        matches_official: whether that hash is the one of the official release (None: unknown).
        official_runs: Omniglot only: Lake et al.'s 20 official runs, when the run was asked to
            evaluate on them (``--test-runs``).
    """

    name: str
    split: Callable[[str, str], FewShotSplit]
    fingerprint: str
    matches_official: bool | None
    official_runs: OfficialRuns | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one dataset.

    Attributes:
        name: registry name.
        summary: one line for ``--list``.
        schemes: split scheme -> its split names; the runner trains on ``train``, validates on
            ``val`` when present and tests on ``test``.
        default_scheme: the scheme used when none is given.
        load: ``load(data_root, cache_dir, progress) -> LoadedDataset``.
        family: the kind of images (one of :data:`FAMILIES`), by which methods choose their
            training recipes.
    """

    name: str
    summary: str
    schemes: dict[str, tuple[str, ...]]
    default_scheme: str
    load: Callable[
        [str | os.PathLike[str] | None, str | os.PathLike[str] | None, bool], LoadedDataset
    ]
    family: str

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"dataset {self.name!r}: unknown family {self.family!r}; valid: {', '.join(FAMILIES)}"
            )


#: Dataset families: ``characters`` (handwritten characters: Omniglot) and ``natural-images``
#: (photographs: miniImageNet, tieredImageNet, CIFAR-FS, FC100, CUB, a folder of photos).
#: Recipes are declared per family, so a new dataset of a known family gets its recipes.
FAMILIES = ("characters", "natural-images")


def _loaded(
    name: str,
    split: Callable[[str, str], FewShotSplit],
    fingerprint: str,
    matches_official: bool | None,
) -> LoadedDataset:
    """A LoadedDataset whose splits are built once per (scheme, split) and then reused."""
    return LoadedDataset(
        name, functools.lru_cache(maxsize=None)(split), fingerprint, matches_official
    )


def _load_omniglot(root, cache_dir, progress) -> LoadedDataset:
    from .omniglot import load_omniglot, omniglot_split

    data = load_omniglot(root, cache_dir=cache_dir, progress=progress)
    return _loaded(
        "omniglot",
        lambda scheme, split: omniglot_split(data, scheme, split),
        data.fingerprint,
        data.matches_official,
    )


def _omniglot_spec() -> DatasetSpec:
    from .omniglot_splits import SCHEMES

    return DatasetSpec(
        name="omniglot",
        summary="Omniglot, 1623 handwritten characters x 20 drawings, 1x28x28; splits: "
        "vinyals (rotations as classes, 4112/688/1692), "
        "lake (background alphabets 792/172 held out, evaluation alphabets 659; within-alphabet "
        "test episodes with --episodes), lake-rotated (lake with the 792 training characters "
        "at four rotations: 3168 classes)",
        schemes=dict(SCHEMES),
        default_scheme="vinyals",
        load=_load_omniglot,
        family="characters",
    )


def _learn2learn_spec(name: str) -> DatasetSpec:
    from .learn2learn_sets import SCHEMES, SETS

    def load(root, cache_dir, progress) -> LoadedDataset:
        from .learn2learn_sets import load_learn2learn_set, standard_split

        data = load_learn2learn_set(name, root, cache_dir=cache_dir, progress=progress)
        return _loaded(
            name, lambda scheme, split: standard_split(data, scheme, split), data.fingerprint, None
        )

    return DatasetSpec(
        name=name,
        summary=SETS[name].summary,
        schemes=dict(SCHEMES),
        default_scheme="standard",
        load=load,
        family="natural-images",
    )


def _mini_imagenet_spec() -> DatasetSpec:
    """miniImageNet in either form users have: the split CSVs with an image folder (read here,
    see :mod:`datasets.mini_imagenet`) or learn2learn's pickles (read through learn2learn, which
    also downloads them when neither form is present)."""
    base = _learn2learn_spec("mini-imagenet")

    def load(root, cache_dir, progress) -> LoadedDataset:
        from .learn2learn_sets import standard_split
        from .mini_imagenet import load_csv_form, locate_csv, matches_official
        from .paths import resolve_data_root

        layout = locate_csv(resolve_data_root(root))
        if layout is None:
            return base.load(root, cache_dir, progress)
        data = load_csv_form(layout, cache_dir=cache_dir, progress=progress)
        return _loaded(
            "mini-imagenet",
            lambda scheme, split: standard_split(data, scheme, split),
            data.fingerprint,
            matches_official(data),
        )

    return DatasetSpec(
        name=base.name,
        summary="miniImageNet (Vinyals et al.; Ravi & Larochelle split 64/16/20 classes x 600), "
        "3x84x84: R/mini-imagenet/images/*.jpg + {train,val,test}.csv, or learn2learn's "
        "pickles; cache 1.3 GB",
        schemes=base.schemes,
        default_scheme=base.default_scheme,
        load=load,
        family="natural-images",
    )


def _load_folder(root, cache_dir, progress) -> LoadedDataset:
    from .folder import folder_split, load_folder

    data = load_folder(root, cache_dir=cache_dir, progress=progress)
    return _loaded(
        "folder", lambda scheme, split: folder_split(data, scheme, split), data.fingerprint, None
    )


def _folder_spec() -> DatasetSpec:
    from .folder import SCHEMES

    return DatasetSpec(
        name="folder",
        summary="your images: --data-root DIR holding DIR/<class>/*.jpg|png, 3x84x84 by default "
        "(DIR/fewshot.toml); splits: random (seeded 64/16/20% of classes), files "
        "(DIR/splits/{train,val,test}.txt)",
        schemes=dict(SCHEMES),
        default_scheme="random",
        load=_load_folder,
        family="natural-images",
    )


def _all_specs() -> dict[str, DatasetSpec]:
    from .learn2learn_sets import SETS

    specs = [
        _omniglot_spec(),
        *(_learn2learn_spec(name) for name in SETS if name != "mini-imagenet"),
        _mini_imagenet_spec(),
        _folder_spec(),
    ]
    return {spec.name: spec for spec in specs}


_DATASETS: dict[str, DatasetSpec] = _all_specs()


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Make ``spec`` usable as ``--dataset spec.name`` (from a plugin, see ``--plugin``).

    Raises:
        ValueError: another dataset is registered under that name.
    """
    existing = _DATASETS.get(spec.name)
    if existing is not None and existing is not spec:
        raise ValueError(
            f"dataset name {spec.name!r} is already registered ({existing.summary}); choose "
            "another name"
        )
    _DATASETS[spec.name] = spec
    return spec


def available_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec registered as ``name``; the error lists the registered names."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return _DATASETS[name]


def check_scheme(spec: DatasetSpec, scheme: str) -> None:
    """Raise a ValueError listing the valid schemes of ``spec`` when ``scheme`` is not one."""
    if scheme not in spec.schemes:
        raise ValueError(
            f"unknown split {scheme!r} for dataset {spec.name!r}; valid: {', '.join(spec.schemes)}"
        )
