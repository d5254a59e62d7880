"""miniImageNet in the form most users have it: an ``images/`` folder and three split files.

Vinyals et al. (2016) drew 100 ImageNet classes x 600 images at 84x84; Ravi & Larochelle (2017)
published the class split (64 train / 16 val / 20 test) as three CSV files with the header
``filename,label``. Under the data root ``R`` this module reads

- ``R/mini-imagenet/images/<file>.jpg`` with ``R/mini-imagenet/{train,val,test}.csv``, or
- the images directly in ``R/mini-imagenet/`` next to the CSV files, or
- the same two forms with ``R`` itself in place of ``R/mini-imagenet``,

without learn2learn. (learn2learn's pickles, the other common form, are read by
:mod:`datasets.learn2learn_sets`; :func:`datasets.registry` tries this form first.) Images are
decoded once into the memory-mapped cache of :mod:`datasets.converted`, one part per split, and
normalised with the training split's per-channel mean and standard deviation.

Identity: the cache is keyed by the split files' contents and the name, size and modification
time of every image they name; the conversion stores a *source digest* (SHA-256 over each split
file's SHA-256 and every image's name and SHA-256), which equals :data:`OFFICIAL_SOURCE_DIGEST`
exactly when the files are the published ones. Records carry the pixel fingerprint of the
conversion.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .converted import (
    ConvertedDataset,
    ImageFormat,
    PartSource,
    cache_directory,
    convert,
    open_cached,
)
from .paths import DatasetFormatError, DatasetNotFoundError

NAME = "mini-imagenet"
IMAGE_SIZE = 84
#: Our split names and their files.
SPLIT_FILES = (("train", "train.csv"), ("val", "val.csv"), ("test", "test.csv"))
HEADER = ["filename", "label"]
#: Source digest (see the module docstring) of the published split files and 60,000 images.
OFFICIAL_SOURCE_DIGEST = "1b76cb2279d7204a06fa67afa285fc96ff7dd6b93b365132fab3ed18444f1f7a"
_EXPECTED = (
    "R/mini-imagenet/images/*.jpg with R/mini-imagenet/{train,val,test}.csv (header "
    "'filename,label'), or the images directly in R/mini-imagenet/"
)


@dataclass(frozen=True)
class CsvLayout:
    """Where the CSV form was found: ``base`` holds the split files, ``images`` the images."""

    base: Path
    images: Path


@dataclass(frozen=True)
class SplitFile:
    """One parsed split file: image file names and their class labels (WordNet ids), in order."""

    path: Path
    filenames: tuple[str, ...]
    labels: tuple[str, ...]
    sha256: str


def candidate_bases(data_root: Path) -> list[Path]:
    """Folders searched for the split files, in order."""
    return [data_root / NAME, data_root]


def locate_csv(data_root: Path) -> CsvLayout | None:
    """The CSV form under ``data_root``, or ``None`` when no candidate folder holds a split file.

    Raises:
        DatasetNotFoundError: a folder holds some of the split files but not all (the message
            names the missing ones).
    """
    for base in candidate_bases(data_root):
        present = [name for _, name in SPLIT_FILES if (base / name).is_file()]
        if not present:
            continue
        missing = [name for _, name in SPLIT_FILES if name not in present]
        if missing:
            raise DatasetNotFoundError(
                f"miniImageNet split files incomplete in {base}: {', '.join(present)} found, "
                f"{', '.join(missing)} missing. Fix: put all three of Ravi & Larochelle's split "
                f"files there (expected {_EXPECTED})."
            )
        images = base / "images"
        return CsvLayout(base, images if images.is_dir() else base)
    return None


def read_split_file(path: Path) -> SplitFile:
    """Parse one ``filename,label`` split file.

    Raises:
        DatasetFormatError: a wrong header, a row without two fields, an empty file name or
            label, or no rows; the message names the file and line.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"{path} is not a text file ({error})") from error
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [cell.strip() for cell in rows[0]] != HEADER:
        found = ",".join(rows[0]) if rows else "(empty file)"
        raise DatasetFormatError(
            f"{path}: the first line must be the header 'filename,label', found {found!r}"
        )
    filenames: list[str] = []
    labels: list[str] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DatasetFormatError(
                f"{path}, line {number}: expected 'filename,label', found {','.join(row)!r}"
            )
        filenames.append(row[0].strip())
        labels.append(row[1].strip())
    if not filenames:
        raise DatasetFormatError(f"{path} lists no images")
    return SplitFile(path, tuple(filenames), tuple(labels), hashlib.sha256(raw).hexdigest())


def read_split_files(layout: CsvLayout) -> dict[str, SplitFile]:
    """The three split files, checked against each other and against the image folder.

    Raises:
        DatasetFormatError: a class in two splits, or an image listed twice.
        DatasetNotFoundError: a split file names an image that is not in the image folder.
    """
    splits = {split: read_split_file(layout.base / name) for split, name in SPLIT_FILES}
    owner: dict[str, str] = {}
    listed: dict[str, str] = {}
    for split, parsed in splits.items():
        for label in dict.fromkeys(parsed.labels):
            if label in owner:
                raise DatasetFormatError(
                    f"class {label} is in two split files, {layout.base / _file(owner[label])} "
                    f"and {parsed.path}; few-shot splits must not share classes. Fix: use the "
                    "published split files."
                )
            owner[label] = split
        for filename in parsed.filenames:
            if filename in listed:
                raise DatasetFormatError(
                    f"image {filename} is listed twice (in {layout.base / _file(listed[filename])}"
                    f" and {parsed.path})"
                )
            listed[filename] = split
    present = set(os.listdir(layout.images))
    absent = [name for name in listed if name not in present]
    if absent:
        shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
        raise DatasetNotFoundError(
            f"{len(absent)} images named in {layout.base / _file(listed[absent[0]])} "
            f"{'and the other split files ' if len({listed[a] for a in absent}) > 1 else ''}"
            f"are not in {layout.images}: {shown}. Fix: lay the images out again (all 60,000 of "
            f"them; expected {_EXPECTED})."
        )
    return splits


def _file(split: str) -> str:
    return dict(SPLIT_FILES)[split]


def source_key(layout: CsvLayout, splits: dict[str, SplitFile]) -> str:
    """What keys the cache: each split file's SHA-256 and the name, size and modification time
    of every image it names."""
    entries = [f"{split}:{parsed.sha256}" for split, parsed in splits.items()]
    for parsed in splits.values():
        for filename in parsed.filenames:
            stat = (layout.images / filename).stat()
            entries.append(f"{filename}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(entries)


class SourceDigest:
    """SHA-256 of the files read: each split file's SHA-256, then each image's name and SHA-256
    in name order (independent of the order images are read in)."""

    def __init__(self, splits: dict[str, SplitFile]) -> None:
        self._splits = [f"{split}:{parsed.sha256}" for split, parsed in splits.items()]
        self._images: dict[str, str] = {}

    def add(self, filename: str, content: bytes) -> None:
        """Count image ``filename`` read with bytes ``content``."""
        self.add_checksum(filename, hashlib.sha256(content).hexdigest())

    def add_checksum(self, filename: str, sha256: str) -> None:
        """Count image ``filename`` whose SHA-256 (hex) is ``sha256``."""
        self._images[filename] = sha256

    def __len__(self) -> int:
        return len(self._images)

    def hexdigest(self) -> str:
        lines = self._splits + [f"{name}:{self._images[name]}" for name in sorted(self._images)]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _part_source(layout: CsvLayout, parsed: SplitFile, digest: SourceDigest) -> PartSource:
    class_names = list(dict.fromkeys(parsed.labels))
    index = {name: i for i, name in enumerate(class_names)}

    def read(i: int) -> Image.Image:
        path = layout.images / parsed.filenames[i]
        try:
            content = path.read_bytes()
            image = Image.open(io.BytesIO(content))
            image.load()
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise DatasetFormatError(
                f"image {path} (listed in {parsed.path}) cannot be read: {error}. Fix: replace "
                "it with the published file (lay the images out again)."
            ) from error
        digest.add(parsed.filenames[i], content)
        return image

    return PartSource(
        class_names=class_names,
        labels=np.asarray([index[label] for label in parsed.labels], dtype=np.int64),
        read=read,
        sort_keys=list(parsed.filenames),
    )


def load_csv_form(
    layout: CsvLayout,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> ConvertedDataset:
    """The CSV form found at ``layout``, converted into the cache on first use.

    Raises:
        DatasetFormatError, DatasetNotFoundError: see :func:`read_split_files`; an image that
            cannot be decoded (the message names it).
    """
    splits = read_split_files(layout)
    image_format = ImageFormat(IMAGE_SIZE, 3)
    directory = cache_directory(NAME, source_key(layout, splits), image_format, cache_dir)
    cached = open_cached(directory)
    if cached is not None:
        return cached
    digest = SourceDigest(splits)
    parts = [
        (split, functools.partial(_part_source, layout, parsed, digest))
        for split, parsed in splits.items()
    ]
    return convert(
        directory,
        NAME,
        image_format,
        parts,
        str(layout.base),
        progress,
        extra=lambda: {"source_digest": digest.hexdigest()},
    )


def matches_official(data: ConvertedDataset) -> bool:
    """Whether ``data`` was converted from the published split files and images."""
    return data.extra.get("source_digest") == OFFICIAL_SOURCE_DIGEST
