"""Where data and caches live: explicit arguments first, then environment variables, then defaults.

Also the file-system helpers every cache and record writer shares: atomic writes that say which
file a full disk broke and how much space is left, a writability check made before long work,
and moving a damaged cache aside so that it is rebuilt.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DATA_ROOT_ENV = "FEWSHOT_DATA_ROOT"
CACHE_DIR_ENV = "FEWSHOT_CACHE_DIR"
#: Suffix of a damaged cache file or folder moved aside (see :func:`move_aside`).
DAMAGED_SUFFIX = ".damaged"
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says how to fix it."""


class DatasetFormatError(ValueError):
    """A dataset file exists but cannot be read as the expected format; the message names it."""


class WriteFailedError(OSError):
    """Writing a file failed (often a full disk); the message names the file, the cause and the
    free space left on that disk. ``errno`` is that of the original error when it had one."""


class DamagedCacheWarning(UserWarning):
    """A cache file or folder could not be read; it was moved aside and is being rebuilt."""


def resolve_data_root(
    root: str | os.PathLike[str] | None, holds: str = "one folder per dataset"
) -> Path:
    """``root`` if given, else ``$FEWSHOT_DATA_ROOT``, else ``./data``.

    Args:
        holds: what the data root must hold, for the error message.

    Raises:
        DatasetNotFoundError: the path is a file, not a folder.
    """
    if root is not None:
        path = Path(root).expanduser()
    else:
        path = Path(os.environ.get(DATA_ROOT_ENV) or "data").expanduser()
    if path.is_file():
        raise DatasetNotFoundError(
            f"data root {path} is a file, not a folder. Fix: point --data-root (or "
            f"${DATA_ROOT_ENV}) at the folder that holds {holds}, not at a file inside it."
        )
    return path


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir`` if given, else ``$FEWSHOT_CACHE_DIR``, else ``~/.cache/fewshot-bench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fewshot-bench"


def require_writable_dir(directory: Path) -> None:
    """Create ``directory`` if needed and check that a file can be written in it.

    Called before long decoding or conversion, so that an unwritable cache is reported at once
    rather than after the work is done.

    Raises:
        PermissionError: the folder cannot be created or written (no permission, read-only disk).
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        if error.errno not in _NOT_WRITABLE:
            raise
        denied = PermissionError(
            f"cache folder {directory} is not writable ({error.strerror or error}), so the "
            f"preprocessed data could not be saved there. Fix: choose another folder with "
            f"--cache-dir or ${CACHE_DIR_ENV}, or make {directory} writable."
        )
        denied.errno = error.errno
        raise denied from error


def write_failure(path: Path, error: BaseException) -> WriteFailedError:
    """The :class:`WriteFailedError` for a failed write of ``path``: the file, the cause, the
    free space left on its disk and the fix."""
    failure = WriteFailedError(
        f"could not write {path}: {type(error).__name__}: {error}. {_free_space(path.parent)} "
        f"Fix: free space on that disk, or write elsewhere (--cache-dir or ${CACHE_DIR_ENV} for "
        "caches, --out for results)."
    )
    failure.errno = getattr(error, "errno", None)
    return failure


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(binary_file)`` on a temporary file and move it onto ``path`` in one step.

    The temporary file is removed whatever happens (also on Ctrl-C), so ``path`` is either the
    old file or the complete new one.

    Raises:
        WriteFailedError: writing, flushing, syncing or renaming failed (``OSError`` or
            ``RuntimeError``, as torch reports a full disk); raised from the original error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, suffix=path.suffix + ".part")
    try:
        try:
            with os.fdopen(handle, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(partial, path)
        except (OSError, RuntimeError) as error:
            raise write_failure(path, error) from error
    finally:
        Path(partial).unlink(missing_ok=True)


def move_aside(path: Path) -> Path:
    """Rename the file or folder ``path`` to ``<path>.damaged`` (replacing an older one).

    Returns: the new path.
    """
    aside = path.with_name(path.name + DAMAGED_SUFFIX)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside)
    elif aside.exists() or aside.is_symlink():
        aside.unlink()
    os.replace(path, aside)
    return aside


def _free_space(directory: Path) -> str:
    """``"N GB free on the disk holding DIR."``, or why that is unknown."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError as error:
        return f"(free space on the disk holding {directory} unknown: {error}.)"
    return f"{_human_bytes(free)} free on the disk holding {directory}."


def _human_bytes(count: int) -> str:
    """``count`` bytes in decimal units, e.g. ``"1.5 GB"``."""
    value, unit = float(count), "bytes"
    for bigger in ("KB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
