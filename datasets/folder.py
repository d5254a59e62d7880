"""Any folder of images sorted into class folders, ``ROOT/<class_name>/*.jpg|jpeg|png``.

Classes, never images, are split into train, val and test, in one of two schemes:

- ``random``: seeded fractions of the classes (64% / 16% / 20% by default). A class's place
  depends only on its name and the split seed, not on the experiment seed, so every run and
  every method sees the same split;
- ``files``: ``ROOT/splits/train.txt``, ``val.txt`` and ``test.txt``, one class folder name a line.

Images are stored as 84x84 RGB: scaled so that the shorter side fits and centre-cropped. An
optional ``ROOT/fewshot.toml`` changes the defaults::

    image_size = 84                  # side of the stored square images
    channels = 3                     # 3: RGB, 1: greyscale
    fractions = [0.64, 0.16, 0.20]   # train, val, test shares of the classes (scheme "random")
    seed = 0                         # seed of the random class split

Sub-folders without images (such as ``splits/``) are not classes. Images are decoded once into
the memory-mapped cache of :mod:`datasets.converted` and normalised with the per-channel mean and
standard deviation of the training classes' pixels.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .converted import (
    ConvertedDataset,
    ImageFormat,
    PartSource,
    cache_directory,
    convert,
    open_cached,
)
from .paths import DatasetFormatError, DatasetNotFoundError, resolve_data_root
from .store import FewShotSplit

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SETTINGS_FILE = "fewshot.toml"
SPLITS = ("train", "val", "test")
SCHEMES = {"random": SPLITS, "files": SPLITS}
#: Folders that are never classes: macOS archive metadata (hidden names are skipped as well).
IGNORED_FOLDERS = frozenset({"__MACOSX"})
_ROOT_HOLDS = "one sub-folder of images per class, DIR/<class_name>/*.jpg|jpeg|png"


@dataclass(frozen=True)
class FolderSettings:
    """Settings of a folder dataset (see the module docstring)."""

    image_size: int = 84
    channels: int = 3
    fractions: tuple[float, float, float] = (0.64, 0.16, 0.20)
    seed: int = 0

    def __post_init__(self) -> None:
        shares = self.fractions
        if len(shares) != 3 or min(shares) <= 0 or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(
                f"fractions must be three positive shares (train, val, test) summing to 1, got "
                f"{list(self.fractions)}"
            )
        ImageFormat(self.image_size, self.channels)  # validates size and channels


@dataclass(frozen=True)
class FolderDataset:
    """A folder dataset converted into the cache.

    Attributes:
        root: the folder holding the class folders.
        settings: the settings in effect.
        data: one part, ``"all"``, holding every class in name order.
    """

    root: Path
    settings: FolderSettings
    data: ConvertedDataset

    @property
    def fingerprint(self) -> str:
        return self.data.fingerprint


def read_settings(root: Path) -> FolderSettings:
    """``ROOT/fewshot.toml`` if present, else the defaults; unknown keys are an error."""
    path = root / SETTINGS_FILE
    if not path.is_file():
        return FolderSettings()
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise DatasetFormatError(f"{path} is not valid TOML: {error}") from error
    valid = {f for f in FolderSettings.__dataclass_fields__}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise DatasetFormatError(
            f"unknown key(s) {', '.join(unknown)} in {path}; valid: {', '.join(sorted(valid))}"
        )
    for key in ("image_size", "channels", "seed"):
        if key in values and (type(values[key]) is not int):
            raise DatasetFormatError(
                f"{path}: {key} must be a whole number (e.g. {key} = "
                f"{getattr(FolderSettings(), key)}), got {values[key]!r}"
            )
    if "fractions" in values:
        shares = values["fractions"]
        if not isinstance(shares, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in shares
        ):
            raise DatasetFormatError(
                f"{path}: fractions must be a list of three numbers (e.g. fractions = "
                f"[0.64, 0.16, 0.2]), got {shares!r}"
            )
        values["fractions"] = tuple(float(v) for v in shares)
    try:
        return FolderSettings(**values)
    except (TypeError, ValueError) as error:
        raise DatasetFormatError(f"{path}: {error}") from error


def list_classes(root: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files, both sorted by name; folders without images skipped.

    macOS metadata is skipped too: ``__MACOSX`` folders and hidden folders and files (names
    starting with ``.``, such as the ``._cat1.png`` AppleDouble files).

    Raises:
        DatasetNotFoundError: ``root`` is missing or holds no class folder with images.
    """
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"folder dataset: {root} is not a directory. Fix: pass --data-root DIR (or set "
            "$FEWSHOT_DATA_ROOT) where DIR holds one sub-folder of images per class, "
            "DIR/<class_name>/*.jpg|jpeg|png."
        )
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not _is_metadata(p)):
        images = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _is_metadata(p)
        )
        if images:
            classes[folder.name] = images
    if not classes:
        raise DatasetNotFoundError(
            f"folder dataset: no class folders with images in {root}; expected "
            f"{root}/<class_name>/*.jpg|jpeg|png (one sub-folder per class). Fix: point "
            "--data-root at such a folder."
        )
    return classes


def load_folder(
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> FolderDataset:
    """Read the class folders under ``root`` (default ``$FEWSHOT_DATA_ROOT``, else ``./data``),
    from the cache when they were converted before with the same files and settings."""
    folder = resolve_data_root(root, holds=_ROOT_HOLDS)
    classes = list_classes(folder)
    settings = read_settings(folder)
    image_format = ImageFormat(settings.image_size, settings.channels)
    entries = []
    for name, images in classes.items():
        for image in images:
            stat = image.stat()
            entries.append(f"{name}/{image.name}:{stat.st_size}:{stat.st_mtime_ns}")
    directory = cache_directory("folder", "\n".join(entries), image_format, cache_dir)
    data = open_cached(directory)
    if data is None:
        names = list(classes)
        files = [(label, path) for label, name in enumerate(names) for path in classes[name]]

        def source() -> PartSource:
            return PartSource(
                class_names=names,
                labels=[label for label, _ in files],
                read=lambda index: _open_image(files[index][1]),
            )

        data = convert(directory, "folder", image_format, [("all", source)], str(folder), progress)
    return FolderDataset(folder, settings, data)


def folder_split(dataset: FolderDataset, scheme: str, split: str) -> FewShotSplit:
    """The classes of ``split`` under ``scheme``, normalised with that scheme's training classes."""
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown split {scheme!r} for dataset 'folder'; valid: {', '.join(SCHEMES)}"
        )
    if split not in SCHEMES[scheme]:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SCHEMES[scheme])}")
    assignment = class_assignment(dataset, scheme)
    index = {name: i for i, name in enumerate(dataset.data.parts["all"].class_names)}
    train = [index[name] for name in assignment["train"]]
    stats = dataset.data.channel_stats("all", train)
    chosen = [index[name] for name in assignment[split]]
    return dataset.data.split(f"folder/{scheme}/{split}", "all", chosen, stats)


def class_assignment(dataset: FolderDataset, scheme: str) -> dict[str, list[str]]:
    """Split name -> its class names (sorted), under ``scheme``."""
    names = list(dataset.data.parts["all"].class_names)
    if scheme == "files":
        listed = read_split_files(dataset.root, set(names))
        return {split: sorted(listed[split]) for split in SPLITS}
    return random_class_split(names, dataset.settings.fractions, dataset.settings.seed)


def random_class_split(
    names: list[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[str]]:
    """Classes ordered by a seeded hash of their names, cut at the fractions.

    A class's rank depends only on its own name and ``seed``, so the split is the same on every
    machine and library version, and the same names always land in the same order.
    """
    if len(names) < 3:
        raise ValueError(
            f"folder dataset: a random split into train, val and test needs at least 3 classes, "
            f"found {len(names)}"
        )

    def rank(name: str) -> bytes:
        return hashlib.blake2b(f"{seed}|{name}".encode(), digest_size=8).digest()

    ranked = sorted(names, key=rank)
    n_train = max(1, round(fractions[0] * len(names)))
    n_val = max(1, round(fractions[1] * len(names)))
    n_train = min(n_train, len(names) - n_val - 1)
    return {
        "train": sorted(ranked[:n_train]),
        "val": sorted(ranked[n_train : n_train + n_val]),
        "test": sorted(ranked[n_train + n_val :]),
    }


def read_split_files(root: Path, classes: set[str]) -> dict[str, tuple[str, ...]]:
    """Split name -> class names listed in ``ROOT/splits/<split>.txt``, checked against
    ``classes`` and against each other."""
    directory = root / "splits"
    present = [s for s in SPLITS if (directory / f"{s}.txt").is_file()]
    if not present:
        raise DatasetNotFoundError(
            f"folder dataset: split 'files' needs {directory}/train.txt, val.txt and test.txt "
            "(one class folder name a line). Fix: write them, or use --split random."
        )
    missing = [f"{s}.txt" for s in SPLITS if s not in present]
    if missing:
        raise DatasetFormatError(
            f"folder dataset: {directory} lacks {', '.join(missing)}; give all of train.txt, "
            "val.txt and test.txt or none"
        )
    result: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for split in SPLITS:
        lines = (directory / f"{split}.txt").read_text().splitlines()
        listed = tuple(line.strip() for line in lines if line.strip())
        unknown = [n for n in listed if n not in classes]
        if unknown:
            raise DatasetFormatError(
                f"folder dataset: {directory / f'{split}.txt'} names classes without an image "
                f"folder in {root}: {', '.join(unknown[:5])}"
            )
        twice = [n for n in listed if n in seen]
        if twice:
            raise DatasetFormatError(
                f"folder dataset: class {twice[0]!r} is listed in both {seen[twice[0]]}.txt and "
                f"{split}.txt; splits must not share classes"
            )
        seen.update({n: split for n in listed})
        if not listed:
            raise DatasetFormatError(
                f"folder dataset: {directory / f'{split}.txt'} lists no classes"
            )
        result[split] = listed
    return result


def _is_metadata(path: Path) -> bool:
    """Whether ``path`` is operating-system metadata rather than a class or an image."""
    return path.name.startswith(".") or path.name in IGNORED_FOLDERS


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy() if image.mode in ("RGB", "L") else image.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise DatasetFormatError(
            f"folder dataset: cannot decode image {path} ({type(error).__name__}: {error}). "
            "Fix: replace or remove that file."
        ) from error
