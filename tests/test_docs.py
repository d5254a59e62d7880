"""The README and the docs site: short README with the generated leaderboard, embedded tables
that are the generated ones, and every repository path they name exists."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: A repository path as a whole code span or link target (placeholders such as <dataset> or
#: OUT/ are not paths and do not match).
PATH = re.compile(
    r"(?:`|\]\()((?:benchmarks|methods|datasets|tests|scripts|results|docs|\.ci)/[\w./-]*"
    r"|[\w-]+\.(?:md|toml|yml|ini))(?=`|\))"
)
EMBEDDED = re.compile(r"<!-- table: (?P<name>[\w./-]+) -->\n(?P<body>.*?)<!-- /table -->", re.S)


def test_the_readme_is_short_and_holds_the_generated_leaderboard():
    readme = (REPO / "README.md").read_text()
    assert len(readme) <= 15_000
    assert "<!-- table: leaderboard.md -->" in readme


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_embedded_tables_are_the_generated_ones(document):
    for block in EMBEDDED.finditer(document.read_text()):
        generated = (REPO / "results" / block["name"]).read_text().rstrip() + "\n"
        assert block["body"] == generated, f"{document.name}: {block['name']} is out of date"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_repository_path_named_exists(document):
    text = document.read_text()
    named = {m.group(1) for m in PATH.finditer(text)}
    missing = sorted(
        p for p in named if not (REPO / p).exists() and not (REPO / "docs" / p).exists()
    )
    assert not missing, f"{document.name} names paths that do not exist: {missing}"
