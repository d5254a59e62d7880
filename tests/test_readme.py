"""The worked examples of the README and the docs work as written."""

from __future__ import annotations

import re

import torch

from methods import Conv4, available_methods, create_method, registry
from tests.conftest import REPO
from tests.methods.helpers import Identity


def _example_code() -> str:
    page = (REPO / "docs" / "adding-a-method.md").read_text()
    return re.search(r"```python\n(.*?)```", page, re.S).group(1)


def test_the_worked_example_registers_a_working_method():
    namespace: dict = {}
    try:
        exec(compile(_example_code(), "README.md", "exec"), namespace)
        assert "nearest" in available_methods()
        method = namespace["NearestNeighbour"](Identity(1))
        support_x = torch.tensor([0.0, 10.0, 4.0]).view(3, 1, 1, 1)
        support_y = torch.tensor([0, 0, 1])
        query_x = torch.tensor([9.0, 3.0]).view(2, 1, 1, 1)
        # query 9: nearest of class 0 is 10 (d=1), of class 1 is 4 (d=25)
        expected = -torch.tensor([[1.0, 25.0], [9.0, 1.0]])
        assert torch.equal(method(support_x, support_y, query_x), expected)
        built = create_method("nearest", Conv4(1))
        scores = built(
            torch.rand(4, 1, 28, 28), torch.tensor([0, 0, 1, 1]), torch.rand(3, 1, 28, 28)
        )
        assert scores.shape == (3, 2)
    finally:
        registry._METHODS.pop("nearest", None)


def test_the_python_example_runs_as_written(data_root, omniglot, tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setenv("FEWSHOT_DATA_ROOT", str(data_root))
    monkeypatch.chdir(tmp_path)  # out="runs/from-python" lands here
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.ok and len(result.records) == 1
    assert (tmp_path / "runs" / "from-python" / "omniglot" / "records.jsonl").exists()
    printed = capsys.readouterr().out
    assert "| protonet" in printed and "5-way 1-shot" in printed


def test_the_zoo_example_loads_a_model_and_scores_an_episode():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## From Python") :]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["scores"].shape == (10, 5) and not namespace["model"].training
    zoo_page = (REPO / "docs" / "zoo.md").read_text()
    assert code in zoo_page  # the docs show the same example
