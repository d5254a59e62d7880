"""Keep freed tensor memory in the process instead of handing it back to the operating system.

PyTorch's CPU allocator takes every tensor from the C library's ``malloc``. glibc serves large
blocks (above 128 KiB, rising to 32 MiB) with their own ``mmap`` and gives them back with
``munmap`` when freed, and trims the top of its heap whenever 128 KiB lie free there. A training
step on 84x84 episodes allocates and frees hundreds of megabytes of activations, so every step
maps fresh pages and the kernel zero-fills each one on first touch: on a 2-core machine about
half of a Conv-4 step was system time (see ``results/timing/``).

:func:`keep_freed_memory` tells glibc, through ``mallopt``, to serve every block from its heap
(``M_MMAP_MAX = 0``), never to trim it (``M_TRIM_THRESHOLD``), to grow it in 256 MiB steps
(``M_TOP_PAD``) and to use one arena (``M_ARENA_MAX = 1``, so the heap memory freed by one
thread is reused by the next). Memory then stays mapped at the peak of a step and is reused
by the next one. Numbers computed are unchanged: only where memory comes from changes.

It acts only on Linux with glibc; elsewhere it does nothing and says so. Set
``FEWSHOT_MALLOC=system`` to leave the C library's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from dataclasses import dataclass

#: glibc's ``mallopt`` parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
M_ARENA_MAX = -8

ENV = "FEWSHOT_MALLOC"
TOP_PAD_BYTES = 256 * 2**20
#: Largest value mallopt takes (an int); 2 GiB - 1 of free heap top is never trimmed in practice.
NEVER_TRIM = 2**31 - 1


@dataclass(frozen=True)
class AllocatorSetting:
    """What :func:`keep_freed_memory` did: ``mode`` is ``"keep-freed"`` or ``"system"``, and
    ``why`` says why the system's defaults were kept, when they were."""

    mode: str
    why: str = ""


def keep_freed_memory() -> AllocatorSetting:
    """Apply the settings of the module docstring to this process (idempotent).

    Returns what was done; it never raises.
    """
    if os.environ.get(ENV, "").strip().lower() == "system":
        return AllocatorSetting("system", f"{ENV}=system")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return AllocatorSetting("system", "not Linux with glibc")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as error:
        return AllocatorSetting("system", f"mallopt unavailable ({error})")
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = (
        (M_MMAP_MAX, 0),
        (M_TRIM_THRESHOLD, NEVER_TRIM),
        (M_TOP_PAD, TOP_PAD_BYTES),
        (M_ARENA_MAX, 1),
    )
    failed = [number for number, value in settings if mallopt(number, value) != 1]
    if failed:
        return AllocatorSetting("system", f"mallopt refused parameters {failed}")
    return AllocatorSetting("keep-freed")
