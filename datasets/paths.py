"""Where data and caches live: explicit arguments first, then environment variables, then defaults."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DATA_ROOT_ENV = "FEWSHOT_DATA_ROOT"
CACHE_DIR_ENV = "FEWSHOT_CACHE_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says how to fix it."""


class DatasetFormatError(ValueError):
    """A dataset file exists but cannot be read as the expected format; the message names it."""


def resolve_data_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` if given, else ``$FEWSHOT_DATA_ROOT``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(DATA_ROOT_ENV) or "data").expanduser()


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir`` if given, else ``$FEWSHOT_CACHE_DIR``, else ``~/.cache/fewshot-bench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fewshot-bench"


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(binary_file)`` on a temporary file and move it onto ``path`` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, suffix=path.suffix + ".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
