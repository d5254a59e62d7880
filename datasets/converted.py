"""Image datasets converted once into a memory-mapped uint8 cache, then served as FewShotSplits.

Decoding tens of thousands of images (hundreds of thousands for tieredImageNet) takes minutes,
so every dataset read from image files or pickles is converted once: images are decoded one at a
time, resized, and written straight into a preallocated uint8 array in a ``.npy`` file in the
cache directory. Nothing else is held: no list of decoded images, no float copy. Later runs map
those files into memory, so the operating system reads pages from disk as episodes touch them
and a split larger than the free RAM still works.

A converted dataset has one or more *parts* (a learn2learn split, or all classes of a folder);
each part is one array holding its classes as runs of consecutive images. Per-class pixel sums
are kept so that any selection of classes gets its per-channel mean and standard deviation
without another pass over the pixels.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from .paths import (
    DamagedCacheWarning,
    DatasetFormatError,
    atomic_write,
    move_aside,
    require_writable_dir,
    resolve_cache_dir,
    write_failure,
)
from .store import FewShotSplit

_FORMAT = 1
_HASH_CHUNK_IMAGES = 2048


@dataclass(frozen=True)
class ImageFormat:
    """How images are stored: ``size`` x ``size`` pixels, ``channels`` 3 (RGB) or 1 (grey)."""

    size: int
    channels: int = 3

    def __post_init__(self) -> None:
        if self.size < 1 or self.channels not in (1, 3):
            raise ValueError(
                f"image format needs a positive size and 1 or 3 channels, got {self.size} "
                f"and {self.channels}"
            )


@dataclass(frozen=True)
class PartSource:
    """What a reader hands to the converter for one part.

    Attributes:
        class_names: one name per class label ``0 .. n_classes - 1``.
        labels: class label of each item, ``[n_items]``.
        read: ``read(i)`` -> item ``i`` as a PIL image or a uint8 array ``[H, W, C]``/``[H, W]``.
        sort_keys: per-item keys ordering images within a class (file paths, so that the
            result does not depend on directory listing order); ``None``: item order.
        release: called with ``i`` once item ``i`` is stored, so that a reader holding encoded
            images can free them as it goes; ``None``: nothing to free.
    """

    class_names: Sequence[str]
    labels: Sequence[int] | np.ndarray
    read: Callable[[int], Any]
    sort_keys: Sequence[str] | None = None
    release: Callable[[int], None] | None = None


@dataclass(frozen=True)
class ConvertedPart:
    """One converted part.

    Attributes:
        images: uint8 ``[M, C, S, S]``, memory-mapped from the cache; classes are runs.
        class_names: one name per class.
        class_start: int64 ``[n_classes]``, first image of each class.
        class_size: int64 ``[n_classes]``, images per class.
        pixel_sum: int64 ``[n_classes, C]``, sum of each class's pixel values (0-255).
        pixel_square_sum: int64 ``[n_classes, C]``, sum of their squares.
    """

    images: Tensor
    class_names: tuple[str, ...]
    class_start: Tensor
    class_size: Tensor
    pixel_sum: Tensor
    pixel_square_sum: Tensor


@dataclass(frozen=True)
class ConvertedDataset:
    """A converted dataset: its parts, a fingerprint of its pixels, and where it came from.

    Attributes:
        name: dataset name, e.g. ``"mini-imagenet"``.
        parts: part name -> converted part.
        image_format: the stored image size and channels.
        fingerprint: SHA-256 over part names, class names and stored pixels, in stored order.
        source: where the images were read from.
        directory: the cache directory holding the arrays.
        extra: what the dataset's reader chose to store with the conversion (for example a
            digest of the source files); empty when it stored nothing.
    """

    name: str
    parts: dict[str, ConvertedPart]
    image_format: ImageFormat
    fingerprint: str
    source: str
    directory: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def channel_stats(
        self, part: str, classes: Sequence[int] | None = None
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel ``(mean, std)`` of the pixels of ``classes`` of ``part``, scaled to [0, 1].

        ``classes=None`` means all classes of the part.
        """
        converted = self.parts[part]
        rows = slice(None) if classes is None else torch.as_tensor(list(classes), dtype=torch.long)
        count = float(converted.class_size[rows].sum()) * self.image_format.size**2
        total = converted.pixel_sum[rows].sum(0).double() / 255.0
        squares = converted.pixel_square_sum[rows].sum(0).double() / 255.0**2
        mean = total / count
        std = (squares / count - mean**2).clamp_min(1e-12).sqrt()
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)

    def split(
        self,
        name: str,
        part: str,
        classes: Sequence[int] | None = None,
        stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ) -> FewShotSplit:
        """``classes`` (indices into ``part``, default all) as a FewShotSplit called ``name``.

        Args:
            stats: the ``(mean, std)`` to normalise with, usually those of the training
                classes; ``None`` leaves images in [0, 1].
        """
        converted = self.parts[part]
        index = (
            torch.arange(len(converted.class_names))
            if classes is None
            else torch.as_tensor(list(classes), dtype=torch.long)
        )
        mean, std = stats if stats is not None else (None, None)
        return FewShotSplit(
            name=name,
            images=converted.images,
            class_start=converted.class_start[index],
            class_size=converted.class_size[index],
            class_rotation=torch.zeros(len(index), dtype=torch.int64),
            class_names=tuple(converted.class_names[i] for i in index.tolist()),
            mean=mean,
            std=std,
        )


def cache_directory(
    name: str, source_key: str, image_format: ImageFormat, cache_dir: str | os.PathLike[str] | None
) -> Path:
    """Where the conversion of ``name`` read from sources identified by ``source_key`` lives."""
    digest = hashlib.sha256(
        f"format={_FORMAT};name={name};size={image_format.size};"
        f"channels={image_format.channels};{source_key}".encode()
    ).hexdigest()
    return resolve_cache_dir(cache_dir) / f"{name}-{image_format.size}px-{digest[:20]}"


def is_converted(directory: Path) -> bool:
    return (directory / "meta.json").is_file()


def open_converted(directory: Path) -> ConvertedDataset:
    """Map a finished conversion into memory (no pixels are read here).

    Raises:
        DatasetFormatError: the conversion is damaged (unreadable ``meta.json``, a missing,
            truncated or wrongly shaped ``.npy``); the message names it.
    """
    try:
        return _open_converted(directory)
    except PermissionError:  # not damage: the cache cannot be read by this user
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise DatasetFormatError(
            f"converted cache {directory} is damaged ({type(error).__name__}: {error}). "
            f"Fix: delete {directory} so that the dataset is converted again."
        ) from error


def open_cached(directory: Path) -> ConvertedDataset | None:
    """The conversion in ``directory``, or ``None`` when it must be converted (again).

    A damaged conversion (see :func:`open_converted`; also a folder without ``meta.json``) is
    moved aside to ``<directory>.damaged``, replacing an older one, with a
    :class:`DamagedCacheWarning`, so that the caller converts again; only then must the cache
    folder be writable. Every loader opens its cache through this, so recovery lives here.
    """
    if not directory.exists():
        return None
    try:
        return open_converted(directory)
    except DatasetFormatError as error:
        cause = error.__cause__
        require_writable_dir(directory.parent)
        aside = move_aside(directory)
        warnings.warn(
            f"converted cache {directory} cannot be read ({type(cause).__name__}: {cause}); it "
            f"was moved aside to {aside} and the dataset will be converted again.",
            DamagedCacheWarning,
            stacklevel=2,
        )
        return None


def _open_converted(directory: Path) -> ConvertedDataset:
    meta = json.loads((directory / "meta.json").read_text())
    image_format = ImageFormat(meta["image_size"], meta["channels"])
    parts = {}
    for part, info in meta["parts"].items():
        # copy-on-write mapping: writable for torch, never written back to the cache file
        array = np.load(directory / f"{part}.npy", mmap_mode="c")
        sizes = torch.tensor(info["class_size"], dtype=torch.int64)
        expected = (int(sizes.sum()), image_format.channels, image_format.size, image_format.size)
        if tuple(array.shape) != expected or array.dtype != np.uint8:
            raise ValueError(
                f"cached images {directory / f'{part}.npy'} are {array.dtype} of shape "
                f"{tuple(array.shape)}, expected uint8 of shape {expected}"
            )
        parts[part] = ConvertedPart(
            images=torch.from_numpy(array),
            class_names=tuple(info["class_names"]),
            class_start=torch.cumsum(sizes, 0) - sizes,
            class_size=sizes,
            pixel_sum=torch.tensor(info["pixel_sum"], dtype=torch.int64),
            pixel_square_sum=torch.tensor(info["pixel_square_sum"], dtype=torch.int64),
        )
    return ConvertedDataset(
        name=meta["name"],
        parts=parts,
        image_format=image_format,
        fingerprint=meta["fingerprint"],
        source=meta["source"],
        directory=directory,
        extra=dict(meta.get("extra", {})),
    )


def convert(
    directory: Path,
    name: str,
    image_format: ImageFormat,
    parts: Sequence[tuple[str, Callable[[], PartSource]]],
    source: str,
    progress: bool = True,
    extra: Callable[[], dict[str, Any]] | None = None,
) -> ConvertedDataset:
    """Convert ``parts`` into ``directory`` (atomically) and open the result.

    Each part's reader is created only when its turn comes and dropped after it, so at most one
    part's source data is held at a time.

    Args:
        parts: ``(part name, make_reader)`` in order.
        source: where the images are read from, for records and messages.
        extra: called once every part is written; what it returns is stored with the
            conversion (``ConvertedDataset.extra``).

    Raises:
        PermissionError: the cache folder is not writable (checked before any image is read).
        WriteFailedError: writing the cache failed (a full disk, say); nothing is left behind.
    """
    require_writable_dir(directory.parent)
    partial = Path(tempfile.mkdtemp(dir=directory.parent, prefix=directory.name + ".part-"))
    try:
        digest = hashlib.sha256()
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "name": name,
            "image_size": image_format.size,
            "channels": image_format.channels,
            "source": source,
            "parts": {},
        }
        for part, make_reader in parts:
            reader = make_reader()
            info = _write_part(
                partial / f"{part}.npy", reader, image_format, progress, f"{name} {part}"
            )
            del reader
            meta["parts"][part] = info
            _hash_part(digest, partial / f"{part}.npy", part, info["class_names"])
        meta["fingerprint"] = digest.hexdigest()
        if extra is not None:
            meta["extra"] = extra()
        atomic_write(partial / "meta.json", lambda stream: stream.write(json.dumps(meta).encode()))
        try:
            os.replace(partial, directory)
        except OSError:
            if not is_converted(directory):  # not a concurrent conversion that finished first
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return open_converted(directory)


def to_array(image: Any, image_format: ImageFormat) -> np.ndarray:
    """One image as uint8 ``[C, S, S]``: converted to RGB or grey, and when it is not S x S,
    scaled so that its shorter side is S and centre-cropped (aspect ratio kept)."""
    if isinstance(image, np.ndarray):
        side, channels = image_format.size, image_format.channels
        ready = {(side, side, channels)} | ({(side, side)} if channels == 1 else set())
        if image.dtype == np.uint8 and image.shape in ready:  # already stored size: no PIL
            return np.ascontiguousarray(image.reshape(side, side, channels).transpose(2, 0, 1))
        image = Image.fromarray(image)
    mode = "RGB" if image_format.channels == 3 else "L"
    if image.mode != mode:
        image = image.convert(mode)
    side = image_format.size
    if image.size != (side, side):
        image = ImageOps.fit(image, (side, side), method=Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(side, side, -1).transpose(2, 0, 1)


def _write_part(
    path: Path, reader: PartSource, image_format: ImageFormat, progress: bool, label: str
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    labels = np.asarray(reader.labels, dtype=np.int64)
    n_classes = len(reader.class_names)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"{label}: no images to convert")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"{label}: labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}"
        )
    sizes = np.bincount(labels, minlength=n_classes)
    if (sizes == 0).any():
        empty = [reader.class_names[i] for i in np.flatnonzero(sizes == 0)[:5]]
        raise ValueError(f"{label}: classes without images: {', '.join(empty)}")
    keys = reader.sort_keys
    order = sorted(
        range(len(labels)),
        key=(lambda i: (labels[i], keys[i])) if keys else (lambda i: (labels[i], i)),
    )
    position = np.empty(len(labels), dtype=np.int64)
    position[np.asarray(order, dtype=np.int64)] = np.arange(len(labels))

    c, s = image_format.channels, image_format.size
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(labels), c, s, s))
    _reserve(path)
    pixel_sum = np.zeros((n_classes, c), dtype=np.int64)
    square_sum = np.zeros((n_classes, c), dtype=np.int64)
    bar = tqdm(
        total=len(labels),
        desc=f"converting {label} (once; cached afterwards)",
        unit="img",
        disable=not progress,
    )
    for i in range(len(labels)):
        pixels = to_array(reader.read(i), image_format)
        array[position[i]] = pixels
        flat = pixels.reshape(c, -1).astype(np.int64)
        pixel_sum[labels[i]] += flat.sum(1)
        square_sum[labels[i]] += (flat * flat).sum(1)
        if reader.release is not None:
            reader.release(i)
        bar.update()
    bar.close()
    try:
        array.flush()
    except OSError as error:
        raise write_failure(path, error) from error
    del array
    return {
        "class_names": list(reader.class_names),
        "class_size": sizes.tolist(),
        "pixel_sum": pixel_sum.tolist(),
        "pixel_square_sum": square_sum.tolist(),
    }


def _reserve(path: Path) -> None:
    """Allocate the disk blocks of the (sparse) file ``path`` now, so that a full disk is an
    error here rather than a crash (SIGBUS) when a memory-mapped page is written later.

    Raises:
        WriteFailedError: the disk has not enough free space.
    """
    if not hasattr(os, "posix_fallocate"):  # not on macOS or Windows: writes fail later
        return
    with open(path, "r+b") as stream:
        try:
            os.posix_fallocate(stream.fileno(), 0, os.fstat(stream.fileno()).st_size)
        except OSError as error:
            if error.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return  # the file system cannot reserve; writes fail later as before
            raise write_failure(path, error) from error


def _hash_part(digest: Any, path: Path, part: str, class_names: list[str]) -> None:
    digest.update(f"{part}\0{json.dumps(class_names)}\0".encode())
    array = np.load(path, mmap_mode="r")
    for start in range(0, len(array), _HASH_CHUNK_IMAGES):
        digest.update(np.ascontiguousarray(array[start : start + _HASH_CHUNK_IMAGES]).data)
