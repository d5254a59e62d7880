"""Project files agree with each other: Python version, extras, the CI's commands."""

from __future__ import annotations

import configparser
import re
import tomllib

from tests.conftest import REPO


def test_requires_python_is_true_to_the_code():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"].startswith(">=3.11")  # tomllib, used by the code
    sources = [p.read_text() for p in REPO.glob("*/**/*.py") if ".venv" not in p.parts]
    assert any("import tomllib" in s for s in sources)


def test_tox_and_the_setup_script_install_the_same_extras():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    tox_extras = set(tox["testenv"]["extras"].split(","))
    setup = (REPO / "scripts" / "setup.sh").read_text()
    default = re.search(r'extras="\$\{1-([\w,]+)\}"', setup).group(1)
    assert tox_extras == set(default.split(","))
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert tox_extras <= set(declared)


def test_ci_runs_the_checks_and_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "bash scripts/test.sh" in ci and "bash scripts/test.sh" in readme
    assert "bash scripts/check.sh" in ci
    check = (REPO / "scripts" / "check.sh").read_text()
    for command in ("ruff check", "ruff format --check", "mypy"):
        assert command in check
