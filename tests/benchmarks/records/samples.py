"""Records for tests: the committed reference records, and a complete record to vary."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from benchmarks.records import Record
from tests.conftest import REPO

COMMITTED = REPO / "results" / "omniglot" / "records.jsonl"


def committed_lines() -> list[dict[str, Any]]:
    """Every line of the committed Omniglot records, parsed, in file order."""
    lines = COMMITTED.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def sample_record(**changes: Any) -> Record:
    """A complete record (the newest committed one, not yet stored) with ``changes`` applied."""
    newest = Record.from_dict(committed_lines()[-1])
    return dataclasses.replace(newest, episodes_file=None, **changes)
