"""Tests that need learn2learn: skipped where it is not installed, failed where it must be."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from datasets.learn2learn_sets import MissingDependencyError, import_learn2learn


def learn2learn_or_skip() -> ModuleType:
    """learn2learn; without it the calling test is skipped, or fails under CI (``$CI`` or
    ``$FEWSHOT_REQUIRE_LEARN2LEARN`` set), where ``scripts/setup.sh`` must have installed it."""
    try:
        return import_learn2learn("this test's dataset")
    except MissingDependencyError as error:
        message = f"learn2learn is not installed; `bash scripts/setup.sh` installs it ({error})"
        if os.environ.get("CI") or os.environ.get("FEWSHOT_REQUIRE_LEARN2LEARN"):
            pytest.fail(message)
        pytest.skip(message)
