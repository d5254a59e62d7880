"""Facts about the software and hardware a record was produced on."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

import torch

from benchmarks.engine.devices import device_name

REPO = Path(__file__).resolve().parents[2]


#: Names the commit of a source tree that was copied without its ``.git`` (a container image,
#: a cluster's working directory); used only where ``git`` cannot tell.
GIT_COMMIT_ENV = "FEWSHOT_GIT_COMMIT"


def git_commit() -> str:
    """``HEAD``'s commit, with ``-dirty`` when tracked code (outside results/) has changes.

    Outside a git checkout: ``$FEWSHOT_GIT_COMMIT`` (marked ``(declared)``) if set, else
    ``"unknown"``.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        declared = os.environ.get(GIT_COMMIT_ENV, "").strip()
        return f"{declared} (declared)" if declared else "unknown"
    return f"{commit}-dirty" if dirty else commit


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device and thread count, for a record."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "num_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory and what it measures: CUDA allocator peak, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kilobytes / 1024, "process_max_rss"
