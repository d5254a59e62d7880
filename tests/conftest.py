"""Shared fixtures: the real Omniglot data (read in place) and small synthetic splits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from datasets import FewShotSplit
from datasets.paths import DATA_ROOT_ENV

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    configured = os.environ.get(DATA_ROOT_ENV)
    candidates = [Path(configured)] if configured else [REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if (candidate / "omniglot" / "images_background.zip").exists() or (
            candidate / "omniglot" / "images_background"
        ).is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root holding real Omniglot; CI must have it, elsewhere the test is skipped."""
    root = _data_root()
    if root is None:
        message = f"real Omniglot not found; set ${DATA_ROOT_ENV} to a folder holding omniglot/"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def omniglot(data_root, tmp_path_factory):
    """All of real Omniglot at 28x28, decoded once per test session into a private cache."""
    from datasets.omniglot import load_omniglot

    cache = os.environ.get("FEWSHOT_CACHE_DIR") or tmp_path_factory.mktemp("omniglot-cache")
    return load_omniglot(data_root, cache_dir=cache, download=False, progress=False)


def numbered_split(
    class_sizes: list[int], rotations: list[int] | None = None, side: int = 4
) -> FewShotSplit:
    """A synthetic split whose image ``i`` is filled with the value ``i`` (mod 256) everywhere,
    so an episode's pixels tell which images it drew."""
    total = sum(class_sizes)
    images = (
        (torch.arange(total) % 256)
        .to(torch.uint8)
        .view(total, 1, 1, 1)
        .expand(total, 1, side, side)
        .contiguous()
    )
    sizes = torch.tensor(class_sizes)
    return FewShotSplit(
        name="synthetic/numbered",
        images=images,
        class_start=torch.cumsum(sizes, 0) - sizes,
        class_size=sizes,
        class_rotation=torch.tensor(rotations or [0] * len(class_sizes)),
        class_names=tuple(f"class{i}" for i in range(len(class_sizes))),
    )


def pytest_addoption(parser):
    parser.addoption(
        "--timing",
        action="store_true",
        help="run the opt-in timing suite in tests/timing (pytest-benchmark)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--timing"):
        return
    skip = pytest.mark.skip(reason="timing suite: run with --timing (see docs/speed.md)")
    for item in items:
        if "timing" in item.keywords:
            item.add_marker(skip)
