"""Fixtures of the executor tests: a local Ray instance, and a run on real Omniglot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from benchmarks.executors.faults import FAULT_ENV
from benchmarks.run import main


@pytest.fixture(scope="session")
def ray_instance():
    """A local Ray instance with 2 CPUs for the session (Ray is required on CI)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip('Ray is not installed; pip install -e ".[ray]"')
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture
def run(data_root, omniglot, tmp_path, monkeypatch):
    """``run(out_name, *flags) -> exit code`` on real Omniglot, CPU, one torch thread."""
    monkeypatch.setenv("FEWSHOT_DATA_ROOT", str(data_root))
    monkeypatch.setenv(
        "FEWSHOT_CACHE_DIR", os.environ.get("FEWSHOT_CACHE_DIR") or str(tmp_path / "cache")
    )
    monkeypatch.delenv(FAULT_ENV, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what one Ray CPU per cell gives each task

    def invoke(out: str, *flags: str) -> int:
        return main(["--out", str(tmp_path / out), "--quiet", "--device", "cpu", *flags])

    yield invoke
    torch.set_num_threads(threads)


def records(root: Path) -> dict[str, dict]:
    """The records of an Omniglot run's folder ``root``, by configuration hash."""
    path = root / "omniglot" / "records.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return {r["config_hash"]: r for r in map(json.loads, filter(str.strip, lines))}
