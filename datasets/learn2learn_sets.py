"""miniImageNet, tieredImageNet, CIFAR-FS, FC100 and CUB-200-2011, read through learn2learn.

learn2learn (an optional extra: ``bash scripts/setup.sh`` builds and installs it) knows where
these datasets are published and in which files. Its dataset classes read each split; this
module converts every split once into the memory-mapped uint8 cache of
:mod:`datasets.converted`, from which episodes are drawn exactly as for Omniglot. Images are
84x84 RGB (32x32 for CIFAR-FS and FC100) and normalised with the per-channel mean and standard
deviation of the training split's pixels.

Under the data root ``R`` each dataset is found in learn2learn's own layout:

- ``mini-imagenet``: ``R/mini-imagenet/mini-imagenet-cache-{train,validation,test}.pkl``
  (or directly in ``R``);
- ``tiered-imagenet``: ``R/tiered-imagenet/{train,val,test}_{images_png,labels}.pkl``;
- ``cifar-fs``: ``R/cifarfs/cifar100/data/<class>/*.png`` with the split files
  ``R/cifarfs/cifar100/splits/bertinetto/{train,val,test}.txt``, or learn2learn's processed copy
  ``R/cifarfs/processed/{train,val,test}/<class>/*.png``;
- ``fc100``: ``R/fc100/FC100_{train,val,test}.pickle`` (or directly in ``R``);
- ``cub``: ``R/cubirds200/CUB_200_2011/images/<class>/*.jpg``.

When the files are missing they are downloaded there by learn2learn. The ``.pkl``/``.pickle``
files are Python pickles, read with a restricted unpickler (:mod:`datasets.safe_pickle`) that
constructs only containers, numbers, strings and numpy arrays and refuses anything else, so that
a file cannot run code; still, use only files from a
source you trust.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from .converted import (
    ConvertedDataset,
    ImageFormat,
    PartSource,
    cache_directory,
    convert,
    open_cached,
)
from .paths import (
    DatasetFormatError,
    DatasetNotFoundError,
    require_writable_dir,
    resolve_cache_dir,
    resolve_data_root,
)
from .safe_pickle import UnsafePickleError, restricted_pickles, safe_load
from .store import FewShotSplit

LEARN2LEARN_VERSION = "0.2.0"
INSTALL_COMMAND = "bash scripts/setup.sh"
#: Our split names and the ``mode`` learn2learn's classes take for each.
MODES = (("train", "train"), ("val", "validation"), ("test", "test"))
SCHEMES = {"standard": ("train", "val", "test")}


class MissingDependencyError(DatasetNotFoundError):
    """The dataset's reader (learn2learn) is not installed; the message says how to install it."""


Reader = Callable[[ModuleType, Path, str, bool], PartSource]


@dataclass(frozen=True)
class Learn2LearnSet:
    """One dataset read through learn2learn.

    Attributes:
        name: registry name.
        title: the dataset's usual name, for messages.
        summary: one line for ``--list``.
        image_size: side of the stored square images.
        subfolder: learn2learn's root is ``R/subfolder`` (also looked for as ``R`` itself);
            empty: ``R`` (learn2learn then keeps the files in its own subfolder of ``R``).
        layouts: alternative sets of paths, relative to learn2learn's root, that must exist.
        download_size: what learn2learn downloads when the files are missing, for messages.
        leftovers: names learn2learn creates in its root while downloading.
        reader: ``reader(learn2learn, root, mode, download) -> PartSource`` for one split.
        stage: when set, ``stage(found_root, scratch_dir) -> root`` gives learn2learn a root it
            may write into (so the data root itself is never written to while converting).
    """

    name: str
    title: str
    summary: str
    image_size: int
    subfolder: str
    layouts: tuple[tuple[str, ...], ...]
    download_size: str
    leftovers: tuple[str, ...]
    reader: Reader
    stage: Callable[[Path, Path], Path] | None = None


def import_learn2learn(title: str) -> ModuleType:
    """learn2learn with its vision datasets, or a MissingDependencyError naming the fix."""
    try:
        # learn2learn imports gym, which prints an "unmaintained" notice on import; not ours.
        with contextlib.redirect_stderr(io.StringIO()):
            import learn2learn
            import learn2learn.vision.datasets
    except ImportError as error:
        raise MissingDependencyError(
            f"{title} is read through learn2learn, which is not installed here ({error}). "
            f"Fix: run `{INSTALL_COMMAND}` (it builds learn2learn {LEARN2LEARN_VERSION} for this "
            "Python and installs the project's l2l extra), or in another environment "
            "`python scripts/build_learn2learn.py --install`."
        ) from error
    return learn2learn


# --- readers: one learn2learn split -> PartSource -----------------------------------------------


def _mini_imagenet(l2l: ModuleType, root: Path, mode: str, download: bool) -> PartSource:
    dataset = l2l.vision.datasets.MiniImagenet(str(root), mode=mode, download=download)
    del dataset.x  # a float32 copy made by the class; the uint8 original is what we store
    images = dataset.data["image_data"]  # uint8 [N, 84, 84, 3]
    return PartSource(
        class_names=[str(name) for name in dataset.class_idx],
        labels=np.asarray(dataset.y, dtype=np.int64),
        read=images.__getitem__,
    )


def _tiered_imagenet(l2l: ModuleType, root: Path, mode: str, download: bool) -> PartSource:
    dataset = l2l.vision.datasets.TieredImagenet(str(root), mode=mode, download=download)
    values, labels = np.unique(np.asarray(dataset.labels, dtype=np.int64), return_inverse=True)
    encoded = dataset.images  # PNG bytes per image, the whole split in memory

    def release(index: int) -> None:
        encoded[index] = None  # free each encoded image once it is stored

    return PartSource(
        class_names=_tiered_class_names(root, mode, values),
        labels=labels,
        read=lambda index: dataset[index][0],
        release=release if isinstance(encoded, (list, np.ndarray)) else None,
    )


def _tiered_class_names(root: Path, mode: str, values: np.ndarray) -> list[str]:
    """WordNet ids from the labels file when it has them, else ``class<label>``."""
    short = "val" if mode == "validation" else mode
    with open(root / "tiered-imagenet" / f"{short}_labels.pkl", "rb") as stream:
        info = safe_load(stream)
    names = info.get("label_specific_str") if isinstance(info, dict) else None
    if names is None or len(names) <= int(values.max()):
        return [f"class{int(v):03d}" for v in values]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in (names[int(v)] for v in values)]


def _cifar_fs(l2l: ModuleType, root: Path, mode: str, download: bool) -> PartSource:
    dataset = l2l.vision.datasets.CIFARFS(str(root), mode=mode, download=download)
    paths = [path for path, _ in dataset.samples]
    return PartSource(
        class_names=list(dataset.classes),
        labels=[label for _, label in dataset.samples],
        read=lambda index: dataset.loader(paths[index]),
        sort_keys=[Path(path).name for path in paths],
    )


def _stage_cifar_fs(found: Path, scratch: Path) -> Path:
    """learn2learn turns the raw folders into ``cifarfs/processed/`` by copying them, inside its
    root. When that copy is not in the data root yet, it is made in a scratch root whose
    ``cifarfs/cifar100`` links to the data, and deleted after the conversion."""
    if (found / "cifarfs" / "processed").is_dir():
        return found
    (scratch / "cifarfs").mkdir(parents=True)
    (scratch / "cifarfs" / "cifar100").symlink_to((found / "cifarfs" / "cifar100").resolve())
    return scratch


def _fc100(l2l: ModuleType, root: Path, mode: str, download: bool) -> PartSource:
    dataset = l2l.vision.datasets.FC100(str(root), mode=mode, download=download)
    values, labels = np.unique(np.asarray(dataset.labels, dtype=np.int64), return_inverse=True)
    return PartSource(
        class_names=[f"cifar100-label{int(v):02d}" for v in values],  # fine-label ids
        labels=labels,
        read=dataset.images.__getitem__,  # uint8 [32, 32, 3] each
    )


def _cub(l2l: ModuleType, root: Path, mode: str, download: bool) -> PartSource:
    dataset = l2l.vision.datasets.CUBirds200(str(root), mode=mode, download=download)
    class_names = sys.modules[type(dataset).__module__].SPLITS[mode]
    return PartSource(
        class_names=list(class_names),
        labels=[label for _, label in dataset.data],
        read=lambda index: dataset[index][0],
        sort_keys=[Path(path).name for path, _ in dataset.data],
    )


SETS: dict[str, Learn2LearnSet] = {
    spec.name: spec
    for spec in (
        Learn2LearnSet(
            name="mini-imagenet",
            title="miniImageNet",
            summary="miniImageNet (Vinyals et al.; Ravi & Larochelle split 64/16/20 classes "
            "x 600), 3x84x84, via learn2learn; cache 1.3 GB",
            image_size=84,
            subfolder="mini-imagenet",
            layouts=(tuple(f"mini-imagenet-cache-{m}.pkl" for _, m in MODES),),
            download_size="three pickles, about 1.3 GB",
            leftovers=(),
            reader=_mini_imagenet,
        ),
        Learn2LearnSet(
            name="tiered-imagenet",
            title="tieredImageNet",
            summary="tieredImageNet (Ren et al.; 351/97/160 classes, 779,165 images), 3x84x84, "
            "via learn2learn; cache 16.5 GB on disk, memory-mapped",
            image_size=84,
            subfolder="",
            layouts=(
                tuple(
                    f"tiered-imagenet/{s}_{kind}.pkl"
                    for s in ("train", "val", "test")
                    for kind in ("images_png", "labels")
                ),
            ),
            download_size="about 12 GB, says learn2learn",
            leftovers=("tiered-imagenet", "tiered_imagenet.tar"),
            reader=_tiered_imagenet,
        ),
        Learn2LearnSet(
            name="cifar-fs",
            title="CIFAR-FS",
            summary="CIFAR-FS (Bertinetto et al.; CIFAR-100, 64/16/20 classes x 600), 3x32x32, "
            "via learn2learn; cache 184 MB",
            image_size=32,
            subfolder="",
            layouts=(
                tuple(f"cifarfs/processed/{s}" for s, _ in MODES),
                (
                    "cifarfs/cifar100/data",
                    *(f"cifarfs/cifar100/splits/bertinetto/{s}.txt" for s, _ in MODES),
                ),
            ),
            download_size="a zip of CIFAR-100 PNG folders",
            leftovers=("cifarfs", "cifarfs.zip"),
            reader=_cifar_fs,
            stage=_stage_cifar_fs,
        ),
        Learn2LearnSet(
            name="fc100",
            title="FC100",
            summary="FC100 (Oreshkin et al.; CIFAR-100 by superclass, 60/20/20 classes x 600), "
            "3x32x32, via learn2learn; cache 184 MB",
            image_size=32,
            subfolder="fc100",
            layouts=(tuple(f"FC100_{s}.pickle" for s, _ in MODES),),
            download_size="about 160 MB, says learn2learn",
            leftovers=(),
            reader=_fc100,
        ),
        Learn2LearnSet(
            name="cub",
            title="CUB-200-2011",
            summary="CUB-200-2011 birds (Triantafillou et al. split 140/30/30 classes, "
            "ImageNet duplicates left out), 3x84x84, via learn2learn; cache 250 MB",
            image_size=84,
            subfolder="",
            layouts=(("cubirds200/CUB_200_2011/images",),),
            download_size="about 1.1 GB, says learn2learn",
            leftovers=("cubirds200",),
            reader=_cub,
        ),
    )
}


# --- loading ------------------------------------------------------------------------------------


def load_learn2learn_set(
    name: str,
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> ConvertedDataset:
    """Read dataset ``name`` (a key of :data:`SETS`) from the cache, converting it first if needed.

    Args:
        root: data root; ``None`` means ``$FEWSHOT_DATA_ROOT``, else ``./data``.
        cache_dir: where converted images are kept; ``None`` means ``$FEWSHOT_CACHE_DIR``, else
            ``~/.cache/fewshot-bench``.
        download: let learn2learn download the files into the data root when they are missing.
        progress: show progress bars while converting.

    Raises:
        DatasetNotFoundError: the files are missing and were not downloaded.
        MissingDependencyError: learn2learn is needed (to convert or download) but not installed.
        DatasetFormatError: a file exists but learn2learn cannot read it.
    """
    if name not in SETS:
        raise ValueError(f"unknown learn2learn dataset {name!r}; available: {', '.join(SETS)}")
    spec = SETS[name]
    data_root = resolve_data_root(root)
    found = locate(spec, data_root)
    if found is None:
        if not download:
            raise _not_found(spec, data_root, "download=False")
        _download(spec, data_root)
        found = locate(spec, data_root)
        if found is None:
            raise _not_found(spec, data_root, "learn2learn's download left them incomplete")
    base, layout = found
    image_format = ImageFormat(spec.image_size, 3)
    directory = cache_directory(spec.name, source_key(base, layout), image_format, cache_dir)
    cached = open_cached(directory)
    if cached is not None:
        return cached
    l2l = import_learn2learn(spec.title)
    scratch_parent = resolve_cache_dir(cache_dir)
    require_writable_dir(scratch_parent)  # before staging and converting, not after
    scratch = Path(tempfile.mkdtemp(dir=scratch_parent, prefix=f".{spec.name}-scratch-"))
    try:
        l2l_root = spec.stage(base, scratch) if spec.stage is not None else base
        parts = [
            (split, functools.partial(_read, spec, l2l, l2l_root, mode, False))
            for split, mode in MODES
        ]
        return convert(directory, spec.name, image_format, parts, str(base), progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def standard_split(data: ConvertedDataset, scheme: str, split: str) -> FewShotSplit:
    """Split ``split`` of the standard scheme, normalised with the training split's statistics."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown split {scheme!r} for {data.name}; valid: {', '.join(SCHEMES)}")
    if split not in SCHEMES[scheme]:
        raise ValueError(
            f"unknown split {split!r} of {data.name}/{scheme}; valid: {', '.join(SCHEMES[scheme])}"
        )
    return data.split(f"{data.name}/{scheme}/{split}", split, stats=data.channel_stats("train"))


def candidate_roots(spec: Learn2LearnSet, data_root: Path) -> list[Path]:
    """Where learn2learn's root for ``spec`` is looked for, in order."""
    return [data_root / spec.subfolder, data_root] if spec.subfolder else [data_root]


def locate(spec: Learn2LearnSet, data_root: Path) -> tuple[Path, tuple[str, ...]] | None:
    """``(learn2learn root, layout found)``, or ``None`` when no layout is complete."""
    for base in candidate_roots(spec, data_root):
        for layout in spec.layouts:
            if all((base / relative).exists() for relative in layout):
                return base, layout
    return None


def source_key(base: Path, layout: tuple[str, ...]) -> str:
    """Identity of the files read: name, size and modification time of each file, and name and
    size of every file inside each folder (listing order does not matter)."""
    entries: list[str] = []
    for relative in layout:
        path = base / relative
        if path.is_file():
            stat = path.stat()
            entries.append(f"{relative}:{stat.st_size}:{stat.st_mtime_ns}")
            continue
        for dirpath, _, filenames in os.walk(path, followlinks=True):
            for filename in filenames:
                member = Path(dirpath) / filename
                entries.append(f"{member.relative_to(base).as_posix()}:{member.stat().st_size}")
    return "\n".join(sorted(entries))


def _read(
    spec: Learn2LearnSet, l2l: ModuleType, root: Path, mode: str, download: bool
) -> PartSource:
    """``spec.reader`` with learn2learn's errors turned into ones that name the file and fix."""
    try:
        # learn2learn prints progress (not a result) and reads pickles itself: restricted here
        with contextlib.redirect_stdout(sys.stderr), restricted_pickles():
            return spec.reader(l2l, root, mode, download)
    except FileNotFoundError as error:
        raise DatasetNotFoundError(
            f"{spec.title}: learn2learn could not read split {mode!r} under {root}: {error}. "
            f"Expected learn2learn's layout: {_layout_text(spec)}."
        ) from error
    except UnsafePickleError as error:
        raise DatasetFormatError(f"{spec.title}: split {mode!r} under {root}: {error}") from error
    except (pickle.UnpicklingError, EOFError, KeyError) as error:
        raise DatasetFormatError(
            f"{spec.title}: split {mode!r} under {root} is not in the format learn2learn reads "
            f"({type(error).__name__}: {error}); the file may be truncated or from another "
            "release. Replace it with the published file (delete it and run with internet access "
            "so that learn2learn downloads it)."
        ) from error


def _download(spec: Learn2LearnSet, data_root: Path) -> None:
    """Let learn2learn download every split into the data root; on failure, remove what it made."""
    target = data_root / spec.subfolder if spec.subfolder else data_root
    watched = [target] if spec.subfolder else [target / name for name in spec.leftovers]
    watched += [target / relative.split("/")[0] for layout in spec.layouts for relative in layout]
    new = [path for path in dict.fromkeys(watched) if not path.exists() and not path.is_symlink()]
    l2l = import_learn2learn(spec.title)
    target.mkdir(parents=True, exist_ok=True)
    try:
        for _, mode in MODES:
            _read(spec, l2l, target, mode, True)
    except Exception as error:
        for path in new:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise _not_found(
            spec, data_root, f"learn2learn's download failed: {type(error).__name__}: {error}"
        ) from error


def _layout_text(spec: Learn2LearnSet) -> str:
    return " or ".join(", ".join(layout) for layout in spec.layouts)


def _not_found(spec: Learn2LearnSet, data_root: Path, why: str) -> DatasetNotFoundError:
    looked = ", ".join(str(p) for p in candidate_roots(spec, data_root))
    target = data_root / spec.subfolder if spec.subfolder else data_root
    return DatasetNotFoundError(
        f"{spec.title} not found: expected {_layout_text(spec)} in {looked}; not downloaded "
        f"({why}). Fix: point --data-root or $FEWSHOT_DATA_ROOT at a folder holding these files, "
        f"or run once with internet access so that learn2learn downloads them "
        f"({spec.download_size}) into {target}."
    )
