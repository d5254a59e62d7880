"""The shared pre-training stage: trained once per key, reused by every method that starts from
it, kept beside the records, and part of every identity."""

from __future__ import annotations

import json

import pytest

from benchmarks.engine import pretraining
from benchmarks.experiment.config import RunConfig, UsageError, plan_cells
from benchmarks.run import main
from tests.datasets.fakes import write_class_folder

#: Shrinks the pre-training and the methods' training to a few steps of a tiny folder dataset.
TINY_PRETRAIN = [
    "episodes=3",
    "batch_size=16",
    "warmup=1",
    "val_every=2",
    "val_episodes=2",
    "val_n_way=2",
    "val_n_query=1",
]
TINY_TRAIN = [
    "n_way=2",
    "n_query=1",
    "val_n_way=2",
    "val_n_query=1",
    "val_every=1",
    "val_episodes=2",
]


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    write_class_folder(root, classes=12)
    (root / "fewshot.toml").write_text("image_size = 20\n")
    return root


def _run(photos, tmp_path, *extra: str, methods=("protonet", "relnet")) -> int:
    return main(
        [
            "--dataset",
            "folder",
            "--data-root",
            str(photos),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
            "--preset",
            "pretrained-cpu",
            "--methods",
            *methods,
            "--ways",
            "2",
            "--shots",
            "1",
            "--queries",
            "1",
            "--test-episodes",
            "2",
            "--train-episodes",
            "2",
            "--device",
            "cpu",
            "--quiet",
            "--train",
            *TINY_TRAIN,
            "--pretrain",
            *TINY_PRETRAIN,
            *extra,
        ]
    )


def _records(tmp_path) -> list[dict]:
    lines = (tmp_path / "out" / "folder" / "records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_folder_of_photos_gets_the_natural_image_recipe_with_its_pretraining():
    (cell,) = plan_cells(
        RunConfig(methods=("protonet",), dataset="folder", shots=(1,), preset="pretrained-cpu"),
        "cpu",
    )
    assert cell.recipe.pretrain is not None and cell.recipe.train.augment == "crop-flip"
    assert cell.config()["recipe"]["pretrain"]["name"] == cell.recipe.pretrain.name


def test_omniglot_has_no_pretrained_recipe_and_the_error_lists_those_there_are():
    with pytest.raises(ValueError, match="pretrained-cpu/characters.*quick/characters/any"):
        plan_cells(RunConfig(methods=("protonet",), preset="pretrained-cpu"), "cpu")


def test_pretrain_overrides_need_a_recipe_with_a_stage():
    with pytest.raises(UsageError, match="no pre-training stage"):
        plan_cells(RunConfig(methods=("protonet",), pretrain=("episodes=3",)), "cpu")


def test_the_backbone_is_pretrained_once_and_every_method_starts_from_it(
    photos, tmp_path, monkeypatch
):
    calls = []
    original = pretraining.pretrain_backbone

    def counted(*args, **kwargs):
        calls.append(args[0].method)
        return original(*args, **kwargs)

    monkeypatch.setattr("benchmarks.executors.worker.pretrain_backbone", counted)
    assert _run(photos, tmp_path) == 0
    assert len(calls) == 1  # the second method reused it
    records = _records(tmp_path)
    keys = {r["pretrained_from"] for r in records}
    assert len(records) == 2 and len(keys) == 1 and None not in keys
    (key,) = keys
    kept = tmp_path / "out" / "folder" / "pretrained"
    assert sorted(p.name for p in kept.iterdir()) == [f"{key}.json", f"{key}.pt"]
    summary = json.loads((kept / f"{key}.json").read_text())
    assert summary["train_result"]["episodes_trained"] == 3
    assert all(r["health"]["verdict"] in ("learned", "near-chance") for r in records)

    # a changed pre-training recipe is another backbone and other cells
    assert _run(photos, tmp_path, "--pretrain", *TINY_PRETRAIN, "lr=0.05") == 0
    assert len(calls) == 2
    again = _records(tmp_path)[2:]
    assert {r["pretrained_from"] for r in again} != keys
    assert {r["config_hash"] for r in again}.isdisjoint(r["config_hash"] for r in records)
