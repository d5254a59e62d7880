"""Facts recorded with every result: the code's commit."""

from __future__ import annotations

from benchmarks.engine import environment
from tests.conftest import REPO


def test_the_commit_of_this_checkout_is_recorded():
    commit = environment.git_commit()
    assert len(commit.removesuffix("-dirty")) == 40


def test_a_copy_without_git_is_unknown_unless_it_declares_its_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "REPO", tmp_path)
    monkeypatch.delenv(environment.GIT_COMMIT_ENV, raising=False)
    assert environment.git_commit() == "unknown"
    monkeypatch.setenv(environment.GIT_COMMIT_ENV, "0123abc")
    assert environment.git_commit() == "0123abc (declared)"


def test_a_declared_commit_never_overrides_what_git_says(monkeypatch):
    monkeypatch.setenv(environment.GIT_COMMIT_ENV, "0123abc")
    assert "declared" not in environment.git_commit()
    assert environment.REPO == REPO
