"""The plug-in rule: a method brings its own recipes, and nothing else needs to change."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from benchmarks.run import main
from methods import registry

TOY = '''
"""A toy method defined outside the package, with its own recipe for the paper preset."""
from typing import ClassVar

from methods import Recipe, TrainConfig, register_method
from methods.protonet import PrototypicalNet
from methods.recipes import ANY_BACKBONE, CHARACTERS, RecipeEntry


def _paper(n_way, k_shot):
    return Recipe(backbone="conv4", train=TrainConfig(
        episodes=3, n_way=n_way, k_shot=k_shot, n_query=2, val_every=0, val_episodes=2))


@register_method
class ToyNet(PrototypicalNet):
    """Toy: prototypes under another name."""

    name = "toy"
    recipes: ClassVar = (RecipeEntry("paper", CHARACTERS, ANY_BACKBONE, _paper),)
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    (tmp_path / "toy_plugin.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_plugin")
    yield module
    registry._METHODS.pop("toy", None)
    sys.modules.pop("toy_plugin", None)


def test_a_method_from_another_module_runs_under_its_own_paper_recipe(
    toy_module, data_root, omniglot, tmp_path, monkeypatch
):
    monkeypatch.setenv("FEWSHOT_DATA_ROOT", str(data_root))
    out = tmp_path / "out"
    code = main(
        [
            "--methods",
            "toy",
            "--preset",
            "paper",
            "--shots",
            "1",
            "--test-episodes",
            "3",
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    (record,) = [
        json.loads(line) for line in (out / "omniglot" / "records.jsonl").read_text().splitlines()
    ]
    assert record["method"] == "toy" and record["preset"] == "paper"
    assert record["config"]["recipe"]["train"]["episodes"] == 3  # the toy's recipe, not quick's
    assert record["train_episodes"] == 3


def test_a_preset_the_method_has_no_recipe_for_is_an_error(toy_module, tmp_path, capsys):
    code = main(["--methods", "toy", "--preset", "quick", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "method 'toy' has no recipe for quick/characters/" in err
    assert "its recipes: paper/characters/any" in err
