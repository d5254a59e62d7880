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


# --- --plugin ------------------------------------------------------------------------------------


def _worked_example() -> str:
    import re

    from tests.conftest import REPO

    page = (REPO / "docs" / "plugins.md").read_text()
    return re.search(r"```python\n(.*?)```", page, re.S).group(1)


@pytest.fixture
def forget_plugin_names():
    """Unregister what the tests' plugins register."""
    from datasets import registry as datasets_registry

    yield
    registry._METHODS.pop("nearest", None)
    datasets_registry._DATASETS.pop("patterns", None)


def test_the_worked_plugin_example_runs_from_the_command_line(
    tmp_path, capsys, forget_plugin_names
):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(_worked_example())
    assert main(["--plugin", str(plugin), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "  nearest" in listed and "  patterns" in listed
    flags = ["--plugin", str(plugin), "--dataset", "patterns", "--methods", "nearest",
             "protonet", "--shots", "1", "--train-episodes", "3", "--test-episodes", "4",
             "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(flags) == 0
    lines = (tmp_path / "out" / "patterns" / "records.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["method"] for line in lines) == ["nearest", "protonet"]
    assert main([*flags, "--plugin", str(plugin)]) == 0  # named twice: imported once
    assert "2 already recorded, skipped" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        ("no_such_plugin_module", "--plugin no_such_plugin_module: cannot import it"),
        ("missing_file.py", "--plugin missing_file.py: no such file"),
    ],
)
def test_a_plugin_that_cannot_be_imported_is_a_clear_error(plugin, message, capsys):
    assert main(["--plugin", plugin, "--list"]) == 2
    assert message in capsys.readouterr().err


def test_a_plugin_that_fails_or_takes_a_registered_name_is_a_clear_error(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half-written plugin')\n")
    assert main(["--plugin", str(broken), "--list"]) == 2
    assert (
        "failed while being imported: RuntimeError: half-written plugin" in capsys.readouterr().err
    )
    taken = tmp_path / "taken.py"
    taken.write_text(
        "from methods import register_method\nfrom methods.protonet import PrototypicalNet\n\n"
        "@register_method\nclass Again(PrototypicalNet):\n    name = 'protonet'\n"
    )
    assert main(["--plugin", str(taken), "--list"]) == 2
    assert "method name 'protonet' is already registered" in capsys.readouterr().err


def test_a_dataset_name_can_be_registered_once(forget_plugin_names):
    from datasets import DatasetSpec, register_dataset
    from datasets.registry import dataset_spec

    omniglot = dataset_spec("omniglot")
    assert register_dataset(omniglot) is omniglot  # the same spec again: nothing changes
    with pytest.raises(ValueError, match="dataset name 'omniglot' is already registered"):
        register_dataset(DatasetSpec("omniglot", "another", {"s": ("test",)}, "s",
                                     omniglot.load, "characters"))  # fmt: skip
