"""Omniglot (Lake et al. 2015) from the official archives or their extracted folders.

The two official subsets, ``images_background`` (30 alphabets, 964 characters) and
``images_evaluation`` (20 alphabets, 659 characters), each of 20 drawings of 105x105 pixels, are
read from a data root, as ``.zip`` archives or as extracted folders, under ``ROOT/omniglot/`` or
directly under ``ROOT/``. When neither is there they are downloaded from the official location.

Decoding 32,460 PNGs takes a while, so the resized images are stored once in a cache file keyed by
the source listing and the image size; later loads read that file in about a second.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .omniglot_splits import check_split, in_split, rotations_of
from .paths import (
    DamagedCacheWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    atomic_write,
    move_aside,
    require_writable_dir,
    resolve_cache_dir,
    resolve_data_root,
)
from .store import FewShotSplit

SUBSETS = ("images_background", "images_evaluation")
OFFICIAL_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{name}.zip"
OFFICIAL_MD5 = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
#: Pixel-level fingerprint of the official dataset (see :func:`_fingerprint_update`): equal for
#: the official archives, for re-packed copies of them and for their extracted folders.
OFFICIAL_FINGERPRINT = "cfb259a0ca90fb2075351dfe623a4f896b599e8cc1de2b247fbc8e97eaef6d3c"
_CACHE_FORMAT = 1
#: Where each drawing lies, relative to the archive root or the folder holding the subsets.
LAYOUT = "{subset}/<Alphabet>/characterNN/XXXX_YY.png"
_ROOT_HOLDS = (
    "omniglot/images_background.zip and omniglot/images_evaluation.zip (or their extracted folders)"
)


@dataclass(frozen=True)
class OmniglotImages:
    """All Omniglot drawings, grouped by character.

    Attributes:
        images: uint8 ``[n_images, 1, S, S]``, ink = 255, background = 0, resized to S x S.
        characters: ``"Alphabet/characterNN"`` per character, sorted within each subset.
        subsets: the official subset of each character.
        character_start: int64 ``[n_characters]``, first image of each character.
        character_size: int64 ``[n_characters]``, drawings per character (20).
        fingerprint: SHA-256 over member names and decoded pixels of what was read.
        source: where the images were read from.
        drawers: int64 ``[n_images]``, who drew each image: the ``YY`` of its file name
            ``XXXX_YY.png`` (1-20 in the official release; -1 when the name has no number there).
    """

    images: Tensor
    characters: tuple[str, ...]
    subsets: tuple[str, ...]
    character_start: Tensor
    character_size: Tensor
    fingerprint: str
    source: str
    drawers: Tensor

    @property
    def matches_official(self) -> bool:
        """Whether the pixels read are those of the official dataset."""
        return self.fingerprint == OFFICIAL_FINGERPRINT


def load_omniglot(
    root: str | os.PathLike[str] | None = None,
    image_size: int = 28,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> OmniglotImages:
    """Read Omniglot from ``root`` (or the cache), downloading it first when allowed and needed.

    Args:
        root: data root; ``None`` means ``$FEWSHOT_DATA_ROOT``, else ``./data``.
        image_size: side of the resized square images (28 is the few-shot standard).
        cache_dir: where the preprocessed tensor is kept; ``None`` means ``$FEWSHOT_CACHE_DIR``,
            else ``~/.cache/fewshot-bench``. Never inside the data root, which may be read-only.
        download: fetch the official archives into ``ROOT/omniglot`` when they are missing.
        progress: show a progress bar while decoding.

    Raises:
        DatasetNotFoundError: the data is missing and could not be downloaded, or ``root`` is a
            file.
        DatasetFormatError: an archive, a member or an image cannot be read, or the drawings are
            not in the official layout.
        PermissionError: the images must be decoded but the cache folder is not writable.
        WriteFailedError: writing the cache failed (a full disk, say).

    Warns:
        DamagedCacheWarning: the cache file could not be read; it is moved aside and rebuilt.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    data_root = resolve_data_root(root, holds=_ROOT_HOLDS)
    sources = find_sources(data_root)
    if len(sources) < len(SUBSETS):
        if not download:
            raise _not_found(data_root, sources, "download=False")
        _download_missing(data_root, sources)
        sources = find_sources(data_root)
    for subset, source in sources.items():
        _drawing_names(subset, source)  # fails early, naming the file, on damage or bad layout
    listing = _listing_key(sources, image_size)
    cache_file = resolve_cache_dir(cache_dir) / f"omniglot-{image_size}px-{listing[:20]}.pt"
    payload = _read_cache(cache_file, image_size)
    if payload is None:
        require_writable_dir(cache_file.parent)  # before the decode, not after it
        payload = _decode(sources, image_size, progress)
        atomic_write(cache_file, lambda stream: torch.save(payload, stream))
    return _from_payload(payload, source=", ".join(str(p) for p in sources.values()))


def omniglot_split(
    data: OmniglotImages, scheme: str = "vinyals", split: str = "train"
) -> FewShotSplit:
    """The classes of ``split`` under ``scheme`` (``"vinyals"``, ``"lake"`` or
    ``"lake-rotated"``) as a FewShotSplit.

    Under ``"vinyals"`` each character at each of the four rotations is its own class (named
    ``.../rot090``); under ``"lake-rotated"`` only the training characters are.
    """
    check_split(scheme, split)
    starts, sizes, turns, names = [], [], [], []
    rotations = rotations_of(scheme, split)
    for index, (character, subset) in enumerate(zip(data.characters, data.subsets)):
        if not in_split(scheme, split, character, subset):
            continue
        for quarter in rotations:
            starts.append(int(data.character_start[index]))
            sizes.append(int(data.character_size[index]))
            turns.append(quarter)
            names.append(f"{character}/rot{quarter * 90:03d}" if len(rotations) > 1 else character)
    return FewShotSplit(
        name=f"omniglot/{scheme}/{split}",
        images=data.images,
        class_start=torch.tensor(starts, dtype=torch.int64),
        class_size=torch.tensor(sizes, dtype=torch.int64),
        class_rotation=torch.tensor(turns, dtype=torch.int64),
        class_names=tuple(names),
        class_group=tuple(name.split("/")[0] for name in names),
        image_drawer=data.drawers,
    )


# --- locating, downloading ----------------------------------------------------------------------


def find_sources(root: Path) -> dict[str, Path]:
    """The folder or archive found for each official subset under ``root`` (missing ones absent).

    Looks in ``root/omniglot/`` and then in ``root/``; an extracted folder wins over an archive.
    A ``.zip`` file counts even when it is damaged, so that reading it says so (rather than
    reporting the subset missing).
    """
    found: dict[str, Path] = {}
    for subset in SUBSETS:
        for base in (root / "omniglot", root):
            for candidate in (base / subset, base / f"{subset}.zip"):
                if subset not in found and (candidate.is_dir() or candidate.is_file()):
                    found[subset] = candidate
    return found


def _not_found(root: Path, sources: dict[str, Path], why: str) -> DatasetNotFoundError:
    missing = [s for s in SUBSETS if s not in sources]
    looked = ", ".join(str(p) for p in (root / "omniglot", root))
    return DatasetNotFoundError(
        f"Omniglot not found: missing {' and '.join(missing)} (a folder or a .zip archive) in "
        f"{looked}; not downloaded ({why}). Fix: point --data-root or ${'FEWSHOT_DATA_ROOT'} at a "
        f"folder holding omniglot/images_background.zip and omniglot/images_evaluation.zip (or "
        f"their extracted folders), or run once with internet access so that the official "
        f"archives are downloaded into {root / 'omniglot'}."
    )


def _download_missing(root: Path, sources: dict[str, Path]) -> None:
    target_dir = root / "omniglot"
    for subset in SUBSETS:
        if subset in sources:
            continue
        url = OFFICIAL_URL.format(name=subset)
        partial = target_dir / f"{subset}.zip.part"
        try:
            try:
                target_dir.mkdir(parents=True, exist_ok=True)
                urllib.request.urlretrieve(url, partial)
            except (urllib.error.URLError, OSError) as error:
                raise _not_found(root, sources, f"download of {url} failed: {error}") from error
            digest = hashlib.md5(partial.read_bytes()).hexdigest()
            if digest != OFFICIAL_MD5[subset]:
                raise DatasetNotFoundError(
                    f"downloaded {url} but its MD5 is {digest}, not the official "
                    f"{OFFICIAL_MD5[subset]}; the file was discarded. Retry, or place the "
                    f"official archives in {target_dir} yourself."
                )
            os.replace(partial, target_dir / f"{subset}.zip")
        finally:
            partial.unlink(missing_ok=True)


# --- reading and decoding -----------------------------------------------------------------------


def _open_zip(source: Path) -> zipfile.ZipFile:
    """``source`` opened as a zip archive.

    Raises:
        DatasetFormatError: it is not a readable zip archive.
    """
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError) as error:
        raise DatasetFormatError(
            f"Omniglot archive {source} is not a readable zip archive ({error}); it may be a "
            f"truncated or damaged download. Fix: {_fix(source)}."
        ) from error


def _fix(source: Path) -> str:
    """How to repair a damaged or mis-laid-out ``source`` (an archive or a folder)."""
    official = source.name if source.suffix == ".zip" else f"{source.name}.zip"
    if source.is_dir():
        return (
            f"extract the official {official} again so that its drawings lie in {source}, or "
            "delete the folder so that the archive is downloaded again"
        )
    return f"replace it with the official {official}, or delete it so that it is downloaded again"


def _is_hidden(relative: str) -> bool:
    """Whether a path has a part starting with ``.`` (macOS ``._`` files and the like)."""
    return any(part.startswith(".") for part in relative.split("/"))


def _drawing_names(subset: str, source: Path) -> list[str]:
    """``subset/<Alphabet>/characterNN/XXXX_YY.png`` of every drawing in ``source``, in reading
    order; hidden files (such as macOS ``._`` files) are skipped.

    Raises:
        DatasetFormatError: the archive is unreadable, holds no drawings, or holds a drawing at
            another depth.
    """
    layout = LAYOUT.format(subset=subset)
    if source.is_dir():
        paths = sorted(source.glob("*/*/*.png"))  # path order, as always: it sets the fingerprint
        found = [f"{subset}/{p.relative_to(source).as_posix()}" for p in paths]
        stray = [] if found else [p.relative_to(source).as_posix() for p in source.rglob("*.png")]
    else:
        with _open_zip(source) as archive:
            members = [n for n in archive.namelist() if n.endswith(".png")]
        found = sorted(n for n in members if n.startswith(f"{subset}/"))
        stray = [] if found else members
    names = [n for n in found if not _is_hidden(n)]
    misplaced = [n for n in names if len(n.split("/")) != 4 or "" in n.split("/")]
    if misplaced:  # only an archive can hold them: a folder is listed at the right depth
        raise DatasetFormatError(
            f"Omniglot archive {source}: member {misplaced[0]} is not in the official layout "
            f"{layout} (one folder per alphabet, in it one folder per character). "
            f"Fix: {_fix(source)}."
        )
    if not names:
        example = f" (found {stray[0]} instead)" if stray else ""
        raise DatasetFormatError(
            f"Omniglot {'folder' if source.is_dir() else 'archive'} {source} holds no PNG "
            f"drawings in the official layout {layout}{example}. Fix: {_fix(source)}."
        )
    return names


def _members(subset: str, source: Path) -> Iterator[tuple[str, bytes]]:
    """``(relative path, PNG bytes)`` of every drawing of ``subset``, sorted by path.

    Raises:
        DatasetFormatError: see :func:`_drawing_names`; also a member whose data is damaged.
    """
    names = _drawing_names(subset, source)
    if source.is_dir():
        for name in names:
            yield name, (source / name.split("/", 1)[1]).read_bytes()
        return
    with _open_zip(source) as archive:
        for name in names:
            try:
                blob = archive.read(name)
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                raise DatasetFormatError(
                    f"Omniglot archive {source} is damaged: member {name} cannot be read "
                    f"({error}). Fix: {_fix(source)}."
                ) from error
            yield name, blob


def _where(subset: str, source: Path, name: str) -> str:
    """Where drawing ``name`` lives, for messages: a member of an archive or a file."""
    if source.is_dir():
        return f"file {source / name.split('/', 1)[1]}"
    return f"member {name} of archive {source}"


def _listing_key(sources: dict[str, Path], image_size: int) -> str:
    """A hash of member names and sizes (not times), naming the cache file for these sources."""
    digest = hashlib.sha256(f"format={_CACHE_FORMAT};size={image_size}".encode())
    for subset in SUBSETS:
        source = sources[subset]
        if source.is_dir():
            entries = sorted(
                (p.relative_to(source).as_posix(), p.stat().st_size)
                for p in source.glob("*/*/*.png")
            )
        else:
            with _open_zip(source) as archive:
                entries = sorted(
                    (i.filename, i.CRC) for i in archive.infolist() if i.filename.endswith(".png")
                )
        digest.update(f"{subset}:{entries!r}".encode())
    return digest.hexdigest()


def _count_members(sources: dict[str, Path]) -> int:
    return sum(len(_drawing_names(subset, source)) for subset, source in sources.items())


def _decode(sources: dict[str, Path], image_size: int, progress: bool) -> dict:
    from tqdm.auto import tqdm

    fingerprint = hashlib.sha256()
    images: list[np.ndarray] = []
    characters: list[str] = []
    subsets: list[str] = []
    sizes: list[int] = []
    drawers: list[int] = []
    bar = tqdm(
        total=_count_members(sources),
        desc="decoding Omniglot (once; cached afterwards)",
        unit="img",
        disable=not progress,
    )
    for subset in SUBSETS:
        for name, blob in _members(subset, sources[subset]):
            _, alphabet, character, _ = name.split("/")
            key = f"{alphabet}/{character}"
            if not characters or characters[-1] != key or subsets[-1] != subset:
                characters.append(key)
                subsets.append(subset)
                sizes.append(0)
            try:
                binary, small = decode_drawing(blob, image_size)
            except (OSError, SyntaxError, Image.DecompressionBombError) as error:
                raise DatasetFormatError(  # UnidentifiedImageError is an OSError
                    f"Omniglot: cannot decode {_where(subset, sources[subset], name)} as an "
                    f"image ({type(error).__name__}: {error}). Fix: {_fix(sources[subset])}."
                ) from error
            fingerprint.update(name.encode() + b"\0" + binary)
            images.append(small)
            drawers.append(drawer_of(name))
            sizes[-1] += 1
            bar.update()
    bar.close()
    size_tensor = torch.tensor(sizes, dtype=torch.int64)
    return {
        "images": torch.from_numpy(np.stack(images)).unsqueeze(1),
        "characters": characters,
        "subsets": subsets,
        "character_size": size_tensor,
        "character_start": torch.cumsum(size_tensor, 0) - size_tensor,
        "fingerprint": fingerprint.hexdigest(),
        "drawers": torch.tensor(drawers, dtype=torch.int64),
    }


def drawer_of(name: str) -> int:
    """The drawer of ``.../XXXX_YY.png``: ``YY`` as a number, or -1 when it is not one."""
    stem = name.rsplit("/", 1)[-1].removesuffix(".png")
    _, underscore, number = stem.rpartition("_")
    return int(number) if underscore and number.isdigit() else -1


def decode_drawing(blob: bytes, image_size: int) -> tuple[bytes, np.ndarray]:
    """A PNG drawing as (its 1-bit pixels, for the fingerprint; uint8 ``[S, S]`` with ink 255)."""
    with Image.open(io.BytesIO(blob)) as image:
        binary = image.convert("1")
        small = binary.convert("L").resize((image_size, image_size), Image.Resampling.LANCZOS)
    return binary.tobytes(), 255 - np.asarray(small, dtype=np.uint8)


# --- the cache ----------------------------------------------------------------------------------


def _read_cache(cache_file: Path, image_size: int) -> dict | None:
    """The payload stored in ``cache_file``, or ``None`` when there is none.

    A cache that cannot be read (truncated, overwritten, another format) is moved aside to
    ``<name>.damaged`` with a :class:`DamagedCacheWarning` and ``None`` is returned, so that it is
    rebuilt. Only then must the cache folder be writable.
    """
    if not cache_file.is_file():
        return None
    try:
        payload = torch.load(cache_file, weights_only=True)
        if (
            isinstance(payload, dict)
            and "drawers" not in payload
            and payload.keys() >= _PAYLOAD_KEYS
        ):
            return None  # a sound cache written before drawers were kept: decoded again
        _check_payload(payload, image_size)
        return payload
    except PermissionError:
        raise
    except Exception as error:  # any other failure to read it means the file is unusable
        require_writable_dir(cache_file.parent)
        aside = move_aside(cache_file)
        warnings.warn(
            f"Omniglot cache {cache_file} cannot be read ({_first_sentence(error)}); it was moved "
            f"aside to {aside} and will be rebuilt by decoding the images again.",
            DamagedCacheWarning,
            stacklevel=3,
        )
        return None


def _first_sentence(error: BaseException) -> str:
    """``"Type: first sentence of the message"`` (torch's messages run over many lines)."""
    lines = str(error).strip().splitlines()
    sentence = lines[0].split(". ")[0].rstrip(".")[:200] if lines else "no message"
    return f"{type(error).__name__}: {sentence}"


#: What every cache holds (caches written since drawers were kept also hold ``drawers``).
_PAYLOAD_KEYS = frozenset(
    {"images", "characters", "subsets", "character_size", "character_start", "fingerprint"}
)


def _check_payload(payload: object, image_size: int) -> None:
    """Raise ``ValueError`` unless ``payload`` is a decoded Omniglot of ``image_size`` pixels."""
    keys = (*sorted(_PAYLOAD_KEYS), "drawers")
    if not isinstance(payload, dict) or any(key not in payload for key in keys):
        raise ValueError(f"not a dict with the keys {', '.join(keys)}")
    images, sizes = payload["images"], payload["character_size"]
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        raise ValueError("images are not a uint8 tensor")
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, image_size, image_size):
        raise ValueError(f"images have shape {tuple(images.shape)}, expected [N, 1, S, S]")
    if not isinstance(sizes, Tensor) or int(sizes.sum()) != len(images):
        raise ValueError("character sizes do not add up to the number of images")
    if not len(payload["characters"]) == len(payload["subsets"]) == len(sizes):
        raise ValueError("characters, subsets and character sizes differ in length")
    if not isinstance(payload["drawers"], Tensor) or len(payload["drawers"]) != len(images):
        raise ValueError("drawers are not one number per image")


def _from_payload(payload: dict, source: str) -> OmniglotImages:
    return OmniglotImages(
        images=payload["images"],
        characters=tuple(payload["characters"]),
        subsets=tuple(payload["subsets"]),
        character_start=payload["character_start"],
        character_size=payload["character_size"],
        fingerprint=payload["fingerprint"],
        source=source,
        drawers=payload["drawers"],
    )
