"""Tiny datasets written in the exact on-disk formats learn2learn reads (and a class folder).

Each writer takes a data root and returns what it wrote, so tests can compare pixels after the
round trip through learn2learn and the cache. Every image is filled from a seeded generator, so
images differ from each other and runs are reproducible. Default class counts let the ``quick``
preset train (20-way episodes, 1 shot + 5 queries) and test 2-way 1-shot 1-query episodes.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

#: Runner arguments for a seconds-long end-to-end run on a fake dataset.
TINY_RUN = [
    "--methods",
    "protonet",
    "--train-episodes",
    "2",
    "--test-episodes",
    "2",
    "--ways",
    "2",
    "--shots",
    "1",
    "--queries",
    "1",
    "--device",
    "cpu",
    "--quiet",
]

#: Classes per split and images per class of the fakes: enough for 20-way 1+5 training.
TRAIN_CLASSES, OTHER_CLASSES = 20, 3
TRAIN_IMAGES, OTHER_IMAGES = 6, 3


def random_images(count: int, side: int, seed: int, height: int | None = None) -> np.ndarray:
    """uint8 ``[count, height or side, side, 3]`` of seeded noise."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, height or side, side, 3), dtype=np.uint8)


def _counts(split: str) -> tuple[int, int]:
    return (TRAIN_CLASSES, TRAIN_IMAGES) if split == "train" else (OTHER_CLASSES, OTHER_IMAGES)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_mini_imagenet(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """``root/mini-imagenet/mini-imagenet-cache-{train,validation,test}.pkl``: a dict with
    ``image_data`` (uint8 ``[N, 84, 84, 3]``) and ``class_dict`` (WordNet id -> image indices).
    Classes are interleaved in ``image_data`` so the converter has to regroup them.

    Returns: split -> class name -> its images ``[n, 84, 84, 3]`` in file order.
    """
    folder = root / "mini-imagenet"
    folder.mkdir(parents=True)
    written = {}
    for seed, (split, mode) in enumerate(
        (("train", "train"), ("val", "validation"), ("test", "test"))
    ):
        n_classes, per_class = _counts(split)
        images = random_images(n_classes * per_class, 84, seed)
        names = [f"n{seed}{c:07d}" for c in range(n_classes)]
        class_dict = {name: list(range(c, len(images), n_classes)) for c, name in enumerate(names)}
        with open(folder / f"mini-imagenet-cache-{mode}.pkl", "wb") as stream:
            pickle.dump({"image_data": images, "class_dict": class_dict}, stream)
        written[split] = {name: images[idx] for name, idx in class_dict.items()}
    return written


def write_tiered_imagenet(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """``root/tiered-imagenet/{train,val,test}_images_png.pkl`` (a list of uint8 arrays of PNG
    bytes, one per image) and ``{split}_labels.pkl`` (a dict with ``label_specific``,
    ``label_general`` and their ``_str`` names)."""
    folder = root / "tiered-imagenet"
    folder.mkdir(parents=True)
    written = {}
    for seed, split in enumerate(("train", "val", "test")):
        n_classes, per_class = _counts(split)
        images = random_images(n_classes * per_class, 84, 10 + seed)
        labels = np.arange(len(images)) % n_classes
        encoded = [
            np.frombuffer(png_bytes(image), dtype=np.uint8).reshape(-1, 1) for image in images
        ]
        names = [f"n{seed}{c:07d}" for c in range(n_classes)]
        with open(folder / f"{split}_images_png.pkl", "wb") as stream:
            pickle.dump(encoded, stream)
        with open(folder / f"{split}_labels.pkl", "wb") as stream:
            pickle.dump(
                {
                    "label_specific": labels,
                    "label_general": labels // 2,
                    "label_specific_str": names,
                    "label_general_str": [f"group{g}" for g in range(n_classes // 2 + 1)],
                },
                stream,
            )
        written[split] = {name: images[labels == c] for c, name in enumerate(names)}
    return written


def write_cifar_fs(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """``root/cifarfs/cifar100/data/<class>/<n>.png`` (32x32) and the split files
    ``root/cifarfs/cifar100/splits/bertinetto/{train,val,test}.txt``."""
    base = root / "cifarfs" / "cifar100"
    (base / "splits" / "bertinetto").mkdir(parents=True)
    written = {}
    for seed, split in enumerate(("train", "val", "test")):
        n_classes, per_class = _counts(split)
        names = [f"{split}_class_{c:02d}" for c in range(n_classes)]
        (base / "splits" / "bertinetto" / f"{split}.txt").write_text("\n".join(names) + "\n")
        written[split] = {}
        for c, name in enumerate(names):
            images = random_images(per_class, 32, 100 * seed + c)
            (base / "data" / name).mkdir(parents=True)
            for i, image in enumerate(images):
                Image.fromarray(image).save(base / "data" / name / f"{i:04d}.png")
            written[split][name] = images
    return written


def write_fc100(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """``root/fc100/FC100_{train,val,test}.pickle``: a dict with ``data`` (uint8
    ``[N, 32, 32, 3]``) and ``labels`` (CIFAR-100 fine labels), pickled with protocol 2 like the
    published Python 2 files."""
    folder = root / "fc100"
    folder.mkdir(parents=True)
    written = {}
    first_label = {"train": 0, "val": 40, "test": 70}
    for seed, split in enumerate(("train", "val", "test")):
        n_classes, per_class = _counts(split)
        images = random_images(n_classes * per_class, 32, 20 + seed)
        labels = [first_label[split] + i % n_classes for i in range(len(images))]
        with open(folder / f"FC100_{split}.pickle", "wb") as stream:
            pickle.dump({"data": images, "labels": labels}, stream, protocol=2)
        written[split] = {
            f"cifar100-label{first_label[split] + c:02d}": images[
                np.asarray(labels) == first_label[split] + c
            ]
            for c in range(n_classes)
        }
    return written


def write_cub(root: Path, class_lists: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """``root/cubirds200/CUB_200_2011/images/<class>/<Name>_<n>.jpg`` for every class of
    ``class_lists`` (learn2learn's split lists: it opens each of them), in varied sizes.

    Returns: split -> class -> number of images written.
    """
    images_dir = root / "cubirds200" / "CUB_200_2011" / "images"
    written: dict[str, dict[str, int]] = {}
    for mode, names in class_lists.items():
        split = "val" if mode == "validation" else mode
        per_class = TRAIN_IMAGES if split == "train" else OTHER_IMAGES
        written[split] = {}
        for c, name in enumerate(names):
            folder = images_dir / name
            folder.mkdir(parents=True)
            for i in range(per_class):  # sizes vary within and across classes, as in CUB
                image = random_images(1, 24 + i, c, height=18 + 2 * i + c % 3)[0]
                Image.fromarray(image).save(folder / f"img_{i:04d}.jpg")
            written[split][name] = per_class
    return written


def write_class_folder(
    root: Path, classes: int = 24, per_class: int = 6, side: int = 20
) -> dict[str, np.ndarray]:
    """``root/<class>/<n>.png|jpg`` with a non-class folder and stray files mixed in."""
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for c in range(classes):
        name = f"species_{c:02d}"
        folder = root / name
        folder.mkdir()
        images = random_images(per_class, side, 1000 + c)
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"img{i:03d}.png")
        (folder / "notes.txt").write_text("not an image")
        written[name] = images
    (root / "empty_folder").mkdir()
    return written


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``folder`` unwritable for the duration: by its mode, and where the mode does not bind
    (tests run as root), by refusing the creation of temporary files inside it."""
    folder.mkdir(parents=True, exist_ok=True)
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root: the mode is not enforced
        for name in ("mkstemp", "mkdtemp"):
            monkeypatch.setattr(tempfile, name, _refusing(getattr(tempfile, name), folder))
    try:
        yield
    finally:
        folder.chmod(mode)


def _refusing(create: Callable[..., Any], folder: Path) -> Callable[..., Any]:
    """``create`` (``tempfile.mkstemp`` or ``mkdtemp``), failing with EACCES inside ``folder``."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        target = kwargs.get("dir")
        if target is not None and Path(target).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EACCES, "Permission denied", str(target))
        return create(*args, **kwargs)

    return refuse


def write_mini_imagenet_csv(
    root: Path, base: str = "mini-imagenet", image_folder: bool = True, side: int = 84
) -> dict[str, dict[str, list[str]]]:
    """Ravi & Larochelle's form: ``root/base/images/<wnid><index>.jpg`` (JPEG, ``side`` pixels;
    directly in ``root/base`` when not ``image_folder``) and ``root/base/{train,val,test}.csv``
    with the header ``filename,label``, rows grouped by class as published.

    Returns: split -> class name -> its file names in CSV order.
    """
    folder = root / base if base else root
    images = folder / "images" if image_folder else folder
    images.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, list[str]]] = {}
    for seed, split in enumerate(("train", "val", "test")):
        n_classes, per_class = _counts(split)
        pixels = random_images(n_classes * per_class, side, 10 + seed)
        rows = ["filename,label"]
        written[split] = {}
        for c in range(n_classes):
            wnid = f"n{seed}{c:07d}"
            names = [f"{wnid}{i:08d}.jpg" for i in range(1, per_class + 1)]
            for i, name in enumerate(names):
                Image.fromarray(pixels[c * per_class + i]).save(images / name, quality=95)
            rows += [f"{name},{wnid}" for name in names]
            written[split][wnid] = names
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return written


def write_official_runs(root: Path, runs: int = 20, ways: int = 20) -> dict[str, list[int]]:
    """Lake et al.'s layout: ``root/all_runs/runNN/{training/classZZ.png, test/itemYY.png,
    class_labels.txt}``, 105x105 drawings of seeded noise (ink on white, as Omniglot's PNGs).
    Test item ``y`` of run ``r`` belongs to class ``(y + r) % ways``.

    Returns: run name -> the class (0-based) of each test item.
    """
    written = {}
    base = root / "all_runs"
    for r in range(1, runs + 1):
        name = f"run{r:02d}"
        rng = np.random.default_rng(r)
        for part in ("training", "test"):
            (base / name / part).mkdir(parents=True)
        labels = [(y + r) % ways for y in range(ways)]
        lines = []
        for z in range(ways):
            image = np.where(rng.random((105, 105)) < 0.1, 0, 255).astype(np.uint8)
            Image.fromarray(image).convert("1").save(
                base / name / "training" / f"class{z + 1:02d}.png"
            )
        for y in range(ways):
            image = np.where(rng.random((105, 105)) < 0.1, 0, 255).astype(np.uint8)
            Image.fromarray(image).convert("1").save(base / name / "test" / f"item{y + 1:02d}.png")
            lines.append(
                f"{name}/test/item{y + 1:02d}.png {name}/training/class{labels[y] + 1:02d}.png"
            )
        (base / name / "class_labels.txt").write_text("\n".join(lines) + "\n")
        written[name] = labels
    return written
